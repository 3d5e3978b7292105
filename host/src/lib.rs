//! postern: an SMTP relay whose mail policies run as WebAssembly components.
//!
//! Modules follow the path of a message:
//!
//! - [`smtp`]: the SMTP protocol as values, no I/O: commands, replies, the DATA reader.
//! - [`inbound`]: listeners and the SMTP session state machine (STARTTLS, limits, relay access).
//! - [`intake`]: the seam through which a session hands an accepted message to the relay.
//! - [`spool`]: durable storage with group commit, message ids, recovery after a crash.
//! - [`policy`]: the Wasm policy engine (wasmtime components, sandbox, bundled default module).
//! - [`dispatch`]: after the spool: policy decision, routing record, originals and journal copies queued.
//! - [`journal`]: builds the journal copy of a splinter group for the intake address.
//! - [`queue`]: per-destination delivery queues, retries, `the.tdc.queue`.
//! - [`outbound`]: the SMTP client, TLS to next hops, route and MX resolution.
//! - [`relay`]: starts and stops all of the above as one running relay; [`demo`] shows it working.
//! - [`config`], [`maillog`], [`envelope`], [`headers`]: settings, the mail log, values shared by all.
//! - `testing` (tests only): fakes such as a loopback DNS server.

pub mod config;
pub mod demo;
pub mod dispatch;
pub mod envelope;
pub mod headers;
pub mod inbound;
pub mod intake;
pub mod journal;
pub mod maillog;
pub mod outbound;
pub mod policy;
pub mod queue;
pub mod relay;
pub mod smtp;
pub mod spool;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
