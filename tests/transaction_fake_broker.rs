//! `TransactionMQProducer` on the wire, against the in-process `FakeBroker`: the fields of the
//! half message and of `END_TRANSACTION` (Java's `EndTransactionRequestHeader`), and the broker's
//! `CHECK_TRANSACTION_STATE` on the bounded check pool, which a real broker cannot be made to
//! flood or to show.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, Sender};
use parking_lot::Mutex;
use rocketmq_sync::codec::MessageDecoder;
use rocketmq_sync::remoting::protocol::{RemotingCommand, RequestCode};
use rocketmq_sync::testing::{FakeAction, FakeBroker};
use rocketmq_sync::{
    LocalTransactionState, Message, MessageExt, TransactionMQProducer, TransactionMQProducerBuilder,
};
use support::fake::{broker_request, ok, push, push_to_client, start_fake, BROKER, TOPIC};

/// The offset message id the fake answers sends with: 127.0.0.1:10911, commit-log offset 1234.
const OFFSET_MSG_ID: &str = "7F00000100002A9F00000000000004D2";
const WAIT: Duration = Duration::from_secs(10);

/// A request's ext fields as a map.
fn fields(req: &RemotingCommand) -> HashMap<String, String> {
    req.ext_fields()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// An END_TRANSACTION the fake received: its fields and its remark.
type End = (HashMap<String, String>, Option<String>);

/// A fake that stores sends at queue offset 77 and reports the sends' and END_TRANSACTION's
/// fields (and END's remark).
fn fake() -> (FakeBroker, Receiver<HashMap<String, String>>, Receiver<End>) {
    let (sent_tx, sent) = unbounded();
    let (end_tx, ends) = unbounded();
    let fake = start_fake(move |req| match req.request_code() {
        RequestCode::SEND_MESSAGE | RequestCode::SEND_MESSAGE_V2 => {
            let _ = sent_tx.send(fields(req));
            let mut r = ok();
            let h = r.ext_fields_mut();
            h.put("msgId", OFFSET_MSG_ID);
            h.put("queueId", 0);
            h.put("queueOffset", 77);
            Some(FakeAction::Respond(r))
        }
        RequestCode::END_TRANSACTION => {
            let _ = end_tx.send((fields(req), req.remark().map(str::to_owned)));
            Some(FakeAction::NoResponse)
        }
        _ => None,
    });
    (fake, sent, ends)
}

fn builder(fake: &FakeBroker, group: &str) -> TransactionMQProducerBuilder {
    TransactionMQProducer::builder(group)
        .namesrv_addr(fake.addr())
        .instance_name(format!("{group}-instance"))
}

fn field<'a>(f: &'a HashMap<String, String>, name: &str) -> &'a str {
    f.get(name)
        .unwrap_or_else(|| panic!("no {name} in {f:?}"))
        .as_str()
}

#[test]
fn the_half_message_and_end_transaction_carry_javas_fields() {
    let (fake, sent, ends) = fake();
    let p = builder(&fake, "tx-fields")
        .transaction_listener_fn(
            |_: &Message, _: &dyn std::any::Any| LocalTransactionState::RollbackMessage,
            |_: &MessageExt| LocalTransactionState::CommitMessage,
        )
        .build()
        .unwrap();
    p.start().unwrap();
    let r = p
        .send_message_in_transaction(&Message::new(TOPIC, "x").with_delay_level(3), &())
        .unwrap();
    assert_eq!(
        r.local_transaction_state(),
        LocalTransactionState::RollbackMessage
    );
    let send = sent.recv_timeout(WAIT).expect("the half message was sent");
    let props = field(&send, "i");
    assert!(props.contains("TRAN_MSG\u{1}true\u{2}"), "{props:?}");
    assert!(props.contains("PGROUP\u{1}tx-fields\u{2}"), "{props:?}");
    assert!(
        !props.contains("DELAY\u{1}"),
        "no delay on a half message: {props:?}"
    );
    assert_eq!(
        field(&send, "f").parse::<i32>().unwrap() & 0x4,
        0x4,
        "sysFlag PREPARED"
    );
    let (end, remark) = ends.recv_timeout(WAIT).expect("END_TRANSACTION was sent");
    assert_eq!(field(&end, "producerGroup"), "tx-fields");
    assert_eq!(field(&end, "tranStateTableOffset"), "77");
    assert_eq!(field(&end, "commitLogOffset"), "1234");
    assert_eq!(field(&end, "commitOrRollback"), "12");
    assert_eq!(field(&end, "fromTransactionCheck"), "false");
    assert_eq!(field(&end, "msgId"), r.msg_id());
    assert_eq!(field(&end, "bname"), BROKER);
    assert_eq!(remark, None);
    p.shutdown(Duration::from_secs(5)).unwrap();
}

