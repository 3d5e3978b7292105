//! The running relay: opens the mail log, the spool, the policy module and the queues, resumes
//! what the spool still holds, starts the listeners, and shuts all of it down in order.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, TlsMode};
use crate::dispatch::{Dispatcher, Spooled};
use crate::envelope::{Envelope, Mid};
use crate::inbound::{self, IcidCounter, ReverseDns, ReverseName, SessionSettings};
use crate::intake::{AcceptError, Intake};
use crate::maillog::{Destinations, MailLog};
use crate::outbound::Resolver;
use crate::policy::{ActivePolicy, ModuleIdentity, PolicyEngine};
use crate::queue::Queue;
use crate::spool::Spool;

/// Messages being dispatched at once; past this, the `250` waits (back-pressure on clients).
const DISPATCH_IN_FLIGHT: usize = 1024;
/// How long shutdown waits for sessions and deliveries in flight. Whatever is still running then
/// is abandoned: its messages are in the spool and go out after the next start.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Why the relay could not start. Each message is whole (it names the file or listener and says
/// what went wrong), so none of them is also chained as a source.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the mail log {}: {error}", path.display())]
    MailLog {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Spool(#[from] crate::spool::SpoolError),
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    #[error("cannot read policy module {}: {error}", path.display())]
    ModuleFile {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    #[error("{0}")]
    Module(crate::policy::LoadError),
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
    #[error("listener {name}: {error}")]
    ListenerTls {
        name: String,
        error: Box<crate::inbound::TlsError>,
    },
    #[error("listener {name} cannot listen on {address}: {error}")]
    Bind {
        name: String,
        address: SocketAddr,
        error: std::io::Error,
    },
}

/// Options that are not part of the configuration file.
#[derive(Clone, Debug, Default)]
pub struct StartOptions {
    /// Keep mail-log lines in memory as well (for `demo` and tests).
    pub capture_log: bool,
}

/// A started relay.
pub struct Relay {
    /// The address each listener is bound to, in configuration order (port 0 resolved).
    pub listen_addresses: Vec<SocketAddr>,
    pub log: MailLog,
    pub queue: Queue,
    pub policy: Arc<ActivePolicy>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("listen_addresses", &self.listen_addresses)
            .finish()
    }
}

/// The seam between sessions and the rest: spool, then dispatch.
struct RelayIntake {
    spool: Spool,
    dispatcher: Arc<Dispatcher>,
    in_flight: Arc<Semaphore>,
    tasks: TaskTracker,
}

impl Intake for RelayIntake {
    fn next_mid(&self) -> Mid {
        self.spool.next_mid()
    }

    fn has_room(&self, size: u64) -> bool {
        self.spool.has_room(size)
    }

    async fn accept(
        &self,
        mid: Mid,
        envelope: Envelope,
        message: Vec<u8>,
    ) -> Result<(), AcceptError> {
        if !self.spool.has_room(message.len() as u64) {
            return Err(AcceptError::StorageFull);
        }
        let location = self.spool.store(mid, &envelope, &message).await?;
        let permit = Arc::clone(&self.in_flight)
            .acquire_owned()
            .await
            .map_err(|_| AcceptError::ShuttingDown)?;
        let dispatcher = Arc::clone(&self.dispatcher);
        let spooled = Spooled {
            mid,
            envelope,
            message: Arc::new(message),
            location,
        };
        self.tasks.spawn(async move {
            dispatcher.dispatch(spooled).await;
            drop(permit);
        });
        Ok(())
    }
}

/// Client names for the `New SMTP ICID` line, forward-confirmed; the session bounds the wait.
struct ReverseResolver(Resolver);

impl ReverseDns for ReverseResolver {
    fn lookup(
        &self,
        ip: std::net::IpAddr,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<ReverseName>> + Send + '_>> {
        Box::pin(async move {
            let (name, verified) = self.0.reverse_name(ip).await?;
            Some(ReverseName { name, verified })
        })
    }
}

impl Relay {
    /// Starts everything; returns once the listeners are accepting.
    pub async fn start(config: Config, options: StartOptions) -> Result<Relay, StartError> {
        let log = MailLog::open(Destinations {
            file: config.log.mail_log.clone(),
            stdout: config.log.stdout,
            capture: options.capture_log,
        })
        .map_err(|error| StartError::MailLog {
            path: config.log.mail_log.clone().unwrap_or_default(),
            error,
        })?;
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();

        let (spool, recovered) = Spool::open(
            &config.spool.directory,
            config.spool.segment_bytes,
            config.spool.min_free_bytes,
        )?;
        let policy = Arc::new(ActivePolicy::new(load_policy(&config)?));
        log_identity(&log, &policy.identity());
        announce_tdc(&config, &log);

        let queue = Queue::new(
            &config,
            spool.clone(),
            log.clone(),
            shutdown.clone(),
            tasks.clone(),
        )?;
        let dispatcher = Arc::new(Dispatcher::new(
            &config,
            spool.clone(),
            queue.clone(),
            Arc::clone(&policy),
            log.clone(),
        ));
        if !recovered.is_empty() {
            log.info(format_args!(
                "{} message(s) recovered from the spool",
                recovered.len()
            ));
        }
        for message in recovered {
            let dispatcher = Arc::clone(&dispatcher);
            tasks.spawn(async move { dispatcher.resume(message).await });
        }

        let intake = Arc::new(RelayIntake {
            spool,
            dispatcher,
            in_flight: Arc::new(Semaphore::new(DISPATCH_IN_FLIGHT)),
            tasks: tasks.clone(),
        });
        let icids = Arc::new(IcidCounter::starting_at(1));
        let reverse_dns = match config.smtp.reverse_dns {
            true => Some(Arc::new(ReverseResolver(
                Resolver::new(&config.dns).map_err(crate::queue::QueueError::from)?,
            ))),
            false => None,
        };
        let mut listen_addresses = Vec::new();
        for listener in &config.listeners {
            let settings = SessionSettings::new(
                listener.clone(),
                config.smtp.clone(),
                config.hostname.clone(),
            )
            .map_err(|source| StartError::ListenerTls {
                name: listener.name.clone(),
                error: Box::new(source),
            })?;
            let settings = match &reverse_dns {
                Some(resolver) => {
                    settings.with_reverse_dns(Arc::clone(resolver) as Arc<dyn ReverseDns>)
                }
                None => settings,
            };
            let socket = inbound::bind(listener)
                .await
                .map_err(|error| StartError::Bind {
                    name: listener.name.clone(),
                    address: listener.address,
                    error,
                })?;
            let address = socket.local_addr().unwrap_or(listener.address);
            listen_addresses.push(address);
            log.info(format_args!(
                "Listener {} listening on {address}",
                listener.name
            ));
            tasks.spawn(inbound::serve(
                socket,
                Arc::new(settings),
                Arc::clone(&intake),
                log.clone(),
                Arc::clone(&icids),
                shutdown.clone(),
                tasks.clone(),
            ));
        }
        Ok(Relay {
            listen_addresses,
            log,
            queue,
            policy,
            shutdown,
            tasks,
        })
    }

    /// Stops accepting, lets sessions answer `421`, waits for in-flight work, flushes the log.
    /// What is still queued stays in the spool for the next start.
    pub async fn shutdown(self) {
        self.log.info(format_args!("postern shutting down"));
        self.shutdown.cancel();
        self.tasks.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.tasks.wait())
            .await
            .is_err()
        {
            self.log.warning(format_args!(
                "{} task(s) still running after {}s; left to the next start (their mail is spooled)",
                self.tasks.len(),
                SHUTDOWN_GRACE.as_secs()
            ));
        }
        self.log.close();
    }

    /// A token that, when cancelled, stops the relay's tasks (for signal handlers).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// The policy module `config` names (or the bundled one), compiled, type-checked against the
/// interface and past its canary evaluation: what `serve` starts with and `check-config` checks.
pub fn load_policy(config: &Config) -> Result<crate::policy::LoadedModule, StartError> {
    let engine = PolicyEngine::new(&config.policy)?;
    Ok(match &config.policy.module {
        Some(path) => {
            let wasm = std::fs::read(path).map_err(|error| StartError::ModuleFile {
                path: path.clone(),
                error,
            })?;
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "module".into());
            engine
                .load(&name, &wasm, config.policy.module_config.clone())
                .map_err(StartError::Module)?
        }
        None => engine
            .bundled(&config.mail_policies)
            .map_err(StartError::Module)?,
    })
}

fn log_identity(log: &MailLog, id: &ModuleIdentity) {
    log.info(format_args!(
        "Policy module {} loaded, sha256 {}",
        id.name, id.sha256
    ));
}

fn announce_tdc(config: &Config, log: &MailLog) {
    match (&config.tdc.intake_address, config.tdc.enabled) {
        (Some(address), true) => {
            log.info(format_args!(
                "TDC: enabled, Message Intake Address <{address}>"
            ));
            if config.tdc.tls == TlsMode::None {
                log.warning(format_args!(
                    "TDC: TLS to the intake is off (tdc.tls = \"none\"): journal copies travel in plain text"
                ));
            } else {
                // Routes inherit tdc.tls; one may still turn TLS off for itself.
                for route in config.tdc.routes.iter().filter(|r| r.tls == TlsMode::None) {
                    log.warning(format_args!(
                        "TDC: TLS to intake host {}:{} is off (tdc.route tls = \"none\"): journal copies travel in plain text",
                        route.host, route.port
                    ));
                }
            }
        }
        _ => log.info(format_args!(
            "TDC: disabled; set [tdc] intake_address in the configuration to journal clean mail"
        )),
    }
}
