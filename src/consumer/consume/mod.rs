//! Consume services (Java `ConsumeMessageService`): they run the user's listener on the
//! consumer's pool `rmq-cons-N`.
//!
//! The rest of the consumer sees only [`ConsumeMessageService`]:
//! - the pull callback hands every pulled batch to
//!   [`submit_consume_request`](ConsumeMessageService::submit_consume_request);
//! - the rebalance waits on [`wait_queue_idle`](ConsumeMessageService::wait_queue_idle) before it
//!   releases a queue;
//! - the broker's `CONSUME_MESSAGE_DIRECTLY` goes to
//!   [`consume_message_directly`](ConsumeMessageService::consume_message_directly);
//! - start, shutdown and the pool size.
//!
//! Which service runs is decided once, by the kind of [`MessageListener`] (see [`create`]).

pub(crate) mod concurrently;
pub(crate) mod orderly;
pub(crate) mod poll;

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::client::instance::{DirectConsumeOutcome, DirectConsumeReply, MQClientInstance};
use crate::common::{MessageConst, MessageExt, MessageQueue};
use crate::consumer::builder::ConsumerConfig;
use crate::consumer::listener::{
    ConsumeConcurrentlyStatus, ConsumeMessageContext, ConsumeMessageHook, MessageListener,
};
use crate::consumer::process_queue::ProcessQueue;
use crate::consumer::push_consumer::PushConsumerInner;
use crate::error::{Error, Result};
use crate::executor::{ShutdownError, ThreadPoolExecutor};
use crate::remoting::protocol::ResponseCode;

use self::concurrently::ConsumeMessageConcurrentlyService;
use self::orderly::ConsumeMessageOrderlyService;
use self::poll::ConsumeMessagePollService;

/// At most this many `CONSUME_MESSAGE_DIRECTLY` requests of one consumer wait for or run on its
/// consume pool at once; more are answered `SYSTEM_BUSY` at once, as Java answers a request
/// its processor's executor has no room for. An admin asks for one message at a time; the bound
/// keeps a flood of them (each holding a decoded message) from filling the pool's queue.
pub(crate) const MAX_DIRECT_CONSUMES: usize = 8;

/// What the consumer asks of a consume service (Java `ConsumeMessageService`).
///
/// An implementation owns its pool and whatever periodic work it needs (the concurrent
/// service's consume-timeout sweep); it reaches the consumer through a `Weak` so that it never
/// keeps a dropped consumer alive.
pub(crate) trait ConsumeMessageService: Send + Sync + fmt::Debug {
    /// Starts the service's periodic work on the client instance's scheduler.
    fn start(&self, instance: &MQClientInstance) -> Result<()>;

    /// Stops accepting work and waits, up to `timeout`, for running listener calls to end.
    /// Messages not consumed stay in their `ProcessQueue`, so the committed offset never passes
    /// them.
    fn shutdown(&self, timeout: Duration) -> std::result::Result<(), ShutdownError>;

    /// Java `submitConsumeRequest`: `msgs`, a pulled batch of `state`'s queue in offset order,
    /// were just put into it. One call per pulled batch: the service decides how to split it.
    /// (Java's `dispatchToConsume` flag serves only orderly consumption; the orderly service
    /// asks the `ProcessQueue` itself, [`ProcessQueue::try_dispatch`].)
    fn submit_consume_request(&self, msgs: Vec<MessageExt>, state: &Arc<ProcessQueue>);

    /// Java `consumeMessageDirectly`: runs the listener on `msg`, outside any queue, on the
    /// consume pool (see [`DirectConsumes`]), and hands the outcome to `reply`.
    fn consume_message_directly(
        &self,
        msg: MessageExt,
        broker_name: &str,
        reply: DirectConsumeReply,
    );

    /// Waits, until `deadline`, until no listener call of `state`'s queue is running or queued
    /// (the rebalance calls it before it releases a removed queue). Returns `true` if idle.
    /// Both services count their requests of a queue on its `ProcessQueue`.
    fn wait_queue_idle(&self, state: &ProcessQueue, deadline: Instant) -> bool {
        state.wait_idle(deadline);
        state.inflight() == 0
    }

    /// Threads of the pool right now.
    fn pool_size(&self) -> usize;

    /// The pool's core size (Java `getCorePoolSize`).
    fn core_pool_size(&self) -> usize;
}

/// Builds the service for `listener`, with its pool (`rmq-cons-N`, `consume_thread_min` to
/// `consume_thread_max` threads; none for the lite pull consumer, whose user polls). Not
/// started.
pub(crate) fn create(
    consumer: Weak<PushConsumerInner>,
    cfg: &ConsumerConfig,
    listener: &MessageListener,
    hooks: Vec<Arc<dyn ConsumeMessageHook>>,
) -> Result<Arc<dyn ConsumeMessageService>> {
    let pool = || {
        ThreadPoolExecutor::builder()
            .name(format!("ConsumeMessageThread_{}", cfg.group))
            .core_threads(cfg.consume_thread_min)
            .max_threads(cfg.consume_thread_max)
            .keep_alive(Duration::from_secs(60))
            .thread_name(|n| format!("rmq-cons-{n}"))
            .build()
            .map_err(|e| Error::config(e.to_string()))
    };
    Ok(match listener {
        MessageListener::Concurrently(l) => {
            ConsumeMessageConcurrentlyService::new(consumer, cfg, l.clone(), hooks, pool()?)
        }
        MessageListener::Orderly(l) => {
            ConsumeMessageOrderlyService::new(consumer, cfg, l.clone(), hooks, pool()?)
        }
        MessageListener::Poll(state) => {
            Arc::new(ConsumeMessagePollService::new(consumer, state.clone()))
        }
    })
}

