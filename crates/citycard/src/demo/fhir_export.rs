//! Step 14: the appointment and the insurance claim as FHIR R4 JSON, and a
//! transaction Bundle of both, written to the data directory's `fhir/`.

use std::path::PathBuf;

use citycard_healthcare::{Appointment, SettlementRecord, fhir};

use super::{DemoError, Journey, Printer, io};

/// Writes the FHIR files and returns their paths.
pub(super) async fn write(
    j: &Journey<'_>,
    p: &mut Printer<'_>,
    appointment: Option<&Appointment>,
    record: &SettlementRecord,
) -> Result<Vec<PathBuf>, DemoError> {
    p.heading(
        "挂号和医保结算的 FHIR R4 JSON",
        "FHIR R4 JSON of the appointment and the claim, and a transaction Bundle of both",
    )?;
    let fhir_dir = j.dir.join("fhir");
    let mut fhir_files = Vec::new();
    let payor = "hangzhou-medical-insurance";
    let (claim, response) = fhir::settlement(record, payor);
    let mut documents = vec![("claim.json", claim), ("claim-response.json", response)];
    let slot_view = match appointment {
        Some(a) => j.city.appointment_store().slot(&a.slot).await?,
        None => None,
    };
    if let Some(appointment) = appointment {
        documents.insert(0, ("appointment.json", fhir::appointment(appointment)));
    }
    // Everything together, with the resources they reference: a transaction
    // Bundle in which every reference resolves.
    documents.push((
        "bundle.json",
        fhir::transaction_bundle(&fhir::BundleParts {
            appointment: appointment.zip(slot_view.as_ref()),
            settlement: Some(record),
            payor,
        }),
    ));
    for (name, value) in documents {
        let path = fhir_dir.join(name);
        let text = serde_json::to_string_pretty(&value)
            .map_err(|e| DemoError::Step(format!("FHIR {name}: {e}")))?;
        std::fs::write(&path, text).map_err(io(name))?;
        let kind = value
            .get("resourceType")
            .and_then(|v| v.as_str())
            .unwrap_or("?");
        p.say(
            format!("已写入 {}（{kind}）", path.display()),
            format!("wrote {} ({kind})", path.display()),
        )?;
        fhir_files.push(path);
    }

    Ok(fhir_files)
}
