//! Network faults between the client and a real broker (issue 9, scenarios 4 and 9), made by an
//! in-process TCP proxy (`tests/support/proxy.rs`): connections severed, stalled (half-open) and
//! slowed, and a broker answering `SYSTEM_BUSY` to sends.
//!
//! # How the proxy gets between the client and the broker
//!
//! The client learns a broker's address from the name server's routes, and the rocketmq-rust
//! broker registers the port it listens on. So every test starts two proxies: one in front of
//! each broker (the one that makes the faults), and one in front of the name server that rewrites
//! the broker's address in every response body into the broker proxy's. The producer and the
//! consumer are given the name server proxy's address; every connection they open to the broker
//! then goes through the broker proxy. The name server proxy itself is never faulted.
//!
//! Every scenario keeps the at-least-once account in a [`Ledger`] and ends with
//! `report(..).check(window)`, where `window` is the number of duplicate deliveries the fault can
//! cause, derived in each test's doc comment. The tests run one at a time ([`serial`]).

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};
use rocketmq_sync::{ConsumeFromWhere, DefaultMQProducer, DefaultMQPushConsumer};
use support::broker::{init_logger, wait_until, Cluster};
use support::client::{producer, unique};
use support::consume::topic_with_queues;
use support::ledger::{outcome_unknown, produce_numbered, recording, Ledger};
use support::proxy::Proxy;

/// Serialises the tests of this binary: they measure gaps and recovery times, which a
/// concurrent test's load would distort.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
}

/// Message body size of every scenario.
const BODY: usize = 64;

/// A proxy in front of every broker of a cluster, and a name server proxy whose routes name them.
struct ProxiedCluster {
    brokers: Vec<Proxy>,
    namesrv: Proxy,
}

impl ProxiedCluster {
    fn new(cluster: &Cluster) -> ProxiedCluster {
        let brokers: Vec<Proxy> = cluster
            .brokers
            .iter()
            .map(|b| Proxy::start(b.addr.clone()))
            .collect();
        let mut ns = Proxy::builder(cluster.namesrv_addr.clone());
        for (b, p) in cluster.brokers.iter().zip(&brokers) {
            ns = ns.rewrite(format!("\"{}\"", b.addr), format!("\"{}\"", p.addr()));
        }
        ProxiedCluster {
            brokers,
            namesrv: ns.start(),
        }
    }

    /// The address clients are given.
    fn namesrv_addr(&self) -> String {
        self.namesrv.addr()
    }

    fn each(&self, f: impl Fn(&Proxy)) {
        self.brokers.iter().for_each(f);
    }

    fn sever(&self) -> usize {
        self.brokers.iter().map(Proxy::sever).sum()
    }

    fn stall(&self) -> usize {
        self.brokers.iter().map(Proxy::stall).sum()
    }

    /// Stalled connections still open (the client has not given them up yet).
    fn stalled_open(&self) -> usize {
        self.brokers.iter().map(|p| p.stats().stalled).sum()
    }

    fn accepted(&self) -> u64 {
        self.brokers.iter().map(|p| p.stats().accepted).sum()
    }
}

/// A concurrent consumer of `topic` through `net`, recording in `ledger`.
fn consumer(net: &ProxiedCluster, topic: &str, ledger: &Ledger) -> DefaultMQPushConsumer {
    let c = DefaultMQPushConsumer::builder(unique("cg"))
        .namesrv_addr(net.namesrv_addr())
        .instance_name(unique("cinst"))
        .subscribe(topic, "*")
        .consume_from_where(ConsumeFromWhere::FirstOffset)
        .register_message_listener_concurrently(recording(ledger))
        .build()
        .expect("valid consumer config");
    c.start().expect("consumer starts");
    c
}

/// Producer threads sending numbered messages from disjoint ranges until stopped.
struct Producing {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<u64>>,
}

