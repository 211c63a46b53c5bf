//! The lite pull consumer against a real name server and broker (rocketmq-rust 1.0.0, started by
//! the harness in `tests/support/broker.rs`): subscribe and assign, exactly-once polling, seek,
//! pause, the split of a group's queues, commits that survive a restart, and the errors of
//! misuse. Every wait is a condition with a deadline.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rocketmq_sync::{
    ConsumeFromWhere, DefaultLitePullConsumer, DefaultLitePullConsumerBuilder, Error, Message,
    MessageExt, MessageModel, MessageQueue, ServiceState,
};
use support::broker::{wait_until, Cluster};
use support::client::*;
use support::consume::*;

const POLL: Duration = Duration::from_millis(200);

/// A lite consumer of `group` with its own instance, starting from the first offset.
fn lite(cluster: &Cluster, group: &str) -> DefaultLitePullConsumerBuilder {
    DefaultLitePullConsumer::builder(group)
        .namesrv_addr(cluster.namesrv_addr.clone())
        .instance_name(unique("linst"))
        .consume_from_where(ConsumeFromWhere::FirstOffset)
}

fn body(m: &MessageExt) -> String {
    String::from_utf8_lossy(m.body()).into_owned()
}

fn queue_of(m: &MessageExt, topic: &str) -> MessageQueue {
    MessageQueue::new(topic, m.broker_name().unwrap_or_default(), m.queue_id())
}

/// Polls until `want` messages arrived or `within` passed; checks that each queue's offsets
/// only grow across the polls.
fn poll_n(c: &DefaultLitePullConsumer, want: usize, within: Duration) -> Vec<MessageExt> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    let mut last: HashMap<(String, i32), i64> = HashMap::new();
    while out.len() < want && Instant::now() < deadline {
        for m in c.poll(POLL).expect("poll") {
            let key = (m.broker_name().unwrap_or_default().to_owned(), m.queue_id());
            if let Some(prev) = last.insert(key.clone(), m.queue_offset()) {
                assert!(
                    m.queue_offset() > prev,
                    "offsets of {key:?} went from {prev} to {}",
                    m.queue_offset()
                );
            }
            out.push(m);
        }
    }
    out
}

/// Sends `per_queue` messages `"q{id}-{i}"` into each queue of `topic`.
fn send_per_queue(cluster: &Cluster, topic: &str, queues: &[MessageQueue], per_queue: usize) {
    let p = producer(&cluster.namesrv_addr, &unique("lpg"));
    for mq in queues {
        for i in 0..per_queue {
            let msg = Message::new(topic, format!("q{}-{i}", mq.queue_id));
            p.send_to_queue(&msg, mq).expect("send to queue");
        }
    }
    p.shutdown(Duration::from_secs(5)).unwrap();
}

fn assert_exactly_once(got: &[MessageExt], want: usize) {
    let mut seen = HashSet::new();
    for m in got {
        assert!(seen.insert(body(m)), "{} polled twice", body(m));
    }
    assert_eq!(got.len(), want, "polled {} of {want}", got.len());
}

#[test]
fn subscribe_polls_10k_messages_exactly_once_in_queue_order_and_commits() {
    let cluster = Cluster::shared();
    let topic = topic_with_queues(cluster, 8);
    let p = producer(&cluster.namesrv_addr, &unique("lpg"));
    produce(&p, &topic, "m", 10_000, "TagA");
    p.shutdown(Duration::from_secs(5)).unwrap();

    let group = unique("lcg");
    let changes = Arc::new(Mutex::new(Vec::new()));
    let seen = changes.clone();
    let c = lite(cluster, &group)
        .subscribe(topic.clone(), "*")
        .auto_commit(false)
        .message_queue_listener(
            move |t: &str, all: &[MessageQueue], mine: &[MessageQueue]| {
                seen.lock().push((t.to_owned(), all.len(), mine.len()));
            },
        )
        .build()
        .unwrap();
    c.start().unwrap();
    let got = poll_n(&c, 10_000, Duration::from_secs(120));
    assert_exactly_once(&got, 10_000);
    for m in &got {
        assert_eq!(m.topic(), topic);
    }
    assert!(
        changes.lock().contains(&(topic.clone(), 8, 8)),
        "the MessageQueueListener heard {:?}",
        changes.lock()
    );
    // Nothing more arrives, and a poll waits for its timeout.
    let begin = Instant::now();
    assert!(c.poll(POLL).unwrap().is_empty());
    assert!(begin.elapsed() >= POLL);

    // commit_sync stores every queue's next offset at the broker.
    c.commit_sync().unwrap();
    let mut max: BTreeMap<MessageQueue, i64> = BTreeMap::new();
    for m in &got {
        let e = max.entry(queue_of(m, &topic)).or_insert(0);
        *e = (*e).max(m.queue_offset() + 1);
    }
    assert_eq!(max.len(), 8);
    c.shutdown(Duration::from_secs(10)).unwrap();

    let probe = lite(cluster, &group).build().unwrap();
    probe.start().unwrap();
    for (mq, next) in &max {
        assert_eq!(probe.committed(mq).unwrap(), *next, "{mq}");
    }
    probe.shutdown(Duration::from_secs(10)).unwrap();
}

