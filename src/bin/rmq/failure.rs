//! Why a command failed, and the stable exit code a script sees for it.

use rocketmq_sync::{ClientErrorCode, Error, ResponseCode};

/// What a command returns.
pub(crate) type Outcome = Result<(), Failure>;

/// A failed command: the one line printed on stderr and the exit code (listed in `rmq --help`).
///
/// Codes beyond 0/1/2 are the failures a script acts on differently: "not found" (3) is an
/// answer, not an outage, so retrying does not help; "unreachable" (4) is an outage, so a
/// retry later may; "incomplete" (5) says a bounded consume saw fewer messages than asked.
#[derive(Debug)]
pub(crate) enum Failure {
    /// 1: the broker or name server refused or failed the request, or a local I/O error.
    Runtime(String),
    /// 2: bad flags or arguments that clap's own parsing could not catch.
    Usage(String),
    /// 3: the topic, message or group progress asked for does not exist.
    NotFound(String),
    /// 4: no name server or broker answered.
    Unreachable(String),
    /// 5: `consume --count N` ran into its idle timeout before N messages.
    Incomplete(String),
}

impl Failure {
    pub(crate) fn code(&self) -> u8 {
        match self {
            Failure::Runtime(_) => 1,
            Failure::Usage(_) => 2,
            Failure::NotFound(_) => 3,
            Failure::Unreachable(_) => 4,
            Failure::Incomplete(_) => 5,
        }
    }

    /// The message on one line: a multi-line remark from a broker is joined with spaces.
    pub(crate) fn one_line(&self) -> String {
        let (kind, text) = match self {
            Failure::Runtime(t) => ("error", t),
            Failure::Usage(t) => ("usage error", t),
            Failure::NotFound(t) => ("not found", t),
            Failure::Unreachable(t) => ("unreachable", t),
            Failure::Incomplete(t) => ("incomplete", t),
        };
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        format!("{kind}: {text}")
    }

    /// A client error with `context` (what was being done) in front of it.
    pub(crate) fn from_error(context: &str, e: &Error) -> Failure {
        Failure::classify(format!("{context}: {e}"), e)
    }

    fn classify(text: String, e: &Error) -> Failure {
        if is_unreachable(e) {
            Failure::Unreachable(text)
        } else if is_not_found(e) {
            Failure::NotFound(text)
        } else {
            Failure::Runtime(text)
        }
    }
}

/// A failure to reach any peer: connect, timeout or a closed connection, also when it is the
/// cause a client error wraps ("no route info" after every name server failed).
fn is_unreachable(e: &Error) -> bool {
    match e {
        Error::Connect { .. } | Error::Timeout { .. } | Error::ConnectionClosed { .. } => true,
        Error::Client { code, source, .. } => {
            matches!(
                *code,
                ClientErrorCode::NO_NAME_SERVER_EXCEPTION
                    | ClientErrorCode::CONNECT_BROKER_EXCEPTION
                    | ClientErrorCode::ACCESS_BROKER_TIMEOUT
            ) || source.as_deref().is_some_and(is_unreachable)
        }
        _ => false,
    }
}

fn is_not_found(e: &Error) -> bool {
    const NOT_FOUND: [ResponseCode; 4] = [
        ResponseCode::QUERY_NOT_FOUND,
        ResponseCode::SUBSCRIPTION_GROUP_NOT_EXIST,
        ResponseCode::CONSUMER_NOT_ONLINE,
        ResponseCode::NO_MESSAGE,
    ];
    let code_says = |code: i32| NOT_FOUND.iter().any(|c| c.0 == code);
    e.is_topic_not_found()
        || e.response_code().is_some_and(|c| code_says(c.0))
        || e.client_error_code().is_some_and(|c| code_says(c.0))
        // A broker asked for a commit-log offset it does not hold answers SYSTEM_ERROR with
        // this remark (Java's and rocketmq-rust's VIEW_MESSAGE_BY_ID); there is no better code.
        || matches!(e, Error::Broker { code, remark, .. }
            if *code == ResponseCode::SYSTEM_ERROR && remark.contains("can not find message"))
}

/// `?` on a client error without context: the error's own text says what failed.
impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::classify(e.to_string(), &e)
    }
}
