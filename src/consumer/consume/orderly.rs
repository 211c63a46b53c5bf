//! `ConsumeMessageOrderlyService`: runs an orderly listener, one batch at a time per queue, in
//! offset order.
//!
//! # How one queue is consumed
//!
//! A pulled batch only wakes the queue: if no consume request of the queue is active
//! ([`ProcessQueue::try_dispatch`]), one is handed to the pool. That request takes batches from
//! the front of the queue's cache ([`ProcessQueue::take_messages`]) and runs the listener on
//! each, until the cache is empty, the queue is being released, its broker lock is not held
//! (clustering), or it has run for [`MAX_TIME_CONSUME_CONTINUOUSLY`] (it then yields its thread
//! and goes on from a new request). A per-queue mutex (Java `MessageQueueLock`) is held for
//! the request's whole run, so two requests of one queue never overlap, even across a queue
//! rebuilt by a rebalance.
//!
//! A suspended batch (`SuspendCurrentQueueAMoment`, or a panic) goes back to the front of the
//! cache ([`ProcessQueue::make_message_to_consume_again`]) with its reconsume count raised, and
//! the queue resumes after the suspend time. A message already consumed `max_reconsume_times`
//! times is sent to the group's retry topic instead, which the broker turns into the DLQ, and
//! the queue moves on.
//!
//! Offsets are committed by [`ProcessQueue::commit`], under the queue's lock, so a dropped
//! queue commits nothing. The listener runs without any lock but the per-queue mutex.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::client::instance::{DirectConsumeReply, MQClientInstance};
use crate::common::util::now_millis;
use crate::common::{MessageConst, MessageExt, MessageQueue};
use crate::consumer::broker_lock::{LOCK_ALL_INITIAL_DELAY, LOCK_ALL_PERIOD};
use crate::consumer::builder::ConsumerConfig;
use crate::consumer::consume::concurrently::InflightGuard;
use crate::consumer::consume::{
    consume_directly, reset_retry_topic, run_hooks, ConsumeMessageService, DirectConsumes,
};
use crate::consumer::listener::{
    ConsumeConcurrentlyStatus, ConsumeMessageHook, ConsumeOrderlyContext, ConsumeOrderlyStatus,
    MessageListenerOrderly,
};
use crate::consumer::offset_store::OffsetStore;
use crate::consumer::process_queue::ProcessQueue;
use crate::consumer::push_consumer::PushConsumerInner;
use crate::consumer::subscription::MessageModel;
use crate::error::Result;
use crate::executor::{ScheduledHandle, ShutdownError, ThreadPoolExecutor};

/// Java `MAX_TIME_CONSUME_CONTINUOUSLY` (`rocketmq.client.maxTimeConsumeContinuously`): a
/// consume request gives its thread up after this long, so that one busy queue does not hold
/// a thread forever.
pub(crate) const MAX_TIME_CONSUME_CONTINUOUSLY: Duration = Duration::from_secs(60);
/// A request that yielded, or a queue locked again, resumes after this long (Java: 10 ms).
const RESUME_DELAY: Duration = Duration::from_millis(10);
/// A queue found without its lock when a request starts tries to lock it after this long
/// (Java: 100 ms); a lock lost during a request, after [`RESUME_DELAY`].
const RELOCK_DELAY_AT_START: Duration = Duration::from_millis(100);
/// After a failed re-lock, the queue is looked at again after this long (Java: 3 s).
const RELOCK_FAILED_DELAY: Duration = Duration::from_secs(3);
/// A request the full pool refused is handed in again after this long.
const REJECTED_DELAY: Duration = Duration::from_millis(100);

/// Listener outcomes of one request, reported to the consumer's stats once.
#[derive(Default)]
struct Tally {
    ok: usize,
    failed: usize,
    rt: Duration,
    calls: usize,
}

