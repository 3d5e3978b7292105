//! The SMTP protocol as values, no I/O: commands parsed from lines ([`command`]), replies built by
//! name and encoded ([`reply`]), and the DATA reader that finds the real end of a message and
//! unstuffs it ([`data`]). The session in [`crate::inbound`] drives these over a stream.

pub mod command;
pub mod data;
pub mod reply;

pub use command::{Body, Command, CommandError, MailFrom, RcptTo};
pub use data::{DataError, DataLimits, DataMessage, DataReader};
pub use reply::{Reply, Status};
