//! ACL against a real cluster whose name server and broker require signed requests
//! (rocketmq-rust 1.0.0 with rocketmq-auth, started by `scripts/broker.sh start --acl`): the
//! right key produces and consumes, a wrong secret or a missing permission is refused with a
//! clear `NO_PERMISSION` error at once, and no secret reaches the logs or `Debug` output.
//!
//! Every log record of this test binary, at every level, goes to an in-memory logger that the
//! tests search.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use parking_lot::Mutex;
use rocketmq_sync::remoting::protocol::{RemotingCommand, RequestCode, ResponseCode};
use rocketmq_sync::remoting::RemotingClient;
use rocketmq_sync::{
    AclClientRPCHook, ClientConfig, DefaultMQProducer, Message, RPCHook, SessionCredentials,
};
use support::broker::{
    wait_until, Cluster, ClusterOptions, GET_BROKER_CLUSTER_INFO, GET_BROKER_RUNTIME_INFO,
};
use support::client::{create_topic_on_all_brokers, raw_client, send_all_async};
use support::consume::{collect, consumer_builder, deliveries, Delivery};

/// May publish and subscribe to the test topic, and consume as the test group.
const USER: &str = "acl-user";
const USER_SECRET: &str = "acl-user-secret-4f9c2e7a";
/// May only subscribe to the test topic.
const READER: &str = "acl-reader";
const READER_SECRET: &str = "acl-reader-secret-81d3b6c0";
/// A secret no account has.
const WRONG_SECRET: &str = "acl-wrong-secret-5a7e19d2";
const SECRETS: [&str; 3] = [USER_SECRET, READER_SECRET, WRONG_SECRET];

const TIMEOUT: Duration = Duration::from_secs(10);

/// Keeps every log record of the process.
struct CaptureLogger {
    lines: Mutex<Vec<String>>,
}

impl log::Log for CaptureLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        self.lines.lock().push(format!(
            "{} {} {}",
            record.level(),
            record.target(),
            record.args()
        ));
    }

    fn flush(&self) {}
}

fn logs() -> &'static CaptureLogger {
    static LOGGER: OnceLock<&'static CaptureLogger> = OnceLock::new();
    LOGGER.get_or_init(|| {
        let logger: &'static CaptureLogger = Box::leak(Box::new(CaptureLogger {
            lines: Mutex::new(Vec::new()),
        }));
        log::set_logger(logger).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Trace);
        logger
    })
}

/// Panics if any secret appears in a log record so far.
fn assert_no_secret_in_logs() {
    let admin = admin_secret();
    let secrets: Vec<&str> = SECRETS.iter().copied().chain(admin.as_deref()).collect();
    let lines = logs().lines.lock();
    assert!(!lines.is_empty(), "the logger captured nothing");
    for line in lines.iter() {
        for secret in &secrets {
            assert!(!line.contains(secret), "a secret reached the log: {line}");
        }
    }
}

/// Whether a log record so far contains every one of `needles`.
fn logged(needles: &[&str]) -> bool {
    logs()
        .lines
        .lock()
        .iter()
        .any(|l| needles.iter().all(|n| l.contains(n)))
}

/// The super user's secret, from cluster.env (`Cluster::acl_admin` does not show it).
fn admin_secret() -> Option<String> {
    let dir = cluster().dir.as_ref()?;
    let env = std::fs::read_to_string(dir.join("cluster.env")).ok()?;
    env.lines()
        .find_map(|l| l.strip_prefix("ACL_ADMIN_SECRET_KEY="))
        .map(str::to_owned)
}

/// The names the ACL file grants (literal names: one set per test process).
struct Names {
    topic: String,
    group: String,
    producer_group: String,
}

fn names() -> &'static Names {
    static NAMES: OnceLock<Names> = OnceLock::new();
    NAMES.get_or_init(|| {
        let pid = std::process::id();
        Names {
            topic: format!("AclTopic_{pid}"),
            group: format!("AclGroup_{pid}"),
            producer_group: format!("AclProducerGroup_{pid}"),
        }
    })
}

/// One ACL cluster for the whole test binary, with the test topic created (by the super user)
/// with 4 queues.
fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        logs();
        let n = names();
        let acl = format!(
            "accounts:
  - accessKey: {USER}
    secretKey: {USER_SECRET}
    admin: false
    defaultTopicPerm: DENY
    defaultGroupPerm: DENY
    topicPerms:
      - {topic}=PUB|SUB
    groupPerms:
      - {group}=SUB
      - {producer_group}=PUB
  - accessKey: {READER}
    secretKey: {READER_SECRET}
    admin: false
    defaultTopicPerm: DENY
    defaultGroupPerm: DENY
    topicPerms:
      - {topic}=SUB
    groupPerms:
      - {producer_group}=PUB
",
            topic = n.topic,
            group = n.group,
            producer_group = n.producer_group,
        );
        let cluster =
            Cluster::start_with_acl(ClusterOptions::default(), &acl).for_the_whole_process();
        let admin = raw_client();
        admin.register_rpc_hook(hook(cluster.acl_admin.clone().expect("ACL cluster")));
        create_topic_on_all_brokers(&admin, &cluster, &n.topic, 4);
        admin.shutdown();
        cluster
    })
}

