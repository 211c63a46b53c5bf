//! Message listeners: what the user's code returns and sees.

use std::sync::Arc;

use crate::common::{MessageExt, MessageQueue};

/// The outcome of a concurrent listener call (Java `ConsumeConcurrentlyStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsumeConcurrentlyStatus {
    /// Every message up to the context's ack index was consumed.
    ConsumeSuccess,
    /// Consume the messages again later: they are sent back to the retry topic.
    ReconsumeLater,
}

/// Per-call context of a concurrent listener (Java `ConsumeConcurrentlyContext`).
#[derive(Debug, Clone)]
pub struct ConsumeConcurrentlyContext {
    message_queue: MessageQueue,
    /// Delay level of the retry: 0 lets the broker choose (3 + reconsume times), -1 sends the
    /// messages straight to the dead-letter queue, a positive value picks that level.
    pub delay_level_when_next_consume: i32,
    /// With `ConsumeSuccess`, messages after this index are treated as failed. Defaults to
    /// "all succeeded".
    pub ack_index: i32,
}

impl ConsumeConcurrentlyContext {
    pub(crate) fn new(message_queue: MessageQueue) -> Self {
        ConsumeConcurrentlyContext {
            message_queue,
            delay_level_when_next_consume: 0,
            ack_index: i32::MAX,
        }
    }

    /// Makes the context fresh for the next listener call of the same queue, so one context
    /// serves a whole consume request without allocating per call.
    pub(crate) fn reset(&mut self) {
        self.delay_level_when_next_consume = 0;
        self.ack_index = i32::MAX;
    }

    /// The queue the messages came from.
    pub fn message_queue(&self) -> &MessageQueue {
        &self.message_queue
    }
}

/// A listener that consumes messages concurrently (Java `MessageListenerConcurrently`).
///
/// Any closure `Fn(&[MessageExt], &mut ConsumeConcurrentlyContext) -> ConsumeConcurrentlyStatus`
/// is a listener. A listener that panics is treated as `ReconsumeLater`.
pub trait MessageListenerConcurrently: Send + Sync + 'static {
    /// Consumes `msgs` (at most `consume_message_batch_max_size` of them).
    fn consume_message(
        &self,
        msgs: &[MessageExt],
        context: &mut ConsumeConcurrentlyContext,
    ) -> ConsumeConcurrentlyStatus;
}

impl<F> MessageListenerConcurrently for F
where
    F: Fn(&[MessageExt], &mut ConsumeConcurrentlyContext) -> ConsumeConcurrentlyStatus
        + Send
        + Sync
        + 'static,
{
    fn consume_message(
        &self,
        msgs: &[MessageExt],
        context: &mut ConsumeConcurrentlyContext,
    ) -> ConsumeConcurrentlyStatus {
        self(msgs, context)
    }
}

/// The outcome of an orderly listener call (Java `ConsumeOrderlyStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsumeOrderlyStatus {
    /// The messages were consumed; the queue moves on.
    Success,
    /// Consume the same messages again, in place, after the context's suspend time. Nothing
    /// later in the queue is consumed before them. Past the maximum reconsume times they go to
    /// the dead-letter queue instead and the queue moves on.
    SuspendCurrentQueueAMoment,
}

/// Java's `suspendCurrentQueueTimeMillis` bounds (`submitConsumeRequestLater` clamps to them).
pub(crate) const SUSPEND_TIME_MIN: std::time::Duration = std::time::Duration::from_millis(10);
pub(crate) const SUSPEND_TIME_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// Per-call context of an orderly listener (Java `ConsumeOrderlyContext`).
#[derive(Debug, Clone)]
pub struct ConsumeOrderlyContext {
    message_queue: MessageQueue,
    auto_commit: bool,
    suspend_time: std::time::Duration,
}

impl ConsumeOrderlyContext {
    pub(crate) fn new(message_queue: MessageQueue, suspend_time: std::time::Duration) -> Self {
        ConsumeOrderlyContext {
            message_queue,
            auto_commit: true,
            suspend_time,
        }
    }

    /// Makes the context fresh for the next listener call of the same queue, so one context
    /// serves a whole consume request without allocating per call.
    pub(crate) fn reset(&mut self, suspend_time: std::time::Duration) {
        self.auto_commit = true;
        self.suspend_time = suspend_time;
    }

    /// The queue the messages came from.
    pub fn message_queue(&self) -> &MessageQueue {
        &self.message_queue
    }

    /// Whether a `Success` commits the queue's offset (default `true`).
    pub fn is_auto_commit(&self) -> bool {
        self.auto_commit
    }

