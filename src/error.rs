//! The crate's error type.
//!
//! Every fallible public call returns [`Result<T>`](Result). [`Error`] is `#[non_exhaustive]`: match
//! the variants you care about and keep a wildcard arm. The query methods (`is_timeout`,
//! `response_code`, `broker_addr`) answer the common questions without matching.
//!
//! | Java exception | variant |
//! |---|---|
//! | `RemotingConnectException` | [`Error::Connect`] |
//! | `RemotingTimeoutException` | [`Error::Timeout`] |
//! | `RemotingSendRequestException` | [`Error::SendRequest`] |
//! | `RemotingTooMuchRequestException` | [`Error::TooManyRequests`] |
//! | `MQBrokerException` | [`Error::Broker`] |
//! | `MQClientException` | [`Error::Client`] |
//! | `RemotingCommandException` | [`Error::Codec`] |

use std::fmt;
use std::io;
use std::time::Duration;

pub use crate::remoting::protocol::CodecError;
use crate::remoting::protocol::ResponseCode;

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to RocketMQ.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A TCP connection to `addr` could not be established (Java `RemotingConnectException`).
    Connect {
        /// The address (or `;`-joined address list) that was tried.
        addr: String,
        /// The OS error.
        source: io::Error,
    },
    /// No response arrived in time (Java `RemotingTimeoutException`).
    Timeout {
        /// The peer address.
        addr: String,
        /// The time budget that ran out.
        timeout: Duration,
    },
    /// The request could not be written to the connection (Java `RemotingSendRequestException`).
    SendRequest {
        /// The peer address.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// The connection closed while the call was pending.
    ConnectionClosed {
        /// The peer address.
        addr: String,
        /// Why the connection closed, as far as the client knows.
        reason: String,
    },
    /// Too many asynchronous or one-way calls are in flight (Java
    /// `RemotingTooMuchRequestException`). The caller should back off.
    TooManyRequests {
        /// The configured bound that was hit.
        limit: usize,
    },
    /// The broker or name server answered with a non-success code (Java `MQBrokerException`).
    Broker {
        /// The response code.
        code: ResponseCode,
        /// The remark that came with it, if any.
        remark: String,
        /// The peer address.
        addr: String,
    },
    /// A client-side failure with a RocketMQ error code (Java `MQClientException`), for example
    /// "no route info of this topic" or an invalid message.
    Client {
        /// The client error code (see [`ClientErrorCode`]) or a broker response code.
        code: i32,
        /// A human-readable explanation.
        message: String,
    },
    /// A producer or consumer was used in the wrong lifecycle state (started twice, used before
    /// start, used after shutdown).
    ServiceState {
        /// The state it was in.
        state: crate::common::ServiceState,
        /// What was attempted.
        action: &'static str,
    },
    /// A configuration value is invalid. Raised by builders and `start()`.
    Config(String),
    /// A frame or body could not be encoded or decoded.
    Codec(CodecError),
    /// An I/O error that is not tied to one peer.
    Io(io::Error),
    /// `shutdown(timeout)` could not stop every thread in time. Everything else was shut down;
    /// these threads were told to stop and are left to finish on their own (a consume thread,
    /// for example, ends when the listener it runs returns).
    ShutdownTimeout {
        /// The timeout given to `shutdown`.
        timeout: Duration,
        /// The names of the threads still running (`rmq-cons-3`, `rmq-sched`, ...).
        threads: Vec<String>,
    },
}

/// Well-known client error codes (Java `ClientErrorCode`), carried by [`Error::Client`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientErrorCode;
// Also used: MESSAGE_ILLEGAL (13) for invalid messages, as Java's `Validators` does.

