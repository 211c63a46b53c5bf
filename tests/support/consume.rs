//! Push-consumer helpers shared by the consumer tests: a recording listener, a builder with the
//! usual settings, collecting with a deadline, windowed async producing and topic creation.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rocketmq_sync::DefaultMQProducer;
use rocketmq_sync::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, ConsumeFromWhere, DefaultMQPushConsumer,
    DefaultMQPushConsumerBuilder,
};
use rocketmq_sync::{Message, MessageExt, MessageQueue};

use super::broker::Cluster;
use super::client::{create_topic_on_all_brokers, raw_client, unique};

/// What a listener saw of one delivery.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub body: String,
    pub queue: MessageQueue,
    pub tags: Option<String>,
    /// When the listener ran.
    pub at: Instant,
}

/// A listener that reports every message it is given on `tx` and succeeds.
pub fn deliveries(
    tx: Sender<Delivery>,
) -> impl Fn(&[MessageExt], &mut ConsumeConcurrentlyContext) -> ConsumeConcurrentlyStatus
       + Send
       + Sync
       + 'static {
    move |msgs: &[MessageExt], ctx: &mut ConsumeConcurrentlyContext| {
        let at = Instant::now();
        for m in msgs {
            let _ = tx.send(Delivery {
                body: String::from_utf8_lossy(m.body()).into_owned(),
                queue: ctx.message_queue().clone(),
                tags: m.tags().map(str::to_owned),
                at,
            });
        }
        ConsumeConcurrentlyStatus::ConsumeSuccess
    }
}

/// A listener that succeeds without looking at the messages.
pub fn succeeding(
) -> impl Fn(&[MessageExt], &mut ConsumeConcurrentlyContext) -> ConsumeConcurrentlyStatus
       + Send
       + Sync
       + 'static {
    |_: &[MessageExt], _: &mut ConsumeConcurrentlyContext| ConsumeConcurrentlyStatus::ConsumeSuccess
}

/// A consumer of `group` on `topic` (`*`), with its own instance name, from the first offset.
pub fn consumer_builder(
    cluster: &Cluster,
    group: &str,
    topic: &str,
) -> DefaultMQPushConsumerBuilder {
    DefaultMQPushConsumer::builder(group)
        .namesrv_addr(cluster.namesrv_addr.clone())
        .instance_name(unique("cinst"))
        .subscribe(topic, "*")
        .consume_from_where(ConsumeFromWhere::FirstOffset)
}

/// Receives until `n` deliveries arrived or `within` passed.
pub fn collect(rx: &Receiver<Delivery>, n: usize, within: Duration) -> Vec<Delivery> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    while out.len() < n {
        match rx.recv_deadline(deadline) {
            Ok(d) => out.push(d),
            Err(_) => break,
        }
    }
    out
}

/// Sends `n` messages `"{prefix}-{i}"` with async sends in a window (see `send_all_async`).
pub fn produce(p: &DefaultMQProducer, topic: &str, prefix: &str, n: usize, tag: &str) {
    let msgs: Vec<Message> = (0..n)
        .map(|i| Message::new(topic, format!("{prefix}-{i}")).with_tags(tag))
        .collect();
    super::client::send_all_async(p, &msgs, 128);
}

/// A fresh topic with `queues` queues on every broker of `cluster`.
pub fn topic_with_queues(cluster: &Cluster, queues: i32) -> String {
    let topic = unique("CTopic");
    create_topic_on_all_brokers(&raw_client(), cluster, &topic, queues);
    topic
}
