//! Latency fault tolerance: keep sending to brokers that answer, avoid the ones that failed or
//! were slow for a while (Java `MQFaultStrategy` and `LatencyFaultToleranceImpl`, FACTS §19.4).
//!
//! After every send attempt the producer reports the broker and the attempt's latency
//! ([`MQFaultStrategy::update_fault_item`]); a failed attempt (connect error, timeout, ...) is
//! reported with `isolation = true`. The latency maps to a penalty window during which queue
//! selection skips that broker:
//!
//! | latency (ms) ≥ | 0 | 50 | 100 | 550 | 1000 | 2000 | 3000 | 15000 |
//! |---|---|---|---|---|---|---|---|---|
//! | broker avoided for (ms) | 0 | 0 | 0 | 30 000 | 60 000 | 120 000 | 180 000 | 600 000 |
//!
//! An isolated broker counts as 30 000 ms of latency, so it is avoided for 600 000 ms (ten
//! minutes), unless a later successful attempt on it (chosen as a last resort when every broker
//! is penalised) resets its window.
//!
//! # Deviations from Java 4.9.8
//!
//! * **On by default.** Java's `sendLatencyFaultEnable` defaults to `false`, so a dead broker
//!   keeps being chosen round-robin and every other send needs a retry. This crate defaults to
//!   `true` ([`DEFAULT_SEND_LATENCY_FAULT_ENABLE`]): on a two-broker cluster where `broker-a`
//!   dies, each send fails over at most once and then the penalty window stops choosing
//!   `broker-a` (DESIGN.md pitfall 7). Turn it off to get Java's plain round-robin.
//! * **The retry avoids the broker that just failed.** Java's fault-tolerant path ignores the
//!   previous attempt's broker. When that broker is still "available" (for example it answered
//!   quickly with an error, which earns no penalty), Java's next pick is often the same broker
//!   again. Here the first pass skips it when another available broker has a queue; if none
//!   has, selection proceeds exactly as in Java.
//! * **A broker without a master is never the least bad one.** When every broker is penalised,
//!   Java picks the least bad broker of the table if the route has writable queues for it, even
//!   when its master is gone and only a slave is listed; every such attempt fails with "The
//!   broker[..] not exist". Here such a broker is dropped from the table like one without
//!   queues.
//! * **A broker back in the route is chosen again at once.** A failed send isolates its broker
//!   for ten minutes; when the broker comes back (its master registers again after the route
//!   had dropped it), Java keeps avoiding it until the window ends, and the other brokers take
//!   every send meanwhile. Here the route update that lists it again forgets its penalty
//!   ([`MQFaultStrategy::forget_brokers_back_in_route`]). A broker that is down for less than
//!   a route refresh (30 s) is never seen to leave, and keeps its window.
//! * **The clock is injectable**, so tests move time instead of sleeping.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::common::util::now_millis;
use crate::common::MessageQueue;

use crate::client::publish_info::{RotatingIndex, TopicPublishInfo};

/// The producer's default for `send_latency_fault_enable`. Java's is `false`; see the module docs
/// for why this crate turns it on.
pub(crate) const DEFAULT_SEND_LATENCY_FAULT_ENABLE: bool = true;

/// Latency thresholds in ms (Java `latencyMax`).
const LATENCY_MAX: [i64; 7] = [50, 100, 550, 1000, 2000, 3000, 15000];
/// Penalty for each threshold in ms (Java `notAvailableDuration`).
const NOT_AVAILABLE_DURATION: [i64; 7] = [0, 0, 30000, 60000, 120000, 180000, 600000];
/// The latency a failed (isolated) attempt counts as.
const ISOLATION_LATENCY: i64 = 30000;

/// A source of "now" in milliseconds since the epoch. Production uses the system clock; tests
/// pass a closure over an atomic they advance by hand.
pub(crate) type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

fn system_clock() -> Clock {
    Arc::new(now_millis)
}

/// One broker's last reported latency and the end of its penalty window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FaultItem {
    /// The latency of the last attempt (the real one, also for isolated attempts).
    current_latency: i64,
    /// The broker is available again from this time on (ms since the epoch).
    start_timestamp: i64,
}

impl FaultItem {
    fn is_available(&self, now: i64) -> bool {
        now >= self.start_timestamp
    }
}

