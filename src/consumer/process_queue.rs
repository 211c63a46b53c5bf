//! `ProcessQueue`: the client-side cache of pulled, not yet consumed messages of one queue (Java
//! `ProcessQueue`).
//!
//! # Threads and fields
//!
//! | field | written by | read by |
//! |---|---|---|
//! | `inner.msg_tree_map`, `msg_count`, `msg_size`, `queue_offset_max`, `msg_acc_cnt` | pull callback (`put_messages`), consume threads (`remove_messages`, orderly `take_messages`/`commit`/`rollback`), the concurrent consume service's timeout sweep (`remove_messages`), rebalance (`clear`) | pull thread (flow control: `msg_count`, `msg_size`, `max_span`), admin (`info`) |
//! | `inner.consuming`, `inner.consuming_msg_orderly_tree_map` | pull callback (`put_messages` sets `consuming`), the one orderly consume thread that holds the queue | admin (`info`) |
//! | `dropped` | rebalance (queue removed), shutdown | everyone, lock-free |
//! | `locked`, `last_lock_timestamp`, `try_unlock_times` | orderly: scheduler (`lockAll` every 20 s), rebalance (lock/unlock) | orderly consume threads, admin |
//! | `last_pull_timestamp` | pull thread before each pull | rebalance (`is_pull_expired`), admin |
//! | `last_consume_timestamp` | consume threads (`remove_messages`, `take_messages`) | admin |
//! | `consume_lock` | held by the orderly consume thread around the listener | rebalance (waits for it before unlocking a removed orderly queue) |
//!
//! Everything the consume hot path changes lives under one [`parking_lot::Mutex`] (`inner`), taken
//! **once per batch**: `put_messages` inserts a whole pulled batch, `remove_messages` removes a
//! whole consumed batch and updates the counters once. Neither allocates (beyond the B-tree's own
//! nodes); messages are stored as given, so `M` should be cheap to clone (an `Arc` or
//! `Bytes`-backed type) where a caller needs a copy. Flags and timestamps are atomics so that
//! checks like "is it dropped?" never contend with consumers.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use parking_lot::{Mutex, MutexGuard};
use serde::{Deserialize, Serialize};

use crate::common::util::now_millis;

/// Java's `REBALANCE_LOCK_MAX_LIVE_TIME` (`rocketmq.client.rebalance.lockMaxLiveTime`): a broker
/// lock not renewed within this many milliseconds is considered expired.
pub(crate) const REBALANCE_LOCK_MAX_LIVE_TIME_MS: i64 = 30_000;
/// Java's `PULL_MAX_IDLE_TIME` (`rocketmq.client.pull.pullMaxIdleTime`): a queue not pulled within
/// this many milliseconds is considered stuck by the rebalance.
pub(crate) const PULL_MAX_IDLE_TIME_MS: i64 = 120_000;

/// What a [`ProcessQueue`] needs from a message. The lead implements it for `MessageExt`.
pub(crate) trait QueuedMessage: Clone + Send + Sync {
    /// The message's offset in its consume queue (the map key).
    fn queue_offset(&self) -> i64;
    /// The body length in bytes (counted towards the queue's cached size).
    fn body_len(&self) -> usize;
    /// The `MAX_OFFSET` property (the queue's max offset when the message was pulled), used for
    /// `msgAccCnt` (messages accumulated at the broker).
    fn max_offset_property(&self) -> Option<i64>;
}

/// The state guarded by one lock.
#[derive(Debug)]
struct Inner<M> {
    /// Cached messages not yet consumed, by queue offset.
    msg_tree_map: BTreeMap<i64, M>,
    /// Messages in both maps (Java `msgCount`).
    msg_count: i64,
    /// Sum of body lengths in both maps, bytes (Java `msgSize`).
    msg_size: i64,
    /// Highest offset ever put (Java `queueOffsetMax`).
    queue_offset_max: i64,
    /// Orderly: a consume task is active or scheduled for this queue.
    consuming: bool,
    /// Messages accumulated at the broker beyond the last pulled one.
    msg_acc_cnt: i64,
    /// Orderly: messages taken by the consume thread, not yet committed.
    consuming_msg_orderly_tree_map: BTreeMap<i64, M>,
}

/// The cache of pulled messages of one message queue, shared by the pull, consume, rebalance and
/// scheduler threads (see the module docs for who touches what).
#[derive(Debug)]
pub(crate) struct ProcessQueue<M> {
    inner: Mutex<Inner<M>>,
    /// Held by the orderly consume thread while the listener runs.
    consume_lock: Mutex<()>,
    dropped: AtomicBool,
    locked: AtomicBool,
    last_pull_timestamp: AtomicI64,
    last_consume_timestamp: AtomicI64,
    last_lock_timestamp: AtomicI64,
    try_unlock_times: AtomicI64,
}

