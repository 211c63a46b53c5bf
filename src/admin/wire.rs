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
