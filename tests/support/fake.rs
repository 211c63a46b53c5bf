//! Scaffolding of the tests driven by the in-process `FakeBroker` (feature `test-util`): a fake
//! name server and broker at one address serving [`TOPIC`] (one queue), stored records and pull
//! answers, the group's offset storage, requests the broker pushes to the client, listeners and
//! waits on the consumer's state.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use rocketmq_sync::codec::MessageDecoder;
use rocketmq_sync::remoting::protocol::{RemotingCommand, RequestCode, ResponseCode};
use rocketmq_sync::testing::{FakeAction, FakeBroker};
use rocketmq_sync::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, ConsumeFromWhere, DefaultMQPushConsumer,
    DefaultMQPushConsumerBuilder, MessageExt,
};

/// The topic the fake routes to itself.
pub const TOPIC: &str = "FakeTopic";
/// The fake's broker name.
pub const BROKER: &str = "fake-broker";

pub fn ok() -> RemotingCommand {
    RemotingCommand::response(ResponseCode::SUCCESS, None)
}

/// QUERY_CONSUMER_OFFSET's answer when the group has no offset for the queue.
pub fn no_stored_offset() -> FakeAction {
    FakeAction::Respond(RemotingCommand::response(
        ResponseCode::QUERY_NOT_FOUND,
        None,
    ))
}

/// CONSUMER_SEND_MSG_BACK refused (the client then sends to the retry topic itself).
pub fn refuse_send_back() -> FakeAction {
    FakeAction::Respond(RemotingCommand::response(
        ResponseCode::SYSTEM_ERROR,
        Some("send back refused".into()),
    ))
}

/// A topic route: one queue (read and write) on the broker at `addr`.
pub fn route_body(addr: &str) -> Vec<u8> {
    format!(
        r#"{{"brokerDatas":[{{"brokerAddrs":{{"0":"{addr}"}},"brokerName":"{BROKER}","cluster":"C"}}],"filterServerTable":{{}},"queueDatas":[{{"brokerName":"{BROKER}","perm":6,"readQueueNums":1,"topicSysFlag":0,"writeQueueNums":1}}]}}"#
    )
    .into_bytes()
}

/// The name-server and membership answers every fake gives: the route of [`TOPIC`] (one queue
/// on the fake itself; other topics do not exist), heartbeats (remembering the client id) and
/// the consumer list (that one client, after [`Membership::others`]).
#[derive(Clone, Default)]
pub struct Membership {
    pub addr: Arc<OnceLock<String>>,
    pub client_id: Arc<Mutex<String>>,
    /// Other consumers of the group, listed before this client's id.
    pub others: Arc<Mutex<Vec<String>>>,
}

impl Membership {
    pub fn answer(&self, req: &RemotingCommand) -> Option<FakeAction> {
        match req.request_code() {
            RequestCode::GET_ROUTEINFO_BY_TOPIC if req.ext_fields().get("topic") == Some(TOPIC) => {
                let addr = self.addr.get().expect("address known");
                Some(FakeAction::Respond(ok().with_body(route_body(addr))))
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
                let mut ids = self.others.lock().clone();
                ids.push(self.client_id.lock().clone());
                let body = serde_json::json!({ "consumerIdList": ids }).to_string();
                Some(FakeAction::Respond(ok().with_body(body.into_bytes())))
            }
            _ => None,
        }
    }

    /// The fake's whole handler: `handler` first, then these answers, else SUCCESS.
    fn serving(
        &self,
        handler: impl Fn(&RemotingCommand) -> Option<FakeAction> + Send + Sync + 'static,
    ) -> impl Fn(&RemotingCommand) -> FakeAction + Send + Sync + 'static {
        let m = self.clone();
        move |req| {
            handler(req)
                .or_else(|| m.answer(req))
                .unwrap_or_else(|| FakeAction::Respond(ok()))
        }
    }
}

/// Starts a fake: `handler` sees every request first and answers the ones it cares about;
/// the rest get the [`Membership`] answers, or SUCCESS.
pub fn start_fake(
    handler: impl Fn(&RemotingCommand) -> Option<FakeAction> + Send + Sync + 'static,
) -> FakeBroker {
    start_fake_with(Membership::default(), handler)
}

/// [`start_fake`] with a membership the test keeps, to change the group's consumers.
pub fn start_fake_with(
    membership: Membership,
    handler: impl Fn(&RemotingCommand) -> Option<FakeAction> + Send + Sync + 'static,
) -> FakeBroker {
    let fake = FakeBroker::start(membership.serving(handler)).expect("fake broker starts");
    membership.addr.set(fake.addr()).unwrap();
    fake
}

