//! # citycard-binding
//!
//! Citizen cards on the issuer side (issue, report lost, found, freeze,
//! replace, cancel) and their bindings to payment-platform accounts on the
//! platform side: the binding flow with consent, the card-wallet pass, family
//! delegation, and the failures a user meets with what to do next.
//!
//! This crate is being filled in; see the workspace README for status.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
