//! The producer's chosen-queue sends against two in-process fake brokers: `broker-a` fails
//! every send (it refuses with a retryable `SYSTEM_ERROR`, or hangs up), `broker-b` stores
//! everything. A send to a queue the caller chose (or its selector picked) is never moved to
//! `broker-b`; async sends retry on the chosen queue when the request failed, as Java's do. The
//! send hooks see every attempt, failures included.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rocketmq_sync::remoting::protocol::{RemotingCommand, RequestCode, ResponseCode};
use rocketmq_sync::testing::{FakeAction, FakeBroker};
use rocketmq_sync::{
    CommunicationMode, DefaultMQProducer, Message, MessageQueue, SendMessageContext,
    SendMessageHook,
};

const TOPIC: &str = "ApiTopic";
const TIMEOUT: Duration = Duration::from_secs(10);

/// The sends one fake saw: (broker name in the header, queue id, request code).
type Seen = Arc<Mutex<Vec<(String, i32, i32)>>>;

fn route_body(a: &str, b: &str) -> Vec<u8> {
    format!(
        r#"{{"brokerDatas":[{{"brokerAddrs":{{"0":"{a}"}},"brokerName":"broker-a","cluster":"C"}},{{"brokerAddrs":{{"0":"{b}"}},"brokerName":"broker-b","cluster":"C"}}],"filterServerTable":{{}},"queueDatas":[{{"brokerName":"broker-a","perm":6,"readQueueNums":2,"topicSysFlag":0,"writeQueueNums":2}},{{"brokerName":"broker-b","perm":6,"readQueueNums":2,"topicSysFlag":0,"writeQueueNums":2}}]}}"#
    )
    .into_bytes()
}

fn ok() -> RemotingCommand {
    RemotingCommand::response(ResponseCode::SUCCESS, None)
}

fn is_send(req: &RemotingCommand) -> bool {
    matches!(
        req.request_code(),
        RequestCode::SEND_MESSAGE_V2 | RequestCode::SEND_BATCH_MESSAGE
    )
}

fn record(seen: &Seen, req: &RemotingCommand) {
    let f = req.ext_fields();
    seen.lock().push((
        f.get("n").unwrap_or("").to_owned(),
        f.get("e").and_then(|q| q.parse().ok()).unwrap_or(-1),
        req.code(),
    ));
}

struct Fakes {
    a: FakeBroker,
    _b: FakeBroker,
    seen_a: Seen,
    seen_b: Seen,
}

/// `broker-a` refuses every send with `SYSTEM_ERROR`.
fn refuse() -> FakeAction {
    FakeAction::Respond(RemotingCommand::response(
        ResponseCode::SYSTEM_ERROR,
        Some("broker-a refuses".into()),
    ))
}

/// `broker-a` closes the connection on every send: the request failed, and Java retries that.
fn hang_up() -> FakeAction {
    FakeAction::CloseConnection
}

/// `broker-b` stores every send; `broker-a` (also the name server) answers every send with
/// `a_send`.
fn start_fakes(a_send: fn() -> FakeAction) -> Fakes {
    let seen_b: Seen = Default::default();
    let s = seen_b.clone();
    let b = FakeBroker::start(move |req| {
        if is_send(req) {
            record(&s, req);
            let mut r = ok();
            let h = r.ext_fields_mut();
            h.put("msgId", "7F00000100002A9F0000000000000000");
            h.put("queueId", req.ext_fields().get("e").unwrap_or("0"));
            h.put("queueOffset", 0);
            return FakeAction::Respond(r);
        }
        FakeAction::Respond(ok())
    })
    .unwrap();
    let seen_a: Seen = Default::default();
    let s = seen_a.clone();
    let b_addr = b.addr();
    let a_addr = Arc::new(std::sync::OnceLock::<String>::new());
    let a_addr2 = a_addr.clone();
    let a = FakeBroker::start(move |req| {
        if is_send(req) {
            record(&s, req);
            return a_send();
        }
        match req.request_code() {
            RequestCode::GET_ROUTEINFO_BY_TOPIC if req.ext_fields().get("topic") == Some(TOPIC) => {
                let a = a_addr2.get().expect("address known");
                FakeAction::Respond(ok().with_body(route_body(a, &b_addr)))
            }
            RequestCode::GET_ROUTEINFO_BY_TOPIC => FakeAction::Respond(RemotingCommand::response(
                ResponseCode::TOPIC_NOT_EXIST,
                Some("no route".into()),
            )),
            _ => FakeAction::Respond(ok()),
        }
    })
    .unwrap();
    a_addr.set(a.addr()).unwrap();
    Fakes {
        a,
        _b: b,
        seen_a,
        seen_b,
    }
}