/// [`start_fake`] at `addr`, where an earlier fake was: a broker that comes back.
pub fn restart_fake_at(
    addr: &str,
    handler: impl Fn(&RemotingCommand) -> Option<FakeAction> + Send + Sync + 'static,
) -> FakeBroker {
    let membership = Membership::default();
    membership.addr.set(addr.to_owned()).unwrap();
    FakeBroker::start_at(addr, membership.serving(handler))
        .expect("the broker comes back at the same address")
}

/// The stored record of message `m{offset}` at `offset`.
pub fn record(offset: i64, reconsume_times: i32) -> Vec<u8> {
    let mut m = MessageExt::new(TOPIC, format!("m{offset}"));
    m.set_queue_offset(offset);
    m.set_commit_log_offset(1000 + offset);
    m.set_reconsume_times(reconsume_times);
    MessageDecoder::encode(&m, false).unwrap().to_vec()
}

/// Encodes `n` messages of `topic` at queue offsets `0..n` (commit-log offsets `base + i`, bodies
/// `{prefix}{i}`), each given `props`, as one pull body.
pub fn records(topic: &str, n: i64, base: i64, prefix: &str, props: &[(&str, &str)]) -> Vec<u8> {
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

/// A PULL_MESSAGE answer of `code` with its header.
pub fn pull_response(code: ResponseCode, next: i64, max: i64) -> RemotingCommand {
    let mut r = RemotingCommand::response(code, None);
    let h = r.ext_fields_mut();
    h.put("nextBeginOffset", next);
    h.put("minOffset", 0);
    h.put("maxOffset", max);
    h.put("suggestWhichBrokerId", 0);
    r
}

/// How a queue holding offsets `0..max` answers a pull from `offset`: up to 32 messages at once,
/// or PULL_NOT_FOUND after a short long-poll.
pub fn pull_action(offset: i64, max: i64) -> FakeAction {
    if offset < max {
        let end = (offset + 32).min(max);
        let mut r = pull_response(ResponseCode::SUCCESS, end, max);
        r.set_body(
            (offset..end)
                .flat_map(|o| record(o, 0))
                .collect::<Vec<u8>>(),
        );
        FakeAction::Respond(r)
    } else {
        pull_answer(offset, max, None)
    }
}

/// A pull answer: `body` (SUCCESS, next offset `next`) when there is one, else PULL_NOT_FOUND
/// after 100 ms.
pub fn pull_answer(offset: i64, next: i64, body: Option<Vec<u8>>) -> FakeAction {
    pull_answer_after(Duration::from_millis(100), offset, next, body)
}

/// [`pull_answer`], PULL_NOT_FOUND after `long_poll`.
pub fn pull_answer_after(
    long_poll: Duration,
    offset: i64,
    next: i64,
    body: Option<Vec<u8>>,
) -> FakeAction {
    match body {
        Some(b) => {
            FakeAction::Respond(pull_response(ResponseCode::SUCCESS, next, next).with_body(b))
        }
        None => FakeAction::RespondAfter(
            long_poll,
            pull_response(ResponseCode::PULL_NOT_FOUND, offset, next),
        ),
    }
}

/// A SUCCESS carrying `offset` (QUERY_CONSUMER_OFFSET, GET_MAX_OFFSET...).
pub fn offset_answer(offset: i64) -> RemotingCommand {
    let mut r = ok();
    r.ext_fields_mut().put("offset", offset);
    r
}

/// The answers to QUERY_CONSUMER_OFFSET and UPDATE_CONSUMER_OFFSET of a broker storing the
/// group's offset in `stored`.
pub fn offset_storage(stored: &Mutex<Option<i64>>, req: &RemotingCommand) -> Option<FakeAction> {
    match req.request_code() {
        RequestCode::QUERY_CONSUMER_OFFSET => match *stored.lock() {
            Some(o) => Some(FakeAction::Respond(offset_answer(o))),
            None => Some(no_stored_offset()),
        },
        RequestCode::UPDATE_CONSUMER_OFFSET => {
            *stored.lock() = req
                .ext_fields()
                .get("commitOffset")
                .and_then(|v| v.parse().ok());
            Some(FakeAction::Respond(ok()))
        }
        _ => None,
    }
}

/// The numeric header field `name` of `req`.
pub fn field(req: &RemotingCommand, name: &str) -> i64 {
    req.ext_fields()
        .get(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {:?}", req.ext_fields()))
}

/// A request the broker sends to the client, with `fields` and `body`.
pub fn broker_request(
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
    req
}

/// Sends `req` to the fake's one client.
pub fn push_to_client(fake: &FakeBroker, req: &RemotingCommand) {
    assert_eq!(fake.push_request(req), 1, "one client is connected");
}

/// Sends a request to the fake's one client and returns its answer.
pub fn push(
    fake: &FakeBroker,
    code: RequestCode,
    fields: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> RemotingCommand {
    push_to_client(fake, &broker_request(code, fields, body));
    fake.recv_response(Duration::from_secs(10))
        .expect("the client answered")
}

/// Tells the client that the group's consumers changed: it rebalances at once.
pub fn notify_ids_changed(fake: &FakeBroker, group: &str) {
    let mut notify = broker_request(
        RequestCode::NOTIFY_CONSUMER_IDS_CHANGED,
        &[("consumerGroup", group)],
        None,
    );
    notify.mark_oneway();
    push_to_client(fake, &notify);
}

/// The broker's RESET_CONSUMER_CLIENT_OFFSET of `group` to `offset` on the one queue.
pub fn push_reset(fake: &FakeBroker, group: &str, offset: i64) {
    let reset = format!(
        r#"{{"offsetTable":{{{{"brokerName":"{BROKER}","queueId":0,"topic":"{TOPIC}"}}:{offset}}}}}"#
    );
    let req = broker_request(
        RequestCode::RESET_CONSUMER_CLIENT_OFFSET,
        &[
            ("topic", TOPIC),
            ("group", group),
            ("timestamp", "0"),
            ("isForce", "true"),
        ],
        Some(reset.into_bytes()),
    );
    push_to_client(fake, &req);
}

/// A consumer of `group` on [`TOPIC`] (`*`) of the fake, with instance name `instance`.
pub fn consumer_of(fake: &FakeBroker, group: &str, instance: &str) -> DefaultMQPushConsumerBuilder {
    DefaultMQPushConsumer::builder(group)
        .namesrv_addr(fake.addr())
        .instance_name(instance)
        .subscribe(TOPIC, "*")
}

/// [`consumer_of`], from the first offset.
pub fn consumer_from_first(
    fake: &FakeBroker,
    group: &str,
    instance: &str,
) -> DefaultMQPushConsumerBuilder {
    consumer_of(fake, group, instance).consume_from_where(ConsumeFromWhere::FirstOffset)
}

/// A listener that sends each message's body to `tx`.
pub fn recording(
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

/// Builds `builder`'s consumer with a [`recording`] listener and starts it; returns it and the
/// bodies it consumes.
pub fn start_recording(
    builder: DefaultMQPushConsumerBuilder,
) -> (DefaultMQPushConsumer, Receiver<String>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let c = builder
        .register_message_listener_concurrently(recording(tx))
        .build()
        .unwrap();
    c.start().unwrap();
    (c, rx)
}

/// `n` items from `rx`, waiting at most `within` in all.
pub fn recv_n<T: std::fmt::Debug>(rx: &Receiver<T>, n: usize, within: Duration) -> Vec<T> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < n {
        match rx.recv_deadline(deadline) {
            Ok(b) => got.push(b),
            Err(_) => panic!("expected {n}, got {got:?}"),
        }
    }
    got
}

/// `n` bodies from `rx`, waiting at most 30 s in all.
pub fn recv_bodies(rx: &Receiver<String>, n: usize) -> Vec<String> {
    recv_n(rx, n, Duration::from_secs(30))
}

/// The bodies `m{o}` of `offsets`.
pub fn bodies(offsets: std::ops::Range<i64>) -> Vec<String> {
    offsets.map(|o| format!("m{o}")).collect()
}

/// The committed offset of the fake topic's queue as the consumer holds it, if it holds it.
pub fn commit_offset(c: &DefaultMQPushConsumer) -> Option<i64> {
    c.queue_stats()
        .into_iter()
        .find(|q| q.message_queue.topic == TOPIC)
        .map(|q| q.commit_offset)
}

/// Waits until `cond` holds, at most 30 s.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until the committed offset of [`TOPIC`]'s queue is `want`, or panics after `within`.
pub fn wait_commit_offset(c: &DefaultMQPushConsumer, want: i64, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while commit_offset(c) != Some(want) {
        assert!(
            Instant::now() < deadline,
            "{what}: the committed offset never reached {want}: {:?}",
            c.queue_stats()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The JSON body of a `LOCK_BATCH_MQ` request.
pub fn lock_request(req: &RemotingCommand) -> serde_json::Value {
    serde_json::from_slice(req.body().expect("a lock body")).unwrap()
}

/// The broker's answer to the lock request `body`: every queue it asked for when `granted`,
/// none otherwise.
pub fn lock_answer(body: &serde_json::Value, granted: bool) -> FakeAction {
    let set = if granted {
        body["mqSet"].clone()
    } else {
        serde_json::json!([])
    };
    let mut resp = RemotingCommand::response(ResponseCode::SUCCESS, None);
    resp.set_body(serde_json::to_vec(&serde_json::json!({ "lockOKMQSet": set })).unwrap());
    FakeAction::Respond(resp)
}
