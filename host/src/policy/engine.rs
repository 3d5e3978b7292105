//! Compiling, checking and running policy modules: the wasmtime `Engine`, `Linker` and limits.
//!
//! Engines are shared process-wide, one per memory limit (the only engine-level setting that
//! depends on the relay's config), with the compiled components cached by sha256: tests that start
//! several relays in one process compile the bundled module once. Per module there is one
//! `InstancePre`; per evaluation a fresh `Store` with the memory cap and the epoch deadline.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};

use super::answer;
use super::bindings::PolicyModule;
use super::bundled;
use super::sandbox::StoreState;
use super::{Evaluation, FailureKind, PolicyFailure, PolicyInput};
use crate::config::{FailurePolicy, MailPolicyTable, PolicyConfig};
use crate::envelope::{Direction, Mid};

/// How often the background thread advances the engines' epoch; deadlines are counted in ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Bytes of each instance's linear memory kept resident between evaluations: a Rust guest's
/// 1 MiB stack, its data and the start of its heap. Measured with `benches/policy_eval.rs`:
/// median 124 µs with none kept, 99 µs with 1 MiB, 69 µs with 2 MiB, 75 µs with 4 MiB.
const KEEP_RESIDENT: usize = 2 << 20;

/// Instances that may exist at once per engine (pooling allocator slots). Evaluations beyond this
/// wait for a slot rather than fail.
pub const MAX_CONCURRENT_INSTANCES: u32 = 128;

/// The engine could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot set up the Wasm engine: {0}")]
    Engine(String),
}

/// Why a module was not loaded; the module that was serving keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("policy module {name:?} does not compile as a component: {reason}")]
    Compile { name: String, reason: String },
    #[error("policy module {name:?} does not implement postern:policy/policy@0.1.0: {reason}")]
    Interface { name: String, reason: String },
    #[error("policy module {name:?} failed while checking its configuration: {reason}")]
    ValidateFailed { name: String, reason: String },
    #[error("policy module {name:?} rejected its configuration: {reason}")]
    Rejected { name: String, reason: String },
    #[error("policy module {name:?} failed the canary evaluation: {failure}")]
    Canary {
        name: String,
        failure: PolicyFailure,
    },
}

/// Which module is serving: shown to operators and logged on every load and swap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleIdentity {
    pub name: String,
    /// Of the module's bytes, lowercase hex.
    pub sha256: String,
    pub loaded_at: SystemTime,
}

impl fmt::Display for ModuleIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (sha256 {})", self.name, self.sha256)
    }
}

/// Loads policy modules under the relay's sandbox settings.
#[derive(Clone)]
pub struct PolicyEngine {
    shared: Arc<Shared>,
    limits: Limits,
    failures: Arc<AtomicU64>,
}

#[derive(Clone)]
struct Limits {
    memory_bytes: usize,
    deadline_ticks: u64,
    failure: FailurePolicy,
}

/// One engine, its linker and its compiled components.
struct Shared {
    engine: Engine,
    linker: Linker<StoreState>,
    components: Mutex<HashMap<[u8; 32], Component>>,
    slots: Slots,
}

