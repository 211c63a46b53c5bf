//! The producer against a real name server and broker (rocketmq-rust 1.0.0, started by the
//! harness in `tests/support/broker.rs`). Messages are read back with raw `PULL_MESSAGE`
//! requests through the remoting client, independently of the producer's code path.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rocketmq_sync::SelectMessageQueueByHash;
use rocketmq_sync::{DefaultMQProducer, Error, SendStatus};
use rocketmq_sync::{Message, MessageQueue};
use support::broker::{Cluster, ClusterOptions};

use support::client::*;

#[test]
fn route_query_after_first_send() {
    let cluster = Cluster::shared();
    let client = raw_client();
    let topic = unique("RouteTopic");
    // Not created yet: the name server says so.
    assert!(route(&client, &cluster.namesrv_addr, &topic).is_err());
    let p = producer(&cluster.namesrv_addr, &unique("pg"));
    let r = p
        .send(&Message::new(topic.clone(), "x"))
        .expect("first send auto-creates");
    assert_eq!(r.send_status(), SendStatus::SendOk);
    let deadline = Instant::now() + Duration::from_secs(20);
    let route = loop {
        match route(&client, &cluster.namesrv_addr, &topic) {
            Ok(r) => break r,
            Err(e) if Instant::now() > deadline => panic!("route never appeared: {e}"),
            Err(_) => std::thread::yield_now(),
        }
    };
    assert_eq!(route.broker_datas.len(), 1);
    assert_eq!(route.broker_datas[0].broker_name, cluster.brokers[0].name);
    assert_eq!(
        route.broker_datas[0].master_addr(),
        Some(cluster.brokers[0].addr.as_str())
    );
    assert!(route.queue_datas[0].write_queue_nums >= 1);
    p.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn ten_thousand_messages_sync_async_oneway_read_back_exactly_once() {
    support::broker::init_logger();
    let cluster = Cluster::shared();
    let topic = unique("BulkTopic");
    let p = producer(&cluster.namesrv_addr, &unique("pg"));
    const N: usize = 10_000;
    let big_body: Vec<u8> = (0..6000).map(|i| (i % 251) as u8).collect();

    let make = |i: usize| -> Message {
        let body = if i == 7 {
            big_body.clone()
        } else {
            format!("body-{i}").into_bytes()
        };
        Message::new(topic.clone(), body)
            .with_tags(format!("Tag{}", i % 3))
            .with_key_list([format!("k{i}"), format!("alt{i}")])
            .with_user_property("idx", i.to_string())
            .with_user_property("ünïcødé", "値🚀")
    };

    // Sync from 4 threads, async with a window, oneway: 10,000 in all.
    let failures = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..4 {
            let p = &p;
            let make = &make;
            let failures = &failures;
            s.spawn(move || {
                for i in (t..3400).step_by(4) {
                    if let Err(e) = p.send(&make(i)) {
                        eprintln!("sync send {i}: {e}");
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let async_msgs: Vec<Message> = (3400..6700).map(make).collect();
    send_all_async(&p, &async_msgs, 256);
    // One-way sends get no answer, so nothing slows a burst down, and the broker sheds
    // requests that wait over 200 ms in its send queue without a word. Every 20th message
    // goes sync: its answer is a barrier that keeps the queue short even on a loaded machine.
    for i in 6700..N {
        if i % 20 == 19 {
            p.send(&make(i)).expect("sync barrier send");
        } else {
            p.send_oneway(&make(i)).expect("oneway send accepted");
        }
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0, "no send may fail");

    let client = raw_client();
    let all = read_topic_until(&client, &cluster.namesrv_addr, &topic, N);
    let mut seen: HashMap<usize, usize> = HashMap::new();
    for m in &all {
        let idx: usize = m.property("idx").expect("idx property").parse().unwrap();
        *seen.entry(idx).or_default() += 1;
        assert_eq!(m.topic(), topic);
        assert_eq!(m.tags(), Some(format!("Tag{}", idx % 3).as_str()));
        assert_eq!(m.keys(), Some(format!("k{idx} alt{idx}").as_str()));
        assert_eq!(m.property("ünïcødé"), Some("値🚀"));
        assert!(m.property("UNIQ_KEY").is_some(), "producer sets UNIQ_KEY");
        if idx == 7 {
            assert_eq!(&m.body()[..], &big_body[..], "compressed body intact");
            assert!(m.sys_flag() & 0x1 != 0, "the 6000-byte body was compressed");
        } else {
            assert_eq!(&m.body()[..], format!("body-{idx}").as_bytes());
        }
    }
    let missing: Vec<usize> = (0..N).filter(|i| !seen.contains_key(i)).collect();
    let dup: Vec<(&usize, &usize)> = seen.iter().filter(|(_, c)| **c > 1).collect();
    assert!(
        missing.is_empty(),
        "{} missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        dup.is_empty(),
        "duplicates: {:?}",
        &dup[..dup.len().min(10)]
    );
    assert_eq!(all.len(), N);
    p.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn selector_puts_one_key_on_one_queue() {
    let cluster = Cluster::shared();
    let topic = unique("OrderTopic");
    let p = producer(&cluster.namesrv_addr, &unique("pg"));
    // Create the topic first so the queue list is stable.
    p.send(&Message::new(topic.clone(), "warm-up")).unwrap();
    let mut queue_of: HashMap<String, MessageQueue> = HashMap::new();
    for i in 0..200 {
        let key = format!("order-{}", i % 10);
        let msg = Message::new(topic.clone(), format!("{key}:{i}"));
        let r = p
            .send_with_selector(&msg, &SelectMessageQueueByHash, key.as_str())
            .expect("selector send");
        let mq = r.message_queue().clone();
        if let Some(prev) = queue_of.insert(key.clone(), mq.clone()) {
            assert_eq!(prev, mq, "key {key} moved between queues");
        }
    }
    // A closure selector works too.
    let r = p
        .send_with_selector(
            &Message::new(topic.clone(), "closure"),
            &|mqs: &[MessageQueue], n: &usize| mqs.get(*n % mqs.len()).cloned(),
            &1usize,
        )
        .unwrap();
    assert_eq!(r.message_queue().queue_id, 1);
    let distinct: HashSet<&MessageQueue> = queue_of.values().collect();
    assert!(distinct.len() > 1, "10 keys should use more than one queue");

    // Read back: per queue, messages of one key keep their send order.
    let client = raw_client();
    let all = read_topic_until(&client, &cluster.namesrv_addr, &topic, 202);
    let mut last: BTreeMap<String, usize> = BTreeMap::new();
    for m in all.iter().filter(|m| m.body().contains(&b':')) {
        let text = String::from_utf8(m.body().to_vec()).unwrap();
        let (key, i) = text.split_once(':').unwrap();
        let i: usize = i.parse().unwrap();
        assert_eq!(m.queue_id(), queue_of[key].queue_id);
        if let Some(prev) = last.insert(key.to_owned(), i) {
            assert!(prev < i, "order of {key} broken: {prev} then {i}");
        }
    }
    assert_eq!(last.len(), 10);
    p.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn batch_send_is_stored_as_individual_messages() {
    let cluster = Cluster::shared();
    let topic = unique("BatchTopic");
    let p = producer(&cluster.namesrv_addr, &unique("pg"));
    let msgs: Vec<Message> = (0..50)
        .map(|i| {
            Message::new(topic.clone(), format!("batch-{i}"))
                .with_tags("B")
                .with_keys(format!("bk{i}"))
        })
        .collect();
    let r = p.send_batch(&msgs).expect("batch send");
    assert_eq!(r.send_status(), SendStatus::SendOk);
    assert_eq!(r.msg_id().split(',').count(), 50, "one uniq id per message");
    let client = raw_client();
    let all = read_topic_until(&client, &cluster.namesrv_addr, &topic, 50);
    let bodies: HashSet<String> = all
        .iter()
        .map(|m| String::from_utf8(m.body().to_vec()).unwrap())
        .collect();
    assert_eq!(all.len(), 50);
    assert_eq!(bodies.len(), 50);
    let ids: HashSet<&str> = r.msg_id().split(',').collect();
    for m in &all {
        assert!(
            ids.contains(m.msg_id().as_ref()),
            "uniq id of stored message is in the result"
        );
        assert_eq!(m.tags(), Some("B"));
    }
    // Mixed topics are refused with a clear error.
    let mixed = vec![
        Message::new(topic.clone(), "a"),
        Message::new(format!("{topic}x"), "b"),
    ];
    let e = p.send_batch(&mixed).unwrap_err();
    assert!(e.to_string().contains("same"), "{e}");
    p.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn missing_topic_with_auto_create_off_is_a_clear_error() {
    let cluster = Cluster::start(ClusterOptions {
        brokers: 1,
        auto_create_topic: false,
    });
    let p = producer(&cluster.namesrv_addr, &unique("pg"));
    let started = Instant::now();
    let e = p
        .send(&Message::new("NoSuchTopicAnywhere", "x"))
        .expect_err("topic does not exist");
    assert!(started.elapsed() < Duration::from_secs(15));
    let text = e.to_string();
    assert!(
        text.contains("NoSuchTopicAnywhere")
            && (text.contains("No route info") || text.contains("TOPIC_NOT_EXIST")),
        "unclear error: {text}"
    );
    p.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn broker_killed_mid_send_fails_within_the_timeout() {
    let cluster = Cluster::start(ClusterOptions {
        brokers: 1,
        auto_create_topic: true,
    });
    let topic = unique("KillTopic");
    let p = DefaultMQProducer::builder(unique("pg"))
        .namesrv_addr(cluster.namesrv_addr.clone())
        .instance_name(unique("inst"))
        .send_msg_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    p.start().unwrap();
    p.send(&Message::new(topic.clone(), "before")).unwrap();

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let results = std::thread::scope(|s| {
        let senders: Vec<_> = (0..4)
            .map(|_| {
                let p = &p;
                let topic = &topic;
                let stop = stop.clone();
                s.spawn(move || {
                    let mut outcomes = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        let r = p.send(&Message::new(topic.clone(), "during"));
                        outcomes.push((r.is_ok(), t.elapsed()));
                    }
                    outcomes
                })
            })
            .collect();
        // Let some sends succeed, then kill the broker while the senders run.
        for _ in 0..20 {
            p.send(&Message::new(topic.clone(), "x"))
                .expect("broker still alive");
        }
        cluster.kill_broker("broker-a");
        // Keep sending for a while after the kill, then stop.
        let after = Instant::now();
        let mut failed_after_kill = 0;
        while after.elapsed() < Duration::from_secs(3) {
            let t = Instant::now();
            let r = p.send(&Message::new(topic.clone(), "after"));
            assert!(
                t.elapsed() < Duration::from_secs(3 * 2 + 2),
                "a send hung for {:?}",
                t.elapsed()
            );
            if r.is_err() {
                failed_after_kill += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
        let outcomes: Vec<(bool, Duration)> = senders
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        (failed_after_kill, outcomes)
    });
    let (failed_after_kill, outcomes) = results;
    assert!(failed_after_kill > 0, "sends to a dead broker must fail");
    // Per attempt 2 s, up to 3 attempts: nothing may take longer than that plus slack.
    for (_, took) in &outcomes {
        assert!(*took < Duration::from_secs(8), "a send took {took:?}");
    }
    assert!(
        outcomes.iter().any(|(ok, _)| !ok),
        "concurrent sends saw the failure"
    );
    p.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn two_broker_cluster_spreads_and_fails_over() {
    support::broker::init_logger();
    let cluster = Cluster::start(ClusterOptions {
        brokers: 2,
        auto_create_topic: true,
    });
    let topic = unique("SpreadTopic");
    // One retry at most: every send after the kill must succeed within two attempts.
    let p = DefaultMQProducer::builder(unique("pg"))
        .namesrv_addr(cluster.namesrv_addr.clone())
        .instance_name(unique("inst"))
        .retry_times_when_send_failed(1)
        .build()
        .unwrap();
    p.start().unwrap();

    // As in a real deployment, the topic exists on both brokers. Sends spread over all
    // eight queues of the two brokers.
    create_topic_on_all_brokers(&raw_client(), &cluster, &topic, 4);
    let mut per_queue: HashMap<MessageQueue, usize> = HashMap::new();
    for _ in 0..80 {
        let r = p
            .send(&Message::new(topic.clone(), "spread"))
            .expect("send");
        *per_queue.entry(r.message_queue().clone()).or_default() += 1;
    }
    assert_eq!(
        per_queue.len(),
        8,
        "sends must use every queue: {per_queue:?}"
    );
    assert!(
        per_queue.values().all(|c| *c == 10),
        "round robin: {per_queue:?}"
    );

    cluster.kill_broker("broker-a");
    for i in 0..100 {
        let r = p
            .send(&Message::new(topic.clone(), format!("after-kill-{i}")))
            .unwrap_or_else(|e| panic!("send {i} after the kill failed: {e}"));
        assert_eq!(r.message_queue().broker_name, "broker-b");
    }

    // Without retries, the fault window alone must keep broker-a out: at most the very first
    // send of this fresh producer may pick the dead broker.
    let no_retry = DefaultMQProducer::builder(unique("pg"))
        .namesrv_addr(cluster.namesrv_addr.clone())
        .instance_name(unique("inst"))
        .retry_times_when_send_failed(0)
        .build()
        .unwrap();
    no_retry.start().unwrap();
    let mut failures = 0;
    for _ in 0..100 {
        if no_retry
            .send(&Message::new(topic.clone(), "window"))
            .is_err()
        {
            failures += 1;
        }
    }
    assert!(failures <= 1, "{failures} sends chose the dead broker");
    no_retry.shutdown(Duration::from_secs(5)).unwrap();
    p.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn dead_first_name_server_still_works() {
    let cluster = Cluster::shared();
    // A port with nothing listening: bind, read the port, close.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let topic = unique("FailoverNs");
    let p = DefaultMQProducer::builder(unique("pg"))
        .namesrv_addr(format!("{dead};{}", cluster.namesrv_addr))
        .instance_name(unique("inst"))
        .build()
        .unwrap();
    p.start().unwrap();
    for _ in 0..5 {
        let r = p
            .send(&Message::new(topic.clone(), "ns failover"))
            .expect("send");
        assert_eq!(r.send_status(), SendStatus::SendOk);
    }
    p.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn lifecycle_errors_are_typed() {
    let cluster = Cluster::shared();
    let p = DefaultMQProducer::builder(unique("pg"))
        .namesrv_addr(cluster.namesrv_addr.clone())
        .instance_name(unique("inst"))
        .build()
        .unwrap();
    let e = p.send(&Message::new("T", "x")).unwrap_err();
    assert!(matches!(e, Error::ServiceState { .. }), "{e}");
    p.start().unwrap();
    assert!(matches!(p.start().unwrap_err(), Error::ServiceState { .. }));
    // Invalid messages are refused before anything is sent.
    let e = p.send(&Message::new("bad topic!", "x")).unwrap_err();
    assert!(e.to_string().contains("topic"), "{e}");
    let e = p.send(&Message::new("T", Vec::<u8>::new())).unwrap_err();
    assert!(e.to_string().to_lowercase().contains("body"), "{e}");
    p.shutdown(Duration::from_secs(5)).unwrap();
    p.shutdown(Duration::from_secs(5)).unwrap();
    let e = p.send(&Message::new("T", "x")).unwrap_err();
    assert!(matches!(e, Error::ServiceState { .. }), "{e}");
}

/// `ClientConfig::disable_callback_executor`: every async send's callback runs once, on the io
/// thread, and every message is stored exactly once.
#[test]
fn async_callbacks_on_the_io_thread_complete_every_send_once() {
    let cluster = Cluster::shared();
    let topic = unique("IoCallbackTopic");
    let p = DefaultMQProducer::builder(unique("pg"))
        .client_config(
            rocketmq_sync::ClientConfig::builder()
                .disable_callback_executor(true)
                .build(),
        )
        .namesrv_addr(cluster.namesrv_addr.clone())
        .instance_name(unique("io-callbacks"))
        .build()
        .unwrap();
    p.start().unwrap();
    const N: usize = 1000;
    let (tx, rx) = crossbeam_channel::unbounded();
    for i in 0..N {
        let msg = Message::new(topic.clone(), format!("io-{i}"));
        let tx = tx.clone();
        loop {
            let tx = tx.clone();
            let sent = p.send_async(&msg, move |r| {
                let thread = std::thread::current().name().map(str::to_owned);
                let _ = tx.send((i, r.map(|_| ()), thread));
            });
            match sent {
                Ok(()) => break,
                Err(e) if e.is_too_many_requests() => std::thread::yield_now(),
                Err(e) => panic!("async send {i} refused: {e}"),
            }
        }
        // A window of 64: the broker sheds what waits too long in its queue.
        if i >= 64 {
            let (j, r, thread) = rx.recv_timeout(Duration::from_secs(60)).expect("callback");
            check_io_callback(j, r, thread.as_deref());
        }
    }
    let mut called = 0;
    while called < 64 {
        let (j, r, thread) = rx.recv_timeout(Duration::from_secs(60)).expect("callback");
        check_io_callback(j, r, thread.as_deref());
        called += 1;
    }
    assert!(
        rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "a callback ran twice"
    );
    let client = raw_client();
    let all = read_topic_until(&client, &cluster.namesrv_addr, &topic, N);
    let bodies: HashSet<Vec<u8>> = all.iter().map(|m| m.body().to_vec()).collect();
    assert_eq!(all.len(), N, "stored exactly once");
    assert_eq!(bodies.len(), N);
    p.shutdown(Duration::from_secs(5)).unwrap();
}

fn check_io_callback(i: usize, r: rocketmq_sync::Result<()>, thread: Option<&str>) {
    match r {
        Ok(()) => assert_eq!(
            thread,
            Some("rmq-io"),
            "send {i} called back off the io thread"
        ),
        // The broker's push-back runs on the pool; the test cannot resend it exactly once.
        Err(e) => panic!("async send {i} failed on {thread:?}: {e}"),
    }
}
