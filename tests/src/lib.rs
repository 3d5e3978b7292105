//! Fakes and helpers for postern's end-to-end tests: a relay started in-process ([`relay`]) or as
//! the real binary ([`process`]), scriptable SMTP receivers standing in for next hops and intakes
//! ([`receiver`]), raw and real SMTP clients ([`client`]), generated certificates ([`pki`]),
//! temporary folders ([`temp`]) and the message corpora ([`corpus`]). A loopback DNS server is in
//! `postern::testing::dns`.

pub mod client;
pub mod corpus;
pub mod pki;
pub mod process;
pub mod receiver;
pub mod relay;
pub mod temp;

use std::time::{Duration, Instant};

/// How long a test waits for something that should happen at once on loopback.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Polls `check` until it gives `Some`, or panics naming `what` after [`PATIENCE`].
pub async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
