//! The push consumer under faults and at scale, against real brokers (rocketmq-rust 1.0.0 started
//! by `tests/support/broker.rs`): a broker restarted mid-consumption, one broker of two killed,
//! and the thread count with many queues. Every wait is a condition with a deadline.
//!
//! The tests of this file run one at a time (see [`serial`]): they start private clusters, kill
//! brokers and count the process's threads, which concurrent tests would disturb.

mod support;

use std::collections::{HashMap, HashSet};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError};
use parking_lot::{Mutex, MutexGuard};
use rocketmq_sync::DefaultMQProducer;
use rocketmq_sync::{ConsumeConcurrentlyContext, DefaultMQPushConsumer};
use rocketmq_sync::{Message, MessageExt};
use support::broker::{init_logger, Cluster, ClusterOptions};
use support::client::*;
use support::consume::*;

/// Serialises the tests of this binary.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
}

/// Adds every delivery in `got` to `count` (body → times delivered).
fn tally(count: &mut HashMap<String, usize>, got: impl IntoIterator<Item = Delivery>) {
    for d in got {
        *count.entry(d.body).or_default() += 1;
    }
}

/// Receives into `count` (and the delivery times into `times`) until it holds every body of
/// `expected` or `within` passes; returns the bodies still missing.
fn receive_all(
    rx: &Receiver<Delivery>,
    count: &mut HashMap<String, usize>,
    times: &mut Vec<Instant>,
    expected: &HashSet<String>,
    within: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + within;
    let missing = |count: &HashMap<String, usize>| {
        expected.iter().filter(|b| !count.contains_key(*b)).count()
    };
    while missing(count) > 0 {
        match rx.recv_deadline(deadline) {
            Ok(d) => {
                times.push(d.at);
                *count.entry(d.body).or_default() += 1;
            }
            Err(_) => break,
        }
    }
    let mut left: Vec<String> = expected
        .iter()
        .filter(|b| !count.contains_key(*b))
        .cloned()
        .collect();
    left.sort();
    left
}

/// The longest time in `times` (plus `from`) without an entry, counted from `from`.
fn largest_gap(from: Instant, times: &[Instant]) -> Duration {
    let mut t: Vec<Instant> = times.iter().copied().filter(|t| *t >= from).collect();
    t.push(from);
    t.sort();
    t.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default()
}

/// Waits until `c` holds exactly `n` queues of `topic`.
fn wait_queues(c: &DefaultMQPushConsumer, topic: &str, n: usize, within: Duration) {
    let ok = support::broker::wait_until(within, || {
        c.queue_stats()
            .iter()
            .filter(|q| q.message_queue.topic == topic)
            .count()
            == n
    });
    assert!(
        ok,
        "the consumer never held the {n} queues of {topic}: {:?}",
        c.queue_stats()
    );
}