/// Java `ProcessQueueInfo`: a snapshot for `ConsumerRunningInfo.mqTable`. Members are declared in
/// fastjson's (alphabetical) order with its names, including the `droped` misspelling.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProcessQueueInfo {
    /// Number of messages in the cache (not counting orderly in-flight ones).
    #[serde(rename = "cachedMsgCount")]
    pub(crate) cached_msg_count: i32,
    /// Largest cached offset, 0 when empty.
    #[serde(rename = "cachedMsgMaxOffset")]
    pub(crate) cached_msg_max_offset: i64,
    /// Smallest cached offset, 0 when empty.
    #[serde(rename = "cachedMsgMinOffset")]
    pub(crate) cached_msg_min_offset: i64,
    /// Cached bytes in MiB (rounded down).
    #[serde(rename = "cachedMsgSizeInMiB")]
    pub(crate) cached_msg_size_in_mib: i32,
    /// The committed offset; [`ProcessQueue::info`] leaves 0, the caller fills it from the
    /// offset store.
    #[serde(rename = "commitOffset")]
    pub(crate) commit_offset: i64,
    /// Whether the queue was dropped (sic, as Java spells it).
    #[serde(rename = "droped")]
    pub(crate) droped: bool,
    /// Last consume, ms since the epoch.
    #[serde(rename = "lastConsumeTimestamp")]
    pub(crate) last_consume_timestamp: i64,
    /// Last successful broker lock, ms since the epoch.
    #[serde(rename = "lastLockTimestamp")]
    pub(crate) last_lock_timestamp: i64,
    /// Last pull, ms since the epoch.
    #[serde(rename = "lastPullTimestamp")]
    pub(crate) last_pull_timestamp: i64,
    /// Orderly: the queue is locked at the broker.
    pub(crate) locked: bool,
    /// Orderly in-flight message count.
    #[serde(rename = "transactionMsgCount")]
    pub(crate) transaction_msg_count: i32,
    /// Largest orderly in-flight offset, 0 when none.
    #[serde(rename = "transactionMsgMaxOffset")]
    pub(crate) transaction_msg_max_offset: i64,
    /// Smallest orderly in-flight offset, 0 when none.
    #[serde(rename = "transactionMsgMinOffset")]
    pub(crate) transaction_msg_min_offset: i64,
    /// Times an unlock was deferred because a consume was running.
    #[serde(rename = "tryUnlockTimes")]
    pub(crate) try_unlock_times: i64,
}

/// Flow-control figures read under one lock acquisition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FlowStats {
    /// Cached messages (Java `msgCount`).
    pub(crate) count: i64,
    /// Cached body bytes (Java `msgSize`).
    pub(crate) size: i64,
    /// Last key − first key of the cache (Java `getMaxSpan`).
    pub(crate) span: i64,
}

fn span_of<M>(map: &BTreeMap<i64, M>) -> i64 {
    match (map.first_key_value(), map.last_key_value()) {
        (Some((first, _)), Some((last, _))) => last - first,
        _ => 0,
    }
}

impl<M: QueuedMessage> Default for ProcessQueue<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: QueuedMessage> ProcessQueue<M> {
    /// An empty queue; `last_lock_timestamp` and `last_pull_timestamp`/`last_consume_timestamp`
    /// start at now, as in Java.
    pub(crate) fn new() -> Self {
        let now = now_millis();
        ProcessQueue {
            inner: Mutex::new(Inner {
                msg_tree_map: BTreeMap::new(),
                msg_count: 0,
                msg_size: 0,
                queue_offset_max: 0,
                consuming: false,
                msg_acc_cnt: 0,
                consuming_msg_orderly_tree_map: BTreeMap::new(),
            }),
            consume_lock: Mutex::new(()),
            dropped: AtomicBool::new(false),
            locked: AtomicBool::new(false),
            last_pull_timestamp: AtomicI64::new(now),
            last_consume_timestamp: AtomicI64::new(now),
            last_lock_timestamp: AtomicI64::new(now),
            try_unlock_times: AtomicI64::new(0),
        }
    }