#[test]
fn assign_and_seek_replay_and_out_of_range_seeks_are_refused() {
    let cluster = Cluster::shared();
    let topic = topic_with_queues(cluster, 4);
    let c = lite(cluster, &unique("lcg"))
        .auto_commit(false)
        .build()
        .unwrap();
    c.start().unwrap();
    let queues = c.fetch_message_queues(&topic).unwrap();
    assert_eq!(queues.len(), 4 * cluster.brokers.len());
    send_per_queue(cluster, &topic, &queues, 10);
    c.assign(queues.clone()).unwrap();
    assert_eq!(c.assignment(), queues);

    let all = poll_n(&c, queues.len() * 10, Duration::from_secs(60));
    assert_exactly_once(&all, queues.len() * 10);

    // Replay one queue from offset 5: exactly its messages 5..10, in order.
    let q0 = queues[0].clone();
    c.seek(&q0, 5).unwrap();
    let again = poll_n(&c, 5, Duration::from_secs(30));
    let bodies: Vec<String> = again.iter().map(body).collect();
    let want: Vec<String> = (5..10).map(|i| format!("q{}-{i}", q0.queue_id)).collect();
    assert_eq!(bodies, want);
    // And from the beginning.
    c.seek_to_begin(&q0).unwrap();
    let again = poll_n(&c, 10, Duration::from_secs(30));
    assert_eq!(again.len(), 10);
    assert_eq!(again[0].queue_offset(), 0);
    // To the end: nothing until new messages arrive.
    c.seek_to_end(&q0).unwrap();
    assert!(c.poll(POLL).unwrap().is_empty());

    // Out of the queue's range, or a queue not held: clear errors, nothing changes.
    let e = c.seek(&q0, 11).unwrap_err();
    assert!(e.to_string().contains("illegal"), "{e}");
    let e = c.seek(&q0, -1).unwrap_err();
    assert!(e.to_string().contains("illegal"), "{e}");
    let stranger = MessageQueue::new(&topic, &q0.broker_name, 99);
    assert!(c.seek(&stranger, 0).is_err());
    // Subscribing after assign is refused.
    assert!(c.subscribe(&topic, "*").is_err());

    // offset_for_timestamp: the first message at or after a time.
    assert_eq!(c.offset_for_timestamp(&q0, 0).unwrap(), 0);

    // A smaller assignment releases the other queues.
    c.assign(vec![q0.clone()]).unwrap();
    assert_eq!(c.assignment(), vec![q0]);
    c.shutdown(Duration::from_secs(10)).unwrap();
}

#[test]
fn pause_stops_delivery_of_those_queues_only() {
    let cluster = Cluster::shared();
    let topic = topic_with_queues(cluster, 4);
    let c = lite(cluster, &unique("lcg")).build().unwrap();
    c.start().unwrap();
    let queues = c.fetch_message_queues(&topic).unwrap();
    c.assign(queues.clone()).unwrap();
    // q0 is paused before anything arrives (its pulls stop); q1 once its messages are
    // buffered (poll keeps them back).
    let (q0, q1) = (queues[0].clone(), queues[1].clone());
    c.pause([q0.clone()]);
    assert!(c.is_paused(&q0));
    send_per_queue(cluster, &topic, &queues, 20);
    let others = (queues.len() - 1) * 20;
    assert!(
        wait_until(Duration::from_secs(60), || c.buffered_messages() >= others),
        "only {} buffered",
        c.buffered_messages()
    );
    c.pause([q1.clone()]);

    let got = poll_n(&c, others - 20, Duration::from_secs(60));
    assert_eq!(got.len(), others - 20);
    assert!(got
        .iter()
        .all(|m| queue_of(m, &topic) != q0 && queue_of(m, &topic) != q1));
    // More polls still give nothing of the paused queues; q1's batch waits in the buffer, q0
    // was not pulled.
    for _ in 0..3 {
        assert!(c.poll(POLL).unwrap().is_empty());
    }
    assert_eq!(c.buffered_messages(), 20);
    c.resume([q0.clone(), q1.clone()]);
    let rest = poll_n(&c, 40, Duration::from_secs(30));
    assert_eq!(rest.len(), 40);
    assert!(rest
        .iter()
        .all(|m| queue_of(m, &topic) == q0 || queue_of(m, &topic) == q1));
    c.shutdown(Duration::from_secs(10)).unwrap();
}

