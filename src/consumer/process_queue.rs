//! `ProcessQueue`: all the push consumer keeps for one held message queue. That is Java's
//! `ProcessQueue` (the cache of pulled, not yet consumed messages), plus the pull state Java keeps
//! in the `PullRequest` and the count of consume requests in flight.
//!
//! # Life cycle
//!
//! A `ProcessQueue` is created `Active` by the rebalance that assigns its queue, and never comes
//! back once it leaves that state; if the queue is assigned again, a new one replaces it.
//! - Released by the rebalance or at shutdown, it first goes `Draining`: nothing more is pulled,
//!   but consume tasks already handed to the pool still run and commit, so they are not consumed
//!   twice. It is then `Dropped`.
//! - Reset by the broker (`RESET_CONSUMER_CLIENT_OFFSET`) or moved by `PULL_OFFSET_MOVED`, it is
//!   `Dropped` at once.
//!
//! Once `Dropped`, nothing is pulled, consumed or committed for it. Commits and dropping exclude
//! each other: [`remove_messages`](ProcessQueue::remove_messages) and
//! [`commit_if_empty`](ProcessQueue::commit_if_empty) hand the offset to commit to their caller
//! while holding the queue's lock, and [`set_dropped`](ProcessQueue::set_dropped) takes that lock.
//! Once `set_dropped` returns, no commit of this queue reaches the offset store, so an offset
//! written after it (a reset) is never raised again by a late consume task or pull callback.
//!
//! # Threads and fields
//!
//! | field | written by | read by |
//! |---|---|---|
//! | `inner.msg_tree_map`, `msg_count`, `msg_size`, `queue_offset_max` | pull callback (`put_messages`), consume threads (`remove_messages`, `replace_messages`), the concurrent consume service's timeout sweep (`remove_messages`), the reset (`clear`) | pull thread (flow control: `flow_stats`), `queue_stats`, admin (`info`) |
//! | `inner.inflight_tasks` | consume service: a request handed to the pool, and ended (`task_submitted`, `task_done`) | the rebalance, through the consume service (`wait_idle`) |
//! | `lifecycle` | rebalance, shutdown, the reset (`rmq-cb`), the pull callback (offset moved); `Dropped` only under `inner` | everyone, lock-free |
//! | `live_pulls` | `PullRequest` (created, dropped) | the pull watchdog |
//! | `next_offset`, `broker_max_offset` | pull callback | the watchdog, `queue_stats` |
//! | `last_pull_timestamp` | pull thread before each pull | rebalance (`is_pull_expired`), admin |
//! | `last_consume_timestamp` | consume threads and the sweep (`remove_messages`) | admin |
//!
//! Everything the consume hot path changes lives under one [`parking_lot::Mutex`] (`inner`), taken
//! **once per batch or task**: `put_messages` inserts a whole pulled batch, `remove_messages`
//! removes a whole consumed batch and updates the counters once. Neither allocates (beyond the
//! B-tree's own nodes); messages are stored as given, so `M` should be cheap to clone (an `Arc` or
//! `Bytes`-backed type) where a caller needs a copy. Flags, offsets and timestamps are atomics so
//! that checks like "is it dropped?" never contend with consumers.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use crate::common::util::now_millis;
use crate::common::{MessageExt, MessageQueue};
use crate::remoting::protocol::body::ProcessQueueInfo;

/// Java's `PULL_MAX_IDLE_TIME` (`rocketmq.client.pull.pullMaxIdleTime`): a queue not pulled within
/// this many milliseconds is considered stuck by the rebalance, which rebuilds it.
pub(crate) const PULL_MAX_IDLE_TIME_MS: i64 = 120_000;

/// Java `REBALANCE_LOCK_MAX_LIVE_TIME` (`rocketmq.client.rebalance.lockMaxLiveTime`): a broker
/// lock not renewed for this many milliseconds is treated as lost, and the queue's orderly
/// consumption stops until it is locked again. (The broker keeps a lock for 60 s.)
pub(crate) const REBALANCE_LOCK_MAX_LIVE_TIME_MS: i64 = 30_000;

