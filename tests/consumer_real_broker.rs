//! The push consumer against a real name server and broker (rocketmq-rust 1.0.0, started by
//! the harness in `tests/support/broker.rs`). Every test waits on conditions with deadlines.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Sender};
use parking_lot::Mutex;
use rocketmq_sync::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, ConsumeFromWhere, DefaultMQPushConsumer,
    DefaultMQPushConsumerBuilder, MessageModel,
};
use rocketmq_sync::{Message, MessageExt, MessageQueue};
use support::broker::Cluster;
use support::client::*;
use support::consume::*;

#[test]
fn ten_thousand_messages_over_8_queues_consumed_exactly_once_then_nothing_again() {
    support::broker::init_logger();
    let cluster = Cluster::shared();
    let topic = topic_with_queues(cluster, 8);
    let group = unique("cg");
    let p = producer(&cluster.namesrv_addr, &unique("pg"));
    const N: usize = 10_000;
    produce(&p, &topic, "m", N, "T");

    let (tx, rx) = unbounded();
    let c = consumer_builder(cluster, &group, &topic)
        .register_message_listener_concurrently(deliveries(tx))
        .build()
        .unwrap();
    c.start().unwrap();
    let got = collect(&rx, N, Duration::from_secs(120));
    let mut count: HashMap<String, usize> = HashMap::new();
    let mut queues: HashSet<MessageQueue> = HashSet::new();
    for d in &got {
        *count.entry(d.body.clone()).or_default() += 1;
        queues.insert(d.queue.clone());
    }
    assert_eq!(count.len(), N, "distinct messages received");
    assert!(
        count.values().all(|c| *c == 1),
        "a message was delivered twice"
    );
    assert_eq!(queues.len(), 8, "all 8 queues were consumed");
    // Nothing more arrives.
    assert!(
        rx.recv_timeout(Duration::from_secs(2)).is_err(),
        "an extra delivery arrived"
    );

    // Offsets are committed: every queue's local offset reached the end.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats: Vec<_> = c
            .queue_stats()
            .into_iter()
            .filter(|q| q.message_queue.topic == topic)
            .collect();
        let done: i64 = stats.iter().map(|q| q.commit_offset).sum();
        if stats.len() == 8 && done == N as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "offsets not committed: {stats:?}"
        );
        std::thread::yield_now();
    }
    c.shutdown(Duration::from_secs(10)).unwrap();

    // A new consumer of the same group resumes from the committed offsets: nothing again.
    let (tx2, rx2) = unbounded();
    let c2 = consumer_builder(cluster, &group, &topic)
        .register_message_listener_concurrently(deliveries(tx2))
        .build()
        .unwrap();
    c2.start().unwrap();
    // New messages still flow, so the consumer is really live; none of the old come back.
    produce(&p, &topic, "late", 10, "T");
    let again = collect(&rx2, 10, Duration::from_secs(60));
    assert_eq!(again.len(), 10);
    assert!(
        again.iter().all(|d| d.body.starts_with("late-")),
        "old messages came back"
    );
    assert!(rx2.recv_timeout(Duration::from_secs(2)).is_err());
    c2.shutdown(Duration::from_secs(10)).unwrap();
    p.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn tag_filter_delivers_only_matching_tags() {
    let cluster = Cluster::shared();
    let topic = topic_with_queues(cluster, 4);
    let p = producer(&cluster.namesrv_addr, &unique("pg"));
    for (i, tag) in ["TagA", "TagB", "TagC"].iter().cycle().take(90).enumerate() {
        p.send(&Message::new(topic.clone(), format!("{tag}-{i}")).with_tags(*tag))
            .unwrap();
    }
    let (tx, rx) = unbounded();
    let c = DefaultMQPushConsumer::builder(unique("cg"))
        .namesrv_addr(cluster.namesrv_addr.clone())
        .instance_name(unique("cinst"))
        .subscribe(topic.clone(), "TagA || TagC")
        .consume_from_where(ConsumeFromWhere::FirstOffset)
        .register_message_listener_concurrently(deliveries(tx))
        .build()
        .unwrap();
    c.start().unwrap();
    let got = collect(&rx, 60, Duration::from_secs(60));
    assert_eq!(got.len(), 60);
    assert!(got
        .iter()
        .all(|d| matches!(d.tags.as_deref(), Some("TagA") | Some("TagC"))));
    assert!(
        rx.recv_timeout(Duration::from_secs(2)).is_err(),
        "TagB leaked"
    );
    c.shutdown(Duration::from_secs(10)).unwrap();
    p.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn failed_twice_then_succeeds_arrives_three_times() {
    let cluster = Cluster::shared();
    let topic = topic_with_queues(cluster, 2);
    let p = producer(&cluster.namesrv_addr, &unique("pg"));
    p.send(&Message::new(topic.clone(), "flaky")).unwrap();
    let (tx, rx) = unbounded();
    let c = consumer_builder(cluster, &unique("cg"), &topic)
        .register_message_listener_concurrently(
            move |msgs: &[MessageExt], ctx: &mut ConsumeConcurrentlyContext| {
                let m = &msgs[0];
                tx.send((m.reconsume_times(), m.topic().to_owned(), m.body().clone()))
                    .unwrap();
                // Retry after 1 s (delay level 1) to keep the test short.
                ctx.delay_level_when_next_consume = 1;
                if m.reconsume_times() < 2 {
                    ConsumeConcurrentlyStatus::ReconsumeLater
                } else {
                    ConsumeConcurrentlyStatus::ConsumeSuccess
                }
            },
        )
        .build()
        .unwrap();
    c.start().unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while seen.len() < 3 {
        match rx.recv_deadline(deadline) {
            Ok(x) => seen.push(x),
            Err(_) => panic!("only {} deliveries: {seen:?}", seen.len()),
        }
    }
    let times: Vec<i32> = seen.iter().map(|s| s.0).collect();
    assert_eq!(times, vec![0, 1, 2]);
    for (_, t, body) in &seen {
        assert_eq!(t, &topic, "the retry topic is reset to the original");
        assert_eq!(&body[..], b"flaky");
    }
    assert!(
        rx.recv_timeout(Duration::from_secs(3)).is_err(),
        "delivered after success"
    );
    c.shutdown(Duration::from_secs(10)).unwrap();
    p.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn poison_message_lands_in_the_dlq() {
    let cluster = Cluster::shared();
    let topic = topic_with_queues(cluster, 1);
    let group = unique("cg");
    let p = producer(&cluster.namesrv_addr, &unique("pg"));
    let sent = p.send(&Message::new(topic.clone(), "poison")).unwrap();
    let attempts = Arc::new(AtomicUsize::new(0));
    let a2 = attempts.clone();
    let c = consumer_builder(cluster, &group, &topic)
        .max_reconsume_times(1)
        .register_message_listener_concurrently(
            move |_: &[MessageExt], ctx: &mut ConsumeConcurrentlyContext| {
                a2.fetch_add(1, Ordering::SeqCst);
                ctx.delay_level_when_next_consume = 1;
                ConsumeConcurrentlyStatus::ReconsumeLater
            },
        )
        .build()
        .unwrap();
    c.start().unwrap();
    let dlq = format!("%DLQ%{group}");
    let client = raw_client();
    let deadline = Instant::now() + Duration::from_secs(90);
    let found = loop {
        if route(&client, &cluster.namesrv_addr, &dlq).is_ok() {
            let msgs = read_topic(&client, &cluster.namesrv_addr, &dlq);
            if let Some(m) = msgs.into_iter().find(|m| &m.body()[..] == b"poison") {
                break m;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the poison message never reached {dlq}"
        );
        std::thread::yield_now();
    };
    assert_eq!(found.msg_id(), sent.msg_id(), "same message id in the DLQ");
    assert!(
        attempts.load(Ordering::SeqCst) >= 2,
        "consumed once, retried once"
    );
    c.shutdown(Duration::from_secs(10)).unwrap();
    p.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn panicking_listener_does_not_kill_the_consumer_and_its_message_is_retried() {
    let cluster = Cluster::shared();
    let topic = topic_with_queues(cluster, 2);
    let p = producer(&cluster.namesrv_addr, &unique("pg"));
    for i in 0..10 {
        p.send(&Message::new(topic.clone(), format!("p-{i}")))
            .unwrap();
    }
    let (tx, rx) = unbounded();
    let panicked = Arc::new(Mutex::new(HashSet::new()));
    let c = consumer_builder(cluster, &unique("cg"), &topic)
        .register_message_listener_concurrently(
            move |msgs: &[MessageExt], ctx: &mut ConsumeConcurrentlyContext| {
                ctx.delay_level_when_next_consume = 1;
                let body = String::from_utf8_lossy(msgs[0].body()).into_owned();
                if body == "p-3" && panicked.lock().insert(body.clone()) {
                    panic!("listener bug on {body}");
                }
                tx.send(body).unwrap();
                ConsumeConcurrentlyStatus::ConsumeSuccess
            },
        )
        .build()
        .unwrap();
    c.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = HashSet::new();
    while got.len() < 10 {
        match rx.recv_deadline(deadline) {
            Ok(b) => {
                got.insert(b);
            }
            Err(_) => panic!("only {got:?} arrived"),
        }
    }
    assert!(got.contains("p-3"), "the panicked message was retried");
    c.shutdown(Duration::from_secs(10)).unwrap();
    p.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn broadcasting_delivers_everything_to_each_and_resumes_from_the_local_file() {
    let cluster = Cluster::shared();
    let topic = topic_with_queues(cluster, 4);
    let group = unique("bg");
    let dir = std::env::temp_dir().join(unique("offsets"));
    let p = producer(&cluster.namesrv_addr, &unique("pg"));
    produce(&p, &topic, "b", 200, "T");
    let start = |inst: &str, tx: Sender<Delivery>| {
        let c = DefaultMQPushConsumer::builder(group.clone())
            .namesrv_addr(cluster.namesrv_addr.clone())
            .instance_name(inst.to_owned())
            .message_model(MessageModel::Broadcasting)
            .consume_from_where(ConsumeFromWhere::FirstOffset)
            .offset_store_dir(dir.clone())
            .subscribe(topic.clone(), "*")
            .register_message_listener_concurrently(deliveries(tx))
            .build()
            .unwrap();
        c.start().unwrap();
        c
    };
    let (tx1, rx1) = unbounded();
    let (tx2, rx2) = unbounded();
    let inst1 = unique("b1");
    let c1 = start(&inst1, tx1);
    let c2 = start(&unique("b2"), tx2);
    for rx in [&rx1, &rx2] {
        let got = collect(rx, 200, Duration::from_secs(60));
        let distinct: HashSet<&str> = got.iter().map(|d| d.body.as_str()).collect();
        assert_eq!(
            distinct.len(),
            200,
            "each broadcasting consumer gets everything"
        );
    }
    c1.shutdown(Duration::from_secs(10)).unwrap();
    // The offset file exists under <dir>/<clientId>/<group>/offsets.json.
    let files: Vec<_> = walk(&dir)
        .into_iter()
        .filter(|p| p.ends_with("offsets.json"))
        .collect();
    assert!(!files.is_empty(), "no offsets.json under {dir:?}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(
        text.contains("offsetTable") && text.contains(&topic),
        "{text}"
    );

    // Restart the first consumer with the same instance name: it resumes, old ones don't return.
    produce(&p, &topic, "b2nd", 20, "T");
    let (tx3, rx3) = unbounded();
    let c3 = start(&inst1, tx3);
    let got = collect(&rx3, 20, Duration::from_secs(60));
    assert_eq!(got.len(), 20);
    assert!(
        got.iter().all(|d| d.body.starts_with("b2nd-")),
        "resumed from the file"
    );
    assert!(rx3.recv_timeout(Duration::from_secs(2)).is_err());
    c3.shutdown(Duration::from_secs(10)).unwrap();
    c2.shutdown(Duration::from_secs(10)).unwrap();
    p.shutdown(Duration::from_secs(5)).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn two_consumers_then_a_third_split_the_queues_and_lose_nothing() {
    let cluster = Cluster::shared();
    let topic = topic_with_queues(cluster, 8);
    let group = unique("cg");
    let p = producer(&cluster.namesrv_addr, &unique("pg"));
    let (tx, rx) = unbounded();
    let mk = |tx: Sender<Delivery>| {
        let c = consumer_builder(cluster, &group, &topic)
            .register_message_listener_concurrently(deliveries(tx))
            .build()
            .unwrap();
        c.start().unwrap();
        c
    };
    let a = mk(tx.clone());
    let b = mk(tx.clone());
    wait_disjoint_cover(&[&a, &b], 8);
    produce(&p, &topic, "r1", 1000, "T");
    let c = mk(tx.clone());
    produce(&p, &topic, "r2", 1000, "T");
    wait_disjoint_cover(&[&a, &b, &c], 8);
    produce(&p, &topic, "r3", 1000, "T");
    // Gather until every distinct message arrived, then a little longer for late duplicates.
    let mut count: HashMap<String, usize> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while count.len() < 3000 {
        match rx.recv_deadline(deadline) {
            Ok(d) => *count.entry(d.body).or_default() += 1,
            Err(_) => panic!("only {} of 3000 distinct messages arrived", count.len()),
        }
    }
    for d in collect(&rx, usize::MAX, Duration::from_secs(2)) {
        *count.entry(d.body).or_default() += 1;
    }
    assert_eq!(
        count.len(),
        3000,
        "the union of what they received is what was sent"
    );
    let dups: Vec<(&String, &usize)> = count.iter().filter(|(_, c)| **c > 1).collect();
    eprintln!("duplicates around the rebalances: {}", dups.len());
    // Duplicates happen only around a rebalance: none among the batch sent after it settled.
    assert!(
        dups.iter().all(|(b, _)| !b.starts_with("r3-")),
        "duplicates after the rebalance settled: {dups:?}"
    );
    for c in [a, b, c] {
        c.shutdown(Duration::from_secs(10)).unwrap();
    }
    p.shutdown(Duration::from_secs(5)).unwrap();
}

/// Waits until the consumers' queues are disjoint and cover `total` queues.
fn wait_disjoint_cover(consumers: &[&DefaultMQPushConsumer], total: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let sets: Vec<HashSet<MessageQueue>> = consumers
            .iter()
            .map(|c| {
                c.queue_stats()
                    .into_iter()
                    .map(|q| q.message_queue)
                    .filter(|q| !q.topic.starts_with("%RETRY%"))
                    .collect()
            })
            .collect();
        let union: HashSet<&MessageQueue> = sets.iter().flatten().collect();
        let sum: usize = sets.iter().map(HashSet::len).sum();
        if union.len() == total && sum == total && sets.iter().all(|s| !s.is_empty()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "queues never settled disjoint: {:?}",
            sets.iter().map(HashSet::len).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn slow_listener_keeps_the_cache_under_the_threshold() {
    let cluster = Cluster::shared();
    let topic = topic_with_queues(cluster, 1);
    let p = producer(&cluster.namesrv_addr, &unique("pg"));
    produce(&p, &topic, "s", 600, "T");
    let consumed = Arc::new(AtomicUsize::new(0));
    let c2 = consumed.clone();
    let c = consumer_builder(cluster, &unique("cg"), &topic)
        .pull_threshold_for_queue(50)
        .consume_threads(1, 1)
        .register_message_listener_concurrently(
            move |_: &[MessageExt], _: &mut ConsumeConcurrentlyContext| {
                std::thread::sleep(Duration::from_millis(2));
                c2.fetch_add(1, Ordering::SeqCst);
                ConsumeConcurrentlyStatus::ConsumeSuccess
            },
        )
        .build()
        .unwrap();
    c.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut max_cached = 0;
    while consumed.load(Ordering::SeqCst) < 600 {
        for q in c.queue_stats() {
            if q.message_queue.topic == topic {
                max_cached = max_cached.max(q.cached_msg_count);
            }
        }
        assert!(Instant::now() < deadline, "slow consumer never finished");
        std::thread::sleep(Duration::from_millis(1));
    }
    // The threshold plus one pulled batch (32) at most.
    assert!(max_cached <= 50 + 32, "cached {max_cached} messages");
    assert!(max_cached > 0);
    c.shutdown(Duration::from_secs(10)).unwrap();
    p.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn bad_settings_are_refused_with_a_clear_message() {
    let build = |b: DefaultMQPushConsumerBuilder| b.build().map(|_| ()).unwrap_err().to_string();
    let base = || {
        DefaultMQPushConsumer::builder("g")
            .namesrv_addr("127.0.0.1:1")
            .subscribe("T", "*")
            .register_message_listener_concurrently(succeeding())
    };
    assert!(build(base().consume_threads(10, 5)).contains("consumeThreadMin"));
    assert!(build(base().pull_batch_size(0)).contains("pullBatchSize"));
    assert!(build(base().consume_timestamp("2023-11-14")).contains("consumeTimestamp"));
    assert!(base().consume_timestamp("20231114221320").build().is_ok());
    assert!(build(base().pull_threshold_for_queue(0)).contains("pullThresholdForQueue"));
    assert!(build(
        base()
            .broker_suspend_max_time(Duration::from_secs(30))
            .consumer_timeout_when_suspend(Duration::from_secs(15))
    )
    .contains("shorter"));
    let no_listener = DefaultMQPushConsumer::builder("g")
        .subscribe("T", "*")
        .build();
    assert!(no_listener.unwrap_err().to_string().contains("listener"));
    let bad_group = DefaultMQPushConsumer::builder("bad group!")
        .subscribe("T", "*")
        .register_message_listener_concurrently(succeeding())
        .build();
    assert!(bad_group.is_err());
    // Starting twice is a typed error.
    let c = base().build().unwrap();
    assert!(c.shutdown(Duration::from_secs(1)).is_ok());
    assert!(c.start().is_err(), "start after shutdown");
}
