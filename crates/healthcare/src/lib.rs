//! # citycard-healthcare
//!
//! Hospitals on the card: real-name appointment booking that never overbooks,
//! outpatient bills settled between the medical-insurance pooled fund, the
//! personal accounts and the e-wallet, social insurance records, and FHIR R4
//! export.
//!
//! This crate is being filled in; see the workspace README for status.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