impl PolicyEngine {
    pub fn new(config: &PolicyConfig) -> Result<PolicyEngine, PolicyError> {
        let shared = shared_engine(config.memory_limit_bytes)?;
        // One tick more than the deadline: the first tick may come right after the call starts.
        let ticks = config
            .deadline
            .as_nanos()
            .div_ceil(EPOCH_TICK.as_nanos())
            .max(1)
            + 1;
        Ok(PolicyEngine {
            shared,
            limits: Limits {
                memory_bytes: config.memory_limit_bytes,
                deadline_ticks: u64::try_from(ticks).unwrap_or(u64::MAX),
                failure: config.failure.clone(),
            },
            failures: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Compiles `wasm`, checks it against the `policy` world, has it validate `module_config`
    /// and answer a canary message; only a module that passes all of that is returned.
    pub fn load(
        &self,
        name: &str,
        wasm: &[u8],
        module_config: String,
    ) -> Result<LoadedModule, LoadError> {
        let sha256: [u8; 32] = Sha256::digest(wasm).into();
        let component = self.component(name, wasm, sha256)?;
        let interface = |e: wasmtime::Error| LoadError::Interface {
            name: name.to_string(),
            reason: format!("{e:#}"),
        };
        let pre = self
            .shared
            .linker
            .instantiate_pre(&component)
            .map_err(interface)?;
        let module = PolicyModule::new(pre).map_err(interface)?;
        let loaded = LoadedModule {
            identity: ModuleIdentity {
                name: name.to_string(),
                sha256: hex(&sha256),
                loaded_at: SystemTime::now(),
            },
            name: Arc::from(name),
            module,
            config: module_config,
            shared: Arc::clone(&self.shared),
            limits: self.limits.clone(),
            failures: Arc::clone(&self.failures),
        };

        let slot = self.shared.slots.acquire();
        let mut store = loaded.store();
        match loaded.module.validate(&mut store, &loaded.config) {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => {
                return Err(LoadError::Rejected {
                    name: name.to_string(),
                    reason,
                });
            }
            Err(error) => {
                let failure = classify(&error, &store);
                return Err(LoadError::ValidateFailed {
                    name: name.to_string(),
                    reason: failure.to_string(),
                });
            }
        }
        drop(slot);
        let canary = canary_input();
        if let Err(failure) = loaded.try_evaluate(&canary) {
            return Err(LoadError::Canary {
                name: name.to_string(),
                failure,
            });
        }
        tracing::info!(module = %loaded.identity, "policy module loaded");
        Ok(loaded)
    }

    /// The built-in default policy module, configured with the mail policy table.
    pub fn bundled(&self, table: &MailPolicyTable) -> Result<LoadedModule, LoadError> {
        self.load(
            bundled::DEFAULT_POLICY_NAME,
            bundled::DEFAULT_POLICY_WASM,
            table.to_module_config(),
        )
    }

    /// How many evaluations of this engine's modules ended in the failure policy.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    fn component(&self, name: &str, wasm: &[u8], sha256: [u8; 32]) -> Result<Component, LoadError> {
        let cache = &self.shared.components;
        if let Some(component) = cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&sha256)
        {
            return Ok(component.clone());
        }
        // Compiled outside the lock: it takes a while, and two threads compiling the same
        // module at once only costs time.
        let component =
            Component::new(&self.shared.engine, wasm).map_err(|e| LoadError::Compile {
                name: name.to_string(),
                reason: format!("{e:#}"),
            })?;
        cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(sha256, component.clone());
        Ok(component)
    }
}

/// A module that passed [`PolicyEngine::load`], with its configuration string.
pub struct LoadedModule {
    identity: ModuleIdentity,
    name: Arc<str>,
    module: PolicyModule,
    config: String,
    shared: Arc<Shared>,
    limits: Limits,
    failures: Arc<AtomicU64>,
}

impl LoadedModule {
    pub fn identity(&self) -> &ModuleIdentity {
        &self.identity
    }

    /// Evaluates `input` in a fresh instance. Never fails: a module that traps, runs out of time
    /// or memory, or answers wrongly gets the failure policy's groups, with the reason. Blocking.
    pub fn evaluate(&self, input: &PolicyInput) -> Evaluation {
        match self.try_evaluate(input) {
            Ok(groups) => Evaluation {
                groups,
                failure: None,
            },
            Err(failure) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    module = %self.identity,
                    mid = %input.mid,
                    kind = failure.kind.as_str(),
                    reason = %failure.reason,
                    "policy module failed; applying the failure policy"
                );
                Evaluation {
                    groups: answer::failure_groups(&self.limits.failure, input.recipients.len()),
                    failure: Some(failure),
                }
            }
        }
    }

    /// How many evaluations ended in the failure policy (counted per engine).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    pub(super) fn shares_compiled_code_with(&self, other: &LoadedModule) -> bool {
        let cached = self
            .shared
            .components
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::ptr_eq(&self.shared, &other.shared)
            && self.identity.sha256 == other.identity.sha256
            && cached.keys().any(|key| hex(key) == self.identity.sha256)
    }

    fn try_evaluate(&self, input: &PolicyInput) -> Result<Vec<super::Group>, PolicyFailure> {
        let _slot = self.shared.slots.acquire();
        let mut store = self.store();
        match self.module.evaluate(&mut store, input, &self.config) {
            Ok(Ok(groups)) => {
                answer::check(&groups, input.recipients.len())?;
                Ok(groups)
            }
            Ok(Err(reason)) => Err(PolicyFailure {
                kind: FailureKind::GuestError,
                reason: super::sandbox::truncate(&reason, super::sandbox::MAX_LOG_LINE).to_string(),
            }),
            Err(error) => Err(classify(&error, &store)),
        }
    }

    fn store(&self) -> Store<StoreState> {
        let state = StoreState::new(Arc::clone(&self.name), self.limits.memory_bytes);
        let mut store = Store::new(&self.shared.engine, state);
        store.limiter(|state| &mut state.memory);
        store.set_epoch_deadline(self.limits.deadline_ticks);
        store.epoch_deadline_trap();
        store
    }
}