pub(crate) struct ConsumeMessageOrderlyService {
    me: Weak<ConsumeMessageOrderlyService>,
    consumer: Weak<PushConsumerInner>,
    group: String,
    listener: Arc<dyn MessageListenerOrderly>,
    hooks: Vec<Arc<dyn ConsumeMessageHook>>,
    pool: ThreadPoolExecutor,
    batch_max: usize,
    model: MessageModel,
    /// `%RETRY%<group>`: messages pulled from it get their original topic back.
    retry_topic: String,
    /// The consumer's namespace, which the listener does not see.
    namespace: Option<String>,
    suspend_time: Duration,
    /// Java orderly `getMaxReconsumeTimes`: `i32::MAX` unless set.
    max_reconsume_times: i32,
    /// Java `MessageQueueLock`: one mutex per queue, held for a whole consume request.
    mq_locks: Mutex<HashMap<MessageQueue, Arc<Mutex<()>>>>,
    /// Java `lockMQPeriodically` (clustering), once started.
    lock_all_task: Mutex<Option<ScheduledHandle>>,
    /// `CONSUME_MESSAGE_DIRECTLY` requests on the pool.
    direct: DirectConsumes,
}

impl std::fmt::Debug for ConsumeMessageOrderlyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumeMessageOrderlyService")
            .field("group", &self.group)
            .field("pool_size", &self.pool.pool_size())
            .finish()
    }
}

