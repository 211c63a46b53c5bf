//! Topic route data from the name server (`GET_ROUTEINFO_BY_TOPIC`).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// Permission bit: the queue may be read.
pub const PERM_READ: i32 = 4;
/// Permission bit: the queue may be written.
pub const PERM_WRITE: i32 = 2;
/// Broker id of a master.
pub const MASTER_ID: i64 = 0;

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
