//! Delivery to next hops: where mail goes, and the SMTP client that takes it there. The queue
//! (`crate::queue`) decides when; this module only knows how.
//!
//! - [`reply`]: the peer's replies ([`PeerReply`]) and their parser.
//! - [`tls`]: the rustls client configurations, built once ([`TlsConfigs`]).

pub mod reply;
pub mod tls;

pub use reply::{PeerReply, Stage};
pub use tls::{TlsConfigs, TlsSetupError};
