//! Namespaces against a real name server and broker: two namespaces on one broker, with the
//! same topic and group names, do not see each other's messages; users see names without the
//! namespace; the broker sees them with it.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rocketmq_sync::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, ConsumeFromWhere,
    DefaultLitePullConsumer, DefaultMQProducer, DefaultMQPushConsumer, Message, MessageExt,
};
use support::broker::Cluster;
use support::client::*;

#[test]
fn two_namespaces_on_one_broker_do_not_see_each_other() {
    let cluster = Cluster::shared();
    let topic = unique("NsTopic");
    let group = unique("ns_group");
    let (a, b) = (unique("nsA"), unique("nsB"));
    for ns in [&a, &b] {
        create_topic_on_all_brokers(&raw_client(), cluster, &format!("{ns}%{topic}"), 2);
    }
    for ns in [&a, &b] {
        let p = DefaultMQProducer::builder(&group)
            .namesrv_addr(cluster.namesrv_addr.clone())
            .instance_name(unique("nsp"))
            .namespace(ns.clone())
            .build()
            .unwrap();
        p.start().unwrap();
        for i in 0..20 {
            let r = p.send(&Message::new(&topic, format!("{ns}-{i}"))).unwrap();
            assert_eq!(
                r.message_queue().topic,
                topic,
                "results name the bare topic"
            );
        }
        let queues = p.fetch_publish_message_queues(&topic).unwrap();
        assert!(queues.iter().all(|q| q.topic == topic));
        p.shutdown(Duration::from_secs(5)).unwrap();
    }
    // At the broker the topics are namespaced.
    let client = raw_client();
    for ns in [&a, &b] {
        let stored = read_topic_until(&client, &cluster.namesrv_addr, &format!("{ns}%{topic}"), 20);
        assert_eq!(stored.len(), 20);
        assert!(stored
            .iter()
            .all(|m| String::from_utf8_lossy(m.body()).starts_with(ns.as_str())));
    }

    // A push consumer in namespace A gets A's messages only, named without the namespace.
    let (tx, rx) = crossbeam_channel::unbounded();
    let push = DefaultMQPushConsumer::builder(&group)
        .namesrv_addr(cluster.namesrv_addr.clone())
        .instance_name(unique("nsc"))
        .namespace(a.clone())
        .subscribe(topic.clone(), "*")
        .consume_from_where(ConsumeFromWhere::FirstOffset)
        .register_message_listener_concurrently(
            move |msgs: &[MessageExt], _: &mut ConsumeConcurrentlyContext| {
                for m in msgs {
                    tx.send((
                        m.topic().to_owned(),
                        String::from_utf8_lossy(m.body()).into_owned(),
                    ))
                    .unwrap();
                }
                ConsumeConcurrentlyStatus::ConsumeSuccess
            },
        )
        .build()
        .unwrap();
    push.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = Vec::new();
    while got.len() < 20 {
        got.push(
            rx.recv_deadline(deadline)
                .expect("namespace A's messages arrive"),
        );
    }
    assert!(
        got.iter()
            .all(|(t, body)| t == &topic && body.starts_with(a.as_str())),
        "{got:?}"
    );
    assert_eq!(got.iter().map(|(_, b)| b).collect::<HashSet<_>>().len(), 20);

    // A lite pull consumer in namespace B, same group and topic names: B's messages only.
    let lite = DefaultLitePullConsumer::builder(&group)
        .namesrv_addr(cluster.namesrv_addr.clone())
        .instance_name(unique("nsl"))
        .namespace(b.clone())
        .consume_from_where(ConsumeFromWhere::FirstOffset)
        .build()
        .unwrap();
    lite.start().unwrap();
    let queues = lite.fetch_message_queues(&topic).unwrap();
    assert!(queues.iter().all(|q| q.topic == topic), "{queues:?}");
    lite.assign(queues.clone()).unwrap();
    assert_eq!(lite.assignment(), queues);
    let mut polled = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while polled.len() < 20 && Instant::now() < deadline {
        polled.extend(lite.poll(Duration::from_millis(200)).unwrap());
    }
    assert_eq!(polled.len(), 20);
    assert!(polled
        .iter()
        .all(|m| m.topic() == topic && String::from_utf8_lossy(m.body()).starts_with(b.as_str())));
    lite.commit_sync().unwrap();
    assert_eq!(
        queues
            .iter()
            .map(|q| lite.committed(q).unwrap())
            .sum::<i64>(),
        20
    );
    // Nothing of A's arrives after a while either.
    assert!(rx.try_recv().is_err());
    lite.shutdown(Duration::from_secs(10)).unwrap();
    push.shutdown(Duration::from_secs(10)).unwrap();
}

#[test]
fn a_namespace_that_cannot_name_topics_is_refused() {
    let e = DefaultMQProducer::builder("g")
        .namespace("a b")
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("namespace"), "{e}");
    let e = DefaultMQPushConsumer::builder("g")
        .namespace("x%y")
        .subscribe("T", "*")
        .register_message_listener_concurrently(
            |_: &[MessageExt], _: &mut ConsumeConcurrentlyContext| {
                ConsumeConcurrentlyStatus::ConsumeSuccess
            },
        )
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("namespace"), "{e}");
}

/// A message consumed later comes back through the group's retry topic (`%RETRY%ns%group` at
/// the broker) under its own bare topic name.
#[test]
fn a_retried_message_comes_back_under_its_bare_topic() {
    let cluster = Cluster::shared();
    let topic = unique("NsRetry");
    let group = unique("ns_retry_group");
    let ns = unique("nsR");
    create_topic_on_all_brokers(&raw_client(), cluster, &format!("{ns}%{topic}"), 1);
    let p = DefaultMQProducer::builder(&group)
        .namesrv_addr(cluster.namesrv_addr.clone())
        .instance_name(unique("nsp"))
        .namespace(ns.clone())
        .build()
        .unwrap();
    p.start().unwrap();
    p.send(&Message::new(&topic, "again")).unwrap();
    p.shutdown(Duration::from_secs(5)).unwrap();

    let (tx, rx) = crossbeam_channel::unbounded();
    let c = DefaultMQPushConsumer::builder(&group)
        .namesrv_addr(cluster.namesrv_addr.clone())
        .instance_name(unique("nsc"))
        .namespace(ns.clone())
        .subscribe(topic.clone(), "*")
        .consume_from_where(ConsumeFromWhere::FirstOffset)
        .register_message_listener_concurrently(
            move |msgs: &[MessageExt], _: &mut ConsumeConcurrentlyContext| {
                let m = &msgs[0];
                tx.send((m.topic().to_owned(), m.reconsume_times()))
                    .unwrap();
                if m.reconsume_times() == 0 {
                    ConsumeConcurrentlyStatus::ReconsumeLater
                } else {
                    ConsumeConcurrentlyStatus::ConsumeSuccess
                }
            },
        )
        .build()
        .unwrap();
    c.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let first = rx.recv_deadline(deadline).expect("first delivery");
    assert_eq!(first, (topic.clone(), 0));
    let second = rx.recv_deadline(deadline).expect("the retry comes back");
    assert_eq!(second, (topic.clone(), 1));
    c.shutdown(Duration::from_secs(10)).unwrap();
}