    /// Java `putMessage`: caches a pulled batch under one lock acquisition. Only offsets not
    /// already cached are counted (a duplicate replaces the cached message, as Java's `TreeMap.put`
    /// does, without counting twice). Returns `true` ("dispatch") when the cache is non-empty and
    /// no consume task was active, and marks one active; orderly consumption submits a task only
    /// then.
    ///
    /// `queue_offset_max` keeps the highest offset put; Java assigns the last new offset, which is
    /// the same for the ascending batches a pull returns.
    pub(crate) fn put_messages<I: IntoIterator<Item = M>>(&self, msgs: I) -> bool {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let mut valid = 0i64;
        let mut added_size = 0i64;
        let mut last_acc: Option<(i64, Option<i64>)> = None;
        for msg in msgs {
            let offset = msg.queue_offset();
            let size = msg.body_len() as i64;
            last_acc = Some((offset, msg.max_offset_property()));
            if inner.msg_tree_map.insert(offset, msg).is_none() {
                valid += 1;
                added_size += size;
                inner.queue_offset_max = inner.queue_offset_max.max(offset);
            }
        }
        inner.msg_count += valid;
        inner.msg_size += added_size;
        let dispatch = !inner.msg_tree_map.is_empty() && !inner.consuming;
        if dispatch {
            inner.consuming = true;
        }
        if let Some((offset, Some(max))) = last_acc {
            // `max` comes from the broker: saturate rather than overflow on absurd values.
            let acc = max.saturating_sub(offset);
            if acc > 0 {
                inner.msg_acc_cnt = acc;
            }
        }
        dispatch
    }

    /// Java `removeMessage`: removes a consumed batch (by offset) under one lock acquisition and
    /// returns the offset to commit: the smallest offset still cached, `queue_offset_max + 1` if
    /// the cache became empty, or −1 if it was already empty. Offsets not cached are ignored.
    /// Updates `last_consume_timestamp`.
    pub(crate) fn remove_messages<I>(&self, offsets: I) -> i64
    where
        I: IntoIterator,
        I::Item: Borrow<i64>,
    {
        let now = now_millis();
        let mut inner = self.inner.lock();
        self.last_consume_timestamp.store(now, Ordering::Relaxed);
        let inner = &mut *inner;
        if inner.msg_tree_map.is_empty() {
            return -1;
        }
        let mut removed = 0i64;
        let mut removed_size = 0i64;
        for offset in offsets {
            if let Some(msg) = inner.msg_tree_map.remove(offset.borrow()) {
                removed += 1;
                removed_size += msg.body_len() as i64;
            }
        }
        inner.msg_count -= removed;
        inner.msg_size -= removed_size;
        if inner.msg_count <= 0 {
            inner.msg_count = inner.msg_count.max(0);
            inner.msg_size = 0;
        }
        match inner.msg_tree_map.first_key_value() {
            Some((first, _)) => *first,
            None => inner.queue_offset_max + 1,
        }
    }

    /// Replaces cached messages by new versions of themselves (the same offsets) under one
    /// lock acquisition; offsets not cached are ignored and nothing is counted twice. The
    /// concurrent consume service swaps in copies of messages that outlive their pull.
    pub(crate) fn replace_messages<I: IntoIterator<Item = M>>(&self, msgs: I) {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        for msg in msgs {
            if let Some(cached) = inner.msg_tree_map.get_mut(&msg.queue_offset()) {
                inner.msg_size += msg.body_len() as i64 - cached.body_len() as i64;
                *cached = msg;
            }
        }
    }

    /// Java `getMaxSpan`: last cached offset − first (0 when empty).
    pub(crate) fn max_span(&self) -> i64 {
        span_of(&self.inner.lock().msg_tree_map)
    }

    /// Java `msgCount`: cached messages, including orderly in-flight ones.
    pub(crate) fn msg_count(&self) -> i64 {
        self.inner.lock().msg_count
    }

    /// Java `msgSize`: cached body bytes, including orderly in-flight ones.
    pub(crate) fn msg_size(&self) -> i64 {
        self.inner.lock().msg_size
    }

    /// Count, size and span in one lock acquisition, for the pull thread's flow control.
    pub(crate) fn flow_stats(&self) -> FlowStats {
        let inner = self.inner.lock();
        FlowStats {
            count: inner.msg_count,
            size: inner.msg_size,
            span: span_of(&inner.msg_tree_map),
        }
    }

    /// Messages accumulated at the broker beyond the last pulled one (Java `msgAccCnt`).
    pub(crate) fn msg_acc_cnt(&self) -> i64 {
        self.inner.lock().msg_acc_cnt
    }

    /// The smallest cached offset, if any.
    pub(crate) fn first_offset(&self) -> Option<i64> {
        self.inner
            .lock()
            .msg_tree_map
            .first_key_value()
            .map(|(k, _)| *k)
    }

    /// Java `hasTempMessage`: whether any message is cached (not counting orderly in-flight ones).
    pub(crate) fn has_temp_message(&self) -> bool {
        !self.inner.lock().msg_tree_map.is_empty()
    }

