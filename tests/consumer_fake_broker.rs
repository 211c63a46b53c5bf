//! Push-consumer behaviour a real broker cannot be made to show on demand, driven by the
//! in-process `FakeBroker` acting as name server and broker at one address.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Sender};
use parking_lot::Mutex;
use rocketmq_sync::remoting::protocol::body::FjValue;
use rocketmq_sync::remoting::protocol::MessageDecoder;
use rocketmq_sync::remoting::protocol::{RemotingCommand, RequestCode, ResponseCode};
use rocketmq_sync::testing::{FakeAction, FakeBroker};
use rocketmq_sync::MessageExt;
use rocketmq_sync::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, ConsumeFromWhere, DefaultMQPushConsumer,
};

const TOPIC: &str = "FakeTopic";
const BROKER: &str = "fake-broker";

/// What the fake saw, for assertions.
#[derive(Debug, Clone)]
enum Seen {
    SearchOffset(i64),
    Pull(i64),
    ConsumerList,
}

fn ok() -> RemotingCommand {
    RemotingCommand::response(ResponseCode::SUCCESS, None)
}

/// The name-server and membership answers both fakes share: the route of [`TOPIC`] (one queue
/// on the fake itself; other topics do not exist), heartbeats (remembering the client id) and
/// the consumer list (that one client).
#[derive(Clone, Default)]
struct Membership {
    addr: Arc<OnceLock<String>>,
    client_id: Arc<Mutex<String>>,
}

