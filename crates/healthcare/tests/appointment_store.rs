//! The appointment store conformance suite on the memory store.
use citycard_healthcare::MemoryAppointmentStore;
use citycard_testkit::appointment_store_conformance;

async fn store() -> MemoryAppointmentStore {
    MemoryAppointmentStore::new()
}

appointment_store_conformance!(store);