/// What a [`ProcessQueue`] needs from a message; implemented for `MessageExt` in `pull.rs`.
pub(crate) trait QueuedMessage: Clone + Send + Sync {
    /// The message's offset in its consume queue (the map key).
    fn queue_offset(&self) -> i64;
    /// The body length in bytes (counted towards the queue's cached size).
    fn body_len(&self) -> usize;
    /// The broker's max offset of the pull that brought the message (its `MAX_OFFSET`
    /// property), if known.
    fn max_offset_property(&self) -> Option<i64> {
        None
    }
}

/// The life cycle (see the module docs); it only moves forward.
const ACTIVE: u8 = 0;
const DRAINING: u8 = 1;
const DROPPED: u8 = 2;

/// The state guarded by one lock.
#[derive(Debug)]
struct Inner<M> {
    /// Cached messages not yet consumed, by queue offset.
    msg_tree_map: BTreeMap<i64, M>,
    /// Messages in the cache (Java `msgCount`).
    msg_count: i64,
    /// Sum of cached body lengths, bytes (Java `msgSize`).
    msg_size: i64,
    /// Highest offset ever put (Java `queueOffsetMax`).
    queue_offset_max: i64,
    /// Messages left at the broker after the last one put (Java `msgAccCnt`): the pull's
    /// `MAX_OFFSET` minus the last offset put.
    msg_acc_cnt: i64,
    /// Consume requests handed to the pool and not yet finished; `idle` is notified at 0.
    inflight_tasks: usize,
    /// Orderly: messages taken for the listener and not yet committed (Java
    /// `consumingMsgOrderlyTreeMap`), by queue offset.
    consuming_map: BTreeMap<i64, M>,
    /// Orderly: a consume request of this queue is active (Java `consuming`); set by
    /// [`try_dispatch`](ProcessQueue::try_dispatch), cleared by a `take_messages` that finds
    /// nothing.
    consuming: bool,
}

/// One held message queue: its cached messages, pull state and consume tasks, shared by the
/// pull, consume, rebalance and scheduler threads (see the module docs for who touches what).
#[derive(Debug)]
pub(crate) struct ProcessQueue<M = MessageExt> {
    /// The queue.
    pub(crate) mq: MessageQueue,
    inner: Mutex<Inner<M>>,
    /// Notified when `inner.inflight_tasks` drops to 0.
    idle: Condvar,
    lifecycle: AtomicU8,
    /// Live `PullRequest`s: exactly one while the queue is active (the watchdog checks).
    pub(crate) live_pulls: AtomicUsize,
    /// Next offset to pull, mirrored from the pull request for the watchdog and the lag.
    pub(crate) next_offset: AtomicI64,
    /// The broker's max offset seen at the last pull, −1 before the first.
    pub(crate) broker_max_offset: AtomicI64,
    last_pull_timestamp: AtomicI64,
    last_consume_timestamp: AtomicI64,
    /// Orderly, clustering: the broker lock of this queue is held (Java `locked`).
    locked: AtomicBool,
    /// Orderly: when the broker last granted the lock, ms since the epoch.
    last_lock_timestamp: AtomicI64,
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

impl<M: QueuedMessage> ProcessQueue<M> {
    /// An active, empty queue whose first pull is at `next_offset`; the pull and consume
    /// timestamps start at now, as in Java.
    pub(crate) fn new(mq: MessageQueue, next_offset: i64) -> Self {
        let now = now_millis();
        ProcessQueue {
            mq,
            inner: Mutex::new(Inner {
                msg_tree_map: BTreeMap::new(),
                msg_count: 0,
                msg_size: 0,
                queue_offset_max: 0,
                msg_acc_cnt: 0,
                inflight_tasks: 0,
                consuming_map: BTreeMap::new(),
                consuming: false,
            }),
            idle: Condvar::new(),
            lifecycle: AtomicU8::new(ACTIVE),
            live_pulls: AtomicUsize::new(0),
            next_offset: AtomicI64::new(next_offset),
            broker_max_offset: AtomicI64::new(-1),
            last_pull_timestamp: AtomicI64::new(now),
            last_consume_timestamp: AtomicI64::new(now),
            locked: AtomicBool::new(false),
            last_lock_timestamp: AtomicI64::new(now),
        }
    }

