//! Client-side checks of topics, groups and message bodies (Java `Validators` and
//! `TopicValidator`, FACTS §19.2, §8.2, §20).
//!
//! The checks take the parts of a message (topic, body length) rather than a message, so they
//! run before anything is encoded. Failures are [`Error::Client`] with Java's message text,
//! sometimes followed by a clarification in parentheses, and Java's code:
//! [`ClientErrorCode::MESSAGE_ILLEGAL`] (13) for body problems, [`ClientErrorCode::NO_CODE`] (-1) for topic
//! and group problems (Java's `MQClientException(String, Throwable)` carries -1).

use crate::error::{ClientErrorCode, Error, Result};

/// The longest topic name accepted, in UTF-16 units as Java counts (`Validators.TOPIC_MAX_LENGTH`).
pub(crate) const TOPIC_MAX_LENGTH: usize = 127;
/// The longest group name accepted (`Validators.CHARACTER_MAX_LENGTH`).
pub(crate) const CHARACTER_MAX_LENGTH: usize = 255;
/// The pattern topic and group names must match, as Java spells it in its messages.
pub(crate) const VALID_PATTERN_STR: &str = "^[%|a-zA-Z0-9_-]+$";
/// The code Java's `MQClientException` carries when it has no response code.
pub(crate) const NO_RESPONSE_CODE: ClientErrorCode = ClientErrorCode::NO_CODE;

/// System topics a client may not send to (Java `TopicValidator.NOT_ALLOWED_SEND_TOPIC_SET`).
///
/// `TBW102`, `BenchmarkTest` and `RMQ_SYS_TRACE_TOPIC` are system topics but sendable, as in
/// Java: the trace dispatcher writes to `RMQ_SYS_TRACE_TOPIC`. `SCHEDULE_TOPIC_XXXX_V2` is
/// forbidden by later 4.9.x releases and by 5.x brokers; it is included because sending to it
/// can only be a mistake.
pub(crate) const NOT_ALLOWED_SEND_TOPICS: &[&str] = &[
    "SCHEDULE_TOPIC_XXXX",
    "SCHEDULE_TOPIC_XXXX_V2",
    "RMQ_SYS_TRANS_HALF_TOPIC",
    "RMQ_SYS_TRANS_OP_HALF_TOPIC",
    "TRANS_CHECK_MAX_TIME_TOPIC",
    "SELF_TEST_TOPIC",
    "OFFSET_MOVED_EVENT",
];

/// Groups the client and broker reserve for themselves (FACTS §20, Java `MixAll`).
pub(crate) const RESERVED_GROUPS: &[&str] = &[
    "DEFAULT_PRODUCER",
    "DEFAULT_CONSUMER",
    "CLIENT_INNER_PRODUCER",
    "TOOLS_CONSUMER",
    "SCHEDULE_CONSUMER",
    "FILTERSRV_CONSUMER",
    "__MONITOR_CONSUMER",
    "SELF_TEST_P_GROUP",
    "SELF_TEST_C_GROUP",
];
/// Group names starting with this are reserved too (Java `MixAll.CID_RMQ_SYS_PREFIX`).
pub(crate) const RESERVED_GROUP_PREFIX: &str = "CID_RMQ_SYS_";

/// `true` for the characters of [`VALID_PATTERN_STR`]: ASCII letters and digits, `%`, `|`, `_`
/// and `-`.
fn is_valid_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '%' | '|' | '_' | '-')
}

/// Java `UtilAll.isBlank`: empty or only whitespace.
fn is_blank(s: &str) -> bool {
    s.chars().all(char::is_whitespace)
}

fn illegal(message: String) -> Error {
    Error::client(NO_RESPONSE_CODE, message)
}