#[test]
fn broker_restart_mid_consumption_loses_nothing() {
    let _serial = serial();
    init_logger();
    let started = Instant::now();
    let mut cluster = Cluster::start(ClusterOptions {
        brokers: 1,
        auto_create_topic: true,
    });
    let topic = topic_with_queues(&cluster, 4);
    let p = producer(&cluster.namesrv_addr, &unique("pg"));
    produce(&p, &topic, "before", 2000, "T");

    let (tx, rx) = unbounded();
    // A listener of about 5 ms a message on 4 threads takes seconds for the backlog, so the
    // broker dies while pulls, consumption and offset commits are all under way.
    let record = deliveries(tx);
    let c = consumer_builder(&cluster, &unique("cg"), &topic)
        .consume_threads(4, 4)
        .register_message_listener_concurrently(
            move |msgs: &[MessageExt], ctx: &mut ConsumeConcurrentlyContext| {
                thread::sleep(Duration::from_millis(5) * msgs.len() as u32);
                record(msgs, ctx)
            },
        )
        .build()
        .unwrap();
    c.start().unwrap();
    let mut count = HashMap::new();
    tally(&mut count, collect(&rx, 500, Duration::from_secs(60)));
    assert!(
        count.len() >= 500,
        "only {} messages consumed before the restart",
        count.len()
    );

    cluster.kill_broker("broker-a");
    let killed = Instant::now();
    let consumed_at_kill = count.len() + rx.len();
    eprintln!("{consumed_at_kill} of 2000 consumed when broker-a died");
    assert!(
        consumed_at_kill < 2000,
        "the backlog was consumed before the kill: the test proves nothing"
    );
    cluster.restart_broker("broker-a");
    eprintln!("broker-a was down for {:?}", killed.elapsed());
    produce(&p, &topic, "after", 1000, "T");

    let expected: HashSet<String> = (0..2000)
        .map(|i| format!("before-{i}"))
        .chain((0..1000).map(|i| format!("after-{i}")))
        .collect();
    let mut times = Vec::new();
    let missing = receive_all(
        &rx,
        &mut count,
        &mut times,
        &expected,
        Duration::from_secs(180),
    );
    assert!(
        missing.is_empty(),
        "{} of 3000 messages never arrived after the restart, e.g. {:?}; queues {:?}",
        missing.len(),
        &missing[..missing.len().min(10)],
        c.queue_stats()
    );
    // Late duplicates (redelivery of what was consumed but not yet committed) are allowed.
    tally(&mut count, collect(&rx, usize::MAX, Duration::from_secs(2)));
    assert_eq!(count.len(), 3000, "nothing but what was sent arrived");
    let dups = count.values().filter(|n| **n > 1).count();
    let extra: usize = count.values().map(|n| n - 1).sum();
    // The restarted broker forgot the consumer's subscription; consumption must resume as soon
    // as the broker is back (a fresh heartbeat), not with the next periodic one 30 s later.
    let gap = largest_gap(killed, &times);
    eprintln!(
        "broker restart: 3000 distinct received, {dups} duplicated ({extra} extra deliveries), \
         largest pause after the kill {gap:?}, in {:?}",
        started.elapsed()
    );
    assert!(
        gap < Duration::from_secs(15),
        "consumption paused for {gap:?} around the broker restart"
    );
    c.shutdown(Duration::from_secs(10)).unwrap();
    p.shutdown(Duration::from_secs(5)).unwrap();
}

/// A message the producer thread sent, and where it landed.
struct Sent {
    body: String,
    broker: String,
    at: Instant,
}

