//! The client instance's shared threads under faults, driven by the in-process `FakeBroker`
//! acting as name server and broker at one address: a panicking allocation strategy must not
//! take `rmq-rebal` down for the other consumers of the instance, delayed pulls must not wait
//! behind a stalled heartbeat, and shutdown must report the threads it could not stop.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use parking_lot::Mutex;
use rocketmq_sync::remoting::protocol::{RemotingCommand, RequestCode, ResponseCode};
use rocketmq_sync::testing::{FakeAction, FakeBroker};
use rocketmq_sync::AllocateMessageQueueAveragely;
use rocketmq_sync::ClientConfig;
use rocketmq_sync::{
    AllocateMessageQueueStrategy, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus,
};
use rocketmq_sync::{MessageExt, MessageQueue};
use support::fake::*;

/// Messages the fake's one queue holds (offsets 0..MESSAGES).
const MESSAGES: i64 = 10;

/// Test knobs the fake reads on every request.
#[derive(Default)]
struct Script {
    /// Heartbeats get no answer (for a minute) while set; each stalled one is reported.
    stall_heartbeats: AtomicBool,
    heartbeat_stalled: Mutex<Option<Sender<Instant>>>,
    /// The next pull answers SYSTEM_ERROR (the client retries it later); the pull after that
    /// is reported.
    fail_next_pull: AtomicBool,
    pull_after_failure: Mutex<Option<Sender<Instant>>>,
    failed_pull_seen: AtomicBool,
}

/// A fake name server and broker serving [`TOPIC`]: one queue holding [`MESSAGES`] messages,
/// no stored consumer offsets, and one client (the last to heartbeat) in every group.
fn fake(script: Arc<Script>) -> FakeBroker {
    start_fake(move |req| match req.request_code() {
        RequestCode::HEART_BEAT if script.stall_heartbeats.load(Ordering::SeqCst) => {
            if let Some(tx) = script.heartbeat_stalled.lock().as_ref() {
                let _ = tx.send(Instant::now());
            }
            Some(FakeAction::RespondAfter(Duration::from_secs(60), ok()))
        }
        RequestCode::QUERY_CONSUMER_OFFSET => Some(no_stored_offset()),
        RequestCode::PULL_MESSAGE => {
            if script.failed_pull_seen.swap(false, Ordering::SeqCst) {
                if let Some(tx) = script.pull_after_failure.lock().as_ref() {
                    let _ = tx.send(Instant::now());
                }
            }
            if script.fail_next_pull.swap(false, Ordering::SeqCst) {
                script.failed_pull_seen.store(true, Ordering::SeqCst);
                return Some(FakeAction::Respond(RemotingCommand::response(
                    ResponseCode::SYSTEM_ERROR,
                    Some("scripted pull failure".into()),
                )));
            }
            Some(pull_action(field(req, "queueOffset"), MESSAGES))
        }
        _ => None,
    })
}

/// Receives until every message of the fake's queue has arrived or `within` passes; returns the
/// bodies still missing.
fn missing_after(rx: &Receiver<String>, within: Duration) -> Vec<String> {
    let expected: HashSet<String> = (0..MESSAGES).map(|i| format!("m{i}")).collect();
    let mut got = HashSet::new();
    let deadline = Instant::now() + within;
    while !expected.is_subset(&got) {
        match rx.recv_deadline(deadline) {
            Ok(b) => {
                got.insert(b);
            }
            Err(_) => break,
        }
    }
    let mut left: Vec<String> = expected.difference(&got).cloned().collect();
    left.sort();
    left
}

/// Averaging allocation that panics while `panicking` is set, counting its calls.
struct PanickyStrategy {
    panicking: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
}

impl AllocateMessageQueueStrategy for PanickyStrategy {
    fn allocate(
        &self,
        group: &str,
        current_cid: &str,
        mq_all: &[MessageQueue],
        cid_all: &[String],
    ) -> rocketmq_sync::Result<Vec<MessageQueue>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.panicking.load(Ordering::SeqCst) {
            panic!("the user's allocation strategy panics");
        }
        AllocateMessageQueueAveragely.allocate(group, current_cid, mq_all, cid_all)
    }

    fn name(&self) -> &str {
        "PANICKY"
    }
}

