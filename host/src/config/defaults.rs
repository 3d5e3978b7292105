//! The default of every setting, in one place so the README and the code cannot disagree.

use std::time::Duration;

/// The embedded default listener: loopback only.
pub const LISTEN_ADDRESS: &str = "127.0.0.1:2525";
pub const LISTENER_NAME: &str = "Inbound";

pub const MAX_LINE_LENGTH: usize = 2048;
pub const MAX_DATA_LINE_LENGTH: usize = 64 * 1024;
pub const MAX_MESSAGE_SIZE: usize = 32 * 1024 * 1024;
pub const MAX_RECIPIENTS: usize = 1000;
pub const MAX_CONNECTIONS: usize = 1024;
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
pub const DATA_TIMEOUT: Duration = Duration::from_secs(600);
pub const MAX_ERRORS: usize = 20;
pub const MAX_RECEIVED_HEADERS: usize = 50;
pub const REVERSE_DNS_TIMEOUT: Duration = Duration::from_secs(2);

pub const SPOOL_DIRECTORY: &str = "postern-spool";
pub const MIN_FREE_BYTES: u64 = 64 * 1024 * 1024;
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
pub const OUTBOUND_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
pub const OUTBOUND_DATA_TIMEOUT: Duration = Duration::from_secs(600);
pub const RETRY_INITIAL: Duration = Duration::from_secs(60);
pub const RETRY_MAX_INTERVAL: Duration = Duration::from_secs(3600);
pub const MAX_QUEUE_LIFETIME: Duration = Duration::from_secs(5 * 24 * 3600);
pub const MAX_CONNECTIONS_PER_HOST: usize = 20;
pub const MAX_MESSAGES_PER_CONNECTION: usize = 100;

pub const DNS_TIMEOUT: Duration = Duration::from_secs(5);
pub const MX_PORT: u16 = 25;

pub const TDC_FROM_ADDRESS: &str = "postern-journal@localhost";
pub const TDC_CLIENT_IP_HEADER: &str = "X-IronPort-RemoteIP";
pub const TDC_LIFETIME: Duration = Duration::from_secs(120);
pub const TDC_RETRIES: u32 = 1;
pub const TDC_RETRY_DELAY: Duration = Duration::from_secs(5);
pub const TDC_MIN_CONNECTIONS: usize = 3;
pub const TDC_MAX_CONNECTIONS: usize = 20;

pub const POLICY_MEMORY_LIMIT: usize = 16 * 1024 * 1024;
pub const POLICY_DEADLINE: Duration = Duration::from_millis(100);
