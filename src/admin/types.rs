//! The result types of [`DefaultMQAdminExt`](super::DefaultMQAdminExt)'s calls: plain data with
//! public fields, in Java's shapes (`TopicConfig`, `QueryResult`, `ConsumeStats`,
//! `ConsumerConnection`, `ClusterInfo`, `ConsumerRunningInfo`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Serialize, Serializer};

use crate::codec::{BrokerData, PERM_READ, PERM_WRITE};
use crate::common::{MessageExt, MessageQueue};
use crate::consumer::ConsumeStatus;

/// A topic's settings on a broker (Java `TopicConfig`), as `UPDATE_AND_CREATE_TOPIC` writes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicConfig {
    /// The topic.
    pub topic_name: String,
    /// Readable queues. Java default: 16.
    pub read_queue_nums: u32,
    /// Writable queues. Java default: 16.
    pub write_queue_nums: u32,
    /// Permission bits: 2 write, 4 read ([`PERM_READ`] | [`PERM_WRITE`] = 6 by default).
    pub perm: u32,
    /// The topic's system flag. Default: 0.
    pub topic_sys_flag: u32,
    /// Whether the topic is ordered. Default: `false`.
    pub order: bool,
}

impl TopicConfig {
    /// `topic` with Java's defaults: 16 read and 16 write queues, read and write permission.
    pub fn new(topic: impl Into<String>) -> Self {
        TopicConfig {
            topic_name: topic.into(),
            read_queue_nums: 16,
            write_queue_nums: 16,
            perm: (PERM_READ | PERM_WRITE) as u32,
            topic_sys_flag: 0,
            order: false,
        }
    }
}

/// Messages found by [`query_message`](super::DefaultMQAdminExt::query_message) (Java
/// `QueryResult`).
#[derive(Debug, Clone)]
pub struct QueryResult {
    /// The newest index update time among the brokers asked, ms since the epoch.
    pub index_last_update_timestamp: i64,
    /// The messages whose key matched, from every broker of the topic.
    pub messages: Vec<MessageExt>,
}

/// A consumer group's progress (Java `ConsumeStats`), from
/// [`examine_consume_stats`](super::DefaultMQAdminExt::examine_consume_stats).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumeStats {
    /// Per queue: the broker's offset, the group's offset, the last consumed store time.
    #[serde(serialize_with = "serialize_queue_map")]
    pub offset_table: BTreeMap<MessageQueue, OffsetWrapper>,
    /// Messages consumed per second, as the brokers count them (0 when they do not say).
    pub consume_tps: f64,
}

impl ConsumeStats {
    /// The sum of every queue's [`lag`](OffsetWrapper::lag) (Java `computeTotalDiff`).
    pub fn diff_total(&self) -> i64 {
        self.offset_table.values().map(OffsetWrapper::lag).sum()
    }
}

/// One queue's line of [`ConsumeStats`] (Java `OffsetWrapper`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OffsetWrapper {
    /// The queue's max offset at the broker.
    pub broker_offset: i64,
    /// The group's committed offset (-1 or 0 when it has none).
    pub consumer_offset: i64,
    /// The store time of the last consumed message, ms since the epoch (0 when unknown).
    pub last_timestamp: i64,
}

impl OffsetWrapper {
    /// Messages not consumed yet: broker offset minus consumer offset (never negative; a
    /// queue the group never committed counts whole).
    pub fn lag(&self) -> i64 {
        (self.broker_offset - self.consumer_offset.max(0)).max(0)
    }
}

/// The consumers connected to a group (Java `ConsumerConnection`).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerConnection {
    /// One entry per connected client.
    pub connections: Vec<Connection>,
    /// The group's subscriptions.
    pub subscriptions: Vec<Subscription>,
    /// `CONSUME_PASSIVELY` (push) or `CONSUME_ACTIVELY` (pull).
    pub consume_type: String,
    /// `CLUSTERING` or `BROADCASTING`.
    pub message_model: String,
    /// Where a new consumer starts, e.g. `CONSUME_FROM_LAST_OFFSET`.
    pub consume_from_where: String,
}

/// One client connection of a group (Java `Connection`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    /// The client id (`ip@instance`).
    pub client_id: String,
    /// The client's `ip:port` as the broker sees it.
    pub client_addr: String,
    /// The client's language, e.g. `JAVA`.
    pub language: String,
    /// The client's version number.
    pub version: i32,
}

