//! The replying side of request-reply (Java `MessageUtil.createReplyMessage`).

use bytes::Bytes;

use crate::common::{Message, MessageConst, MessageExt};
use crate::error::{ClientErrorCode, Error, Result};

/// Java `MixAll.REPLY_TOPIC_POSTFIX`: a cluster's reply topic is `<cluster>_REPLY_TOPIC`.
const REPLY_TOPIC_POSTFIX: &str = "REPLY_TOPIC";
/// Java `MixAll.REPLY_MESSAGE_FLAG`, the `MSG_TYPE` of a reply.
pub(crate) const REPLY_MESSAGE_FLAG: &str = "reply";

/// The reply to `request`, with `body` (Java `MessageUtil.createReplyMessage`), to be sent with
/// any producer's `DefaultMQProducer::send`: the broker then pushes it to the client that sent
/// the request, whose `DefaultMQProducer::request` returns it.
///
/// `request` is a message a consumer received from a requester's `request`. The reply goes to
/// the reply topic of the cluster that stored the request, `<cluster>_REPLY_TOPIC`, with
/// `MSG_TYPE=reply` and the request's `CORRELATION_ID`, `REPLY_TO_CLIENT` and `TTL`.
///
/// Fails with [`ClientErrorCode::CREATE_REPLY_MESSAGE_EXCEPTION`] naming the missing property
/// when `request` is not a request: no `CLUSTER` (the broker sets it when it stores a message),
/// `CORRELATION_ID` or `REPLY_TO_CLIENT`.
///
/// ```no_run
/// use rocketmq_sync::{create_reply_message, DefaultMQProducer, MessageExt};
///
/// fn answer(replier: &DefaultMQProducer, request: &MessageExt) -> rocketmq_sync::Result<()> {
///     let reply = create_reply_message(request, format!("got {} bytes", request.body().len()))?;
///     replier.send(&reply)?;
///     Ok(())
/// }
/// ```
pub fn create_reply_message(request: &MessageExt, body: impl Into<Bytes>) -> Result<Message> {
    let required = |name: &str| {
        request.property(name).ok_or_else(|| {
            Error::client(
                ClientErrorCode::CREATE_REPLY_MESSAGE_EXCEPTION,
                format!(
                    "create reply message fail, requestMessage error, property[{name}] is null: \
                     the message was not sent by request()"
                ),
            )
        })
    };
    let cluster = required(MessageConst::PROPERTY_CLUSTER)?;
    let correlation_id = required(MessageConst::PROPERTY_CORRELATION_ID)?;
    let reply_to = required(MessageConst::PROPERTY_MESSAGE_REPLY_TO_CLIENT)?;
    let mut reply = Message::new(format!("{cluster}_{REPLY_TOPIC_POSTFIX}"), body);
    reply.put_property(MessageConst::PROPERTY_MESSAGE_TYPE, REPLY_MESSAGE_FLAG);
    reply.put_property(MessageConst::PROPERTY_CORRELATION_ID, correlation_id);
    reply.put_property(MessageConst::PROPERTY_MESSAGE_REPLY_TO_CLIENT, reply_to);
    if let Some(ttl) = request.property(MessageConst::PROPERTY_MESSAGE_TTL) {
        reply.put_property(MessageConst::PROPERTY_MESSAGE_TTL, ttl);
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(props: &[(&str, &str)]) -> MessageExt {
        let mut m = Message::new("RequestTopic", "q");
        for (k, v) in props {
            m.put_property(*k, *v);
        }
        MessageExt::from_message(&m)
    }

    #[test]
    fn a_reply_goes_to_the_cluster_reply_topic_with_the_request_properties() {
        let req = request(&[
            ("CLUSTER", "DefaultCluster"),
            ("CORRELATION_ID", "c-1"),
            ("REPLY_TO_CLIENT", "127.0.0.1@1"),
            ("TTL", "3000"),
        ]);
        let reply = create_reply_message(&req, "answer").unwrap();
        assert_eq!(reply.topic(), "DefaultCluster_REPLY_TOPIC");
        assert_eq!(&reply.body()[..], b"answer");
        let props: Vec<(&str, &str)> = reply.properties().iter().collect();
        assert_eq!(
            props,
            [
                ("WAIT", "true"),
                ("MSG_TYPE", "reply"),
                ("CORRELATION_ID", "c-1"),
                ("REPLY_TO_CLIENT", "127.0.0.1@1"),
                ("TTL", "3000"),
            ]
        );
    }

    #[test]
    fn a_message_that_is_not_a_request_gets_a_clear_error() {
        for (props, missing) in [
            (vec![], "CLUSTER"),
            (
                vec![("CLUSTER", "C"), ("REPLY_TO_CLIENT", "x")],
                "CORRELATION_ID",
            ),
            (
                vec![("CLUSTER", "C"), ("CORRELATION_ID", "c")],
                "REPLY_TO_CLIENT",
            ),
        ] {
            let e = create_reply_message(&request(&props), "b").unwrap_err();
            assert_eq!(
                e.client_error_code(),
                Some(ClientErrorCode::CREATE_REPLY_MESSAGE_EXCEPTION)
            );
            assert!(
                e.to_string().contains(&format!("property[{missing}]")),
                "{e}"
            );
        }
    }
}