/// What a recording hook saw: (before?, mode, queue, broker address, ok?, error?).
type Calls = Arc<Mutex<Vec<(bool, CommunicationMode, MessageQueue, String, bool, bool)>>>;

struct Recorder(Calls);

impl Recorder {
    fn push(&self, before: bool, c: &SendMessageContext<'_>) {
        assert_eq!(c.producer_group, "api_fake_pg");
        assert_eq!(c.messages.len(), 1);
        self.0.lock().push((
            before,
            c.communication_mode,
            c.message_queue.clone(),
            c.broker_addr.to_owned(),
            c.send_result.is_some(),
            c.exception.is_some(),
        ));
    }
}

impl SendMessageHook for Recorder {
    fn hook_name(&self) -> &str {
        "recorder"
    }
    fn send_message_before(&self, c: &SendMessageContext<'_>) {
        self.push(true, c)
    }
    fn send_message_after(&self, c: &SendMessageContext<'_>) {
        self.push(false, c)
    }
}

fn producer(namesrv: &str, calls: &Calls) -> DefaultMQProducer {
    let p = DefaultMQProducer::builder("api_fake_pg")
        .namesrv_addr(namesrv)
        .instance_name(support::client::unique("api-fake"))
        .send_msg_timeout(Duration::from_secs(5))
        .send_message_hook(Recorder(calls.clone()))
        .build()
        .unwrap();
    p.start().unwrap();
    p
}

fn mq_a() -> MessageQueue {
    MessageQueue::new(TOPIC, "broker-a", 1)
}

/// Every send that reached a fake: (broker, queue id).
fn sends(seen: &Seen) -> Vec<(String, i32)> {
    seen.lock()
        .iter()
        .map(|(b, q, _)| (b.clone(), *q))
        .collect()
}

#[test]
fn async_to_a_chosen_queue_retries_on_that_queue_only() {
    let f = start_fakes(hang_up);
    let calls: Calls = Default::default();
    let p = producer(&f.a.addr(), &calls);
    let (tx, rx) = crossbeam_channel::unbounded();
    p.send_async_to_queue(&Message::new(TOPIC, "to-a"), &mq_a(), move |r| {
        tx.send(r).unwrap()
    })
    .unwrap();
    let err = rx
        .recv_timeout(TIMEOUT)
        .expect("callback runs")
        .unwrap_err();
    assert!(err.is_remoting(), "{err}");
    // Java: 1 + retryTimesWhenSendAsyncFailed (2) attempts, all to the chosen queue.
    assert_eq!(sends(&f.seen_a), vec![("broker-a".to_owned(), 1); 3]);
    assert!(sends(&f.seen_b).is_empty(), "moved to broker-b");
    // The hooks saw every attempt: before, then after with the error.
    let calls = calls.lock().clone();
    assert_eq!(calls.len(), 6, "{calls:?}");
    for pair in calls.chunks(2) {
        let (before, mode, mq, addr, ok, err) = &pair[0];
        assert!(*before && !ok && !err);
        assert_eq!(
            (*mode, mq, addr),
            (CommunicationMode::Async, &mq_a(), &f.a.addr())
        );
        let (before, mode, mq, _, ok, err) = &pair[1];
        assert!(!before && !ok && *err);
        assert_eq!((*mode, mq), (CommunicationMode::Async, &mq_a()));
    }
    p.shutdown(TIMEOUT).unwrap();
    assert!(rx.try_recv().is_err(), "the callback ran once");
}

