//! Topic route data from the name server (`GET_ROUTEINFO_BY_TOPIC`).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::MessageQueue;
use crate::error::CodecError;

/// Permission bit: the queue may be read.
pub const PERM_READ: i32 = 4;
/// Permission bit: the queue may be written.
pub const PERM_WRITE: i32 = 2;
/// Broker id of a master.
pub const MASTER_ID: i64 = 0;
/// The most queues a topic route may give a client, over all its brokers, counting read and
/// write queues separately. The counts are `i32`s from the name server: without a bound, a
/// route asking for `i32::MAX` queues makes the client build 2^31 queue values. Java has no
/// bound; real topics have a few to a few hundred queues per broker.
pub const MAX_ROUTE_QUEUES: usize = 65_536;

/// A topic's route: which brokers hold it and how many queues each has (Java `TopicRouteData`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicRouteData {
    /// `"brokerName:queueNum;..."` for ordered topics; usually absent.
    pub order_topic_conf: Option<String>,
    /// Queue counts and permissions per broker.
    pub queue_datas: Vec<QueueData>,
    /// Addresses per broker.
    pub broker_datas: Vec<BrokerData>,
    /// Filter servers per broker address (deprecated feature; normally empty).
    pub filter_server_table: HashMap<String, Vec<String>>,
}

/// One broker's queues of a topic (Java `QueueData`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct QueueData {
    /// The broker name.
    pub broker_name: String,
    /// The number of readable queues.
    pub read_queue_nums: i32,
    /// The number of writable queues.
    pub write_queue_nums: i32,
    /// Permission bits ([`PERM_READ`], [`PERM_WRITE`]).
    pub perm: i32,
    /// Topic system flag.
    pub topic_sys_flag: i32,
}

/// One broker's addresses (Java `BrokerData`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BrokerData {
    /// The cluster name.
    pub cluster: String,
    /// The broker name.
    pub broker_name: String,
    /// Broker id (0 = master) to `ip:port`.
    pub broker_addrs: BTreeMap<i64, String>,
}

impl QueueData {
    /// `true` when the queues may be read.
    pub fn is_readable(&self) -> bool {
        self.perm & PERM_READ != 0
    }
    /// `true` when the queues may be written.
    pub fn is_writeable(&self) -> bool {
        self.perm & PERM_WRITE != 0
    }
}

impl BrokerData {
    /// The master's address, if the broker has one.
    pub fn master_addr(&self) -> Option<&str> {
        self.broker_addrs.get(&MASTER_ID).map(String::as_str)
    }
}

impl TopicRouteData {
    /// Decodes a `GET_ROUTEINFO_BY_TOPIC` body. Accepts standard JSON and fastjson's default
    /// form, which writes integer map keys unquoted (`"brokerAddrs":{0:"127.0.0.1:10911"}`), as
    /// older name servers send.
    ///
    /// A route whose queue counts are negative or add up to more than [`MAX_ROUTE_QUEUES`] (per
    /// kind: read, write, `orderTopicConf`) is refused here, before any queue is built from it.
    pub fn decode(body: &[u8]) -> Result<TopicRouteData, CodecError> {
        let json = quote_numeric_keys(body);
        let route: TopicRouteData = serde_json::from_slice(&json)
            .map_err(|e| CodecError::Json(format!("TopicRouteData: {e}")))?;
        let order = route.order_topic_conf.as_deref().unwrap_or("");
        // Malformed entries are left to `topic_publish_queues`, which refuses them.
        let order = order
            .split(';')
            .filter_map(|e| e.split_once(':')?.1.trim().parse::<i32>().ok());
        check_queue_count(
            "readQueueNums",
            route.queue_datas.iter().map(|q| q.read_queue_nums),
        )?;
        check_queue_count(
            "writeQueueNums",
            route.queue_datas.iter().map(|q| q.write_queue_nums),
        )?;
        check_queue_count("orderTopicConf", order)?;
        Ok(route)
    }
}

fn check_queue_count(
    field: &'static str,
    counts: impl Iterator<Item = i32>,
) -> Result<(), CodecError> {
    let mut total = 0usize;
    for n in counts {
        total = usize::try_from(n).map_or(usize::MAX, |n| total.saturating_add(n));
        if total > MAX_ROUTE_QUEUES {
            return Err(CodecError::InvalidField {
                field,
                value: format!("{n} (negative, or past {MAX_ROUTE_QUEUES} queues in the route)"),
            });
        }
    }
    Ok(())
}