/// Sends `"{prefix}-{seq}"` with sync sends until `stop` says so (or is dropped); returns what
/// succeeded and how many sends failed.
fn produce_until_stopped(
    p: DefaultMQProducer,
    topic: String,
    prefix: &'static str,
    stop: Receiver<()>,
) -> thread::JoinHandle<(Vec<Sent>, usize)> {
    thread::Builder::new()
        .name("test-producer".into())
        .spawn(move || {
            let mut sent = Vec::new();
            let mut failed = 0;
            for seq in 0u64.. {
                let body = format!("{prefix}-{seq}");
                match p.send(&Message::new(topic.clone(), body.clone())) {
                    Ok(r) => sent.push(Sent {
                        body,
                        broker: r.message_queue().broker_name.clone(),
                        at: Instant::now(),
                    }),
                    Err(e) => {
                        failed += 1;
                        log::info!("send {body} failed: {e}");
                    }
                }
                // Paces the sends (about 100 a second) and waits for the stop signal.
                match stop.recv_timeout(Duration::from_millis(10)) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            p.shutdown(Duration::from_secs(5)).unwrap();
            (sent, failed)
        })
        .expect("producer thread starts")
}

#[test]
fn killing_one_of_two_brokers_does_not_pause_consumption_from_the_other() {
    let _serial = serial();
    init_logger();
    let started = Instant::now();
    let cluster = Cluster::start(ClusterOptions {
        brokers: 2,
        auto_create_topic: true,
    });
    let topic = topic_with_queues(&cluster, 4);
    let (tx, rx) = unbounded();
    let c = consumer_builder(&cluster, &unique("cg"), &topic)
        .register_message_listener_concurrently(deliveries(tx))
        .build()
        .unwrap();
    c.start().unwrap();
    wait_queues(&c, &topic, 8, Duration::from_secs(60));
    let brokers: HashSet<String> = c
        .queue_stats()
        .into_iter()
        .filter(|q| q.message_queue.topic == topic)
        .map(|q| q.message_queue.broker_name)
        .collect();
    assert_eq!(
        brokers,
        HashSet::from(["broker-a".to_owned(), "broker-b".to_owned()])
    );

    let (stop_tx, stop_rx) = bounded::<()>(1);
    let producing = produce_until_stopped(
        producer(&cluster.namesrv_addr, &unique("pg")),
        topic.clone(),
        "s",
        stop_rx,
    );
    // Consumption runs from both brokers before the kill.
    let mut got: Vec<Delivery> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !["broker-a", "broker-b"]
        .iter()
        .all(|b| got.iter().any(|d| d.queue.broker_name == *b))
    {
        match rx.recv_deadline(deadline) {
            Ok(d) => got.push(d),
            Err(_) => panic!("consumption never started from both brokers: {got:?}"),
        }
    }

    cluster.kill_broker("broker-a");
    let killed = Instant::now();
    // Keep producing well past one pull timeout (30 s) so a pause of that length would show.
    let window = Duration::from_secs(40);
    while let Ok(d) = rx.recv_deadline(killed + window) {
        got.push(d);
    }
    stop_tx.send(()).unwrap();
    let (sent, failed) = producing.join().expect("producer thread");
    let on_b: HashSet<String> = sent
        .iter()
        .filter(|s| s.broker == "broker-b")
        .map(|s| s.body.clone())
        .collect();
    let on_b_after_kill = sent
        .iter()
        .filter(|s| s.broker == "broker-b" && s.at >= killed)
        .count();
    assert!(
        on_b_after_kill > 100,
        "the producer barely reached broker-b after the kill ({on_b_after_kill} sends, {failed} failures)"
    );

    let mut count = HashMap::new();
    tally(&mut count, got.iter().cloned());
    let missing = receive_all(
        &rx,
        &mut count,
        &mut Vec::new(),
        &on_b,
        Duration::from_secs(60),
    );
    // Deliveries received while waiting for the missing ones are not in `got`; that is fine
    // for the gap: the window of interest ends with the producer.
    assert!(
        missing.is_empty(),
        "{} of {} messages sent to broker-b never arrived, e.g. {:?}",
        missing.len(),
        on_b.len(),
        &missing[..missing.len().min(10)]
    );

    // The largest pause between deliveries from broker-b queues, from the kill to the end.
    let times: Vec<Instant> = got
        .iter()
        .filter(|d| d.queue.broker_name == "broker-b" && d.at >= killed)
        .map(|d| d.at)
        .collect();
    let max_gap = largest_gap(killed, &times);
    eprintln!(
        "two brokers, broker-a killed: {} deliveries from broker-b after the kill, largest gap {max_gap:?}; \
         {} sends to broker-b ({on_b_after_kill} after the kill), {failed} failed sends; {:?} in all",
        times.len(),
        on_b.len(),
        started.elapsed()
    );
    assert!(
        times.len() > 100,
        "consumption from broker-b stopped after the kill"
    );
    assert!(
        max_gap < Duration::from_secs(30),
        "consumption from broker-b paused for {max_gap:?} after broker-a died"
    );
    c.shutdown(Duration::from_secs(10)).unwrap();
}

/// `Threads:` of `/proc/self/status`.
fn thread_count() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("a Threads: line")
}

