//! End-to-end tests of postern live in `tests/`; this crate has no library code.
