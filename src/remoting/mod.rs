//! Remoting: the wire protocol and the client that speaks it.
//!
//! [`RemotingClient`] is Java's `NettyRemotingClient` without Netty: one `rmq-io` thread runs a
//! mio event loop for every connection of the client, and an `rmq-cb` thread pool runs async
//! callbacks and the processors of broker-initiated requests. See [`RemotingClient`] for the call
//! contracts.
//!
//! # Threads
//!
//! * The calling thread connects (`connect_timeout`), encodes the request, queues it for the loop
//!   and, for `invoke_sync`, waits on a one-slot channel with the call's deadline.
//! * `rmq-io` owns the sockets and the response table. It reads each ready connection up to a
//!   budget per turn (so one peer that floods cannot starve the others), decodes frames,
//!   completes pending calls (only with a response from the connection the request left by),
//!   coalesces queued frames into `writev`, sweeps expired entries at their deadline and closes
//!   connections that received nothing for `channel_max_idle`. It never runs user code and
//!   never blocks.
//! * `rmq-cb` runs callbacks and processors. Requests from peers wait for it in a bounded
//!   queue (`max_pending_broker_requests`); beyond it they are answered `SYSTEM_BUSY`.
//!
//! Memory is bounded per connection: at most `max_queued_bytes` wait to be written (beyond it a
//! call fails with [`Error::WriteQueueFull`](crate::Error::WriteQueueFull)), and a connection
//! whose queue does not move for `write_stall_timeout` is closed.
//!
//! With [`RemotingClientConfig::tls`] set, every connection is TLS (rustls): the handshake is done
//! by the connecting thread within `connect_timeout`, then the loop encrypts and decrypts.
//!
//! A connection that fails (EOF, reset, malformed or oversized frame) is closed alone, and every
//! call pending on it fails at once with [`Error::ConnectionClosed`](crate::Error::ConnectionClosed)
//! naming the reason. A sync call that times out closes its connection too (Java's
//! `closeSocketIfTimeout`), so a peer that stopped answering without closing is given up.

mod client;
mod config;
mod event_loop;
mod handoff;
mod processor;
pub mod protocol;
mod rpc_hook;
pub(crate) mod tls;
mod transport;

/// The throwaway PKI of the TLS tests (tests/support/pki.rs), for unit tests anywhere.
#[cfg(test)]
#[allow(unreachable_pub)]
#[path = "../../tests/support/pki.rs"]
pub(crate) mod test_pki;

pub use client::RemotingClient;
pub use config::RemotingClientConfig;
pub(crate) use handoff::on_callback_pool;
pub use processor::{RequestContext, RequestProcessor};
pub use rpc_hook::RPCHook;
pub use tls::TlsConfig;
