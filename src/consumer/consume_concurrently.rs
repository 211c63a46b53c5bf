//! `ConsumeMessageConcurrentlyService`: runs the user's listener on the consume pool.
//!
//! Hand-offs are batched: a pulled batch becomes a few `ConsumeRequest`s (not one per message),
//! each task calls the listener once per `consume_message_batch_max_size` messages and then
//! removes everything it consumed from the `ProcessQueue` under a single lock.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::common::{MessageConst, MessageExt, MessageQueue};
use crate::consumer::listener::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, ConsumeMessageContext,
    ConsumeMessageHook, MessageListenerConcurrently,
};
use crate::consumer::push_consumer::{PushConsumerInner, QueueState};
use crate::consumer::subscription::MessageModel;
use crate::executor::ThreadPoolExecutor;

/// Delay before a request the pool refused, or a message whose send-back failed, is consumed
/// again (Java: 5 s).
pub(crate) const RESUBMIT_DELAY: Duration = Duration::from_secs(5);

/// At most this many tasks are made from one pulled batch. One is enough for parallelism: the
/// pull goes on while a batch is consumed, so every pulled batch (of every queue) is a request
/// of its own and a slow listener still fills the pool; each extra task would only cost another
/// thread wake-up.
const MAX_TASKS_PER_BATCH: usize = 1;

pub(crate) struct ConsumeMessageConcurrentlyService {
    consumer: Weak<PushConsumerInner>,
    group: String,
    listener: Arc<dyn MessageListenerConcurrently>,
    hooks: Vec<Arc<dyn ConsumeMessageHook>>,
    pool: ThreadPoolExecutor,
    batch_max: usize,
    model: MessageModel,
    /// `%RETRY%<group>`: messages pulled from it get their original topic back.
    retry_topic: String,
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
    state: Arc<QueueState>,
    /// Counts this request as in flight on its queue until it is dropped, however it ends.
    _inflight: InflightGuard,
}

impl ConsumeRequest {
    fn new(msgs: Vec<MessageExt>, state: Arc<QueueState>) -> Self {
        let guard = InflightGuard::new(state.clone());
        ConsumeRequest {
            msgs,
            state,
            _inflight: guard,
        }
    }
}

impl ConsumeMessageConcurrentlyService {
    pub(crate) fn new(
        consumer: Weak<PushConsumerInner>,
        group: String,
        listener: Arc<dyn MessageListenerConcurrently>,
        hooks: Vec<Arc<dyn ConsumeMessageHook>>,
        pool: ThreadPoolExecutor,
        batch_max: usize,
        model: MessageModel,
    ) -> Self {
        ConsumeMessageConcurrentlyService {
            consumer,
            retry_topic: format!("%RETRY%{group}"),
            group,
            listener,
            hooks,
            pool,
            batch_max,
            model,
        }
    }

    pub(crate) fn pool(&self) -> &ThreadPoolExecutor {
        &self.pool
    }

