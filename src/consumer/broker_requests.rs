//! What the push consumer does for broker-initiated requests (Java `ClientRemotingProcessor`'s
//! consumer half): consume a message directly, running info, reset offset, consumer status.
//! The client instance routes each request to the group's consumer through `MQConsumerInner`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use crate::client::instance::{DirectConsumeOutcome, DirectConsumeReply};
use crate::common::{MessageDecoder, MessageQueue};
use crate::consumer::offset_store::ReadOffsetType;
use crate::consumer::process_queue::ProcessQueue;
use crate::consumer::push_consumer::PushConsumerInner;
use crate::remoting::protocol::body::ConsumerRunningInfo;
use crate::remoting::protocol::ResponseCode;

impl PushConsumerInner {
    /// `CONSUME_MESSAGE_DIRECTLY`: decodes the stored message (its compressed body bounded as
    /// in a pull) and has the consume service run the listener on it, outside the queues, on
    /// the consume pool; `reply` gets the outcome.
    pub(crate) fn on_consume_message_directly(
        &self,
        stored: &Bytes,
        broker_name: &str,
        reply: DirectConsumeReply,
    ) {
        let mut pos = 0;
        let decoded = MessageDecoder::decode_at_with_limit(
            stored,
            &mut pos,
            true,
            true,
            self.cfg.max_decompressed_body_size,
        );
        let msg = match decoded {
            Ok(m) => m,
            Err(e) => {
                return reply(DirectConsumeOutcome::Refused(
                    ResponseCode::SYSTEM_ERROR,
                    e.to_string(),
                ))
            }
        };
        match self.consume_service.read().clone() {
            Some(cs) => cs.consume_message_directly(msg, broker_name, reply),
            None => reply(DirectConsumeOutcome::Consumed {
                result: "CR_THROW_EXCEPTION",
                remark: Some("the consumer is not started".to_owned()),
                spent_ms: 0,
            }),
        }
    }

    /// `GET_CONSUMER_RUNNING_INFO`: the queues, stats and subscriptions, and the consumer's
    /// own properties (the instance adds the name servers, consume type and client version).
    pub(crate) fn on_get_consumer_running_info(&self) -> ConsumerRunningInfo {
        let store = self.offset_store.read().clone();
        let mq_table = self
            .process_queue_table
            .read()
            .values()
            .map(|s| {
                let commit = store.as_ref().map_or(-1, |st| {
                    st.read_offset(&s.mq, ReadOffsetType::ReadFromMemory)
                });
                let mut info = s.info();
                info.commit_offset = commit;
                (s.mq.clone(), info)
            })
            .collect();
        let thread_core = self
            .consume_service
            .read()
            .as_ref()
            .map_or(self.cfg.consume_thread_min, |cs| cs.core_pool_size());
        let properties = BTreeMap::from([
            (
                ConsumerRunningInfo::PROP_CONSUME_ORDERLY.to_owned(),
                self.listener.is_orderly().to_string(),
            ),
            (
                ConsumerRunningInfo::PROP_THREADPOOL_CORE_SIZE.to_owned(),
                thread_core.to_string(),
            ),
            (
                ConsumerRunningInfo::PROP_CONSUMER_START_TIMESTAMP.to_owned(),
                self.start_time.to_string(),
            ),
            (
                ConsumerRunningInfo::PROP_CONSUME_TYPE.to_owned(),
                self.consume_type().to_owned(),
            ),
        ]);
        ConsumerRunningInfo {
            properties,
            mq_table,
            status_table: self.stats.snapshot(),
            subscription_set: self
                .subscription_inner
                .read()
                .values()
                .map(|s| (**s).clone())
                .collect(),
        }
    }

    /// `RESET_CONSUMER_CLIENT_OFFSET`: drop the topic's queues, store the new offsets, and let
    /// the rebalance rebuild the queues from them.
    ///
    /// A queue is dropped (which waits for a commit in progress) and leaves the table before its
    /// offset is written, so no late consume task, pull callback or offset fix-up of the old
    /// queue raises the offset again.
    pub(crate) fn on_reset_offset(&self, topic: &str, offsets: &HashMap<MessageQueue, i64>) {
        self.paused.store(true, Ordering::Release);
        let queues: Vec<Arc<ProcessQueue>> = self
            .process_queue_table
            .read()
            .values()
            .filter(|pq| pq.mq.topic == topic)
            .cloned()
            .collect();
        for pq in &queues {
            pq.set_dropped();
            pq.clear();
            self.remove_from_table(pq);
        }
        let store = self.offset_store();
        for (mq, offset) in offsets {
            store.update_offset(mq, *offset, false);
            store.persist(mq);
        }
        self.paused.store(false, Ordering::Release);
        if let Some(i) = self.instance() {
            i.rebalance_immediately();
        }
    }

    /// `GET_CONSUMER_STATUS_FROM_CLIENT`: the offsets of one topic's queues.
    pub(crate) fn on_get_consumer_status(&self, topic: &str) -> HashMap<MessageQueue, i64> {
        self.offset_store
            .read()
            .as_ref()
            .map(|s| s.clone_offset_table(topic))
            .unwrap_or_default()
    }
}
