//! The one place that names wasmtime's generated bindings of `wit/policy.wit`.
//!
//! Everything crossing this file's edge is one of our own types: [`super::PolicyInput`] goes in,
//! [`super::Group`]s (not yet checked) come out.

use wasmtime::Store;
use wasmtime::component::{HasSelf, InstancePre, Linker};

use super::sandbox::StoreState;
use super::{Decision, Group, PolicyInput};
use crate::envelope::Direction;

// In a module of its own: the world's `use types.{message, group}` puts names at its root that
// would clash with ours.
mod wit {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "policy",
    });
}

use wit::postern::policy::{log, types};
use wit::{Policy, PolicyPre};

/// A module checked against the `policy` world, ready to instantiate.
#[derive(Clone)]
pub struct PolicyModule {
    pre: PolicyPre<StoreState>,
}

/// The module answered with its own error text (as opposed to trapping).
pub type GuestResult<T> = Result<T, String>;

impl PolicyModule {
    /// Fails when the component lacks an export of the world or exports it with another type.
    pub fn new(pre: InstancePre<StoreState>) -> wasmtime::Result<PolicyModule> {
        Ok(PolicyModule {
            pre: PolicyPre::new(pre)?,
        })
    }

    pub fn validate(
        &self,
        store: &mut Store<StoreState>,
        config: &str,
    ) -> wasmtime::Result<GuestResult<()>> {
        let policy = self.pre.instantiate(&mut *store)?;
        policy.call_validate(store, config)
    }

    pub fn evaluate(
        &self,
        store: &mut Store<StoreState>,
        input: &PolicyInput,
        config: &str,
    ) -> wasmtime::Result<GuestResult<Vec<Group>>> {
        let message = to_wire(input);
        let policy = self.pre.instantiate(&mut *store)?;
        let answer = policy.call_evaluate(store, &message, config)?;
        Ok(answer.map(|groups| groups.into_iter().map(from_wire).collect()))
    }
}

/// Adds the host's imports of the world (the `log` interface) to `linker`.
pub fn add_to_linker(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    Policy::add_to_linker::<StoreState, HasSelf<StoreState>>(linker, |state| state)
}

impl log::Host for StoreState {
    fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Debug => tracing::Level::DEBUG,
            log::Level::Info => tracing::Level::INFO,
            log::Level::Warn => tracing::Level::WARN,
            log::Level::Error => tracing::Level::ERROR,
        };
        StoreState::log(self, level, &message);
    }
}

impl types::Host for StoreState {}

fn to_wire(input: &PolicyInput) -> types::Message {
    types::Message {
        mid: input.mid.0,
        listener: input.listener.clone(),
        direction: match input.direction {
            Direction::Incoming => types::Direction::Incoming,
            Direction::Outgoing => types::Direction::Outgoing,
        },
        client_ip: input.client_ip.to_string(),
        helo: input.helo.clone(),
        tls: input.tls.as_ref().map(|tls| types::TlsInfo {
            protocol: tls.protocol.clone(),
            cipher: tls.cipher.clone(),
        }),
        sender: input.sender.clone(),
        recipients: input.recipients.clone(),
        headers: input
            .headers
            .iter()
            .map(|(name, value)| types::Header {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        size: input.size,
    }
}

fn from_wire(group: types::Group) -> Group {
    Group {
        policy: group.policy,
        recipients: group.recipients,
        decision: match group.decision {
            types::Decision::NoScan => Decision::NoScan,
            types::Decision::DefaultIntake => Decision::DefaultIntake,
            types::Decision::CustomIntake(address) => Decision::CustomIntake(address),
        },
    }
}