impl Producing {
    /// `threads` threads sharing `p`, each sending one message at a time, `pause` apart.
    fn start(
        p: &DefaultMQProducer,
        topic: &str,
        ledger: &Ledger,
        threads: u64,
        pause: Duration,
    ) -> Producing {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|t| {
                let (p, topic, ledger, stop) =
                    (p.clone(), topic.to_owned(), ledger.clone(), stop.clone());
                thread::Builder::new()
                    .name(format!("test-producer-{t}"))
                    .spawn(move || {
                        let first = t * 1_000_000;
                        produce_numbered(
                            &p,
                            &topic,
                            first..first + 1_000_000,
                            BODY,
                            &ledger,
                            Some(pause),
                            &stop,
                        )
                    })
                    .expect("producer thread starts")
            })
            .collect();
        Producing { stop, threads }
    }

    /// Stops and joins the threads; returns how many sends they attempted.
    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Release);
        self.threads
            .into_iter()
            .map(|t| t.join().expect("producer thread"))
            .sum()
    }
}

/// Lets a fault go on (or the load run) for `d`. This paces the scenario; every outcome is
/// checked by waiting on a condition.
fn hold(d: Duration) {
    thread::sleep(d);
}

/// Waits until the ledger has `more` acknowledged sends than `from`, or panics after `within`.
fn wait_produced(ledger: &Ledger, from: usize, more: usize, within: Duration, what: &str) {
    assert!(
        wait_until(within, || ledger.produced_count() >= from + more),
        "{what}: fewer than {more} sends acknowledged within {within:?} ({} in all)",
        ledger.produced_count()
    );
}

/// Waits until `more` distinct messages beyond `from` were consumed, or panics after `within`.
fn wait_consumed(ledger: &Ledger, from: usize, more: usize, within: Duration, what: &str) {
    assert!(
        ledger.wait_consumed_at_least(from + more, within),
        "{what}: fewer than {more} more messages consumed within {within:?} ({} in all)",
        ledger.consumed_count()
    );
}

/// Every connection to the broker is severed every 5 s for 30 s while a producer (one thread,
/// sync sends about every 5 ms) and a consumer run; between the third and the fourth sever, new
/// connections are refused as well (accepted and closed at once). Nothing acknowledged may be
/// lost, and the client must be back on new connections after each cut.
///
/// In-flight window: **one duplicate per sever**. A sever cuts at most one send in flight (one
/// producer thread, one sync send at a time). If the broker had stored it, the producer's retry
/// stores it again: one extra copy. A refused connection never reaches the broker, so the sends
/// that fail on one store nothing. The consumer holds its queues throughout (one member, its
/// offsets are in memory), so a pull cut off is repeated from the same offset and redelivers
/// nothing.
#[test]
fn severed_connections_lose_nothing() {
    let _serial = serial();
    init_logger();
    let cluster = Cluster::shared();
    let net = ProxiedCluster::new(cluster);
    let topic = topic_with_queues(cluster, 4);
    let ledger = Ledger::new();
    let p = producer(&net.namesrv_addr(), &unique("pg"));
    let c = consumer(&net, &topic, &ledger);
    let load = Producing::start(&p, &topic, &ledger, 1, Duration::from_millis(5));
    wait_consumed(
        &ledger,
        0,
        100,
        Duration::from_secs(60),
        "before the faults",
    );

    const SEVERS: usize = 6;
    ledger.fault_started();
    let accepted_before = net.accepted();
    let mut refused = 0;
    for i in 1..=SEVERS {
        hold(Duration::from_secs(5));
        match i {
            3 => net.each(|b| b.refuse(true)),
            4 => {
                net.each(|b| b.refuse(false));
                refused = net.accepted() - accepted_before;
            }
            _ => {}
        }
        let n = net.sever();
        eprintln!("sever {i}: {n} connection(s) cut");
        // During the refusal, the client may have no connection open at that moment.
        assert!(n > 0 || i == 4, "sever {i}: no connection to cut");
    }
    ledger.fault_ended();
    let (produced, consumed) = (ledger.produced_count(), ledger.consumed_count());
    wait_produced(
        &ledger,
        produced,
        100,
        Duration::from_secs(30),
        "after the last sever",
    );
    wait_consumed(
        &ledger,
        consumed,
        100,
        Duration::from_secs(30),
        "after the last sever",
    );
    let attempted = load.stop();
    let all = ledger.wait_all_consumed(Duration::from_secs(60));
    let accepted = net.accepted() - accepted_before;
    eprintln!(
        "{attempted} sends attempted; {accepted} connections accepted after the first sever, \
         {refused} of them up to the end of the refusal; broker proxy {:?}",
        net.brokers[0].stats()
    );
    assert!(
        accepted >= SEVERS as u64,
        "the client reconnected {accepted} times for {SEVERS} severs"
    );
    c.shutdown(Duration::from_secs(10)).unwrap();
    p.shutdown(Duration::from_secs(5)).unwrap();
    let report = ledger.report("4a connections severed every 5 s for 30 s, refused for 5 s");
    report.check(SEVERS as u64);
    assert!(all, "not everything produced was consumed");
}

