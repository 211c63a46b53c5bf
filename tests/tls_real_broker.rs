//! TLS against a real rocketmq-rust 1.0.0 cluster whose brokers accept only TLS
//! (`scripts/broker.sh start --tls`, the broker built with its `tls` feature). The test CA and
//! certificates are generated here with rcgen.
//!
//! The name server of such a cluster accepts TLS and plaintext (permissive): the brokers
//! register with it in plaintext, so it cannot require TLS. A client with TLS on uses TLS for
//! every connection, name server included, as in Java.

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use rocketmq_sync::remoting::protocol::{RemotingCommand, RequestCode, ResponseCode};
use rocketmq_sync::remoting::{RemotingClient, RemotingClientConfig};
use rocketmq_sync::{ClientConfig, DefaultMQProducer, Error, Message, TlsConfig};
use support::broker::{init_logger, Cluster, ClusterOptions, ClusterTls, GET_BROKER_RUNTIME_INFO};
use support::client::{create_topic_on_all_brokers, send_all_async, unique};
use support::consume::{collect, consumer_builder, deliveries};
use support::pki::TestPki;

/// The PKI files of this run, next to the clusters' directories. The brokers read them at
/// start and watch them afterwards, so they stay until the temp dir is cleaned.
fn pki_dir() -> PathBuf {
    std::env::temp_dir().join(format!("rocketmq-sync-tls-{}", std::process::id()))
}

/// The CA the TLS cluster's certificates come from.
fn cluster_pki() -> &'static TestPki {
    static PKI: OnceLock<TestPki> = OnceLock::new();
    PKI.get_or_init(|| TestPki::generate(&pki_dir(), "cluster"))
}

/// Another CA: its clients must not trust the cluster.
fn stranger_pki() -> &'static TestPki {
    static PKI: OnceLock<TestPki> = OnceLock::new();
    PKI.get_or_init(|| TestPki::generate(&pki_dir(), "stranger"))
}

/// One single-broker TLS cluster for this test binary; stopped by the script's watchdog when
/// the process exits.
fn tls_cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        init_logger();
        let pki = cluster_pki();
        Cluster::start_tls(
            ClusterOptions::default(),
            &ClusterTls {
                cert: pki.server_cert.clone(),
                key: pki.server_key.clone(),
                client_auth: None,
            },
        )
    })
}

fn trusting(pki: &TestPki) -> TlsConfig {
    TlsConfig::new().trust_cert_path(&pki.ca)
}

fn tls_client_config(tls: TlsConfig) -> ClientConfig {
    ClientConfig::builder()
        .use_tls(true)
        .tls_config(tls)
        .build()
}

fn raw_client(tls: Option<TlsConfig>) -> RemotingClient {
    RemotingClient::start(RemotingClientConfig {
        tls,
        ..RemotingClientConfig::default()
    })
    .expect("remoting client starts")
}

fn runtime_info(client: &RemotingClient, broker: &str) -> rocketmq_sync::Result<RemotingCommand> {
    client.invoke_sync(
        broker,
        RemotingCommand::request(RequestCode(GET_BROKER_RUNTIME_INFO)),
        Duration::from_secs(10),
    )
}