impl ClientErrorCode {
    /// Connecting to the broker failed.
    pub const CONNECT_BROKER_EXCEPTION: i32 = 10001;
    /// Accessing the broker timed out.
    pub const ACCESS_BROKER_TIMEOUT: i32 = 10002;
    /// The broker is not available.
    pub const BROKER_NOT_EXIST_EXCEPTION: i32 = 10003;
    /// No name server address is configured or reachable.
    pub const NO_NAME_SERVER_EXCEPTION: i32 = 10004;
    /// No route is known for the topic.
    pub const NOT_FOUND_TOPIC_EXCEPTION: i32 = 10005;
    /// The request's total time budget ran out (for a producer: across all retries).
    pub const REQUEST_TIMEOUT_EXCEPTION: i32 = 10006;
}

impl Error {
    /// `true` for [`Error::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }

    /// `true` for [`Error::TooManyRequests`]: back off and retry.
    pub fn is_too_many_requests(&self) -> bool {
        matches!(self, Error::TooManyRequests { .. })
    }

    /// `true` for errors of the connection itself: connect failure, write failure, closed
    /// connection or timeout. These are the errors after which a producer tries another broker.
    pub fn is_remoting(&self) -> bool {
        matches!(
            self,
            Error::Connect { .. }
                | Error::Timeout { .. }
                | Error::SendRequest { .. }
                | Error::ConnectionClosed { .. }
                | Error::TooManyRequests { .. }
        )
    }

    /// The broker's response code for [`Error::Broker`], or the code of [`Error::Client`] when it
    /// is a broker code.
    pub fn response_code(&self) -> Option<ResponseCode> {
        match self {
            Error::Broker { code, .. } => Some(*code),
            Error::Client { code, .. } if (0..10000).contains(code) => Some(ResponseCode(*code)),
            _ => None,
        }
    }

    /// The peer address the error is about, when there is one.
    pub fn broker_addr(&self) -> Option<&str> {
        match self {
            Error::Connect { addr, .. }
            | Error::Timeout { addr, .. }
            | Error::SendRequest { addr, .. }
            | Error::ConnectionClosed { addr, .. }
            | Error::Broker { addr, .. } => Some(addr),
            _ => None,
        }
    }

    pub(crate) fn client(code: i32, message: impl Into<String>) -> Self {
        Error::Client {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::Config(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Connect { addr, source } => write!(f, "connect to {addr} failed: {source}"),
            Error::Timeout { addr, timeout } => {
                write!(f, "wait response on {addr} timed out after {timeout:?}")
            }
            Error::SendRequest { addr, reason } => {
                write!(f, "send request to {addr} failed: {reason}")
            }
            Error::ConnectionClosed { addr, reason } => {
                write!(f, "connection to {addr} closed: {reason}")
            }
            Error::TooManyRequests { limit } => write!(
                f,
                "too many requests in flight (limit {limit}), invoke too fast"
            ),
            Error::Broker { code, remark, addr } => {
                write!(f, "broker {addr} answered {code}")?;
                if !remark.is_empty() {
                    write!(f, ": {remark}")?;
                }
                Ok(())
            }
            Error::Client { code, message } => write!(f, "client error {code}: {message}"),
            Error::ServiceState { state, action } => {
                write!(f, "cannot {action}: the service state is {state:?}")
            }
            Error::Config(msg) => write!(f, "invalid configuration: {msg}"),
            Error::Codec(e) => write!(f, "codec error: {e}"),
            Error::Io(e) => write!(f, "i/o error: {e}"),
            Error::ShutdownTimeout { timeout, threads } => write!(
                f,
                "shutdown did not finish within {timeout:?}: thread(s) still running: {}",
                threads.join(", ")
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connect { source, .. } => Some(source),
            Error::Codec(e) => Some(e),
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<CodecError> for Error {
    fn from(e: CodecError) -> Self {
        Error::Codec(e)
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_stays_small() {
        // Errors travel through channels and callbacks; keep them cheap to move.
        assert!(
            std::mem::size_of::<Error>() <= 64,
            "{}",
            std::mem::size_of::<Error>()
        );
    }

    #[test]
    fn error_is_send_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Error>();
    }
}