    /// With `false`, a `Success` leaves the messages taken but uncommitted: the offset does not
    /// move past them until a later call of the same queue returns `Success` with auto-commit
    /// on, which commits everything taken so far (Java's `autoCommit`, without the deprecated
    /// `COMMIT`/`ROLLBACK` statuses).
    pub fn set_auto_commit(&mut self, auto_commit: bool) {
        self.auto_commit = auto_commit;
    }

    /// How long the queue waits before a suspended batch is consumed again. Defaults to the
    /// consumer's `suspend_current_queue_time` (1 s).
    pub fn suspend_current_queue_time(&self) -> std::time::Duration {
        self.suspend_time
    }

    /// Sets the wait after `SuspendCurrentQueueAMoment` for this call; clamped to 10 ms..30 s.
    #[doc(alias = "setSuspendCurrentQueueTimeMillis")]
    pub fn set_suspend_current_queue_time(&mut self, time: std::time::Duration) {
        self.suspend_time = time.clamp(SUSPEND_TIME_MIN, SUSPEND_TIME_MAX);
    }
}

/// A listener that consumes each queue's messages one batch at a time, in queue order (Java
/// `MessageListenerOrderly`).
///
/// Any closure `Fn(&[MessageExt], &mut ConsumeOrderlyContext) -> ConsumeOrderlyStatus` is a
/// listener. A listener that panics is treated as `SuspendCurrentQueueAMoment`.
pub trait MessageListenerOrderly: Send + Sync + 'static {
    /// Consumes `msgs` (at most `consume_message_batch_max_size` of them, in offset order).
    fn consume_message(
        &self,
        msgs: &[MessageExt],
        context: &mut ConsumeOrderlyContext,
    ) -> ConsumeOrderlyStatus;
}

impl<F> MessageListenerOrderly for F
where
    F: Fn(&[MessageExt], &mut ConsumeOrderlyContext) -> ConsumeOrderlyStatus
        + Send
        + Sync
        + 'static,
{
    fn consume_message(
        &self,
        msgs: &[MessageExt],
        context: &mut ConsumeOrderlyContext,
    ) -> ConsumeOrderlyStatus {
        self(msgs, context)
    }
}

/// The user's listener, by kind (Java `MessageListener`). The kind decides which consume
/// service runs the consumer.
#[derive(Clone)]
pub(crate) enum MessageListener {
    /// Java `MessageListenerConcurrently`: [`ConsumeMessageConcurrentlyService`](crate::consumer::consume::concurrently::ConsumeMessageConcurrentlyService).
    Concurrently(Arc<dyn MessageListenerConcurrently>),
    /// Java `MessageListenerOrderly`: [`ConsumeMessageOrderlyService`](crate::consumer::consume::orderly::ConsumeMessageOrderlyService).
    Orderly(Arc<dyn MessageListenerOrderly>),
    /// No listener: the lite pull consumer's poll buffer, which the user's `poll` drains
    /// ([`ConsumeMessagePollService`](crate::consumer::consume::poll::ConsumeMessagePollService)).
    Poll(Arc<crate::consumer::lite_pull::LitePullState>),
}

impl MessageListener {
    /// Whether this is an orderly listener (Java `consumeOrderly`).
    pub(crate) fn is_orderly(&self) -> bool {
        matches!(self, MessageListener::Orderly(_))
    }
}

impl std::fmt::Debug for MessageListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MessageListener::Concurrently(_) => f.write_str("MessageListener::Concurrently"),
            MessageListener::Orderly(_) => f.write_str("MessageListener::Orderly"),
            MessageListener::Poll(_) => f.write_str("MessageListener::Poll"),
        }
    }
}

/// A hook run before and after every listener call (Java `ConsumeMessageHook`).
pub trait ConsumeMessageHook: Send + Sync + 'static {
    /// The hook's name, for logs.
    fn hook_name(&self) -> &str;
    /// Runs before the listener.
    fn consume_message_before(&self, context: &ConsumeMessageContext<'_>);
    /// Runs after the listener, with `context.status` set.
    fn consume_message_after(&self, context: &ConsumeMessageContext<'_>);
}

/// What a [`ConsumeMessageHook`] sees (Java `ConsumeMessageContext`).
#[derive(Debug)]
#[non_exhaustive]
pub struct ConsumeMessageContext<'a> {
    /// The consumer group.
    pub consumer_group: &'a str,
    /// The queue.
    pub message_queue: &'a MessageQueue,
    /// The messages of this call.
    pub msgs: &'a [MessageExt],
    /// The outcome, set for `consume_message_after`.
    pub status: Option<ConsumeConcurrentlyStatus>,
    /// `true` when the listener returned success (after hook only).
    pub success: bool,
}
