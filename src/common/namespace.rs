//! Namespaces (Java `NamespaceUtil`): a client with a namespace `ns` names topic `T` and group
//! `G` as `ns%T` and `ns%G` at the broker, and hands its user the names without `ns%`.
//!
//! The rules, as Java's:
//! - system topics (`TBW102`, `SCHEDULE_TOPIC_XXXX`, `RMQ_SYS_*` and the others of
//!   `TopicValidator`, anything starting `rmq_sys_`) and system groups (`CID_RMQ_SYS_*`) are
//!   never wrapped;
//! - a retry or dead-letter name keeps its prefix in front: `%RETRY%G` becomes `%RETRY%ns%G`;
//! - a name that already carries the namespace is left as it is (wrapping twice is wrapping
//!   once).

/// Java `NamespaceUtil.NAMESPACE_SEPARATOR`.
pub(crate) const NAMESPACE_SEPARATOR: char = '%';
const RETRY_PREFIX: &str = "%RETRY%";
const DLQ_PREFIX: &str = "%DLQ%";

/// Java `TopicValidator`'s system topics.
const SYSTEM_TOPICS: &[&str] = &[
    "TBW102",
    "SCHEDULE_TOPIC_XXXX",
    "BenchmarkTest",
    "RMQ_SYS_TRANS_HALF_TOPIC",
    "RMQ_SYS_TRACE_TOPIC",
    "RMQ_SYS_TRANS_OP_HALF_TOPIC",
    "TRANS_CHECK_MAX_TIME_TOPIC",
    "SELF_TEST_TOPIC",
    "OFFSET_MOVED_EVENT",
];
/// Java `TopicValidator.SYSTEM_TOPIC_PREFIX`.
const SYSTEM_TOPIC_PREFIX: &str = "rmq_sys_";
/// Java `MixAll.CID_RMQ_SYS_PREFIX`.
const SYSTEM_GROUP_PREFIX: &str = "CID_RMQ_SYS_";

fn is_system_resource(resource: &str) -> bool {
    SYSTEM_TOPICS.contains(&resource)
        || resource.starts_with(SYSTEM_TOPIC_PREFIX)
        || resource.starts_with(SYSTEM_GROUP_PREFIX)
}

/// The retry or dead-letter prefix of `resource`, and the rest.
fn split_prefix(resource: &str) -> (&'static str, &str) {
    if let Some(rest) = resource.strip_prefix(RETRY_PREFIX) {
        (RETRY_PREFIX, rest)
    } else if let Some(rest) = resource.strip_prefix(DLQ_PREFIX) {
        (DLQ_PREFIX, rest)
    } else {
        ("", resource)
    }
}

/// Java `isAlreadyWithNamespace`.
fn has_namespace(resource: &str, namespace: &str) -> bool {
    let (_, rest) = split_prefix(resource);
    rest.len() > namespace.len()
        && rest.starts_with(namespace)
        && rest[namespace.len()..].starts_with(NAMESPACE_SEPARATOR)
}

/// Java `wrapNamespace(namespace, resource)`: `resource` as the broker knows it. Borrows
/// when there is nothing to add (no namespace: the common case costs nothing).
pub(crate) fn wrap<'a>(namespace: Option<&str>, resource: &'a str) -> std::borrow::Cow<'a, str> {
    use std::borrow::Cow;
    match namespace {
        Some(ns)
            if !ns.is_empty()
                && !resource.is_empty()
                && !is_system_resource(resource)
                && !has_namespace(resource, ns) =>
        {
            let (prefix, rest) = split_prefix(resource);
            Cow::Owned(format!("{prefix}{ns}{NAMESPACE_SEPARATOR}{rest}"))
        }
        _ => Cow::Borrowed(resource),
    }
}

/// `mq` as the broker knows it.
pub(crate) fn wrap_queue<'a>(
    namespace: Option<&str>,
    mq: &'a crate::common::MessageQueue,
) -> std::borrow::Cow<'a, crate::common::MessageQueue> {
    use std::borrow::Cow;
    match wrap(namespace, &mq.topic) {
        Cow::Borrowed(_) => Cow::Borrowed(mq),
        Cow::Owned(topic) => Cow::Owned(crate::common::MessageQueue {
            topic,
            ..mq.clone()
        }),
    }
}