impl ConsumeMessageOrderlyService {
    pub(crate) fn new(
        consumer: Weak<PushConsumerInner>,
        cfg: &ConsumerConfig,
        listener: Arc<dyn MessageListenerOrderly>,
        hooks: Vec<Arc<dyn ConsumeMessageHook>>,
        pool: ThreadPoolExecutor,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| ConsumeMessageOrderlyService {
            me: me.clone(),
            consumer,
            retry_topic: format!("%RETRY%{}", cfg.group),
            namespace: cfg.namespace.clone(),
            group: cfg.group.clone(),
            listener,
            hooks,
            pool,
            batch_max: cfg.consume_message_batch_max_size.max(1),
            model: cfg.message_model,
            suspend_time: cfg.suspend_current_queue_time,
            max_reconsume_times: cfg
                .max_reconsume_times
                .map_or(i32::MAX, |n| i32::try_from(n).unwrap_or(i32::MAX)),
            mq_locks: Mutex::new(HashMap::new()),
            lock_all_task: Mutex::new(None),
            direct: DirectConsumes::default(),
        })
    }

    /// Hands a consume request of `state`'s queue to the pool (counted in flight while it is
    /// queued or runs).
    fn submit(self: &Arc<Self>, state: Arc<ProcessQueue>) {
        let guard = InflightGuard::new(state.clone());
        let me = self.clone();
        let st = state.clone();
        let task = move || me.run(st, guard);
        if let Err(rejected) = self.pool.execute(task) {
            let is_shutdown = rejected.is_shutdown();
            let task = rejected.into_inner();
            drop(task);
            if is_shutdown {
                // The messages stay cached and uncommitted; the next owner consumes them.
                return;
            }
            log::warn!(
                "consume pool of {} is full; resubmitting a request in {REJECTED_DELAY:?}",
                self.group
            );
            self.submit_later(state, REJECTED_DELAY);
        }
    }

    /// Java `submitConsumeRequestLater`: the queue's request goes on after `delay`, unless the
    /// queue is dropped by then. Nothing is in flight meanwhile, so a rebalance may release the
    /// queue without waiting.
    fn submit_later(self: &Arc<Self>, state: Arc<ProcessQueue>, delay: Duration) {
        let Some(consumer) = self.consumer.upgrade() else {
            return;
        };
        let me = Arc::downgrade(self);
        consumer.schedule(delay, move || {
            if let Some(me) = me.upgrade() {
                if !state.is_pull_stopped() {
                    me.submit(state);
                }
            }
        });
    }

    /// Java `tryLockLaterAndReconsume`: after `delay`, lock the queue again (on the pool, not
    /// the scheduler: it waits for the broker) and resume soon if granted, later if not.
    fn try_lock_later_and_reconsume(self: &Arc<Self>, state: Arc<ProcessQueue>, delay: Duration) {
        let Some(consumer) = self.consumer.upgrade() else {
            return;
        };
        let me = Arc::downgrade(self);
        consumer.schedule(delay, move || {
            let Some(me) = me.upgrade() else {
                return;
            };
            if state.is_pull_stopped() {
                return;
            }
            let me2 = me.clone();
            let relock = move || {
                let Some(consumer) = me2.consumer.upgrade() else {
                    return;
                };
                let ok = consumer.relock(&state.mq).unwrap_or(false);
                me2.submit_later(
                    state,
                    if ok {
                        RESUME_DELAY
                    } else {
                        RELOCK_FAILED_DELAY
                    },
                );
            };
            if let Err(r) = me.pool.execute(relock) {
                drop(r.into_inner());
            }
        });
    }

    fn mq_lock(&self, mq: &MessageQueue) -> Arc<Mutex<()>> {
        let mut locks = self.mq_locks.lock();
        if let Some(l) = locks.get(mq) {
            return l.clone();
        }
        let l = Arc::new(Mutex::new(()));
        locks.insert(mq.clone(), l.clone());
        l
    }

    /// One consume request of `state`'s queue (Java `ConsumeRequest.run`).
    fn run(self: Arc<Self>, state: Arc<ProcessQueue>, _inflight: InflightGuard) {
        let Some(consumer) = self.consumer.upgrade() else {
            return;
        };
        if state.is_pull_stopped() {
            self.give_back_released(&consumer, &state);
            return;
        }
        let mq_lock = self.mq_lock(&state.mq);
        let _exclusive = mq_lock.lock();
        if self.model == MessageModel::Clustering && !state.holds_lock(now_millis()) {
            self.try_lock_later_and_reconsume(state, RELOCK_DELAY_AT_START);
            return;
        }
        // Stats are counted once per request, not per batch.
        let mut tally = Tally::default();
        let finished = self.consume_loop(&consumer, &state, &mut tally);
        consumer.stats().consumed(
            &state.mq.topic,
            tally.ok,
            tally.failed,
            tally.rt,
            tally.calls,
        );
        if finished {
            self.give_back_released(&consumer, &state);
        }
    }

    /// The batches of one request. Returns `true` when the request ended because its queue is
    /// being released or dropped, `false` when it ended otherwise (cache empty, or it goes on
    /// later).
    fn consume_loop(
        self: &Arc<Self>,
        consumer: &PushConsumerInner,
        state: &Arc<ProcessQueue>,
        tally: &mut Tally,
    ) -> bool {
        let mq = &state.mq;
        let locks = self.model == MessageModel::Clustering;
        let store = consumer.offset_store();
        // One context and one batch buffer per request, reused for every batch.
        let mut ctx = ConsumeOrderlyContext::new(mq.clone(), self.suspend_time);
        let mut msgs: Vec<MessageExt> = Vec::with_capacity(self.batch_max);
        let begin = Instant::now();
        loop {
            // A queue being released stops after the batch that ran; the rest stays
            // uncommitted for its next owner.
            if state.is_pull_stopped() {
                return true;
            }
            if locks && !state.holds_lock(now_millis()) {
                log::warn!(
                    "the lock of {mq} is not held (or expired); consuming it again once locked"
                );
                self.try_lock_later_and_reconsume(state.clone(), RESUME_DELAY);
                return false;
            }
            if begin.elapsed() > MAX_TIME_CONSUME_CONTINUOUSLY {
                self.submit_later(state.clone(), RESUME_DELAY);
                return false;
            }
            if state.take_messages(self.batch_max, &mut msgs) == 0 {
                return false;
            }
            reset_retry_topic(&self.retry_topic, self.namespace.as_deref(), &mut msgs);
            ctx.reset(self.suspend_time);
            run_hooks(&self.hooks, &self.group, mq, &msgs, None);
            let started = Instant::now();
            let status = match catch_unwind(AssertUnwindSafe(|| {
                self.listener.consume_message(&msgs, &mut ctx)
            })) {
                Ok(s) => s,
                Err(panic) => {
                    log::warn!(
                        "the orderly listener of {} panicked on {} message(s) of {mq}: {}; suspending the queue",
                        self.group,
                        msgs.len(),
                        crate::executor::panic_message(panic.as_ref())
                    );
                    ConsumeOrderlyStatus::SuspendCurrentQueueAMoment
                }
            };
            tally.rt += started.elapsed();
            tally.calls += 1;
            // Hooks see Java's concurrent status names: a suspension as `ReconsumeLater`.
            let outcome = if status == ConsumeOrderlyStatus::Success {
                ConsumeConcurrentlyStatus::ConsumeSuccess
            } else {
                ConsumeConcurrentlyStatus::ReconsumeLater
            };
            run_hooks(&self.hooks, &self.group, mq, &msgs, Some(outcome));
            if status == ConsumeOrderlyStatus::Success {
                tally.ok += msgs.len();
            } else {
                tally.failed += msgs.len();
            }
            if state.is_dropped() {
                log::warn!("{mq} was dropped while consuming; results discarded");
                return true;
            }
            if !self.process_consume_result(consumer, &*store, &mut msgs, status, &ctx, state) {
                return false;
            }
        }
    }

    /// A queue released by the rebalance while this request ran keeps its broker lock until
    /// here (the rebalance does not wait long): now its offset goes to the broker and the lock
    /// is given back, unless the queue is held again already.
    fn give_back_released(&self, consumer: &PushConsumerInner, state: &Arc<ProcessQueue>) {
        if self.model != MessageModel::Clustering || !state.is_dropped() {
            return;
        }
        if consumer.process_queue_table.read().contains_key(&state.mq) || !consumer.is_running() {
            return;
        }
        consumer.unlock_mqs(std::slice::from_ref(&state.mq));
    }

    /// Java `processConsumeResult`. Returns whether the request goes on with the next batch.
    fn process_consume_result(
        self: &Arc<Self>,
        consumer: &PushConsumerInner,
        store: &dyn OffsetStore,
        msgs: &mut Vec<MessageExt>,
        status: ConsumeOrderlyStatus,
        ctx: &ConsumeOrderlyContext,
        state: &Arc<ProcessQueue>,
    ) -> bool {
        let mq = &state.mq;
        let commit = || {
            if ctx.is_auto_commit() {
                state.commit(|offset| store.update_offset(mq, offset, false));
            }
        };
        match status {
            ConsumeOrderlyStatus::Success => {
                commit();
                true
            }
            ConsumeOrderlyStatus::SuspendCurrentQueueAMoment => {
                if self.check_reconsume_times(consumer, msgs) {
                    state.make_message_to_consume_again(msgs.drain(..));
                    self.submit_later(state.clone(), ctx.suspend_current_queue_time());
                    false
                } else {
                    // Every message went to the dead-letter queue: the queue moves on.
                    commit();
                    true
                }
            }
        }
    }

    /// Java `checkReconsumeTimes`: messages past the maximum go to the retry topic (the broker
    /// dead-letters them); the others get their reconsume count raised. Returns whether the
    /// queue must be suspended (some message is to be consumed again).
    fn check_reconsume_times(&self, consumer: &PushConsumerInner, msgs: &mut [MessageExt]) -> bool {
        let mut suspend = false;
        for m in msgs.iter_mut() {
            if m.reconsume_times() >= self.max_reconsume_times {
                if self.model == MessageModel::Broadcasting {
                    log::warn!(
                        "BROADCASTING, the message {} of {} exceeded its reconsume times, dropped",
                        m.msg_id(),
                        self.group
                    );
                    continue;
                }
                m.put_property(
                    MessageConst::PROPERTY_RECONSUME_TIME,
                    m.reconsume_times().to_string(),
                );
                let sent = consumer
                    .instance()
                    .ok_or_else(crate::consumer::push_consumer::shut_down)
                    .and_then(|i| consumer.send_back_via_retry_topic(&i, m));
                match sent {
                    Ok(()) => log::info!(
                        "the message {} exceeded {} reconsume times; sent to the DLQ of {}",
                        m.msg_id(),
                        self.max_reconsume_times,
                        self.group
                    ),
                    Err(e) => {
                        log::warn!(
                            "sending {} to the retry topic failed ({e}); consuming it again",
                            m.msg_id()
                        );
                        suspend = true;
                        m.set_reconsume_times(m.reconsume_times().saturating_add(1));
                    }
                }
            } else {
                suspend = true;
                m.set_reconsume_times(m.reconsume_times().saturating_add(1));
            }
        }
        suspend
    }
}

