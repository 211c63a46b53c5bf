//! `TransactionMQProducer` against a real name server and broker (rocketmq-rust 1.0.0). The
//! broker checks undecided half messages every second here (`transactionCheckInterval` 1000 ms,
//! `transactionTimeout` 1000 ms instead of 30 s and 6 s), so the checks come within seconds.
//! Run against an external cluster (`NAMESRV_ADDR`), its brokers need the settings of
//! `cluster()`.
//!
//! What a consumer receives is the proof: a committed message arrives, a rolled-back one never
//! does. "Never" is shown by causality, not by waiting: a message whose commit comes from a later
//! check round is consumed after the rollback was answered, and the rolled-back one is still
//! absent then.

mod support;

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use rocketmq_sync::{
    DefaultMQPushConsumer, LocalTransactionState, Message, MessageExt, SendStatus,
    TransactionMQProducer,
};
use support::broker::{wait_until, Cluster, ClusterOptions};
use support::client::unique;
use support::consume::{collect, consumer_builder, deliveries, topic_with_queues, Delivery};

/// Long enough for a few check rounds of one second each on a loaded machine.
const WAIT: Duration = Duration::from_secs(60);

fn cluster() -> &'static Cluster {
    support::broker::init_logger();
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        // An external cluster must have the settings below.
        if let Ok(addr) = std::env::var("NAMESRV_ADDR") {
            return Cluster::external(addr.trim());
        }
        Cluster::start_with_broker_settings(
            ClusterOptions::default(),
            &[
                ("transactionCheckInterval", "1000"),
                ("transactionTimeout", "1000"),
                // The broker batches the records of decided transactions and writes them every
                // `transactionOpBatchInterval` (3 s by default); a check round before they are
                // written asks again about a decided message, and a second commit delivers it
                // twice. Java's check interval (60 s) hides this; a 1 s interval needs this.
                ("transactionOpBatchInterval", "100"),
            ],
        )
        .for_the_whole_process()
    })
}

/// What the listener is told to do with a message, by its body's prefix, and what it saw.
#[derive(Default)]
struct Script {
    /// Checks per body.
    checks: Mutex<HashMap<String, usize>>,
    /// Local executions per body, with the UNIQ_KEY the listener saw.
    executed: Mutex<HashMap<String, String>>,
    /// Checks whose message lacked the original topic or the producer group.
    malformed_checks: AtomicUsize,
}

fn body(m: &[u8]) -> String {
    String::from_utf8_lossy(m).into_owned()
}

/// `commit-*` commits, `rollback-*` rolls back, `unknown-*` is unknown and then decided by the
/// check from the rest of its name (`unknown-commit-*`, `unknown-rollback-*`); `panic-*` panics
/// in `execute`, and `checkpanic-*` panics in its first check, then commits.
fn transaction_producer(group: &str, topic: &str, script: Arc<Script>) -> TransactionMQProducer {
    let exec = script.clone();
    let topic = topic.to_owned();
    let p = TransactionMQProducer::builder(group)
        .namesrv_addr(cluster().namesrv_addr.clone())
        .instance_name(unique("txinst"))
        .transaction_listener_fn(
            move |msg: &Message, arg: &dyn Any| {
                let b = body(msg.body());
                assert_eq!(
                    arg.downcast_ref::<u32>(),
                    Some(&7),
                    "the argument is passed on"
                );
                let uniq = msg
                    .property("UNIQ_KEY")
                    .expect("the listener sees the message id")
                    .to_owned();
                exec.executed.lock().insert(b.clone(), uniq);
                if b.starts_with("commit-") {
                    LocalTransactionState::CommitMessage
                } else if b.starts_with("rollback-") {
                    LocalTransactionState::RollbackMessage
                } else if b.starts_with("panic-") {
                    panic!("local transaction failed for {b}");
                } else {
                    LocalTransactionState::Unknow
                }
            },
            move |msg: &MessageExt| {
                let b = body(msg.body());
                if msg.topic() != topic || msg.property("PGROUP").is_none() {
                    script.malformed_checks.fetch_add(1, Ordering::SeqCst);
                }
                let n = {
                    let mut checks = script.checks.lock();
                    let n = checks.entry(b.clone()).or_default();
                    *n += 1;
                    *n
                };
                if b.starts_with("checkpanic-") && n == 1 {
                    panic!("check failed once for {b}");
                }
                if b.contains("rollback") {
                    LocalTransactionState::RollbackMessage
                } else if b.contains("never") {
                    LocalTransactionState::Unknow
                } else {
                    LocalTransactionState::CommitMessage
                }
            },
        )
        .build()
        .expect("valid transaction producer");
    p.start().expect("transaction producer starts");
    p
}

fn consumer(topic: &str) -> (DefaultMQPushConsumer, crossbeam_channel::Receiver<Delivery>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let c = consumer_builder(cluster(), &unique("txcg"), topic)
        .register_message_listener_concurrently(deliveries(tx))
        .build()
        .expect("valid consumer");
    c.start().expect("consumer starts");
    (c, rx)
}

/// Receives until a delivery with `body` arrives (or `WAIT` passes); returns all received.
fn collect_until(rx: &crossbeam_channel::Receiver<Delivery>, body: &str) -> Vec<Delivery> {
    let mut out = Vec::new();
    collect_more_until(rx, &mut out, body);
    out
}

/// Receives into `out` until it holds a delivery with `body` (or `WAIT` passes).
fn collect_more_until(
    rx: &crossbeam_channel::Receiver<Delivery>,
    out: &mut Vec<Delivery>,
    body: &str,
) {
    let deadline = std::time::Instant::now() + WAIT;
    while !out.iter().any(|d: &Delivery| d.body == body) {
        match rx.recv_deadline(deadline) {
            Ok(d) => out.push(d),
            Err(_) => break,
        }
    }
}

