//! A topic's writable queues as the producer sees them (Java `TopicPublishInfo`), and the
//! rotating index the producer walks them with (Java `ThreadLocalIndex`).
//!
//! It lives with the instance, as in Java (`client.impl.producer`): the instance builds it from
//! a route and hands it to producers through `MQProducerInner`, so it must sit below them.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::common::route::topic_publish_queues;
use crate::common::{MessageQueue, TopicRouteData};
use crate::error::Result;

/// Java's `ThreadLocalIndex::POSITIVE_MASK`.
const POSITIVE_MASK: u32 = 0x7FFF_FFFF;

/// A round-robin counter that starts at a random value (Java `ThreadLocalIndex`).
///
/// Java keeps one counter per thread so threads don't contend on it. Here it is one `AtomicU32`
/// shared by all threads: a relaxed `fetch_add` is cheap, and sharing spreads concurrent senders
/// over the queues at least as evenly as per-thread counters do. The seed is random (from the
/// standard library's randomly keyed hasher, no `rand` crate) so that many producers started
/// together don't all hit the first queue first.
#[derive(Debug)]
pub(crate) struct RotatingIndex {
    value: AtomicU32,
}

impl RotatingIndex {
    /// A counter with a random seed in `0..=i32::MAX`.
    pub(crate) fn new() -> Self {
        Self::with_seed(random_seed() as u32)
    }

    /// A counter with a fixed seed, for tests.
    pub(crate) fn with_seed(seed: u32) -> Self {
        RotatingIndex {
            value: AtomicU32::new(seed & POSITIVE_MASK),
        }
    }

    /// Adds one and returns the new value masked to `0..=i32::MAX` (Java `incrementAndGet`).
    pub(crate) fn increment_and_get(&self) -> u32 {
        self.value.fetch_add(1, Ordering::Relaxed).wrapping_add(1) & POSITIVE_MASK
    }
}

impl Default for RotatingIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for RotatingIndex {
    /// A counter that continues from this one's current value.
    fn clone(&self) -> Self {
        Self::with_seed(self.value.load(Ordering::Relaxed))
    }
}

/// 64 random bits for seeding counters and the random selector. Not for cryptography.
pub(crate) fn random_seed() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_i64(crate::common::util::now_millis());
    hasher.write_u64(u64::from(std::process::id()));
    hasher.finish()
}

/// A topic's writable queues, built from its route (Java `TopicPublishInfo`).
///
/// Shared read-only once built (the route cache swaps in a new one on a route change), except
/// for `send_which_queue`, which is atomic.
#[derive(Debug, Clone, Default)]
pub(crate) struct TopicPublishInfo {
    /// `true` once built from a name-server route (Java sets it right after conversion).
    pub(crate) have_topic_router_info: bool,
    /// The queues a send may go to, in route order.
    pub(crate) message_queue_list: Vec<MessageQueue>,
    /// The round-robin position in `message_queue_list`.
    pub(crate) send_which_queue: RotatingIndex,
    /// The route this was built from.
    pub(crate) topic_route_data: Option<TopicRouteData>,
}

impl TopicPublishInfo {
    /// Converts a name-server route (Java `MQClientInstance.topicRouteData2TopicPublishInfo`):
    /// the queues of [`topic_publish_queues`], which also rejects a malformed `orderTopicConf`.
    pub(crate) fn from_route(topic: &str, route: &TopicRouteData) -> Result<Self> {
        let message_queue_list = topic_publish_queues(topic, route)?;
        Ok(TopicPublishInfo {
            have_topic_router_info: true,
            message_queue_list,
            send_which_queue: RotatingIndex::new(),
            topic_route_data: Some(route.clone()),
        })
    }

    /// `true` when there is at least one queue to send to.
    pub(crate) fn ok(&self) -> bool {
        !self.message_queue_list.is_empty()
    }

    /// The next queue round-robin, skipping queues of `last_broker` (the broker the previous
    /// attempt failed on) when another broker has one (Java `selectOneMessageQueue(String)`).
    ///
    /// Tries up to `len` successive positions for a queue on another broker, and falls back to
    /// the plain next queue if every queue is on `last_broker`. `None` only when the list is
    /// empty.
    pub(crate) fn select_one_message_queue(
        &self,
        last_broker: Option<&str>,
    ) -> Option<MessageQueue> {
        let n = self.message_queue_list.len();
        if n == 0 {
            return None;
        }
        if let Some(last) = last_broker {
            for _ in 0..n {
                let pos = self.send_which_queue.increment_and_get() as usize % n;
                let mq = &self.message_queue_list[pos];
                if mq.broker_name != last {
                    return Some(mq.clone());
                }
            }
        }
        let pos = self.send_which_queue.increment_and_get() as usize % n;
        Some(self.message_queue_list[pos].clone())
    }