impl ConsumeMessageService for ConsumeMessageOrderlyService {
    /// Clustering: renews the broker locks of every held queue (Java `lockMQPeriodically`),
    /// first after 1 s, then every 20 s. The requests wait for the brokers, so they run on the
    /// consume pool, not on the shared scheduler.
    fn start(&self, instance: &MQClientInstance) -> Result<()> {
        if self.model != MessageModel::Clustering {
            return Ok(());
        }
        let me = self.me.clone();
        let handle =
            instance.schedule_periodic(LOCK_ALL_INITIAL_DELAY, LOCK_ALL_PERIOD, move || {
                let Some(me) = me.upgrade() else {
                    return;
                };
                let consumer = me.consumer.clone();
                let lock_all = move || {
                    if let Some(c) = consumer.upgrade() {
                        if c.is_running() {
                            c.lock_all();
                        }
                    }
                };
                if let Err(r) = me.pool.execute(lock_all) {
                    drop(r.into_inner());
                }
            })?;
        *self.lock_all_task.lock() = Some(handle);
        Ok(())
    }

    fn shutdown(&self, timeout: Duration) -> std::result::Result<(), ShutdownError> {
        if let Some(h) = self.lock_all_task.lock().take() {
            h.cancel();
        }
        self.pool.shutdown(timeout)
    }

