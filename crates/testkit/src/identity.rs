//! Test support for citycard-identity: conformance suites for its storage ports,
//! fault-injecting doubles of its remote ports, and proptest strategies.
