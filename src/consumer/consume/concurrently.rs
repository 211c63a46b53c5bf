//! `ConsumeMessageConcurrentlyService`: runs the user's listener on the consume pool.
//!
//! Hand-offs are batched: a pulled batch becomes one `ConsumeRequest` (not one per message);
//! its task calls the listener once per `consume_message_batch_max_size` messages and then
//! removes everything it consumed from the `ProcessQueue` under a single lock.
//!
//! The consume timeout (Java `cleanExpireMsg`) is judged per listener call, not per request:
//! before each call the task stamps the call's number and start time into one atomic word of
//! its [`RunningTask`], and clears it when the call returns. The sweep looks at those words; a
//! call that overran is claimed by one compare-and-swap, which the task's own clearing races
//! against, so that either the task or the sweep handles the call's messages, never both.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::client::instance::{DirectConsumeReply, MQClientInstance};
use crate::common::{MessageExt, MessageQueue};
use crate::consumer::builder::ConsumerConfig;
use crate::consumer::consume::{
    consume_directly, reset_retry_topic, run_hooks, ConsumeMessageService, DirectConsumes,
};
use crate::consumer::listener::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, ConsumeMessageHook,
    MessageListenerConcurrently,
};
use crate::consumer::process_queue::ProcessQueue;
use crate::consumer::push_consumer::PushConsumerInner;
use crate::consumer::subscription::MessageModel;
use crate::error::Result;
use crate::executor::{ScheduledHandle, ShutdownError, ThreadPoolExecutor};

/// Delay before a request the pool refused, or a message whose send-back failed, is consumed
/// again (Java: 5 s).
pub(crate) const RESUBMIT_DELAY: Duration = Duration::from_secs(5);

/// At most this many tasks are made from one pulled batch. One is enough for parallelism: the
/// pull goes on while a batch is consumed, so every pulled batch (of every queue) is a request
/// of its own and a slow listener still fills the pool; each extra task would only cost another
/// thread wake-up.
const MAX_TASKS_PER_BATCH: usize = 1;

pub(crate) struct ConsumeMessageConcurrentlyService {
    me: Weak<ConsumeMessageConcurrentlyService>,
    consumer: Weak<PushConsumerInner>,
    group: String,
    listener: Arc<dyn MessageListenerConcurrently>,
    hooks: Vec<Arc<dyn ConsumeMessageHook>>,
    pool: ThreadPoolExecutor,
    batch_max: usize,
    model: MessageModel,
    /// `%RETRY%<group>`: messages pulled from it get their original topic back.
    retry_topic: String,
    /// The consumer's namespace, which the listener does not see.
    namespace: Option<String>,
    consume_timeout: Duration,
    /// The consume-timeout sweep on the client's scheduler, once started.
    sweep: Mutex<Option<ScheduledHandle>>,
    /// Zero of the clock in [`RunningTask::call`].
    epoch: Instant,
    /// Requests being run, for the sweep: one entry per request, not per message.
    running: Mutex<Vec<Arc<RunningTask>>>,
    /// `CONSUME_MESSAGE_DIRECTLY` requests on the pool.
    direct: DirectConsumes,
}

impl std::fmt::Debug for ConsumeMessageConcurrentlyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumeMessageConcurrentlyService")
            .field("group", &self.group)
            .field("pool_size", &self.pool.pool_size())
            .finish()
    }
}

/// One unit of work for the pool.
struct ConsumeRequest {
    msgs: Vec<MessageExt>,
    state: Arc<ProcessQueue>,
    /// Counts this request as in flight on its queue until it is dropped, however it ends.
    _inflight: InflightGuard,
}

impl ConsumeRequest {
    fn new(msgs: Vec<MessageExt>, state: Arc<ProcessQueue>) -> Self {
        let guard = InflightGuard::new(state.clone());
        ConsumeRequest {
            msgs,
            state,
            _inflight: guard,
        }
    }
}