    /// Orderly (Java `putMessage`'s return value): after a pulled batch was put, whether the
    /// caller should start a consume request. `true` at most once until a
    /// [`take_messages`](Self::take_messages) finds the cache empty, so that one request at a
    /// time works the queue.
    pub(crate) fn try_dispatch(&self) -> bool {
        let mut inner = self.inner.lock();
        if !inner.msg_tree_map.is_empty() && !inner.consuming {
            inner.consuming = true;
            true
        } else {
            false
        }
    }

    /// Java `takeMessages`: moves up to `n` of the smallest cached messages to the in-flight
    /// set and puts copies of them, in offset order, into `out` (cleared first, so a caller
    /// reuses one buffer for every batch). Returns how many. When nothing is cached, the
    /// queue's consume request ends: [`try_dispatch`](Self::try_dispatch) may start a new one.
    pub(crate) fn take_messages(&self, n: usize, out: &mut Vec<M>) -> usize {
        out.clear();
        let now = now_millis();
        let mut inner = self.inner.lock();
        self.last_consume_timestamp.store(now, Ordering::Relaxed);
        let inner = &mut *inner;
        while out.len() < n {
            let Some((offset, msg)) = inner.msg_tree_map.pop_first() else {
                break;
            };
            out.push(msg.clone());
            inner.consuming_map.insert(offset, msg);
        }
        if out.is_empty() {
            inner.consuming = false;
        }
        out.len()
    }

    /// Java `commit`: the in-flight messages are consumed. Removes them, and works out the
    /// offset to commit: one past the last of them, or −1 if none was in flight. Unless the
    /// queue is dropped or the offset is −1, `commit` is called with it while the lock is held
    /// (see the module docs). Returns the offset.
    pub(crate) fn commit(&self, commit: impl FnOnce(i64)) -> i64 {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let Some((&last, _)) = inner.consuming_map.last_key_value() else {
            return -1;
        };
        let size: i64 = inner
            .consuming_map
            .values()
            .map(|m| m.body_len() as i64)
            .sum();
        inner.msg_count -= inner.consuming_map.len() as i64;
        inner.msg_size -= size;
        if inner.msg_count <= 0 {
            inner.msg_count = inner.msg_count.max(0);
            inner.msg_size = 0;
        }
        inner.consuming_map.clear();
        let offset = last + 1;
        if !self.is_dropped() {
            commit(offset);
        }
        offset
    }

    /// Java `rollback`: every in-flight message goes back to the cache, to be taken again.
    /// (Java's deprecated `ROLLBACK` status calls it; no status of this client does yet.)
    #[allow(dead_code)]
    pub(crate) fn rollback(&self) {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let taken = std::mem::take(&mut inner.consuming_map);
        inner.msg_tree_map.extend(taken);
    }

    /// Java `makeMessageToConsumeAgain`: the given in-flight messages (by offset) go back to
    /// the cache as given, so a changed copy (its reconsume count raised) replaces the taken
    /// one. Messages not in flight are ignored.
    pub(crate) fn make_message_to_consume_again<I: IntoIterator<Item = M>>(&self, msgs: I) {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        for msg in msgs {
            let offset = msg.queue_offset();
            if inner.consuming_map.remove(&offset).is_some() {
                inner.msg_tree_map.insert(offset, msg);
            }
        }
    }

    /// Messages taken and not yet committed (orderly).
    #[cfg(test)]
    pub(crate) fn consuming_count(&self) -> usize {
        self.inner.lock().consuming_map.len()
    }