impl Membership {
    fn answer(&self, req: &RemotingCommand) -> Option<FakeAction> {
        match req.request_code() {
            RequestCode::GET_ROUTEINFO_BY_TOPIC if req.ext_fields().get("topic") == Some(TOPIC) => {
                let body = format!(
                    r#"{{"brokerDatas":[{{"brokerAddrs":{{"0":"{}"}},"brokerName":"{BROKER}","cluster":"C"}}],"filterServerTable":{{}},"queueDatas":[{{"brokerName":"{BROKER}","perm":6,"readQueueNums":1,"topicSysFlag":0,"writeQueueNums":1}}]}}"#,
                    self.addr.get().expect("address known")
                );
                Some(FakeAction::Respond(ok().with_body(body.into_bytes())))
            }
            RequestCode::GET_ROUTEINFO_BY_TOPIC => Some(FakeAction::Respond(
                RemotingCommand::response(ResponseCode::TOPIC_NOT_EXIST, Some("no route".into())),
            )),
            RequestCode::HEART_BEAT => {
                if let Some(b) = req.body() {
                    let v: serde_json::Value = serde_json::from_slice(b).unwrap();
                    *self.client_id.lock() = v["clientID"].as_str().unwrap_or("").to_owned();
                }
                Some(FakeAction::Respond(ok()))
            }
            RequestCode::GET_CONSUMER_LIST_BY_GROUP => {
                let body = format!(r#"{{"consumerIdList":["{}"]}}"#, self.client_id.lock());
                Some(FakeAction::Respond(ok().with_body(body.into_bytes())))
            }
            _ => None,
        }
    }
}

/// Starts a fake: `handler` sees every request first and answers the ones it cares about;
/// the rest get the [`Membership`] answers, or SUCCESS.
fn start_fake(
    handler: impl Fn(&RemotingCommand) -> Option<FakeAction> + Send + Sync + 'static,
) -> FakeBroker {
    let membership = Membership::default();
    let m = membership.clone();
    let fake = FakeBroker::start(move |req| {
        handler(req)
            .or_else(|| m.answer(req))
            .unwrap_or_else(|| FakeAction::Respond(ok()))
    })
    .expect("fake broker starts");
    membership.addr.set(fake.addr()).unwrap();
    fake
}

/// A fake broker + name server serving one topic with one queue whose consumer offset is
/// unknown (QUERY_NOT_FOUND), whose timestamp search answers `search_answer`, and whose pulls
/// find nothing.
fn fake(seen: Sender<Seen>, search_answer: i64) -> FakeBroker {
    // The consumer offset the fake stores (UPDATE_CONSUMER_OFFSET) and answers with.
    let stored: Arc<Mutex<Option<i64>>> = Arc::new(Mutex::new(None));
    start_fake(move |req| {
        let f = req.ext_fields();
        Some(match req.request_code() {
            RequestCode::GET_CONSUMER_LIST_BY_GROUP => {
                let _ = seen.send(Seen::ConsumerList);
                return None;
            }
            RequestCode::QUERY_CONSUMER_OFFSET => match *stored.lock() {
                Some(o) => {
                    let mut r = ok();
                    r.ext_fields_mut().put("offset", o);
                    FakeAction::Respond(r)
                }
                None => FakeAction::Respond(RemotingCommand::response(
                    ResponseCode::QUERY_NOT_FOUND,
                    Some("Not found, V3_0_6_SNAPSHOT maybe".into()),
                )),
            },
            RequestCode::UPDATE_CONSUMER_OFFSET => {
                *stored.lock() = f.get("commitOffset").and_then(|v| v.parse().ok());
                FakeAction::Respond(ok())
            }
            RequestCode::SEARCH_OFFSET_BY_TIMESTAMP => {
                let ts: i64 = f.get("timestamp").unwrap().parse().unwrap();
                let _ = seen.send(Seen::SearchOffset(ts));
                let mut r = ok();
                r.ext_fields_mut().put("offset", search_answer);
                FakeAction::Respond(r)
            }
            RequestCode::GET_MAX_OFFSET => {
                let mut r = ok();
                r.ext_fields_mut().put("offset", 100);
                FakeAction::Respond(r)
            }
            RequestCode::PULL_MESSAGE => {
                let offset: i64 = f.get("queueOffset").unwrap().parse().unwrap();
                let _ = seen.send(Seen::Pull(offset));
                let mut r = RemotingCommand::response(ResponseCode::PULL_NOT_FOUND, None);
                let h = r.ext_fields_mut();
                h.put("nextBeginOffset", offset);
                h.put("minOffset", 0);
                h.put("maxOffset", 100);
                h.put("suggestWhichBrokerId", 0);
                FakeAction::RespondAfter(Duration::from_millis(100), r)
            }
            _ => return None,
        })
    })
}

fn listener() -> impl Fn(&[MessageExt], &mut ConsumeConcurrentlyContext) -> ConsumeConcurrentlyStatus
       + Send
       + Sync
       + 'static {
    |_: &[MessageExt], _: &mut ConsumeConcurrentlyContext| ConsumeConcurrentlyStatus::ConsumeSuccess
}

#[test]
fn consume_from_timestamp_starts_at_the_searched_offset() {
    let (tx, rx) = unbounded();
    let fake = fake(tx, 7);
    let since = 1_700_000_000_000;
    let c = DefaultMQPushConsumer::builder("ts_group")
        .namesrv_addr(fake.addr())
        .instance_name("ts-instance")
        .subscribe(TOPIC, "*")
        .consume_from_where(ConsumeFromWhere::Timestamp)
        .consume_timestamp_millis(since)
        .register_message_listener_concurrently(listener())
        .build()
        .unwrap();
    c.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut searched = None;
    let first_pull = loop {
        match rx.recv_deadline(deadline).expect("the consumer pulled") {
            Seen::SearchOffset(ts) => searched = Some(ts),
            Seen::Pull(o) => break o,
            Seen::ConsumerList => {}
        }
    };
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
    let c = DefaultMQPushConsumer::builder("last_group")
        .namesrv_addr(fake.addr())
        .instance_name("last-instance")
        .subscribe(TOPIC, "*")
        .register_message_listener_concurrently(listener())
        .build()
        .unwrap();
    c.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let first_pull = loop {
        if let Seen::Pull(o) = rx.recv_deadline(deadline).expect("the consumer pulled") {
            break o;
        }
    };
    assert_eq!(first_pull, 100);
    c.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_broker_that_vanishes_is_survived_and_shutdown_stays_bounded() {
    let (tx, rx) = unbounded();
    let fake = fake(tx, 0);
    let c = DefaultMQPushConsumer::builder("vanish_group")
        .namesrv_addr(fake.addr())
        .instance_name("vanish-instance")
        .subscribe(TOPIC, "*")
        .consume_from_where(ConsumeFromWhere::FirstOffset)
        .register_message_listener_concurrently(listener())
        .build()
        .unwrap();
    c.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(rx.recv_deadline(deadline).expect("pulled"), Seen::Pull(_)) {}
    // The broker disappears with a long poll in flight: the pull fails, is retried later, and
    // the consumer keeps its queue.
    drop(fake);
    let t = Instant::now();
    c.shutdown(Duration::from_secs(5)).unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "shutdown took {:?}",
        t.elapsed()
    );
}