/// A request being run, as the consume-timeout sweep sees it.
struct RunningTask {
    state: Arc<ProcessQueue>,
    /// The request's messages (topics already reset); call `n` gets the `n`th chunk of
    /// `batch_max`.
    msgs: Vec<MessageExt>,
    /// The call in progress: [`CALL_IDLE`], a word from [`call_word`], or [`CALL_TAKEN`] once
    /// the sweep took the request over. The task alone stores a running word and clears it
    /// (by compare-and-swap); the sweep alone swaps a running word for `CALL_TAKEN`.
    call: AtomicU64,
    /// Offsets handed to a local retry by this request (their send-back failed): they stay
    /// cached if the sweep takes the request over. Locked only on that failure path and by the
    /// sweep.
    retried: Mutex<Vec<i64>>,
}

/// No listener call running.
const CALL_IDLE: u64 = 0;
/// The sweep took the request over; terminal.
const CALL_TAKEN: u64 = u64::MAX;
/// Low bits of a running word: the call's number within its request.
const CALL_CHUNK_BITS: u32 = 24;

/// The running word of call number `chunk`, started `started_ms` after the service's epoch.
/// Never [`CALL_IDLE`] or [`CALL_TAKEN`].
fn call_word(chunk: usize, started_ms: u64) -> u64 {
    let chunk = (chunk as u64).min((1 << CALL_CHUNK_BITS) - 1);
    let started = started_ms
        .saturating_add(1)
        .min((1 << (64 - CALL_CHUNK_BITS)) - 2);
    (started << CALL_CHUNK_BITS) | chunk
}

/// (call number, start ms) of a running word; `None` for idle or taken.
fn decode_call_word(word: u64) -> Option<(usize, u64)> {
    if word == CALL_IDLE || word == CALL_TAKEN {
        return None;
    }
    let chunk = (word & ((1 << CALL_CHUNK_BITS) - 1)) as usize;
    Some((chunk, (word >> CALL_CHUNK_BITS) - 1))
}

/// Keeps a request listed in the service's `running` for as long as it runs.
struct Registered<'a> {
    service: &'a ConsumeMessageConcurrentlyService,
    task: Arc<RunningTask>,
}

impl<'a> Registered<'a> {
    fn new(service: &'a ConsumeMessageConcurrentlyService, task: Arc<RunningTask>) -> Self {
        service.running.lock().push(task.clone());
        Registered { service, task }
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        let mut running = self.service.running.lock();
        if let Some(i) = running.iter().position(|t| Arc::ptr_eq(t, &self.task)) {
            running.swap_remove(i);
        }
    }
}

