//! Request-reply (Java `DefaultMQProducer.request` and `MessageUtil.createReplyMessage`)
//! against a real name server and broker: a push consumer of the request topic answers every
//! request with `create_reply_message` and its own producer; the broker pushes each reply to
//! the requesting client.

mod support;

use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use rocketmq_sync::{
    create_reply_message, ClientErrorCode, DefaultMQProducer, DefaultMQPushConsumer,
};
use rocketmq_sync::{ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, Message, MessageExt};
use support::broker::{Cluster, ClusterOptions};
use support::client::*;
use support::consume::{consumer_builder, topic_with_queues};

/// Long enough for the replier to start, rebalance and consume the first request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A consumer of `topic` that answers every request with `"re: <body>"`, sent by its own
/// producer. Reports the outcome of each reply's send on the returned channel.
fn replier(
    cluster: &Cluster,
    topic: &str,
) -> (
    DefaultMQPushConsumer,
    DefaultMQProducer,
    crossbeam_channel::Receiver<Result<(), String>>,
) {
    let reply_producer = producer(&cluster.namesrv_addr, &unique("reply_pg"));
    let p = reply_producer.clone();
    let (tx, rx) = unbounded();
    let consumer = consumer_builder(cluster, &unique("reply_cg"), topic)
        .register_message_listener_concurrently(
            move |msgs: &[MessageExt], _: &mut ConsumeConcurrentlyContext| {
                for m in msgs {
                    let body = format!("re: {}", String::from_utf8_lossy(m.body()));
                    let sent = create_reply_message(m, body)
                        .and_then(|reply| p.send(&reply))
                        .map(|_| ())
                        .map_err(|e| e.to_string());
                    let _ = tx.send(sent);
                }
                ConsumeConcurrentlyStatus::ConsumeSuccess
            },
        )
        .build()
        .expect("valid consumer");
    consumer.start().expect("replier starts");
    (consumer, reply_producer, rx)
}

#[test]
fn sync_and_async_requests_get_their_replies() {
    let cluster = Cluster::shared();
    let topic = topic_with_queues(cluster, 2);
    let (consumer, reply_producer, replies) = replier(cluster, &topic);
    let requester = producer(&cluster.namesrv_addr, &unique("request_pg"));

    let reply = requester
        .request(&Message::new(topic.clone(), "sync"), REQUEST_TIMEOUT)
        .unwrap_or_else(|e| {
            panic!(
                "no reply ({e}); the replier's send: {:?}",
                replies.try_recv()
            )
        });
    assert_eq!(&reply.body()[..], b"re: sync");
    assert_eq!(
        reply.topic(),
        format!("{}_REPLY_TOPIC", "DefaultCluster"),
        "the reply topic of the cluster"
    );
    assert_eq!(replies.recv_timeout(TIMEOUT).unwrap(), Ok(()));

    let (done_tx, done) = unbounded();
    requester
        .request_async(
            &Message::new(topic.clone(), "async"),
            REQUEST_TIMEOUT,
            move |r: rocketmq_sync::Result<MessageExt>| done_tx.send(r).unwrap(),
        )
        .expect("the request is sent");
    let reply = done
        .recv_timeout(REQUEST_TIMEOUT + TIMEOUT)
        .expect("the callback runs")
        .expect("the reply");
    assert_eq!(&reply.body()[..], b"re: async");
    assert!(done.try_recv().is_err(), "the callback runs once");

    consumer.shutdown(TIMEOUT).unwrap();
    reply_producer.shutdown(TIMEOUT).unwrap();
    requester.shutdown(TIMEOUT).unwrap();
}

