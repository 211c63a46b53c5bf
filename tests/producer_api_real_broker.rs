//! The producer's Java-level API against a real name server and broker: sends to a chosen or
//! selected queue of every kind, batches and their ids, `fetch_publish_message_queues`, user
//! properties refused at send time, send hooks, and each compression type read back by the
//! consumer. Messages are read back with raw `PULL_MESSAGE` requests (and a push consumer for
//! compression), independently of the producer's code path.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rocketmq_sync::{
    CommunicationMode, CompressionType, DefaultMQProducer, Message, MessageQueue,
    SendMessageContext, SendMessageHook, SendResult,
};
use support::broker::Cluster;
use support::client::*;
use support::consume::{collect, consumer_builder, deliveries, topic_with_queues};

fn body_text(m: &rocketmq_sync::MessageExt) -> String {
    String::from_utf8(m.body().to_vec()).unwrap()
}

#[test]
fn chosen_and_selected_queues_get_async_and_oneway_sends() {
    let cluster = Cluster::shared();
    let topic = topic_with_queues(cluster, 4);
    let p = producer(&cluster.namesrv_addr, &unique("pg"));

    let queues = p.fetch_publish_message_queues(&topic).unwrap();
    assert_eq!(queues.len(), 4, "{queues:?}");
    let ids: HashSet<i32> = queues.iter().map(|q| q.queue_id).collect();
    assert_eq!(ids, (0..4).collect());
    assert!(queues
        .iter()
        .all(|q| q.topic == topic && q.broker_name == cluster.brokers[0].name));
    let missing = p
        .fetch_publish_message_queues(&unique("NoSuchTopic"))
        .unwrap_err();
    assert!(missing.is_topic_not_found(), "{missing}");

    // Per queue: 5 async and 5 one-way to the queue, 5 async and 5 one-way through a selector
    // whose argument is the queue's index. Bodies say which queue they were meant for.
    const K: usize = 5;
    let (tx, rx) = crossbeam_channel::unbounded::<(String, rocketmq_sync::Result<SendResult>)>();
    let by_index = |mqs: &[MessageQueue], i: &usize| mqs.get(*i).cloned();
    let mut expected = 0;
    for (i, mq) in queues.iter().enumerate() {
        for k in 0..K {
            let body = format!("{}:async-q:{k}", mq.queue_id);
            let tx2 = tx.clone();
            let b = body.clone();
            p.send_async_to_queue(&Message::new(&topic, body), mq, move |r| {
                tx2.send((b, r)).unwrap()
            })
            .unwrap();
            p.send_oneway_to_queue(
                &Message::new(&topic, format!("{}:oneway-q:{k}", mq.queue_id)),
                mq,
            )
            .unwrap();
            let body = format!("{}:async-sel:{k}", mq.queue_id);
            let tx2 = tx.clone();
            let b = body.clone();
            p.send_async_with_selector(&Message::new(&topic, body), &by_index, &i, move |r| {
                tx2.send((b, r)).unwrap()
            })
            .unwrap();
            p.send_oneway_with_selector(
                &Message::new(&topic, format!("{}:oneway-sel:{k}", mq.queue_id)),
                &by_index,
                &i,
            )
            .unwrap();
            expected += 4;
        }
    }
    // Every async callback runs once, with the queue asked for.
    let mut answered: HashMap<String, usize> = HashMap::new();
    for _ in 0..queues.len() * K * 2 {
        let (body, r) = rx.recv_timeout(Duration::from_secs(30)).expect("callback");
        let r = r.unwrap_or_else(|e| panic!("{body}: {e}"));
        let want: i32 = body.split(':').next().unwrap().parse().unwrap();
        assert_eq!(r.message_queue().queue_id, want, "{body}");
        *answered.entry(body).or_default() += 1;
    }
    assert!(answered.values().all(|n| *n == 1), "{answered:?}");

    let client = raw_client();
    let all = read_topic_until(&client, &cluster.namesrv_addr, &topic, expected);
    assert_eq!(all.len(), expected);
    let mut seen = HashSet::new();
    for m in &all {
        let text = body_text(m);
        let want: i32 = text.split(':').next().unwrap().parse().unwrap();
        assert_eq!(
            m.queue_id(),
            want,
            "{text} landed on queue {}",
            m.queue_id()
        );
        assert!(seen.insert(text.clone()), "{text} stored twice");
    }
    p.shutdown(Duration::from_secs(5)).unwrap();
    assert!(rx.try_recv().is_err(), "no callback ran twice");
}