/// The table of brokers with a reported latency (Java `LatencyFaultToleranceImpl`).
///
/// Thread-safe; one lock around a small map, taken once or a few times per send (never per
/// consumed message).
pub(crate) struct LatencyFaultTolerance {
    fault_item_table: Mutex<HashMap<String, FaultItem>>,
    /// Rotates through the better half of the table in `pick_one_at_least`.
    which_item_worst: RotatingIndex,
    clock: Clock,
}

impl LatencyFaultTolerance {
    /// An empty table on the system clock.
    pub(crate) fn new() -> Self {
        Self::with_clock(system_clock())
    }

    /// An empty table on the given clock.
    pub(crate) fn with_clock(clock: Clock) -> Self {
        LatencyFaultTolerance {
            fault_item_table: Mutex::new(HashMap::new()),
            which_item_worst: RotatingIndex::new(),
            clock,
        }
    }

    /// Records `broker`'s latest latency and makes it unavailable for `not_available_duration_ms`
    /// from now (0: available at once).
    pub(crate) fn update_fault_item(
        &self,
        broker: &str,
        current_latency_ms: i64,
        not_available_duration_ms: i64,
    ) {
        let item = FaultItem {
            current_latency: current_latency_ms,
            start_timestamp: (self.clock)().saturating_add(not_available_duration_ms),
        };
        self.fault_item_table.lock().insert(broker.to_owned(), item);
    }

    /// `false` while `broker` is inside a penalty window. Brokers never reported are available.
    pub(crate) fn is_available(&self, broker: &str) -> bool {
        let now = (self.clock)();
        self.fault_item_table
            .lock()
            .get(broker)
            .is_none_or(|item| item.is_available(now))
    }

    /// Forgets `broker`.
    pub(crate) fn remove(&self, broker: &str) {
        self.fault_item_table.lock().remove(broker);
    }

    /// The least bad broker of the table, for when every broker of a topic is penalised (Java
    /// `pickOneAtLeast`).
    ///
    /// Sorts the table: available brokers first, then lower latency, then earlier end of the
    /// penalty window (then name, to be deterministic). With one item it returns that one;
    /// otherwise a rotating index picks one of the better half, so that the load is spread over
    /// the least bad brokers. `None` when the table is empty.
    pub(crate) fn pick_one_at_least(&self) -> Option<String> {
        let now = (self.clock)();
        let mut items: Vec<(String, FaultItem)> = self
            .fault_item_table
            .lock()
            .iter()
            .map(|(name, item)| (name.clone(), *item))
            .collect();
        items.sort_by(|(an, a), (bn, b)| {
            (
                !a.is_available(now),
                a.current_latency,
                a.start_timestamp,
                an,
            )
                .cmp(&(
                    !b.is_available(now),
                    b.current_latency,
                    b.start_timestamp,
                    bn,
                ))
        });
        let half = items.len() / 2;
        let index = if half == 0 {
            0
        } else {
            self.which_item_worst.increment_and_get() as usize % half
        };
        items.into_iter().nth(index).map(|(name, _)| name)
    }

    /// The number of brokers in the table.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.fault_item_table.lock().len()
    }
}

impl Default for LatencyFaultTolerance {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for LatencyFaultTolerance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatencyFaultTolerance")
            .field("fault_item_table", &*self.fault_item_table.lock())
            .field("which_item_worst", &self.which_item_worst)
            .finish_non_exhaustive()
    }
}

/// Chooses the queue of each send attempt and tracks broker latency (Java `MQFaultStrategy`).
#[derive(Debug)]
pub(crate) struct MQFaultStrategy {
    /// Whether latency fault tolerance is on. Default `true` here, `false` in Java.
    pub(crate) send_latency_fault_enable: bool,
    /// Latency thresholds in ms, ascending (Java `latencyMax`).
    pub(crate) latency_max: Vec<i64>,
    /// Penalty in ms for each threshold of `latency_max` (Java `notAvailableDuration`).
    pub(crate) not_available_duration: Vec<i64>,
    latency_fault_tolerance: LatencyFaultTolerance,
}

impl MQFaultStrategy {
    /// A strategy on the system clock with Java's latency tables.
    pub(crate) fn new(send_latency_fault_enable: bool) -> Self {
        Self::with_clock(send_latency_fault_enable, system_clock())
    }

