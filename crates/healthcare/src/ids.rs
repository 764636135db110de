//! Typed ids of the healthcare domain.

citycard_core::define_id!(
    /// A hospital or community health centre.
    HospitalId, "hospital id", "hsp"
);
citycard_core::define_id!(
    /// A department of a hospital.
    DepartmentId, "department id", "dep"
);
citycard_core::define_id!(
    /// A doctor.
    DoctorId, "doctor id", "doc"
);
citycard_core::define_id!(
    /// A bookable slot (one doctor or clinic, one session, with a capacity).
    SlotId, "slot id", "slot"
);
citycard_core::define_id!(
    /// An appointment.
    AppointmentId, "appointment id", "apt"
);
citycard_core::define_id!(
    /// A settlement of a bill.
    SettlementId, "settlement id", "stl"
);
citycard_core::define_id!(
    /// An employer paying social insurance.
    EmployerId, "employer id", "emp"
);