/// One subscription of a group (Java `SubscriptionData`, the parts an operator reads).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    /// The topic.
    pub topic: String,
    /// The expression, e.g. `*` or `TagA || TagB`.
    pub expression: String,
    /// `TAG` or `SQL92`.
    pub expression_type: String,
}

/// The brokers the name servers know (Java `ClusterInfo`).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    /// Broker name to its addresses.
    pub broker_addr_table: BTreeMap<String, BrokerData>,
    /// Cluster name to its broker names.
    pub cluster_addr_table: BTreeMap<String, BTreeSet<String>>,
}

/// One consumer's state as it reports it (Java `ConsumerRunningInfo`), from
/// [`get_consumer_running_info`](super::DefaultMQAdminExt::get_consumer_running_info).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerRunningInfo {
    /// Facts and settings (`PROP_CONSUME_TYPE`, `PROP_CLIENT_VERSION`, ...), and the consumer's
    /// settings as Java reports them.
    pub properties: BTreeMap<String, String>,
    /// The consumer's subscriptions.
    pub subscriptions: Vec<Subscription>,
    /// Each queue the consumer holds, with its state.
    #[serde(serialize_with = "serialize_queue_map")]
    pub mq_table: BTreeMap<MessageQueue, ProcessQueueInfo>,
    /// Rates per topic.
    pub status_table: BTreeMap<String, ConsumeStatus>,
    /// The thread dump, when one was asked for and the client gave it.
    pub jstack: Option<String>,
}

/// One queue a consumer holds (Java `ProcessQueueInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessQueueInfo {
    /// The committed offset, from the consumer's offset store.
    pub commit_offset: i64,
    /// Smallest cached offset, 0 when empty.
    pub cached_msg_min_offset: i64,
    /// Largest cached offset, 0 when empty.
    pub cached_msg_max_offset: i64,
    /// Number of cached messages.
    pub cached_msg_count: i32,
    /// Cached bytes in MiB.
    pub cached_msg_size_in_mib: i32,
    /// Orderly: in-flight messages.
    pub transaction_msg_count: i32,
    /// Orderly: smallest in-flight offset.
    pub transaction_msg_min_offset: i64,
    /// Orderly: largest in-flight offset.
    pub transaction_msg_max_offset: i64,
    /// Orderly: the queue is locked at the broker.
    pub locked: bool,
    /// Orderly: times an unlock was deferred.
    pub try_unlock_times: i64,
    /// Orderly: last lock, ms since the epoch.
    pub last_lock_timestamp: i64,
    /// Whether the queue is being released.
    pub dropped: bool,
    /// Last pull, ms since the epoch.
    pub last_pull_timestamp: i64,
    /// Last consume, ms since the epoch.
    pub last_consume_timestamp: i64,
}

/// A map keyed by queue as a JSON list of `{"messageQueue": .., "value": ..}` entries: a queue
/// is no JSON object key.
fn serialize_queue_map<V: Serialize, S: Serializer>(
    map: &BTreeMap<MessageQueue, V>,
    s: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Entry<'a, V> {
        message_queue: &'a MessageQueue,
        #[serde(flatten)]
        value: &'a V,
    }
    s.collect_seq(map.iter().map(|(mq, value)| Entry {
        message_queue: mq,
        value,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_never_goes_negative_and_counts_an_uncommitted_queue_whole() {
        let o = |b, c| OffsetWrapper {
            broker_offset: b,
            consumer_offset: c,
            last_timestamp: 0,
        };
        assert_eq!(o(10, 4).lag(), 6);
        assert_eq!(o(10, -1).lag(), 10);
        assert_eq!(o(3, 5).lag(), 0);
        let mut s = ConsumeStats::default();
        s.offset_table
            .insert(MessageQueue::new("T", "b", 0), o(10, 4));
        s.offset_table
            .insert(MessageQueue::new("T", "b", 1), o(7, 7));
        assert_eq!(s.diff_total(), 6);
    }

    #[test]
    fn topic_config_has_java_defaults() {
        let c = TopicConfig::new("T");
        assert_eq!((c.read_queue_nums, c.write_queue_nums, c.perm), (16, 16, 6));
        assert_eq!((c.topic_sys_flag, c.order), (0, false));
    }
}