#[test]
fn two_consumers_of_a_group_split_the_queues() {
    let cluster = Cluster::shared();
    let topic = topic_with_queues(cluster, 8);
    let group = unique("lcg");
    let a = lite(cluster, &group)
        .subscribe(topic.clone(), "*")
        .build()
        .unwrap();
    let b = lite(cluster, &group)
        .subscribe(topic.clone(), "*")
        .build()
        .unwrap();
    a.start().unwrap();
    b.start().unwrap();
    let total = 8 * cluster.brokers.len();
    let split = || {
        let (qa, qb) = (a.assignment(), b.assignment());
        let sa: BTreeSet<_> = qa.iter().collect();
        let sb: BTreeSet<_> = qb.iter().collect();
        !qa.is_empty() && !qb.is_empty() && sa.is_disjoint(&sb) && qa.len() + qb.len() == total
    };
    assert!(
        wait_until(Duration::from_secs(60), split),
        "never split: {:?} / {:?}",
        a.assignment(),
        b.assignment()
    );
    let p = producer(&cluster.namesrv_addr, &unique("lpg"));
    produce(&p, &topic, "s", 2000, "T");
    p.shutdown(Duration::from_secs(5)).unwrap();

    let got = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let got = got.clone();
            std::thread::Builder::new()
                .name(format!("poller-{i}"))
                .spawn(move || {
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while got.lock().len() < 2000 && Instant::now() < deadline {
                        let msgs = c.poll(POLL).unwrap();
                        let mine: BTreeSet<MessageQueue> = c.assignment().into_iter().collect();
                        for m in &msgs {
                            assert!(mine.contains(&queue_of(m, &c_topic(m))));
                        }
                        got.lock().extend(msgs.into_iter().map(|m| (i, body(&m))));
                    }
                })
                .unwrap()
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let got = got.lock();
    let bodies: HashSet<&String> = got.iter().map(|(_, b)| b).collect();
    assert_eq!(got.len(), 2000, "duplicates or losses");
    assert_eq!(bodies.len(), 2000);
    assert!(got.iter().any(|(i, _)| *i == 0) && got.iter().any(|(i, _)| *i == 1));
    a.shutdown(Duration::from_secs(10)).unwrap();
    b.shutdown(Duration::from_secs(10)).unwrap();
}

fn c_topic(m: &MessageExt) -> String {
    m.topic().to_owned()
}

#[test]
fn committed_offsets_hold_after_a_restart() {
    let cluster = Cluster::shared();
    let topic = topic_with_queues(cluster, 4);
    let p = producer(&cluster.namesrv_addr, &unique("lpg"));
    produce(&p, &topic, "r", 1000, "T");
    p.shutdown(Duration::from_secs(5)).unwrap();
    let group = unique("lcg");

    let first = lite(cluster, &group)
        .subscribe(topic.clone(), "*")
        .auto_commit(false)
        .build()
        .unwrap();
    first.start().unwrap();
    let part = poll_n(&first, 500, Duration::from_secs(60));
    assert!(part.len() >= 500);
    first.commit_sync().unwrap();
    // Polled after the commit and never committed: these come again.
    let uncommitted = first.poll(Duration::from_secs(5)).unwrap();
    first.shutdown(Duration::from_secs(10)).unwrap();

    let second = lite(cluster, &group)
        .subscribe(topic.clone(), "*")
        .build()
        .unwrap();
    second.start().unwrap();
    let rest = poll_n(&second, 1000 - part.len(), Duration::from_secs(60));
    let before: HashSet<String> = part.iter().map(body).collect();
    let after: HashSet<String> = rest.iter().map(body).collect();
    assert!(before.is_disjoint(&after), "committed messages came again");
    assert_eq!(before.len() + after.len(), 1000);
    for m in &uncommitted {
        assert!(after.contains(&body(m)), "{} was lost", body(m));
    }
    second.shutdown(Duration::from_secs(10)).unwrap();
}

