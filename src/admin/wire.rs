//! Decoding of the bodies admin calls receive: fastjson text whose maps may have number keys
//! (`brokerAddrs`) or queue-object keys (`offsetTable`, `mqTable`), read through
//! [`FjValue`]. Every decoder is lenient about members it does not use and strict about the
//! ones it does: a wrong type is a [`CodecError::Json`] naming the body.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::Value;

use super::types::{
    ClusterInfo, Connection, ConsumeStats, ConsumerConnection, ConsumerRunningInfo, OffsetWrapper,
    ProcessQueueInfo, Subscription,
};
use crate::codec::BrokerData;
use crate::consumer::ConsumeStatus;
use crate::remoting::protocol::body::{decode_queue_map, FjValue, ProcessQueueInfo as WireQueue};
use crate::remoting::protocol::{CodecError, LanguageCode};

fn json_err(body: &str, e: impl std::fmt::Display) -> CodecError {
    CodecError::Json(format!("{body}: {e}"))
}

fn parse(body: &[u8], what: &str) -> Result<FjValue, CodecError> {
    FjValue::parse_bytes(body).map_err(|e| json_err(what, e))
}

fn member<T: serde::de::DeserializeOwned + Default>(
    v: &FjValue,
    name: &str,
    what: &str,
) -> Result<T, CodecError> {
    match v.get(name) {
        None | Some(FjValue::Null) => Ok(T::default()),
        Some(m) => m
            .deserialize()
            .map_err(|e| json_err(what, format!("{name}: {e}"))),
    }
}