    /// Hands a pulled batch (already in the process queue) to the pool.
    pub(crate) fn submit_consume_request(
        self: &Arc<Self>,
        mut msgs: Vec<MessageExt>,
        state: &Arc<QueueState>,
    ) {
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

    fn run(self: Arc<Self>, req: ConsumeRequest) {
        let ConsumeRequest {
            mut msgs,
            state,
            _inflight,
        } = req;
        if state.pq.is_dropped() {
            return;
        }
        let Some(consumer) = self.consumer.upgrade() else {
            return;
        };
        let mq = state.mq.clone();
        for m in msgs.iter_mut() {
            if m.topic() == self.retry_topic {
                if let Some(real) = m
                    .property(MessageConst::PROPERTY_RETRY_TOPIC)
                    .map(str::to_owned)
                {
                    m.set_topic(real);
                }
            }
        }
        let first = msgs[0].queue_offset();
        let last = msgs[msgs.len() - 1].queue_offset();
        state.task_started(first, last);

        let mut done_offsets: Vec<i64> = Vec::with_capacity(msgs.len());
        let mut consume_again: Vec<MessageExt> = Vec::new();
        // One context and one stats update per request, not per listener call.
        let mut ctx = ConsumeConcurrentlyContext::new(mq.clone());
        let (mut ok_total, mut failed_total, mut rt_total) = (0, 0, std::time::Duration::ZERO);
        for sub in msgs.chunks(self.batch_max) {
            ctx.reset();
            self.before_hooks(&mq, sub);
            let begin = Instant::now();
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
            self.after_hooks(&mq, sub, status);
            if state.pq.is_dropped() {
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
            rt_total += rt;
            done_offsets.extend(sub[..ok].iter().map(MessageExt::queue_offset));
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
                                let mut again = m.clone();
                                again.set_reconsume_times(m.reconsume_times() + 1);
                                consume_again.push(again);
                            }
                        }
                    }
                }
            }
        }
        state.task_finished(first);
        consumer.stats().consumed(
            &mq.topic,
            ok_total,
            failed_total,
            rt_total,
            msgs.len().div_ceil(self.batch_max),
        );
        let offset = state.pq.remove_messages(&done_offsets);
        if offset >= 0 && !state.pq.is_dropped() {
            consumer.offset_store().update_offset(&mq, offset, true);
        }
        if !consume_again.is_empty() {
            let me = self.clone();
            let st = state.clone();
            self.schedule_later(Box::new(move || {
                me.submit(ConsumeRequest::new(consume_again, st))
            }));
        }
    }

    fn before_hooks(&self, mq: &MessageQueue, msgs: &[MessageExt]) {
        if self.hooks.is_empty() {
            return;
        }
        let ctx = ConsumeMessageContext {
            consumer_group: &self.group,
            message_queue: mq,
            msgs,
            status: None,
            success: false,
        };
        for h in &self.hooks {
            if catch_unwind(AssertUnwindSafe(|| h.consume_message_before(&ctx))).is_err() {
                log::warn!("consume hook {} panicked before consuming", h.hook_name());
            }
        }
    }

    fn after_hooks(
        &self,
        mq: &MessageQueue,
        msgs: &[MessageExt],
        status: ConsumeConcurrentlyStatus,
    ) {
        if self.hooks.is_empty() {
            return;
        }
        let ctx = ConsumeMessageContext {
            consumer_group: &self.group,
            message_queue: mq,
            msgs,
            status: Some(status),
            success: status == ConsumeConcurrentlyStatus::ConsumeSuccess,
        };
        for h in &self.hooks {
            if catch_unwind(AssertUnwindSafe(|| h.consume_message_after(&ctx))).is_err() {
                log::warn!("consume hook {} panicked after consuming", h.hook_name());
            }
        }
    }

    /// Consumes one message right now for the broker's CONSUME_MESSAGE_DIRECTLY; returns the
    /// Java result name and the time spent.
    pub(crate) fn consume_directly(
        &self,
        msg: MessageExt,
        mq: MessageQueue,
    ) -> (&'static str, Option<String>, u64) {
        let begin = Instant::now();
        let mut ctx = ConsumeConcurrentlyContext::new(mq);
        let msgs = [msg];
        let r = catch_unwind(AssertUnwindSafe(|| {
            self.listener.consume_message(&msgs, &mut ctx)
        }));
        let spent = begin.elapsed().as_millis() as u64;
        match r {
            Ok(ConsumeConcurrentlyStatus::ConsumeSuccess) => ("CR_SUCCESS", None, spent),
            Ok(ConsumeConcurrentlyStatus::ReconsumeLater) => ("CR_LATER", None, spent),
            Err(p) => (
                "CR_THROW_EXCEPTION",
                Some(crate::executor::panic_message(p.as_ref())),
                spent,
            ),
        }
    }

    /// Stops accepting work and waits (bounded) for running listeners to finish.
    /// Drains the pool within `timeout`; returns the consume threads still running after it.
    pub(crate) fn shutdown(&self, timeout: Duration) -> Vec<String> {
        match self.pool.shutdown(timeout) {
            Ok(()) => Vec::new(),
            Err(e) => {
                log::warn!(
                    "consume pool of {} did not drain in {timeout:?}: {e}",
                    self.group
                );
                e.unfinished_threads()
            }
        }
    }
}

/// Counts a consume request as in flight on its queue for as long as it lives.
struct InflightGuard(Arc<QueueState>);

impl InflightGuard {
    fn new(state: Arc<QueueState>) -> Self {
        state.task_submitted();
        InflightGuard(state)
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.task_done();
    }
}
