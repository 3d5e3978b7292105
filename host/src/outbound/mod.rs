//! Delivery to next hops: where mail goes, and the SMTP client that takes it there. The queue
//! (`crate::queue`) decides when; this module only knows how.
//!
//! - [`resolve`]: the route table, MX and A/AAAA look-ups, domain literals → [`Target`]s; DNS
//!   failures as [`DnsError`] with the mail log's wording.
//! - [`client`]: one SMTP connection ([`SmtpClient`]): greeting, EHLO/HELO, STARTTLS per
//!   [`TlsMode`](crate::config::TlsMode), pipelined transactions, dot-stuffed bodies; per-recipient
//!   outcomes as values ([`SendOutcome`]) and what ends a connection as [`ConnectionError`].
//! - [`reply`]: the peer's replies ([`PeerReply`]) and their parser.
//! - [`tls`]: the rustls client configurations, built once ([`TlsConfigs`]).

pub mod client;
pub mod reply;
pub mod resolve;
pub mod tls;

#[cfg(test)]
pub(crate) mod test_smtp;

pub use client::{
    Capabilities, ClientSettings, ConnectionError, ErrorClass, RcptOutcome, SendOutcome, SmtpClient,
};
pub use reply::{PeerReply, Stage};
pub use resolve::{DnsError, Resolver, ResolverSetupError, Target};
pub use tls::{TlsConfigs, TlsSetupError};
