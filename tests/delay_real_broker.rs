//! Delay levels against a real broker (rocketmq-rust 1.0.0, whose `messageDelayLevel` is Java's
//! default, `1s 5s 10s 30s 1m ...`): a message sent at levels 1, 2 and 3 reaches the consumer no
//! earlier than 1 s, 5 s and 10 s after it was sent. The lower bound is the contract; how much
//! later a message comes is not asserted (no timing test).

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rocketmq_sync::Message;
use support::broker::Cluster;
use support::client::{producer, unique};
use support::consume::{collect, consumer_builder, deliveries, topic_with_queues};

#[test]
fn delay_levels_1_to_3_arrive_no_earlier_than_their_delay() {
    let cluster = Cluster::shared();
    let topic = topic_with_queues(cluster, 2);
    let (tx, rx) = crossbeam_channel::unbounded();
    let c = consumer_builder(cluster, &unique("delaycg"), &topic)
        .register_message_listener_concurrently(deliveries(tx))
        .build()
        .unwrap();
    c.start().unwrap();
    let p = producer(&cluster.namesrv_addr, &unique("delaypg"));
    let delays = [
        (1, Duration::from_secs(1)),
        (2, Duration::from_secs(5)),
        (3, Duration::from_secs(10)),
    ];
    let mut sent_at: HashMap<String, (Instant, Duration)> = HashMap::new();
    for (level, delay) in delays {
        let body = format!("level-{level}");
        // Taken before the send: the broker counts the delay from when it stores the message,
        // which is later.
        let before = Instant::now();
        p.send(&Message::new(topic.clone(), body.clone()).with_delay_level(level))
            .expect("sent");
        sent_at.insert(body, (before, delay));
    }
    // An undelayed message shows the consumer is live while the others wait.
    p.send(&Message::new(topic.clone(), "now")).expect("sent");
    let got = collect(&rx, 4, Duration::from_secs(60));
    let mut bodies: Vec<&str> = got.iter().map(|d| d.body.as_str()).collect();
    bodies.sort_unstable();
    assert_eq!(
        bodies,
        ["level-1", "level-2", "level-3", "now"],
        "every message, once"
    );
    for d in &got {
        if let Some((before, delay)) = sent_at.get(&d.body) {
            let waited = d.at.duration_since(*before);
            assert!(
                waited >= *delay,
                "{} was consumed {waited:?} after it was sent, before its delay of {delay:?}",
                d.body
            );
        }
    }
    p.shutdown(Duration::from_secs(5)).unwrap();
    c.shutdown(Duration::from_secs(5)).unwrap();
}