/// The error and everything it wraps, as one line.
fn chain(err: &Error) -> String {
    let mut out = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        out.push_str(" <- ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

fn tls_producer(cluster: &Cluster, tls: TlsConfig) -> DefaultMQProducer {
    let p = DefaultMQProducer::builder(unique("pg"))
        .client_config(tls_client_config(tls))
        .namesrv_addr(cluster.namesrv_addr.clone())
        .instance_name(unique("pinst"))
        .build()
        .expect("valid producer config");
    p.start().expect("producer starts");
    p
}

#[test]
fn produce_and_consume_1000_messages_over_tls_exactly_once() {
    let cluster = tls_cluster();
    let pki = cluster_pki();
    let topic = unique("TlsTopic");
    create_topic_on_all_brokers(&raw_client(Some(trusting(pki))), cluster, &topic, 4);

    let p = tls_producer(cluster, trusting(pki));
    const N: usize = 1000;
    let msgs: Vec<Message> = (0..N)
        .map(|i| Message::new(topic.as_str(), format!("tls-{i}")).with_tags("T"))
        .collect();
    send_all_async(&p, &msgs, 64);
    // Synchronous sends go over the same TLS connection.
    for i in 0..10 {
        p.send(&Message::new(topic.as_str(), format!("sync-{i}")))
            .expect("sync send over TLS");
    }

    let (tx, rx) = unbounded();
    let c = consumer_builder(cluster, &unique("cg"), &topic)
        .client_config(tls_client_config(trusting(pki)))
        .namesrv_addr(cluster.namesrv_addr.clone())
        .instance_name(unique("cinst"))
        .register_message_listener_concurrently(deliveries(tx))
        .build()
        .unwrap();
    c.start().unwrap();
    let got = collect(&rx, N + 10, Duration::from_secs(120));
    let mut count: HashMap<String, usize> = HashMap::new();
    for d in &got {
        *count.entry(d.body.clone()).or_default() += 1;
    }
    assert_eq!(count.len(), N + 10, "distinct messages received over TLS");
    assert!(count.values().all(|n| *n == 1), "a message arrived twice");
    assert!((0..N).all(|i| count.contains_key(&format!("tls-{i}"))));
    assert!(
        rx.recv_timeout(Duration::from_secs(2)).is_err(),
        "an extra delivery arrived"
    );
    c.shutdown(Duration::from_secs(10)).unwrap();
    p.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_certificate_from_an_untrusted_ca_is_refused_with_a_clear_error() {
    let cluster = tls_cluster();
    let broker = cluster.brokers[0].addr.clone();

    // The remoting client: the handshake fails on the calling thread, at once.
    let client = raw_client(Some(trusting(stranger_pki())));
    let started = Instant::now();
    let err = runtime_info(&client, &broker).unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    let msg = chain(&err);
    assert!(
        msg.contains("TLS handshake failed") && msg.contains("UnknownIssuer"),
        "{msg}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // Mozilla's roots (no CA bundle given) do not know the test CA either.
    let err = runtime_info(&raw_client(Some(TlsConfig::new())), &broker).unwrap_err();
    assert!(chain(&err).contains("UnknownIssuer"), "{}", chain(&err));

    // A producer: its first step, the route query to the name server, is refused the same way,
    // and the send says why instead of timing out.
    let p = tls_producer(cluster, trusting(stranger_pki()));
    let started = Instant::now();
    let err = p
        .send(&Message::new(unique("TlsTopic"), "x"))
        .expect_err("no trusted connection, no send");
    let msg = chain(&err);
    assert!(msg.contains("UnknownIssuer"), "{msg}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    p.shutdown(Duration::from_secs(5)).unwrap();

    // The same client settings with the cluster's CA connect.
    let ok = runtime_info(&raw_client(Some(trusting(cluster_pki()))), &broker).unwrap();
    assert_eq!(ok.response_code(), ResponseCode::SUCCESS);
}

#[test]
fn a_plaintext_client_gets_a_clear_error_from_a_tls_broker() {
    let cluster = tls_cluster();
    let broker = cluster.brokers[0].addr.clone();

    // The broker drops a plaintext connection at its first byte: the call fails at once, and
    // the reason says TLS may be what is missing.
    let client = raw_client(None);
    let started = Instant::now();
    let err = runtime_info(&client, &broker).unwrap_err();
    assert!(matches!(err, Error::ConnectionClosed { .. }), "{err:?}");
    assert!(chain(&err).contains("use_tls"), "{}", chain(&err));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // A plaintext producer gets the route from the (permissive) name server, then every send
    // attempt to the broker fails the same way; the error it returns carries that reason.
    let p = DefaultMQProducer::builder(unique("pg"))
        .namesrv_addr(cluster.namesrv_addr.clone())
        .instance_name(unique("pinst"))
        .build()
        .unwrap();
    p.start().unwrap();
    let topic = unique("TlsTopic");
    create_topic_on_all_brokers(
        &raw_client(Some(trusting(cluster_pki()))),
        cluster,
        &topic,
        4,
    );
    let started = Instant::now();
    let err = p
        .send(&Message::new(topic.as_str(), "x"))
        .expect_err("a plaintext send to a TLS broker fails");
    let msg = chain(&err);
    assert!(msg.contains("use_tls"), "{msg}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    p.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_broker_requiring_client_certificates_accepts_only_clients_with_one() {
    init_logger();
    let pki = TestPki::generate(&pki_dir(), "mtls");
    let cluster = Cluster::start_tls(
        ClusterOptions::default(),
        &ClusterTls {
            cert: pki.server_cert.clone(),
            key: pki.server_key.clone(),
            client_auth: Some((
                pki.ca.clone(),
                pki.client_cert.clone(),
                pki.client_key.clone(),
            )),
        },
    );
    let broker = cluster.brokers[0].addr.clone();
    let with_cert = trusting(&pki).client_cert(&pki.client_cert, &pki.client_key);

    let ok = runtime_info(&raw_client(Some(with_cert.clone())), &broker).unwrap();
    assert_eq!(ok.response_code(), ResponseCode::SUCCESS);

    // Without a certificate, TLS 1.3 lets the client finish its side of the handshake; the
    // broker's refusal comes as an alert, which fails the call at once.
    let started = Instant::now();
    let err = runtime_info(&raw_client(Some(trusting(&pki))), &broker).unwrap_err();
    let msg = chain(&err);
    assert!(msg.contains("CertificateRequired"), "{msg}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // A producer with the certificate sends (the name server does not ask for one).
    let p = tls_producer(&cluster, with_cert);
    let r = p
        .send(&Message::new(unique("MtlsTopic"), "x"))
        .expect("a send with a client certificate");
    assert_eq!(r.send_status(), rocketmq_sync::SendStatus::SendOk);
    p.shutdown(Duration::from_secs(5)).unwrap();
}