    /// Orderly: whether the broker lock is held.
    pub(crate) fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Acquire)
    }

    /// Orderly: records the broker's answer for this queue's lock; a grant renews it.
    pub(crate) fn set_locked(&self, locked: bool) {
        if locked {
            self.last_lock_timestamp
                .store(now_millis(), Ordering::Relaxed);
        }
        self.locked.store(locked, Ordering::Release);
    }

    /// Java `isLockExpired`: the lock was not renewed for
    /// [`REBALANCE_LOCK_MAX_LIVE_TIME_MS`].
    pub(crate) fn is_lock_expired(&self, now_ms: i64) -> bool {
        now_ms - self.last_lock_timestamp.load(Ordering::Relaxed) > REBALANCE_LOCK_MAX_LIVE_TIME_MS
    }

    /// Orderly, clustering: the lock is held and not expired, so the queue may be consumed.
    pub(crate) fn holds_lock(&self, now_ms: i64) -> bool {
        self.is_locked() && !self.is_lock_expired(now_ms)
    }

    /// Java `putMessage`: caches a pulled batch under one lock acquisition. Only offsets not
    /// already cached are counted (a duplicate replaces the cached message, as Java's `TreeMap.put`
    /// does, without counting twice).
    ///
    /// `queue_offset_max` keeps the highest offset put; Java assigns the last new offset, which is
    /// the same for the ascending batches a pull returns.
    pub(crate) fn put_messages<I: IntoIterator<Item = M>>(&self, msgs: I) {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let mut valid = 0i64;
        let mut added_size = 0i64;
        let mut last: Option<(i64, Option<i64>)> = None;
        for msg in msgs {
            let offset = msg.queue_offset();
            let size = msg.body_len() as i64;
            let max = msg.max_offset_property();
            if inner.msg_tree_map.insert(offset, msg).is_none() {
                valid += 1;
                added_size += size;
                inner.queue_offset_max = inner.queue_offset_max.max(offset);
            }
            last = Some((offset, max));
        }
        inner.msg_count += valid;
        inner.msg_size += added_size;
        // Java `putMessage`: the accumulation counts from the batch's last message. Both values
        // come from the network, so the difference saturates instead of overflowing.
        if let Some((offset, Some(max))) = last {
            inner.msg_acc_cnt = max.saturating_sub(offset).max(0);
        }
    }

    /// Messages at the broker beyond the last one cached (Java `msgAccCnt`), from the last
    /// pull's `MAX_OFFSET`; 0 before the first pull that carried it.
    pub(crate) fn msg_acc_cnt(&self) -> i64 {
        self.inner.lock().msg_acc_cnt
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

    /// Java `removeMessage` and the commit that follows it: removes a consumed batch (by offset)
    /// under one lock acquisition and works out the offset to commit: the smallest offset still
    /// cached, `queue_offset_max + 1` if the cache became empty, or −1 if it was already empty.
    /// Offsets not cached are ignored. Updates `last_consume_timestamp`.
    ///
    /// Unless the queue is dropped or the offset is −1, `commit` is called with the offset while
    /// the lock is held (see the module docs). Returns the offset.
    pub(crate) fn remove_messages<I>(&self, offsets: I, commit: impl FnOnce(i64)) -> i64
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
        let offset = match inner.msg_tree_map.first_key_value() {
            Some((first, _)) => *first,
            None => inner.queue_offset_max + 1,
        };
        if !self.is_dropped() {
            commit(offset);
        }
        offset
    }

    /// For a pull that found nothing (Java `correctTagsOffset`): when no message is cached, the
    /// queue's offset may move to `next_offset`. Calls `commit(next_offset)` with the lock held,
    /// unless the queue is dropped or messages are cached. Returns whether it did.
    pub(crate) fn commit_if_empty(&self, next_offset: i64, commit: impl FnOnce(i64)) -> bool {
        let inner = self.inner.lock();
        if inner.msg_count != 0 || self.is_dropped() {
            return false;
        }
        commit(next_offset);
        true
    }

    /// Java `getMaxSpan`: last cached offset − first (0 when empty).
    pub(crate) fn max_span(&self) -> i64 {
        span_of(&self.inner.lock().msg_tree_map)
    }

    /// Java `msgCount`: cached messages.
    pub(crate) fn msg_count(&self) -> i64 {
        self.inner.lock().msg_count
    }

    /// Java `msgSize`: cached body bytes.
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

    /// The smallest cached offset, if any.
    #[cfg(test)]
    pub(crate) fn first_offset(&self) -> Option<i64> {
        self.inner
            .lock()
            .msg_tree_map
            .first_key_value()
            .map(|(k, _)| *k)
    }

    /// Java `clear`: empties the cache and zeroes the counters and `queue_offset_max`.
    pub(crate) fn clear(&self) {
        let mut inner = self.inner.lock();
        inner.msg_tree_map.clear();
        inner.consuming_map.clear();
        inner.msg_count = 0;
        inner.msg_size = 0;
        inner.queue_offset_max = 0;
    }

    /// A consume request of this queue was handed to the pool (once per request, not per
    /// message).
    pub(crate) fn task_submitted(&self) {
        self.inner.lock().inflight_tasks += 1;
    }

    /// A consume request of this queue ended, however it ended.
    pub(crate) fn task_done(&self) {
        let mut inner = self.inner.lock();
        inner.inflight_tasks = inner.inflight_tasks.saturating_sub(1);
        if inner.inflight_tasks == 0 {
            self.idle.notify_all();
        }
    }

    /// Consume requests in flight.
    pub(crate) fn inflight(&self) -> usize {
        self.inner.lock().inflight_tasks
    }

    /// Waits until no consume request of this queue is in flight, or `deadline`.
    pub(crate) fn wait_idle(&self, deadline: Instant) {
        let mut inner = self.inner.lock();
        while inner.inflight_tasks > 0 {
            if self.idle.wait_until(&mut inner, deadline).timed_out() {
                break;
            }
        }
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
        }
        info.droped = self.is_pull_stopped();
        info.locked = self.is_locked();
        info.last_lock_timestamp = self.last_lock_timestamp.load(Ordering::Relaxed);
        info.last_pull_timestamp = self.last_pull_timestamp();
        info.last_consume_timestamp = self.last_consume_timestamp();
        info
    }

    /// Java `isPullExpired`: `now − last_pull_timestamp > max_idle_ms`
    /// ([`PULL_MAX_IDLE_TIME_MS`] by default).
    pub(crate) fn is_pull_expired(&self, now_ms: i64, max_idle_ms: i64) -> bool {
        now_ms - self.last_pull_timestamp() > max_idle_ms
    }

    /// Whether the queue is dropped: nothing more is pulled, consumed or committed for it.
    pub(crate) fn is_dropped(&self) -> bool {
        self.lifecycle.load(Ordering::Acquire) == DROPPED
    }

    /// Whether pulling stopped: the queue is being released (draining) or dropped.
    pub(crate) fn is_pull_stopped(&self) -> bool {
        self.lifecycle.load(Ordering::Acquire) != ACTIVE
    }

    /// Starts releasing the queue: no more pulls; consume tasks already handed to the pool still
    /// run and commit. Does nothing to a dropped queue.
    pub(crate) fn stop_pulling(&self) {
        let _ =
            self.lifecycle
                .compare_exchange(ACTIVE, DRAINING, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Drops the queue. Takes the lock, so a commit in progress finishes first and none follows
    /// (see the module docs).
    pub(crate) fn set_dropped(&self) {
        let _inner = self.inner.lock();
        self.lifecycle.store(DROPPED, Ordering::Release);
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A test message: offset and body length.
    #[derive(Debug, Clone, PartialEq)]
    struct TestMsg {
        offset: i64,
        len: usize,
    }

    impl TestMsg {
        fn new(offset: i64, len: usize) -> Self {
            TestMsg { offset, len }
        }
    }

    impl QueuedMessage for TestMsg {
        fn queue_offset(&self) -> i64 {
            self.offset
        }
        fn body_len(&self) -> usize {
            self.len
        }
    }

    #[test]
    fn msg_acc_cnt_is_real_for_pulled_messages() {
        use crate::common::PullOffsets;
        // As the pull callback sets them: the pull's offset range, shared by its messages.
        let offsets = std::sync::Arc::new(PullOffsets::new(0, 40));
        let batch: Vec<MessageExt> = (10..13)
            .map(|i| {
                let mut m = MessageExt::new("T", "b");
                m.set_queue_offset(i);
                m.set_pull_offsets(offsets.clone());
                m
            })
            .collect();
        let pq: ProcessQueue<MessageExt> = ProcessQueue::new(MessageQueue::new("T", "b", 0), 10);
        assert_eq!(pq.msg_acc_cnt(), 0);
        pq.put_messages(batch);
        assert_eq!(pq.msg_acc_cnt(), 40 - 12);
    }

    #[test]
    fn msg_acc_cnt_survives_extreme_max_offsets_from_the_network() {
        use crate::common::PullOffsets;
        let pq: ProcessQueue<MessageExt> = ProcessQueue::new(MessageQueue::new("T", "b", 0), 0);
        for (max, offset, want) in [(i64::MAX, -5, i64::MAX), (i64::MIN, 5, 0), (3, 10, 0)] {
            let mut m = MessageExt::new("T", "b");
            m.set_queue_offset(offset);
            m.set_pull_offsets(std::sync::Arc::new(PullOffsets::new(0, max)));
            pq.put_messages([m]);
            assert_eq!(pq.msg_acc_cnt(), want, "max {max}, offset {offset}");
        }
    }

    fn msgs(offsets: &[i64]) -> Vec<TestMsg> {
        offsets.iter().map(|&o| TestMsg::new(o, 10)).collect()
    }

    fn new_pq() -> ProcessQueue<TestMsg> {
        ProcessQueue::new(MessageQueue::new("T", "broker-a", 0), 0)
    }

    /// `remove_messages` without a commit.
    fn remove<I>(pq: &ProcessQueue<TestMsg>, offsets: I) -> i64
    where
        I: IntoIterator,
        I::Item: Borrow<i64>,
    {
        pq.remove_messages(offsets, |_| {})
    }

    fn take(pq: &ProcessQueue<TestMsg>, n: usize) -> Vec<TestMsg> {
        let mut out = vec![TestMsg::new(-1, 0)];
        let got = pq.take_messages(n, &mut out);
        assert_eq!(got, out.len(), "the buffer is cleared first");
        out
    }

    #[test]
    fn take_commit_moves_the_offset_past_the_taken_messages() {
        let pq = new_pq();
        pq.put_messages(msgs(&[5, 6, 7]));
        assert!(pq.try_dispatch());
        assert!(!pq.try_dispatch(), "one consume request at a time");
        let taken = take(&pq, 2);
        assert_eq!(taken.iter().map(|m| m.offset).collect::<Vec<_>>(), [5, 6]);
        assert_eq!(pq.consuming_count(), 2);
        assert_eq!(pq.first_offset(), Some(7));
        // Taken messages still count as cached until committed (Java `msgCount`).
        assert_eq!(pq.msg_count(), 3);
        let mut committed = None;
        assert_eq!(pq.commit(|o| committed = Some(o)), 7);
        assert_eq!(committed, Some(7));
        assert_eq!((pq.msg_count(), pq.msg_size()), (1, 10));
        assert_eq!(pq.consuming_count(), 0);
        // Nothing in flight: nothing to commit.
        assert_eq!(pq.commit(|_| panic!("no commit expected")), -1);
    }

    #[test]
    fn an_empty_take_ends_the_consume_request() {
        let pq = new_pq();
        pq.put_messages(msgs(&[1]));
        assert!(pq.try_dispatch());
        assert_eq!(take(&pq, 4).len(), 1);
        pq.commit(|_| {});
        assert!(take(&pq, 4).is_empty());
        pq.put_messages(msgs(&[2]));
        assert!(
            pq.try_dispatch(),
            "a new request may start after an empty take"
        );
    }

    #[test]
    fn rollback_returns_every_taken_message_in_order() {
        let pq = new_pq();
        pq.put_messages(msgs(&[1, 2, 3]));
        take(&pq, 2);
        pq.rollback();
        assert_eq!(pq.consuming_count(), 0);
        let again: Vec<i64> = take(&pq, 3).iter().map(|m| m.offset).collect();
        assert_eq!(again, [1, 2, 3]);
        assert_eq!(pq.msg_count(), 3);
    }

    #[test]
    fn consume_again_puts_the_given_copies_back_before_later_messages() {
        let pq = new_pq();
        pq.put_messages(msgs(&[1, 2, 3]));
        let taken = take(&pq, 2);
        // The listener's copies changed (a different length marks the copy, standing in for a
        // raised reconsume count).
        let changed: Vec<TestMsg> = taken.iter().map(|m| TestMsg::new(m.offset, 11)).collect();
        pq.make_message_to_consume_again(changed.into_iter().take(1));
        assert_eq!(pq.consuming_count(), 1, "offset 2 stays in flight");
        let next = take(&pq, 1);
        assert_eq!(
            next,
            vec![TestMsg::new(1, 11)],
            "the copy, not the taken original"
        );
        // Committing 1 and 2 moves the offset to 3, the only one left cached.
        assert_eq!(pq.commit(|_| {}), 3);
        assert_eq!(pq.first_offset(), Some(3));
    }

    #[test]
    fn a_lock_expires_without_renewal() {
        let pq = new_pq();
        let now = now_millis();
        assert!(!pq.holds_lock(now), "not locked until the broker says so");
        pq.set_locked(true);
        assert!(pq.holds_lock(now));
        assert!(!pq.holds_lock(now + REBALANCE_LOCK_MAX_LIVE_TIME_MS + 1_000));
        pq.set_locked(false);
        assert!(!pq.holds_lock(now));
    }

    #[test]
    fn put_counts_new_offsets_only() {
        let pq = new_pq();
        pq.put_messages(msgs(&[5, 6, 7]));
        assert_eq!((pq.msg_count(), pq.msg_size()), (3, 30));
        // Duplicates don't double count.
        pq.put_messages(msgs(&[7, 8]));
        assert_eq!((pq.msg_count(), pq.msg_size()), (4, 40));
        assert_eq!(pq.max_span(), 3);
        assert_eq!(pq.first_offset(), Some(5));
    }

    #[test]
    fn replace_swaps_cached_messages_without_counting_twice() {
        let pq = new_pq();
        pq.put_messages(msgs(&[1, 2]));
        // Offset 3 is not cached: ignored, not added.
        pq.replace_messages([TestMsg::new(2, 12), TestMsg::new(3, 10)]);
        assert_eq!((pq.msg_count(), pq.msg_size()), (2, 22));
        assert_eq!(remove(&pq, [1i64]), 2);
        assert_eq!(pq.msg_size(), 12);
        assert_eq!(remove(&pq, [2i64]), 3);
        assert_eq!((pq.msg_count(), pq.msg_size()), (0, 0));
    }

    #[test]
    fn remove_returns_smallest_remaining_then_max_plus_one_then_minus_one() {
        let pq = new_pq();
        pq.put_messages(msgs(&[10, 11, 12, 13]));
        // Removing a later message leaves the head: commit stays at the head.
        assert_eq!(remove(&pq, [12i64, 13]), 10);
        assert_eq!((pq.msg_count(), pq.msg_size()), (2, 20));
        let consumed: &[i64] = &[10];
        assert_eq!(remove(&pq, consumed), 11);
        // Removing an absent offset changes nothing.
        assert_eq!(remove(&pq, vec![99i64]), 11);
        assert_eq!(pq.msg_count(), 1);
        assert_eq!(remove(&pq, [11i64]), 14);
        assert_eq!((pq.msg_count(), pq.msg_size()), (0, 0));
        assert_eq!(remove(&pq, [11i64]), -1);
        assert_eq!(pq.max_span(), 0);
        assert_eq!(pq.first_offset(), None);
    }

    #[test]
    fn remove_commits_unless_dropped_or_empty() {
        let pq = new_pq();
        pq.put_messages(msgs(&[1, 2, 3]));
        let mut committed = Vec::new();
        pq.remove_messages([1i64], |o| committed.push(o));
        assert_eq!(committed, [2]);
        pq.stop_pulling();
        // Draining: consume tasks in flight still commit.
        pq.remove_messages([2i64], |o| committed.push(o));
        assert_eq!(committed, [2, 3]);
        pq.set_dropped();
        assert_eq!(pq.remove_messages([3i64], |o| committed.push(o)), 4);
        assert_eq!(committed, [2, 3], "no commit once dropped");
        pq.remove_messages([3i64], |o| committed.push(o));
        assert_eq!(committed, [2, 3]);
    }

    #[test]
    fn commit_if_empty_only_when_nothing_is_cached_and_not_dropped() {
        let pq = new_pq();
        let mut committed = Vec::new();
        assert!(pq.commit_if_empty(5, |o| committed.push(o)));
        pq.put_messages(msgs(&[5]));
        assert!(!pq.commit_if_empty(6, |o| committed.push(o)));
        remove(&pq, [5i64]);
        pq.set_dropped();
        assert!(!pq.commit_if_empty(7, |o| committed.push(o)));
        assert_eq!(committed, [5]);
    }

    #[test]
    fn set_dropped_waits_for_a_commit_in_progress() {
        // A commit in progress when the queue is dropped (a reset) lands before set_dropped
        // returns; the reset's own write then comes after it.
        let pq = std::sync::Arc::new(new_pq());
        pq.put_messages(msgs(&[1]));
        let store = std::sync::Arc::new(AtomicI64::new(0));
        let (in_commit_tx, in_commit_rx) = crossbeam_channel::bounded(0);
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
        let consumer = {
            let (pq, store) = (std::sync::Arc::clone(&pq), std::sync::Arc::clone(&store));
            std::thread::Builder::new()
                .name("pq-test-commit".into())
                .spawn(move || {
                    pq.remove_messages([1i64], |o| {
                        in_commit_tx.send(()).unwrap();
                        release_rx.recv().unwrap();
                        store.fetch_max(o, Ordering::SeqCst);
                    })
                })
                .unwrap()
        };
        in_commit_rx.recv().unwrap();
        let dropper = {
            let (pq, store) = (std::sync::Arc::clone(&pq), std::sync::Arc::clone(&store));
            std::thread::Builder::new()
                .name("pq-test-drop".into())
                .spawn(move || {
                    pq.set_dropped();
                    // The reset writes its offset after dropping.
                    store.store(-7, Ordering::SeqCst);
                })
                .unwrap()
        };
        // The dropper is blocked in set_dropped until the commit ends.
        assert!(!pq.is_dropped());
        release_tx.send(()).unwrap();
        assert_eq!(consumer.join().unwrap(), 2);
        dropper.join().unwrap();
        assert!(pq.is_dropped());
        assert_eq!(store.load(Ordering::SeqCst), -7, "the reset's offset stays");
    }

    #[test]
    fn lifecycle_moves_forward_only() {
        let pq = new_pq();
        assert!(!pq.is_pull_stopped() && !pq.is_dropped());
        pq.stop_pulling();
        assert!(pq.is_pull_stopped() && !pq.is_dropped());
        assert!(pq.info().droped);
        pq.set_dropped();
        pq.stop_pulling();
        assert!(pq.is_pull_stopped() && pq.is_dropped());
    }

    #[test]
    fn remove_updates_last_consume_timestamp() {
        let pq = new_pq();
        pq.last_consume_timestamp.store(0, Ordering::Relaxed);
        remove(&pq, [1i64]);
        assert!(pq.last_consume_timestamp() > 0);
    }

    #[test]
    fn clear_resets_everything() {
        let pq = new_pq();
        pq.put_messages(msgs(&[1, 2, 3]));
        pq.clear();
        assert_eq!((pq.msg_count(), pq.msg_size(), pq.max_span()), (0, 0, 0));
        assert_eq!(pq.first_offset(), None);
        assert_eq!(remove(&pq, [2i64]), -1);
        pq.put_messages(msgs(&[3]));
        assert_eq!(remove(&pq, [3i64]), 4);
    }

    #[test]
    fn wait_idle_returns_when_the_last_task_ends_or_at_the_deadline() {
        let pq = std::sync::Arc::new(new_pq());
        pq.task_submitted();
        pq.task_submitted();
        // Times out while tasks are in flight.
        pq.wait_idle(Instant::now() + std::time::Duration::from_millis(10));
        assert_eq!(pq.inflight(), 2);
        let ender = {
            let pq = pq.clone();
            std::thread::Builder::new()
                .name("pq-test-done".into())
                .spawn(move || {
                    pq.task_done();
                    pq.task_done();
                })
                .unwrap()
        };
        pq.wait_idle(Instant::now() + std::time::Duration::from_secs(30));
        assert_eq!(pq.inflight(), 0);
        ender.join().unwrap();
    }

    #[test]
    fn pull_expiry() {
        let pq = new_pq();
        pq.set_last_pull_timestamp(2_000);
        assert!(!pq.is_pull_expired(122_000, PULL_MAX_IDLE_TIME_MS));
        assert!(pq.is_pull_expired(122_001, PULL_MAX_IDLE_TIME_MS));
    }

    #[test]
    fn flow_stats_in_one_call() {
        let pq = new_pq();
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
    fn info_reports_the_cached_range_and_the_dropped_flag() {
        let pq = new_pq();
        pq.put_messages(vec![TestMsg::new(4, 3 * 1024 * 1024), TestMsg::new(9, 1)]);
        pq.set_dropped();
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
        assert!(info.droped && !info.locked);
        assert_eq!(info.commit_offset, 0, "left for the caller");
    }

    #[test]
    fn concurrent_put_and_remove_keep_counters_exact() {
        let pq = std::sync::Arc::new(new_pq());
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
                let commit = remove(&pq, h..h + 8);
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
            let pq = new_pq();
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
                        let r = remove(&pq, &chosen);
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
