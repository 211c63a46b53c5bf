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

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::client::instance::MQClientInstance;
use crate::common::{MessageConst, MessageExt, MessageQueue};
use crate::consumer::builder::ConsumerConfig;
use crate::consumer::listener::{
    ConsumeConcurrentlyStatus, ConsumeMessageContext, ConsumeMessageHook, MessageListener,
};
use crate::consumer::process_queue::ProcessQueue;
use crate::consumer::push_consumer::PushConsumerInner;
use crate::error::{Error, Result};
use crate::executor::{ShutdownError, ThreadPoolExecutor};

use self::concurrently::ConsumeMessageConcurrentlyService;
use self::orderly::ConsumeMessageOrderlyService;

/// The answer to `CONSUME_MESSAGE_DIRECTLY`: Java's `CMResult` name, the panic message if the
/// listener panicked, and the time spent in milliseconds.
pub(crate) type DirectResult = (&'static str, Option<String>, u64);

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

    /// Java `consumeMessageDirectly`: runs the listener on `msg` now, outside any queue.
    fn consume_message_directly(&self, msg: MessageExt, broker_name: &str) -> DirectResult;

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
/// `consume_thread_max` threads). Not started.
pub(crate) fn create(
    consumer: Weak<PushConsumerInner>,
    cfg: &ConsumerConfig,
    listener: &MessageListener,
    hooks: Vec<Arc<dyn ConsumeMessageHook>>,
) -> Result<Arc<dyn ConsumeMessageService>> {
    let pool = ThreadPoolExecutor::builder()
        .name(format!("ConsumeMessageThread_{}", cfg.group))
        .core_threads(cfg.consume_thread_min)
        .max_threads(cfg.consume_thread_max)
        .keep_alive(Duration::from_secs(60))
        .thread_name(|n| format!("rmq-cons-{n}"))
        .build()
        .map_err(|e| Error::config(e.to_string()))?;
    Ok(match listener {
        MessageListener::Concurrently(l) => {
            ConsumeMessageConcurrentlyService::new(consumer, cfg, l.clone(), hooks, pool)
        }
        MessageListener::Orderly(l) => {
            ConsumeMessageOrderlyService::new(consumer, cfg, l.clone(), hooks, pool)
        }
    })
}

/// Java `resetRetryAndNamespace`: a message pulled from the group's retry topic gets its
/// original topic back (from `RETRY_TOPIC`) before the listener sees it.
pub(crate) fn reset_retry_topic(retry_topic: &str, msgs: &mut [MessageExt]) {
    for m in msgs.iter_mut() {
        if m.topic() == retry_topic {
            if let Some(real) = m
                .property(MessageConst::PROPERTY_RETRY_TOPIC)
                .map(str::to_owned)
            {
                m.set_topic(real);
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
pub(crate) fn consume_directly(call: impl FnOnce() -> bool) -> DirectResult {
    let begin = Instant::now();
    let r = catch_unwind(AssertUnwindSafe(call));
    let spent = begin.elapsed().as_millis() as u64;
    match r {
        Ok(true) => ("CR_SUCCESS", None, spent),
        Ok(false) => ("CR_LATER", None, spent),
        Err(p) => (
            "CR_THROW_EXCEPTION",
            Some(crate::executor::panic_message(p.as_ref())),
            spent,
        ),
    }
}
