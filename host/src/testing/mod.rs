//! Fakes for tests of the relay and of code built on it, compiled only for tests (or with the
//! `testing` feature, which the end-to-end test crate turns on).

pub mod dns;