/// Every connection to the broker stalls (half-open: nothing forwarded, nothing closed) while a
/// producer and a consumer run.
///
/// * First a pause of 1.5 s, shorter than every timeout, then forwarding resumes: the client
///   keeps its connections (none is opened) and what piled up is delivered.
/// * Then a stall that never ends, as after a firewall dropped the connections' state;
///   connections opened afterwards work. The client must notice on its own that the old
///   connections are dead and move to new ones. The fault lasts until the client closed the last
///   stalled connection (the report's "fault" is that detection time); recovery runs from there
///   to the next delivery.
///
/// Expected detection: the producer's sync send times out after 3 s and the timeout gives up the
/// connection; the consumer's connection is given up by the first sync call on it that times
/// out: the rebalance's consumer-list query (every 20 s) or the heartbeat (every 30 s).
///
/// In-flight window: **1**. Of the one send in flight when the stall began, the broker may have
/// stored the message with its answer stuck in the stall: the retry after the timeout stores it
/// again. A send written into the stall never reaches the broker (the proxy drops what piled up
/// when the client closes). The consumer's pull stuck in the stall is repeated from the same
/// offset on a new connection: nothing delivered twice.
#[test]
fn stalled_connections_are_given_up_and_replaced() {
    let _serial = serial();
    init_logger();
    let cluster = Cluster::shared();
    let net = ProxiedCluster::new(cluster);
    let topic = topic_with_queues(cluster, 4);
    let ledger = Ledger::new();
    let p = producer(&net.namesrv_addr(), &unique("pg"));
    let c = consumer(&net, &topic, &ledger);
    let load = Producing::start(&p, &topic, &ledger, 1, Duration::from_millis(5));
    wait_consumed(&ledger, 0, 100, Duration::from_secs(60), "before the stall");

    // A pause the client must ride out on the same connections.
    let accepted = net.accepted();
    let n = net.stall();
    assert!(n >= 2, "only {n} connection(s) to pause");
    hold(Duration::from_millis(1500));
    net.each(Proxy::resume);
    let (produced, consumed) = (ledger.produced_count(), ledger.consumed_count());
    wait_produced(
        &ledger,
        produced,
        100,
        Duration::from_secs(15),
        "after a short pause",
    );
    wait_consumed(
        &ledger,
        consumed,
        100,
        Duration::from_secs(15),
        "after a short pause",
    );
    assert_eq!(
        net.accepted(),
        accepted,
        "the client gave up a connection that paused for 1.5 s"
    );

    let stalled_at = Instant::now();
    let n = net.stall();
    ledger.fault_started();
    let produced = ledger.produced_count();
    assert!(
        n >= 2,
        "only {n} connection(s) to stall: expected the producer's and the consumer's"
    );
    eprintln!("stalled {n} connection(s)");
    // The producer gives up its connection after one send timeout and sends on a new one.
    wait_produced(
        &ledger,
        produced,
        100,
        Duration::from_secs(15),
        "during the stall",
    );
    eprintln!(
        "the producer sends again {:?} after the stall",
        stalled_at.elapsed()
    );
    assert!(
        wait_until(Duration::from_secs(90), || net.stalled_open() == 0),
        "{} stalled connection(s) still in use {:?} after the stall",
        net.stalled_open(),
        stalled_at.elapsed()
    );
    ledger.fault_ended();
    eprintln!(
        "every stalled connection given up {:?} after the stall",
        stalled_at.elapsed()
    );
    let consumed = ledger.consumed_count();
    wait_consumed(
        &ledger,
        consumed,
        100,
        Duration::from_secs(30),
        "after the stall",
    );
    let attempted = load.stop();
    let all = ledger.wait_all_consumed(Duration::from_secs(60));
    eprintln!(
        "{attempted} sends attempted; broker proxy {:?}",
        net.brokers[0].stats()
    );
    c.shutdown(Duration::from_secs(10)).unwrap();
    p.shutdown(Duration::from_secs(5)).unwrap();
    let report = ledger.report("4b connections stalled 1.5 s, then stalled for good (half-open)");
    report.check(1);
    assert!(all, "not everything produced was consumed");
}