/// Names the failure behind a wasmtime error from an instantiation or a call.
fn classify(error: &wasmtime::Error, store: &Store<StoreState>) -> PolicyFailure {
    let kind = if store.data().memory.exceeded {
        FailureKind::Memory
    } else if matches!(error.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
        FailureKind::Deadline
    } else {
        FailureKind::Trap
    };
    let reason = match kind {
        FailureKind::Deadline => "the evaluation ran past its deadline".to_string(),
        _ => format!("{error:#}"),
    };
    PolicyFailure { kind, reason }
}

/// A message every sound module can answer; it must before the module may serve.
fn canary_input() -> PolicyInput {
    PolicyInput {
        mid: Mid(0),
        listener: "canary".to_string(),
        direction: Direction::Incoming,
        client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        helo: "canary.postern.invalid".to_string(),
        tls: None,
        sender: "canary@postern.invalid".to_string(),
        recipients: vec![
            "first@example.com".to_string(),
            "second@example.org".to_string(),
        ],
        headers: vec![
            ("From".to_string(), b" canary@postern.invalid".to_vec()),
            ("Subject".to_string(), b" postern policy canary".to_vec()),
        ],
        size: 0,
    }
}

/// The process-wide engine for `memory_limit`, created on first use.
fn shared_engine(memory_limit: usize) -> Result<Arc<Shared>, PolicyError> {
    static ENGINES: OnceLock<Mutex<HashMap<usize, Arc<Shared>>>> = OnceLock::new();
    let engines = ENGINES.get_or_init(Default::default);
    let mut engines = engines.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(shared) = engines.get(&memory_limit) {
        return Ok(Arc::clone(shared));
    }
    let shared = Arc::new(new_engine(memory_limit)?);
    start_epoch_ticker(&shared.engine)?;
    engines.insert(memory_limit, Arc::clone(&shared));
    Ok(shared)
}

fn new_engine(memory_limit: usize) -> Result<Shared, PolicyError> {
    let error = |e: wasmtime::Error| PolicyError::Engine(format!("{e:#}"));
    let mut config = Config::new();
    config.epoch_interruption(true);
    // Reusing instance slots makes a fresh instance per message cheap (no mmap per call).
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(MAX_CONCURRENT_INSTANCES)
        .total_core_instances(MAX_CONCURRENT_INSTANCES * 8)
        .total_memories(MAX_CONCURRENT_INSTANCES)
        .total_tables(MAX_CONCURRENT_INSTANCES * 4)
        .max_memory_size(memory_limit)
        // A policy's heap is small and reused at once by the next message: zeroing it with
        // memset is cheaper than madvise and the page faults of touching it again.
        .linear_memory_keep_resident(KEEP_RESIDENT.min(memory_limit))
        .table_keep_resident(KEEP_RESIDENT / 16);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    let engine = match Engine::new(&config) {
        Ok(engine) => engine,
        Err(pooling_error) => {
            // A host with little address space cannot reserve the pool; run without it.
            tracing::warn!(
                "the pooling allocator is unavailable ({pooling_error:#}); policy instances are \
                 allocated on demand"
            );
            config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
            Engine::new(&config).map_err(error)?
        }
    };
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(error)?;
    super::bindings::add_to_linker(&mut linker).map_err(error)?;
    Ok(Shared {
        engine,
        linker,
        components: Mutex::new(HashMap::new()),
        slots: Slots::new(MAX_CONCURRENT_INSTANCES as usize),
    })
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is gone. Without it no
/// deadline would fire.
fn start_epoch_ticker(engine: &Engine) -> Result<(), PolicyError> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("policy-epoch".to_string())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map(drop)
        .map_err(|e| PolicyError::Engine(format!("cannot start the epoch thread: {e}")))
}

/// A counting semaphore: at most as many instances as the pool has slots.
struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

struct SlotGuard<'a>(&'a Slots);

impl Slots {
    fn new(count: usize) -> Slots {
        Slots {
            free: Mutex::new(count),
            freed: Condvar::new(),
        }
    }

    fn acquire(&self) -> SlotGuard<'_> {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        while *free == 0 {
            free = self
                .freed
                .wait(free)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *free -= 1;
        SlotGuard(self)
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.0.freed.notify_one();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