/// Quotes bare integer object keys outside strings (`{0:"a",-1:"b"}` → `{"0":"a","-1":"b"}`), so
/// serde_json accepts fastjson output. Borrows when nothing needs quoting.
fn quote_numeric_keys(src: &[u8]) -> Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut in_string = false;
    let mut escaped = false;
    let mut i = 0;
    while i < src.len() {
        let c = src[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
        } else if c == b'"' {
            in_string = true;
        } else if c == b'{' || c == b',' {
            // A key position: skip whitespace, look for -?digits followed by ':'.
            let mut j = i + 1;
            while j < src.len() && src[j].is_ascii_whitespace() {
                j += 1;
            }
            let start = j;
            if j < src.len() && src[j] == b'-' {
                j += 1;
            }
            let digits = j;
            while j < src.len() && src[j].is_ascii_digit() {
                j += 1;
            }
            let end = j;
            while j < src.len() && src[j].is_ascii_whitespace() {
                j += 1;
            }
            if end > digits && j < src.len() && src[j] == b':' {
                let o = out.get_or_insert_with(|| {
                    let mut v = Vec::with_capacity(src.len() + 16);
                    v.extend_from_slice(&src[..i]);
                    v
                });
                o.extend_from_slice(&src[i..start]);
                o.push(b'"');
                o.extend_from_slice(&src[start..end]);
                o.push(b'"');
                i = end;
                continue;
            }
        }
        if let Some(o) = out.as_mut() {
            o.push(c);
        }
        i += 1;
    }
    match out {
        Some(v) => Cow::Owned(v),
        None => Cow::Borrowed(src),
    }
}

/// The queues a producer may send to (Java `topicRouteData2TopicPublishInfo`, FACTS §5.1).
///
/// With an `orderTopicConf` (`"broker-a:4;broker-b:4"`) the queues are `0..n` of each listed
/// broker in that order. Otherwise, brokers sorted by name, the `0..writeQueueNums` queues of every
/// writeable broker that has a master.
///
/// A malformed `orderTopicConf` entry is an error (Java throws `NumberFormatException` and the
/// route update fails), rather than a silently shorter queue list that would reorder every
/// ordered key.
pub fn topic_publish_queues(
    topic: &str,
    route: &TopicRouteData,
) -> Result<Vec<MessageQueue>, CodecError> {
    let mut queues = Vec::new();
    if let Some(conf) = route.order_topic_conf.as_deref().filter(|c| !c.is_empty()) {
        for entry in conf.split(';').filter(|e| !e.is_empty()) {
            let invalid = || CodecError::InvalidField {
                field: "orderTopicConf",
                value: conf.to_owned(),
            };
            let (broker, nums) = entry.split_once(':').ok_or_else(invalid)?;
            let nums: i32 = nums.trim().parse().map_err(|_| invalid())?;
            queues.extend((0..nums).map(|i| MessageQueue::new(topic, broker, i)));
        }
        return Ok(queues);
    }
    let mut datas: Vec<&QueueData> = route.queue_datas.iter().collect();
    datas.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
    for qd in datas.into_iter().filter(|qd| qd.is_writeable()) {
        let has_master = route
            .broker_datas
            .iter()
            .find(|bd| bd.broker_name == qd.broker_name)
            .is_some_and(|bd| bd.master_addr().is_some());
        if has_master {
            queues.extend(
                (0..qd.write_queue_nums).map(|i| MessageQueue::new(topic, &qd.broker_name, i)),
            );
        }
    }
    Ok(queues)
}

/// The queues a consumer may pull from (Java `topicRouteData2TopicSubscribeInfo`): queues
/// `0..readQueueNums` of every readable broker, sorted and without duplicates. No master is
/// required.
pub fn topic_subscribe_queues(topic: &str, route: &TopicRouteData) -> Vec<MessageQueue> {
    let mut queues: Vec<MessageQueue> = route
        .queue_datas
        .iter()
        .filter(|qd| qd.is_readable())
        .flat_map(|qd| {
            (0..qd.read_queue_nums).map(|i| MessageQueue::new(topic, &qd.broker_name, i))
        })
        .collect();
    queues.sort();
    queues.dedup();
    queues
}

