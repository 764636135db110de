//! Step 8: the hospital publishes tomorrow's morning clinic and the
//! cardholder books a place with a queue number (after many runs the monthly
//! quota refuses, and the refusal is shown).

use chrono::Duration;
use citycard_core::Principal;
use citycard_healthcare::{Appointment, AppointmentStatus, Session, Slot, SlotStatus};

use super::people::Person;
use super::{
    DemoError, HOSPITAL, HOSPITAL_NAME, HOSPITAL_NAME_ZH, Journey, Printer, hm, mask_name, parse,
};
use crate::error::CityCardError;

const DEPARTMENT: &str = "dep-general-medicine";

/// What the booking step did.
pub(super) struct Booking {
    /// The appointment, unless the booking was refused.
    pub(super) appointment: Option<Appointment>,
    /// Its queue number, when booked (not waitlisted).
    pub(super) queue_number: Option<u32>,
}

/// Prints the step's heading and books the patient into tomorrow's morning clinic.
pub(super) async fn book(
    j: &Journey<'_>,
    p: &mut Printer<'_>,
    operator: &Principal,
    patient: &Person,
) -> Result<Booking, DemoError> {
    j.at(21, 10);
    p.heading(
        "医院挂号和就诊序号",
        "A hospital booking with a queue number",
    )?;
    let (appointment, queue_number) = book_tomorrow(j, p, operator, patient).await?;
    Ok(Booking {
        appointment,
        queue_number,
    })
}

async fn book_tomorrow(
    j: &Journey<'_>,
    p: &mut Printer<'_>,
    operator: &Principal,
    patient: &Person,
) -> Result<(Option<Appointment>, Option<u32>), DemoError> {
    let appointments = j.city.healthcare().appointments();
    let date = j.day + Duration::days(1);
    let times = appointments.policy().session_times;
    let (start, end) = times.bounds(date, Session::Morning);
    let slot = Slot {
        id: parse(&format!("slot:{DEPARTMENT}:{}:am", date.format("%Y%m%d")))?,
        hospital: parse(HOSPITAL)?,
        department: parse(DEPARTMENT)?,
        doctor: None,
        date,
        session: Session::Morning,
        start,
        end,
        capacity: 40,
        status: SlotStatus::Open,
    };
    if j.city.appointment_store().slot(&slot.id).await?.is_none() {
        appointments.put_slot(operator, slot.clone()).await?;
    }
    let (from, to) = (hm(start), hm(end));
    p.say(
        format!("{HOSPITAL_NAME_ZH}放出明天全科上午门诊的号（{date}，{from}–{to}，共 40 个）"),
        format!(
            "{HOSPITAL_NAME} publishes tomorrow's general medicine morning clinic ({date}, {from}–{to}, 40 places)"
        ),
    )?;
    let me = Principal::cardholder(patient.id.clone());
    match appointments
        .book(
            &me,
            &citycard_healthcare::BookRequest {
                slot: slot.id.clone(),
                patient: patient.id.clone(),
                key: j.run_key("booking")?,
                allow_waitlist: false,
            },
        )
        .await
    {
        Ok(booking) => {
            let a = booking.appointment;
            let name = mask_name(patient.name);
            let q = a.queue_number.map_or("-".into(), |q| q.to_string());
            let at = a.expected_at.map_or("-".into(), hm);
            if a.status == AppointmentStatus::Booked {
                p.say(
                    format!("{name}挂号成功：第 {q} 号，预计 {} {at} 就诊", a.date),
                    format!(
                        "{name} booked: queue number {q}, expected at {at} on {}",
                        a.date
                    ),
                )?;
            } else {
                p.say(
                    format!("{name}已排队候补（{}）", a.date),
                    format!("{name} is on the waiting list for {}", a.date),
                )?;
            }
            p.ids(format!("appointment {} ({})", a.id, a.status.code()))?;
            let q = a.queue_number;
            Ok((Some(a), q))
        }
        // After many runs the monthly booking quota is reached: show the refusal and go on.
        Err(e) => {
            let e = CityCardError::from(e);
            p.refusal(&e.user_message(p.lang))?;
            p.ids(format!("booking error: {e}"))?;
            Ok((None, None))
        }
    }
}