/// The rules topics and groups share (Java `Validators`): not blank, at most `max` UTF-16
/// characters, only the allowed characters. `prefix` keeps Java's wording of each message
/// ("The specified topic ...", "the specified group ...").
fn check_name(prefix: &str, noun: &str, value: &str, max: usize) -> Result<()> {
    if is_blank(value) {
        return Err(illegal(format!("{prefix} {noun} is blank")));
    }
    let len = value.encode_utf16().count();
    if len > max {
        return Err(illegal(format!(
            "{prefix} {noun} is longer than {noun} max length {max}. (it has {len} characters)"
        )));
    }
    if let Some(bad) = value.chars().find(|c| !is_valid_char(*c)) {
        return Err(illegal(format!(
            "{prefix} {noun}[{value}] contains illegal characters, allowing only \
             {VALID_PATTERN_STR} (found {bad:?})"
        )));
    }
    Ok(())
}

/// Checks a topic a message is sent to (Java `Validators.checkTopic` followed by
/// `isNotAllowedSendTopic`): not blank, at most 127 characters, only ASCII letters, digits,
/// `%`, `|`, `_` and `-`, and not a system topic that clients may not send to.
pub(crate) fn check_topic(topic: &str) -> Result<()> {
    check_name("The specified", "topic", topic, TOPIC_MAX_LENGTH)?;
    if NOT_ALLOWED_SEND_TOPICS.contains(&topic) {
        return Err(illegal(format!(
            "Sending message to topic[{topic}] is forbidden. (it is a broker-internal system topic)"
        )));
    }
    Ok(())
}

/// Checks a message body's length (Java `Validators.checkMessage`, body part): not empty and at
/// most `max_message_size` bytes (the producer's `maxMessageSize`, 4 MiB by default).
pub(crate) fn check_body(len: usize, max_message_size: usize) -> Result<()> {
    let code = ClientErrorCode::MESSAGE_ILLEGAL;
    if len == 0 {
        return Err(Error::client(code, "the message body length is zero"));
    }
    if len > max_message_size {
        return Err(Error::client(
            code,
            format!(
                "the message body size over max value, MAX: {max_message_size} \
                 (the body has {len} bytes)"
            ),
        ));
    }
    Ok(())
}

/// Checks a message before it is sent (Java `Validators.checkMessage`): the topic, then the body.
pub(crate) fn check_message(topic: &str, body_len: usize, max_message_size: usize) -> Result<()> {
    check_topic(topic)?;
    check_body(body_len, max_message_size)
}