#[test]
fn a_request_nobody_answers_times_out_and_a_reply_after_that_is_dropped() {
    let cluster = Cluster::shared();
    let topic = topic_with_queues(cluster, 1);
    let requester = producer(&cluster.namesrv_addr, &unique("request_pg"));
    let begin = Instant::now();
    let e = requester
        .request(
            &Message::new(topic.clone(), "unanswered"),
            Duration::from_millis(500),
        )
        .expect_err("nobody replies");
    assert!(begin.elapsed() >= Duration::from_millis(500));
    assert_eq!(
        e.client_error_code(),
        Some(ClientErrorCode::REQUEST_TIMEOUT_EXCEPTION),
        "{e}"
    );
    assert!(e.to_string().contains("wait reply message timeout"), "{e}");

    // A replier starting now answers the stored request: the broker pushes the reply to the
    // requester, which no longer waits for it and drops it. The requester keeps working.
    let (consumer, reply_producer, replies) = replier(cluster, &topic);
    assert_eq!(
        replies
            .recv_timeout(REQUEST_TIMEOUT)
            .expect("the late reply is sent"),
        Ok(())
    );
    let reply = requester
        .request(&Message::new(topic.clone(), "answered"), REQUEST_TIMEOUT)
        .expect("a later request gets its reply");
    assert_eq!(&reply.body()[..], b"re: answered");

    consumer.shutdown(TIMEOUT).unwrap();
    reply_producer.shutdown(TIMEOUT).unwrap();
    requester.shutdown(TIMEOUT).unwrap();
}

#[test]
fn a_plain_message_cannot_be_replied_to() {
    let cluster = Cluster::shared();
    let topic = topic_with_queues(cluster, 1);
    let p = producer(&cluster.namesrv_addr, &unique("pg"));
    p.send(&Message::new(topic.clone(), "plain")).unwrap();
    let (tx, rx) = unbounded();
    let consumer = consumer_builder(cluster, &unique("cg"), &topic)
        .register_message_listener_concurrently(
            move |msgs: &[MessageExt], _: &mut ConsumeConcurrentlyContext| {
                for m in msgs {
                    let _ = tx.send(create_reply_message(m, "x").map(|_| ()));
                }
                ConsumeConcurrentlyStatus::ConsumeSuccess
            },
        )
        .build()
        .unwrap();
    consumer.start().unwrap();
    let e = rx
        .recv_timeout(REQUEST_TIMEOUT)
        .expect("the message is consumed")
        .expect_err("not a request");
    assert_eq!(
        e.client_error_code(),
        Some(ClientErrorCode::CREATE_REPLY_MESSAGE_EXCEPTION)
    );
    assert!(e.to_string().contains("CORRELATION_ID"), "{e}");
    consumer.shutdown(TIMEOUT).unwrap();
    p.shutdown(TIMEOUT).unwrap();
}

/// rocketmq-rust 1.0.0 creates `<broker name>_REPLY_TOPIC` at startup where a Java broker
/// creates `<cluster>_REPLY_TOPIC`, the topic Java's (and this crate's) `createReplyMessage`
/// sends to. Without topic auto-creation the reply cannot be sent until that topic exists: the
/// replier's send names it, and the requester times out. Once created, replies flow.
#[test]
fn without_auto_create_the_cluster_reply_topic_must_exist() {
    let cluster = Cluster::start(ClusterOptions::default().no_auto_create());
    let topic = topic_with_queues(&cluster, 1);
    let (consumer, reply_producer, replies) = replier(&cluster, &topic);
    let requester = producer(&cluster.namesrv_addr, &unique("request_pg"));

    let e = requester
        .request(
            &Message::new(topic.clone(), "before"),
            Duration::from_secs(3),
        )
        .expect_err("the reply cannot be sent");
    assert_eq!(
        e.client_error_code(),
        Some(ClientErrorCode::REQUEST_TIMEOUT_EXCEPTION),
        "{e}"
    );
    let refused = replies
        .recv_timeout(REQUEST_TIMEOUT)
        .expect("the replier tried")
        .expect_err("no route to the reply topic");
    assert!(refused.contains("DefaultCluster_REPLY_TOPIC"), "{refused}");

    create_topic_on_all_brokers(&raw_client(), &cluster, "DefaultCluster_REPLY_TOPIC", 1);
    let reply = requester
        .request(&Message::new(topic.clone(), "after"), REQUEST_TIMEOUT)
        .expect("the reply topic exists now");
    assert_eq!(&reply.body()[..], b"re: after");

    consumer.shutdown(TIMEOUT).unwrap();
    reply_producer.shutdown(TIMEOUT).unwrap();
    requester.shutdown(TIMEOUT).unwrap();
}
