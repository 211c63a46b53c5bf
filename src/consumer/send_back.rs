//! Messages that go back to the broker: Java `sendMessageBack` (with its fallback through the
//! retry topic) and the consume-timeout sweep (`cleanExpireMsg`).

use std::sync::Arc;
use std::time::Duration;

use crate::client::api::expect_success;
use crate::client::instance::MQClientInstance;
use crate::common::util::now_millis;
use crate::common::{MessageConst, MessageExt};
use crate::consumer::push_consumer::{shut_down, PushConsumerInner, QueueState};
use crate::error::Result;
use crate::remoting::protocol::header::ConsumerSendMsgBackRequestHeader;
use crate::remoting::protocol::{RemotingCommand, RequestCode};

const SEND_BACK_TIMEOUT: Duration = Duration::from_secs(5);

impl PushConsumerInner {
    /// Java `cleanExpireMsg`: send back messages consumed for longer than the consume timeout.
    pub(crate) fn clean_expired_messages(&self) {
        let timeout = self.cfg.consume_timeout.as_millis() as i64;
        let states: Vec<Arc<QueueState>> =
            self.process_queue_table.read().values().cloned().collect();
        for st in states {
            for _ in 0..16 {
                let Some(first) = st.pq.first_offset() else {
                    break;
                };
                let Some(started) = st.consume_started(first) else {
                    break;
                };
                if now_millis() - started <= timeout {
                    break;
                }
                let Some(msg) = st.pq.first_message() else {
                    break;
                };
                log::warn!(
                    "send expired msg back. topic={}, msgId={}, storeHost={}, queueId={}, queueOffset={}",
                    msg.topic(),
                    msg.msg_id(),
                    msg.store_host(),
                    msg.queue_id(),
                    msg.queue_offset()
                );
                if let Err(e) = self.send_message_back(&msg, 3, &st.mq.broker_name) {
                    log::error!("send expired msg back failed: {e}");
                    break;
                }
                if st.pq.first_offset() == Some(first) {
                    st.pq.remove_messages([first]);
                }
            }
        }
    }

    pub(crate) fn max_reconsume_times(&self) -> i32 {
        if self.cfg.max_reconsume_times == -1 {
            16
        } else {
            self.cfg.max_reconsume_times
        }
    }

    /// Java `sendMessageBack`: CONSUMER_SEND_MSG_BACK to the broker, falling back to a plain
    /// send to the retry topic.
    pub(crate) fn send_message_back(
        &self,
        msg: &MessageExt,
        delay_level: i32,
        broker_name: &str,
    ) -> Result<()> {
        let instance = self.instance().ok_or_else(shut_down)?;
        let addr = instance
            .find_broker_address_in_publish(broker_name)
            .unwrap_or_else(|| msg.store_host().to_string());
        let header = ConsumerSendMsgBackRequestHeader {
            offset: msg.commit_log_offset(),
            group: self.cfg.group.clone(),
            delay_level,
            origin_msg_id: Some(msg.msg_id().into_owned()),
            origin_topic: Some(msg.topic().to_owned()),
            unit_mode: false,
            max_reconsume_times: Some(self.max_reconsume_times()),
            bname: Some(broker_name.to_owned()),
        };
        let req = instance.api().request(RemotingCommand::request_with_header(
            RequestCode::CONSUMER_SEND_MSG_BACK,
            &header,
        ));
        let direct = instance
            .remoting()
            .invoke_sync(&addr, req, SEND_BACK_TIMEOUT)
            .and_then(|r| expect_success(r, &addr));
        match direct {
            Ok(_) => Ok(()),
            Err(e) => {
                log::warn!(
                    "sendMessageBack of {} to {addr} failed ({e}); sending it to the retry topic instead",
                    msg.msg_id()
                );
                self.send_back_via_retry_topic(&instance, msg)
            }
        }
    }

    pub(crate) fn send_back_via_retry_topic(
        &self,
        instance: &MQClientInstance,
        msg: &MessageExt,
    ) -> Result<()> {
        let mut m = crate::common::Message::new(self.retry_topic(), msg.body().clone());
        for (k, v) in msg.properties().iter() {
            m.put_property(k, v);
        }
        let origin = msg
            .property(MessageConst::PROPERTY_ORIGIN_MESSAGE_ID)
            .map(str::to_owned)
            .unwrap_or_else(|| msg.msg_id().into_owned());
        m.put_property(MessageConst::PROPERTY_ORIGIN_MESSAGE_ID, origin);
        m.set_flag(msg.flag());
        m.put_property(MessageConst::PROPERTY_RETRY_TOPIC, msg.topic());
        m.clear_property(MessageConst::PROPERTY_TRANSACTION_PREPARED);
        m.put_property(
            MessageConst::PROPERTY_RECONSUME_TIME,
            (msg.reconsume_times() + 1).to_string(),
        );
        m.put_property(
            MessageConst::PROPERTY_MAX_RECONSUME_TIMES,
            self.max_reconsume_times().to_string(),
        );
        m.put_property(
            MessageConst::PROPERTY_DELAY_TIME_LEVEL,
            (3 + msg.reconsume_times()).to_string(),
        );
        instance.inner_producer()?.send(&m).map(|_| ())
    }
}