/// Every frame to and from the broker is held 200 ms (a 400 ms round trip) for 20 s while four
/// producer threads and a consumer run. Everything must still arrive, during the slowness too.
///
/// In-flight window: **0**. A 400 ms round trip stays far below every call's timeout (3 s for a
/// send, 30 s for a pull): no call fails, nothing is retried, so nothing may arrive twice.
#[test]
fn slow_connections_deliver_everything_once() {
    let _serial = serial();
    init_logger();
    let cluster = Cluster::shared();
    let net = ProxiedCluster::new(cluster);
    let topic = topic_with_queues(cluster, 4);
    let ledger = Ledger::new();
    let p = producer(&net.namesrv_addr(), &unique("pg"));
    let c = consumer(&net, &topic, &ledger);
    let load = Producing::start(&p, &topic, &ledger, 4, Duration::from_millis(5));
    wait_consumed(&ledger, 0, 100, Duration::from_secs(60), "before the delay");

    net.each(|b| b.set_delay(Duration::from_millis(200)));
    ledger.fault_started();
    let (produced, consumed) = (ledger.produced_count(), ledger.consumed_count());
    hold(Duration::from_secs(20));
    // Both ways kept flowing while every frame waited 200 ms.
    wait_produced(&ledger, produced, 20, Duration::ZERO, "during the delay");
    wait_consumed(&ledger, consumed, 20, Duration::ZERO, "during the delay");
    eprintln!(
        "during the delay: {} sends acknowledged, {} messages consumed",
        ledger.produced_count() - produced,
        ledger.consumed_count() - consumed
    );
    net.each(|b| b.set_delay(Duration::ZERO));
    ledger.fault_ended();
    let attempted = load.stop();
    let all = ledger.wait_all_consumed(Duration::from_secs(60));
    eprintln!(
        "{attempted} sends attempted; broker proxy {:?}",
        net.brokers[0].stats()
    );
    c.shutdown(Duration::from_secs(10)).unwrap();
    p.shutdown(Duration::from_secs(5)).unwrap();
    let report = ledger.report("4c connections slowed by 200 ms per frame for 20 s");
    report.check(0);
    assert!(all, "not everything produced was consumed");
}

/// Sends `n` numbered messages from `first` one at a time, recording each outcome; every failure
/// must be a `SYSTEM_BUSY` refusal (the message was not stored). Returns the failures.
fn send_expecting_busy(
    p: &DefaultMQProducer,
    topic: &str,
    first: u64,
    n: u64,
    ledger: &Ledger,
) -> u64 {
    let mut failed = 0;
    for i in first..first + n {
        match p.send(&Ledger::message(topic, i, BODY)) {
            Ok(_) => ledger.sent(i),
            Err(e) => {
                assert!(
                    e.is_system_busy(),
                    "send of seq-{i} failed, but not busy: {e}"
                );
                assert!(
                    !outcome_unknown(&e),
                    "a busy refusal has a known outcome: {e}"
                );
                ledger.send_failed(i, false);
                failed += 1;
            }
        }
    }
    failed
}