    /// A strategy on the given clock with Java's latency tables.
    pub(crate) fn with_clock(send_latency_fault_enable: bool, clock: Clock) -> Self {
        MQFaultStrategy {
            send_latency_fault_enable,
            latency_max: LATENCY_MAX.to_vec(),
            not_available_duration: NOT_AVAILABLE_DURATION.to_vec(),
            latency_fault_tolerance: LatencyFaultTolerance::with_clock(clock),
        }
    }

    /// The broker table.
    #[cfg(test)]
    pub(crate) fn latency_fault_tolerance(&self) -> &LatencyFaultTolerance {
        &self.latency_fault_tolerance
    }

    /// The penalty for a latency: the duration of the largest threshold `<= latency_ms`, or 0
    /// below the first threshold.
    pub(crate) fn compute_not_available_duration(&self, latency_ms: i64) -> i64 {
        self.latency_max
            .iter()
            .zip(&self.not_available_duration)
            .rev()
            .find(|(max, _)| latency_ms >= **max)
            .map_or(0, |(_, duration)| *duration)
    }

    /// Reports a send attempt on `broker` that took `current_latency_ms`. `isolation` marks a
    /// failed attempt, penalised as if it had taken 30 000 ms. No-op when fault tolerance is off.
    pub(crate) fn update_fault_item(&self, broker: &str, current_latency_ms: i64, isolation: bool) {
        if !self.send_latency_fault_enable {
            return;
        }
        let latency_for_penalty = if isolation {
            ISOLATION_LATENCY
        } else {
            current_latency_ms
        };
        let duration = self.compute_not_available_duration(latency_for_penalty);
        self.latency_fault_tolerance
            .update_fault_item(broker, current_latency_ms, duration);
    }

    /// A topic's route changed from `old` to `new`: every broker `new` can send to and `old`
    /// could not (its master registered again after it was gone from the route) is forgotten,
    /// so it is chosen again at once rather than at the end of a penalty it earned while it was
    /// down (ten minutes for a failed send). Nothing when `old` was no route at all.
    pub(crate) fn forget_brokers_back_in_route(
        &self,
        old: &TopicPublishInfo,
        new: &TopicPublishInfo,
    ) {
        if !old.have_topic_router_info {
            return;
        }
        let before: HashSet<&str> = old
            .message_queue_list
            .iter()
            .map(|mq| mq.broker_name.as_str())
            .collect();
        let mut back: Vec<&str> = new
            .message_queue_list
            .iter()
            .map(|mq| mq.broker_name.as_str())
            .filter(|b| !before.contains(b))
            .collect();
        back.dedup();
        for broker in back {
            self.latency_fault_tolerance.remove(broker);
        }
    }

    /// The queue for the next send attempt. `last_broker_name` is the broker the previous
    /// attempt of the same send went to (`None` on the first attempt). `None` only when the
    /// topic has no queue.
    ///
    /// With fault tolerance off: [`TopicPublishInfo::select_one_message_queue`], round-robin
    /// avoiding `last_broker_name`.
    ///
    /// With fault tolerance on (FACTS §19.4):
    /// 1. From the next round-robin position, the first of the `n` queues whose broker is
    ///    available; on a retry, first looking only at brokers other than `last_broker_name`
    ///    (this crate's addition, see the module docs).
    /// 2. Otherwise the least bad broker of the fault table: if the topic has writable queues
    ///    on it and it has a master, queue `next index % write_queue_nums` of that broker; if
    ///    not, that broker is dropped from the table (Java does the same, but would also pick a
    ///    broker whose master is gone).
    /// 3. Otherwise the plain round-robin queue.
    pub(crate) fn select_one_message_queue(
        &self,
        tp_info: &TopicPublishInfo,
        last_broker_name: Option<&str>,
    ) -> Option<MessageQueue> {
        if !self.send_latency_fault_enable {
            return tp_info.select_one_message_queue(last_broker_name);
        }
        let list = &tp_info.message_queue_list;
        let n = list.len();
        if n == 0 {
            return None;
        }
        let lft = &self.latency_fault_tolerance;
        let start = tp_info.send_which_queue.increment_and_get() as usize;
        let positions = || (0..n).map(|i| &list[(start + i) % n]);
        if let Some(last) = last_broker_name {
            if let Some(mq) =
                positions().find(|mq| mq.broker_name != last && lft.is_available(&mq.broker_name))
            {
                return Some(mq.clone());
            }
        }
        if let Some(mq) = positions().find(|mq| lft.is_available(&mq.broker_name)) {
            return Some(mq.clone());
        }

        if let Some(not_best) = lft.pick_one_at_least() {
            match tp_info.queue_id_by_broker(&not_best) {
                Some(write_queue_nums) if write_queue_nums > 0 => {
                    let queue_id =
                        tp_info.send_which_queue.increment_and_get() % write_queue_nums as u32;
                    return Some(MessageQueue::new(
                        list[0].topic.as_str(),
                        not_best,
                        queue_id as i32,
                    ));
                }
                _ => lft.remove(&not_best),
            }
        }
        tp_info.select_one_message_queue(None)
    }
}