fn push(
    fake: &FakeBroker,
    code: RequestCode,
    fields: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> RemotingCommand {
    let mut req = RemotingCommand::request(code);
    for (k, v) in fields {
        req.ext_fields_mut().insert(*k, *v);
    }
    if let Some(b) = body {
        req.set_body(b);
    }
    assert_eq!(fake.push_request(&req), 1, "one client is connected");
    fake.recv_response(Duration::from_secs(10))
        .expect("the client answered")
}

#[test]
fn broker_requests_are_answered_on_the_callback_pool() {
    let (tx, rx) = unbounded();
    let fake = fake(tx, 0);
    let (body_tx, body_rx) = unbounded();
    let c = DefaultMQPushConsumer::builder("req_group")
        .namesrv_addr(fake.addr())
        .instance_name("req-instance")
        .subscribe(TOPIC, "*")
        .consume_from_where(ConsumeFromWhere::FirstOffset)
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
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(rx.recv_deadline(deadline).expect("pulled"), Seen::Pull(_)) {}

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
    let mut notify = RemotingCommand::request(RequestCode::NOTIFY_CONSUMER_IDS_CHANGED);
    notify.ext_fields_mut().insert("consumerGroup", "req_group");
    notify.mark_oneway();
    assert_eq!(fake.push_request(&notify), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches!(
        rx.recv_deadline(deadline).expect("rebalanced"),
        Seen::ConsumerList
    ) {}

    // RESET_CONSUMER_CLIENT_OFFSET moves the queue to the given offset.
    let reset = format!(
        r#"{{"offsetTable":{{{{"brokerName":"{BROKER}","queueId":0,"topic":"{TOPIC}"}}:42}}}}"#
    );
    let mut req = RemotingCommand::request(RequestCode::RESET_CONSUMER_CLIENT_OFFSET);
    for (k, v) in [
        ("topic", TOPIC),
        ("group", "req_group"),
        ("timestamp", "0"),
        ("isForce", "true"),
    ] {
        req.ext_fields_mut().insert(k, v);
    }
    req.set_body(reset.into_bytes());
    assert_eq!(fake.push_request(&req), 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Seen::Pull(42) = rx
            .recv_deadline(deadline)
            .expect("pulled again after the reset")
        {
            break;
        }
    }
    c.shutdown(Duration::from_secs(5)).unwrap();
}

/// A fake whose queue holds two messages (offsets 0 and 1). CONSUMER_SEND_MSG_BACK answers
/// SUCCESS when `send_back_ok`, SYSTEM_ERROR otherwise; sends to the retry topic fail (no route).
fn fake_with_messages(seen: Sender<(i64, i32)>, send_back_ok: bool) -> FakeBroker {
    let records: Vec<u8> = (0..2i64)
        .flat_map(|i| {
            let mut m = MessageExt::new(TOPIC, format!("m{i}"));
            m.set_queue_offset(i);
            m.set_commit_log_offset(1000 + i);
            MessageDecoder::encode(&m, false).unwrap().to_vec()
        })
        .collect();
    start_fake(move |req| {
        let f = req.ext_fields();
        Some(match req.request_code() {
            RequestCode::QUERY_CONSUMER_OFFSET => FakeAction::Respond(RemotingCommand::response(
                ResponseCode::QUERY_NOT_FOUND,
                None,
            )),
            RequestCode::CONSUMER_SEND_MSG_BACK => {
                let offset: i64 = f.get("offset").unwrap().parse().unwrap();
                let level: i32 = f.get("delayLevel").unwrap().parse().unwrap();
                let _ = seen.send((offset, level));
                if send_back_ok {
                    FakeAction::Respond(ok())
                } else {
                    FakeAction::Respond(RemotingCommand::response(
                        ResponseCode::SYSTEM_ERROR,
                        Some("send back refused".into()),
                    ))
                }
            }
            RequestCode::PULL_MESSAGE => {
                let offset: i64 = f.get("queueOffset").unwrap().parse().unwrap();
                let (code, next, body) = if offset == 0 {
                    (ResponseCode::SUCCESS, 2, Some(records.clone()))
                } else {
                    (ResponseCode::PULL_NOT_FOUND, offset, None)
                };
                let mut r = RemotingCommand::response(code, None);
                let h = r.ext_fields_mut();
                h.put("nextBeginOffset", next);
                h.put("minOffset", 0);
                h.put("maxOffset", 2);
                h.put("suggestWhichBrokerId", 0);
                if let Some(b) = body {
                    r.set_body(b);
                }
                let delay = if offset == 0 { 0 } else { 200 };
                FakeAction::RespondAfter(Duration::from_millis(delay), r)
            }
            _ => return None,
        })
    })
}

#[test]
fn ack_index_sends_back_only_the_unacknowledged_messages() {
    let (tx, rx) = unbounded();
    let fake = fake_with_messages(tx, true);
    let c = DefaultMQPushConsumer::builder("ack_group")
        .namesrv_addr(fake.addr())
        .instance_name("ack-instance")
        .subscribe(TOPIC, "*")
        .consume_from_where(ConsumeFromWhere::FirstOffset)
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
    let deadline = Instant::now() + Duration::from_secs(10);
    while c
        .queue_stats()
        .iter()
        .find(|q| q.message_queue.topic == TOPIC)
        .map_or(true, |q| q.commit_offset != 2)
    {
        assert!(
            Instant::now() < deadline,
            "offset never reached 2: {:?}",
            c.queue_stats()
        );
        std::thread::yield_now();
    }
    c.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn when_send_back_fails_the_message_is_consumed_again_locally() {
    let (tx, _send_backs) = unbounded();
    let fake = fake_with_messages(tx, false);
    let (seen_tx, seen_rx) = unbounded();
    let c = DefaultMQPushConsumer::builder("local_retry_group")
        .namesrv_addr(fake.addr())
        .instance_name("local-retry-instance")
        .subscribe(TOPIC, "*")
        .consume_from_where(ConsumeFromWhere::FirstOffset)
        .register_message_listener_concurrently(
            move |msgs: &[MessageExt], _: &mut ConsumeConcurrentlyContext| {
                let m = &msgs[0];
                seen_tx
                    .send((
                        String::from_utf8_lossy(m.body()).into_owned(),
                        m.reconsume_times(),
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
    c.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while !got.contains(&("m1".to_owned(), 1)) {
        got.push(
            seen_rx
                .recv_deadline(deadline)
                .unwrap_or_else(|_| panic!("saw {got:?}")),
        );
    }
    // While m1 waited for its local retry, the committed offset stayed before it.
    let q = c
        .queue_stats()
        .into_iter()
        .find(|q| q.message_queue.topic == TOPIC)
        .unwrap();
    assert!(q.commit_offset <= 2);
    c.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn consume_hooks_run_before_and_after_every_call() {
    use rocketmq_sync::{ConsumeMessageContext, ConsumeMessageHook};
    use std::sync::atomic::{AtomicUsize, Ordering};
    #[derive(Default)]
    struct Counting {
        before: AtomicUsize,
        after_ok: AtomicUsize,
    }
    struct Hook(Arc<Counting>);
    impl ConsumeMessageHook for Hook {
        fn hook_name(&self) -> &str {
            "counting"
        }
        fn consume_message_before(&self, ctx: &ConsumeMessageContext<'_>) {
            assert!(ctx.status.is_none());
            self.0.before.fetch_add(ctx.msgs.len(), Ordering::SeqCst);
        }
        fn consume_message_after(&self, ctx: &ConsumeMessageContext<'_>) {
            if ctx.success {
                self.0.after_ok.fetch_add(ctx.msgs.len(), Ordering::SeqCst);
            }
        }
    }
    let (tx, _send_backs) = unbounded();
    let fake = fake_with_messages(tx, true);
    let counts = Arc::new(Counting::default());
    let c = DefaultMQPushConsumer::builder("hook_group")
        .namesrv_addr(fake.addr())
        .instance_name("hook-instance")
        .subscribe(TOPIC, "*")
        .consume_from_where(ConsumeFromWhere::FirstOffset)
        .consume_message_hook(Hook(counts.clone()))
        .register_message_listener_concurrently(listener())
        .build()
        .unwrap();
    c.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while counts.after_ok.load(Ordering::SeqCst) < 2 {
        assert!(
            Instant::now() < deadline,
            "hooks did not run for both messages"
        );
        std::thread::yield_now();
    }
    assert_eq!(counts.before.load(Ordering::SeqCst), 2);
    c.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_message_consumed_past_the_timeout_is_sent_back_with_delay_level_3() {
    let (tx, send_backs) = unbounded();
    let fake = fake_with_messages(tx, true);
    let (release_tx, release_rx) = unbounded::<()>();
    let c = DefaultMQPushConsumer::builder("timeout_group")
        .namesrv_addr(fake.addr())
        .instance_name("timeout-instance")
        .subscribe(TOPIC, "*")
        .consume_from_where(ConsumeFromWhere::FirstOffset)
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

/// Encodes `n` messages of `topic` at queue offsets `0..n` (commit-log offsets `base + i`, bodies
/// `{prefix}{i}`), each given `props`, as one pull body.
fn records(topic: &str, n: i64, base: i64, prefix: &str, props: &[(&str, &str)]) -> Vec<u8> {
    (0..n)
        .flat_map(|i| {
            let mut m = MessageExt::new(topic, format!("{prefix}{i}"));
            m.set_queue_offset(i);
            m.set_commit_log_offset(base + i);
            for (k, v) in props {
                m.put_property(*k, *v);
            }
            MessageDecoder::encode(&m, false).unwrap().to_vec()
        })
        .collect()
}

/// A pull answer: `body` (SUCCESS, next offset `next`) when there is one, else PULL_NOT_FOUND
/// after 100 ms.
fn pull_answer(offset: i64, next: i64, body: Option<Vec<u8>>) -> FakeAction {
    let code = if body.is_some() {
        ResponseCode::SUCCESS
    } else {
        ResponseCode::PULL_NOT_FOUND
    };
    let mut r = RemotingCommand::response(code, None);
    let h = r.ext_fields_mut();
    h.put(
        "nextBeginOffset",
        if body.is_some() { next } else { offset },
    );
    h.put("minOffset", 0);
    h.put("maxOffset", next);
    h.put("suggestWhichBrokerId", 0);
    match body {
        Some(b) => {
            r.set_body(b);
            FakeAction::Respond(r)
        }
        None => FakeAction::RespondAfter(Duration::from_millis(100), r),
    }
}

/// Waits until the committed offset of [`TOPIC`]'s queue is `want`, or panics after `within`.
fn wait_commit_offset(c: &DefaultMQPushConsumer, want: i64, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while c
        .queue_stats()
        .iter()
        .find(|q| q.message_queue.topic == TOPIC)
        .map_or(true, |q| q.commit_offset != want)
    {
        assert!(
            Instant::now() < deadline,
            "{what}: the committed offset never reached {want}: {:?}",
            c.queue_stats()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
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
            RequestCode::QUERY_CONSUMER_OFFSET => FakeAction::Respond(RemotingCommand::response(
                ResponseCode::QUERY_NOT_FOUND,
                None,
            )),
            RequestCode::CONSUMER_SEND_MSG_BACK => {
                let _ = sb_tx.send(f.get("offset").unwrap().parse().unwrap());
                FakeAction::Respond(ok())
            }
            RequestCode::PULL_MESSAGE if f.get("topic") == Some(TOPIC) => {
                let offset: i64 = f.get("queueOffset").unwrap().parse().unwrap();
                pull_answer(offset, N, (offset == 0).then(|| body.clone()))
            }
            _ => return None,
        })
    });
    let (seen_tx, seen) = unbounded::<String>();
    let (release_tx, release_rx) = unbounded::<()>();
    let c = DefaultMQPushConsumer::builder("sweep_group")
        .namesrv_addr(fake.addr())
        .instance_name("sweep-instance")
        .subscribe(TOPIC, "*")
        .consume_from_where(ConsumeFromWhere::FirstOffset)
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
                let body = format!(
                    r#"{{"brokerDatas":[{{"brokerAddrs":{{"0":"{}"}},"brokerName":"{BROKER}","cluster":"C"}}],"filterServerTable":{{}},"queueDatas":[{{"brokerName":"{BROKER}","perm":6,"readQueueNums":1,"topicSysFlag":0,"writeQueueNums":1}}]}}"#,
                    a.get().expect("address known")
                );
                FakeAction::Respond(ok().with_body(body.into_bytes()))
            }
            RequestCode::QUERY_CONSUMER_OFFSET => FakeAction::Respond(RemotingCommand::response(
                ResponseCode::QUERY_NOT_FOUND,
                None,
            )),
            RequestCode::CONSUMER_SEND_MSG_BACK => FakeAction::Respond(RemotingCommand::response(
                ResponseCode::SYSTEM_ERROR,
                Some("send back refused".into()),
            )),
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
                let offset: i64 = f.get("queueOffset").unwrap().parse().unwrap();
                pull_answer(offset, 1, (offset == 0).then(|| body.clone()))
            }
            RequestCode::PULL_MESSAGE => {
                let offset: i64 = f.get("queueOffset").unwrap().parse().unwrap();
                pull_answer(offset, offset, None)
            }
            _ => return None,
        })
    });
    addr.set(fake.addr()).unwrap();
    let (seen_tx, seen) = unbounded::<String>();
    let (release_tx, release_rx) = unbounded::<()>();
    let c = DefaultMQPushConsumer::builder(GROUP)
        .namesrv_addr(fake.addr())
        .instance_name("sweep-retry-instance")
        .subscribe(TOPIC, "*")
        .consume_from_where(ConsumeFromWhere::FirstOffset)
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
    let c = DefaultMQPushConsumer::builder("pin_group")
        .namesrv_addr(fake.addr())
        .instance_name("pin-instance")
        .subscribe(TOPIC, "*")
        .consume_from_where(ConsumeFromWhere::FirstOffset)
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

/// A fake whose queue holds `records` (stored records from offset 0), all returned by one pull
/// from offset 0 with `nextBeginOffset` and `maxOffset` = `next`, `minOffset` 0. Later pulls find
/// nothing; CONSUMER_SEND_MSG_BACK is refused and sends to the retry topic fail (no route).
fn fake_serving(records: Vec<u8>, next: i64) -> FakeBroker {
    start_fake(move |req| {
        let f = req.ext_fields();
        Some(match req.request_code() {
            RequestCode::QUERY_CONSUMER_OFFSET => FakeAction::Respond(RemotingCommand::response(
                ResponseCode::QUERY_NOT_FOUND,
                None,
            )),
            RequestCode::CONSUMER_SEND_MSG_BACK => FakeAction::Respond(RemotingCommand::response(
                ResponseCode::SYSTEM_ERROR,
                Some("send back refused".into()),
            )),
            RequestCode::PULL_MESSAGE => {
                let offset: i64 = f.get("queueOffset").unwrap().parse().unwrap();
                let (code, next_begin, body) = if offset == 0 {
                    (ResponseCode::SUCCESS, next, Some(records.clone()))
                } else {
                    (ResponseCode::PULL_NOT_FOUND, offset, None)
                };
                let mut r = RemotingCommand::response(code, None);
                let h = r.ext_fields_mut();
                h.put("nextBeginOffset", next_begin);
                h.put("minOffset", 0);
                h.put("maxOffset", next);
                h.put("suggestWhichBrokerId", 0);
                if let Some(b) = body {
                    r.set_body(b);
                }
                let delay = if offset == 0 { 0 } else { 200 };
                FakeAction::RespondAfter(Duration::from_millis(delay), r)
            }
            _ => return None,
        })
    })
}

/// The stored record of message `m{offset}` at `offset`.
fn record(offset: i64, reconsume_times: i32) -> Vec<u8> {
    let mut m = MessageExt::new(TOPIC, format!("m{offset}"));
    m.set_queue_offset(offset);
    m.set_commit_log_offset(1000 + offset);
    m.set_reconsume_times(reconsume_times);
    MessageDecoder::encode(&m, false).unwrap().to_vec()
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

/// The committed offset of [`TOPIC`]'s queue (-1 before there is one).
fn commit_offset(c: &DefaultMQPushConsumer) -> i64 {
    c.queue_stats()
        .iter()
        .find(|q| q.message_queue.topic == TOPIC)
        .map_or(-1, |q| q.commit_offset)
}

#[test]
fn an_undecodable_record_is_skipped_and_the_rest_of_its_pull_is_delivered() {
    let _ = env_logger::builder().is_test(true).try_init();
    let fake = fake_with_a_corrupt_record();
    let (seen_tx, seen_rx) = unbounded();
    let (entered_tx, entered_rx) = unbounded::<()>();
    let (release_tx, release_rx) = unbounded::<()>();
    let c = DefaultMQPushConsumer::builder("undecodable_group")
        .namesrv_addr(fake.addr())
        .instance_name("undecodable-instance")
        .subscribe(TOPIC, "*")
        .consume_from_where(ConsumeFromWhere::FirstOffset)
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
        commit_offset(&c) <= 1,
        "committed offset {} while offset 1 is still being consumed",
        commit_offset(&c)
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
    let deadline = Instant::now() + Duration::from_secs(10);
    while commit_offset(&c) != 5 {
        assert!(
            Instant::now() < deadline,
            "the committed offset stayed at {}",
            commit_offset(&c)
        );
        std::thread::yield_now();
    }
    let stats = c.consume_stats();
    assert_eq!(stats[TOPIC].undecodable_msgs, 1, "{stats:?}");
    c.shutdown(Duration::from_secs(5)).unwrap();
    // After shutdown every delivery is in the channel: none was repeated.
    let extra: Vec<_> = seen_rx.try_iter().collect();
    assert!(extra.is_empty(), "delivered again: {extra:?}");
}

#[test]
fn a_failed_message_with_the_largest_reconsume_count_is_retried_without_overflow() {
    // The count comes from the broker; i32::MAX + 1 overflowed (a panic in debug builds) on the
    // way to the retry topic and to the local retry.
    let fake = fake_serving(record(0, i32::MAX), 1);
    let (seen_tx, seen_rx) = unbounded();
    let c = DefaultMQPushConsumer::builder("overflow_group")
        .namesrv_addr(fake.addr())
        .instance_name("overflow-instance")
        .subscribe(TOPIC, "*")
        .consume_from_where(ConsumeFromWhere::FirstOffset)
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