fn bodies(ds: &[Delivery]) -> Vec<&str> {
    ds.iter().map(|d| d.body.as_str()).collect()
}

fn send(p: &TransactionMQProducer, topic: &str, b: &str) -> LocalTransactionState {
    let r = p
        .send_message_in_transaction(&Message::new(topic, b.to_owned()), &7u32)
        .unwrap_or_else(|e| panic!("half message {b} sent: {e}"));
    assert_eq!(r.send_status(), SendStatus::SendOk);
    r.local_transaction_state()
}

#[test]
fn a_commit_is_consumed_without_a_check() {
    let topic = topic_with_queues(cluster(), 2);
    let (c, rx) = consumer(&topic);
    let script = Arc::new(Script::default());
    let p = transaction_producer(&unique("txpg"), &topic, script.clone());
    let r = p
        .send_message_in_transaction(&Message::new(topic.clone(), "commit-1"), &7u32)
        .expect("sent");
    assert_eq!(r.send_status(), SendStatus::SendOk);
    assert_eq!(
        r.local_transaction_state(),
        LocalTransactionState::CommitMessage
    );
    assert_eq!(
        script.executed.lock().get("commit-1").map(String::as_str),
        Some(r.msg_id()),
        "the listener saw the message id the send reported"
    );
    let got = collect_until(&rx, "commit-1");
    assert_eq!(bodies(&got), ["commit-1"], "the committed message, once");
    // Nothing else arrives: the half message itself is never delivered.
    assert!(collect(&rx, 1, Duration::from_millis(500)).is_empty());
    assert!(
        script.checks.lock().is_empty(),
        "a committed transaction is never checked"
    );
    p.shutdown(Duration::from_secs(5)).unwrap();
    c.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_rollback_is_never_consumed() {
    let topic = topic_with_queues(cluster(), 2);
    let (c, rx) = consumer(&topic);
    let script = Arc::new(Script::default());
    let p = transaction_producer(&unique("txpg"), &topic, script.clone());
    assert_eq!(
        send(&p, &topic, "rollback-1"),
        LocalTransactionState::RollbackMessage
    );
    // Committed only by a check, which comes in a check round after the rollback was stored.
    assert_eq!(
        send(&p, &topic, "unknown-commit-1"),
        LocalTransactionState::Unknow
    );
    let got = collect_until(&rx, "unknown-commit-1");
    assert_eq!(bodies(&got), ["unknown-commit-1"]);
    assert_eq!(
        script.checks.lock().get("rollback-1"),
        None,
        "a rolled-back transaction is never checked"
    );
    p.shutdown(Duration::from_secs(5)).unwrap();
    c.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn an_unknown_is_resolved_by_the_check_both_ways() {
    let topic = topic_with_queues(cluster(), 2);
    let (c, rx) = consumer(&topic);
    let script = Arc::new(Script::default());
    let p = transaction_producer(&unique("txpg"), &topic, script.clone());
    assert_eq!(
        send(&p, &topic, "unknown-commit-a"),
        LocalTransactionState::Unknow
    );
    assert_eq!(
        send(&p, &topic, "unknown-rollback-a"),
        LocalTransactionState::Unknow
    );
    // A panicking local transaction counts as unknown; its check commits it.
    assert_eq!(send(&p, &topic, "panic-a"), LocalTransactionState::Unknow);
    let mut got = collect_until(&rx, "unknown-commit-a");
    assert!(
        wait_until(WAIT, || script
            .checks
            .lock()
            .contains_key("unknown-rollback-a")),
        "the broker checks the second unknown"
    );
    // Sent after the rollback was answered: its commit comes in a later check round.
    assert_eq!(
        send(&p, &topic, "checkpanic-commit-b"),
        LocalTransactionState::Unknow
    );
    collect_more_until(&rx, &mut got, "checkpanic-commit-b");
    collect_more_until(&rx, &mut got, "panic-a");
    let mut seen = bodies(&got);
    seen.sort_unstable();
    assert_eq!(
        seen,
        ["checkpanic-commit-b", "panic-a", "unknown-commit-a"],
        "the checks committed these, and the rollback is absent"
    );
    assert!(
        script.checks.lock()["checkpanic-commit-b"] >= 2,
        "a panicking check is unknown: the broker asked again"
    );
    assert_eq!(script.malformed_checks.load(Ordering::SeqCst), 0);
    p.shutdown(Duration::from_secs(5)).unwrap();
    c.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_check_after_a_restart_reaches_the_new_producer_of_the_group() {
    let topic = topic_with_queues(cluster(), 2);
    let (c, rx) = consumer(&topic);
    let group = unique("txpg");
    let first = Arc::new(Script::default());
    let p1 = transaction_producer(&group, &topic, first.clone());
    assert_eq!(
        send(&p1, &topic, "unknown-commit-restart"),
        LocalTransactionState::Unknow
    );
    p1.shutdown(Duration::from_secs(5)).unwrap();
    let second = Arc::new(Script::default());
    let p2 = transaction_producer(&group, &topic, second.clone());
    let got = collect_until(&rx, "unknown-commit-restart");
    assert_eq!(bodies(&got), ["unknown-commit-restart"]);
    assert!(
        second.checks.lock().contains_key("unknown-commit-restart"),
        "the new producer answered the check"
    );
    assert!(first.checks.lock().is_empty(), "the old producer is gone");
    p2.shutdown(Duration::from_secs(5)).unwrap();
    c.shutdown(Duration::from_secs(5)).unwrap();
}