/// `mq` as the user knows it.
pub(crate) fn unwrap_queue(
    namespace: Option<&str>,
    mq: &crate::common::MessageQueue,
) -> crate::common::MessageQueue {
    crate::common::MessageQueue {
        topic: unwrap(namespace, &mq.topic).into_owned(),
        ..mq.clone()
    }
}

/// Java `withoutNamespace(resource, namespace)`: `resource` as the user knows it. A name in
/// another namespace, or in none, is left as it is.
pub(crate) fn unwrap<'a>(namespace: Option<&str>, resource: &'a str) -> std::borrow::Cow<'a, str> {
    use std::borrow::Cow;
    match namespace {
        Some(ns) if !ns.is_empty() && has_namespace(resource, ns) => {
            let (prefix, rest) = split_prefix(resource);
            let bare = &rest[ns.len() + 1..];
            if prefix.is_empty() {
                Cow::Borrowed(bare)
            } else {
                Cow::Owned(format!("{prefix}{bare}"))
            }
        }
        _ => Cow::Borrowed(resource),
    }
}

/// Checks a namespace as Java's `Validators.checkTopic`-like rules allow: not blank, and only
/// characters a topic may hold (the namespace becomes part of topic names), without `%`.
pub(crate) fn check(namespace: &str) -> crate::error::Result<()> {
    let ok = !namespace.is_empty()
        && namespace.len() <= 64
        && namespace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(crate::error::Error::config(format!(
            "namespace {namespace:?} is not valid: 1 to 64 of the characters [a-zA-Z0-9_-]"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: Option<&str> = Some("ns1");

    #[test]
    fn wraps_as_java_does() {
        assert_eq!(wrap(NS, "T"), "ns1%T");
        assert_eq!(wrap(NS, "%RETRY%G"), "%RETRY%ns1%G");
        assert_eq!(wrap(NS, "%DLQ%G"), "%DLQ%ns1%G");
        // Twice is once.
        assert_eq!(wrap(NS, "ns1%T"), "ns1%T");
        assert_eq!(wrap(NS, "%RETRY%ns1%G"), "%RETRY%ns1%G");
        // A name in another namespace is wrapped as any other (Java does the same).
        assert_eq!(wrap(NS, "ns2%T"), "ns1%ns2%T");
        // System resources and blanks are untouched.
        for sys in [
            "TBW102",
            "RMQ_SYS_TRACE_TOPIC",
            "rmq_sys_x",
            "CID_RMQ_SYS_G",
            "SCHEDULE_TOPIC_XXXX",
        ] {
            assert_eq!(wrap(NS, sys), sys);
        }
        assert_eq!(wrap(NS, ""), "");
        assert_eq!(wrap(None, "T"), "T");
        assert_eq!(wrap(Some(""), "T"), "T");
        // A namespace that is only a prefix of the name's first part is not the namespace.
        assert_eq!(wrap(NS, "ns1x%T"), "ns1%ns1x%T");
    }

    #[test]
    fn unwraps_as_java_does() {
        assert_eq!(unwrap(NS, "ns1%T"), "T");
        assert_eq!(unwrap(NS, "%RETRY%ns1%G"), "%RETRY%G");
        assert_eq!(unwrap(NS, "%DLQ%ns1%G"), "%DLQ%G");
        assert_eq!(unwrap(NS, "ns2%T"), "ns2%T");
        assert_eq!(unwrap(NS, "T"), "T");
        assert_eq!(unwrap(None, "ns1%T"), "ns1%T");
        assert_eq!(unwrap(NS, "TBW102"), "TBW102");
        for r in ["T", "%RETRY%G", "%DLQ%G"] {
            assert_eq!(unwrap(NS, &wrap(NS, r)), r);
        }
    }

    #[test]
    fn a_namespace_is_checked() {
        assert!(check("prod-eu_1").is_ok());
        for bad in ["", "a%b", "a b", &"x".repeat(65)] {
            assert!(check(bad).is_err(), "{bad:?}");
        }
    }
}
