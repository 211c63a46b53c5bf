//! Client identity and the public view of a consumer, against a real name server and broker:
//! default instance names (broadcasting restarts, two consumers of one group in one process) and
//! `queue_stats()`.

mod support;

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use rocketmq_sync::MessageExt;
use rocketmq_sync::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, ConsumeFromWhere, DefaultMQPushConsumer,
    MessageModel,
};
use support::broker::Cluster;
use support::client::*;
use support::consume::*;

/// Set in the child process of `a_restarted_broadcasting_consumer_misses_nothing`.
const CHILD_ENV: &str = "RMQ_TEST_BROADCAST_CHILD";

/// A broadcasting consumer that keeps every default the test does not need to set.
fn broadcasting(
    namesrv: &str,
    group: &str,
    topic: &str,
    dir: &std::path::Path,
) -> rocketmq_sync::DefaultMQPushConsumerBuilder {
    DefaultMQPushConsumer::builder(group)
        .namesrv_addr(namesrv)
        .message_model(MessageModel::Broadcasting)
        .offset_store_dir(dir)
        .subscribe(topic, "*")
}

/// Defect 2.2: the offsets file of a broadcasting consumer is found by its client id, so a
/// default instance name that changes with the process loses the place on restart. The restart
/// runs in a second process, as it does for a user.
#[test]
fn a_restarted_broadcasting_consumer_misses_nothing() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return; // The child runs `broadcasting_child` only.
    }
    support::broker::init_logger();
    let cluster = Cluster::shared();
    let topic = topic_with_queues(cluster, 4);
    let group = unique("bcast");
    let dir = std::env::temp_dir().join(unique("offsets"));
    let p = producer(&cluster.namesrv_addr, &unique("pg"));

    produce(&p, &topic, "before", 40, "T");
    let (tx, rx) = unbounded();
    let c = broadcasting(&cluster.namesrv_addr, &group, &topic, &dir)
        .consume_from_where(ConsumeFromWhere::FirstOffset)
        .register_message_listener_concurrently(deliveries(tx))
        .build()
        .unwrap();
    c.start().unwrap();
    let got: HashSet<String> = collect(&rx, 40, Duration::from_secs(60))
        .into_iter()
        .map(|d| d.body)
        .collect();
    assert_eq!(got.len(), 40, "the first run consumes the backlog");
    c.shutdown(Duration::from_secs(10)).unwrap();

    produce(&p, &topic, "between", 40, "T");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "broadcasting_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .env("RMQ_TEST_NAMESRV", &cluster.namesrv_addr)
        .env("RMQ_TEST_TOPIC", &topic)
        .env("RMQ_TEST_GROUP", &group)
        .env("RMQ_TEST_DIR", &dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("CHILD GOT 40 between, 0 before"),
        "the restarted consumer (a new process) did not get exactly what arrived while it was \
         down:\n{stdout}\n{stderr}"
    );
    p.shutdown(Duration::from_secs(10)).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The second run of `a_restarted_broadcasting_consumer_misses_nothing`, in its own process;
/// a no-op in a normal test run.
#[test]
fn broadcasting_child() {
    let Some(_) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let var = |k: &str| std::env::var(k).unwrap();
    let (namesrv, topic, group) = (
        var("RMQ_TEST_NAMESRV"),
        var("RMQ_TEST_TOPIC"),
        var("RMQ_TEST_GROUP"),
    );
    let dir = std::path::PathBuf::from(var("RMQ_TEST_DIR"));
    let (tx, rx) = unbounded();
    // Default consume-from-where (last offset): without its offsets file it would start at the
    // end of each queue and miss everything produced while it was down.
    let c = broadcasting(&namesrv, &group, &topic, &dir)
        .register_message_listener_concurrently(deliveries(tx))
        .build()
        .unwrap();
    c.start().unwrap();
    let got = collect(&rx, 40, Duration::from_secs(30));
    let between: HashSet<&str> = got
        .iter()
        .map(|d| d.body.as_str())
        .filter(|b| b.starts_with("between-"))
        .collect();
    let before = got.iter().filter(|d| d.body.starts_with("before-")).count();
    println!(
        "CHILD GOT {} between, {before} before (client id {:?})",
        between.len(),
        c.client_id()
    );
    c.shutdown(Duration::from_secs(10)).unwrap();
}