#[test]
fn auto_commit_commits_what_was_polled_at_shutdown() {
    let cluster = Cluster::shared();
    let topic = topic_with_queues(cluster, 2);
    let p = producer(&cluster.namesrv_addr, &unique("lpg"));
    produce(&p, &topic, "a", 200, "T");
    p.shutdown(Duration::from_secs(5)).unwrap();
    let group = unique("lcg");
    let c = lite(cluster, &group)
        .subscribe(topic.clone(), "*")
        .build()
        .unwrap();
    c.start().unwrap();
    assert_exactly_once(&poll_n(&c, 200, Duration::from_secs(60)), 200);
    c.shutdown(Duration::from_secs(10)).unwrap();

    let again = lite(cluster, &group)
        .subscribe(topic.clone(), "*")
        .build()
        .unwrap();
    again.start().unwrap();
    let queues = again.fetch_message_queues(&topic).unwrap();
    let committed: i64 = queues.iter().map(|mq| again.committed(mq).unwrap()).sum();
    assert_eq!(committed, 200);
    assert!(again.poll(POLL).unwrap().is_empty());
    again.shutdown(Duration::from_secs(10)).unwrap();
}

#[test]
fn broadcasting_consumers_each_poll_everything() {
    let cluster = Cluster::shared();
    let topic = topic_with_queues(cluster, 4);
    let group = unique("lbg");
    let dir = std::env::temp_dir().join(unique("lite-offsets"));
    let make = || {
        lite(cluster, &group)
            .message_model(MessageModel::Broadcasting)
            .offset_store_dir(dir.clone())
            .subscribe(topic.clone(), "*")
            .build()
            .unwrap()
    };
    let (a, b) = (make(), make());
    a.start().unwrap();
    b.start().unwrap();
    let p = producer(&cluster.namesrv_addr, &unique("lpg"));
    produce(&p, &topic, "b", 300, "T");
    p.shutdown(Duration::from_secs(5)).unwrap();
    assert_exactly_once(&poll_n(&a, 300, Duration::from_secs(60)), 300);
    assert_exactly_once(&poll_n(&b, 300, Duration::from_secs(60)), 300);
    a.shutdown(Duration::from_secs(10)).unwrap();
    b.shutdown(Duration::from_secs(10)).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn misuse_gets_clear_errors() {
    let cluster = Cluster::shared();
    let c = lite(cluster, &unique("lcg")).build().unwrap();
    match c.poll(POLL) {
        Err(Error::ServiceState { state, .. }) => assert_eq!(state, ServiceState::CreateJust),
        other => panic!("poll before start: {other:?}"),
    }
    assert!(c.commit_sync().is_err());
    let e = DefaultLitePullConsumer::builder("g")
        .auto_commit_interval(Duration::from_millis(10))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("autoCommitIntervalMillis"), "{e}");
    let e = DefaultLitePullConsumer::builder("g")
        .pull_threshold_for_all(0)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("pullThresholdForAll"), "{e}");
    c.subscribe("T", "*").unwrap();
    assert!(c.assign([MessageQueue::new("T", "b", 0)]).is_err());
    c.start().unwrap();
    assert!(c.fetch_message_queues(&unique("NoSuchTopic")).is_err());
    c.shutdown(Duration::from_secs(10)).unwrap();
    assert!(matches!(c.poll(POLL), Err(Error::ServiceState { .. })));
}

#[test]
fn a_topic_listener_hears_of_new_queues() {
    let cluster = Cluster::shared();
    let topic = topic_with_queues(cluster, 2);
    let c = lite(cluster, &unique("lcg"))
        .topic_metadata_check_interval(Duration::from_secs(1))
        .build()
        .unwrap();
    c.start().unwrap();
    let heard: Arc<Mutex<Vec<usize>>> = Arc::default();
    let h = heard.clone();
    c.register_topic_message_queue_change_listener(&topic, move |t: &str, qs: &[MessageQueue]| {
        assert!(qs.iter().all(|q| q.topic == t));
        h.lock().push(qs.len());
    })
    .unwrap();
    // An unknown topic cannot be watched.
    assert!(c
        .register_topic_message_queue_change_listener(
            &unique("NoSuchTopic"),
            |_: &str, _: &[MessageQueue]| {}
        )
        .is_err());
    // The current queues are the baseline: nothing is heard until they change.
    create_topic_on_all_brokers(&raw_client(), cluster, &topic, 6);
    let want = 6 * cluster.brokers.len();
    assert!(
        wait_until(Duration::from_secs(60), || heard.lock().last()
            == Some(&want)),
        "heard {:?}",
        heard.lock()
    );
    // Never told of the queues it started with (with several brokers, the route may grow in
    // steps, each a change).
    let baseline = 2 * cluster.brokers.len();
    assert!(
        heard.lock().iter().all(|n| *n > baseline),
        "heard {:?}",
        heard.lock()
    );
    c.shutdown(Duration::from_secs(10)).unwrap();
}