impl Default for MQFaultStrategy {
    /// On the system clock, with fault tolerance [on](DEFAULT_SEND_LATENCY_FAULT_ENABLE).
    fn default() -> Self {
        Self::new(DEFAULT_SEND_LATENCY_FAULT_ENABLE)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;
    use crate::client::publish_info::tests::{broker_data, route};

    const T0: i64 = 1_700_000_000_000;

    /// A clock the test moves by hand.
    fn manual_clock() -> (Arc<AtomicI64>, Clock) {
        let now = Arc::new(AtomicI64::new(T0));
        let reader = now.clone();
        (now, Arc::new(move || reader.load(Ordering::SeqCst)))
    }

    fn publish_info(brokers: &[(&str, i32)], seed: u32) -> TopicPublishInfo {
        let mut info = TopicPublishInfo::from_route("TopicTest", &route(brokers)).unwrap();
        info.send_which_queue = RotatingIndex::with_seed(seed);
        info
    }

    #[test]
    fn not_available_duration_table_matches_java() {
        let s = MQFaultStrategy::new(true);
        let cases = [
            (0, 0),
            (49, 0),
            (50, 0),
            (100, 0),
            (549, 0),
            (550, 30_000),
            (999, 30_000),
            (1000, 60_000),
            (2000, 120_000),
            (2999, 120_000),
            (3000, 180_000),
            (14_999, 180_000),
            (15_000, 600_000),
            (30_000, 600_000),
            (-5, 0),
        ];
        for (latency, duration) in cases {
            assert_eq!(
                s.compute_not_available_duration(latency),
                duration,
                "latency {latency}"
            );
        }
    }

    #[test]
    fn default_strategy_is_enabled() {
        // Deliberately unlike Java (false): see the module docs.
        assert!(MQFaultStrategy::default().send_latency_fault_enable);
    }

    #[test]
    fn isolated_broker_is_avoided_for_the_window_then_chosen_again() {
        let (now, clock) = manual_clock();
        let s = MQFaultStrategy::with_clock(true, clock);
        let info = publish_info(&[("broker-a", 4), ("broker-b", 4)], 0);
        s.update_fault_item("broker-a", 3000, true);
        let lft = s.latency_fault_tolerance();
        assert!(!lft.is_available("broker-a"));
        assert!(lft.is_available("broker-b"));

        // Isolation counts as 30 000 ms of latency: 600 000 ms (10 min) of penalty.
        for at in [0, 1, 30_000, 599_999] {
            now.store(T0 + at, Ordering::SeqCst);
            for _ in 0..16 {
                let mq = s.select_one_message_queue(&info, None).unwrap();
                assert_eq!(mq.broker_name, "broker-b", "at +{at} ms");
            }
        }

        now.store(T0 + 600_000, Ordering::SeqCst);
        assert!(lft.is_available("broker-a"));
        let picked: Vec<_> = (0..8)
            .map(|_| s.select_one_message_queue(&info, None).unwrap().broker_name)
            .collect();
        assert!(picked.iter().any(|b| b == "broker-a"), "{picked:?}");
        assert!(picked.iter().any(|b| b == "broker-b"), "{picked:?}");
    }

    #[test]
    fn slow_broker_penalty_follows_its_latency() {
        let (now, clock) = manual_clock();
        let s = MQFaultStrategy::with_clock(true, clock);
        let info = publish_info(&[("broker-a", 4), ("broker-b", 4)], 0);
        s.update_fault_item("broker-a", 3000, false); // 180 000 ms
        s.update_fault_item("broker-b", 20, false); // 0 ms: fine
        now.store(T0 + 179_999, Ordering::SeqCst);
        for _ in 0..8 {
            assert_eq!(
                s.select_one_message_queue(&info, None).unwrap().broker_name,
                "broker-b"
            );
        }
        now.store(T0 + 180_000, Ordering::SeqCst);
        assert!(s.latency_fault_tolerance().is_available("broker-a"));
    }

    #[test]
    fn quick_answers_earn_no_penalty() {
        let (_now, clock) = manual_clock();
        let s = MQFaultStrategy::with_clock(true, clock);
        s.update_fault_item("broker-a", 549, false);
        assert!(s.latency_fault_tolerance().is_available("broker-a"));
        s.update_fault_item("broker-a", 550, false);
        assert!(!s.latency_fault_tolerance().is_available("broker-a"));
        // A later quick success ends the window at once.
        s.update_fault_item("broker-a", 10, false);
        assert!(s.latency_fault_tolerance().is_available("broker-a"));
    }

    #[test]
    fn all_brokers_faulty_still_returns_a_queue_on_the_least_bad_broker() {
        let (_now, clock) = manual_clock();
        let s = MQFaultStrategy::with_clock(true, clock);
        let info = publish_info(&[("broker-a", 4), ("broker-b", 2)], 0);
        s.update_fault_item("broker-a", 5000, true);
        s.update_fault_item("broker-b", 4000, true);
        for _ in 0..10 {
            let mq = s.select_one_message_queue(&info, Some("broker-b")).unwrap();
            // Two items: the better half is the first, the lower latency: broker-b.
            assert_eq!(mq.broker_name, "broker-b");
            assert!((0..2).contains(&mq.queue_id), "{mq}");
            assert_eq!(mq.topic, "TopicTest");
        }
    }

    #[test]
    fn least_bad_broker_outside_the_route_is_forgotten() {
        let (_now, clock) = manual_clock();
        let s = MQFaultStrategy::with_clock(true, clock);
        let info = publish_info(&[("broker-a", 2)], 0);
        s.update_fault_item("broker-a", 9000, true);
        s.update_fault_item("broker-z", 1, true); // better latency, other topic's broker
        let mq = s.select_one_message_queue(&info, None).unwrap();
        assert_eq!(
            mq.broker_name, "broker-a",
            "falls back to plain round-robin"
        );
        assert_eq!(s.latency_fault_tolerance().len(), 1);
        assert!(
            s.latency_fault_tolerance().is_available("broker-z"),
            "removed"
        );
    }

    #[test]
    fn least_bad_broker_without_a_master_is_not_chosen() {
        // broker-a's master is down: the route lists its queues and only its slave, so the
        // publish list holds broker-b's queues alone. Both brokers are penalised, broker-a the
        // least: picking it would fail with "The broker[broker-a] not exist" on every attempt.
        let (_now, clock) = manual_clock();
        let s = MQFaultStrategy::with_clock(true, clock);
        let mut r = route(&[("broker-a", 4), ("broker-b", 4)]);
        r.broker_datas[0] = broker_data("broker-a", &[1]);
        let info = TopicPublishInfo::from_route("TopicTest", &r).unwrap();
        s.update_fault_item("broker-a", 800, false);
        s.update_fault_item("broker-b", 5000, false);
        for _ in 0..8 {
            let mq = s.select_one_message_queue(&info, None).unwrap();
            assert_eq!(mq.broker_name, "broker-b", "{mq}");
        }
        assert!(
            s.latency_fault_tolerance().is_available("broker-a"),
            "the master-less broker left the table"
        );
    }

    #[test]
    fn broker_back_in_the_route_is_chosen_again_at_once() {
        let (_now, clock) = manual_clock();
        let s = MQFaultStrategy::with_clock(true, clock);
        let both = publish_info(&[("broker-a", 4), ("broker-b", 4)], 0);
        let mut r = route(&[("broker-a", 4), ("broker-b", 4)]);
        r.broker_datas[0] = broker_data("broker-a", &[1]);
        let without_a = TopicPublishInfo::from_route("TopicTest", &r).unwrap();
        // broker-a died: a send failed, then the route lost its master.
        s.update_fault_item("broker-a", 3, true);
        s.update_fault_item("broker-b", 5000, false); // slow: penalised too
        s.forget_brokers_back_in_route(&both, &without_a);
        assert!(!s.latency_fault_tolerance().is_available("broker-a"));
        // Its master registered again.
        s.forget_brokers_back_in_route(&without_a, &both);
        assert!(s.latency_fault_tolerance().is_available("broker-a"));
        assert!(
            !s.latency_fault_tolerance().is_available("broker-b"),
            "a broker that never left keeps its penalty"
        );
        // The first route of a topic says nothing about brokers coming back.
        s.update_fault_item("broker-a", 3, true);
        s.forget_brokers_back_in_route(&TopicPublishInfo::default(), &both);
        assert!(!s.latency_fault_tolerance().is_available("broker-a"));
    }

    #[test]
    fn retry_with_fault_tolerance_avoids_last_broker() {
        let (_now, clock) = manual_clock();
        let s = MQFaultStrategy::with_clock(true, clock);
        // broker-a answered fast with an error: no penalty, but the retry should still move on.
        s.update_fault_item("broker-a", 5, false);
        for seed in 0..12 {
            let info = publish_info(&[("broker-a", 4), ("broker-b", 4)], seed);
            let mq = s.select_one_message_queue(&info, Some("broker-a")).unwrap();
            assert_eq!(mq.broker_name, "broker-b", "seed {seed}");
        }
        // With a single broker the retry goes back to it.
        let single = publish_info(&[("broker-a", 4)], 0);
        assert_eq!(
            s.select_one_message_queue(&single, Some("broker-a"))
                .unwrap()
                .broker_name,
            "broker-a"
        );
    }

    #[test]
    fn disabled_strategy_is_plain_round_robin() {
        let (_now, clock) = manual_clock();
        let s = MQFaultStrategy::with_clock(false, clock);
        s.update_fault_item("broker-a", 3000, true);
        assert_eq!(s.latency_fault_tolerance().len(), 0, "updates are ignored");
        let info = publish_info(&[("broker-a", 4), ("broker-b", 4)], 0);
        // Seed 0: index 1 -> a1, 2 -> a2, ... (a is not avoided without a last broker).
        assert_eq!(
            s.select_one_message_queue(&info, None).unwrap(),
            MessageQueue::new("TopicTest", "broker-a", 1)
        );
        for _ in 0..8 {
            assert_eq!(
                s.select_one_message_queue(&info, Some("broker-a"))
                    .unwrap()
                    .broker_name,
                "broker-b"
            );
        }
    }

    #[test]
    fn empty_topic_selects_nothing() {
        let s = MQFaultStrategy::new(true);
        let info = TopicPublishInfo::default();
        assert_eq!(s.select_one_message_queue(&info, None), None);
        assert_eq!(
            MQFaultStrategy::new(false).select_one_message_queue(&info, Some("x")),
            None
        );
    }

    #[test]
    fn pick_one_at_least_orders_available_latency_start() {
        let (now, clock) = manual_clock();
        let lft = LatencyFaultTolerance::with_clock(clock);
        assert_eq!(lft.pick_one_at_least(), None);

        lft.update_fault_item("only", 100, 60_000);
        assert_eq!(lft.pick_one_at_least().as_deref(), Some("only"));
        lft.remove("only");

        // Available first, whatever the latency.
        lft.update_fault_item("penalised-fast", 1, 60_000);
        lft.update_fault_item("available-slow", 900, 0);
        for _ in 0..4 {
            assert_eq!(lft.pick_one_at_least().as_deref(), Some("available-slow"));
        }

        // Four items, sorted: available-slow (900), x-available (1000), penalised-fast (1),
        // y-penalised (50). The rotating index alternates over the better half and never
        // picks the worse one.
        now.store(T0 + 10, Ordering::SeqCst);
        lft.update_fault_item("x-available", 1000, 0);
        lft.update_fault_item("y-penalised", 50, 120_000);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..8 {
            seen.insert(lft.pick_one_at_least().unwrap());
        }
        assert_eq!(
            seen.into_iter().collect::<Vec<_>>(),
            ["available-slow", "x-available"]
        );
    }

    #[test]
    fn pick_one_at_least_breaks_latency_ties_by_earlier_window_end() {
        let (now, clock) = manual_clock();
        let lft = LatencyFaultTolerance::with_clock(clock);
        lft.update_fault_item("late", 3000, 180_000);
        now.store(T0 - 1000, Ordering::SeqCst);
        lft.update_fault_item("early", 3000, 180_000);
        now.store(T0, Ordering::SeqCst);
        // Both penalised, same latency: the one whose window ends first wins (half = 1).
        assert_eq!(lft.pick_one_at_least().as_deref(), Some("early"));
    }

    #[test]
    fn strategy_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<MQFaultStrategy>();
        assert_send_sync::<TopicPublishInfo>();
    }
}