/// Two consumers of one group in one process, neither given an instance name: both start, each
/// with its own client id, and they split the queues.
#[test]
fn two_consumers_of_one_group_in_one_process_need_no_instance_names() {
    let cluster = Cluster::shared();
    let topic = topic_with_queues(cluster, 4);
    let group = unique("cg");
    let p = producer(&cluster.namesrv_addr, &unique("pg"));
    let (tx, rx) = unbounded();
    let mk = || {
        DefaultMQPushConsumer::builder(group.clone())
            .namesrv_addr(cluster.namesrv_addr.clone())
            .subscribe(topic.clone(), "*")
            .consume_from_where(ConsumeFromWhere::FirstOffset)
            .register_message_listener_concurrently(deliveries(tx.clone()))
            .build()
            .unwrap()
    };
    let a = mk();
    let b = mk();
    a.start().unwrap();
    b.start()
        .expect("a second consumer of the group in this process starts");
    assert_ne!(a.client_id(), b.client_id());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let qa: HashSet<_> = a
            .queue_stats()
            .into_iter()
            .map(|q| q.message_queue)
            .collect();
        let qb: HashSet<_> = b
            .queue_stats()
            .into_iter()
            .map(|q| q.message_queue)
            .collect();
        if qa.len() == 2 && qb.len() == 2 && qa.is_disjoint(&qb) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the queues were never split: {qa:?} {qb:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    produce(&p, &topic, "m", 100, "T");
    let got: HashSet<String> = collect(&rx, 100, Duration::from_secs(60))
        .into_iter()
        .map(|d| d.body)
        .collect();
    assert_eq!(got.len(), 100);
    a.shutdown(Duration::from_secs(10)).unwrap();
    b.shutdown(Duration::from_secs(10)).unwrap();
    p.shutdown(Duration::from_secs(10)).unwrap();
}

/// Two broadcasting consumers of one group in one process would share one offsets file: the
/// second is refused at start with the fix in the message.
#[test]
fn a_second_broadcasting_consumer_of_a_group_is_refused_with_the_fix() {
    let cluster = Cluster::shared();
    let topic = topic_with_queues(cluster, 1);
    let group = unique("bcast");
    let dir = std::env::temp_dir().join(unique("offsets"));
    let mk = || {
        broadcasting(&cluster.namesrv_addr, &group, &topic, &dir)
            .register_message_listener_concurrently(succeeding())
            .build()
            .unwrap()
    };
    let a = mk();
    a.start().unwrap();
    let b = mk();
    let e = b.start().unwrap_err().to_string();
    assert!(e.contains("instance_name"), "{e}");
    assert!(e.contains(&group), "{e}");
    // A distinct instance name is the fix the message names.
    let c = broadcasting(&cluster.namesrv_addr, &group, &topic, &dir)
        .instance_name(unique("b2"))
        .register_message_listener_concurrently(succeeding())
        .build()
        .unwrap();
    c.start().unwrap();
    a.shutdown(Duration::from_secs(10)).unwrap();
    c.shutdown(Duration::from_secs(10)).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `queue_stats()` is the view of the assignment: the group's `%RETRY%` queue, which a
/// clustering consumer also pulls, is not part of it.
#[test]
fn queue_stats_leaves_out_the_retry_queues() {
    let cluster = Cluster::shared();
    let topic = topic_with_queues(cluster, 4);
    let p = producer(&cluster.namesrv_addr, &unique("pg"));
    let (tx, rx) = unbounded();
    let c = consumer_builder(cluster, &unique("cg"), &topic)
        .register_message_listener_concurrently(
            move |_: &[MessageExt], ctx: &mut ConsumeConcurrentlyContext| {
                let mq = ctx.message_queue().clone();
                if mq.topic.starts_with("%RETRY%") {
                    let _ = tx.send(mq);
                    ConsumeConcurrentlyStatus::ConsumeSuccess
                } else {
                    ConsumeConcurrentlyStatus::ReconsumeLater
                }
            },
        )
        .build()
        .unwrap();
    c.start().unwrap();
    produce(&p, &topic, "r", 1, "T");
    // The message comes back through the retry queue, so the consumer holds that queue now.
    let retry_mq = rx
        .recv_timeout(Duration::from_secs(90))
        .expect("the message came back through the retry queue");
    let stats = c.queue_stats();
    assert!(
        stats
            .iter()
            .all(|s| s.message_queue != retry_mq && !s.message_queue.topic.starts_with("%RETRY%")),
        "{stats:?}"
    );
    assert_eq!(
        stats
            .iter()
            .filter(|s| s.message_queue.topic == topic)
            .count(),
        4,
        "{stats:?}"
    );
    c.shutdown(Duration::from_secs(10)).unwrap();
    p.shutdown(Duration::from_secs(10)).unwrap();
}

/// The same for producers: two producers of one group in one process, no instance names.
#[test]
fn two_producers_of_one_group_in_one_process_need_no_instance_names() {
    let cluster = Cluster::shared();
    let topic = topic_with_queues(cluster, 1);
    let group = unique("pg");
    let mk = || {
        let p = rocketmq_sync::DefaultMQProducer::builder(group.clone())
            .namesrv_addr(cluster.namesrv_addr.clone())
            .build()
            .unwrap();
        p.start().unwrap();
        p
    };
    let (a, b) = (mk(), mk());
    assert_ne!(a.client_id(), b.client_id());
    for p in [&a, &b] {
        p.send(&rocketmq_sync::Message::new(topic.clone(), "x"))
            .unwrap();
    }
    a.shutdown(Duration::from_secs(10)).unwrap();
    b.shutdown(Duration::from_secs(10)).unwrap();
}
