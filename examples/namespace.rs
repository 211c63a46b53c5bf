//! Namespaces: a producer and a lite pull consumer in namespace `--namespace NS` use topic T
//! and group G by their plain names; at the broker they are `NS%T` and `NS%G`, invisible to
//! clients of other namespaces.
//!
//! ```text
//! cargo run --example namespace -- --namesrv 127.0.0.1:9876 --namespace NS --topic T [--count 10]
//! ```
//!
//! The last line printed is `namespace NS: sent N, polled N from T (NS%T at the broker)`; the
//! exit code is non-zero if a message is missing.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use rocketmq_sync::{ConsumeFromWhere, DefaultLitePullConsumer, DefaultMQProducer, Message};

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("namespace: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<bool, String> {
    let mut namesrv = std::env::var("NAMESRV_ADDR").unwrap_or_default();
    let (mut namespace, mut topic, mut count) = (String::new(), String::new(), 10usize);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--namesrv" => namesrv = value()?,
            "--namespace" => namespace = value()?,
            "--topic" => topic = value()?,
            "--count" => count = value()?.parse().map_err(|e| format!("--count: {e}"))?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if namesrv.is_empty() || namespace.is_empty() || topic.is_empty() {
        return Err("--namesrv (or NAMESRV_ADDR), --namespace and --topic are required".into());
    }
    let e = |e: rocketmq_sync::Error| e.to_string();
    let producer = DefaultMQProducer::builder("example_ns_producer")
        .namesrv_addr(namesrv.clone())
        .namespace(namespace.clone())
        .build()
        .map_err(e)?;
    producer.start().map_err(e)?;
    for i in 0..count {
        let r = producer
            .send(&Message::new(&topic, format!("message {i}")))
            .map_err(e)?;
        println!("sent {} to {}", r.msg_id(), r.message_queue());
    }
    producer.shutdown(Duration::from_secs(5)).map_err(e)?;

    let consumer = DefaultLitePullConsumer::builder("example_ns_group")
        .namesrv_addr(namesrv)
        .namespace(namespace.clone())
        .subscribe(topic.clone(), "*")
        .consume_from_where(ConsumeFromWhere::FirstOffset)
        .build()
        .map_err(e)?;
    consumer.start().map_err(e)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut polled = 0;
    while polled < count && Instant::now() < deadline {
        for m in consumer.poll(Duration::from_millis(500)).map_err(e)? {
            println!(
                "polled {} from {}",
                String::from_utf8_lossy(m.body()),
                m.topic()
            );
            polled += 1;
        }
    }
    consumer.shutdown(Duration::from_secs(10)).map_err(e)?;
    println!("namespace {namespace}: sent {count}, polled {polled} from {topic} ({namespace}%{topic} at the broker)");
    Ok(polled >= count)
}