    /// Java `submitConsumeRequest` with `dispatchToConsume`: the batch is already cached; a
    /// request starts only if none of the queue is active.
    fn submit_consume_request(&self, _msgs: Vec<MessageExt>, state: &Arc<ProcessQueue>) {
        if state.try_dispatch() {
            if let Some(me) = self.me.upgrade() {
                me.submit(state.clone());
            }
        }
    }

    fn consume_message_directly(
        &self,
        mut msg: MessageExt,
        broker_name: &str,
        reply: DirectConsumeReply,
    ) {
        reset_retry_topic(
            &self.retry_topic,
            self.namespace.as_deref(),
            std::slice::from_mut(&mut msg),
        );
        let mq = MessageQueue::new(msg.topic(), broker_name, msg.queue_id());
        let mut ctx = ConsumeOrderlyContext::new(mq, self.suspend_time);
        let listener = self.listener.clone();
        self.direct.submit(&self.pool, &self.group, reply, move || {
            let msgs = [msg];
            consume_directly(|| {
                listener.consume_message(&msgs, &mut ctx) == ConsumeOrderlyStatus::Success
            })
        });
    }

    fn pool_size(&self) -> usize {
        self.pool.pool_size()
    }

    fn core_pool_size(&self) -> usize {
        self.pool.core_threads()
    }
}

impl Drop for ConsumeMessageOrderlyService {
    fn drop(&mut self) {
        if let Some(h) = self.lock_all_task.get_mut().take() {
            h.cancel();
        }
    }
}