    /// Orderly: whether a consume task is active.
    pub(crate) fn is_consuming(&self) -> bool {
        self.inner.lock().consuming
    }

    /// Java `takeMessages`: moves up to `n` smallest cached messages to the orderly in-flight map
    /// and returns them in offset order. If there are none, clears `consuming` so the next put
    /// dispatches a new task. Updates `last_consume_timestamp`.
    pub(crate) fn take_messages(&self, n: usize) -> Vec<M> {
        let now = now_millis();
        let mut inner = self.inner.lock();
        self.last_consume_timestamp.store(now, Ordering::Relaxed);
        let inner = &mut *inner;
        let mut out = Vec::with_capacity(n.min(inner.msg_tree_map.len()));
        while out.len() < n {
            match inner.msg_tree_map.pop_first() {
                Some((offset, msg)) => {
                    out.push(msg.clone());
                    inner.consuming_msg_orderly_tree_map.insert(offset, msg);
                }
                None => break,
            }
        }
        if out.is_empty() {
            inner.consuming = false;
        }
        out
    }

    /// Java `commit`: forgets the orderly in-flight messages and returns the offset to commit,
    /// the largest in-flight offset + 1, or −1 when nothing is in flight (Java throws and logs).
    pub(crate) fn commit(&self) -> i64 {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let last = match inner.consuming_msg_orderly_tree_map.last_key_value() {
            Some((k, _)) => *k,
            None => return -1,
        };
        let removed = inner.consuming_msg_orderly_tree_map.len() as i64;
        let removed_size: i64 = inner
            .consuming_msg_orderly_tree_map
            .values()
            .map(|m| m.body_len() as i64)
            .sum();
        inner.consuming_msg_orderly_tree_map.clear();
        inner.msg_count = (inner.msg_count - removed).max(0);
        inner.msg_size = if inner.msg_count == 0 {
            0
        } else {
            (inner.msg_size - removed_size).max(0)
        };
        last + 1
    }

    /// Java `rollback`: puts every orderly in-flight message back into the cache.
    pub(crate) fn rollback(&self) {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let in_flight = std::mem::take(&mut inner.consuming_msg_orderly_tree_map);
        inner.msg_tree_map.extend(in_flight);
    }

    /// Java `makeMessageToConsumeAgain`: moves these messages (as given, e.g. with a raised
    /// reconsume count) from the in-flight map back into the cache. A message that was in neither
    /// map is counted as newly cached so the counters stay exact.
    pub(crate) fn make_messages_to_consume_again<I: IntoIterator<Item = M>>(&self, msgs: I) {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        for msg in msgs {
            let offset = msg.queue_offset();
            let size = msg.body_len() as i64;
            let was_in_flight = inner
                .consuming_msg_orderly_tree_map
                .remove(&offset)
                .is_some();
            if inner.msg_tree_map.insert(offset, msg).is_none() && !was_in_flight {
                inner.msg_count += 1;
                inner.msg_size += size;
            }
        }
    }

    /// Java `clear`: empties both maps and zeroes the counters and `queue_offset_max`.
    pub(crate) fn clear(&self) {
        let mut inner = self.inner.lock();
        inner.msg_tree_map.clear();
        inner.consuming_msg_orderly_tree_map.clear();
        inner.msg_count = 0;
        inner.msg_size = 0;
        inner.queue_offset_max = 0;
    }

    /// Java `fillProcessQueueInfo`; `commit_offset` is left 0 for the caller to fill.
    pub(crate) fn info(&self) -> ProcessQueueInfo {
        let mut info = ProcessQueueInfo::default();
        {
            let inner = self.inner.lock();
            if let (Some((first, _)), Some((last, _))) = (
                inner.msg_tree_map.first_key_value(),
                inner.msg_tree_map.last_key_value(),
            ) {
                info.cached_msg_min_offset = *first;
                info.cached_msg_max_offset = *last;
                info.cached_msg_count = inner.msg_tree_map.len() as i32;
                info.cached_msg_size_in_mib = (inner.msg_size / (1024 * 1024)) as i32;
            }
            let tx = &inner.consuming_msg_orderly_tree_map;
            if let (Some((first, _)), Some((last, _))) = (tx.first_key_value(), tx.last_key_value())
            {
                info.transaction_msg_min_offset = *first;
                info.transaction_msg_max_offset = *last;
                info.transaction_msg_count = tx.len() as i32;
            }
        }
        info.locked = self.is_locked();
        info.try_unlock_times = self.try_unlock_times();
        info.last_lock_timestamp = self.last_lock_timestamp();
        info.droped = self.is_dropped();
        info.last_pull_timestamp = self.last_pull_timestamp();
        info.last_consume_timestamp = self.last_consume_timestamp();
        info
    }

