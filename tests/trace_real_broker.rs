//! Message trace against a real name server and broker: the consumer's trace records reach the
//! trace topic in Java's format, and a full trace queue drops trace data, never a user's
//! message.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rocketmq_sync::{Message, TraceContext, TraceType};
use support::broker::{wait_until, Cluster};
use support::client::*;
use support::consume::*;

/// Every trace record stored in `topic` so far.
fn trace_records(cluster: &Cluster, topic: &str) -> Vec<(TraceContext, Option<String>)> {
    read_topic(&raw_client(), &cluster.namesrv_addr, topic)
        .into_iter()
        .flat_map(|m| {
            let body = String::from_utf8(m.body().to_vec()).expect("trace data is text");
            let keys = m.keys().map(str::to_owned);
            TraceContext::decode_all(&body)
                .expect("trace data decodes as Java's format")
                .into_iter()
                .map(move |c| (c, keys.clone()))
        })
        .collect()
}

#[test]
fn consumer_trace_records_reach_the_trace_topic_in_javas_format() {
    let cluster = Cluster::shared();
    let topic = topic_with_queues(cluster, 2);
    let trace_topic = topic_with_queues(cluster, 1);
    let p = producer(&cluster.namesrv_addr, &unique("tpg"));
    let mut ids = HashSet::new();
    for i in 0..20 {
        let msg = Message::new(&topic, format!("t{i}")).with_keys(format!("key{i}"));
        ids.insert(p.send(&msg).unwrap().msg_id().to_owned());
    }
    p.shutdown(Duration::from_secs(5)).unwrap();

    let group = unique("tcg");
    let (tx, rx) = crossbeam_channel::unbounded();
    let c = consumer_builder(cluster, &group, &topic)
        .customized_trace_topic(trace_topic.clone())
        .register_message_listener_concurrently(deliveries(tx))
        .build()
        .unwrap();
    c.start().unwrap();
    assert_eq!(collect(&rx, 20, Duration::from_secs(60)).len(), 20);
    // Shutdown sends what is still queued.
    c.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!(c.trace_dropped(), 0);

    let mut records = Vec::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            records = trace_records(cluster, &trace_topic);
            records.len() >= 40
        }),
        "{} trace records",
        records.len()
    );
    let mut before: HashMap<String, TraceContext> = HashMap::new();
    let mut after: HashMap<String, TraceContext> = HashMap::new();
    for (r, keys) in &records {
        let bean = &r.trace_beans[0];
        assert!(ids.contains(&bean.msg_id), "{r:?}");
        // The trace message is found by the message id (and its keys).
        let keys = keys.as_deref().unwrap_or_default();
        assert!(keys.split(' ').any(|k| k == bean.msg_id), "{keys}");
        match r.trace_type {
            TraceType::SubBefore => {
                assert_eq!(r.group_name, group);
                assert_eq!(r.region_id, "DefaultRegion");
                assert!(bean.keys.starts_with("key"), "{r:?}");
                assert_eq!(bean.retry_times, 0);
                before.insert(bean.msg_id.clone(), r.clone());
            }
            TraceType::SubAfter => {
                assert!(r.success && r.context_code == 0, "{r:?}");
                assert!(r.cost_time >= 0 && r.time_stamp > 0, "{r:?}");
                after.insert(bean.msg_id.clone(), r.clone());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(before.len(), 20);
    assert_eq!(after.len(), 20);
    for (id, b) in &before {
        assert_eq!(
            after[id].request_id, b.request_id,
            "before and after of {id} pair up"
        );
        assert!(after[id].time_stamp >= b.time_stamp);
    }
}

#[test]
fn a_full_trace_queue_drops_trace_data_not_messages() {
    let cluster = Cluster::shared();
    let topic = topic_with_queues(cluster, 4);
    let trace_topic = topic_with_queues(cluster, 1);
    let p = producer(&cluster.namesrv_addr, &unique("tpg"));
    produce(&p, &topic, "f", 2000, "T");
    p.shutdown(Duration::from_secs(5)).unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let c = consumer_builder(cluster, &unique("tcg"), &topic)
        .customized_trace_topic(trace_topic)
        .trace_queue_size_for_tests(1)
        .register_message_listener_concurrently(deliveries(tx))
        .build()
        .unwrap();
    c.start().unwrap();
    let got = collect(&rx, 2000, Duration::from_secs(120));
    let bodies: HashSet<String> = got.iter().map(|d| d.body.clone()).collect();
    assert_eq!(got.len(), 2000);
    assert_eq!(bodies.len(), 2000, "every message once");
    assert!(c.trace_dropped() > 0, "a one-record queue dropped some");
    c.shutdown(Duration::from_secs(10)).unwrap();
}

#[test]
fn producer_trace_records_each_answered_send_in_javas_format() {
    let cluster = Cluster::shared();
    let topic = topic_with_queues(cluster, 2);
    let trace_topic = topic_with_queues(cluster, 1);
    let group = unique("tpg");
    let p = rocketmq_sync::DefaultMQProducer::builder(&group)
        .namesrv_addr(cluster.namesrv_addr.clone())
        .customized_trace_topic(trace_topic.clone())
        .build()
        .unwrap();
    p.start().unwrap();
    let mut sent = HashMap::new();
    for i in 0..10 {
        let msg = Message::new(&topic, format!("s{i}"))
            .with_tags("TagT")
            .with_keys(format!("pk{i}"));
        let r = p.send(&msg).unwrap();
        sent.insert(r.msg_id().to_owned(), r);
    }
    let (tx, rx) = crossbeam_channel::unbounded();
    for i in 0..5 {
        let tx = tx.clone();
        let msg = Message::new(&topic, format!("a{i}")).with_keys(format!("ak{i}"));
        p.send_async(&msg, move |r| tx.send(r.unwrap()).unwrap())
            .unwrap();
    }
    for _ in 0..5 {
        let r = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        sent.insert(r.msg_id().to_owned(), r);
    }
    // A one-way send has no answer: not traced, as in Java.
    p.send_oneway(&Message::new(&topic, "oneway")).unwrap();
    p.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!(p.trace_dropped(), 0);

    let mut records = Vec::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            records = trace_records(cluster, &trace_topic);
            records.len() >= 15
        }),
        "{} trace records",
        records.len()
    );
    assert_eq!(records.len(), 15, "one Pub per answered send");
    for (r, _) in &records {
        assert_eq!(r.trace_type, TraceType::Pub);
        let b = &r.trace_beans[0];
        let result = &sent[&b.msg_id];
        assert_eq!(r.group_name, group);
        assert!(r.success && r.cost_time >= 0 && r.time_stamp > 0, "{r:?}");
        assert_eq!(b.topic, topic);
        assert_eq!(b.offset_msg_id, result.offset_msg_id());
        assert!(
            cluster.brokers.iter().any(|br| br.addr == b.store_host),
            "{r:?}"
        );
        assert_eq!(b.msg_type, 0);
        assert!(
            b.keys.starts_with("pk") || b.keys.starts_with("ak"),
            "{r:?}"
        );
        assert_eq!(b.body_length as usize, 2);
    }
}
