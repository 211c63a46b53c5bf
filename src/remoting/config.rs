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
    /// `true`: async callbacks run on the `rmq-io` thread as soon as their response is read,
    /// with no hand-off to the callback pool (Java `disableCallbackExecutor`, false). That saves
    /// a thread wake-up per call, about half the client's CPU per async send when responses
    /// arrive one at a time, but every connection waits while a callback runs: callbacks must
    /// be short and must never block, and never make a sync call (it would wait for the thread
    /// that runs it, until its timeout). Calls that fail (timeout, closed connection) and
    /// requests from brokers still go to the pool.
    pub disable_callback_executor: bool,
    /// A connection that received nothing for this long is closed, unless a call is waiting for
    /// an answer on it (Java `clientChannelMaxIdleTimeSeconds`, 120 s). Unlike Java, writes do
    /// not count as activity: heartbeats written into a connection that a firewall silently
    /// dropped must not keep it open.
    pub channel_max_idle: Duration,
    /// Header encoding used for every request this client sends (Java
    /// `rocketmq.serialize.type`, JSON).
    pub serialize_type: SerializeType,
    /// How long `shutdown` waits for the io thread and for running callbacks (5 s).
    pub shutdown_timeout: Duration,
    /// Bytes that may wait to be written on one connection (64 MiB): requests of every kind,
    /// and responses to the peer's requests, counted from the moment they are queued until
    /// they are in the kernel's socket buffer. A call that would go past it fails at once with
    /// [`Error::WriteQueueFull`](crate::Error::WriteQueueFull) instead of queueing (a response
    /// to the peer is dropped and logged), so a peer that stops reading costs at most this much
    /// memory. A frame larger than this can never be sent.
    ///
    /// Java leaves this unbounded. 64 MiB holds sixteen messages of the largest size a broker
    /// accepts by default (4 MiB) or four of the largest frames (16 MiB), far more than a
    /// connection that keeps up ever holds, and it takes long enough to fill that calls time
    /// out first when the peer is merely slow.
    pub max_queued_bytes: usize,
    /// A connection with bytes waiting to be written that could not write a single byte for
    /// this long is closed and its calls fail (5 s): the peer stopped reading. Checked once a
    /// second. Longer than the default 3 s call timeout, so a broker's short pause costs the
    /// calls that timed out but not the connection.
    pub write_stall_timeout: Duration,
    /// Requests from peers (`NOTIFY_CONSUMER_IDS_CHANGED`, `CHECK_TRANSACTION_STATE`, ...)
    /// waiting for or running on the callback pool, at most (10 000). Beyond it a request is
    /// answered at once with `SYSTEM_BUSY` and the remark `[OVERLOAD]system busy, ...`, as Java
    /// does when a processor's executor rejects work; a one-way request is dropped with a
    /// warning. Java's client queues these without bound; 10 000 is the capacity the broker
    /// gives its own send queue, and a healthy broker sends a client a handful at a time.
    pub max_pending_broker_requests: usize,
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
            disable_callback_executor: false,
            channel_max_idle: Duration::from_secs(120),
            serialize_type: SerializeType::Json,
            shutdown_timeout: Duration::from_secs(5),
            max_queued_bytes: 64 * 1024 * 1024,
            write_stall_timeout: Duration::from_secs(5),
            max_pending_broker_requests: 10_000,
            tls: None,
        }
    }
}
