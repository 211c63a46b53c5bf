//! Message trace end to end: sends N messages with keys, consumes them with a push consumer
//! whose message trace is on, then reads the trace topic back with a lite pull consumer and
//! prints each of this run's trace records, decoded from Java's trace format.
//!
//! ```text
//! cargo run --example message_trace -- --namesrv 127.0.0.1:9876 --topic T [--count 10]
//!     [--trace-topic RMQ_SYS_TRACE_TOPIC]
//! ```
//!
//! The last line printed is `traced N of N messages` (each with its SubBefore and SubAfter);
//! the exit code is non-zero if a record is missing.

use std::collections::{HashMap, HashSet};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rocketmq_sync::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, ConsumeFromWhere,
    DefaultLitePullConsumer, DefaultMQProducer, DefaultMQPushConsumer, Message, MessageExt,
    TraceContext, TraceType, RMQ_SYS_TRACE_TOPIC,
};

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("message_trace: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<bool, String> {
    let mut namesrv = std::env::var("NAMESRV_ADDR").unwrap_or_default();
    let mut topic = String::new();
    let mut trace_topic = RMQ_SYS_TRACE_TOPIC.to_owned();
    let mut count = 10usize;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--namesrv" => namesrv = value()?,
            "--topic" => topic = value()?,
            "--trace-topic" => trace_topic = value()?,
            "--count" => count = value()?.parse().map_err(|e| format!("--count: {e}"))?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if namesrv.is_empty() || topic.is_empty() {
        return Err("--namesrv (or NAMESRV_ADDR) and --topic are required".into());
    }
    let e = |e: rocketmq_sync::Error| e.to_string();

    let producer = DefaultMQProducer::builder("example_trace_producer")
        .namesrv_addr(namesrv.clone())
        .build()
        .map_err(e)?;
    producer.start().map_err(e)?;
    let mut ids = HashSet::new();
    for i in 0..count {
        let msg = Message::new(&topic, format!("traced {i}")).with_keys(format!("order-{i}"));
        ids.insert(producer.send(&msg).map_err(e)?.msg_id().to_owned());
    }
    producer.shutdown(Duration::from_secs(5)).map_err(e)?;

    let (tx, rx) = crossbeam_channel::unbounded();
    let consumer = DefaultMQPushConsumer::builder("example_trace_consumer")
        .namesrv_addr(namesrv.clone())
        .subscribe(topic.clone(), "*")
        .consume_from_where(ConsumeFromWhere::FirstOffset)
        .customized_trace_topic(trace_topic.clone())
        .register_message_listener_concurrently(
            move |msgs: &[MessageExt], _: &mut ConsumeConcurrentlyContext| {
                for m in msgs {
                    let _ = tx.send(m.msg_id().into_owned());
                }
                ConsumeConcurrentlyStatus::ConsumeSuccess
            },
        )
        .build()
        .map_err(e)?;
    consumer.start().map_err(e)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut consumed = HashSet::new();
    while !ids.is_subset(&consumed) {
        match rx.recv_deadline(deadline) {
            Ok(id) => {
                consumed.insert(id);
            }
            Err(_) => return Err("the messages were not all consumed within 60 s".into()),
        }
    }
    // Shutdown sends the trace records still queued.
    consumer.shutdown(Duration::from_secs(10)).map_err(e)?;

    // Read the trace topic back.
    let reader = DefaultLitePullConsumer::builder("example_trace_reader")
        .namesrv_addr(namesrv)
        .auto_commit(false)
        .build()
        .map_err(e)?;
    reader.start().map_err(e)?;
    let queues = reader.fetch_message_queues(&trace_topic).map_err(e)?;
    reader.assign(queues.clone()).map_err(e)?;
    for q in &queues {
        reader.seek_to_begin(q).map_err(e)?;
    }
    let mut records: HashMap<String, Vec<TraceType>> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let complete = |r: &HashMap<String, Vec<TraceType>>| {
        ids.iter().all(|id| r.get(id).is_some_and(|t| t.len() >= 2))
    };
    while !complete(&records) && Instant::now() < deadline {
        for m in reader.poll(Duration::from_millis(500)).map_err(e)? {
            let text = String::from_utf8_lossy(m.body());
            for r in TraceContext::decode_all(&text).map_err(e)? {
                let Some(bean) = r.trace_beans.first() else {
                    continue;
                };
                if !ids.contains(&bean.msg_id) {
                    continue;
                }
                println!(
                    "{:?} {} group={} request={} cost={}ms success={}",
                    r.trace_type, bean.msg_id, r.group_name, r.request_id, r.cost_time, r.success
                );
                records
                    .entry(bean.msg_id.clone())
                    .or_default()
                    .push(r.trace_type);
            }
        }
    }
    reader.shutdown(Duration::from_secs(10)).map_err(e)?;
    let traced = ids
        .iter()
        .filter(|id| records.get(*id).is_some_and(|t| t.len() >= 2))
        .count();
    println!("traced {traced} of {} messages", ids.len());
    Ok(traced == ids.len())
}