    /// The number of writable queues of `broker` for this topic, if the route has a writable
    /// queue data for it (Java `getQueueIdByBroker`, which despite its name returns the write
    /// queue count, or -1).
    ///
    /// Unlike Java, `None` also when the route lists no master for `broker` (its master is down
    /// and only a slave is left): nothing can be sent to it, and a send picked there would only
    /// fail with "The broker[..] not exist".
    pub(crate) fn queue_id_by_broker(&self, broker: &str) -> Option<i32> {
        if !self
            .message_queue_list
            .iter()
            .any(|mq| mq.broker_name == broker)
        {
            return None;
        }
        self.topic_route_data
            .as_ref()?
            .queue_datas
            .iter()
            .find(|qd| qd.is_writeable() && qd.broker_name == broker)
            .map(|qd| qd.write_queue_nums)
    }

    /// The topic of the queues (all queues share it), if there are any.
    #[cfg(test)]
    pub(crate) fn topic(&self) -> Option<&str> {
        self.message_queue_list.first().map(|mq| mq.topic.as_str())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::common::route::{BrokerData, QueueData, MASTER_ID};

    pub(crate) fn queue_data(broker: &str, write: i32, perm: i32) -> QueueData {
        QueueData {
            broker_name: broker.into(),
            read_queue_nums: write,
            write_queue_nums: write,
            perm,
            topic_sys_flag: 0,
        }
    }

    pub(crate) fn broker_data(broker: &str, ids: &[i64]) -> BrokerData {
        BrokerData {
            cluster: "DefaultCluster".into(),
            broker_name: broker.into(),
            broker_addrs: ids
                .iter()
                .map(|id| (*id, format!("127.0.0.1:{}", 10911 + id)))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    /// A route with the given brokers, each a master with `queues` read-write queues.
    pub(crate) fn route(brokers: &[(&str, i32)]) -> TopicRouteData {
        TopicRouteData {
            queue_datas: brokers.iter().map(|(b, n)| queue_data(b, *n, 6)).collect(),
            broker_datas: brokers
                .iter()
                .map(|(b, _)| broker_data(b, &[MASTER_ID]))
                .collect(),
            ..Default::default()
        }
    }

    fn names(info: &TopicPublishInfo) -> Vec<String> {
        info.message_queue_list
            .iter()
            .map(|q| format!("{}:{}", q.broker_name, q.queue_id))
            .collect()
    }

    #[test]
    fn from_route_sorts_by_broker_and_uses_write_queue_nums() {
        let mut r = route(&[("broker-b", 2), ("broker-a", 3)]);
        r.queue_datas[1].read_queue_nums = 8; // read count must not matter
        let info = TopicPublishInfo::from_route("T", &r).unwrap();
        assert!(info.have_topic_router_info);
        assert!(info.ok());
        assert_eq!(
            names(&info),
            [
                "broker-a:0",
                "broker-a:1",
                "broker-a:2",
                "broker-b:0",
                "broker-b:1"
            ]
        );
        assert!(info.message_queue_list.iter().all(|q| q.topic == "T"));
        assert_eq!(info.topic(), Some("T"));
        assert_eq!(info.topic_route_data.as_ref(), Some(&r));
    }

    #[test]
    fn from_route_skips_read_only_and_masterless_brokers() {
        let mut r = route(&[
            ("broker-a", 2),
            ("broker-b", 2),
            ("broker-c", 2),
            ("broker-d", 2),
        ]);
        r.queue_datas[1].perm = 4; // broker-b: read only
        r.broker_datas[2] = broker_data("broker-c", &[1, 2]); // broker-c: slaves only
        r.broker_datas.remove(3); // broker-d: no broker data at all
        let info = TopicPublishInfo::from_route("T", &r).unwrap();
        assert_eq!(names(&info), ["broker-a:0", "broker-a:1"]);
        assert_eq!(info.queue_id_by_broker("broker-a"), Some(2));
        assert_eq!(info.queue_id_by_broker("broker-b"), None, "not writable");
        assert_eq!(
            info.queue_id_by_broker("broker-c"),
            None,
            "writable queues, but no master to send to (Java would say 2)"
        );
        assert_eq!(info.queue_id_by_broker("broker-d"), None, "no broker data");
        assert_eq!(info.queue_id_by_broker("broker-x"), None);
    }

    #[test]
    fn from_route_with_only_masterless_broker_is_not_ok() {
        let mut r = route(&[("broker-a", 4)]);
        r.broker_datas[0] = broker_data("broker-a", &[1]);
        let info = TopicPublishInfo::from_route("T", &r).unwrap();
        assert!(!info.ok());
        assert_eq!(info.select_one_message_queue(None), None);
        assert_eq!(info.select_one_message_queue(Some("broker-a")), None);
    }

    #[test]
    fn from_route_order_topic_conf_keeps_listed_order() {
        let mut r = route(&[("broker-a", 8), ("broker-b", 8)]);
        r.order_topic_conf = Some("broker-b:2;broker-a:3".into());
        let info = TopicPublishInfo::from_route("T", &r).unwrap();
        assert_eq!(
            names(&info),
            [
                "broker-b:0",
                "broker-b:1",
                "broker-a:0",
                "broker-a:1",
                "broker-a:2"
            ]
        );
    }

    #[test]
    fn from_route_empty_order_topic_conf_is_ignored() {
        let mut r = route(&[("broker-a", 1)]);
        r.order_topic_conf = Some(String::new());
        let info = TopicPublishInfo::from_route("T", &r).unwrap();
        assert_eq!(names(&info), ["broker-a:0"]);
    }

    #[test]
    fn from_route_rejects_malformed_order_topic_conf() {
        for conf in ["broker-a", "broker-a:x", "broker-a:4;broker-b"] {
            let mut r = route(&[]);
            r.order_topic_conf = Some(conf.into());
            let err = TopicPublishInfo::from_route("T", &r).unwrap_err();
            assert!(err.to_string().contains("orderTopicConf"), "{conf}: {err}");
        }
    }

    #[test]
    fn rotating_index_increments_and_masks() {
        let idx = RotatingIndex::with_seed(5);
        assert_eq!(idx.increment_and_get(), 6);
        assert_eq!(idx.increment_and_get(), 7);
        let top = RotatingIndex::with_seed(0x7FFF_FFFF);
        assert_eq!(
            top.increment_and_get(),
            0,
            "wraps to 0 like Java's masked int"
        );
        assert_eq!(top.increment_and_get(), 1);
        assert!(RotatingIndex::new().increment_and_get() <= 0x7FFF_FFFF);
        let cloned = idx.clone();
        assert_eq!(cloned.increment_and_get(), 8);
    }

    #[test]
    fn plain_selection_round_robins() {
        let mut info =
            TopicPublishInfo::from_route("T", &route(&[("broker-a", 2), ("broker-b", 2)])).unwrap();
        info.send_which_queue = RotatingIndex::with_seed(0);
        let picked: Vec<i32> = (0..5)
            .map(|_| {
                let q = info.select_one_message_queue(None).unwrap();
                q.queue_id + if q.broker_name == "broker-b" { 10 } else { 0 }
            })
            .collect();
        // Index 1, 2, 3, 4, 5 over [a0, a1, b0, b1].
        assert_eq!(picked, [1, 10, 11, 0, 1]);
    }

    #[test]
    fn plain_selection_avoids_last_broker() {
        let mut info =
            TopicPublishInfo::from_route("T", &route(&[("broker-a", 4), ("broker-b", 1)])).unwrap();
        for seed in 0..10 {
            info.send_which_queue = RotatingIndex::with_seed(seed);
            let q = info.select_one_message_queue(Some("broker-a")).unwrap();
            assert_eq!(q.broker_name, "broker-b", "seed {seed}");
            let q = info.select_one_message_queue(Some("broker-b")).unwrap();
            assert_eq!(q.broker_name, "broker-a", "seed {seed}");
        }
    }

    #[test]
    fn plain_selection_falls_back_when_only_last_broker_exists() {
        let info = TopicPublishInfo::from_route("T", &route(&[("broker-a", 2)])).unwrap();
        let q = info.select_one_message_queue(Some("broker-a")).unwrap();
        assert_eq!(q.broker_name, "broker-a");
    }
}
