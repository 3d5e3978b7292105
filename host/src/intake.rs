//! The seam between an SMTP session and the rest of the relay: what a session hands an accepted
//! message to. The relay implements it with the spool (durable, group-committed) and the router;
//! session tests implement it in memory.

use std::future::Future;

use crate::envelope::{Envelope, Mid};

/// Why a message could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// The spool's file system is (nearly) full: the client hears `452 4.3.1`.
    #[error("insufficient system storage")]
    StorageFull,
    /// The spool could not write the message: the client hears `451 4.3.0`.
    #[error("spool write failed")]
    Spool(#[source] std::io::Error),
    /// The relay is shutting down: the client hears `421 4.3.2`.
    #[error("shutting down")]
    ShuttingDown,
}

/// Where SMTP sessions hand accepted messages.
pub trait Intake: Send + Sync + 'static {
    /// A fresh message id for a transaction that has just begun (MAIL FROM).
    fn next_mid(&self) -> Mid;

    /// Whether the spool has room now for a message of about `size` bytes; when not, the session
    /// answers `452 4.3.1` before reading any message text.
    fn has_room(&self, size: u64) -> bool;

    /// Stores the message durably and queues it for policy and delivery. Resolves only once the
    /// message is on disk (fsync'd), so the session may then answer `250`. `message` is exactly what
    /// every next hop will receive: the relay's `Received:` header followed by the accepted bytes.
    fn accept(
        &self,
        mid: Mid,
        envelope: Envelope,
        message: Vec<u8>,
    ) -> impl Future<Output = Result<(), AcceptError>> + Send;
}
