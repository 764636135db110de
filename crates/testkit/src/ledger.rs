//! Test support for citycard-ledger: conformance suites for its storage ports,
//! fault-injecting doubles of its remote ports, and proptest strategies.