#[cfg(test)]
mod tests {
    use super::*;

    const FASTJSON: &str = r#"{"brokerDatas":[{"brokerAddrs":{0:"127.0.0.1:10911",1:"127.0.0.1:10921"},"brokerName":"broker-a","cluster":"DefaultCluster"}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#;

    fn qd(name: &str, r: i32, w: i32, perm: i32) -> QueueData {
        QueueData {
            broker_name: name.into(),
            read_queue_nums: r,
            write_queue_nums: w,
            perm,
            topic_sys_flag: 0,
        }
    }

    fn bd(name: &str, ids: &[i64]) -> BrokerData {
        BrokerData {
            cluster: "c".into(),
            broker_name: name.into(),
            broker_addrs: ids
                .iter()
                .map(|i| (*i, format!("10.0.0.{i}:10911")))
                .collect(),
        }
    }

    #[test]
    fn quoting_pre_pass() {
        assert_eq!(
            &*quote_numeric_keys(br#"{0:"a", -12 :"b","s":"{1:2}","n":[1,2],"e":"\"",3:{}}"#),
            br#"{"0":"a", "-12" :"b","s":"{1:2}","n":[1,2],"e":"\"","3":{}}"#
        );
        assert!(matches!(quote_numeric_keys(b"{\"0\":1}"), Cow::Borrowed(_)));
    }

    #[test]
    fn decodes_fastjson_form() {
        let r = TopicRouteData::decode(FASTJSON.as_bytes()).unwrap();
        assert_eq!(r.broker_datas[0].master_addr(), Some("127.0.0.1:10911"));
        assert_eq!(r.broker_datas[0].broker_addrs[&1], "127.0.0.1:10921");
        assert_eq!(r.queue_datas[0].perm, 6);
        assert!(TopicRouteData::decode(b"{0:").is_err());
    }

    #[test]
    fn publish_queues_sorted_writeable_with_master() {
        let route = TopicRouteData {
            queue_datas: vec![
                qd("broker-b", 2, 2, PERM_READ | PERM_WRITE),
                qd("broker-a", 4, 3, PERM_READ | PERM_WRITE),
                qd("broker-c", 2, 2, PERM_READ),
                qd("broker-d", 2, 2, PERM_READ | PERM_WRITE),
            ],
            broker_datas: vec![
                bd("broker-a", &[0]),
                bd("broker-b", &[0, 1]),
                bd("broker-c", &[0]),
                bd("broker-d", &[1]),
            ],
            ..Default::default()
        };
        let q = topic_publish_queues("T", &route).unwrap();
        let got: Vec<(&str, i32)> = q
            .iter()
            .map(|m| (m.broker_name.as_str(), m.queue_id))
            .collect();
        assert_eq!(
            got,
            [
                ("broker-a", 0),
                ("broker-a", 1),
                ("broker-a", 2),
                ("broker-b", 0),
                ("broker-b", 1)
            ]
        );
        assert!(q.iter().all(|m| m.topic == "T"));

        let sub = topic_subscribe_queues("T", &route);
        assert_eq!(sub.len(), 4 + 2 + 2 + 2);
        assert_eq!(sub[0], MessageQueue::new("T", "broker-a", 0));
        assert_eq!(sub.last(), Some(&MessageQueue::new("T", "broker-d", 1)));
    }

    #[test]
    fn publish_queues_from_order_topic_conf() {
        let route = TopicRouteData {
            order_topic_conf: Some("broker-b:2;broker-a:1;".into()),
            queue_datas: vec![qd("broker-a", 8, 8, 6)],
            ..Default::default()
        };
        let q = topic_publish_queues("T", &route).unwrap();
        assert_eq!(
            q,
            [
                MessageQueue::new("T", "broker-b", 0),
                MessageQueue::new("T", "broker-b", 1),
                MessageQueue::new("T", "broker-a", 0),
            ]
        );
        // A bad entry fails the whole conversion, as Java's NumberFormatException does.
        for bad in ["broker-b:2;bad;", "broker-a:x"] {
            let route = TopicRouteData {
                order_topic_conf: Some(bad.into()),
                ..Default::default()
            };
            assert!(topic_publish_queues("T", &route).is_err(), "{bad}");
        }
    }
}
