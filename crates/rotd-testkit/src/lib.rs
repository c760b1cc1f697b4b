//! rotd-testkit holds what every rotd test shares: executable specifications that each implementation of
//! a trait must pass (the store conformance suite and the backend conformance suite), the fake backend the
//! engine's tests drive, and fixtures that start
//! private, real servers (PostgreSQL, MariaDB, Redis, OpenSSH) on loopback with password authentication
//! enforced. Nothing here is a mock: a fixture that cannot start its server panics with an install hint.
//! `proc_sampler` watches every process's command line and environment for leak tests.

pub mod backend_suite;
pub mod fake_backend;
pub mod fixtures;
pub mod proc_sampler;
pub mod store_suite;