#[test]
fn batch_ids_list_matches_what_is_stored() {
    let cluster = Cluster::shared();
    let topic = topic_with_queues(cluster, 2);
    let p = producer(&cluster.namesrv_addr, &unique("pg"));
    let batch = |tag: &str| -> Vec<Message> {
        (0..4)
            .map(|i| Message::new(&topic, format!("{tag}-{i}")))
            .collect()
    };
    let queues = p.fetch_publish_message_queues(&topic).unwrap();
    let mq1 = queues.iter().find(|q| q.queue_id == 1).unwrap().clone();

    let mut results = vec![p.send_batch(&batch("sync")).unwrap()];
    let r = p.send_batch_to_queue(&batch("to-q"), &mq1).unwrap();
    assert_eq!(r.message_queue(), &mq1);
    results.push(r);
    let (tx, rx) = crossbeam_channel::unbounded();
    let tx2 = tx.clone();
    p.send_batch_async(&batch("async"), move |r| tx2.send(r).unwrap())
        .unwrap();
    p.send_batch_async_to_queue(&batch("async-q"), &mq1, move |r| tx.send(r).unwrap())
        .unwrap();
    for _ in 0..2 {
        results.push(rx.recv_timeout(Duration::from_secs(30)).unwrap().unwrap());
    }
    assert!(rx.recv_timeout(Duration::from_millis(1)).is_err());

    let client = raw_client();
    let all = read_topic_until(&client, &cluster.namesrv_addr, &topic, 16);
    assert_eq!(all.len(), 16);
    // Stored messages by (queue, offset), each with its id.
    let stored: BTreeMap<(i32, i64), (String, String)> = all
        .iter()
        .map(|m| {
            (
                (m.queue_id(), m.queue_offset()),
                (m.msg_id().into_owned(), body_text(m)),
            )
        })
        .collect();
    for r in &results {
        let ids = r.msg_ids();
        assert_eq!(ids.len(), 4, "{r}");
        assert_eq!(r.msg_id(), ids.join(","), "msg_id keeps Java's joined form");
        let q = r.message_queue().queue_id;
        let mut tag = None;
        for (i, id) in ids.iter().enumerate() {
            let (stored_id, body) = &stored[&(q, r.queue_offset() + i as i64)];
            assert_eq!(stored_id, id, "message {i} of {r}");
            let (t, n) = body.rsplit_once('-').unwrap();
            assert_eq!(n, i.to_string(), "batch order kept");
            assert!(tag.is_none_or(|tag| tag == t));
            tag = Some(t.to_owned());
        }
    }
    p.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn reserved_user_property_names_are_refused_when_sent() {
    let cluster = Cluster::shared();
    let topic = topic_with_queues(cluster, 1);
    let p = producer(&cluster.namesrv_addr, &unique("pg"));
    let bad = Message::new(&topic, "bad")
        .with_user_property("region", "eu")
        .with_user_property("UNIQ_KEY", "my-own-id");
    let check = |e: rocketmq_sync::Error| {
        assert!(e.is_message_illegal(), "{e}");
        assert!(
            e.to_string()
                .contains("The Property<UNIQ_KEY> is used by system"),
            "{e}"
        );
    };
    check(p.send(&bad).unwrap_err());
    check(p.send_oneway(&bad).unwrap_err());
    let mq = MessageQueue::new(&topic, &cluster.brokers[0].name, 0);
    check(p.send_to_queue(&bad, &mq).unwrap_err());
    check(p.send_oneway_to_queue(&bad, &mq).unwrap_err());
    let ran = Arc::new(AtomicUsize::new(0));
    let r2 = ran.clone();
    check(
        p.send_async(&bad, move |_| {
            r2.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap_err(),
    );
    let r2 = ran.clone();
    check(
        p.send_async_to_queue(&bad, &mq, move |_| {
            r2.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap_err(),
    );
    let first = |mqs: &[MessageQueue], _: &()| mqs.first().cloned();
    check(p.send_with_selector(&bad, &first, &()).unwrap_err());
    check(p.send_oneway_with_selector(&bad, &first, &()).unwrap_err());
    let good = Message::new(&topic, "good").with_user_property("region", "eu");
    check(p.send_batch(&[good.clone(), bad.clone()]).unwrap_err());

    // Nothing of the refused sends was stored: the one good send afterwards is all there is.
    p.send(&good).unwrap();
    p.shutdown(Duration::from_secs(5)).unwrap();
    assert_eq!(
        ran.load(Ordering::SeqCst),
        0,
        "a refused async send runs no callback"
    );
    let all = read_topic_until(&raw_client(), &cluster.namesrv_addr, &topic, 1);
    assert_eq!(all.len(), 1);
    assert_eq!(body_text(&all[0]), "good");
    assert_eq!(all[0].property("region"), Some("eu"));
}

/// One hook call as the recorder saw it.
#[derive(Debug, Clone)]
struct Call {
    before: bool,
    mode: CommunicationMode,
    group: String,
    queue: MessageQueue,
    addr: String,
    bodies: Vec<String>,
    ids: Vec<String>,
    result: Option<SendResult>,
    failed: bool,
}

struct Recorder(Arc<Mutex<Vec<Call>>>);

impl Recorder {
    fn push(&self, before: bool, c: &SendMessageContext<'_>) {
        self.0.lock().push(Call {
            before,
            mode: c.communication_mode,
            group: c.producer_group.to_owned(),
            queue: c.message_queue.clone(),
            addr: c.broker_addr.to_owned(),
            bodies: c
                .messages
                .iter()
                .map(|m| String::from_utf8(m.body().to_vec()).unwrap())
                .collect(),
            ids: c
                .messages
                .iter()
                .map(|m| m.uniq_key().unwrap_or_default().to_owned())
                .collect(),
            result: c.send_result.cloned(),
            failed: c.exception.is_some(),
        });
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

/// Panics in both calls; the sends must go on regardless.
struct Panicking(Arc<AtomicUsize>);

impl SendMessageHook for Panicking {
    fn hook_name(&self) -> &str {
        "panicking"
    }
    fn send_message_before(&self, _: &SendMessageContext<'_>) {
        self.0.fetch_add(1, Ordering::SeqCst);
        panic!("hook panics before the send");
    }
    fn send_message_after(&self, _: &SendMessageContext<'_>) {
        self.0.fetch_add(1, Ordering::SeqCst);
        panic!("hook panics after the send");
    }
}

#[test]
fn send_hooks_see_every_mode_and_a_panicking_hook_fails_no_send() {
    let cluster = Cluster::shared();
    let topic = topic_with_queues(cluster, 2);
    let group = unique("hook_pg");
    let calls = Arc::new(Mutex::new(Vec::new()));
    let panics = Arc::new(AtomicUsize::new(0));
    let p = DefaultMQProducer::builder(&group)
        .namesrv_addr(&cluster.namesrv_addr)
        .instance_name(unique("inst"))
        .send_message_hook(Panicking(panics.clone()))
        .send_message_hook(Recorder(calls.clone()))
        .build()
        .unwrap();
    p.start().unwrap();

    let sync = p.send(&Message::new(&topic, "sync")).unwrap();
    let (tx, rx) = crossbeam_channel::bounded(1);
    p.send_async(&Message::new(&topic, "async"), move |r| tx.send(r).unwrap())
        .unwrap();
    let async_r = rx.recv_timeout(Duration::from_secs(30)).unwrap().unwrap();
    let mq = MessageQueue::new(&topic, &cluster.brokers[0].name, 1);
    p.send_oneway_to_queue(&Message::new(&topic, "oneway"), &mq)
        .unwrap();
    let batch = p
        .send_batch(&[Message::new(&topic, "b0"), Message::new(&topic, "b1")])
        .unwrap();
    // The async after hook runs before the callback, so all 8 calls are in.
    let calls = calls.lock().clone();
    assert_eq!(calls.len(), 8, "{calls:#?}");
    assert_eq!(
        panics.load(Ordering::SeqCst),
        8,
        "the panicking hook ran every time"
    );

    let addr = &cluster.brokers[0].addr;
    let expect = [
        (CommunicationMode::Sync, vec!["sync"], Some(&sync)),
        (CommunicationMode::Async, vec!["async"], Some(&async_r)),
        (CommunicationMode::Oneway, vec!["oneway"], None),
        (CommunicationMode::Sync, vec!["b0", "b1"], Some(&batch)),
    ];
    for (pair, (mode, bodies, result)) in calls.chunks(2).zip(expect) {
        let (before, after) = (&pair[0], &pair[1]);
        for c in pair {
            assert_eq!(c.mode, mode);
            assert_eq!(c.group, group);
            assert_eq!(&c.addr, addr);
            assert_eq!(c.bodies, bodies);
            assert!(!c.failed);
            assert!(c.ids.iter().all(|id| !id.is_empty()), "UNIQ_KEY set: {c:?}");
        }
        assert!(before.before && !after.before);
        assert!(before.result.is_none());
        assert_eq!(after.result.as_ref(), result);
        match result {
            Some(r) => {
                assert_eq!(&before.queue, r.message_queue());
                assert_eq!(
                    after.ids,
                    r.msg_ids(),
                    "the hook's messages are the ones sent"
                );
            }
            None => assert_eq!(before.queue, mq),
        }
    }
    p.shutdown(Duration::from_secs(5)).unwrap();
    let all = read_topic_until(&raw_client(), &cluster.namesrv_addr, &topic, 5);
    assert_eq!(
        all.len(),
        5,
        "every send was stored despite the panicking hook"
    );
}

#[test]
fn each_compression_type_round_trips_through_the_broker() {
    let cluster = Cluster::shared();
    let topic = topic_with_queues(cluster, 1);
    // Compressible, and big enough to be compressed with the threshold below.
    let body_of = |name: &str| -> String {
        (0..2000)
            .map(|i| format!("{name}-{}", i % 37))
            .collect::<Vec<_>>()
            .join(",")
    };
    let types = [
        (CompressionType::Zlib, 0x300),
        (CompressionType::Lz4, 0x100),
        (CompressionType::Zstd, 0x200),
    ];
    for (t, _) in types {
        let p = DefaultMQProducer::builder(unique("pg"))
            .namesrv_addr(&cluster.namesrv_addr)
            .instance_name(unique("inst"))
            .compress_type(t)
            .compress_msg_body_over_howmuch(1024)
            .build()
            .unwrap();
        p.start().unwrap();
        p.send(&Message::new(&topic, body_of(t.as_java_str())).with_tags(t.as_java_str()))
            .unwrap();
        p.shutdown(Duration::from_secs(5)).unwrap();
    }

    // The stored records carry Java's flag bits and a body smaller than the original.
    let client = raw_client();
    let stored = read_topic_until(&client, &cluster.namesrv_addr, &topic, 3);
    assert_eq!(stored.len(), 3);
    for (m, (t, flag)) in stored.iter().zip(types) {
        assert_eq!(m.tags(), Some(t.as_java_str()));
        assert_eq!(
            m.sys_flag() & 0x701,
            0x1 | flag,
            "{t:?}: sys flag {:#x}",
            m.sys_flag()
        );
        assert!((m.store_size() as usize) < body_of(t.as_java_str()).len());
        assert_eq!(body_text(m), body_of(t.as_java_str()), "{t:?} decoded");
    }

    // A push consumer decodes all three.
    let (tx, rx) = crossbeam_channel::unbounded();
    let c = consumer_builder(cluster, &unique("cg"), &topic)
        .register_message_listener_concurrently(deliveries(tx))
        .build()
        .unwrap();
    c.start().unwrap();
    let got = collect(&rx, 3, Duration::from_secs(60));
    c.shutdown(Duration::from_secs(5)).unwrap();
    assert_eq!(got.len(), 3);
    for d in got {
        let tag = d.tags.clone().unwrap();
        assert_eq!(d.body, body_of(&tag), "{tag} consumed intact");
    }
}