/// A member that Java writes as an enum name; some brokers write a number or leave it out.
fn enum_text(v: &FjValue, name: &str) -> String {
    match v.get(name) {
        Some(FjValue::String(s)) => s.clone(),
        Some(FjValue::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// The GET_BROKER_CLUSTER_INFO body (Java `ClusterInfo`).
pub(crate) fn decode_cluster_info(body: &[u8]) -> Result<ClusterInfo, CodecError> {
    const WHAT: &str = "ClusterInfo";
    let v = parse(body, WHAT)?;
    let broker_addr_table: BTreeMap<String, BrokerData> = member(&v, "brokerAddrTable", WHAT)?;
    let cluster_addr_table: BTreeMap<String, BTreeSet<String>> =
        member(&v, "clusterAddrTable", WHAT)?;
    Ok(ClusterInfo {
        broker_addr_table,
        cluster_addr_table,
    })
}

/// The GET_ALL_TOPIC_LIST_FROM_NAMESERVER body (Java `TopicList`), sorted.
pub(crate) fn decode_topic_list(body: &[u8]) -> Result<Vec<String>, CodecError> {
    const WHAT: &str = "TopicList";
    let v = parse(body, WHAT)?;
    let set: BTreeSet<String> = member(&v, "topicList", WHAT)?;
    Ok(set.into_iter().collect())
}

/// The GET_CONSUME_STATS body (Java `ConsumeStats`): `offsetTable` keyed by queue objects.
pub(crate) fn decode_consume_stats(body: &[u8]) -> Result<ConsumeStats, CodecError> {
    const WHAT: &str = "ConsumeStats";
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", default)]
    #[derive(Default)]
    struct Wire {
        broker_offset: i64,
        consumer_offset: i64,
        last_timestamp: i64,
    }
    let v = parse(body, WHAT)?;
    let table = decode_queue_map(v.get("offsetTable"), "offsetTable", |mq, w| {
        let w: Wire = w
            .deserialize()
            .map_err(|e| json_err(WHAT, format!("offset of {mq}: {e}")))?;
        Ok(OffsetWrapper {
            broker_offset: w.broker_offset,
            consumer_offset: w.consumer_offset,
            last_timestamp: w.last_timestamp,
        })
    })?;
    let consume_tps = match v.get("consumeTps") {
        Some(FjValue::Number(n)) => n.as_f64().unwrap_or(0.0),
        _ => 0.0,
    };
    Ok(ConsumeStats {
        offset_table: table.into_iter().collect(),
        consume_tps,
    })
}

/// `SubscriptionData` as the admin reads it.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct WireSubscription {
    topic: String,
    sub_string: String,
    expression_type: String,
}

impl From<WireSubscription> for Subscription {
    fn from(w: WireSubscription) -> Self {
        Subscription {
            topic: w.topic,
            expression: w.sub_string,
            // Java's default when a client does not say.
            expression_type: if w.expression_type.is_empty() {
                "TAG".to_owned()
            } else {
                w.expression_type
            },
        }
    }
}

/// The GET_CONSUMER_CONNECTION_LIST body (Java `ConsumerConnection`).
pub(crate) fn decode_consumer_connection(body: &[u8]) -> Result<ConsumerConnection, CodecError> {
    const WHAT: &str = "ConsumerConnection";
    let v = parse(body, WHAT)?;
    let raw: Vec<Value> = member(&v, "connectionSet", WHAT)?;
    let mut connections = Vec::with_capacity(raw.len());
    for c in raw {
        let text = |name: &str| c.get(name).and_then(Value::as_str).unwrap_or("").to_owned();
        let language = match c.get("language") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n
                .as_u64()
                .and_then(|n| u8::try_from(n).ok())
                .map_or_else(|| n.to_string(), |n| LanguageCode(n).name().to_owned()),
            _ => String::new(),
        };
        let version = c
            .get("version")
            .and_then(Value::as_i64)
            .and_then(|v| i32::try_from(v).ok())
            .unwrap_or(0);
        connections.push(Connection {
            client_id: text("clientId"),
            client_addr: text("clientAddr"),
            language,
            version,
        });
    }
    connections.sort_by(|a, b| a.client_id.cmp(&b.client_id));
    let table: BTreeMap<String, WireSubscription> = member(&v, "subscriptionTable", WHAT)?;
    Ok(ConsumerConnection {
        connections,
        subscriptions: table.into_values().map(Subscription::from).collect(),
        consume_type: enum_text(&v, "consumeType"),
        message_model: enum_text(&v, "messageModel"),
        consume_from_where: enum_text(&v, "consumeFromWhere"),
    })
}

impl From<WireQueue> for ProcessQueueInfo {
    fn from(w: WireQueue) -> Self {
        ProcessQueueInfo {
            commit_offset: w.commit_offset,
            cached_msg_min_offset: w.cached_msg_min_offset,
            cached_msg_max_offset: w.cached_msg_max_offset,
            cached_msg_count: w.cached_msg_count,
            cached_msg_size_in_mib: w.cached_msg_size_in_mib,
            transaction_msg_count: w.transaction_msg_count,
            transaction_msg_min_offset: w.transaction_msg_min_offset,
            transaction_msg_max_offset: w.transaction_msg_max_offset,
            locked: w.locked,
            try_unlock_times: w.try_unlock_times,
            last_lock_timestamp: w.last_lock_timestamp,
            dropped: w.droped,
            last_pull_timestamp: w.last_pull_timestamp,
            last_consume_timestamp: w.last_consume_timestamp,
        }
    }
}

/// The GET_CONSUMER_RUNNING_INFO body a consumer answers with (Java `ConsumerRunningInfo`):
/// `mqTable` keyed by queue objects.
pub(crate) fn decode_consumer_running_info(body: &[u8]) -> Result<ConsumerRunningInfo, CodecError> {
    const WHAT: &str = "ConsumerRunningInfo";
    let v = parse(body, WHAT)?;
    // Java's `Properties` hold strings; a client that writes numbers or booleans is read too.
    let raw: BTreeMap<String, Value> = member(&v, "properties", WHAT)?;
    let properties = raw
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (k, text)
        })
        .collect();
    let mq_table = decode_queue_map(v.get("mqTable"), "mqTable", |mq, q| {
        q.deserialize::<WireQueue>()
            .map(ProcessQueueInfo::from)
            .map_err(|e| json_err(WHAT, format!("queue {mq}: {e}")))
    })?;
    let status_table: BTreeMap<String, ConsumeStatus> = member(&v, "statusTable", WHAT)?;
    let subscriptions: Vec<WireSubscription> = member(&v, "subscriptionSet", WHAT)?;
    let jstack = match v.get("jstack") {
        Some(FjValue::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    Ok(ConsumerRunningInfo {
        properties,
        subscriptions: subscriptions.into_iter().map(Subscription::from).collect(),
        mq_table: mq_table.into_iter().collect(),
        status_table,
        jstack,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::MessageQueue;

    /// golden-4.9.8.txt, "GET_CONSUMER_RUNNING_INFO response body JSON", byte for byte.
    const GOLDEN_RUNNING_INFO: &str = r#"{"mqTable":{{"brokerName":"broker-a","queueId":0,"topic":"T"}:{"cachedMsgCount":0,"cachedMsgMaxOffset":0,"cachedMsgMinOffset":0,"cachedMsgSizeInMiB":0,"commitOffset":42,"droped":false,"lastConsumeTimestamp":0,"lastLockTimestamp":0,"lastPullTimestamp":0,"locked":false,"transactionMsgCount":0,"transactionMsgMaxOffset":0,"transactionMsgMinOffset":0,"tryUnlockTimes":0}},"properties":{"PROP_CONSUME_ORDERLY":"false"},"statusTable":{"T":{"consumeFailedMsgs":0,"consumeFailedTPS":0.0,"consumeOKTPS":0.0,"consumeRT":0.0,"pullRT":0.0,"pullTPS":0.0}},"subscriptionSet":[{"classFilterMode":false,"codeSet":[2598919,2598920],"expressionType":"TAG","subString":"TagA || TagB","subVersion":1700000000000,"tagsSet":["TagA","TagB"],"topic":"T"}]}"#;

    #[test]
    fn running_info_decodes_the_golden_java_body() {
        let info = decode_consumer_running_info(GOLDEN_RUNNING_INFO.as_bytes()).unwrap();
        assert_eq!(
            info.properties
                .get("PROP_CONSUME_ORDERLY")
                .map(String::as_str),
            Some("false")
        );
        let mq = MessageQueue::new("T", "broker-a", 0);
        assert_eq!(info.mq_table.len(), 1);
        assert_eq!(info.mq_table[&mq].commit_offset, 42);
        assert!(!info.mq_table[&mq].dropped);
        assert_eq!(info.status_table["T"].consume_failed_msgs, 0);
        assert_eq!(
            info.subscriptions,
            vec![Subscription {
                topic: "T".into(),
                expression: "TagA || TagB".into(),
                expression_type: "TAG".into(),
            }]
        );
        assert_eq!(info.jstack, None);
    }

    #[test]
    fn running_info_of_this_client_round_trips() {
        // What this crate's consumer answers the broker with, read back by the admin.
        let mut wire = crate::remoting::protocol::body::ConsumerRunningInfo::default();
        wire.properties
            .insert("PROP_CONSUME_TYPE".into(), "CONSUME_PASSIVELY".into());
        wire.mq_table.push((
            MessageQueue::new("T", "b", 3),
            WireQueue {
                commit_offset: 7,
                cached_msg_count: 2,
                locked: true,
                ..WireQueue::default()
            },
        ));
        wire.status_table.insert(
            "T".into(),
            ConsumeStatus {
                pull_tps: 1.5,
                undecodable_msgs: 4,
                ..ConsumeStatus::default()
            },
        );
        let info = decode_consumer_running_info(wire.encode().unwrap().as_bytes()).unwrap();
        let q = &info.mq_table[&MessageQueue::new("T", "b", 3)];
        assert_eq!(
            (q.commit_offset, q.cached_msg_count, q.locked),
            (7, 2, true)
        );
        assert_eq!(info.status_table["T"].pull_tps, 1.5);
        assert_eq!(info.status_table["T"].undecodable_msgs, 4);
        assert_eq!(info.properties["PROP_CONSUME_TYPE"], "CONSUME_PASSIVELY");
    }

    #[test]
    fn running_info_with_jstack_and_odd_property_values() {
        let body = r#"{"jstack":"main\n  at x","properties":{"n":3,"b":true},"mqTable":{}}"#;
        let info = decode_consumer_running_info(body.as_bytes()).unwrap();
        assert_eq!(info.jstack.as_deref(), Some("main\n  at x"));
        assert_eq!(info.properties["n"], "3");
        assert_eq!(info.properties["b"], "true");
        assert!(info.mq_table.is_empty() && info.subscriptions.is_empty());
    }

    #[test]
    fn consume_stats_decode_object_keys_as_java_writes_them() {
        // Java's fastjson form: queue objects as keys, members alphabetical.
        let body = concat!(
            r#"{"consumeTps":2.5,"offsetTable":{"#,
            r#"{"brokerName":"broker-a","queueId":1,"topic":"T"}:{"brokerOffset":10,"consumerOffset":4,"lastTimestamp":1700000000000,"pullOffset":4},"#,
            r#"{"brokerName":"broker-a","queueId":0,"topic":"T"}:{"brokerOffset":3,"consumerOffset":3,"lastTimestamp":0}"#,
            r#"}}"#
        );
        let stats = decode_consume_stats(body.as_bytes()).unwrap();
        assert_eq!(stats.consume_tps, 2.5);
        let q: Vec<_> = stats.offset_table.iter().collect();
        assert_eq!(q[0].0, &MessageQueue::new("T", "broker-a", 0));
        assert_eq!(
            *q[1].1,
            OffsetWrapper {
                broker_offset: 10,
                consumer_offset: 4,
                last_timestamp: 1_700_000_000_000
            }
        );
        assert_eq!(stats.diff_total(), 6);
    }

    #[test]
    fn consume_stats_of_rocketmq_rust_decode_too() {
        // rocketmq-rust 1.0.0 writes consumeTps after offsetTable.
        let body = r#"{"offsetTable":{{"topic":"T","brokerName":"b","queueId":0}:{"brokerOffset":5,"consumerOffset":-1,"pullOffset":0,"lastTimestamp":0}},"consumeTps":0.0}"#;
        let stats = decode_consume_stats(body.as_bytes()).unwrap();
        let o = stats.offset_table[&MessageQueue::new("T", "b", 0)];
        assert_eq!((o.broker_offset, o.consumer_offset, o.lag()), (5, -1, 5));
    }

    #[test]
    fn malformed_bodies_are_errors_that_name_the_body() {
        for (body, what) in [
            (&b"{"[..], "ConsumeStats"),
            (br#"{"offsetTable":{"x":1}}"#, "offsetTable"),
            (
                br#"{"offsetTable":{{"topic":"T","brokerName":"b","queueId":0}:"ten"}}"#,
                "ConsumeStats",
            ),
        ] {
            let e = decode_consume_stats(body).unwrap_err();
            assert!(e.to_string().contains(what), "{e}");
        }
        let e = decode_consumer_connection(br#"{"connectionSet":7}"#).unwrap_err();
        assert!(e.to_string().contains("ConsumerConnection"), "{e}");
        let e = decode_cluster_info(b"not json").unwrap_err();
        assert!(e.to_string().contains("ClusterInfo"), "{e}");
        let e = decode_consumer_running_info(br#"{"mqTable":[1]}"#).unwrap_err();
        assert!(e.to_string().contains("mqTable"), "{e}");
    }

    #[test]
    fn cluster_info_with_fastjson_number_keys() {
        // Java's name server writes `brokerAddrs` with number keys, as in the golden route.
        let body = r#"{"brokerAddrTable":{"broker-a":{"brokerAddrs":{0:"127.0.0.1:10911",1:"127.0.0.1:10921"},"brokerName":"broker-a","cluster":"DefaultCluster"}},"clusterAddrTable":{"DefaultCluster":["broker-a"]}}"#;
        let info = decode_cluster_info(body.as_bytes()).unwrap();
        let b = &info.broker_addr_table["broker-a"];
        assert_eq!(b.master_addr(), Some("127.0.0.1:10911"));
        assert_eq!(b.broker_addrs[&1], "127.0.0.1:10921");
        assert_eq!(b.cluster, "DefaultCluster");
        assert!(info.cluster_addr_table["DefaultCluster"].contains("broker-a"));
    }

    #[test]
    fn topic_list_is_sorted() {
        let list =
            decode_topic_list(br#"{"topicList":["b","a","TBW102"],"brokerAddr":null}"#).unwrap();
        assert_eq!(list, vec!["TBW102", "a", "b"]);
    }

    #[test]
    fn consumer_connection_in_java_and_numeric_language_forms() {
        let body = r#"{"connectionSet":[{"clientAddr":"10.0.0.2:5000","clientId":"10.0.0.2@b","language":"JAVA","version":401},{"clientAddr":"10.0.0.1:5000","clientId":"10.0.0.1@a","language":12,"version":0}],"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","consumeType":"CONSUME_PASSIVELY","messageModel":"CLUSTERING","subscriptionTable":{"T":{"classFilterMode":false,"codeSet":[],"expressionType":"TAG","subString":"*","subVersion":1,"tagsSet":[],"topic":"T"},"S":{"subString":"a > 1","expressionType":"SQL92","topic":"S"}}}"#;
        let c = decode_consumer_connection(body.as_bytes()).unwrap();
        assert_eq!(
            c.connections,
            vec![
                Connection {
                    client_id: "10.0.0.1@a".into(),
                    client_addr: "10.0.0.1:5000".into(),
                    language: "RUST".into(),
                    version: 0,
                },
                Connection {
                    client_id: "10.0.0.2@b".into(),
                    client_addr: "10.0.0.2:5000".into(),
                    language: "JAVA".into(),
                    version: 401,
                },
            ]
        );
        assert_eq!(c.subscriptions.len(), 2);
        assert_eq!(c.subscriptions[0].topic, "S");
        assert_eq!(c.subscriptions[0].expression_type, "SQL92");
        assert_eq!(c.subscriptions[1].expression, "*");
        assert_eq!(c.consume_type, "CONSUME_PASSIVELY");
        assert_eq!(c.message_model, "CLUSTERING");
        assert_eq!(c.consume_from_where, "CONSUME_FROM_LAST_OFFSET");
    }

    #[test]
    fn queue_maps_serialize_as_entry_lists() {
        let mut stats = ConsumeStats::default();
        stats.offset_table.insert(
            MessageQueue::new("T", "b", 0),
            OffsetWrapper {
                broker_offset: 3,
                consumer_offset: 1,
                last_timestamp: 0,
            },
        );
        let v = serde_json::to_value(&stats).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "offsetTable": [{
                    "messageQueue": {"topic": "T", "brokerName": "b", "queueId": 0},
                    "brokerOffset": 3, "consumerOffset": 1, "lastTimestamp": 0
                }],
                "consumeTps": 0.0
            })
        );
    }
}