impl ConsumeMessageConcurrentlyService {
    pub(crate) fn new(
        consumer: Weak<PushConsumerInner>,
        cfg: &ConsumerConfig,
        listener: Arc<dyn MessageListenerConcurrently>,
        hooks: Vec<Arc<dyn ConsumeMessageHook>>,
        pool: ThreadPoolExecutor,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| ConsumeMessageConcurrentlyService {
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
            consume_timeout: cfg.consume_timeout,
            sweep: Mutex::new(None),
            epoch: Instant::now(),
            running: Mutex::new(Vec::new()),
            direct: DirectConsumes::default(),
        })
    }

    /// Hands a pulled batch (already in the process queue) to the pool.
    fn submit_batch(self: &Arc<Self>, mut msgs: Vec<MessageExt>, state: &Arc<ProcessQueue>) {
        if msgs.is_empty() {
            return;
        }
        let per_task = msgs.len().div_ceil(MAX_TASKS_PER_BATCH).max(self.batch_max);
        while !msgs.is_empty() {
            let rest = if msgs.len() > per_task {
                msgs.split_off(per_task)
            } else {
                Vec::new()
            };
            let chunk = std::mem::replace(&mut msgs, rest);
            self.submit(ConsumeRequest::new(chunk, state.clone()));
        }
    }

    fn submit(self: &Arc<Self>, req: ConsumeRequest) {
        let me = self.clone();
        let task = move || me.run(req);
        if let Err(rejected) = self.pool.execute(task) {
            let is_shutdown = rejected.is_shutdown();
            let task = rejected.into_inner();
            if is_shutdown {
                // Shutting down: the messages stay in the process queue, unconsumed, so the
                // committed offset never passes them.
                drop(task);
                return;
            }
            log::warn!(
                "consume pool of {} is full; resubmitting a request in {RESUBMIT_DELAY:?}",
                self.group
            );
            self.schedule_later(Box::new(task));
        }
    }

    fn schedule_later(self: &Arc<Self>, task: Box<dyn FnOnce() + Send>) {
        let Some(consumer) = self.consumer.upgrade() else {
            return;
        };
        let me = Arc::downgrade(self);
        consumer.schedule(RESUBMIT_DELAY, move || {
            if let Some(me) = me.upgrade() {
                if let Err(r) = me.pool.execute(task) {
                    drop(r.into_inner());
                }
            }
        });
    }

    /// Consumes `msgs` of `state`'s queue again in [`RESUBMIT_DELAY`]: their send-back failed.
    ///
    /// They outlive the pull they came in, so they are copied out of its frame first, and the
    /// cached versions are replaced by the copies: otherwise these few messages would keep
    /// whole pull frames alive, memory the cache accounting does not see. (Failure path only:
    /// the copies are the only per-message allocation here.)
    fn consume_later(self: &Arc<Self>, mut msgs: Vec<MessageExt>, state: &Arc<ProcessQueue>) {
        for m in msgs.iter_mut() {
            let times = m.reconsume_times().saturating_add(1);
            *m = m.detached();
            m.set_reconsume_times(times);
        }
        state.replace_messages(msgs.iter().cloned());
        let me = self.clone();
        let st = state.clone();
        self.schedule_later(Box::new(move || me.submit(ConsumeRequest::new(msgs, st))));
    }

    /// Milliseconds from this service's start to `at`, the clock of [`RunningTask::call`].
    fn millis_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }

    fn run(self: Arc<Self>, req: ConsumeRequest) {
        let ConsumeRequest {
            mut msgs,
            state,
            _inflight,
        } = req;
        if state.is_dropped() {
            return;
        }
        let Some(consumer) = self.consumer.upgrade() else {
            return;
        };
        let mq = state.mq.clone();
        reset_retry_topic(&self.retry_topic, self.namespace.as_deref(), &mut msgs);
        // One registration (one lock) per request, so that the sweep can see its calls.
        let task = Arc::new(RunningTask {
            state: state.clone(),
            msgs,
            call: AtomicU64::new(CALL_IDLE),
            retried: Mutex::new(Vec::new()),
        });
        let _registered = Registered::new(&self, task.clone());
        let msgs = &task.msgs;

        let mut done_offsets: Vec<i64> = Vec::with_capacity(msgs.len());
        // One context and one stats update per request, not per listener call.
        let mut ctx = ConsumeConcurrentlyContext::new(mq.clone());
        let (mut ok_total, mut failed_total, mut rt_total) = (0, 0, std::time::Duration::ZERO);
        let mut calls = 0;
        let mut taken_over = false;
        for (chunk, sub) in msgs.chunks(self.batch_max).enumerate() {
            ctx.reset();
            run_hooks(&self.hooks, &self.group, &mq, sub, None);
            let begin = Instant::now();
            // Stamped per call, without a lock: the sweep judges the call, not the request.
            let word = call_word(chunk, self.millis_at(begin));
            task.call.store(word, Ordering::Release);
            let status = match catch_unwind(AssertUnwindSafe(|| {
                self.listener.consume_message(sub, &mut ctx)
            })) {
                Ok(s) => s,
                Err(panic) => {
                    log::warn!(
                        "the listener of {} panicked on {} message(s) of {mq}: {}; they will be consumed again",
                        self.group,
                        sub.len(),
                        crate::executor::panic_message(panic.as_ref())
                    );
                    ConsumeConcurrentlyStatus::ReconsumeLater
                }
            };
            let rt = begin.elapsed();
            calls += 1;
            rt_total += rt;
            run_hooks(&self.hooks, &self.group, &mq, sub, Some(status));
            if task
                .call
                .compare_exchange(word, CALL_IDLE, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                // The sweep took this request over while the call overran the consume
                // timeout: it sent these messages back and handed the rest on. Whatever the
                // listener returned no longer counts.
                log::warn!(
                    "a listener call of {} on {} message(s) of {mq} returned after {rt:?}, past the consume timeout; its messages were sent back",
                    self.group,
                    sub.len()
                );
                failed_total += sub.len();
                taken_over = true;
                break;
            }
            if state.is_dropped() {
                log::warn!("{mq} was dropped while consuming; results discarded");
                return;
            }
            let ack_index = match status {
                ConsumeConcurrentlyStatus::ConsumeSuccess => {
                    (ctx.ack_index.max(-1) as i64).min(sub.len() as i64 - 1)
                }
                ConsumeConcurrentlyStatus::ReconsumeLater => -1,
            };
            let ok = (ack_index + 1) as usize;
            ok_total += ok;
            failed_total += sub.len() - ok;
            done_offsets.extend(sub[..ok].iter().map(MessageExt::queue_offset));
            let mut consume_again: Vec<MessageExt> = Vec::new();
            for m in &sub[ok..] {
                match self.model {
                    MessageModel::Broadcasting => {
                        log::warn!(
                            "BROADCASTING, the message {} of {mq} consume failed, dropped",
                            m.msg_id()
                        );
                        done_offsets.push(m.queue_offset());
                    }
                    MessageModel::Clustering => {
                        match consumer.send_message_back(
                            m,
                            ctx.delay_level_when_next_consume,
                            &mq.broker_name,
                        ) {
                            Ok(()) => done_offsets.push(m.queue_offset()),
                            Err(e) => {
                                log::warn!(
                                    "send back of {} failed ({e}); consuming it again locally in {RESUBMIT_DELAY:?}",
                                    m.msg_id()
                                );
                                consume_again.push(m.clone());
                            }
                        }
                    }
                }
            }
            if !consume_again.is_empty() {
                // Handed on at once, not at the end of the request: a later call may hang.
                task.retried
                    .lock()
                    .extend(consume_again.iter().map(MessageExt::queue_offset));
                self.consume_later(consume_again, &state);
            }
        }
        consumer
            .stats()
            .consumed(&mq.topic, ok_total, failed_total, rt_total, calls);
        if taken_over {
            return;
        }
        // The commit happens under the queue's lock, atomically with respect to dropping it: a
        // reset that dropped the queue keeps its offset.
        let store = consumer.offset_store();
        state.remove_messages(&done_offsets, |offset| {
            store.update_offset(&mq, offset, true)
        });
    }

    /// Java `cleanExpireMsg`, per listener call: a call that has run longer than the consume
    /// timeout has its messages sent back to the broker (delay level 3), and its request is
    /// taken over, so that the queue moves on without waiting for the call to return.
    ///
    /// Only the overrunning call's messages are sent back. Those of earlier calls of the same
    /// request were consumed and only wait for the request's end to leave the cache; they
    /// leave it now. Those of later calls have not started; another thread consumes them.
    pub(crate) fn clean_expire_msg(&self) {
        let Some(consumer) = self.consumer.upgrade() else {
            return;
        };
        let timeout = self.consume_timeout.as_millis() as u64;
        let now = self.millis_at(Instant::now());
        let running: Vec<Arc<RunningTask>> = self.running.lock().clone();
        for task in running {
            let word = task.call.load(Ordering::Acquire);
            let Some((chunk, started)) = decode_call_word(word) else {
                continue;
            };
            // A dropped queue's messages belong to its next owner now.
            if now.saturating_sub(started) <= timeout || task.state.is_dropped() {
                continue;
            }
            // Exactly one side wins: the task (the call returned) or the sweep.
            if task
                .call
                .compare_exchange(word, CALL_TAKEN, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.take_over(&consumer, &task, chunk);
            }
        }
    }

    /// The sweep's half of [`clean_expire_msg`](Self::clean_expire_msg) for one request whose
    /// call number `chunk` overran.
    fn take_over(&self, consumer: &PushConsumerInner, task: &RunningTask, chunk: usize) {
        let st = &task.state;
        let start = (chunk * self.batch_max).min(task.msgs.len());
        let end = (start + self.batch_max).min(task.msgs.len());
        // Later calls have not started: another thread consumes them.
        if end < task.msgs.len() {
            if let Some(me) = self.me.upgrade() {
                me.submit(ConsumeRequest::new(task.msgs[end..].to_vec(), st.clone()));
            }
        }
        // Earlier calls are done, except messages already handed to a local retry.
        let mut done: Vec<i64> = {
            let retried = task.retried.lock();
            task.msgs[..start]
                .iter()
                .map(MessageExt::queue_offset)
                .filter(|o| !retried.contains(o))
                .collect()
        };
        let mut again = Vec::new();
        for m in &task.msgs[start..end] {
            log::warn!(
                "send expired msg back. topic={}, msgId={}, storeHost={}, queueId={}, queueOffset={}",
                m.topic(),
                m.msg_id(),
                m.store_host(),
                m.queue_id(),
                m.queue_offset()
            );
            if self.model == MessageModel::Broadcasting {
                // Nothing consumes a broadcasting group's retry topic: as for a failed call.
                done.push(m.queue_offset());
                continue;
            }
            if !again.is_empty() {
                again.push(m.clone());
                continue;
            }
            match consumer.send_message_back(m, 3, &st.mq.broker_name) {
                Ok(()) => done.push(m.queue_offset()),
                Err(e) => {
                    log::error!(
                        "send expired msg back failed ({e}); consuming it again locally in {RESUBMIT_DELAY:?}"
                    );
                    again.push(m.clone());
                }
            }
        }
        if !again.is_empty() {
            if let Some(me) = self.me.upgrade() {
                me.consume_later(again, st);
            }
        }
        let store = consumer.offset_store();
        st.remove_messages(&done, |offset| store.update_offset(&st.mq, offset, true));
    }
}