/// The stored half message the broker sends with a check.
fn check_request(group: &str, uniq: &str, queue_offset: i64) -> RemotingCommand {
    let mut m = MessageExt::new(TOPIC, format!("half-{queue_offset}"));
    m.set_queue_offset(queue_offset);
    m.set_commit_log_offset(5000 + queue_offset);
    m.put_property("PGROUP", group);
    m.put_property("UNIQ_KEY", uniq);
    m.put_property("TRAN_MSG", "true");
    let body = MessageDecoder::encode(&m, false).unwrap().to_vec();
    let offset = queue_offset.to_string();
    let clo = (5000 + queue_offset).to_string();
    let mut req = broker_request(
        RequestCode::CHECK_TRANSACTION_STATE,
        &[
            ("tranStateTableOffset", offset.as_str()),
            ("commitLogOffset", clo.as_str()),
            ("msgId", uniq),
            ("transactionId", uniq),
            ("offsetMsgId", OFFSET_MSG_ID),
            ("bname", BROKER),
        ],
        Some(body),
    );
    req.mark_oneway();
    req
}

/// A started producer of `group` that has sent once (so the fake has a connection to push
/// checks on); its check listener runs `check`.
fn checked_producer(
    fake: &FakeBroker,
    ends: &Receiver<End>,
    group: &str,
    hold_max: usize,
    check: impl Fn(&MessageExt) -> LocalTransactionState + Send + Sync + 'static,
) -> TransactionMQProducer {
    // One callback thread: the client handles the fake's requests in the order they come, so a
    // request answered after a flood of checks shows that the flood has been dealt with.
    let client = rocketmq_sync::ClientConfig::builder()
        .client_callback_executor_threads(1)
        .build();
    let p = builder(fake, group)
        .client_config(client)
        .check_request_hold_max(hold_max)
        .transaction_listener_fn(
            |_: &Message, _: &dyn std::any::Any| LocalTransactionState::CommitMessage,
            check,
        )
        .build()
        .unwrap();
    p.start().unwrap();
    p.send_message_in_transaction(&Message::new(TOPIC, "first"), &())
        .unwrap();
    ends.recv_timeout(WAIT).expect("the first END_TRANSACTION");
    p
}