    /// Java `isLockExpired`: `now − last_lock_timestamp > max_live_ms`
    /// ([`REBALANCE_LOCK_MAX_LIVE_TIME_MS`] by default).
    pub(crate) fn is_lock_expired(&self, now_ms: i64, max_live_ms: i64) -> bool {
        now_ms - self.last_lock_timestamp() > max_live_ms
    }

    /// Java `isPullExpired`: `now − last_pull_timestamp > max_idle_ms`
    /// ([`PULL_MAX_IDLE_TIME_MS`] by default).
    pub(crate) fn is_pull_expired(&self, now_ms: i64, max_idle_ms: i64) -> bool {
        now_ms - self.last_pull_timestamp() > max_idle_ms
    }

    /// Orderly: the lock held around the listener call.
    pub(crate) fn consume_lock(&self) -> MutexGuard<'_, ()> {
        self.consume_lock.lock()
    }

    /// Orderly: tries the consume lock without waiting (rebalance uses a bounded wait).
    pub(crate) fn try_consume_lock_for(
        &self,
        timeout: std::time::Duration,
    ) -> Option<MutexGuard<'_, ()>> {
        self.consume_lock.try_lock_for(timeout)
    }

    /// Whether the queue was dropped (no longer assigned or the consumer stopped).
    pub(crate) fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::Acquire)
    }

    /// Marks the queue dropped (or not).
    pub(crate) fn set_dropped(&self, dropped: bool) {
        self.dropped.store(dropped, Ordering::Release);
    }

    /// Orderly: whether the queue is locked at the broker.
    pub(crate) fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Acquire)
    }

    /// Orderly: records the broker lock state.
    pub(crate) fn set_locked(&self, locked: bool) {
        self.locked.store(locked, Ordering::Release);
    }

    /// Last pull time, ms since the epoch.
    pub(crate) fn last_pull_timestamp(&self) -> i64 {
        self.last_pull_timestamp.load(Ordering::Relaxed)
    }

    /// Records a pull.
    pub(crate) fn set_last_pull_timestamp(&self, ms: i64) {
        self.last_pull_timestamp.store(ms, Ordering::Relaxed);
    }

    /// Last consume time, ms since the epoch.
    pub(crate) fn last_consume_timestamp(&self) -> i64 {
        self.last_consume_timestamp.load(Ordering::Relaxed)
    }

    /// Last successful broker lock, ms since the epoch.
    pub(crate) fn last_lock_timestamp(&self) -> i64 {
        self.last_lock_timestamp.load(Ordering::Relaxed)
    }

    /// Records a successful broker lock.
    pub(crate) fn set_last_lock_timestamp(&self, ms: i64) {
        self.last_lock_timestamp.store(ms, Ordering::Relaxed);
    }

    /// Times an unlock was deferred.
    pub(crate) fn try_unlock_times(&self) -> i64 {
        self.try_unlock_times.load(Ordering::Relaxed)
    }

    /// Counts one deferred unlock.
    pub(crate) fn inc_try_unlock_times(&self) {
        self.try_unlock_times.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A test message: offset, body length, MAX_OFFSET, and a tag to tell copies apart.
    #[derive(Debug, Clone, PartialEq)]
    struct TestMsg {
        offset: i64,
        len: usize,
        max_offset: Option<i64>,
        tag: u32,
    }

    impl TestMsg {
        fn new(offset: i64, len: usize) -> Self {
            TestMsg {
                offset,
                len,
                max_offset: None,
                tag: 0,
            }
        }
    }

    impl QueuedMessage for TestMsg {
        fn queue_offset(&self) -> i64 {
            self.offset
        }
        fn body_len(&self) -> usize {
            self.len
        }
        fn max_offset_property(&self) -> Option<i64> {
            self.max_offset
        }
    }

    fn msgs(offsets: &[i64]) -> Vec<TestMsg> {
        offsets.iter().map(|&o| TestMsg::new(o, 10)).collect()
    }

    #[test]
    fn put_counts_new_offsets_and_dispatches_once() {
        let pq = ProcessQueue::new();
        assert!(pq.put_messages(msgs(&[5, 6, 7])));
        assert_eq!((pq.msg_count(), pq.msg_size()), (3, 30));
        // Already consuming: no second dispatch; duplicates don't double count.
        assert!(!pq.put_messages(msgs(&[7, 8])));
        assert_eq!((pq.msg_count(), pq.msg_size()), (4, 40));
        assert_eq!(pq.max_span(), 3);
        assert_eq!(pq.first_offset(), Some(5));
        assert!(pq.is_consuming());
    }

    #[test]
    fn replace_swaps_cached_messages_without_counting_twice() {
        let pq = ProcessQueue::new();
        pq.put_messages(msgs(&[1, 2]));
        let mut copy = TestMsg::new(2, 12);
        copy.tag = 7;
        // Offset 3 is not cached: ignored, not added.
        pq.replace_messages([copy.clone(), TestMsg::new(3, 10)]);
        assert_eq!((pq.msg_count(), pq.msg_size()), (2, 22));
        assert_eq!(pq.remove_messages([1]), 2);
        assert_eq!(pq.take_messages(1), vec![copy]);
    }

    #[test]
    fn put_empty_batch_on_empty_queue_does_not_dispatch() {
        let pq: ProcessQueue<TestMsg> = ProcessQueue::new();
        assert!(!pq.put_messages(Vec::new()));
        assert!(!pq.is_consuming());
    }

    #[test]
    fn put_sets_msg_acc_cnt_from_last_message_when_positive() {
        let pq = ProcessQueue::new();
        let mut m = msgs(&[1, 2]);
        m[1].max_offset = Some(12);
        pq.put_messages(m);
        assert_eq!(pq.msg_acc_cnt(), 10);
        let mut m = msgs(&[3]);
        m[0].max_offset = Some(3); // not positive: unchanged
        pq.put_messages(m);
        assert_eq!(pq.msg_acc_cnt(), 10);
    }

    #[test]
    fn msg_acc_cnt_survives_extreme_max_offsets_from_the_network() {
        let pq = ProcessQueue::new();
        let mut m = msgs(&[-1]);
        m[0].max_offset = Some(i64::MAX);
        pq.put_messages(m);
        assert_eq!(pq.msg_acc_cnt(), i64::MAX, "saturated, not overflowed");
        let mut m = msgs(&[5]);
        m[0].max_offset = Some(i64::MIN);
        pq.put_messages(m);
        assert_eq!(pq.msg_acc_cnt(), i64::MAX, "not positive: unchanged");
    }

    #[test]
    fn msg_acc_cnt_is_real_for_pulled_messages() {
        use crate::common::{MessageExt, PullOffsets};
        use std::sync::Arc;
        // As the pull callback sets them: the pull's offset range, shared by its messages.
        let offsets = Arc::new(PullOffsets::new(0, 40));
        let batch: Vec<MessageExt> = (10..13)
            .map(|i| {
                let mut m = MessageExt::new("T", "b");
                m.set_queue_offset(i);
                m.set_pull_offsets(offsets.clone());
                m
            })
            .collect();
        let pq: ProcessQueue<MessageExt> = ProcessQueue::new();
        pq.put_messages(batch);
        assert_eq!(pq.msg_acc_cnt(), 40 - 12);
    }

    #[test]
    fn remove_returns_smallest_remaining_then_max_plus_one_then_minus_one() {
        let pq = ProcessQueue::new();
        pq.put_messages(msgs(&[10, 11, 12, 13]));
        // Removing a later message leaves the head: commit stays at the head.
        assert_eq!(pq.remove_messages([12i64, 13]), 10);
        assert_eq!((pq.msg_count(), pq.msg_size()), (2, 20));
        let consumed: &[i64] = &[10];
        assert_eq!(pq.remove_messages(consumed), 11);
        // Removing an absent offset changes nothing.
        assert_eq!(pq.remove_messages(vec![99i64]), 11);
        assert_eq!(pq.msg_count(), 1);
        assert_eq!(pq.remove_messages([11i64]), 14);
        assert_eq!((pq.msg_count(), pq.msg_size()), (0, 0));
        assert_eq!(pq.remove_messages([11i64]), -1);
        assert_eq!(pq.max_span(), 0);
        assert_eq!(pq.first_offset(), None);
    }

    #[test]
    fn remove_updates_last_consume_timestamp() {
        let pq: ProcessQueue<TestMsg> = ProcessQueue::new();
        pq.last_consume_timestamp.store(0, Ordering::Relaxed);
        pq.remove_messages([1i64]);
        assert!(pq.last_consume_timestamp() > 0);
    }

    #[test]
    fn orderly_take_commit() {
        let pq = ProcessQueue::new();
        pq.put_messages(msgs(&[1, 2, 3, 4, 5]));
        let taken = pq.take_messages(2);
        assert_eq!(taken.iter().map(|m| m.offset).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(pq.first_offset(), Some(3));
        let info = pq.info();
        assert_eq!(
            (
                info.transaction_msg_min_offset,
                info.transaction_msg_max_offset,
                info.transaction_msg_count
            ),
            (1, 2, 2)
        );
        assert_eq!(pq.msg_count(), 5); // in-flight still counted
        assert_eq!(pq.commit(), 3);
        assert_eq!((pq.msg_count(), pq.msg_size()), (3, 30));
        assert_eq!(pq.commit(), -1); // nothing in flight
        assert_eq!(pq.take_messages(10).len(), 3);
        assert_eq!(pq.commit(), 6);
        assert_eq!((pq.msg_count(), pq.msg_size()), (0, 0));
        // Nothing to take: consuming cleared, so the next put dispatches again.
        assert!(pq.take_messages(1).is_empty());
        assert!(!pq.is_consuming());
        assert!(pq.put_messages(msgs(&[6])));
    }

    #[test]
    fn orderly_rollback_restores_everything() {
        let pq = ProcessQueue::new();
        pq.put_messages(msgs(&[1, 2, 3]));
        pq.take_messages(2);
        assert!(pq.has_temp_message());
        pq.rollback();
        assert_eq!(pq.first_offset(), Some(1));
        assert_eq!(pq.info().transaction_msg_count, 0);
        assert_eq!((pq.msg_count(), pq.msg_size()), (3, 30));
        assert_eq!(pq.take_messages(5).len(), 3);
        assert!(!pq.has_temp_message());
    }

    #[test]
    fn orderly_make_messages_to_consume_again_moves_only_those() {
        let pq = ProcessQueue::new();
        pq.put_messages(msgs(&[1, 2, 3]));
        let mut taken = pq.take_messages(3);
        taken[0].tag = 7; // e.g. reconsume count raised by the caller
        pq.make_messages_to_consume_again(vec![taken[0].clone()]);
        assert_eq!(pq.first_offset(), Some(1));
        assert_eq!(pq.msg_count(), 3);
        let again = pq.take_messages(1);
        assert_eq!(again[0].tag, 7);
        assert_eq!(pq.commit(), 4);
        assert_eq!(pq.msg_count(), 0);
    }

    #[test]
    fn clear_resets_everything() {
        let pq = ProcessQueue::new();
        pq.put_messages(msgs(&[1, 2, 3]));
        pq.take_messages(1);
        pq.clear();
        assert_eq!((pq.msg_count(), pq.msg_size(), pq.max_span()), (0, 0, 0));
        assert!(!pq.has_temp_message());
        assert_eq!(pq.commit(), -1);
        assert_eq!(pq.remove_messages([2i64]), -1);
        pq.put_messages(msgs(&[3]));
        assert_eq!(pq.remove_messages([3i64]), 4);
    }

    #[test]
    fn lock_and_pull_expiry() {
        let pq: ProcessQueue<TestMsg> = ProcessQueue::new();
        pq.set_last_lock_timestamp(1_000);
        pq.set_last_pull_timestamp(2_000);
        assert!(!pq.is_lock_expired(31_000, REBALANCE_LOCK_MAX_LIVE_TIME_MS));
        assert!(pq.is_lock_expired(31_001, REBALANCE_LOCK_MAX_LIVE_TIME_MS));
        assert!(!pq.is_pull_expired(122_000, PULL_MAX_IDLE_TIME_MS));
        assert!(pq.is_pull_expired(122_001, PULL_MAX_IDLE_TIME_MS));
    }

    #[test]
    fn flow_stats_in_one_call() {
        let pq = ProcessQueue::new();
        pq.put_messages(vec![TestMsg::new(100, 5), TestMsg::new(150, 7)]);
        assert_eq!(
            pq.flow_stats(),
            FlowStats {
                count: 2,
                size: 12,
                span: 50
            }
        );
    }

    #[test]
    fn info_serializes_with_fastjson_names_in_golden_order() {
        let pq = ProcessQueue::new();
        pq.put_messages(vec![TestMsg::new(4, 3 * 1024 * 1024), TestMsg::new(9, 1)]);
        pq.set_dropped(true);
        pq.set_locked(true);
        pq.inc_try_unlock_times();
        let info = pq.info();
        assert_eq!(
            (
                info.cached_msg_min_offset,
                info.cached_msg_max_offset,
                info.cached_msg_count,
                info.cached_msg_size_in_mib
            ),
            (4, 9, 2, 3)
        );
        assert!(info.droped && info.locked);
        assert_eq!(info.try_unlock_times, 1);

        // The golden mqTable value (GET_CONSUMER_RUNNING_INFO).
        let golden = r#"{"cachedMsgCount":0,"cachedMsgMaxOffset":0,"cachedMsgMinOffset":0,"cachedMsgSizeInMiB":0,"commitOffset":42,"droped":false,"lastConsumeTimestamp":0,"lastLockTimestamp":0,"lastPullTimestamp":0,"locked":false,"transactionMsgCount":0,"transactionMsgMaxOffset":0,"transactionMsgMinOffset":0,"tryUnlockTimes":0}"#;
        let zero = ProcessQueueInfo {
            commit_offset: 42,
            ..Default::default()
        };
        assert_eq!(serde_json::to_string(&zero).unwrap(), golden);
        assert_eq!(
            serde_json::from_str::<ProcessQueueInfo>(golden).unwrap(),
            zero
        );
    }

    #[test]
    fn concurrent_put_and_remove_keep_counters_exact() {
        let pq = std::sync::Arc::new(ProcessQueue::new());
        let producer = {
            let pq = std::sync::Arc::clone(&pq);
            std::thread::Builder::new()
                .name("pq-test-put".into())
                .spawn(move || {
                    for batch in 0..200i64 {
                        let base = batch * 32;
                        pq.put_messages((base..base + 32).map(|o| TestMsg::new(o, 1)));
                    }
                })
                .unwrap()
        };
        let mut removed = 0i64;
        let mut last_commit = -1i64;
        while removed < 200 * 32 {
            let head = pq.first_offset();
            if let Some(h) = head {
                let commit = pq.remove_messages(h..h + 8);
                assert!(commit >= last_commit);
                last_commit = commit;
                removed = h + 8;
            } else {
                std::thread::yield_now();
            }
        }
        producer.join().unwrap();
        assert_eq!(pq.msg_count(), 0);
        assert_eq!(pq.msg_size(), 0);
        assert_eq!(last_commit, 200 * 32);
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Pull a batch: `n` messages starting `gap` after the highest offset so far, with
        /// `dup` re-deliveries of cached offsets.
        Put { gap: i64, n: usize, dup: usize },
        /// Consume an arbitrary subset of cached offsets (selected by bitmask, plus a stray).
        Remove { mask: u64, stray: i64 },
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0i64..5, 0usize..40, 0usize..3).prop_map(|(gap, n, dup)| Op::Put { gap, n, dup }),
            (any::<u64>(), -5i64..400).prop_map(|(mask, stray)| Op::Remove { mask, stray }),
        ]
    }

    proptest! {
        #[test]
        fn commit_offset_never_passes_smallest_unconsumed(ops in proptest::collection::vec(arb_op(), 1..60)) {
            let pq = ProcessQueue::new();
            let mut model = std::collections::BTreeSet::<i64>::new();
            let mut next = 0i64;
            let mut max_put = -1i64;
            let mut committed = -1i64; // what an increase-only offset store would hold
            for op in ops {
                match op {
                    Op::Put { gap, n, dup } => {
                        let start = next + gap;
                        let mut batch: Vec<TestMsg> = (start..start + n as i64)
                            .map(|o| TestMsg::new(o, (o % 7) as usize))
                            .collect();
                        batch.extend(model.iter().take(dup).map(|&o| TestMsg::new(o, (o % 7) as usize)));
                        for m in &batch {
                            model.insert(m.offset);
                            max_put = max_put.max(m.offset);
                        }
                        if n > 0 {
                            next = start + n as i64;
                        }
                        pq.put_messages(batch);
                    }
                    Op::Remove { mask, stray } => {
                        let chosen: Vec<i64> = model
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| mask & (1u64 << (i % 64)) != 0)
                            .map(|(_, &o)| o)
                            .chain(std::iter::once(stray))
                            .collect();
                        let was_empty = model.is_empty();
                        for o in &chosen {
                            model.remove(o);
                        }
                        let r = pq.remove_messages(&chosen);
                        if was_empty {
                            prop_assert_eq!(r, -1);
                        } else if let Some(&min) = model.first() {
                            prop_assert!(r <= min, "commit {} passes unconsumed {}", r, min);
                            prop_assert_eq!(r, min);
                            prop_assert!(r != max_put + 1 || model.is_empty());
                        } else {
                            prop_assert_eq!(r, max_put + 1);
                        }
                        if r >= 0 {
                            committed = committed.max(r);
                        }
                    }
                }
                // The committed offset never passes a cached, unconsumed message.
                if let Some(&min) = model.first() {
                    prop_assert!(committed <= min);
                }
                let size: i64 = model.iter().map(|o| o % 7).sum();
                prop_assert_eq!(pq.msg_count(), model.len() as i64);
                prop_assert_eq!(pq.msg_size(), size);
                prop_assert_eq!(pq.first_offset(), model.first().copied());
            }
        }
    }
}