impl ConsumeMessageService for ConsumeMessageConcurrentlyService {
    /// Starts the consume-timeout sweep (Java `cleanExpireMsg`), every `consume_timeout`.
    fn start(&self, instance: &MQClientInstance) -> Result<()> {
        let me = self.me.clone();
        let period = self.consume_timeout;
        let handle = instance.schedule_periodic(period, period, move || {
            if let Some(me) = me.upgrade() {
                me.clean_expire_msg();
            }
        })?;
        *self.sweep.lock() = Some(handle);
        Ok(())
    }

    fn shutdown(&self, timeout: Duration) -> std::result::Result<(), ShutdownError> {
        if let Some(h) = self.sweep.lock().take() {
            h.cancel();
        }
        self.pool.shutdown(timeout)
    }

    fn submit_consume_request(&self, msgs: Vec<MessageExt>, state: &Arc<ProcessQueue>) {
        if let Some(me) = self.me.upgrade() {
            me.submit_batch(msgs, state);
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
        let mut ctx = ConsumeConcurrentlyContext::new(MessageQueue::new(
            msg.topic(),
            broker_name,
            msg.queue_id(),
        ));
        let listener = self.listener.clone();
        self.direct.submit(&self.pool, &self.group, reply, move || {
            let msgs = [msg];
            consume_directly(|| {
                listener.consume_message(&msgs, &mut ctx)
                    == ConsumeConcurrentlyStatus::ConsumeSuccess
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

impl Drop for ConsumeMessageConcurrentlyService {
    fn drop(&mut self) {
        if let Some(h) = self.sweep.get_mut().take() {
            h.cancel();
        }
    }
}

/// Counts a consume request as in flight on its queue for as long as it lives.
pub(super) struct InflightGuard(Arc<ProcessQueue>);

impl InflightGuard {
    pub(super) fn new(state: Arc<ProcessQueue>) -> Self {
        state.task_submitted();
        InflightGuard(state)
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.task_done();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_words_round_trip_and_never_look_idle_or_taken() {
        for (chunk, ms) in [(0, 0), (1, 5), (31, 1 << 39), (1023, 86_400_000)] {
            let w = call_word(chunk, ms);
            assert_ne!(w, CALL_IDLE);
            assert_ne!(w, CALL_TAKEN);
            assert_eq!(decode_call_word(w), Some((chunk, ms)));
        }
        assert_eq!(decode_call_word(CALL_IDLE), None);
        assert_eq!(decode_call_word(CALL_TAKEN), None);
        // Out of range values saturate rather than wrap into the reserved words.
        assert_ne!(call_word(usize::MAX, u64::MAX), CALL_TAKEN);
        // Two calls of one request never share a word, so a stale claim cannot succeed.
        assert_ne!(call_word(0, 7), call_word(1, 7));
    }
}
