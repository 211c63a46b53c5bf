//! Lite pull consumer behaviour a real broker cannot be made to show on demand, driven by the
//! in-process `FakeBroker` acting as name server and broker at one address: a broker that
//! vanishes and comes back, an offset the broker moves, what the consumer answers the broker's
//! requests, and that only polls and commits move its offset.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rocketmq_sync::codec::MessageDecoder;
use rocketmq_sync::remoting::protocol::body::FjValue;
use rocketmq_sync::remoting::protocol::{RequestCode, ResponseCode};
use rocketmq_sync::testing::{FakeAction, FakeBroker};
use rocketmq_sync::{
    ConsumeFromWhere, DefaultLitePullConsumer, MessageExt, MessageQueue, ServiceState,
};
use support::fake::*;

const POLL: Duration = Duration::from_millis(100);

/// A fake storing the group's offset in `stored`, whose one queue holds offsets `0..max()`.
fn serving(stored: Arc<Mutex<Option<i64>>>, max: Arc<Mutex<i64>>) -> FakeBroker {
    start_fake(move |req| handle(&stored, &max, req))
}

fn handle(
    stored: &Mutex<Option<i64>>,
    max: &Mutex<i64>,
    req: &rocketmq_sync::remoting::protocol::RemotingCommand,
) -> Option<FakeAction> {
    if let Some(a) = offset_storage(stored, req) {
        return Some(a);
    }
    let max = *max.lock();
    match req.request_code() {
        RequestCode::GET_MAX_OFFSET => Some(FakeAction::Respond(offset_answer(max))),
        RequestCode::GET_MIN_OFFSET => Some(FakeAction::Respond(offset_answer(0))),
        RequestCode::PULL_MESSAGE => Some(pull_action(field(req, "queueOffset"), max)),
        _ => None,
    }
}

fn lite(fake: &FakeBroker, group: &str) -> DefaultLitePullConsumer {
    DefaultLitePullConsumer::builder(group)
        .namesrv_addr(fake.addr())
        .instance_name(format!("{group}-instance"))
        .subscribe(TOPIC, "*")
        .consume_from_where(ConsumeFromWhere::FirstOffset)
        .auto_commit(false)
        .build()
        .unwrap()
}

fn poll_bodies(c: &DefaultLitePullConsumer, n: usize, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        out.extend(
            c.poll(POLL)
                .unwrap()
                .iter()
                .map(|m: &MessageExt| String::from_utf8_lossy(m.body()).into_owned()),
        );
    }
    out
}

