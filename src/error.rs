//! The crate's error type.
//!
//! Every fallible public call returns [`Result<T>`](Result). [`Error`] is `#[non_exhaustive]`: match
//! the variants you care about and keep a wildcard arm. The query methods answer the common
//! questions without matching, and are the stable way to ask them:
//!
//! | question | method |
//! |---|---|
//! | did the broker refuse for flow control (`SYSTEM_BUSY`)? back off and retry | [`Error::is_system_busy`] |
//! | is the message itself invalid (Java `MESSAGE_ILLEGAL`)? retrying will not help | [`Error::is_message_illegal`] |
//! | were the credentials or permissions refused (ACL, `NO_PERMISSION`)? | [`Error::is_no_permission`] |
//! | is the topic unknown? | [`Error::is_topic_not_found`] |
//! | did a call time out? are too many in flight? is it the connection? | [`Error::is_timeout`], [`Error::is_too_many_requests`], [`Error::is_remoting`] |
//! | which broker code, which client code, which peer? | [`Error::response_code`], [`Error::client_error_code`], [`Error::broker_addr`] |
//!
//! [`ResponseCode`] and [`ClientErrorCode`] are open newtypes over the wire's `i32`: a code this
//! crate has no name for is still a value, and `Display` prints the Java name when there is one.
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
    /// A connection to `addr` could not be established (Java `RemotingConnectException`): the
    /// TCP connect failed, or, with TLS on, the TLS handshake did (an untrusted certificate, a
    /// peer that does not speak TLS, no answer in time).
    Connect {
        /// The address (or `;`-joined address list) that was tried.
        addr: String,
        /// The OS error, or what the TLS handshake reported.
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
    /// The connection to `addr` already has as many bytes waiting to be written as allowed
    /// (`RemotingClientConfig::max_queued_bytes`): the peer reads more slowly than it is sent
    /// to, or not at all. Nothing was sent. Back off, or use another peer; a connection that
    /// stays stuck is closed after `write_stall_timeout`.
    WriteQueueFull {
        /// The peer address.
        addr: String,
        /// The configured bound, in bytes.
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
        /// The code, as Java's `MQClientException.getResponseCode()`: one of Java's
        /// `ClientErrorCode` values, or a broker response code where Java puts one (see
        /// [`ClientErrorCode`]).
        code: ClientErrorCode,
        /// A human-readable explanation.
        message: String,
        /// The error this one wraps, if any: for a send that failed on every attempt, the last
        /// attempt's error. [`Error::response_code`] and the predicates look through it.
        source: Option<Box<Error>>,
    },
    /// A producer or consumer was used in the wrong lifecycle state (started twice, used before
    /// start, used after shutdown).
    ServiceState {
        /// The state it was in.
        state: crate::service_state::ServiceState,
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

/// The code of an [`Error::Client`] (Java `MQClientException.getResponseCode()`): an open
/// newtype over `i32`, like [`ResponseCode`].
///
/// Java gives a client exception either one of its `ClientErrorCode` values (10001 and up) or,
/// for some failures, a broker `ResponseCode` value (13 for an invalid message, 17 for an
/// unknown topic). Both kinds are named below; a code with no name is just its number. Compare
/// with the constants, or use the predicates on [`Error`], rather than guessing the kind of a
/// code from its range.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientErrorCode(pub i32);

macro_rules! client_error_codes {
    ($( $(#[$m:meta])* $name:ident = $value:expr, )*) => {
        impl ClientErrorCode {
            $( $(#[$m])* pub const $name: ClientErrorCode = ClientErrorCode($value); )*

            /// The Java constant name of this code, if it has one.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( $value => Some(stringify!($name)), )*
                    _ => None,
                }
            }
        }
    };
}

client_error_codes! {
    /// No code: Java's `MQClientException(String, Throwable)` carries -1 (invalid topic or group
    /// names, a group registered twice, a client used after shutdown).
    NO_CODE = -1,
    /// The message is invalid: empty or too large body, reserved or malformed property, a batch
    /// that mixes topics (Java uses `ResponseCode.MESSAGE_ILLEGAL` here).
    MESSAGE_ILLEGAL = 13,
    /// The name server or broker refused the request for lack of permission, for example a
    /// route query with refused ACL credentials (Java uses `ResponseCode.NO_PERMISSION` here).
    NO_PERMISSION = 16,
    /// The name server has no route for the topic (Java uses `ResponseCode.TOPIC_NOT_EXIST`).
    TOPIC_NOT_EXIST = 17,
    /// Connecting to the broker failed.
    CONNECT_BROKER_EXCEPTION = 10001,
    /// Accessing the broker timed out.
    ACCESS_BROKER_TIMEOUT = 10002,
    /// The broker is not available.
    BROKER_NOT_EXIST_EXCEPTION = 10003,
    /// No name server address is configured or reachable.
    NO_NAME_SERVER_EXCEPTION = 10004,
    /// No route is known for the topic.
    NOT_FOUND_TOPIC_EXCEPTION = 10005,
    /// The request's total time budget ran out (for a producer: across all retries).
    REQUEST_TIMEOUT_EXCEPTION = 10006,
    /// A reply message could not be created (Java's request-reply).
    CREATE_REPLY_MESSAGE_EXCEPTION = 10007,
}

impl fmt::Display for ClientErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{}({})", n, self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

impl fmt::Debug for ClientErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<i32> for ClientErrorCode {
    fn from(v: i32) -> Self {
        ClientErrorCode(v)
    }
}

impl From<ClientErrorCode> for i32 {
    fn from(v: ClientErrorCode) -> i32 {
        v.0
    }
}

/// Java puts a broker response code into an `MQClientException` in a few places; this keeps
/// the number.
impl From<ResponseCode> for ClientErrorCode {
    fn from(v: ResponseCode) -> Self {
        ClientErrorCode(v.0)
    }
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
    /// connection, timeout, too many calls in flight or a full write queue. These are the errors
    /// after which a producer tries another broker.
    pub fn is_remoting(&self) -> bool {
        matches!(
            self,
            Error::Connect { .. }
                | Error::Timeout { .. }
                | Error::SendRequest { .. }
                | Error::ConnectionClosed { .. }
                | Error::TooManyRequests { .. }
                | Error::WriteQueueFull { .. }
        )
    }

    /// The broker's response code: the code of an [`Error::Broker`], or of the broker error an
    /// [`Error::Client`] wraps (a send that failed on every attempt). `None` for anything the
    /// broker did not answer; the code of an [`Error::Client`] itself is
    /// [`client_error_code`](Self::client_error_code).
    pub fn response_code(&self) -> Option<ResponseCode> {
        match self {
            Error::Broker { code, .. } => Some(*code),
            Error::Client {
                source: Some(source),
                ..
            } => source.response_code(),
            _ => None,
        }
    }

    /// The code of an [`Error::Client`] (Java `MQClientException.getResponseCode()`).
    pub fn client_error_code(&self) -> Option<ClientErrorCode> {
        match self {
            Error::Client { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// `true` when the broker refused the request for flow control (`SYSTEM_BUSY`: its page
    /// cache or send queue is full). The message was not stored; back off and send again.
    pub fn is_system_busy(&self) -> bool {
        self.response_code() == Some(ResponseCode::SYSTEM_BUSY)
    }

    /// `true` when the message itself is invalid (Java `MESSAGE_ILLEGAL`), found by the client
    /// before sending or by the broker: an empty or oversized body, a reserved or malformed
    /// property, an inconsistent batch. Sending it again will not help. Invalid topic names
    /// are reported with [`ClientErrorCode::NO_CODE`] as in Java, and are not covered.
    pub fn is_message_illegal(&self) -> bool {
        self.client_error_code() == Some(ClientErrorCode::MESSAGE_ILLEGAL)
            || self.response_code() == Some(ResponseCode::MESSAGE_ILLEGAL)
    }

    /// `true` when the broker or name server refused the request for lack of permission
    /// (Java `NO_PERMISSION`): with ACL enabled, an unknown access key, a wrong secret key or
    /// a missing signature (remark `Authentication credentials are invalid` from a 5.x or
    /// rocketmq-rust broker), or an account without the right to the topic or group
    /// (`Permission was denied`); also a broker or topic that does not allow writing or
    /// reading. A Java 4.x broker reports an ACL refusal as `SYSTEM_ERROR` with the
    /// `AclException` in the remark; that counts too. Retrying with the same credentials will
    /// not help.
    #[doc(alias = "NO_PERMISSION")]
    pub fn is_no_permission(&self) -> bool {
        // Java carries the answer as a broker code, or in a client exception (route queries).
        let refused = |code: i32, text: &str| {
            code == ResponseCode::NO_PERMISSION.0
                || (code == ResponseCode::SYSTEM_ERROR.0 && text.contains("AclException"))
        };
        match self {
            Error::Broker { code, remark, .. } => refused(code.0, remark),
            Error::Client {
                code,
                message,
                source,
            } => refused(code.0, message) || source.as_ref().is_some_and(|e| e.is_no_permission()),
            _ => false,
        }
    }

    /// `true` when the topic has no route: unknown to the name server, or no subscribe info
    /// yet (Java `TOPIC_NOT_EXIST` or `NOT_FOUND_TOPIC_EXCEPTION`).
    pub fn is_topic_not_found(&self) -> bool {
        matches!(
            self.client_error_code(),
            Some(ClientErrorCode::TOPIC_NOT_EXIST | ClientErrorCode::NOT_FOUND_TOPIC_EXCEPTION)
        ) || self.response_code() == Some(ResponseCode::TOPIC_NOT_EXIST)
    }

    /// The peer address the error is about, when there is one.
    pub fn broker_addr(&self) -> Option<&str> {
        match self {
            Error::Connect { addr, .. }
            | Error::Timeout { addr, .. }
            | Error::SendRequest { addr, .. }
            | Error::ConnectionClosed { addr, .. }
            | Error::WriteQueueFull { addr, .. }
            | Error::Broker { addr, .. } => Some(addr),
            _ => None,
        }
    }

    pub(crate) fn client(code: impl Into<ClientErrorCode>, message: impl Into<String>) -> Self {
        Error::Client {
            code: code.into(),
            message: message.into(),
            source: None,
        }
    }

    /// An [`Error::Client`] that wraps `source`.
    pub(crate) fn client_caused_by(
        code: impl Into<ClientErrorCode>,
        message: impl Into<String>,
        source: Error,
    ) -> Self {
        Error::Client {
            code: code.into(),
            message: message.into(),
            source: Some(Box::new(source)),
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
            Error::WriteQueueFull { addr, limit } => write!(
                f,
                "write queue to {addr} is full ({limit} bytes waiting): the peer is not reading"
            ),
            Error::Broker { code, remark, addr } => {
                write!(f, "broker {addr} answered {code}")?;
                if !remark.is_empty() {
                    write!(f, ": {remark}")?;
                }
                Ok(())
            }
            Error::Client { code, message, .. } => write!(f, "client error {code}: {message}"),
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
            Error::Client {
                source: Some(e), ..
            } => Some(e.as_ref()),
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
    fn codes_are_told_apart_by_name_not_by_range() {
        let busy = Error::Broker {
            code: ResponseCode::SYSTEM_BUSY,
            remark: "[PCBUSY_CLEAN_QUEUE]".into(),
            addr: "b:10911".into(),
        };
        assert!(busy.is_system_busy());
        assert!(!busy.is_message_illegal());
        assert_eq!(busy.client_error_code(), None);

        // A send that failed on every attempt: the client error wraps the last broker error,
        // and keeps Java's code (the broker's).
        let exhausted = Error::client_caused_by(2, "Send [3] times, still failed", busy);
        assert!(exhausted.is_system_busy());
        assert_eq!(exhausted.response_code(), Some(ResponseCode::SYSTEM_BUSY));
        assert!(std::error::Error::source(&exhausted).is_some());

        // A client-side invalid message is not a broker answer.
        let illegal = Error::client(ClientErrorCode::MESSAGE_ILLEGAL, "the body is empty");
        assert!(illegal.is_message_illegal());
        assert_eq!(illegal.response_code(), None);
        assert_eq!(
            illegal.client_error_code(),
            Some(ClientErrorCode::MESSAGE_ILLEGAL)
        );
        let broker_illegal = Error::Broker {
            code: ResponseCode::MESSAGE_ILLEGAL,
            remark: String::new(),
            addr: "b".into(),
        };
        assert!(broker_illegal.is_message_illegal());

        // A code below 10000 is not taken for a broker code.
        let plain = Error::client(ClientErrorCode::NO_CODE, "bad topic");
        assert_eq!(plain.response_code(), None);
        assert!(!plain.is_system_busy() && !plain.is_message_illegal());
        let no_route = Error::client(ClientErrorCode::NOT_FOUND_TOPIC_EXCEPTION, "no route");
        assert!(no_route.is_topic_not_found());

        assert_eq!(
            ClientErrorCode::CONNECT_BROKER_EXCEPTION.to_string(),
            "CONNECT_BROKER_EXCEPTION(10001)"
        );
        assert_eq!(ClientErrorCode(424242).to_string(), "424242");
        assert_eq!(
            ClientErrorCode::from(ResponseCode::MESSAGE_ILLEGAL),
            ClientErrorCode::MESSAGE_ILLEGAL
        );
    }

    #[test]
    fn refused_credentials_are_told_apart() {
        let denied = Error::Broker {
            code: ResponseCode::NO_PERMISSION,
            remark: "Authentication credentials are invalid".into(),
            addr: "b:10911".into(),
        };
        assert!(denied.is_no_permission());
        assert!(!denied.is_system_busy() && !denied.is_timeout() && !denied.is_remoting());
        assert!(denied.to_string().contains("NO_PERMISSION"), "{denied}");
        // Wrapped by a send that failed on every attempt.
        let exhausted = Error::client_caused_by(16, "Send [3] times, still failed", denied);
        assert!(exhausted.is_no_permission());
        // A Java 4.x broker's ACL refusal.
        let java4 = Error::Broker {
            code: ResponseCode::SYSTEM_ERROR,
            remark: "org.apache.rocketmq.acl.common.AclException: [10015:signature-failed]".into(),
            addr: "b".into(),
        };
        assert!(java4.is_no_permission());
        let other = Error::Broker {
            code: ResponseCode::SYSTEM_ERROR,
            remark: "store error".into(),
            addr: "b".into(),
        };
        assert!(!other.is_no_permission());
        assert!(!Error::client(ClientErrorCode::NO_CODE, "x").is_no_permission());
        // A route query the name server refused, behind the sender's "no route".
        let route = Error::client(16, "Authentication credentials are invalid");
        assert_eq!(
            route.client_error_code(),
            Some(ClientErrorCode::NO_PERMISSION)
        );
        assert!(route.to_string().contains("NO_PERMISSION(16)"), "{route}");
        let no_route = Error::client_caused_by(
            ClientErrorCode::NOT_FOUND_TOPIC_EXCEPTION,
            "No route info of this topic: T",
            route,
        );
        assert!(no_route.is_no_permission() && no_route.is_topic_not_found());
    }

    #[test]
    fn error_is_send_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Error>();
    }
}
