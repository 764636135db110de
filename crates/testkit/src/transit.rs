//! Test support for citycard-transit: conformance suites for its storage ports,
//! fault-injecting doubles of its remote ports, and proptest strategies.