#[test]
fn a_broker_that_vanishes_and_returns_loses_and_repeats_nothing() {
    let stored: Arc<Mutex<Option<i64>>> = Arc::default();
    let max = Arc::new(Mutex::new(40));
    let fake = serving(stored.clone(), max.clone());
    let addr = fake.addr();
    let c = lite(&fake, "vanish_group");
    c.start().unwrap();
    assert_eq!(poll_bodies(&c, 40, Duration::from_secs(30)), bodies(0..40));
    c.commit_sync().unwrap();
    assert_eq!(*stored.lock(), Some(40));

    // Gone: polls return empty within their timeout, without an error.
    drop(fake);
    for _ in 0..5 {
        assert!(c.poll(POLL).unwrap().is_empty());
    }
    // A commit that cannot reach the broker says so.
    assert!(c.commit_sync().is_err());

    // Back, with 40 more messages: exactly those arrive.
    *max.lock() = 80;
    let (s, m) = (stored.clone(), max.clone());
    let _back = restart_fake_at(&addr, move |req| handle(&s, &m, req));
    assert_eq!(poll_bodies(&c, 40, Duration::from_secs(60)), bodies(40..80));
    c.commit_sync().unwrap();
    assert_eq!(*stored.lock(), Some(80));
    c.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn empty_pulls_do_not_commit_only_polls_and_commits_do() {
    let stored: Arc<Mutex<Option<i64>>> = Arc::default();
    let max = Arc::new(Mutex::new(10));
    let fake = serving(stored.clone(), max);
    let c = lite(&fake, "nocommit_group");
    c.start().unwrap();
    assert_eq!(poll_bodies(&c, 10, Duration::from_secs(30)), bodies(0..10));
    // Several empty long polls come back while nothing is committed: the push consumer would
    // commit 10 on each (its cache is empty); a lite consumer without auto-commit must not.
    for _ in 0..5 {
        assert!(c.poll(POLL).unwrap().is_empty());
    }
    let mq = MessageQueue::new(TOPIC, BROKER, 0);
    c.shutdown(Duration::from_secs(5)).unwrap();
    assert_eq!(*stored.lock(), None, "nothing was committed");

    // Explicit offsets are stored as given.
    let c = lite(&fake, "nocommit_group");
    c.start().unwrap();
    c.commit(&[(mq.clone(), 7)].into_iter().collect()).unwrap();
    assert_eq!(*stored.lock(), Some(7));
    assert_eq!(c.committed(&mq).unwrap(), 7);
    assert!(c
        .commit(&[(mq, -3)].into_iter().collect())
        .unwrap_err()
        .to_string()
        .contains("-3"));
    c.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_moved_offset_restarts_the_queue_where_the_broker_says() {
    let stored: Arc<Mutex<Option<i64>>> = Arc::default();
    let moved = Arc::new(Mutex::new(false));
    let pulled_after_move = Arc::new(Mutex::new(false));
    // The move is answered once the first 20 were polled (before, the pull at 20 finds
    // nothing): a batch still buffered when its queue is dropped is not delivered.
    let polled_first = Arc::new(Mutex::new(false));
    let (s, mv, after, first) = (
        stored.clone(),
        moved.clone(),
        pulled_after_move.clone(),
        polled_first.clone(),
    );
    // Offsets 0..20 at first; then the broker says offset 20 is gone and 50 is the next.
    let fake = start_fake(move |req| {
        if let Some(a) = offset_storage(&s, req) {
            return Some(a);
        }
        match req.request_code() {
            RequestCode::GET_MAX_OFFSET => Some(FakeAction::Respond(offset_answer(60))),
            RequestCode::PULL_MESSAGE => {
                let offset = field(req, "queueOffset");
                if offset == 20 && !*first.lock() {
                    return Some(pull_answer(20, 20, None));
                }
                if offset == 20 && !*mv.lock() {
                    *mv.lock() = true;
                    return Some(FakeAction::Respond(pull_response(
                        ResponseCode::PULL_OFFSET_MOVED,
                        50,
                        60,
                    )));
                }
                if offset >= 50 {
                    *after.lock() = true;
                }
                let end = if offset < 20 { 20 } else { 60 };
                Some(pull_action(offset, end))
            }
            _ => None,
        }
    });
    let c = DefaultLitePullConsumer::builder("moved_group")
        .namesrv_addr(fake.addr())
        .instance_name("moved-instance")
        .subscribe(TOPIC, "*")
        .consume_from_where(ConsumeFromWhere::FirstOffset)
        .offset_moved_fix_delay_for_tests(Duration::from_millis(50))
        .build()
        .unwrap();
    c.start().unwrap();
    assert_eq!(poll_bodies(&c, 20, Duration::from_secs(30)), bodies(0..20));
    *polled_first.lock() = true;
    // The fix stored 50 and the rebuilt queue pulls from there. What was polled before the
    // move (up to 20) belongs to the dropped queue: a commit now must not take the group back.
    assert!(support::broker::wait_until(Duration::from_secs(30), || {
        *pulled_after_move.lock()
    }));
    c.commit_sync().unwrap();
    assert_eq!(*stored.lock(), Some(50));
    assert_eq!(poll_bodies(&c, 10, Duration::from_secs(30)), bodies(50..60));
    c.commit_sync().unwrap();
    assert_eq!(*stored.lock(), Some(60));
    c.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn the_broker_hears_an_active_consumer_that_consumes_nothing_directly() {
    let stored: Arc<Mutex<Option<i64>>> = Arc::default();
    let heartbeats = Arc::new(Mutex::new(HashSet::new()));
    let (s, hb) = (stored.clone(), heartbeats.clone());
    let max = Mutex::new(0);
    let fake = start_fake(move |req| {
        if req.request_code() == RequestCode::HEART_BEAT {
            let v: serde_json::Value = serde_json::from_slice(req.body().unwrap()).unwrap();
            for c in v["consumerDataSet"].as_array().unwrap() {
                hb.lock()
                    .insert(c["consumeType"].as_str().unwrap().to_owned());
            }
            // The membership answers it (and remembers the client id).
            return None;
        }
        handle(&s, &max, req)
    });
    let c = lite(&fake, "active_group");
    c.start().unwrap();
    assert_eq!(c.service_state(), ServiceState::Running);
    assert!(heartbeats.lock().contains("CONSUME_ACTIVELY"));
    let client_id = c.client_id().unwrap();

    let r = push(
        &fake,
        RequestCode::GET_CONSUMER_RUNNING_INFO,
        &[
            ("consumerGroup", "active_group"),
            ("clientId", &client_id),
            ("jstackEnable", "false"),
        ],
        None,
    );
    assert_eq!(r.response_code(), ResponseCode::SUCCESS, "{:?}", r.remark());
    let info = FjValue::parse_bytes(r.body().unwrap()).unwrap();
    assert_eq!(
        info.get("properties")
            .and_then(|p| p.get("PROP_CONSUME_TYPE")),
        Some(&FjValue::String("CONSUME_ACTIVELY".into()))
    );

    let stored_msg = MessageDecoder::encode(&MessageExt::new(TOPIC, "direct"), false).unwrap();
    let r = push(
        &fake,
        RequestCode::CONSUME_MESSAGE_DIRECTLY,
        &[("consumerGroup", "active_group"), ("brokerName", BROKER)],
        Some(stored_msg.to_vec()),
    );
    assert_eq!(r.response_code(), ResponseCode::SYSTEM_ERROR);
    assert!(
        r.remark().unwrap().contains("lite pull consumer"),
        "{:?}",
        r.remark()
    );
    // The message was not slipped into the poll buffer either.
    assert!(c.poll(POLL).unwrap().is_empty());
    c.shutdown(Duration::from_secs(5)).unwrap();
}
