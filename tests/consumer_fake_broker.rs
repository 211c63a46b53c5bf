//! Push-consumer behaviour a real broker cannot be made to show on demand, driven by the
//! in-process `FakeBroker` acting as name server and broker at one address.

mod support;

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use parking_lot::Mutex;
use rocketmq_sync::codec::{MessageDecoder, MessageSysFlag};
use rocketmq_sync::remoting::protocol::body::FjValue;
use rocketmq_sync::remoting::protocol::{RemotingCommand, RequestCode, ResponseCode};
use rocketmq_sync::testing::{FakeAction, FakeBroker};
use rocketmq_sync::{ClientConfig, DefaultMQProducer, Message, MessageQueue};
use rocketmq_sync::{ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, ConsumeFromWhere};
use rocketmq_sync::{DefaultMQPushConsumer, MessageExt, ServiceState};
use support::consume::succeeding;
use support::fake::*;

/// What the fake saw, for assertions.
#[derive(Debug, Clone)]
enum Seen {
    SearchOffset(i64),
    Pull(i64),
    ConsumerList,
}

/// A fake broker + name server serving one topic with one queue whose consumer offset is
/// unknown (QUERY_NOT_FOUND) until the client commits one, whose timestamp search answers
/// `search_answer`, whose max offset is 100, and whose pulls find nothing.
fn fake(seen: Sender<Seen>, search_answer: i64) -> FakeBroker {
    // The consumer offset the fake stores (UPDATE_CONSUMER_OFFSET) and answers with.
    let stored: Arc<Mutex<Option<i64>>> = Arc::default();
    start_fake(move |req| {
        if let Some(a) = offset_storage(&stored, req) {
            return Some(a);
        }
        match req.request_code() {
            RequestCode::GET_CONSUMER_LIST_BY_GROUP => {
                let _ = seen.send(Seen::ConsumerList);
                None
            }
            RequestCode::SEARCH_OFFSET_BY_TIMESTAMP => {
                let _ = seen.send(Seen::SearchOffset(field(req, "timestamp")));
                Some(FakeAction::Respond(offset_answer(search_answer)))
            }
            RequestCode::GET_MAX_OFFSET => Some(FakeAction::Respond(offset_answer(100))),
            RequestCode::PULL_MESSAGE => {
                let offset = field(req, "queueOffset");
                let _ = seen.send(Seen::Pull(offset));
                Some(pull_answer(offset, 100, None))
            }
            _ => None,
        }
    })
}

/// Receives what the fake saw until `pick` picks something, waiting at most `within`.
fn wait_seen<T>(
    rx: &Receiver<Seen>,
    within: Duration,
    what: &str,
    mut pick: impl FnMut(Seen) -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(t) = pick(rx.recv_deadline(deadline).expect(what)) {
            return t;
        }
    }
}

/// The offset of the next pull the fake sees, waiting at most 30 s.
fn next_pull(rx: &Receiver<Seen>) -> i64 {
    wait_seen(
        rx,
        Duration::from_secs(30),
        "the consumer pulled",
        |s| match s {
            Seen::Pull(o) => Some(o),
            _ => None,
        },
    )
}

/// Shuts `c` down (5 s timeout) and asserts that it returned within 15 s.
fn shutdown_bounded(c: &DefaultMQPushConsumer) {
    let t = Instant::now();
    c.shutdown(Duration::from_secs(5)).unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "shutdown took {:?}",
        t.elapsed()
    );
}