#[test]
fn a_panicking_allocation_strategy_spares_the_other_consumers_of_its_instance() {
    let fake = fake(Arc::default());
    let panicking = Arc::new(AtomicBool::new(true));
    let calls = Arc::new(AtomicUsize::new(0));
    let (a, a_rx) = start_recording(
        consumer_from_first(&fake, "panicky_group", "shared-rebalance").allocate_strategy(
            PanickyStrategy {
                panicking: panicking.clone(),
                calls: calls.clone(),
            },
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while calls.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the strategy was never called");
        std::thread::yield_now();
    }

    // A second consumer of the same instance, started after the panic: the shared rebalance
    // thread must still serve it.
    let (b, b_rx) = start_recording(consumer_from_first(&fake, "calm_group", "shared-rebalance"));
    let missing = missing_after(&b_rx, Duration::from_secs(30));
    assert!(
        missing.is_empty(),
        "the other consumer of the instance never consumed {missing:?}: queues {:?}",
        b.queue_stats()
    );
    assert!(
        a.queue_stats().is_empty(),
        "the panicking consumer kept no assignment it never had"
    );

    // The strategy recovers: the next rebalance (woken by resume) assigns the queue.
    panicking.store(false, Ordering::SeqCst);
    a.resume();
    let missing = missing_after(&a_rx, Duration::from_secs(30));
    assert!(
        missing.is_empty(),
        "the consumer whose strategy recovered never consumed {missing:?}"
    );
    a.shutdown(Duration::from_secs(5)).unwrap();
    b.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
// Set field by field: `ClientConfig` is to become `#[non_exhaustive]`, which forbids a literal.
#[allow(clippy::field_reassign_with_default)]
fn a_delayed_pull_is_not_held_up_by_a_stalled_heartbeat() {
    let script = Arc::new(Script::default());
    let (stalled_tx, stalled_rx) = unbounded();
    let (pulled_tx, pulled_rx) = unbounded();
    *script.heartbeat_stalled.lock() = Some(stalled_tx);
    *script.pull_after_failure.lock() = Some(pulled_tx);
    let fake = fake(script.clone());
    // A stalled heartbeat holds its thread for the whole RPC timeout.
    let rpc_timeout = Duration::from_secs(20);
    let client = ClientConfig::builder()
        .heartbeat_broker_interval(Duration::from_millis(500))
        .mq_client_api_timeout(rpc_timeout)
        .pull_time_delay_when_exception(Duration::from_millis(200))
        .build();
    let (c, rx) = start_recording(
        consumer_from_first(&fake, "stall_group", "stalled-heartbeat").client_config(client),
    );
    let missing = missing_after(&rx, Duration::from_secs(30));
    assert!(missing.is_empty(), "never consumed {missing:?}");

    // The next periodic heartbeat hangs; then a pull fails and is retried after 200 ms.
    script.stall_heartbeats.store(true, Ordering::SeqCst);
    let stalled_at = stalled_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a periodic heartbeat was sent");
    script.fail_next_pull.store(true, Ordering::SeqCst);
    // The delayed pull must come while the heartbeat is still waiting for its answer.
    let pulled = pulled_rx.recv_deadline(stalled_at + rpc_timeout - Duration::from_secs(2));
    assert!(
        pulled.is_ok(),
        "the delayed pull waited for the stalled heartbeat (none within {:?} of the stall)",
        stalled_at.elapsed()
    );
    // The stalled heartbeat fails at once when the broker goes.
    drop(fake);
    let _ = c.shutdown(Duration::from_secs(5));
}

#[test]
fn shutdown_names_the_consume_threads_it_could_not_stop() {
    let fake = fake(Arc::default());
    let (started_tx, started_rx) = unbounded();
    let (release_tx, release_rx) = unbounded::<()>();
    let c = consumer_from_first(&fake, "stuck_group", "stuck-listener")
        .register_message_listener_concurrently(
            move |_: &[MessageExt], _: &mut ConsumeConcurrentlyContext| {
                let _ = started_tx.send(std::thread::current().name().map(str::to_owned));
                // Blocked past the shutdown timeout, bounded so the thread ends eventually.
                let _ = release_rx.recv_timeout(Duration::from_secs(30));
                ConsumeConcurrentlyStatus::ConsumeSuccess
            },
        )
        .build()
        .unwrap();
    c.start().unwrap();
    let thread = started_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the listener ran")
        .expect("consume threads are named");
    let timeout = Duration::from_secs(1);
    let t = Instant::now();
    let err = c
        .shutdown(timeout)
        .expect_err("a listener blocked past the timeout is reported");
    let took = t.elapsed();
    assert!(
        err.to_string().contains(&thread),
        "the error names the blocked consume thread {thread}: {err}"
    );
    assert!(
        took < timeout + Duration::from_secs(3),
        "shutdown returned {took:?} after it was asked to, with a {timeout:?} timeout"
    );
    drop(release_tx);
}
