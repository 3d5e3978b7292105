//! Delivery to next hops: where mail goes, and the SMTP client that takes it there. The queue
//! (`crate::queue`) decides when; this module only knows how.
//!
//! - [`resolve`]: the route table, MX and A/AAAA look-ups, domain literals → [`Target`]s; DNS
//!   failures as [`DnsError`] with the mail log's wording.
//! - [`reply`]: the peer's replies ([`PeerReply`]) and their parser.
//! - [`tls`]: the rustls client configurations, built once ([`TlsConfigs`]).

pub mod reply;
pub mod resolve;
pub mod tls;

#[cfg(test)]
pub(crate) mod test_dns;

pub use reply::{PeerReply, Stage};
pub use resolve::{DnsError, Resolver, ResolverSetupError, Target};
pub use tls::{TlsConfigs, TlsSetupError};