#[test]
fn async_through_a_selector_stays_on_the_selected_queue() {
    let f = start_fakes(hang_up);
    let calls: Calls = Default::default();
    let p = producer(&f.a.addr(), &calls);
    let (tx, rx) = crossbeam_channel::unbounded();
    let pick_a1 = |mqs: &[MessageQueue], _: &()| {
        mqs.iter()
            .find(|q| q.broker_name == "broker-a" && q.queue_id == 1)
            .cloned()
    };
    p.send_async_with_selector(&Message::new(TOPIC, "sel"), &pick_a1, &(), move |r| {
        tx.send(r).unwrap()
    })
    .unwrap();
    assert!(rx.recv_timeout(TIMEOUT).unwrap().is_err());
    assert_eq!(sends(&f.seen_a), vec![("broker-a".to_owned(), 1); 3]);
    assert!(sends(&f.seen_b).is_empty());
    p.shutdown(TIMEOUT).unwrap();
    assert!(rx.try_recv().is_err(), "the callback ran once");
}

#[test]
fn async_to_a_chosen_queue_takes_the_brokers_answer_as_final() {
    let f = start_fakes(refuse);
    let calls: Calls = Default::default();
    let p = producer(&f.a.addr(), &calls);
    let (tx, rx) = crossbeam_channel::unbounded();
    p.send_async_to_queue(&Message::new(TOPIC, "to-a"), &mq_a(), move |r| {
        tx.send(r).unwrap()
    })
    .unwrap();
    let err = rx
        .recv_timeout(TIMEOUT)
        .expect("callback runs")
        .unwrap_err();
    assert_eq!(
        err.response_code(),
        Some(ResponseCode::SYSTEM_ERROR),
        "{err}"
    );
    // Java does not retry after a broker's answer (needRetry false): one attempt.
    assert_eq!(sends(&f.seen_a), vec![("broker-a".to_owned(), 1)]);
    assert!(sends(&f.seen_b).is_empty());
    assert_eq!(calls.lock().len(), 2);
    p.shutdown(TIMEOUT).unwrap();
    assert!(rx.try_recv().is_err(), "the callback ran once");
}

#[test]
fn sync_and_oneway_to_a_chosen_queue_make_one_attempt() {
    let f = start_fakes(refuse);
    let calls: Calls = Default::default();
    let p = producer(&f.a.addr(), &calls);
    let err = p
        .send_to_queue(&Message::new(TOPIC, "sync"), &mq_a())
        .unwrap_err();
    assert_eq!(
        err.response_code(),
        Some(ResponseCode::SYSTEM_ERROR),
        "{err}"
    );
    assert_eq!(sends(&f.seen_a).len(), 1);
    let err = p
        .send_with_selector(
            &Message::new(TOPIC, "sync-sel"),
            &|mqs: &[MessageQueue], _: &()| mqs.first().cloned(),
            &(),
        )
        .unwrap_err();
    assert_eq!(err.response_code(), Some(ResponseCode::SYSTEM_ERROR));
    assert_eq!(sends(&f.seen_a).len(), 2);

    p.send_oneway_to_queue(&Message::new(TOPIC, "oneway"), &mq_a())
        .unwrap();
    p.send_oneway_with_selector(
        &Message::new(TOPIC, "oneway-sel"),
        &|mqs: &[MessageQueue], _: &()| mqs.get(1).cloned(),
        &(),
    )
    .unwrap();
    assert!(
        support::broker::wait_until(TIMEOUT, || sends(&f.seen_a).len() == 4),
        "{:?}",
        sends(&f.seen_a)
    );
    assert_eq!(
        sends(&f.seen_a)[2..],
        [("broker-a".to_owned(), 1), ("broker-a".to_owned(), 1)]
    );
    assert!(sends(&f.seen_b).is_empty());

    // Sync: after with the error; one-way: after with neither result nor error.
    let calls = calls.lock().clone();
    let modes: Vec<(bool, CommunicationMode, bool, bool)> = calls
        .iter()
        .map(|(b, m, _, _, ok, err)| (*b, *m, *ok, *err))
        .collect();
    use CommunicationMode::*;
    assert_eq!(
        modes,
        vec![
            (true, Sync, false, false),
            (false, Sync, false, true),
            (true, Sync, false, false),
            (false, Sync, false, true),
            (true, Oneway, false, false),
            (false, Oneway, false, false),
            (true, Oneway, false, false),
            (false, Oneway, false, false),
        ]
    );
    p.shutdown(TIMEOUT).unwrap();
}

