//! The client instance's shared threads under faults, driven by the in-process `FakeBroker`
//! acting as name server and broker at one address: a panicking allocation strategy must not
//! take `rmq-rebal` down for the other consumers of the instance, delayed pulls must not wait
//! behind a stalled heartbeat, and shutdown must report the threads it could not stop.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use parking_lot::Mutex;
use rocketmq_sync::codec::MessageDecoder;
use rocketmq_sync::remoting::protocol::{RemotingCommand, RequestCode, ResponseCode};
use rocketmq_sync::testing::{FakeAction, FakeBroker};
use rocketmq_sync::AllocateMessageQueueAveragely;
use rocketmq_sync::ClientConfig;
use rocketmq_sync::{
    AllocateMessageQueueStrategy, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus,
    ConsumeFromWhere, DefaultMQPushConsumer,
};
use rocketmq_sync::{MessageExt, MessageQueue};

const TOPIC: &str = "InstanceTopic";
const BROKER: &str = "fake-broker";
/// Messages the fake's one queue holds (offsets 0..MESSAGES).
const MESSAGES: i64 = 10;

fn ok() -> RemotingCommand {
    RemotingCommand::response(ResponseCode::SUCCESS, None)
}

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
    let addr: Arc<OnceLock<String>> = Arc::new(OnceLock::new());
    let client_id: Arc<Mutex<String>> = Arc::default();
    let a = addr.clone();
    let fake = FakeBroker::start(move |req| {
        let f = req.ext_fields();
        match req.request_code() {
            RequestCode::GET_ROUTEINFO_BY_TOPIC if f.get("topic") == Some(TOPIC) => {
                let body = format!(
                    r#"{{"brokerDatas":[{{"brokerAddrs":{{"0":"{}"}},"brokerName":"{BROKER}","cluster":"C"}}],"filterServerTable":{{}},"queueDatas":[{{"brokerName":"{BROKER}","perm":6,"readQueueNums":1,"topicSysFlag":0,"writeQueueNums":1}}]}}"#,
                    a.get().expect("address known")
                );
                FakeAction::Respond(ok().with_body(body.into_bytes()))
            }
            RequestCode::GET_ROUTEINFO_BY_TOPIC => FakeAction::Respond(RemotingCommand::response(
                ResponseCode::TOPIC_NOT_EXIST,
                Some("no route".into()),
            )),
            RequestCode::HEART_BEAT => {
                if let Some(b) = req.body() {
                    let v: serde_json::Value = serde_json::from_slice(b).unwrap();
                    *client_id.lock() = v["clientID"].as_str().unwrap_or("").to_owned();
                }
                if script.stall_heartbeats.load(Ordering::SeqCst) {
                    if let Some(tx) = script.heartbeat_stalled.lock().as_ref() {
                        let _ = tx.send(Instant::now());
                    }
                    return FakeAction::RespondAfter(Duration::from_secs(60), ok());
                }
                FakeAction::Respond(ok())
            }
            RequestCode::GET_CONSUMER_LIST_BY_GROUP => {
                let body = format!(r#"{{"consumerIdList":["{}"]}}"#, client_id.lock());
                FakeAction::Respond(ok().with_body(body.into_bytes()))
            }
            RequestCode::QUERY_CONSUMER_OFFSET => FakeAction::Respond(RemotingCommand::response(
                ResponseCode::QUERY_NOT_FOUND,
                None,
            )),
            RequestCode::PULL_MESSAGE => {
                if script.failed_pull_seen.swap(false, Ordering::SeqCst) {
                    if let Some(tx) = script.pull_after_failure.lock().as_ref() {
                        let _ = tx.send(Instant::now());
                    }
                }
                if script.fail_next_pull.swap(false, Ordering::SeqCst) {
                    script.failed_pull_seen.store(true, Ordering::SeqCst);
                    return FakeAction::Respond(RemotingCommand::response(
                        ResponseCode::SYSTEM_ERROR,
                        Some("scripted pull failure".into()),
                    ));
                }
                let offset: i64 = f.get("queueOffset").unwrap().parse().unwrap();
                let mut r = if offset < MESSAGES {
                    let body: Vec<u8> = (offset..MESSAGES)
                        .flat_map(|i| {
                            let mut m = MessageExt::new(TOPIC, format!("m{i}"));
                            m.set_queue_offset(i);
                            m.set_commit_log_offset(1000 + i);
                            MessageDecoder::encode(&m, false).unwrap().to_vec()
                        })
                        .collect();
                    RemotingCommand::response(ResponseCode::SUCCESS, None).with_body(body)
                } else {
                    RemotingCommand::response(ResponseCode::PULL_NOT_FOUND, None)
                };
                let h = r.ext_fields_mut();
                h.put("nextBeginOffset", MESSAGES.max(offset));
                h.put("minOffset", 0);
                h.put("maxOffset", MESSAGES);
                h.put("suggestWhichBrokerId", 0);
                let delay = if offset < MESSAGES { 0 } else { 100 };
                FakeAction::RespondAfter(Duration::from_millis(delay), r)
            }
            _ => FakeAction::Respond(ok()),
        }
    })
    .expect("fake broker starts");
    addr.set(fake.addr()).unwrap();
    fake
}

/// A listener that reports every body it consumes.
fn recording(
    tx: Sender<String>,
) -> impl Fn(&[MessageExt], &mut ConsumeConcurrentlyContext) -> ConsumeConcurrentlyStatus
       + Send
       + Sync
       + 'static {
    move |msgs: &[MessageExt], _: &mut ConsumeConcurrentlyContext| {
        for m in msgs {
            let _ = tx.send(String::from_utf8_lossy(m.body()).into_owned());
        }
        ConsumeConcurrentlyStatus::ConsumeSuccess
    }
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
    let (a_tx, a_rx) = unbounded();
    let a = DefaultMQPushConsumer::builder("panicky_group")
        .namesrv_addr(fake.addr())
        .instance_name("shared-rebalance")
        .subscribe(TOPIC, "*")
        .consume_from_where(ConsumeFromWhere::FirstOffset)
        .allocate_strategy(PanickyStrategy {
            panicking: panicking.clone(),
            calls: calls.clone(),
        })
        .register_message_listener_concurrently(recording(a_tx))
        .build()
        .unwrap();
    a.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while calls.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the strategy was never called");
        std::thread::yield_now();
    }

    // A second consumer of the same instance, started after the panic: the shared rebalance
    // thread must still serve it.
    let (b_tx, b_rx) = unbounded();
    let b = DefaultMQPushConsumer::builder("calm_group")
        .namesrv_addr(fake.addr())
        .instance_name("shared-rebalance")
        .subscribe(TOPIC, "*")
        .consume_from_where(ConsumeFromWhere::FirstOffset)
        .register_message_listener_concurrently(recording(b_tx))
        .build()
        .unwrap();
    b.start().unwrap();
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
    let (tx, rx) = unbounded();
    let c = DefaultMQPushConsumer::builder("stall_group")
        .client_config(client)
        .namesrv_addr(fake.addr())
        .instance_name("stalled-heartbeat")
        .subscribe(TOPIC, "*")
        .consume_from_where(ConsumeFromWhere::FirstOffset)
        .register_message_listener_concurrently(recording(tx))
        .build()
        .unwrap();
    c.start().unwrap();
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
    let c = DefaultMQPushConsumer::builder("stuck_group")
        .namesrv_addr(fake.addr())
        .instance_name("stuck-listener")
        .subscribe(TOPIC, "*")
        .consume_from_where(ConsumeFromWhere::FirstOffset)
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
