//! Messages that go back to the broker: Java `sendMessageBack`, with its fallback through the
//! retry topic. (The consume-timeout sweep that also uses it is the concurrent consume
//! service's.)

use std::time::Duration;

use crate::client::api::expect_success;
use crate::client::instance::MQClientInstance;
use crate::common::{MessageConst, MessageExt};
use crate::consumer::push_consumer::{shut_down, PushConsumerInner};
use crate::error::Result;
use crate::producer::DefaultMQProducer;
use crate::remoting::protocol::header::ConsumerSendMsgBackRequestHeader;
use crate::remoting::protocol::{RemotingCommand, RequestCode};

const SEND_BACK_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY_GROUP_TOPIC_PREFIX: &str = "%RETRY%";

impl PushConsumerInner {
    pub(crate) fn max_reconsume_times(&self) -> i32 {
        self.cfg
            .max_reconsume_times
            .map_or(16, |n| i32::try_from(n).unwrap_or(i32::MAX))
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
            origin_topic: Some(self.original_topic(msg).to_owned()),
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

    /// The topic `msg` was first sent to: its own, or for a message still named by the group's
    /// retry topic, the `RETRY_TOPIC` property. The consume service resets the topic before the
    /// listener runs (Java `resetRetryAndNamespace`), so this only guards callers that did not.
    fn original_topic<'a>(&self, msg: &'a MessageExt) -> &'a str {
        let topic = msg.topic();
        if topic.starts_with(RETRY_GROUP_TOPIC_PREFIX)
            && topic[RETRY_GROUP_TOPIC_PREFIX.len()..] == self.cfg.group
        {
            if let Some(real) = msg.property(MessageConst::PROPERTY_RETRY_TOPIC) {
                return real;
            }
        }
        topic
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
        m.put_property(MessageConst::PROPERTY_RETRY_TOPIC, self.original_topic(msg));
        m.clear_property(MessageConst::PROPERTY_TRANSACTION_PREPARED);
        // The count comes from the broker: saturate rather than overflow.
        m.put_property(
            MessageConst::PROPERTY_RECONSUME_TIME,
            msg.reconsume_times().saturating_add(1).to_string(),
        );
        m.put_property(
            MessageConst::PROPERTY_MAX_RECONSUME_TIMES,
            self.max_reconsume_times().to_string(),
        );
        m.put_property(
            MessageConst::PROPERTY_DELAY_TIME_LEVEL,
            msg.reconsume_times().saturating_add(3).to_string(),
        );
        instance
            .inner_producer_or_init(DefaultMQProducer::start_inner_producer)?
            .send_message(&m)
    }
}
