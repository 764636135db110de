//! # citycard-identity
//!
//! Who a cardholder is: Chinese ID numbers (GB 11643-1999 resident numbers,
//! legacy 15-digit numbers, residence permits for Hong Kong, Macau and Taiwan
//! residents, foreign permanent resident cards) with history-aware region
//! codes (GB/T 2260), real-name verification of platform accounts through the
//! `RealNameVerifier` port, and the personal-data vault that keeps ID numbers
//! and names encrypted with a keyed blind index for lookup.
//!
//! This crate is being filled in; see the workspace README for status.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