#[test]
fn a_check_runs_on_the_check_pool_and_is_answered_from_the_check() {
    let (fake, _sent, ends) = fake();
    let threads = Arc::new(Mutex::new(Vec::new()));
    let seen = threads.clone();
    let p = checked_producer(&fake, &ends, "tx-check", 2000, move |m: &MessageExt| {
        seen.lock().push((
            std::thread::current().name().unwrap_or("").to_owned(),
            String::from_utf8_lossy(m.body()).into_owned(),
        ));
        LocalTransactionState::RollbackMessage
    });
    push_to_client(&fake, &check_request("tx-check", "UNIQ-A", 88));
    let (end, remark) = ends
        .recv_timeout(WAIT)
        .expect("the check's END_TRANSACTION");
    assert_eq!(field(&end, "producerGroup"), "tx-check");
    assert_eq!(field(&end, "tranStateTableOffset"), "88");
    assert_eq!(field(&end, "commitLogOffset"), "5088");
    assert_eq!(field(&end, "commitOrRollback"), "12");
    assert_eq!(field(&end, "fromTransactionCheck"), "true");
    assert_eq!(field(&end, "msgId"), "UNIQ-A");
    assert_eq!(field(&end, "transactionId"), "UNIQ-A");
    assert_eq!(field(&end, "bname"), BROKER);
    assert_eq!(remark, None);
    let seen = threads.lock().clone();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].0.starts_with("rmq-txchk"), "ran on {:?}", seen[0].0);
    assert_eq!(seen[0].1, "half-88");
    p.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_panicking_check_answers_unknown_with_the_reason() {
    let (fake, _sent, ends) = fake();
    let p = checked_producer(&fake, &ends, "tx-panic", 2000, |_: &MessageExt| {
        panic!("the database is down")
    });
    push_to_client(&fake, &check_request("tx-panic", "UNIQ-P", 9));
    let (end, remark) = ends
        .recv_timeout(WAIT)
        .expect("the check's END_TRANSACTION");
    assert_eq!(field(&end, "commitOrRollback"), "0");
    assert_eq!(field(&end, "fromTransactionCheck"), "true");
    let remark = remark.expect("the panic is reported");
    assert!(remark.contains("the database is down"), "{remark}");
    // The pool survived the panic.
    push_to_client(&fake, &check_request("tx-panic", "UNIQ-Q", 10));
    let (end, _) = ends.recv_timeout(WAIT).expect("the next check is answered");
    assert_eq!(field(&end, "msgId"), "UNIQ-Q");
    p.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn the_check_pool_holds_at_most_check_request_hold_max_checks() {
    let (fake, _sent, ends) = fake();
    let (release_tx, release_rx): (Sender<()>, Receiver<()>) = unbounded();
    let (started_tx, started) = unbounded();
    let p = checked_producer(&fake, &ends, "tx-bounded", 2, move |m: &MessageExt| {
        let _ = started_tx.send(m.queue_offset());
        // Each check waits for the test: the pool's one thread is busy meanwhile.
        let _ = release_rx.recv_timeout(WAIT);
        LocalTransactionState::CommitMessage
    });
    push_to_client(&fake, &check_request("tx-bounded", "UNIQ-0", 100));
    assert_eq!(started.recv_timeout(WAIT), Ok(100), "the first check runs");
    // Two more are queued; the next three find the queue full and are dropped.
    for i in 1..=5 {
        push_to_client(
            &fake,
            &check_request("tx-bounded", &format!("UNIQ-{i}"), 100 + i),
        );
    }
    // Answered after the five checks were queued or refused (one callback thread).
    push(
        &fake,
        RequestCode::GET_CONSUMER_RUNNING_INFO,
        &[
            ("consumerGroup", "none"),
            ("clientId", "x"),
            ("jstackEnable", "false"),
        ],
        None,
    );
    for _ in 0..3 {
        release_tx.send(()).unwrap();
    }
    let mut answered = Vec::new();
    for _ in 0..3 {
        let (end, _) = ends.recv_timeout(WAIT).expect("a held check is answered");
        answered.push(field(&end, "tranStateTableOffset").to_owned());
    }
    assert_eq!(
        answered,
        ["100", "101", "102"],
        "the running check and the two held"
    );
    // The pool is free again: a new check is answered, and nothing of the dropped ones came.
    drop(release_tx);
    push_to_client(&fake, &check_request("tx-bounded", "UNIQ-9", 109));
    let (end, _) = ends.recv_timeout(WAIT).expect("a later check is answered");
    assert_eq!(field(&end, "tranStateTableOffset"), "109");
    assert!(ends.recv_timeout(Duration::from_millis(300)).is_err());
    p.shutdown(Duration::from_secs(5)).unwrap();
}
