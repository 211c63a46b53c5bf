//! Push-consumer behaviour a real broker cannot be made to show on demand, driven by the
//! in-process `FakeBroker` acting as name server and broker at one address.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Sender};
use parking_lot::Mutex;
use rocketmq_sync::common::MessageExt;
use rocketmq_sync::consumer::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, ConsumeFromWhere, DefaultMQPushConsumer,
};
use rocketmq_sync::remoting::protocol::{RemotingCommand, RequestCode, ResponseCode};
use rocketmq_sync::testing::{FakeAction, FakeBroker};

const TOPIC: &str = "FakeTopic";
const BROKER: &str = "fake-broker";

/// What the fake saw, for assertions.
#[derive(Debug, Clone)]
enum Seen {
    SearchOffset(i64),
    Pull(i64),
}

fn ok() -> RemotingCommand {
    RemotingCommand::response(ResponseCode::SUCCESS, None)
}

/// A fake broker + name server serving one topic with one queue whose consumer offset is
/// unknown (QUERY_NOT_FOUND), whose timestamp search answers `search_answer`, and whose pulls
/// find nothing.
fn fake(seen: Sender<Seen>, search_answer: i64) -> FakeBroker {
    let addr: Arc<OnceLock<String>> = Arc::new(OnceLock::new());
    let client_id: Arc<Mutex<String>> = Arc::new(Mutex::new(String::new()));
    let a2 = addr.clone();
    let fake = FakeBroker::start(move |req| {
        let code = req.request_code();
        let f = req.ext_fields();
        match code {
            RequestCode::GET_ROUTEINFO_BY_TOPIC => {
                if f.get("topic") != Some(TOPIC) {
                    return FakeAction::Respond(RemotingCommand::response(
                        ResponseCode::TOPIC_NOT_EXIST,
                        Some("no route".into()),
                    ));
                }
                let body = format!(
                    r#"{{"brokerDatas":[{{"brokerAddrs":{{"0":"{}"}},"brokerName":"{BROKER}","cluster":"C"}}],"filterServerTable":{{}},"queueDatas":[{{"brokerName":"{BROKER}","perm":6,"readQueueNums":1,"topicSysFlag":0,"writeQueueNums":1}}]}}"#,
                    a2.get().expect("address known")
                );
                FakeAction::Respond(ok().with_body(body.into_bytes()))
            }
            RequestCode::HEART_BEAT => {
                if let Some(b) = req.body() {
                    let v: serde_json::Value = serde_json::from_slice(b).unwrap();
                    *client_id.lock() = v["clientID"].as_str().unwrap_or("").to_owned();
                }
                FakeAction::Respond(ok())
            }
            RequestCode::GET_CONSUMER_LIST_BY_GROUP => {
                let body = format!(r#"{{"consumerIdList":["{}"]}}"#, client_id.lock());
                FakeAction::Respond(ok().with_body(body.into_bytes()))
            }
            RequestCode::QUERY_CONSUMER_OFFSET => FakeAction::Respond(RemotingCommand::response(
                ResponseCode::QUERY_NOT_FOUND,
                Some("Not found, V3_0_6_SNAPSHOT maybe".into()),
            )),
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
            _ => FakeAction::Respond(ok()),
        }
    })
    .expect("fake broker starts");
    addr.set(fake.addr()).unwrap();
    fake
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