/// Java `resetRetryAndNamespace`: a message pulled from the group's retry topic gets its
/// original topic back (from `RETRY_TOPIC`), and in a namespace every topic loses its
/// `namespace%` prefix, before the listener sees it.
pub(crate) fn reset_retry_topic(
    retry_topic: &str,
    namespace: Option<&str>,
    msgs: &mut [MessageExt],
) {
    for m in msgs.iter_mut() {
        if m.topic() == retry_topic {
            if let Some(real) = m
                .property(MessageConst::PROPERTY_RETRY_TOPIC)
                .map(str::to_owned)
            {
                m.set_topic(real);
            }
        }
        if namespace.is_some() {
            let bare = crate::common::namespace::unwrap(namespace, m.topic());
            if bare.len() != m.topic().len() {
                let bare = bare.into_owned();
                m.set_topic(bare);
            }
        }
    }
}

/// Runs the consume hooks around one listener call: before it when `outcome` is `None`, after
/// it with the call's outcome otherwise. A panicking hook is logged and skipped.
pub(crate) fn run_hooks(
    hooks: &[Arc<dyn ConsumeMessageHook>],
    group: &str,
    mq: &MessageQueue,
    msgs: &[MessageExt],
    outcome: Option<ConsumeConcurrentlyStatus>,
) {
    if hooks.is_empty() {
        return;
    }
    let ctx = ConsumeMessageContext {
        consumer_group: group,
        message_queue: mq,
        msgs,
        status: outcome,
        success: outcome == Some(ConsumeConcurrentlyStatus::ConsumeSuccess),
    };
    for h in hooks {
        let (result, when) = match outcome {
            None => (
                catch_unwind(AssertUnwindSafe(|| h.consume_message_before(&ctx))),
                "before",
            ),
            Some(_) => (
                catch_unwind(AssertUnwindSafe(|| h.consume_message_after(&ctx))),
                "after",
            ),
        };
        if result.is_err() {
            log::warn!("consume hook {} panicked {when} consuming", h.hook_name());
        }
    }
}

/// Java `consumeMessageDirectly`'s answer for one listener call: `call` returns whether the
/// listener succeeded; a panic is reported with its message.
pub(crate) fn consume_directly(call: impl FnOnce() -> bool) -> DirectConsumeOutcome {
    let begin = Instant::now();
    let r = catch_unwind(AssertUnwindSafe(call));
    let spent_ms = begin.elapsed().as_millis() as u64;
    let (result, remark) = match r {
        Ok(true) => ("CR_SUCCESS", None),
        Ok(false) => ("CR_LATER", None),
        Err(p) => (
            "CR_THROW_EXCEPTION",
            Some(crate::executor::panic_message(p.as_ref())),
        ),
    };
    DirectConsumeOutcome::Consumed {
        result,
        remark,
        spent_ms,
    }
}

/// The `CONSUME_MESSAGE_DIRECTLY` requests of one consume service: they run on its pool, at most
/// [`MAX_DIRECT_CONSUMES`] at once.
///
/// Java runs the listener on the remoting processor's thread and answers when it returns. Here
/// the processor thread is the shared callback pool, which also runs pull callbacks and every
/// other broker request, so a slow listener there would stall them all. The listener runs on the
/// consume pool instead, like any other consumption, and the answer is sent when it returns.
#[derive(Debug, Default)]
pub(crate) struct DirectConsumes {
    in_flight: Arc<AtomicUsize>,
}

impl DirectConsumes {
    /// Runs `call` (the listener on one message) on `pool` and hands its outcome to `reply`.
    /// Refused at once, without running the listener, when [`MAX_DIRECT_CONSUMES`] are already
    /// in flight (`SYSTEM_BUSY`) or the pool is shut down (`SYSTEM_ERROR`).
    pub(crate) fn submit(
        &self,
        pool: &ThreadPoolExecutor,
        group: &str,
        reply: DirectConsumeReply,
        call: impl FnOnce() -> DirectConsumeOutcome + Send + 'static,
    ) {
        let taken = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_DIRECT_CONSUMES).then_some(n + 1)
            });
        if taken.is_err() {
            return reply(DirectConsumeOutcome::Refused(
                ResponseCode::SYSTEM_BUSY,
                format!(
                    "[OVERLOAD] consumer group {group} already has {MAX_DIRECT_CONSUMES} messages \
                     to consume directly; try again later"
                ),
            ));
        }
        let slot = Arc::new(Mutex::new(Some(reply)));
        let task_slot = slot.clone();
        // Counted until the answer is handed over, however the task ends (a rejected task is
        // dropped without running).
        let done = DirectDone(self.in_flight.clone());
        let task = move || {
            let _done = done;
            let outcome = call();
            if let Some(reply) = task_slot.lock().take() {
                reply(outcome);
            }
        };
        if pool.execute(task).is_err() {
            // The rejected task was dropped, and its place with it; its reply is still here.
            if let Some(reply) = slot.lock().take() {
                reply(DirectConsumeOutcome::Refused(
                    ResponseCode::SYSTEM_ERROR,
                    format!("the consumer of group {group} is shutting down"),
                ));
            }
        }
    }
}

/// Releases one [`DirectConsumes`] place when dropped.
struct DirectDone(Arc<AtomicUsize>);

impl Drop for DirectDone {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
