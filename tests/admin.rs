//! `DefaultMQAdminExt` against real name servers and brokers (rocketmq-rust 1.0.0): every call,
//! its answer checked against what the test produced or consumed, and the clear error of bad
//! input (unknown topic, group, cluster or broker, malformed msgId, a broker gone).

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use rocketmq_sync::{
    ClientErrorCode, DefaultMQAdminExt, DefaultMQProducer, Error, Message, MessageExt,
    MessageQueue, ResponseCode, SendResult, ServiceState, TopicConfig,
};
use support::broker::{wait_until, Cluster, ClusterOptions};
use support::client::{producer, unique};
use support::consume::{collect, consumer_builder, deliveries, topic_with_queues};

const WAIT: Duration = Duration::from_secs(30);

fn admin(cluster: &Cluster) -> DefaultMQAdminExt {
    let admin = DefaultMQAdminExt::builder()
        .namesrv_addr(cluster.namesrv_addr.clone())
        .instance_name(unique("admin"))
        .build()
        .expect("valid admin config");
    admin.start().expect("admin starts");
    admin
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Waits for the name servers to list `queues` read queues of `topic` on each of `brokers`.
fn wait_route(admin: &DefaultMQAdminExt, topic: &str, brokers: usize, queues: i32) {
    assert!(
        wait_until(WAIT, || admin.examine_topic_route_info(topic).is_ok_and(
            |r| {
                r.queue_datas.len() == brokers
                    && r.queue_datas.iter().all(|q| q.read_queue_nums == queues)
            }
        )),
        "the route of {topic} never showed {brokers} broker(s) with {queues} queues: {:?}",
        admin.examine_topic_route_info(topic)
    );
}

fn send_keyed(p: &DefaultMQProducer, topic: &str, key: &str, body: &str) -> SendResult {
    let r = p
        .send(&Message::new(topic, body.to_owned()).with_keys(key))
        .expect("send");
    assert!(r.send_status().is_ok());
    r
}

fn bodies(msgs: &[MessageExt]) -> BTreeSet<String> {
    msgs.iter()
        .map(|m| String::from_utf8_lossy(m.body()).into_owned())
        .collect()
}

#[test]
fn a_call_before_start_is_a_state_error() {
    let admin = DefaultMQAdminExt::builder()
        .namesrv_addr("127.0.0.1:1")
        .build()
        .unwrap();
    let e = admin.fetch_all_topic_list().unwrap_err();
    assert!(matches!(e, Error::ServiceState { .. }), "{e}");
    assert_eq!(admin.service_state(), ServiceState::CreateJust);

    // Started, with no name server behind the address: a remoting error, not a hang.
    admin.start().unwrap();
    let e = admin.start().unwrap_err();
    assert!(matches!(e, Error::ServiceState { .. }), "{e}");
    let e = admin.fetch_all_topic_list().unwrap_err();
    assert!(e.is_remoting(), "{e}");
    let e = admin.examine_broker_cluster_info().unwrap_err();
    assert!(e.is_remoting(), "{e}");

    admin.shutdown();
    admin.shutdown();
    assert_eq!(admin.service_state(), ServiceState::ShutdownAlready);
    let e = admin.examine_topic_route_info("T").unwrap_err();
    assert!(matches!(e, Error::ServiceState { .. }), "{e}");
}

#[test]
fn cluster_list_topic_creation_route_and_topic_list() {
    let cluster = Cluster::shared();
    let admin = admin(cluster);

    let info = admin.examine_broker_cluster_info().expect("cluster info");
    let broker = &cluster.brokers[0];
    let data = &info.broker_addr_table[&broker.name];
    assert_eq!(data.master_addr(), Some(broker.addr.as_str()));
    let clusters: Vec<&String> = info
        .cluster_addr_table
        .iter()
        .filter(|(_, names)| names.contains(&broker.name))
        .map(|(c, _)| c)
        .collect();
    assert_eq!(clusters, vec![&data.cluster], "{info:?}");

    // updateTopic -c
    let topic = unique("AdminClusterTopic");
    let config = TopicConfig {
        read_queue_nums: 3,
        write_queue_nums: 3,
        ..TopicConfig::new(topic.clone())
    };
    let written = admin
        .create_topic_on_cluster(&data.cluster, &config)
        .expect("create on cluster");
    assert_eq!(written, vec![broker.addr.clone()]);
    wait_route(&admin, &topic, 1, 3);
    let route = admin.examine_topic_route_info(&topic).unwrap();
    assert_eq!(route.queue_datas[0].perm, 6);
    assert_eq!(route.broker_datas[0].broker_name, broker.name);
    assert!(wait_until(WAIT, || admin
        .fetch_all_topic_list()
        .is_ok_and(|l| l.contains(&topic))));

    // updateTopic -b: the same topic, now 5 queues.
    admin
        .create_and_update_topic_config(
            &broker.addr,
            &TopicConfig {
                read_queue_nums: 5,
                write_queue_nums: 5,
                ..TopicConfig::new(topic.clone())
            },
        )
        .expect("update on broker");
    wait_route(&admin, &topic, 1, 5);

    // MQAdmin.createTopic: on every master holding TBW102.
    let keyed = unique("AdminKeyTopic");
    admin
        .create_topic("TBW102", &keyed, 2)
        .expect("createTopic");
    wait_route(&admin, &keyed, 1, 2);

    // Bad input.
    let e = admin
        .create_topic_on_cluster("NoSuchCluster", &config)
        .unwrap_err();
    assert!(e.to_string().contains("NoSuchCluster"), "{e}");
    let e = admin
        .create_and_update_topic_config(&broker.addr, &TopicConfig::new("bad topic!"))
        .unwrap_err();
    assert!(e.to_string().contains("bad topic!"), "{e}");
    let e = admin
        .create_topic("NoSuchKeyTopic_x", &unique("T"), 2)
        .unwrap_err();
    assert!(e.is_topic_not_found(), "{e}");
    let e = admin
        .examine_topic_route_info(&unique("NoSuchTopic"))
        .unwrap_err();
    assert!(e.is_topic_not_found(), "{e}");
    let e = admin
        .create_and_update_topic_config("127.0.0.1:1", &config)
        .unwrap_err();
    assert!(e.is_remoting(), "a broker that is gone: {e}");
    admin.shutdown();
}

#[test]
fn offsets_store_times_and_search_by_time() {
    let cluster = Cluster::shared();
    let admin = admin(cluster);
    let topic = topic_with_queues(cluster, 1);
    let mq = MessageQueue::new(topic.clone(), cluster.brokers[0].name.clone(), 0);
    assert_eq!(admin.max_offset(&mq).unwrap(), 0);
    assert_eq!(admin.min_offset(&mq).unwrap(), 0);

    let p = producer(&cluster.namesrv_addr, &unique("pg"));
    let mut store_times = Vec::new();
    for i in 0..4 {
        // Each message in a later millisecond than the one before, so the search by time has
        // one answer per message.
        if let Some(&last) = store_times.last() {
            assert!(wait_until(WAIT, || now_ms() > last + 1));
        }
        let r = send_keyed(&p, &topic, "k", &format!("m{i}"));
        assert_eq!(r.message_queue(), &mq);
        let m = admin.view_message(r.offset_msg_id()).expect("view");
        assert_eq!(m.queue_offset(), i);
        store_times.push(m.store_timestamp());
    }
    // The consume queue is written behind the commit log.
    assert!(wait_until(WAIT, || admin
        .max_offset(&mq)
        .is_ok_and(|o| o == 4)));
    assert_eq!(admin.min_offset(&mq).unwrap(), 0);
    assert_eq!(admin.earliest_msg_store_time(&mq).unwrap(), store_times[0]);
    for (i, t) in store_times.iter().enumerate() {
        assert_eq!(
            admin.search_offset(&mq, *t).unwrap(),
            i as i64,
            "search at the store time of message {i} ({store_times:?})"
        );
    }

    // Unknown topic, unknown broker.
    let e = admin
        .max_offset(&MessageQueue::new(unique("NoSuchTopic"), "broker-a", 0))
        .unwrap_err();
    assert!(e.is_topic_not_found(), "{e}");
    let e = admin
        .min_offset(&MessageQueue::new(topic.clone(), "no-such-broker", 0))
        .unwrap_err();
    assert_eq!(
        e.client_error_code(),
        Some(ClientErrorCode::BROKER_NOT_EXIST_EXCEPTION),
        "{e}"
    );
    assert!(e.to_string().contains("no-such-broker"), "{e}");
    p.shutdown(Duration::from_secs(5)).unwrap();
    admin.shutdown();
}

#[test]
fn view_message_by_offset_msg_id_and_by_unique_key() {
    let cluster = Cluster::shared();
    let admin = admin(cluster);
    let topic = topic_with_queues(cluster, 2);
    let p = producer(&cluster.namesrv_addr, &unique("pg"));
    let key = unique("key");
    let r = send_keyed(&p, &topic, &key, "viewed");

    let m = admin
        .view_message(r.offset_msg_id())
        .expect("by offset msgId");
    assert_eq!(m.topic(), topic);
    assert_eq!(&m.body()[..], b"viewed");
    assert_eq!(m.keys(), Some(key.as_str()));
    assert_eq!(m.msg_id(), r.msg_id());
    assert_eq!(m.offset_msg_id(), r.offset_msg_id());
    assert_eq!(&m.queue_id(), &r.message_queue().queue_id);

    // Java's viewMessage(topic, msgId): an offset msgId, or else a unique key.
    let by_offset = admin
        .view_message_in_topic(&topic, r.offset_msg_id())
        .unwrap();
    assert_eq!(by_offset.offset_msg_id(), r.offset_msg_id());
    let mut by_key = None;
    assert!(
        wait_until(WAIT, || {
            by_key = admin.view_message_in_topic(&topic, r.msg_id()).ok();
            by_key.is_some()
        }),
        "the unique key {} was never found",
        r.msg_id()
    );
    assert_eq!(by_key.unwrap().offset_msg_id(), r.offset_msg_id());
    let unique_hit = admin
        .query_message_by_unique_key(&topic, r.msg_id())
        .unwrap();
    assert_eq!(&unique_hit.body()[..], b"viewed");

    // Malformed ids are a clear error, never a panic.
    for bad in ["", "XYZ", "0123", &"G".repeat(32), &"0".repeat(31)] {
        let e = admin.view_message(bad).unwrap_err();
        assert!(
            e.to_string().contains("is not an offset msgId"),
            "{bad:?}: {e}"
        );
    }
    // A well-formed id of a store host that is gone.
    let gone =
        rocketmq_sync::codec::MessageDecoder::create_message_id("127.0.0.1:1".parse().unwrap(), 0);
    let e = admin.view_message(&gone).unwrap_err();
    assert!(e.is_remoting(), "{e}");
    // A unique key nobody sent.
    let e = admin
        .query_message_by_unique_key(
            &topic,
            &rocketmq_sync::codec::MessageClientIDSetter::create_uniq_id(),
        )
        .unwrap_err();
    assert_eq!(
        e.client_error_code(),
        Some(ClientErrorCode::from(208)),
        "{e}"
    );
    p.shutdown(Duration::from_secs(5)).unwrap();
    admin.shutdown();
}

/// Two brokers: a key query merges both; a message whose key only shares the index hash is
/// not returned; with one broker killed the other's messages still come back.
#[test]
fn query_by_key_merges_every_broker_of_the_topic() {
    let cluster = Cluster::start(ClusterOptions::brokers(2));
    let admin = admin(&cluster);
    let topic = topic_with_queues(&cluster, 2);
    let p = producer(&cluster.namesrv_addr, &unique("pg"));
    let key = unique("order");
    let mut sent = BTreeSet::new();
    for b in &cluster.brokers {
        for q in 0..2 {
            let body = format!("{}-{q}", b.name);
            let mq = MessageQueue::new(topic.clone(), b.name.clone(), q);
            let r = p
                .send_to_queue(
                    &Message::new(topic.clone(), body.clone()).with_keys(format!("x {key} y")),
                    &mq,
                )
                .unwrap();
            assert!(r.send_status().is_ok());
            sent.insert(body);
        }
    }
    // Other keys, one of them a prefix of ours.
    send_keyed(&p, &topic, &format!("{key}0"), "other-1");
    send_keyed(&p, &topic, "unrelated", "other-2");

    let begin = now_ms() - 60_000;
    let mut found = BTreeSet::new();
    assert!(
        wait_until(WAIT, || {
            let r = admin
                .query_message(&topic, &key, 64, begin, now_ms() + 60_000)
                .expect("query");
            found = bodies(&r.messages);
            assert!(r.messages.iter().all(|m| m.topic() == topic));
            found == sent
        }),
        "query by key found {found:?}, sent {sent:?}"
    );
    let r = admin
        .query_message(&topic, &key, 64, begin, now_ms() + 60_000)
        .unwrap();
    assert!(r.index_last_update_timestamp > 0);
    let brokers: BTreeSet<&str> = r
        .messages
        .iter()
        .map(|m| m.broker_name().unwrap_or_default())
        .collect();
    assert_eq!(brokers.len(), 2, "{brokers:?}");
    // Nothing in the time range: empty, not an error.
    let none = admin.query_message(&topic, &key, 64, 0, 1).unwrap();
    assert!(none.messages.is_empty());
    let e = admin
        .query_message(&unique("NoSuchTopic"), &key, 64, 0, i64::MAX)
        .unwrap_err();
    assert!(e.is_topic_not_found(), "{e}");

    // broker-b goes away. The admin knows its route from before, and the name server may or
    // may not have dropped it yet.
    let b0 = MessageQueue::new(topic.clone(), "broker-b", 0);
    assert!(admin.max_offset(&b0).unwrap() >= 1);
    cluster.kill_broker("broker-b");
    let r = admin
        .query_message(&topic, &key, 64, begin, now_ms() + 60_000)
        .expect("the live broker still answers");
    assert_eq!(
        bodies(&r.messages),
        sent.iter()
            .filter(|b| b.starts_with("broker-a"))
            .cloned()
            .collect()
    );
    let e = admin.max_offset(&b0).unwrap_err();
    assert!(e.is_remoting(), "{e}");
    p.shutdown(Duration::from_secs(5)).unwrap();
    admin.shutdown();
}

#[test]
fn consumer_progress_connections_and_running_info() {
    let cluster = Cluster::shared();
    let admin = admin(cluster);
    let topic = topic_with_queues(cluster, 2);
    let group = unique("admin_cg");
    let p = producer(&cluster.namesrv_addr, &unique("pg"));
    for i in 0..10 {
        send_keyed(&p, &topic, "k", &format!("m{i}"));
    }
    let (tx, rx) = unbounded();
    let consumer = consumer_builder(cluster, &group, &topic)
        .register_message_listener_concurrently(deliveries(tx))
        .build()
        .unwrap();
    consumer.start().unwrap();
    assert_eq!(collect(&rx, 10, WAIT).len(), 10);
    let client_id = consumer.client_id().expect("started");

    // Progress: every queue consumed to its end once the offsets are committed.
    let mut stats = None;
    assert!(
        wait_until(WAIT, || {
            stats = admin.examine_consume_stats(&group, Some(&topic)).ok();
            stats.as_ref().is_some_and(|s| {
                s.offset_table.len() == 2
                    && s.offset_table
                        .values()
                        .map(|o| o.broker_offset)
                        .sum::<i64>()
                        == 10
                    && s.diff_total() == 0
            })
        }),
        "progress never reached the end: {stats:?}"
    );
    let stats = stats.unwrap();
    for (mq, o) in &stats.offset_table {
        assert_eq!(mq.topic, topic);
        assert_eq!(o.consumer_offset, o.broker_offset);
        assert_eq!(o.lag(), 0);
    }
    // All the group's topics: ours is among them.
    let all = admin.examine_consume_stats(&group, None).unwrap();
    assert!(
        all.offset_table.keys().any(|mq| mq.topic == topic),
        "{all:?}"
    );

    // Who is connected.
    let ids = admin.consumer_id_list(&group).unwrap();
    assert_eq!(ids, vec![client_id.clone()]);
    let conn = admin.examine_consumer_connection_info(&group).unwrap();
    assert_eq!(conn.connections.len(), 1, "{conn:?}");
    assert_eq!(conn.connections[0].client_id, client_id);
    assert!(!conn.connections[0].client_addr.is_empty());
    assert!(conn
        .subscriptions
        .iter()
        .any(|s| s.topic == topic && s.expression == "*"));
    assert_eq!(conn.consume_type, "CONSUME_PASSIVELY");
    assert_eq!(conn.message_model, "CLUSTERING");
    assert_eq!(conn.consume_from_where, "CONSUME_FROM_FIRST_OFFSET");

    // Running info, asked of the consumer through the broker.
    let info = admin
        .get_consumer_running_info(&group, &client_id, false)
        .expect("running info");
    assert_eq!(
        info.properties.get("PROP_CONSUME_TYPE").map(String::as_str),
        Some("CONSUME_PASSIVELY")
    );
    assert!(info.subscriptions.iter().any(|s| s.topic == topic));
    let held: BTreeSet<i32> = info
        .mq_table
        .keys()
        .filter(|mq| mq.topic == topic)
        .map(|mq| mq.queue_id)
        .collect();
    assert_eq!(held, BTreeSet::from([0, 1]), "{info:?}");
    assert!(info.status_table.contains_key(&topic));

    // The consumer leaves; new messages are lag.
    consumer.shutdown(Duration::from_secs(10)).unwrap();
    for i in 0..5 {
        send_keyed(&p, &topic, "k", &format!("late{i}"));
    }
    assert!(
        wait_until(WAIT, || admin
            .examine_consume_stats(&group, Some(&topic))
            .is_ok_and(|s| s.diff_total() == 5)),
        "{:?}",
        admin.examine_consume_stats(&group, Some(&topic))
    );
    assert!(wait_until(WAIT, || admin
        .consumer_id_list(&group)
        .is_ok_and(|ids| ids.is_empty())));
    let e = admin.examine_consumer_connection_info(&group).unwrap_err();
    assert_eq!(
        e.response_code(),
        Some(ResponseCode::CONSUMER_NOT_ONLINE),
        "{e}"
    );
    let e = admin
        .get_consumer_running_info(&group, &client_id, false)
        .unwrap_err();
    assert!(e.to_string().contains(&client_id), "{e}");

    // A group nobody ever used.
    let nobody = unique("no_such_group");
    for e in [
        admin.examine_consume_stats(&nobody, None).unwrap_err(),
        admin.consumer_id_list(&nobody).unwrap_err(),
        admin.examine_consumer_connection_info(&nobody).unwrap_err(),
        admin
            .get_consumer_running_info(&nobody, "x@y", false)
            .unwrap_err(),
    ] {
        assert!(e.to_string().contains(&nobody), "{e}");
    }
    p.shutdown(Duration::from_secs(5)).unwrap();
    admin.shutdown();
}

#[test]
fn admin_shares_the_instance_and_leaves_it_running_for_others() {
    let cluster = Cluster::shared();
    let name = unique("shared_inst");
    let p = DefaultMQProducer::builder(unique("pg"))
        .namesrv_addr(cluster.namesrv_addr.clone())
        .instance_name(name.clone())
        .build()
        .unwrap();
    p.start().unwrap();
    let admin = DefaultMQAdminExt::builder()
        .namesrv_addr(cluster.namesrv_addr.clone())
        .instance_name(name.clone())
        .build()
        .unwrap();
    admin.start().unwrap();
    // A second admin of the same group on the same instance is refused.
    let twin = DefaultMQAdminExt::builder()
        .namesrv_addr(cluster.namesrv_addr.clone())
        .instance_name(name)
        .build()
        .unwrap();
    let e = twin.start().unwrap_err();
    assert!(e.to_string().contains("admin_ext_group"), "{e}");
    admin.shutdown();
    let topic = topic_with_queues(cluster, 1);
    let started = Instant::now();
    send_keyed(&p, &topic, "k", "after admin left");
    assert!(started.elapsed() < WAIT);
    p.shutdown(Duration::from_secs(5)).unwrap();
}

/// An admin client dropped without `shutdown()` leaves its client instance: another one of the
/// same group and instance name can start.
#[test]
fn a_dropped_admin_releases_its_group() {
    let name = unique("dropped_admin");
    let build = || {
        DefaultMQAdminExt::builder()
            .namesrv_addr("127.0.0.1:1")
            .instance_name(name.clone())
            .build()
            .unwrap()
    };
    let first = build();
    first.start().unwrap();
    drop(first);
    let second = build();
    second
        .start()
        .expect("the dropped admin's group was released");
    second.shutdown();
}