#[test]
fn consume_from_timestamp_starts_at_the_searched_offset() {
    let (tx, rx) = unbounded();
    let fake = fake(tx, 7);
    let since = 1_700_000_000_000;
    let c = consumer_of(&fake, "ts_group", "ts-instance")
        .consume_from_where(ConsumeFromWhere::Timestamp)
        .consume_timestamp_millis(since)
        .register_message_listener_concurrently(succeeding())
        .build()
        .unwrap();
    c.start().unwrap();
    let mut searched = None;
    let first_pull = wait_seen(
        &rx,
        Duration::from_secs(30),
        "the consumer pulled",
        |s| match s {
            Seen::SearchOffset(ts) => {
                searched = Some(ts);
                None
            }
            Seen::Pull(o) => Some(o),
            Seen::ConsumerList => None,
        },
    );
    assert_eq!(searched, Some(since), "the timestamp was searched");
    assert_eq!(
        first_pull, 7,
        "pulling starts at the offset found for the timestamp"
    );
    c.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn consume_from_last_offset_starts_at_the_max_offset() {
    let (tx, rx) = unbounded();
    let fake = fake(tx, 7);
    let c = consumer_of(&fake, "last_group", "last-instance")
        .register_message_listener_concurrently(succeeding())
        .build()
        .unwrap();
    c.start().unwrap();
    assert_eq!(next_pull(&rx), 100);
    c.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn shutdown_stays_bounded_when_the_broker_is_gone() {
    let (tx, rx) = unbounded();
    let fake = fake(tx, 0);
    let c = consumer_from_first(&fake, "vanish_group", "vanish-instance")
        .register_message_listener_concurrently(succeeding())
        .build()
        .unwrap();
    c.start().unwrap();
    next_pull(&rx);
    // The broker disappears with a long poll in flight: nothing can be sent any more, and
    // shutdown must not wait for it.
    drop(fake);
    shutdown_bounded(&c);
    assert_eq!(c.service_state(), ServiceState::ShutdownAlready);
    assert!(
        c.queue_stats().is_empty(),
        "no queue is held after shutdown"
    );
    assert_eq!(c.consume_pool_size(), 0, "the consume threads stopped");
}

#[test]
fn a_broker_that_vanishes_is_survived_and_shutdown_commits_and_unregisters() {
    // The queue holds m0, m1; the pull after them is held until the broker goes away.
    let hold: Arc<Mutex<Option<Receiver<()>>>> = Arc::default();
    let (release, held) = unbounded::<()>();
    *hold.lock() = Some(held);
    let h = hold.clone();
    let first = start_fake(move |req| match req.request_code() {
        RequestCode::QUERY_CONSUMER_OFFSET => Some(no_stored_offset()),
        RequestCode::PULL_MESSAGE => {
            let offset = field(req, "queueOffset");
            match h.lock().take() {
                Some(held) if offset == 2 => Some(FakeAction::RespondWhen(
                    held,
                    pull_response(ResponseCode::PULL_NOT_FOUND, 2, 2),
                )),
                _ => Some(pull_action(offset, 2)),
            }
        }
        _ => None,
    });
    let addr = first.addr();
    let (c, rx) = start_recording(consumer_from_first(
        &first,
        "survive_group",
        "survive-instance",
    ));
    assert_eq!(recv_bodies(&rx, 2), bodies(0..2));
    wait_until("the pull after m1 is in flight", || hold.lock().is_none());
    wait_until("m1 is committed", || commit_offset(&c) == Some(2));

    // The broker goes away with that pull in flight, and comes back at the same address with
    // two more messages (and without the group's offset: it was never persisted).
    drop(first);
    drop(release);
    let (req_tx, requests) = unbounded::<RemotingCommand>();
    let stored: Arc<Mutex<Option<i64>>> = Arc::default();
    let back = restart_fake_at(&addr, move |req| {
        let _ = req_tx.send(req.clone());
        offset_storage(&stored, req).or_else(|| match req.request_code() {
            RequestCode::PULL_MESSAGE => Some(pull_action(field(req, "queueOffset"), 4)),
            _ => None,
        })
    });

    // Survived: the consumer kept its queue and position, so it gets exactly the new messages.
    assert_eq!(recv_bodies(&rx, 2), bodies(2..4));
    wait_until("m3 is committed", || commit_offset(&c) == Some(4));

    // Shutdown commits the offset to the broker, then unregisters, then closes its connections.
    shutdown_bounded(&c);
    let mut committed = None;
    let unregister = loop {
        let req = requests
            .recv_timeout(Duration::from_secs(10))
            .expect("the consumer unregistered");
        match req.request_code() {
            RequestCode::UPDATE_CONSUMER_OFFSET => {
                committed = Some(field(&req, "commitOffset"));
            }
            RequestCode::UNREGISTER_CLIENT => break req,
            _ => {}
        }
    };
    assert_eq!(
        committed,
        Some(4),
        "the last offset was committed before unregistering"
    );
    assert_eq!(
        unregister.ext_fields().get("consumerGroup"),
        Some("survive_group")
    );
    wait_until("the client closed its connection", || {
        back.connection_count() == 0
    });
    assert_eq!(c.consume_pool_size(), 0, "the consume threads stopped");
    assert!(rx.try_recv().is_err(), "nothing was consumed twice");
}

#[test]
fn broker_requests_are_answered_on_the_callback_pool() {
    let (tx, rx) = unbounded();
    let fake = fake(tx, 0);
    let (body_tx, body_rx) = unbounded();
    let c = consumer_from_first(&fake, "req_group", "req-instance")
        .register_message_listener_concurrently(
            move |msgs: &[MessageExt], _: &mut ConsumeConcurrentlyContext| {
                for m in msgs {
                    body_tx.send(m.body().clone()).unwrap();
                }
                ConsumeConcurrentlyStatus::ConsumeSuccess
            },
        )
        .build()
        .unwrap();
    c.start().unwrap();
    next_pull(&rx);

    // GET_CONSUMER_RUNNING_INFO: fastjson with object keys, stats and properties.
    let client_id = c.client_id().unwrap();
    let r = push(
        &fake,
        RequestCode::GET_CONSUMER_RUNNING_INFO,
        &[
            ("consumerGroup", "req_group"),
            ("clientId", &client_id),
            ("jstackEnable", "false"),
        ],
        None,
    );
    assert_eq!(r.response_code(), ResponseCode::SUCCESS, "{:?}", r.remark());
    let info = FjValue::parse_bytes(r.body().unwrap()).unwrap();
    let Some(FjValue::Object(mq_table)) = info.get("mqTable") else {
        panic!("no mqTable in {info:?}")
    };
    assert!(mq_table
        .iter()
        .any(|(k, _)| k.get("topic") == Some(&FjValue::String(TOPIC.into()))));
    assert_eq!(
        info.get("properties")
            .and_then(|p| p.get("PROP_CONSUME_TYPE")),
        Some(&FjValue::String("CONSUME_PASSIVELY".into()))
    );
    assert!(info.get("statusTable").is_some() && info.get("subscriptionSet").is_some());

    // An unknown group is a clear SYSTEM_ERROR.
    let r = push(
        &fake,
        RequestCode::GET_CONSUMER_RUNNING_INFO,
        &[("consumerGroup", "nobody"), ("clientId", &client_id)],
        None,
    );
    assert_eq!(r.response_code(), ResponseCode::SYSTEM_ERROR);
    assert!(r.remark().unwrap().contains("not exist"));

    // CONSUME_MESSAGE_DIRECTLY runs the listener on the stored message it carries.
    let stored = MessageDecoder::encode(&MessageExt::new(TOPIC, "direct"), false).unwrap();
    let r = push(
        &fake,
        RequestCode::CONSUME_MESSAGE_DIRECTLY,
        &[("consumerGroup", "req_group"), ("brokerName", BROKER)],
        Some(stored.to_vec()),
    );
    assert_eq!(r.response_code(), ResponseCode::SUCCESS);
    let v: serde_json::Value = serde_json::from_slice(r.body().unwrap()).unwrap();
    assert_eq!(v["consumeResult"], "CR_SUCCESS");
    assert_eq!(
        &body_rx.recv_timeout(Duration::from_secs(5)).unwrap()[..],
        b"direct"
    );

    // NOTIFY_CONSUMER_IDS_CHANGED rebalances at once (the periodic rebalance is 20 s away).
    while rx.try_recv().is_ok() {}
    notify_ids_changed(&fake, "req_group");
    wait_seen(&rx, Duration::from_secs(10), "rebalanced", |s| {
        matches!(s, Seen::ConsumerList).then_some(())
    });

    // RESET_CONSUMER_CLIENT_OFFSET moves the queue to the given offset.
    push_reset(&fake, "req_group", 42);
    wait_seen(
        &rx,
        Duration::from_secs(30),
        "pulled again after the reset",
        |s| matches!(s, Seen::Pull(42)).then_some(()),
    );
    c.shutdown(Duration::from_secs(5)).unwrap();
}

/// A fake whose one queue stays empty: for tests of the requests it pushes to the client.
fn idle_fake() -> FakeBroker {
    start_fake(|req| match req.request_code() {
        RequestCode::QUERY_CONSUMER_OFFSET => Some(no_stored_offset()),
        RequestCode::PULL_MESSAGE => Some(pull_answer(field(req, "queueOffset"), 0, None)),
        _ => None,
    })
}

/// A CONSUME_MESSAGE_DIRECTLY of a message with body `body`, for `group`.
fn direct_request(group: &str, body: &str) -> RemotingCommand {
    let stored = MessageDecoder::encode(&MessageExt::new(TOPIC, body.to_owned()), false).unwrap();
    broker_request(
        RequestCode::CONSUME_MESSAGE_DIRECTLY,
        &[("consumerGroup", group), ("brokerName", BROKER)],
        Some(stored.to_vec()),
    )
}

/// The client's response to the pushed request with `opaque`, waiting at most `within`.
fn response_to(fake: &FakeBroker, opaque: i32, within: Duration) -> Option<RemotingCommand> {
    let deadline = Instant::now() + within;
    loop {
        let seen = fake.received_responses();
        if let Some(r) = seen.into_iter().find(|r| r.opaque() == opaque) {
            return Some(r);
        }
        // Any response wakes the wait; the collected list is looked at again.
        let _ = fake.recv_response(deadline.checked_duration_since(Instant::now())?);
    }
}

/// Started consumer of `group` whose listener (orderly or concurrent) sends the name of the
/// thread it runs on to the returned receiver, then blocks until the returned sender is dropped
/// (at most 30 s).
fn blocking_consumer(
    fake: &FakeBroker,
    group: &str,
    orderly: bool,
    client: ClientConfig,
) -> (DefaultMQPushConsumer, Receiver<String>, Sender<()>) {
    let (entered_tx, entered) = unbounded();
    let (release, released) = unbounded::<()>();
    let block = move || {
        let name = std::thread::current().name().unwrap_or("?").to_owned();
        let _ = entered_tx.send(name);
        let _ = released.recv_timeout(Duration::from_secs(30));
    };
    let b = consumer_from_first(fake, group, group).client_config(client);
    let b = if orderly {
        b.register_message_listener_orderly(
            move |_: &[MessageExt], _: &mut rocketmq_sync::ConsumeOrderlyContext| {
                block();
                rocketmq_sync::ConsumeOrderlyStatus::Success
            },
        )
    } else {
        b.register_message_listener_concurrently(
            move |_: &[MessageExt], _: &mut ConsumeConcurrentlyContext| {
                block();
                ConsumeConcurrentlyStatus::ConsumeSuccess
            },
        )
    };
    let c = b.build().unwrap();
    c.start().unwrap();
    (c, entered, release)
}

/// Asserts `r` is CONSUME_MESSAGE_DIRECTLY's SUCCESS answer with `CR_SUCCESS`.
fn assert_consumed_directly(r: &RemotingCommand) {
    assert_eq!(r.response_code(), ResponseCode::SUCCESS, "{:?}", r.remark());
    let v: serde_json::Value = serde_json::from_slice(r.body().unwrap()).unwrap();
    assert_eq!(v["consumeResult"], "CR_SUCCESS", "{v}");
}

#[test]
fn consume_directly_runs_the_listener_on_the_consume_pool_not_the_callback_pool() {
    for orderly in [false, true] {
        let fake = idle_fake();
        let group = if orderly {
            "direct_orderly"
        } else {
            "direct_concurrently"
        };
        // One callback thread: a listener blocking it would stall every other broker request
        // and every pull callback.
        let client = ClientConfig::builder()
            .client_callback_executor_threads(1)
            .build();
        let (c, entered, release) = blocking_consumer(&fake, group, orderly, client);
        let direct = direct_request(group, "direct");
        push_to_client(&fake, &direct);
        let thread = entered
            .recv_timeout(Duration::from_secs(10))
            .expect("the listener runs");

        // While the listener blocks, the client answers another broker request.
        let client_id = c.client_id().unwrap();
        let info = broker_request(
            RequestCode::GET_CONSUMER_RUNNING_INFO,
            &[
                ("consumerGroup", group),
                ("clientId", &client_id),
                ("jstackEnable", "false"),
            ],
            None,
        );
        push_to_client(&fake, &info);
        let r = response_to(&fake, info.opaque(), Duration::from_secs(10)).unwrap_or_else(|| {
            panic!(
                "orderly {orderly}: GET_CONSUMER_RUNNING_INFO was not answered while the \
                 listener of CONSUME_MESSAGE_DIRECTLY blocked on thread {thread}"
            )
        });
        assert_eq!(r.response_code(), ResponseCode::SUCCESS);
        assert!(
            thread.starts_with("rmq-cons-"),
            "orderly {orderly}: the listener ran on {thread}, not on the consume pool"
        );
        assert!(
            response_to(&fake, direct.opaque(), Duration::ZERO).is_none(),
            "answered before the listener returned"
        );

        // The answer goes back once the listener returns.
        drop(release);
        let r = response_to(&fake, direct.opaque(), Duration::from_secs(10))
            .expect("CONSUME_MESSAGE_DIRECTLY is answered");
        assert_consumed_directly(&r);
        c.shutdown(Duration::from_secs(5)).unwrap();
    }
}

#[test]
fn consume_directly_past_the_in_flight_bound_is_answered_system_busy() {
    // The client's bound: 8 direct consumes of one consumer at once (MAX_DIRECT_CONSUMES).
    const BOUND: usize = 8;
    let fake = idle_fake();
    let group = "direct_busy";
    let (c, entered, release) =
        blocking_consumer(&fake, group, false, ClientConfig::builder().build());
    let held: Vec<RemotingCommand> = (0..BOUND)
        .map(|i| direct_request(group, &format!("d{i}")))
        .collect();
    for r in &held {
        push_to_client(&fake, r);
    }
    // All of them run at once, on the consume pool (20 threads), whatever the callback pool.
    let threads = recv_n(&entered, BOUND, Duration::from_secs(10));
    assert!(
        threads.iter().all(|t| t.starts_with("rmq-cons-")),
        "{threads:?}"
    );

    // One more is refused at once, without reaching the listener.
    let over = direct_request(group, "over");
    push_to_client(&fake, &over);
    let r = response_to(&fake, over.opaque(), Duration::from_secs(10))
        .expect("the request past the bound is answered while the others block");
    assert_eq!(
        r.response_code(),
        ResponseCode::SYSTEM_BUSY,
        "{:?}",
        r.remark()
    );
    assert!(r.remark().unwrap_or("").contains(group), "{:?}", r.remark());

    drop(release);
    for r in &held {
        let answer = response_to(&fake, r.opaque(), Duration::from_secs(10))
            .expect("each held request is answered once its listener returns");
        assert_consumed_directly(&answer);
    }
    assert!(
        entered.try_iter().all(|_| false),
        "the refused request reached the listener"
    );
    // Their places are free again.
    let again = direct_request(group, "again");
    push_to_client(&fake, &again);
    let r = response_to(&fake, again.opaque(), Duration::from_secs(10)).expect("answered");
    assert_consumed_directly(&r);
    c.shutdown(Duration::from_secs(5)).unwrap();
}

/// A fake whose queue holds `records` (stored records from offset 0), all returned by one pull
/// from offset 0 with `nextBeginOffset` and `maxOffset` = `next`, `minOffset` 0. Later pulls find
/// nothing; `send_back` answers CONSUMER_SEND_MSG_BACK; sends to the retry topic fail (no route).
fn fake_serving_with(
    records: Vec<u8>,
    next: i64,
    send_back: impl Fn(&RemotingCommand) -> FakeAction + Send + Sync + 'static,
) -> FakeBroker {
    start_fake(move |req| match req.request_code() {
        RequestCode::QUERY_CONSUMER_OFFSET => Some(no_stored_offset()),
        RequestCode::CONSUMER_SEND_MSG_BACK => Some(send_back(req)),
        RequestCode::PULL_MESSAGE => {
            let offset = field(req, "queueOffset");
            let body = (offset == 0).then(|| records.clone());
            Some(pull_answer_after(
                Duration::from_millis(200),
                offset,
                next,
                body,
            ))
        }
        _ => None,
    })
}

/// [`fake_serving_with`] refusing CONSUMER_SEND_MSG_BACK.
fn fake_serving(records: Vec<u8>, next: i64) -> FakeBroker {
    fake_serving_with(records, next, |_| refuse_send_back())
}

/// A fake whose queue holds two messages (offsets 0 and 1). CONSUMER_SEND_MSG_BACK answers
/// SUCCESS when `send_back_ok`, SYSTEM_ERROR otherwise; sends to the retry topic fail (no route).
fn fake_with_messages(seen: Sender<(i64, i32)>, send_back_ok: bool) -> FakeBroker {
    fake_serving_with(records(TOPIC, 2, 1000, "m", &[]), 2, move |req| {
        let level = field(req, "delayLevel") as i32;
        let _ = seen.send((field(req, "offset"), level));
        if send_back_ok {
            FakeAction::Respond(ok())
        } else {
            refuse_send_back()
        }
    })
}

#[test]
fn ack_index_sends_back_only_the_unacknowledged_messages() {
    let (tx, rx) = unbounded();
    let fake = fake_with_messages(tx, true);
    let c = consumer_from_first(&fake, "ack_group", "ack-instance")
        .consume_message_batch_max_size(2)
        .register_message_listener_concurrently(
            |msgs: &[MessageExt], ctx: &mut ConsumeConcurrentlyContext| {
                assert_eq!(msgs.len(), 2, "both messages in one call");
                ctx.ack_index = 0;
                ctx.delay_level_when_next_consume = 4;
                ConsumeConcurrentlyStatus::ConsumeSuccess
            },
        )
        .build()
        .unwrap();
    c.start().unwrap();
    let (offset, level) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the second message was sent back");
    assert_eq!(
        (offset, level),
        (1001, 4),
        "commit-log offset of m1, the context's level"
    );
    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "m0 was not sent back"
    );
    // Both are done locally: the committed offset moves past them.
    wait_commit_offset(&c, 2, Duration::from_secs(10), "both done locally");
    c.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn when_send_back_fails_the_message_is_consumed_again_locally() {
    let (tx, _send_backs) = unbounded();
    let fake = fake_with_messages(tx, false);
    let (seen_tx, seen_rx) = unbounded();
    // The listener reads the committed offset at each call through this handle.
    let handle: Arc<OnceLock<DefaultMQPushConsumer>> = Arc::default();
    let h = handle.clone();
    let c = consumer_from_first(&fake, "local_retry_group", "local-retry-instance")
        .register_message_listener_concurrently(
            move |msgs: &[MessageExt], _: &mut ConsumeConcurrentlyContext| {
                let m = &msgs[0];
                let committed = h.get().and_then(commit_offset);
                seen_tx
                    .send((
                        String::from_utf8_lossy(m.body()).into_owned(),
                        m.reconsume_times(),
                        committed,
                    ))
                    .unwrap();
                if &m.body()[..] == b"m1" && m.reconsume_times() == 0 {
                    ConsumeConcurrentlyStatus::ReconsumeLater
                } else {
                    ConsumeConcurrentlyStatus::ConsumeSuccess
                }
            },
        )
        .build()
        .unwrap();
    handle.set(c.clone()).unwrap();
    c.start().unwrap();
    let got = recv_n(&seen_rx, 3, Duration::from_secs(30));
    let calls: Vec<(&str, i32)> = got.iter().map(|(b, r, _)| (b.as_str(), *r)).collect();
    assert_eq!(
        calls,
        [("m0", 0), ("m1", 0), ("m1", 1)],
        "m1 failed, its send-back failed, and it was consumed again locally with one more reconsume"
    );
    // While m1 waited for its local retry, the committed offset stayed at it (m0 done).
    assert_eq!(
        got[2].2,
        Some(1),
        "the committed offset when m1 was retried"
    );
    wait_until("m1 is committed", || commit_offset(&c) == Some(2));
    assert!(
        seen_rx.try_recv().is_err(),
        "nothing else was consumed: {:?}",
        seen_rx.try_recv()
    );
    c.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn consume_hooks_run_before_and_after_every_call() {
    use rocketmq_sync::{ConsumeMessageContext, ConsumeMessageHook};
    /// One hook call: before (or after), the offsets it saw, its status and success flag.
    type Call = (
        &'static str,
        Vec<i64>,
        Option<ConsumeConcurrentlyStatus>,
        bool,
    );
    struct Hook(Sender<Call>);
    impl ConsumeMessageHook for Hook {
        fn hook_name(&self) -> &str {
            "recording"
        }
        fn consume_message_before(&self, ctx: &ConsumeMessageContext<'_>) {
            let offsets = ctx.msgs.iter().map(MessageExt::queue_offset).collect();
            let _ = self.0.send(("before", offsets, ctx.status, ctx.success));
        }
        fn consume_message_after(&self, ctx: &ConsumeMessageContext<'_>) {
            let offsets = ctx.msgs.iter().map(MessageExt::queue_offset).collect();
            let _ = self.0.send(("after", offsets, ctx.status, ctx.success));
        }
    }
    let (tx, _send_backs) = unbounded();
    let fake = fake_with_messages(tx, true);
    let (calls_tx, calls) = unbounded();
    let c = consumer_from_first(&fake, "hook_group", "hook-instance")
        .consume_message_hook(Hook(calls_tx))
        .register_message_listener_concurrently(succeeding())
        .build()
        .unwrap();
    c.start().unwrap();
    let got = recv_n(&calls, 4, Duration::from_secs(30));
    // One listener call per message (batch size 1), each wrapped by its two hook calls, in
    // order (calls of different messages may interleave).
    let ok = Some(ConsumeConcurrentlyStatus::ConsumeSuccess);
    for offset in [0, 1] {
        let of_it: Vec<_> = got.iter().filter(|c| c.1 == [offset]).cloned().collect();
        assert_eq!(
            of_it,
            [
                ("before", vec![offset], None, false),
                ("after", vec![offset], ok, true),
            ],
            "hook calls of offset {offset} among {got:?}"
        );
    }
    c.shutdown(Duration::from_secs(5)).unwrap();
    assert!(calls.try_recv().is_err(), "no other hook call");
}

#[test]
fn a_message_consumed_past_the_timeout_is_sent_back_with_delay_level_3() {
    let (tx, send_backs) = unbounded();
    let fake = fake_with_messages(tx, true);
    let (release_tx, release_rx) = unbounded::<()>();
    let c = consumer_from_first(&fake, "timeout_group", "timeout-instance")
        .consume_timeout(Duration::from_secs(1))
        .register_message_listener_concurrently(
            move |msgs: &[MessageExt], _: &mut ConsumeConcurrentlyContext| {
                if &msgs[0].body()[..] == b"m0" {
                    // Stuck until the test lets it go (bounded, so the pool can shut down).
                    let _ = release_rx.recv_timeout(Duration::from_secs(20));
                }
                ConsumeConcurrentlyStatus::ConsumeSuccess
            },
        )
        .build()
        .unwrap();
    c.start().unwrap();
    let (offset, level) = send_backs
        .recv_timeout(Duration::from_secs(15))
        .expect("the stuck message was sent back by the consume-timeout sweep");
    assert_eq!(
        (offset, level),
        (1000, 3),
        "m0 (commit-log offset 1000) at delay level 3"
    );
    release_tx.send(()).unwrap();
    c.shutdown(Duration::from_secs(5)).unwrap();
}
/// Issue 6, defect 2.4: one pull of 32 messages is one consume task; the listener hangs on the
/// sixth. The consume-timeout sweep must send back only that message (whose listener call
/// overran), never the five already consumed nor those not yet started, and the queue must move
/// on past the hung call.
#[test]
fn the_timeout_sweep_sends_back_only_the_message_whose_call_overran() {
    const N: i64 = 32;
    const SLOW: i64 = 5;
    let (sb_tx, send_backs) = unbounded::<i64>();
    let body = records(TOPIC, N, 1000, "m", &[]);
    let fake = start_fake(move |req| {
        let f = req.ext_fields();
        Some(match req.request_code() {
            RequestCode::QUERY_CONSUMER_OFFSET => no_stored_offset(),
            RequestCode::CONSUMER_SEND_MSG_BACK => {
                let _ = sb_tx.send(field(req, "offset"));
                FakeAction::Respond(ok())
            }
            RequestCode::PULL_MESSAGE if f.get("topic") == Some(TOPIC) => {
                let offset = field(req, "queueOffset");
                pull_answer(offset, N, (offset == 0).then(|| body.clone()))
            }
            _ => return None,
        })
    });
    let (seen_tx, seen) = unbounded::<String>();
    let (release_tx, release_rx) = unbounded::<()>();
    let c = consumer_from_first(&fake, "sweep_group", "sweep-instance")
        .consume_timeout(Duration::from_millis(500))
        .register_message_listener_concurrently(
            move |msgs: &[MessageExt], _: &mut ConsumeConcurrentlyContext| {
                for m in msgs {
                    let body = String::from_utf8_lossy(m.body()).into_owned();
                    let slow = body == format!("m{SLOW}");
                    let _ = seen_tx.send(body);
                    if slow {
                        // Hung until the test lets it go (bounded, so the pool can shut down).
                        let _ = release_rx.recv_timeout(Duration::from_secs(30));
                    }
                }
                ConsumeConcurrentlyStatus::ConsumeSuccess
            },
        )
        .build()
        .unwrap();
    c.start().unwrap();

    let first = send_backs
        .recv_timeout(Duration::from_secs(20))
        .expect("the sweep sent the hung message back");
    assert_eq!(
        first,
        1000 + SLOW,
        "the first message sent back is the hung one (commit-log offset {}), not an earlier, \
         already consumed one",
        1000 + SLOW
    );
    // The queue goes on while the listener is still hung: the messages after the hung one are
    // consumed by other threads and the committed offset passes all 32.
    wait_commit_offset(&c, N, Duration::from_secs(20), "with the listener hung");
    release_tx.send(()).unwrap();
    c.shutdown(Duration::from_secs(10)).unwrap();

    let extra: Vec<i64> = send_backs.try_iter().collect();
    assert!(extra.is_empty(), "other messages were sent back: {extra:?}");
    let mut count = std::collections::HashMap::<String, usize>::new();
    for b in seen.try_iter() {
        *count.entry(b).or_default() += 1;
    }
    for i in 0..N {
        assert_eq!(
            count.get(&format!("m{i}")).copied(),
            Some(1),
            "m{i} delivered exactly once: {count:?}"
        );
    }
}

/// Issue 6, defect 2.4: a message pulled from the retry topic whose listener call overran is
/// sent back (through the retry-topic fallback, the broker refusing CONSUMER_SEND_MSG_BACK) with
/// its original topic in `RETRY_TOPIC`, not the retry topic.
#[test]
fn the_timeout_sweep_keeps_the_original_topic_of_a_retried_message() {
    const GROUP: &str = "sweep_retry_group";
    let retry_topic = format!("%RETRY%{GROUP}");
    let body = records(
        &retry_topic,
        1,
        2000,
        "r",
        &[("RETRY_TOPIC", TOPIC), ("RECONSUME_TIME", "1")],
    );
    let addr: Arc<OnceLock<String>> = Arc::default();
    let a = addr.clone();
    let rt = retry_topic.clone();
    let (sent_tx, sent) = unbounded::<(String, String)>();
    let fake = start_fake(move |req| {
        let f = req.ext_fields();
        Some(match req.request_code() {
            RequestCode::GET_ROUTEINFO_BY_TOPIC if f.get("topic") == Some(rt.as_str()) => {
                let addr = a.get().expect("address known");
                FakeAction::Respond(ok().with_body(route_body(addr)))
            }
            RequestCode::QUERY_CONSUMER_OFFSET => no_stored_offset(),
            RequestCode::CONSUMER_SEND_MSG_BACK => refuse_send_back(),
            RequestCode::SEND_MESSAGE | RequestCode::SEND_MESSAGE_V2 => {
                let topic = f.get("topic").or_else(|| f.get("b")).unwrap_or("");
                let props = f.get("properties").or_else(|| f.get("i")).unwrap_or("");
                let _ = sent_tx.send((topic.to_owned(), props.to_owned()));
                let mut r = ok();
                let h = r.ext_fields_mut();
                h.put("msgId", "0A0000010000000000000000");
                h.put("queueId", 0);
                h.put("queueOffset", 0);
                FakeAction::Respond(r)
            }
            RequestCode::PULL_MESSAGE if f.get("topic") == Some(rt.as_str()) => {
                let offset = field(req, "queueOffset");
                pull_answer(offset, 1, (offset == 0).then(|| body.clone()))
            }
            RequestCode::PULL_MESSAGE => {
                let offset = field(req, "queueOffset");
                pull_answer(offset, offset, None)
            }
            _ => return None,
        })
    });
    addr.set(fake.addr()).unwrap();
    let (seen_tx, seen) = unbounded::<String>();
    let (release_tx, release_rx) = unbounded::<()>();
    let c = consumer_from_first(&fake, GROUP, "sweep-retry-instance")
        .consume_timeout(Duration::from_millis(500))
        .register_message_listener_concurrently(
            move |msgs: &[MessageExt], _: &mut ConsumeConcurrentlyContext| {
                let _ = seen_tx.send(msgs[0].topic().to_owned());
                if msgs[0].reconsume_times() <= 1 {
                    let _ = release_rx.recv_timeout(Duration::from_secs(30));
                }
                ConsumeConcurrentlyStatus::ConsumeSuccess
            },
        )
        .build()
        .unwrap();
    c.start().unwrap();
    assert_eq!(
        seen.recv_timeout(Duration::from_secs(20)).as_deref(),
        Ok(TOPIC),
        "the listener sees the original topic"
    );
    let (topic, props) = sent
        .recv_timeout(Duration::from_secs(20))
        .expect("the sweep sent the hung message to the retry topic");
    release_tx.send(()).unwrap();
    c.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!(topic, retry_topic);
    let retry_topic_prop = props
        .split('\u{2}')
        .filter_map(|kv| kv.split_once('\u{1}'))
        .find(|(k, _)| *k == "RETRY_TOPIC")
        .map(|(_, v)| v.to_owned());
    assert_eq!(
        retry_topic_prop.as_deref(),
        Some(TOPIC),
        "RETRY_TOPIC keeps the original topic: {props:?}"
    );
}

/// Issue 6, defect 2.11: a message consumed again locally (its send-back failed) outlives its
/// pull; it must not keep its pull frame alive. Its body must no longer lie inside the frame it
/// came in (kept alive here by a clone of its sibling's body, so a fresh copy cannot land there).
#[test]
fn a_message_consumed_again_locally_no_longer_pins_its_pull_frame() {
    let (tx, _send_backs) = unbounded();
    let fake = fake_with_messages(tx, false);
    let (seen_tx, seen_rx) = unbounded::<(i32, bool)>();
    // m0's body, and the address range the bodies of the first delivery spanned.
    let frame: Arc<Mutex<(Option<bytes::Bytes>, usize, usize)>> =
        Arc::new(Mutex::new((None, usize::MAX, 0)));
    let c = consumer_from_first(&fake, "pin_group", "pin-instance")
        .register_message_listener_concurrently(
            move |msgs: &[MessageExt], _: &mut ConsumeConcurrentlyContext| {
                let m = &msgs[0];
                let ptr = m.body().as_ptr() as usize;
                let mut f = frame.lock();
                if m.reconsume_times() == 0 {
                    f.1 = f.1.min(ptr);
                    f.2 = f.2.max(ptr + m.body().len());
                    if &m.body()[..] == b"m0" {
                        f.0 = Some(m.body().clone());
                        return ConsumeConcurrentlyStatus::ConsumeSuccess;
                    }
                    return ConsumeConcurrentlyStatus::ReconsumeLater;
                }
                let inside = (f.1..f.2).contains(&ptr);
                let _ = seen_tx.send((m.reconsume_times(), inside));
                ConsumeConcurrentlyStatus::ConsumeSuccess
            },
        )
        .consume_message_batch_max_size(1)
        .build()
        .unwrap();
    c.start().unwrap();
    let (times, inside) = seen_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("m1 was consumed again locally");
    assert_eq!(times, 1);
    assert!(
        !inside,
        "the locally retried message still shares its pull frame's allocation"
    );
    wait_commit_offset(&c, 2, Duration::from_secs(10), "after the local retry");
    c.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn an_offset_query_that_fails_leaves_the_queue_unassigned_until_the_broker_answers() {
    // The group committed offset 3 of a queue holding m0..m9. The broker fails the first
    // QUERY_CONSUMER_OFFSET with SYSTEM_ERROR, then answers.
    let (query_tx, queries) = unbounded::<()>();
    let (pull_tx, pulls) = unbounded::<i64>();
    let answered = std::sync::atomic::AtomicUsize::new(0);
    let fake = start_fake(move |req| {
        Some(match req.request_code() {
            RequestCode::QUERY_CONSUMER_OFFSET => {
                let _ = query_tx.send(());
                if answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    FakeAction::Respond(RemotingCommand::response(
                        ResponseCode::SYSTEM_ERROR,
                        Some("store failure".into()),
                    ))
                } else {
                    FakeAction::Respond(offset_answer(3))
                }
            }
            RequestCode::GET_MAX_OFFSET => FakeAction::Respond(offset_answer(10)),
            RequestCode::PULL_MESSAGE => {
                let offset = field(req, "queueOffset");
                let _ = pull_tx.send(offset);
                pull_action(offset, 10)
            }
            _ => return None,
        })
    });
    let (c, rx) = start_recording(consumer_of(
        &fake,
        "query_error_group",
        "query-error-instance",
    ));
    queries
        .recv_timeout(Duration::from_secs(30))
        .expect("the offset was queried");
    // A rebalance (the broker says the consumers changed) asks again, and gets the offset.
    notify_ids_changed(&fake, "query_error_group");
    let first_pull = pulls
        .recv_timeout(Duration::from_secs(30))
        .expect("the queue was pulled");
    assert_eq!(
        first_pull, 3,
        "the queue starts at the committed offset, not at the max offset (10)"
    );
    assert_eq!(recv_bodies(&rx, 7), bodies(3..10), "nothing skipped");
    wait_until("m9 is committed", || commit_offset(&c) == Some(10));
    c.shutdown(Duration::from_secs(5)).unwrap();
    assert!(rx.try_recv().is_err(), "nothing consumed twice");
}

#[test]
fn a_moved_offset_fixed_after_the_queue_was_rebuilt_leaves_one_puller() {
    const FIX_DELAY: Duration = Duration::from_secs(6);
    const GROUP: &str = "moved_group";
    /// Pulls whose answer is still due, and how often a pull arrived while another was.
    #[derive(Default)]
    struct Pulls {
        due: Vec<Instant>,
        overlaps: usize,
        at: Vec<i64>,
    }
    let membership = Membership::default();
    let available = Arc::new(std::sync::atomic::AtomicI64::new(10));
    let stored: Arc<Mutex<Option<i64>>> = Arc::default();
    let pulls: Arc<Mutex<Pulls>> = Arc::default();
    let moved_at: Arc<OnceLock<Instant>> = Arc::default();
    let lists: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let fake = {
        let (available, pulls, moved_at, lists) = (
            available.clone(),
            pulls.clone(),
            moved_at.clone(),
            lists.clone(),
        );
        start_fake_with(membership.clone(), move |req| {
            if let Some(a) = offset_storage(&stored, req) {
                return Some(a);
            }
            match req.request_code() {
                RequestCode::GET_CONSUMER_LIST_BY_GROUP => {
                    lists.lock().push(Instant::now());
                    None
                }
                RequestCode::PULL_MESSAGE => {
                    let offset = field(req, "queueOffset");
                    let now = Instant::now();
                    if moved_at.get().is_none() {
                        // The first pull: the offset moved (say, the messages before it expired).
                        moved_at.set(now).unwrap();
                        return Some(FakeAction::Respond(pull_response(
                            ResponseCode::PULL_OFFSET_MOVED,
                            0,
                            10,
                        )));
                    }
                    let max = available.load(std::sync::atomic::Ordering::SeqCst);
                    let action = pull_action(offset, max);
                    let mut p = pulls.lock();
                    p.due.retain(|due| *due > now);
                    p.overlaps += p.due.len();
                    p.at.push(offset);
                    if let FakeAction::RespondAfter(d, _) = &action {
                        p.due.push(now + *d);
                    }
                    Some(action)
                }
                _ => None,
            }
        })
    };
    let (c, rx) = start_recording(
        consumer_from_first(&fake, GROUP, "moved-instance")
            .offset_moved_fix_delay_for_tests(FIX_DELAY),
    );
    wait_until("the offset moved", || moved_at.get().is_some());
    let moved = *moved_at.get().unwrap();

    // Before the fix-up runs, a rebalance gives the queue to another consumer and the next one
    // gives it back: the queue is rebuilt, and consumes from the start.
    membership.others.lock().push("0@other".to_owned());
    notify_ids_changed(&fake, GROUP);
    wait_until("the queue was released", || commit_offset(&c).is_none());
    membership.others.lock().clear();
    notify_ids_changed(&fake, GROUP);
    assert_eq!(recv_bodies(&rx, 10), bodies(0..10));
    assert!(
        moved.elapsed() < FIX_DELAY,
        "the setup took longer than the fix-up delay; the test shows nothing"
    );

    // The fix-up runs (and asks for a rebalance), then two more messages arrive.
    wait_until("the fix-up's rebalance", || {
        lists.lock().iter().any(|t| *t >= moved + FIX_DELAY)
    });
    available.store(12, std::sync::atomic::Ordering::SeqCst);
    let mut got = recv_bodies(&rx, 2);
    wait_until("m11 is committed", || commit_offset(&c) == Some(12));
    let polls_at_end = |p: &Pulls| p.at.iter().filter(|o| **o == 12).count();
    let before = polls_at_end(&pulls.lock());
    wait_until("a few more pulls", || {
        polls_at_end(&pulls.lock()) >= before + 5
    });
    got.extend(rx.try_iter());
    assert_eq!(got, bodies(10..12), "each message delivered once");
    assert_eq!(
        pulls.lock().overlaps,
        0,
        "a pull arrived while another of the queue was in flight: two pullers"
    );
    assert_eq!(
        c.queue_stats()
            .iter()
            .filter(|q| q.message_queue.topic == TOPIC)
            .count(),
        1
    );
    c.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_pull_answered_after_a_reset_does_not_raise_the_reset_offset() {
    const GROUP: &str = "reset_race_group";
    // The queue holds m0..m9. The first pull at 10 (after all ten) is held by the broker until
    // the test releases it.
    let stored: Arc<Mutex<Option<i64>>> = Arc::default();
    let (release_pull, held) = unbounded::<()>();
    let hold = Arc::new(Mutex::new(Some(held)));
    // (offset, the commitOffset the pull carried): a pull carries the consumer's committed offset.
    let (pull_tx, pulls) = unbounded::<(i64, i64)>();
    let fake = {
        let hold = hold.clone();
        start_fake(move |req| {
            if let Some(a) = offset_storage(&stored, req) {
                return Some(a);
            }
            if req.request_code() != RequestCode::PULL_MESSAGE {
                return None;
            }
            let offset = field(req, "queueOffset");
            let committed = req
                .ext_fields()
                .get("commitOffset")
                .and_then(|v| v.parse().ok())
                .unwrap_or(-1);
            let _ = pull_tx.send((offset, committed));
            if offset == 10 {
                if let Some(held) = hold.lock().take() {
                    return Some(FakeAction::RespondWhen(
                        held,
                        pull_response(ResponseCode::PULL_NOT_FOUND, 10, 10),
                    ));
                }
            }
            Some(pull_action(offset, 10))
        })
    };
    // The listener holds m5 when it comes the second time (after the reset).
    let (tx, rx) = unbounded();
    let (holding_tx, holding) = unbounded::<()>();
    let (release_listener, listener_released) = unbounded::<()>();
    let m5_seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = consumer_from_first(&fake, GROUP, "reset-race-instance")
        .register_message_listener_concurrently(
            move |msgs: &[MessageExt], _: &mut ConsumeConcurrentlyContext| {
                for m in msgs {
                    if &m.body()[..] == b"m5"
                        && m5_seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1
                    {
                        let _ = holding_tx.send(());
                        let _ = listener_released.recv_timeout(Duration::from_secs(30));
                    }
                    let _ = tx.send(String::from_utf8_lossy(m.body()).into_owned());
                }
                ConsumeConcurrentlyStatus::ConsumeSuccess
            },
        )
        .build()
        .unwrap();
    c.start().unwrap();
    assert_eq!(recv_bodies(&rx, 10), bodies(0..10));
    wait_until("m9 is committed", || commit_offset(&c) == Some(10));
    wait_until("the pull at 10 is held", || hold.lock().is_none());

    // The broker resets the group to 5 while that pull is in flight. The queue is rebuilt from
    // 5 and its listener holds m5.
    push_reset(&fake, GROUP, 5);
    holding
        .recv_timeout(Duration::from_secs(30))
        .expect("m5 was consumed again after the reset");
    assert_eq!(commit_offset(&c), Some(5));

    // Now the old pull is answered: nothing found, next offset 10. It must not move the offset
    // of the rebuilt queue. Every pull carries the committed offset; watch a few.
    while pulls.try_recv().is_ok() {}
    drop(release_pull);
    let mut seen = 0;
    while seen < 5 {
        let (offset, committed) = pulls
            .recv_timeout(Duration::from_secs(30))
            .expect("the rebuilt queue keeps pulling");
        if offset == 10 {
            seen += 1;
            assert_eq!(
                committed, 5,
                "the committed offset after the reset (a stale pull raised it)"
            );
        }
    }
    assert_eq!(commit_offset(&c), Some(5));

    // The messages from the reset point are consumed again, and only those.
    drop(release_listener);
    assert_eq!(recv_bodies(&rx, 5), bodies(5..10));
    wait_until("m9 is committed again", || commit_offset(&c) == Some(10));
    c.shutdown(Duration::from_secs(5)).unwrap();
    assert!(rx.try_recv().is_err(), "nothing else consumed");
}

/// Five records (offsets 0 to 4) in one pull, the third (offset 2) with a corrupt magic code.
fn fake_with_a_corrupt_record() -> FakeBroker {
    let mut records = Vec::new();
    for i in 0..5i64 {
        let mut rec = record(i, 0);
        if i == 2 {
            rec[4..8].copy_from_slice(&0x0BAD_C0DE_i32.to_be_bytes());
        }
        records.extend_from_slice(&rec);
    }
    fake_serving(records, 5)
}

#[test]
fn an_undecodable_record_is_skipped_and_the_rest_of_its_pull_is_delivered() {
    let _ = env_logger::builder().is_test(true).try_init();
    let fake = fake_with_a_corrupt_record();
    let (seen_tx, seen_rx) = unbounded();
    let (entered_tx, entered_rx) = unbounded::<()>();
    let (release_tx, release_rx) = unbounded::<()>();
    let c = consumer_from_first(&fake, "undecodable_group", "undecodable-instance")
        .register_message_listener_concurrently(
            move |msgs: &[MessageExt], _: &mut ConsumeConcurrentlyContext| {
                for m in msgs {
                    if m.queue_offset() == 1 {
                        // Held until the test has looked at the committed offset.
                        entered_tx.send(()).unwrap();
                        let _ = release_rx.recv_timeout(Duration::from_secs(20));
                    }
                    let props =
                        ["MIN_OFFSET", "MAX_OFFSET"].map(|k| m.property(k).map(str::to_owned));
                    seen_tx.send((m.queue_offset(), props)).unwrap();
                }
                ConsumeConcurrentlyStatus::ConsumeSuccess
            },
        )
        .build()
        .unwrap();
    c.start().unwrap();

    // While offset 1 (before the corrupt record) is being consumed, the committed offset has not
    // passed it, so not the corrupt record either.
    entered_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("offset 1 reached the listener");
    assert!(
        commit_offset(&c).unwrap_or(-1) <= 1,
        "committed offset {} while offset 1 is still being consumed",
        commit_offset(&c).unwrap_or(-1)
    );
    release_tx.send(()).unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    let mut props = Vec::new();
    while got.len() < 4 {
        match seen_rx.recv_deadline(deadline) {
            Ok((offset, p)) => {
                got.push(offset);
                props.push(p);
            }
            Err(_) => panic!("only offsets {got:?} were consumed"),
        }
    }
    got.sort_unstable();
    assert_eq!(got, [0, 1, 3, 4], "every record but the corrupt one");
    // Each message carries the offset range of its pull, as Java sets it.
    for p in &props {
        assert_eq!(p, &[Some("0".to_owned()), Some("5".to_owned())]);
    }

    // Once all four are consumed, the committed offset passes the whole pull.
    wait_commit_offset(&c, 5, Duration::from_secs(10), "all four consumed");
    let stats = c.consume_stats();
    assert_eq!(stats[TOPIC].undecodable_msgs, 1, "{stats:?}");
    c.shutdown(Duration::from_secs(5)).unwrap();
    // After shutdown every delivery is in the channel: none was repeated.
    let extra: Vec<_> = seen_rx.try_iter().collect();
    assert!(extra.is_empty(), "delivered again: {extra:?}");
}

/// A route of one broker (the fake at `addr`) asking for `i32::MAX` read and write queues.
fn huge_route_body(addr: &str) -> Vec<u8> {
    format!(
        r#"{{"brokerDatas":[{{"brokerAddrs":{{"0":"{addr}"}},"brokerName":"{BROKER}","cluster":"C"}}],"filterServerTable":{{}},"queueDatas":[{{"brokerName":"{BROKER}","perm":6,"readQueueNums":2147483647,"topicSysFlag":0,"writeQueueNums":2147483647}}]}}"#
    )
    .into_bytes()
}

#[test]
fn a_route_asking_for_i32_max_queues_is_refused_and_the_previous_route_is_kept() {
    // TOPIC's route has one queue until `huge` is set; "HugeTopic"'s route is always huge.
    let huge = Arc::new(AtomicBool::new(false));
    let (huge_served_tx, huge_served) = unbounded::<String>();
    let (pull_tx, pulls) = unbounded::<Instant>();
    let membership = Membership::default();
    let addr = membership.addr.clone();
    let serve_huge = huge.clone();
    let fake = start_fake_with(membership, move |req| match req.request_code() {
        RequestCode::GET_ROUTEINFO_BY_TOPIC => {
            let topic = req.ext_fields().get("topic").unwrap_or("").to_owned();
            let is_huge = topic == "HugeTopic" || (topic == TOPIC && serve_huge.load(SeqCst));
            is_huge.then(|| {
                let body = huge_route_body(addr.get().unwrap());
                let _ = huge_served_tx.send(topic);
                FakeAction::Respond(ok().with_body(body))
            })
        }
        RequestCode::QUERY_CONSUMER_OFFSET => Some(no_stored_offset()),
        RequestCode::PULL_MESSAGE => {
            let _ = pull_tx.send(Instant::now());
            Some(pull_answer(field(req, "queueOffset"), 0, None))
        }
        _ => None,
    });
    let client = ClientConfig::builder()
        .poll_name_server_interval(Duration::from_millis(100))
        .build();
    let c = consumer_from_first(&fake, "huge_route", "huge-route")
        .client_config(client)
        .register_message_listener_concurrently(succeeding())
        .build()
        .unwrap();
    c.start().unwrap();
    pulls
        .recv_timeout(Duration::from_secs(30))
        .expect("the consumer pulls its one queue");

    huge.store(true, SeqCst);
    for _ in 0..3 {
        let topic = huge_served
            .recv_timeout(Duration::from_secs(10))
            .expect("the route is refreshed");
        assert_eq!(topic, TOPIC);
    }
    // The refreshes refused the route and kept the previous one: the consumer still holds its
    // one queue and goes on pulling it.
    let refused_at = Instant::now();
    let deadline = refused_at + Duration::from_secs(10);
    while pulls.recv_deadline(deadline).expect("still pulling") < refused_at {}
    let queues: Vec<MessageQueue> = c
        .queue_stats()
        .into_iter()
        .map(|q| q.message_queue)
        .collect();
    assert_eq!(queues, [MessageQueue::new(TOPIC, BROKER, 0)]);

    // A producer sending to a topic whose route asks for i32::MAX queues gets an error that says
    // so, not an allocation failure and not a timeout.
    let p = DefaultMQProducer::builder("huge_route_producer")
        .namesrv_addr(fake.addr())
        .instance_name("huge-route-producer")
        .build()
        .unwrap();
    p.start().unwrap();
    let e = p
        .send(&Message::new("HugeTopic", "x"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("HugeTopic") && e.contains(BROKER) && e.contains("2147483647"),
        "{e}"
    );
    p.shutdown(Duration::from_secs(5)).unwrap();
    c.shutdown(Duration::from_secs(5)).unwrap();
}

/// Three records (offsets 0 to 2) in one pull; offset 1 is zlib-compressed and inflates to
/// 6 MiB, past Java's default maximum message size (4 MiB).
fn fake_with_a_6_mib_inflating_record() -> FakeBroker {
    use std::io::Write;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(5));
    z.write_all(&[b'z'; 6 << 20]).unwrap();
    let mut big = MessageExt::new(TOPIC, z.finish().unwrap());
    big.set_sys_flag(MessageSysFlag::COMPRESSED_FLAG | MessageSysFlag::COMPRESSION_ZLIB_TYPE);
    big.set_queue_offset(1);
    big.set_commit_log_offset(1001);
    let mut records = record(0, 0);
    records.extend_from_slice(&MessageDecoder::encode(&big, false).unwrap());
    records.extend_from_slice(&record(2, 0));
    fake_serving(records, 3)
}

#[test]
fn a_body_inflating_past_the_configured_bound_is_skipped_and_counted_and_a_larger_bound_takes_it() {
    // Default bound: the 6 MiB body is undecodable; the records around it are delivered and the
    // committed offset passes all three (the undecodable one is logged and counted, not retried).
    // An 8 MiB bound: all three are delivered, the big one intact.
    for (bound, want) in [
        (None, vec![(0, 2), (2, 2)]),
        (Some(8 << 20), vec![(0, 2), (1, 6 << 20), (2, 2)]),
    ] {
        let fake = fake_with_a_6_mib_inflating_record();
        let (seen_tx, seen_rx) = unbounded();
        let name = format!("inflate_{}", bound.unwrap_or(0));
        let mut b = consumer_from_first(&fake, &name, &name);
        if let Some(bytes) = bound {
            b = b.max_decompressed_body_size(bytes);
        }
        let c = b
            .register_message_listener_concurrently(
                move |msgs: &[MessageExt], _: &mut ConsumeConcurrentlyContext| {
                    for m in msgs {
                        seen_tx.send((m.queue_offset(), m.body().len())).unwrap();
                    }
                    ConsumeConcurrentlyStatus::ConsumeSuccess
                },
            )
            .build()
            .unwrap();
        c.start().unwrap();
        let mut got = recv_n(&seen_rx, want.len(), Duration::from_secs(30));
        got.sort_unstable();
        assert_eq!(got, want, "bound {bound:?}");
        wait_commit_offset(&c, 3, Duration::from_secs(10), "the pull is consumed");
        let stats = c.consume_stats();
        assert_eq!(
            stats[TOPIC].undecodable_msgs,
            u64::from(bound.is_none()),
            "bound {bound:?}: {stats:?}"
        );
        c.shutdown(Duration::from_secs(5)).unwrap();
        let extra: Vec<_> = seen_rx.try_iter().collect();
        assert!(extra.is_empty(), "delivered again: {extra:?}");
    }
}

#[test]
fn a_decompression_bound_of_zero_is_refused_at_build() {
    let fake = start_fake(|_| None);
    let e = consumer_of(&fake, "zero_bound", "zero-bound")
        .max_decompressed_body_size(0)
        .register_message_listener_concurrently(succeeding())
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains("maxDecompressedBodySize"), "{e}");
}

#[test]
fn a_failed_message_with_the_largest_reconsume_count_is_retried_without_overflow() {
    // The count comes from the broker; i32::MAX + 1 overflowed (a panic in debug builds) on the
    // way to the retry topic and to the local retry.
    let fake = fake_serving(record(0, i32::MAX), 1);
    let (seen_tx, seen_rx) = unbounded();
    let c = consumer_from_first(&fake, "overflow_group", "overflow-instance")
        .register_message_listener_concurrently(
            move |msgs: &[MessageExt], _: &mut ConsumeConcurrentlyContext| {
                seen_tx.send(msgs[0].reconsume_times()).unwrap();
                ConsumeConcurrentlyStatus::ReconsumeLater
            },
        )
        .build()
        .unwrap();
    c.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    for attempt in 0..2 {
        let times = seen_rx
            .recv_deadline(deadline)
            .unwrap_or_else(|_| panic!("attempt {attempt} never reached the listener"));
        assert_eq!(times, i32::MAX, "attempt {attempt}: saturated");
    }
    c.shutdown(Duration::from_secs(5)).unwrap();
}

/// What the fake saw of an orderly consumer: lock requests (granted or not), pulls, unlocks.
#[derive(Debug, Clone, PartialEq)]
enum LockSeen {
    Lock {
        granted: bool,
        only_this_broker: Option<bool>,
    },
    Pull(i64),
    Unlock,
}

#[test]
fn an_orderly_consumer_pulls_a_queue_only_once_the_broker_grants_its_lock_and_unlocks_at_shutdown()
{
    let (tx, rx) = unbounded();
    let lock_calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stored: Arc<Mutex<Option<i64>>> = Arc::default();
    let fake = start_fake(move |req| {
        if let Some(a) = offset_storage(&stored, req) {
            return Some(a);
        }
        match req.request_code() {
            RequestCode::GET_MAX_OFFSET => Some(FakeAction::Respond(offset_answer(100))),
            RequestCode::LOCK_BATCH_MQ => {
                let body = lock_request(req);
                // The first two requests are refused: another client holds the queue.
                let granted = lock_calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= 2;
                let _ = tx.send(LockSeen::Lock {
                    granted,
                    only_this_broker: body["onlyThisBroker"].as_bool(),
                });
                Some(lock_answer(&body, granted))
            }
            RequestCode::UNLOCK_BATCH_MQ => {
                let _ = tx.send(LockSeen::Unlock);
                None
            }
            RequestCode::PULL_MESSAGE => {
                let offset = field(req, "queueOffset");
                let _ = tx.send(LockSeen::Pull(offset));
                Some(pull_answer(offset, 100, None))
            }
            _ => None,
        }
    });
    let c = consumer_of(&fake, "orderly_lock_group", "orderly-lock-instance")
        .register_message_listener_orderly(
            |_: &[MessageExt], _: &mut rocketmq_sync::ConsumeOrderlyContext| {
                rocketmq_sync::ConsumeOrderlyStatus::Success
            },
        )
        .build()
        .unwrap();
    c.start().unwrap();
    let started = Instant::now();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seen.iter().any(|s| matches!(s, LockSeen::Pull(_))) {
        seen.push(
            rx.recv_deadline(deadline)
                .expect("the consumer pulled after its lock"),
        );
    }
    let first_pull = seen
        .iter()
        .position(|s| matches!(s, LockSeen::Pull(_)))
        .unwrap();
    let locks: Vec<&LockSeen> = seen[..first_pull].iter().collect();
    assert_eq!(
        locks,
        [
            &LockSeen::Lock {
                granted: false,
                only_this_broker: Some(false)
            },
            &LockSeen::Lock {
                granted: false,
                only_this_broker: Some(false)
            },
            &LockSeen::Lock {
                granted: true,
                only_this_broker: Some(false)
            },
        ],
        "nothing is pulled before the lock is granted; every lock body says onlyThisBroker:false"
    );
    // A refused lock is asked again within seconds, not at the next 20 s rebalance.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the queue was locked only after {:?}",
        started.elapsed()
    );
    assert_eq!(
        seen[first_pull],
        LockSeen::Pull(100),
        "pulling starts at the max offset"
    );
    shutdown_bounded(&c);
    let unlocked = wait_seen_lock(&rx, |s| s == LockSeen::Unlock);
    assert!(unlocked, "the queue's lock was given back at shutdown");
}

/// Whether something `pick` accepts arrives within 10 s.
fn wait_seen_lock(rx: &Receiver<LockSeen>, pick: impl Fn(LockSeen) -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Ok(s) = rx.recv_deadline(deadline) {
        if pick(s) {
            return true;
        }
    }
    false
}

#[test]
fn an_orderly_queue_whose_lock_renewal_is_refused_stops_being_consumed() {
    // The lock the rebalance asks for is granted; every later one (the renewal 1 s after start,
    // and the consume service's attempts to lock again) is refused.
    let refused_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let refused = refused_at.clone();
    let lock_calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stored: Arc<Mutex<Option<i64>>> = Arc::default();
    let fake = start_fake(move |req| {
        if let Some(a) = offset_storage(&stored, req) {
            return Some(a);
        }
        match req.request_code() {
            RequestCode::LOCK_BATCH_MQ => {
                let body = lock_request(req);
                let granted = lock_calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
                if !granted {
                    refused.lock().get_or_insert_with(Instant::now);
                }
                Some(lock_answer(&body, granted))
            }
            RequestCode::PULL_MESSAGE => Some(pull_action(field(req, "queueOffset"), 100_000)),
            _ => None,
        }
    });
    let calls: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let rec = calls.clone();
    let c = consumer_from_first(&fake, "orderly_expiry_group", "orderly-expiry-instance")
        .register_message_listener_orderly(
            move |_: &[MessageExt], _: &mut rocketmq_sync::ConsumeOrderlyContext| {
                rec.lock().push(Instant::now());
                std::thread::sleep(Duration::from_millis(20));
                rocketmq_sync::ConsumeOrderlyStatus::Success
            },
        )
        .build()
        .unwrap();
    c.start().unwrap();
    assert!(
        support::broker::wait_until(Duration::from_secs(30), || refused_at.lock().is_some()),
        "the lock renewal was sent"
    );
    let t = refused_at.lock().unwrap();
    assert!(
        calls.lock().iter().any(|c| *c < t),
        "the queue was consumed while its lock was held"
    );
    // Watch for 2.5 s: after the batch running when the refusal arrived, nothing is consumed.
    let until = t + Duration::from_millis(2500);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    let late: Vec<Duration> = calls
        .lock()
        .iter()
        .filter(|c| **c > t + Duration::from_millis(200))
        .map(|c| c.duration_since(t))
        .collect();
    assert!(
        late.is_empty(),
        "consumed without the lock, {late:?} after the refusal"
    );
    shutdown_bounded(&c);
}

#[test]
fn an_orderly_queue_locked_but_whose_offset_cannot_be_read_gives_its_lock_back() {
    let (tx, rx) = unbounded();
    let fake = start_fake(move |req| match req.request_code() {
        RequestCode::QUERY_CONSUMER_OFFSET => Some(FakeAction::Respond(RemotingCommand::response(
            ResponseCode::SYSTEM_ERROR,
            Some("store unavailable".to_owned()),
        ))),
        RequestCode::LOCK_BATCH_MQ => {
            let body = lock_request(req);
            let _ = tx.send(LockSeen::Lock {
                granted: true,
                only_this_broker: body["onlyThisBroker"].as_bool(),
            });
            Some(lock_answer(&body, true))
        }
        RequestCode::UNLOCK_BATCH_MQ => {
            let _ = tx.send(LockSeen::Unlock);
            None
        }
        RequestCode::PULL_MESSAGE => {
            let _ = tx.send(LockSeen::Pull(field(req, "queueOffset")));
            None
        }
        _ => None,
    });
    let c = consumer_of(&fake, "orderly_nooffset_group", "orderly-nooffset-instance")
        .register_message_listener_orderly(
            |_: &[MessageExt], _: &mut rocketmq_sync::ConsumeOrderlyContext| {
                rocketmq_sync::ConsumeOrderlyStatus::Success
            },
        )
        .build()
        .unwrap();
    c.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = rx
        .recv_deadline(deadline)
        .expect("the consumer asked for the lock");
    assert!(matches!(first, LockSeen::Lock { granted: true, .. }));
    // The queue is not taken (its start offset is unknown), so the lock goes back at once
    // instead of keeping the queue from every other client until the broker expires it.
    let next = rx.recv_deadline(Instant::now() + Duration::from_secs(5));
    assert_eq!(
        next,
        Ok(LockSeen::Unlock),
        "the lock was given back, nothing pulled"
    );
    shutdown_bounded(&c);
}

/// A fake broker that grants every lock and serves offsets `0..max` of the one queue.
fn fake_granting_locks(max: i64) -> FakeBroker {
    let stored: Arc<Mutex<Option<i64>>> = Arc::default();
    start_fake(move |req| {
        if let Some(a) = offset_storage(&stored, req) {
            return Some(a);
        }
        match req.request_code() {
            RequestCode::LOCK_BATCH_MQ => {
                let body = lock_request(req);
                Some(lock_answer(&body, true))
            }
            RequestCode::PULL_MESSAGE => Some(pull_action(field(req, "queueOffset"), max)),
            _ => None,
        }
    })
}

#[test]
fn an_orderly_success_without_auto_commit_leaves_the_offset_until_a_committing_success() {
    let fake = fake_granting_locks(4);
    let (holding_tx, holding) = unbounded::<()>();
    let (release, released) = unbounded::<()>();
    let c = consumer_from_first(&fake, "orderly_nocommit_group", "orderly-nocommit-instance")
        .register_message_listener_orderly(
            move |msgs: &[MessageExt], ctx: &mut rocketmq_sync::ConsumeOrderlyContext| {
                assert_eq!(msgs.len(), 1, "batch size is 1");
                if &msgs[0].body()[..] == b"m3" {
                    // m0..m2 were consumed without committing; hold m3 while the test looks.
                    let _ = holding_tx.send(());
                    let _ = released.recv_timeout(Duration::from_secs(30));
                } else {
                    ctx.set_auto_commit(false);
                }
                rocketmq_sync::ConsumeOrderlyStatus::Success
            },
        )
        .build()
        .unwrap();
    c.start().unwrap();
    holding
        .recv_timeout(Duration::from_secs(30))
        .expect("m3 reached the listener");
    let before = commit_offset(&c);
    assert!(
        before.is_none_or(|o| o <= 0),
        "the offset moved past messages consumed without auto-commit: {before:?}"
    );
    drop(release);
    wait_commit_offset(
        &c,
        4,
        Duration::from_secs(30),
        "the committing success of m3",
    );
    shutdown_bounded(&c);
}
