//! [`RemotingClientConfig`]: Java's `NettyClientConfig` defaults.

use std::time::Duration;

use super::tls::TlsConfig;
use crate::remoting::protocol::{SerializeType, DEFAULT_MAX_FRAME_LEN};

/// Settings of a [`RemotingClient`](super::RemotingClient). `Default` gives Java's values.
///
/// ```
/// use std::time::Duration;
/// use rocketmq_sync::remoting::RemotingClientConfig;
///
/// let config = RemotingClientConfig {
///     connect_timeout: Duration::from_secs(1),
///     ..RemotingClientConfig::default()
/// };
/// assert_eq!(config.async_permits, 65535);
/// ```
#[derive(Debug, Clone)]
pub struct RemotingClientConfig {
    /// Longest time a TCP connect may take (Java `connectTimeoutMillis`, 3 s). A call's own
    /// timeout also bounds it.
    pub connect_timeout: Duration,
    /// Largest frame accepted from a peer (Java `NettyDecoder` 16 MiB). A larger length prefix
    /// closes the connection.
    pub max_frame_len: usize,
    /// Asynchronous calls in flight at most (Java `clientAsyncSemaphoreValue`, 65535).
    pub async_permits: usize,
    /// One-way calls not yet written at most (Java `clientOnewaySemaphoreValue`, 65535).
    pub oneway_permits: usize,
    /// Threads of the `rmq-cb` callback pool (Java `clientCallbackExecutorThreads`: the number
    /// of CPUs).
    pub callback_threads: usize,
    /// A connection with no traffic for this long is closed (Java
    /// `clientChannelMaxIdleTimeSeconds`, 120 s).
    pub channel_max_idle: Duration,
    /// Header encoding used for every request this client sends (Java
    /// `rocketmq.serialize.type`, JSON).
    pub serialize_type: SerializeType,
    /// How long `shutdown` waits for the io thread and for running callbacks (5 s).
    pub shutdown_timeout: Duration,
    /// `Some`: every connection is TLS with these settings (Java `useTLS`); `None` (the
    /// default): plaintext. The TLS handshake counts against `connect_timeout`.
    pub tls: Option<TlsConfig>,
}

impl Default for RemotingClientConfig {
    fn default() -> Self {
        RemotingClientConfig {
            connect_timeout: Duration::from_secs(3),
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            async_permits: 65535,
            oneway_permits: 65535,
            callback_threads: std::thread::available_parallelism().map_or(4, |n| n.get()),
            channel_max_idle: Duration::from_secs(120),
            serialize_type: SerializeType::Json,
            shutdown_timeout: Duration::from_secs(5),
            tls: None,
        }
    }
}
