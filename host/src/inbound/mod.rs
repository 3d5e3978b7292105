//! Inbound SMTP: listeners ([`listener`]) accept connections and run a [`session`] for each, which
//! speaks the protocol of [`crate::smtp`] over a buffered [`connection`], offers STARTTLS ([`tls`]),
//! puts the relay's trace header on top ([`trace`]) and hands accepted messages to the
//! [`crate::intake::Intake`].

mod connection;
pub mod listener;
pub mod session;
pub mod tls;
pub mod trace;

#[cfg(test)]
mod tests;

pub use listener::{IcidCounter, bind, serve};
pub use session::{Peer, ReverseDns, ReverseName, SessionSettings, run_session};
pub use tls::{TlsError, acceptor, tls_info};
