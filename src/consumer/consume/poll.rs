//! The lite pull consumer's side of [`ConsumeMessageService`]: no pool and no listener. A
//! pulled batch goes into the consumer's poll buffer, where `poll` takes it on the user's
//! thread (Java `DefaultLitePullConsumerImpl`'s `consumeRequestCache`).

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::client::instance::{DirectConsumeOutcome, DirectConsumeReply, MQClientInstance};
use crate::common::MessageExt;
use crate::consumer::consume::ConsumeMessageService;
use crate::consumer::lite_pull::LitePullState;
use crate::consumer::process_queue::ProcessQueue;
use crate::consumer::push_consumer::PushConsumerInner;
use crate::error::Result;
use crate::executor::ShutdownError;
use crate::remoting::protocol::ResponseCode;

/// Hands pulled batches to the poll buffer of a lite pull consumer.
#[derive(Debug)]
pub(crate) struct ConsumeMessagePollService {
    consumer: Weak<PushConsumerInner>,
    state: Arc<LitePullState>,
}

impl ConsumeMessagePollService {
    pub(crate) fn new(consumer: Weak<PushConsumerInner>, state: Arc<LitePullState>) -> Self {
        ConsumeMessagePollService { consumer, state }
    }
}

impl ConsumeMessageService for ConsumeMessagePollService {
    fn start(&self, _instance: &MQClientInstance) -> Result<()> {
        self.state.open();
        Ok(())
    }

    /// Wakes every `poll` (they return at once from now on) and, with auto-commit, moves the
    /// offsets of the messages polled so far into the offset store, which shutdown persists
    /// next. Nothing runs on a pool, so there is nothing to wait for.
    fn shutdown(&self, _timeout: Duration) -> std::result::Result<(), ShutdownError> {
        self.state.close();
        if let Some(consumer) = self.consumer.upgrade() {
            if self.state.auto_commit() {
                self.state.commit_polled(&consumer);
            }
        }
        Ok(())
    }

    fn submit_consume_request(&self, msgs: Vec<MessageExt>, state: &Arc<ProcessQueue>) {
        self.state.push(state.clone(), msgs);
    }

    /// A lite pull consumer has no listener to run (Java's fails the same request with a cast
    /// error): refused, with the reason.
    fn consume_message_directly(
        &self,
        _msg: MessageExt,
        _broker_name: &str,
        reply: DirectConsumeReply,
    ) {
        let group = self
            .consumer
            .upgrade()
            .map(|c| c.cfg.group.clone())
            .unwrap_or_default();
        reply(DirectConsumeOutcome::Refused(
            ResponseCode::SYSTEM_ERROR,
            format!(
                "the consumer of group {group} is a lite pull consumer: it has no listener to consume a message directly"
            ),
        ));
    }

    /// Polled messages are the user's from the moment `poll` returns them; a queue being
    /// released has nothing running.
    fn wait_queue_idle(&self, _state: &ProcessQueue, _deadline: std::time::Instant) -> bool {
        true
    }

    fn pool_size(&self) -> usize {
        0
    }

    fn core_pool_size(&self) -> usize {
        0
    }
}