fn hook(credentials: SessionCredentials) -> Arc<dyn RPCHook> {
    Arc::new(AclClientRPCHook::new(credentials))
}

fn producer(access_key: &str, secret: &str, instance: &str) -> DefaultMQProducer {
    let p = DefaultMQProducer::builder(names().producer_group.clone())
        .namesrv_addr(cluster().namesrv_addr.clone())
        .instance_name(instance)
        .rpc_hook(hook(SessionCredentials::new(access_key, secret)))
        .send_msg_timeout(Duration::from_secs(30))
        .build()
        .expect("valid producer");
    p.start().expect("producer starts");
    p
}

#[test]
fn unsigned_requests_are_refused_by_the_name_server_and_the_broker() {
    let c = cluster();
    let client = raw_client();
    for (addr, code) in [
        (c.namesrv_addr.as_str(), GET_BROKER_CLUSTER_INFO),
        (c.brokers[0].addr.as_str(), GET_BROKER_RUNTIME_INFO),
    ] {
        let resp = client
            .invoke_sync(addr, RemotingCommand::request(RequestCode(code)), TIMEOUT)
            .unwrap();
        assert_eq!(resp.response_code(), ResponseCode::NO_PERMISSION, "{addr}");
    }
    // Signed by the super user, both answer.
    client.register_rpc_hook(hook(c.acl_admin.clone().unwrap()));
    for (addr, code) in [
        (c.namesrv_addr.as_str(), GET_BROKER_CLUSTER_INFO),
        (c.brokers[0].addr.as_str(), GET_BROKER_RUNTIME_INFO),
    ] {
        let resp = client
            .invoke_sync(addr, RemotingCommand::request(RequestCode(code)), TIMEOUT)
            .unwrap();
        assert_eq!(resp.response_code(), ResponseCode::SUCCESS, "{addr}");
    }
    client.shutdown();
}

#[test]
fn the_right_key_produces_and_consumes_500_messages_exactly_once() {
    let c = cluster();
    let n = names();
    let p = producer(USER, USER_SECRET, "acl-producer");
    const N: usize = 500;
    let msgs: Vec<Message> = (0..N)
        .map(|i| Message::new(n.topic.as_str(), format!("acl-{i}")).with_tags("A"))
        .collect();
    // Sync and async sends, both signed.
    for m in &msgs[..50] {
        p.send(m).expect("signed sync send");
    }
    send_all_async(&p, &msgs[50..], 64);

    let (tx, rx) = unbounded();
    let consumer = consumer_builder(c, &n.group, &n.topic)
        .rpc_hook(hook(SessionCredentials::new(USER, USER_SECRET)))
        .register_message_listener_concurrently(deliveries(tx))
        .build()
        .unwrap();
    consumer.start().unwrap();
    // Counts this test's messages (another test sends one more to the topic).
    let mut count: HashMap<String, usize> = HashMap::new();
    let record = |count: &mut HashMap<String, usize>, got: Vec<Delivery>| {
        for d in got.into_iter().filter(|d| d.body.starts_with("acl-")) {
            *count.entry(d.body).or_default() += 1;
        }
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while count.len() < N && Instant::now() < deadline {
        record(&mut count, collect(&rx, 1, deadline - Instant::now()));
    }
    // Nothing is delivered twice: no extra delivery arrives once every message was seen.
    record(&mut count, collect(&rx, usize::MAX, Duration::from_secs(2)));
    assert_eq!(count.len(), N, "{} of {N} consumed", count.len());
    for i in 0..N {
        assert_eq!(count.get(&format!("acl-{i}")), Some(&1), "acl-{i}");
    }
    consumer.shutdown(TIMEOUT).unwrap();
    p.shutdown(TIMEOUT).unwrap();
    assert_no_secret_in_logs();
}

#[test]
fn a_wrong_secret_gets_no_permission_at_once_not_a_timeout() {
    let n = names();
    for (ak, sk, instance) in [
        (USER, WRONG_SECRET, "acl-wrong-secret"),
        ("acl-nobody", WRONG_SECRET, "acl-unknown-key"),
    ] {
        // The name server refuses the route query; the send says so.
        let p = producer(ak, sk, instance);
        let started = Instant::now();
        let err = p
            .send(&Message::new(n.topic.as_str(), "never stored"))
            .unwrap_err();
        let took = started.elapsed();
        assert!(took < Duration::from_secs(10), "{ak}: took {took:?}: {err}");
        assert!(err.is_no_permission(), "{ak}: {err:?}");
        assert!(!err.is_timeout(), "{ak}: {err}");
        let text = err.to_string();
        assert!(text.contains("NO_PERMISSION"), "{ak}: {text}");
        assert!(!text.contains(sk), "{text}");
        p.shutdown(TIMEOUT).unwrap();
    }

    // The broker refuses a wrongly signed request the same way.
    let c = cluster();
    let client = raw_client();
    client.register_rpc_hook(hook(SessionCredentials::new(USER, WRONG_SECRET)));
    let started = Instant::now();
    let resp = client
        .invoke_sync(
            &c.brokers[0].addr,
            RemotingCommand::request(RequestCode(GET_BROKER_RUNTIME_INFO)),
            TIMEOUT,
        )
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(resp.response_code(), ResponseCode::NO_PERMISSION);
    assert_eq!(
        resp.remark(),
        Some("Authentication credentials are invalid")
    );
    client.shutdown();
    assert_no_secret_in_logs();
}

#[test]
fn a_send_without_the_permission_is_refused_with_a_clear_error() {
    let n = names();
    // READER may look the route up (SUB) but not publish.
    let p = producer(READER, READER_SECRET, "acl-reader");
    let started = Instant::now();
    let err = p
        .send(&Message::new(n.topic.as_str(), "not allowed"))
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "{err}");
    assert!(err.is_no_permission(), "{err:?}");
    assert!(!err.is_timeout());
    let text = err.to_string();
    assert!(
        text.contains("NO_PERMISSION") && text.contains("Permission was denied"),
        "{text}"
    );
    // The async path reports the same.
    let (tx, rx) = unbounded();
    p.send_async(&Message::new(n.topic.as_str(), "not allowed"), move |r| {
        let _ = tx.send(r.map(|_| ()));
    })
    .unwrap();
    let err = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("callback ran")
        .unwrap_err();
    assert!(err.is_no_permission(), "{err:?}");
    p.shutdown(TIMEOUT).unwrap();
    assert_no_secret_in_logs();
}