/// The broker (the proxy in front of it) answers sends `SYSTEM_BUSY`: first every second send
/// request, then every send for 10 s. A `SYSTEM_BUSY` answer means the broker refused the message
/// before storing it, so the producer may send it again without risking a duplicate.
///
/// * Every second send refused: each send succeeds on its retry; none fails.
/// * Every send refused for 10 s: each send fails with `SYSTEM_BUSY` after its attempts (none
///   is acknowledged), the producer waiting between attempts rather than hammering the broker;
///   once the broker takes sends again, the next send succeeds.
///
/// In-flight window: **0**. Nothing times out and no connection breaks, and a refused attempt
/// stored nothing: no message is stored twice.
#[test]
fn system_busy_broker_producer_backs_off_and_recovers() {
    let _serial = serial();
    init_logger();
    let cluster = Cluster::shared();
    let net = ProxiedCluster::new(cluster);
    let topic = topic_with_queues(cluster, 4);
    let ledger = Ledger::new();
    let p = producer(&net.namesrv_addr(), &unique("pg"));
    let c = consumer(&net, &topic, &ledger);
    let busy_answers = || -> u64 {
        net.brokers
            .iter()
            .map(|b| b.stats().sends_answered_busy)
            .sum()
    };

    // Every second send request refused.
    net.each(|b| b.system_busy_every(2));
    let failed = send_expecting_busy(&p, &topic, 0, 100, &ledger);
    let refused = busy_answers();
    eprintln!("every 2nd send refused: {refused} refusals, {failed} of 100 sends failed");
    assert!(
        refused >= 50,
        "only {refused} sends were refused: the fault did not happen"
    );
    assert_eq!(
        failed, 0,
        "sends failed although a retry would have been accepted"
    );

    // Every send refused for 10 s.
    net.each(|b| b.inject_system_busy(true));
    ledger.fault_started();
    let busy_from = Instant::now();
    let mut next = 1_000_000;
    let (mut busy_sends, mut busy_failed) = (0, 0);
    while busy_from.elapsed() < Duration::from_secs(10) {
        busy_failed += send_expecting_busy(&p, &topic, next, 1, &ledger);
        busy_sends += 1;
        next += 1;
    }
    let refused_busy = busy_answers() - refused;
    net.each(|b| b.inject_system_busy(false));
    ledger.fault_ended();
    let busy_ended = Instant::now();
    assert_eq!(
        busy_failed, busy_sends,
        "a send was acknowledged while every send was refused"
    );
    // Recovery: the first send after the broker takes sends again succeeds.
    let recovered = p.send(&Ledger::message(&topic, next, BODY));
    let send_recovery = busy_ended.elapsed();
    match recovered {
        Ok(_) => ledger.sent(next),
        Err(e) => panic!("the first send after the busy period failed: {e}"),
    }
    eprintln!(
        "busy for 10 s: {busy_sends} sends failed after {refused_busy} refused attempts \
         ({:.1} attempts and {:?} per send); first send after it acknowledged in {send_recovery:?}",
        refused_busy as f64 / busy_sends as f64,
        Duration::from_secs(10) / busy_sends.max(1) as u32
    );
    let failed_after = send_expecting_busy(&p, &topic, next + 1, 200, &ledger);
    assert_eq!(failed_after, 0, "sends failed after the busy period");

    let all = ledger.wait_all_consumed(Duration::from_secs(60));
    c.shutdown(Duration::from_secs(10)).unwrap();
    p.shutdown(Duration::from_secs(5)).unwrap();
    let report =
        ledger.report("9 broker answering SYSTEM_BUSY (every 2nd send, then all for 10 s)");
    report.check(0);
    assert!(all, "not everything produced was consumed");
}

/// A broker address that accepts connections and closes them at once (a load balancer without a
/// backend, a broker refusing clients) costs a failed send a few connections, not a storm: the
/// heartbeat a new connection sets off must not set off another one when its own connection
/// is closed at once.
#[test]
fn connections_closed_at_once_cause_no_reconnect_storm() {
    let _serial = serial();
    init_logger();
    let cluster = Cluster::shared();
    let net = ProxiedCluster::new(cluster);
    let topic = topic_with_queues(cluster, 4);
    let p = producer(&net.namesrv_addr(), &unique("pg"));
    p.send(&Ledger::message(&topic, 0, BODY))
        .expect("a send before the fault");

    net.each(|b| b.refuse(true));
    net.sever();
    let before = net.accepted();
    let err = p
        .send(&Ledger::message(&topic, 1, BODY))
        .expect_err("no connection to the broker lasts");
    eprintln!("the send failed: {err}");
    // Whatever the failed send set off has run after this long; a loop would still be running.
    hold(Duration::from_secs(2));
    let made = net.accepted() - before;
    eprintln!("{made} connections made for one failed send (3 attempts)");
    assert!(
        made <= 20,
        "{made} connections made for one failed send of 3 attempts: a reconnect loop"
    );
    net.each(|b| b.refuse(false));
    p.send(&Ledger::message(&topic, 2, BODY))
        .expect("sends work again once connections are accepted");
    p.shutdown(Duration::from_secs(5)).unwrap();
}
