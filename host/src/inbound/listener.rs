//! A listener: accepts connections (a permit from the connection limit first, then `accept`),
//! numbers them with ICIDs and runs a session for each on the relay's task tracker until shutdown.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::session::{Peer, SessionSettings, run_session};
use crate::config::ListenerConfig;
use crate::envelope::Icid;
use crate::intake::Intake;
use crate::maillog::MailLog;

/// The first pause after a failed `accept` (out of file descriptors, say); doubled each time.
const ACCEPT_BACKOFF_START: Duration = Duration::from_millis(10);
/// The longest pause between `accept` attempts.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Hands out connection ids, shared by all listeners of a relay.
#[derive(Debug, Default)]
pub struct IcidCounter(AtomicU64);

impl IcidCounter {
    /// The first id handed out is `first`.
    pub fn starting_at(first: u64) -> IcidCounter {
        IcidCounter(AtomicU64::new(first))
    }

    pub fn next(&self) -> Icid {
        Icid(self.0.fetch_add(1, Ordering::Relaxed))
    }
}

/// Binds the listener's address.
pub async fn bind(config: &ListenerConfig) -> io::Result<TcpListener> {
    TcpListener::bind(config.address).await
}

/// Accepts connections on `listener` until `shutdown`, each served by a session spawned on
/// `tracker`. Sessions still open at shutdown answer `421 4.3.2` at their next command; the caller
/// waits for them with `tracker.close(); tracker.wait()`.
pub async fn serve<I: Intake>(
    listener: TcpListener,
    settings: Arc<SessionSettings>,
    intake: Arc<I>,
    log: MailLog,
    icids: Arc<IcidCounter>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let permits = Arc::new(Semaphore::new(settings.limits.max_connections));
    loop {
        // The permit is taken before accepting, so that clients beyond the limit wait in the
        // kernel's backlog instead of holding a session.
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            permit = Arc::clone(&permits).acquire_owned() => {
                permit.expect("the connection semaphore is never closed")
            }
        };
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            stream = accept(&listener, &settings.listener.name) => stream,
        };
        let (stream, remote) = stream;
        let local = stream.local_addr().unwrap_or(settings.listener.address);
        // Replies are written in batches already; Nagle would only delay them.
        let _ = stream.set_nodelay(true);
        let peer = Peer {
            icid: icids.next(),
            remote,
            local,
        };
        let (settings, intake, log, shutdown) = (
            Arc::clone(&settings),
            Arc::clone(&intake),
            log.clone(),
            shutdown.clone(),
        );
        tracker.spawn(async move {
            run_session(stream, peer, settings, intake, log, shutdown).await;
            drop(permit);
        });
    }
}

/// Accepts one connection, retrying after errors with a growing pause: an error here (too many
/// open files, a connection reset before accept) is about one client or a passing shortage, never
/// a reason to stop listening.
async fn accept(listener: &TcpListener, name: &str) -> (TcpStream, std::net::SocketAddr) {
    let mut backoff = ACCEPT_BACKOFF_START;
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(e) => {
                tracing::warn!("listener {name}: accept failed: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
}