#[test]
fn a_route_send_moves_to_the_other_broker_for_contrast() {
    let f = start_fakes(refuse);
    let calls: Calls = Default::default();
    let p = producer(&f.a.addr(), &calls);
    // Without a chosen queue the retry goes to broker-b, which stores the message.
    let (tx, rx) = crossbeam_channel::unbounded();
    let hits = Arc::new(AtomicUsize::new(0));
    for i in 0..4 {
        let tx = tx.clone();
        let hits = hits.clone();
        p.send_async(&Message::new(TOPIC, format!("m{i}")), move |r| {
            hits.fetch_add(1, Ordering::SeqCst);
            tx.send(r).unwrap()
        })
        .unwrap();
    }
    for _ in 0..4 {
        let r = rx
            .recv_timeout(TIMEOUT)
            .unwrap()
            .expect("stored on broker-b");
        assert_eq!(r.message_queue().broker_name, "broker-b");
    }
    assert_eq!(sends(&f.seen_b).len(), 4);
    // Every successful after hook carries the result.
    let oks = calls.lock().iter().filter(|c| !c.0 && c.4).count();
    assert_eq!(oks, 4);
    p.shutdown(TIMEOUT).unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 4, "each callback ran once");
}

#[test]
fn a_batch_to_a_chosen_queue_is_one_attempt_to_it() {
    let f = start_fakes(refuse);
    let p = DefaultMQProducer::builder("api_fake_batch_pg")
        .namesrv_addr(f.a.addr())
        .instance_name(support::client::unique("api-fake"))
        .build()
        .unwrap();
    p.start().unwrap();
    let batch: Vec<Message> = (0..3)
        .map(|i| Message::new(TOPIC, format!("b{i}")))
        .collect();
    let mq_b = MessageQueue::new(TOPIC, "broker-b", 1);
    let r = p.send_batch_to_queue(&batch, &mq_b).unwrap();
    assert_eq!(r.message_queue(), &mq_b);
    assert_eq!(r.msg_ids().len(), 3);
    assert_eq!(r.msg_id(), r.msg_ids().join(","));
    assert!(p.send_batch_to_queue(&batch, &mq_a()).is_err());
    assert_eq!(sends(&f.seen_a), vec![("broker-a".to_owned(), 1)]);
    assert_eq!(
        f.seen_b.lock().clone(),
        vec![("broker-b".to_owned(), 1, RequestCode::SEND_BATCH_MESSAGE.0)]
    );
    // A queue of another topic is refused before anything is sent.
    let other = MessageQueue::new("OtherTopic", "broker-b", 0);
    assert!(p
        .send_batch_to_queue(&batch, &other)
        .unwrap_err()
        .is_message_illegal());
    assert!(p
        .send_to_queue(&batch[0], &other)
        .unwrap_err()
        .is_message_illegal());
    assert_eq!(f.seen_b.lock().len(), 1);
    p.shutdown(TIMEOUT).unwrap();
}
