//! The appointment store conformance suite run against the memory store.
use citycard_core::MemoryCore;
use citycard_healthcare::MemoryAppointmentStore;
use citycard_testkit::appointment_store_conformance;
use citycard_testkit::healthcare::CoreView;

async fn store() -> (MemoryAppointmentStore, CoreView) {
    let core = MemoryCore::new();
    (
        MemoryAppointmentStore::with_core(core.clone()),
        CoreView::memory(&core),
    )
}

appointment_store_conformance!(store);
