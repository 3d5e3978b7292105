//! Links the module with a 128 KiB stack instead of Rust's 1 MiB default for Wasm.
//!
//! The relay evaluates every message in a fresh instance and zeroes the instance's memory after
//! it (SPEC §8 counts that in each evaluation): with a 1 MiB stack first in memory, that is over
//! a megabyte to clear per message for a module whose deepest call needs a few kilobytes. An
//! overflow would trap, and the relay's failure policy would apply: nothing is lost.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_FAMILY").as_deref() == Ok("wasm") {
        println!("cargo:rustc-link-arg=-zstack-size=131072");
    }
}