/// Names of this process's threads, sorted (for failure messages).
fn thread_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
                .map(|s| s.trim().to_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The thread count once it has stayed the same for a second (polled, with a deadline).
fn settled_thread_count() -> usize {
    let mut last = thread_count();
    let mut since = Instant::now();
    let ok = support::broker::wait_until(Duration::from_secs(30), || {
        let now = thread_count();
        if now != last {
            last = now;
            since = Instant::now();
        }
        since.elapsed() >= Duration::from_secs(1)
    });
    assert!(ok, "the thread count never settled: {:?}", thread_names());
    last
}

/// Starts a consumer with a 2-thread pool on `topic` (`queues` queues holding `msgs` messages),
/// waits until it holds every queue, has consumed everything and is idle; returns it and the
/// threads it added.
fn idle_consumer_thread_delta(
    cluster: &Cluster,
    topic: &str,
    queues: usize,
    msgs: usize,
) -> (DefaultMQPushConsumer, usize, Vec<String>) {
    let before = settled_thread_count();
    let names_before = thread_names();
    let (tx, rx) = unbounded();
    let c = consumer_builder(cluster, &unique("cg"), topic)
        .consume_threads(2, 2)
        .register_message_listener_concurrently(deliveries(tx))
        .build()
        .unwrap();
    c.start().unwrap();
    wait_queues(&c, topic, queues, Duration::from_secs(60));
    let got = collect(&rx, msgs, Duration::from_secs(60));
    let distinct: HashSet<&str> = got.iter().map(|d| d.body.as_str()).collect();
    assert_eq!(distinct.len(), msgs, "every message of {topic} consumed");
    let idle = support::broker::wait_until(Duration::from_secs(30), || {
        c.queue_stats()
            .iter()
            .all(|q| q.cached_msg_count == 0 && q.lag == 0)
    });
    assert!(idle, "the consumer never went idle: {:?}", c.queue_stats());
    let after = settled_thread_count();
    let mut added = thread_names();
    for n in &names_before {
        if let Some(i) = added.iter().position(|a| a == n) {
            added.remove(i);
        }
    }
    (c, after.saturating_sub(before), added)
}

#[test]
fn thread_count_does_not_grow_with_queues() {
    let _serial = serial();
    init_logger();
    let started = Instant::now();
    let cluster = Cluster::shared();
    let client = raw_client();
    let small = topic_with_queues(cluster, 8);
    let large = unique("CTopic64");
    create_topic_on_all_brokers(&client, cluster, &large, 64);
    let route = route(&client, &cluster.namesrv_addr, &large).expect("route of the 64-queue topic");
    let large_queues: usize = route
        .queue_datas
        .iter()
        .map(|q| q.read_queue_nums as usize)
        .sum();
    assert!(
        large_queues >= 32,
        "the broker gave the large topic only {large_queues} queues"
    );
    // Two messages per queue, so every queue is really pulled and consumed.
    let p = producer(&cluster.namesrv_addr, &unique("pg"));
    produce(&p, &small, "small", 16, "T");
    produce(&p, &large, "large", 2 * large_queues, "T");

    let (c8, delta8, added8) = idle_consumer_thread_delta(cluster, &small, 8, 16);
    let (c64, delta64, added64) =
        idle_consumer_thread_delta(cluster, &large, large_queues, 2 * large_queues);
    eprintln!(
        "threads added: 8 queues -> {delta8} {added8:?}; {large_queues} queues -> {delta64} {added64:?}; in {:?}",
        started.elapsed()
    );
    assert!(delta8 > 0, "starting a consumer added no thread at all?");
    assert_eq!(
        delta64, delta8,
        "a consumer of {large_queues} queues added {delta64} threads ({added64:?}), one of 8 added {delta8} ({added8:?})"
    );
    c64.shutdown(Duration::from_secs(10)).unwrap();
    c8.shutdown(Duration::from_secs(10)).unwrap();
    p.shutdown(Duration::from_secs(5)).unwrap();
    drop(client);
}

#[test]
fn dropping_a_running_consumer_releases_its_threads() {
    let _serial = serial();
    init_logger();
    let cluster = Cluster::shared();
    let topic = unique("DropTopic");
    create_topic_on_all_brokers(&raw_client(), cluster, &topic, 4);
    let before = settled_thread_count();
    let names_before = thread_names();
    let (tx, _rx) = unbounded();
    let c = consumer_builder(cluster, &unique("dg"), &topic)
        .consume_threads(2, 2)
        .register_message_listener_concurrently(deliveries(tx))
        .build()
        .unwrap();
    c.start().unwrap();
    wait_queues(&c, &topic, 4, Duration::from_secs(60));
    assert!(thread_count() > before, "the consumer started threads");
    // Dropped without shutdown(): the local half of shutdown runs, nothing blocks for long.
    let t = Instant::now();
    drop(c);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "drop took {:?}",
        t.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while thread_count() > before {
        assert!(
            Instant::now() < deadline,
            "threads left after drop: {:?} (before: {names_before:?})",
            thread_names()
        );
        thread::sleep(Duration::from_millis(50));
    }
    eprintln!("threads released {:?} after the drop", t.elapsed());
}
