//! Whole-system tests of the four programs, in `tests/`: each starts several of the real
//! binaries together (on loopback peers, network namespaces or Docker containers) and checks
//! what a user would see. This library is empty on purpose; the harness is the `testkit` crate.
