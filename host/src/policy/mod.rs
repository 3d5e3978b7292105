//! The Wasm policy engine: asks the active policy module how each message's recipients are grouped.
//!
//! Sits between the spool (which hands over a stored message) and the queues (which splinter and
//! journal by the answer). Map of the module:
//!
//! - [`engine`]: one wasmtime `Engine` and `Linker` per process and memory limit, compiled
//!   components cached by sha256, loading and checking a module ([`PolicyEngine::load`]).
//! - `sandbox`: the per-evaluation `Store` state: a WASI context that grants nothing, the memory
//!   cap, the host's `log` import.
//! - `bindings`: the only file that names wasmtime's generated bindings of `wit/policy.wit`.
//! - `answer`: checks a module's answer against the message and turns failures into the
//!   configured failure policy's groups.
//! - [`active`]: the module serving right now, swapped atomically on hot-load ([`ActivePolicy`]).
//! - [`bundled`]: the default policy module built into the binary.
//!
//! Every evaluation gets a fresh instance, so no message can see another's state.

pub mod active;
mod answer;
mod bindings;
pub mod bundled;
pub mod engine;
mod sandbox;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::IpAddr;

pub use active::ActivePolicy;
pub use answer::POLICY_FAILURE;
pub use engine::{LoadError, LoadedModule, ModuleIdentity, PolicyEngine, PolicyError};

use crate::envelope::{Direction, Mid, TlsInfo};

/// What the relay tells a policy module about one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyInput {
    pub mid: Mid,
    /// The name of the listener that accepted the message.
    pub listener: String,
    pub direction: Direction,
    pub client_ip: IpAddr,
    pub helo: String,
    pub tls: Option<TlsInfo>,
    /// The reverse-path without angle brackets; empty for the null sender.
    pub sender: String,
    /// The forward-paths in RCPT order; groups name them by index.
    pub recipients: Vec<String>,
    /// Header fields in message order: name, and the raw value after the colon.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The message's size in bytes, as spooled.
    pub size: u64,
}

/// Whether and where a journal copy of a group's splinter goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    NoScan,
    /// To the global Message Intake Address.
    DefaultIntake,
    /// To this intake address (checked to be `local@domain`).
    CustomIntake(String),
}

/// The recipients that fell into one mail policy, and that policy's decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// The mail policy's name (never empty).
    pub policy: String,
    /// Indexes into [`PolicyInput::recipients`], each in exactly one group of an [`Evaluation`].
    pub recipients: Vec<u32>,
    pub decision: Decision,
}

/// The groups for one message, and why the failure policy made them if it did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluation {
    pub groups: Vec<Group>,
    /// Set when the module failed; `groups` are then the failure policy's.
    pub failure: Option<PolicyFailure>,
}

/// How a module failed on one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyFailure {
    pub kind: FailureKind,
    /// What happened, for the log (the trap, the guest's error text, what was wrong).
    pub reason: String,
}

/// The kinds of [`PolicyFailure`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The module trapped (a panic, an unreachable, a bad memory access) or could not start.
    Trap,
    /// The evaluation ran past the deadline.
    Deadline,
    /// The module tried to grow its memory past the cap.
    Memory,
    /// The module answered with an error.
    GuestError,
    /// The answer broke the rules: an unknown or repeated recipient, a missing one, a bad name or
    /// intake address, or too much output.
    InvalidAnswer,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Trap => "trap",
            FailureKind::Deadline => "deadline",
            FailureKind::Memory => "memory",
            FailureKind::GuestError => "guest-error",
            FailureKind::InvalidAnswer => "invalid-answer",
        }
    }
}

impl fmt::Display for PolicyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.reason)
    }
}