#[test]
fn a_consumer_with_a_wrong_secret_consumes_nothing_and_logs_the_refusal() {
    let c = cluster();
    let n = names();
    // Something to consume, sent with the right key.
    let p = producer(USER, USER_SECRET, "acl-producer-for-wrong-consumer");
    p.send(&Message::new(n.topic.as_str(), "for nobody"))
        .expect("signed send");
    p.shutdown(TIMEOUT).unwrap();
    let (tx, rx) = unbounded();
    let consumer = consumer_builder(c, &n.group, &n.topic)
        .instance_name("acl-consumer-wrong")
        .rpc_hook(hook(SessionCredentials::new(USER, WRONG_SECRET)))
        .register_message_listener_concurrently(deliveries(tx))
        .build()
        .unwrap();
    // As in Java, starting does not fail: the name server refuses the route query, and that
    // is logged.
    consumer.start().unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || logged(&[
            "WARN",
            "NO_PERMISSION",
            &n.topic
        ])),
        "no refused route query of {} in the log",
        n.topic
    );
    assert!(rx.try_recv().is_err(), "a refused consumer consumed");
    consumer.shutdown(TIMEOUT).unwrap();
    assert_no_secret_in_logs();
}

#[test]
fn debug_output_shows_no_secret() {
    let creds = SessionCredentials::new(USER, USER_SECRET).with_security_token(WRONG_SECRET);
    let h = AclClientRPCHook::new(creds.clone());
    let config = ClientConfig::builder()
        .namesrv_addr("127.0.0.1:1")
        .rpc_hook(Arc::new(h.clone()))
        .build();
    let p = DefaultMQProducer::builder("acl_debug_pg")
        .client_config(config.clone())
        .build()
        .unwrap();
    let mut signed = RemotingCommand::request(RequestCode::SEND_MESSAGE_V2);
    h.do_before_request("127.0.0.1:1", &mut signed);
    let signature = signed.ext_fields().get("Signature").unwrap().to_owned();
    let client: RemotingClient = raw_client();
    client.register_rpc_hook(Arc::new(h.clone()));
    for text in [
        format!("{creds:?}"),
        format!("{h:?}"),
        format!("{h:#?}"),
        format!("{config:?}"),
        format!("{p:?}"),
        format!("{signed:?}"),
        format!("{client:?}"),
    ] {
        assert!(!text.contains(USER_SECRET), "{text}");
        assert!(!text.contains(WRONG_SECRET), "{text}");
        assert!(!text.contains(&signature), "{text}");
    }
    assert!(format!("{creds:?}").contains(USER));
    client.shutdown();
}
