//! The ports of each domain crate, implemented with the other crates.
//!
//! This is the only place where domains meet: card binding's identity and
//! funds ports, transit's and healthcare's payment ports, and the wallet
//! view's balance source.

pub mod money;
pub mod people;