/// Checks a producer or consumer group name (Java `Validators.checkGroup`, plus the start-time
/// check against reserved groups): not blank, at most 255 characters, only ASCII letters, digits,
/// `%`, `|`, `_` and `-`, and not one of the groups the client and broker reserve.
///
/// Java rejects only `DEFAULT_PRODUCER` for producers and `DEFAULT_CONSUMER` for consumers;
/// this rejects every reserved group of FACTS §20 (and the `CID_RMQ_SYS_` prefix) for both,
/// because a user group sharing a name with a broker- or client-internal one mixes up their
/// offsets and heartbeats. The client's own internal groups (`CLIENT_INNER_PRODUCER`) must be
/// created without this check.
pub(crate) fn check_group(group: &str) -> Result<()> {
    check_name("the specified", "group", group, CHARACTER_MAX_LENGTH)?;
    if RESERVED_GROUPS.contains(&group) || group.starts_with(RESERVED_GROUP_PREFIX) {
        return Err(illegal(format!(
            "the specified group[{group}] is reserved for RocketMQ's own use, please specify \
             another one (reserved: {}, and names starting with {RESERVED_GROUP_PREFIX})",
            RESERVED_GROUPS.join(", ")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 4 * 1024 * 1024;

    fn client_err(r: Result<()>) -> (i32, String) {
        match r {
            Err(Error::Client { code, message, .. }) => (code.0, message),
            other => panic!("expected a client error, got {other:?}"),
        }
    }

    #[test]
    fn valid_topics_pass() {
        for t in [
            "TopicTest",
            "a",
            "%RETRY%group_1",
            "ns%topic|x-y_z",
            "0123",
            &"t".repeat(127),
        ] {
            check_topic(t).unwrap_or_else(|e| panic!("{t}: {e}"));
        }
        // System topics Java lets clients send to.
        for t in ["TBW102", "RMQ_SYS_TRACE_TOPIC", "BenchmarkTest"] {
            check_topic(t).unwrap_or_else(|e| panic!("{t}: {e}"));
        }
    }

    #[test]
    fn blank_topic_is_rejected() {
        for t in ["", " ", "\t\n"] {
            let (code, msg) = client_err(check_topic(t));
            assert_eq!(code, -1);
            assert_eq!(msg, "The specified topic is blank");
        }
    }

    #[test]
    fn long_topic_is_rejected() {
        let (code, msg) = client_err(check_topic(&"t".repeat(128)));
        assert_eq!(code, -1);
        assert!(
            msg.starts_with("The specified topic is longer than topic max length 127."),
            "{msg}"
        );
        assert!(msg.contains("128"), "{msg}");
    }

    #[test]
    fn topic_with_illegal_characters_is_rejected() {
        for (t, bad) in [
            ("Topic Test", ' '),
            ("topic.a", '.'),
            ("主题", '主'),
            ("a/b", '/'),
            ("a:b", ':'),
        ] {
            let (code, msg) = client_err(check_topic(t));
            assert_eq!(code, -1);
            assert!(
                msg.starts_with(&format!(
                    "The specified topic[{t}] contains illegal characters, allowing only ^[%|a-zA-Z0-9_-]+$"
                )),
                "{msg}"
            );
            assert!(msg.contains(&format!("{bad:?}")), "{msg}");
        }
    }

    #[test]
    fn not_allowed_system_topics_are_rejected() {
        for t in NOT_ALLOWED_SEND_TOPICS {
            let (code, msg) = client_err(check_topic(t));
            assert_eq!(code, -1);
            assert!(
                msg.starts_with(&format!("Sending message to topic[{t}] is forbidden.")),
                "{msg}"
            );
        }
    }

    #[test]
    fn body_length_rules() {
        check_body(1, MAX).unwrap();
        check_body(MAX, MAX).unwrap();

        let (code, msg) = client_err(check_body(0, MAX));
        assert_eq!(code, 13);
        assert_eq!(msg, "the message body length is zero");

        let (code, msg) = client_err(check_body(MAX + 1, MAX));
        assert_eq!(code, 13);
        assert!(
            msg.starts_with("the message body size over max value, MAX: 4194304"),
            "{msg}"
        );
        assert!(msg.contains("4194305"), "{msg}");
        let e = Error::client(code, msg);
        assert!(e.is_message_illegal());
        assert_eq!(
            e.response_code(),
            None,
            "the client found it, not the broker"
        );
    }

    #[test]
    fn check_message_checks_topic_before_body() {
        check_message("TopicTest", 10, MAX).unwrap();
        let (code, _) = client_err(check_message("bad topic", 0, MAX));
        assert_eq!(code, -1, "topic error wins, as in Java");
        let (code, _) = client_err(check_message("TopicTest", 0, MAX));
        assert_eq!(code, 13);
    }

    #[test]
    fn valid_groups_pass() {
        for g in [
            "please_rename_unique_group_name",
            "G1",
            "%RETRY%x",
            "a|b-c",
            &"g".repeat(255),
        ] {
            check_group(g).unwrap_or_else(|e| panic!("{g}: {e}"));
        }
    }

    #[test]
    fn invalid_groups_are_rejected() {
        let (code, msg) = client_err(check_group(" "));
        assert_eq!(code, -1);
        assert_eq!(msg, "the specified group is blank");

        let (_, msg) = client_err(check_group(&"g".repeat(256)));
        assert!(
            msg.starts_with("the specified group is longer than group max length 255."),
            "{msg}"
        );

        let (_, msg) = client_err(check_group("my.group"));
        assert!(
            msg.starts_with(
                "the specified group[my.group] contains illegal characters, allowing only ^[%|a-zA-Z0-9_-]+$"
            ),
            "{msg}"
        );
    }

    #[test]
    fn reserved_groups_are_rejected() {
        for g in RESERVED_GROUPS.iter().copied().chain(["CID_RMQ_SYS_TRACE"]) {
            let (code, msg) = client_err(check_group(g));
            assert_eq!(code, -1);
            assert!(msg.contains(&format!("group[{g}] is reserved")), "{msg}");
            assert!(
                msg.contains("DEFAULT_PRODUCER"),
                "lists what is reserved: {msg}"
            );
        }
    }
}
