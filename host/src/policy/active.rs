//! The policy module serving right now, and the one before it for a rollback.

use std::sync::{Arc, PoisonError, RwLock};

use super::{Evaluation, LoadedModule, ModuleIdentity, PolicyInput};

/// Holds the serving module. A swap is atomic: an evaluation takes the current module once and
/// uses only that version, even if a swap happens while it runs.
pub struct ActivePolicy {
    modules: RwLock<Modules>,
}

struct Modules {
    current: Arc<LoadedModule>,
    previous: Option<Arc<LoadedModule>>,
}

impl ActivePolicy {
    pub fn new(module: LoadedModule) -> ActivePolicy {
        ActivePolicy {
            modules: RwLock::new(Modules {
                current: Arc::new(module),
                previous: None,
            }),
        }
    }

    /// The module that serves new evaluations.
    pub fn current(&self) -> Arc<LoadedModule> {
        let modules = self.modules.read().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(&modules.current)
    }

    pub fn identity(&self) -> ModuleIdentity {
        self.current().identity().clone()
    }

    /// Puts `module` in service and keeps the old one for [`ActivePolicy::rollback`]; returns the
    /// old one's identity. Evaluations already running finish on the old module.
    pub fn swap(&self, module: LoadedModule) -> ModuleIdentity {
        let module = Arc::new(module);
        let mut modules = self.modules.write().unwrap_or_else(PoisonError::into_inner);
        let old = std::mem::replace(&mut modules.current, module);
        let identity = old.identity().clone();
        modules.previous = Some(old);
        tracing::info!(
            module = %modules.current.identity(),
            replaced = %identity,
            "policy module swapped in"
        );
        identity
    }

    /// Puts the previous module back in service (and the current one aside, so a second rollback
    /// undoes the first). Returns the identity now serving, or `None` when there is no previous.
    pub fn rollback(&self) -> Option<ModuleIdentity> {
        let mut modules = self.modules.write().unwrap_or_else(PoisonError::into_inner);
        let previous = modules.previous.take()?;
        let replaced = std::mem::replace(&mut modules.current, previous);
        modules.previous = Some(replaced);
        let identity = modules.current.identity().clone();
        tracing::warn!(module = %identity, "policy module rolled back");
        Some(identity)
    }

    /// Evaluates `input` with the current module. Blocking: call it from
    /// `tokio::task::spawn_blocking`, never on a reactor thread.
    pub fn evaluate(&self, input: &PolicyInput) -> Evaluation {
        self.current().evaluate(input)
    }

    /// How many evaluations have ended in the failure policy, for metrics.
    pub fn failures(&self) -> u64 {
        self.current().failures()
    }
}
