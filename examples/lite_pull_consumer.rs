//! Consumes with a poll loop: a `DefaultLitePullConsumer` that subscribes (or, with `--assign`,
//! takes every queue of the topic itself), polls until N messages arrived, and commits after
//! each batch.
//!
//! ```text
//! cargo run --release --example lite_pull_consumer -- --namesrv 127.0.0.1:9876 --topic T --group G \
//!     --count 1000 [--from-first] [--assign] [--batch 32] [--timeout-secs 60]
//! ```
//!
//! The last line printed is `consumed N messages, D duplicates`. The exit code is non-zero if
//! fewer than N arrived before the timeout.

use std::collections::HashSet;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rocketmq_sync::{ConsumeFromWhere, DefaultLitePullConsumer};

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("lite_pull_consumer: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<bool, String> {
    let mut namesrv = std::env::var("NAMESRV_ADDR").unwrap_or_default();
    let (mut topic, mut group) = (String::new(), "example_lite_group".to_owned());
    let (mut count, mut batch, mut timeout) = (0u64, 32i32, 60u64);
    let (mut from_first, mut assign) = (false, false);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--namesrv" => namesrv = value()?,
            "--topic" => topic = value()?,
            "--group" => group = value()?,
            "--count" => count = value()?.parse().map_err(|e| format!("--count: {e}"))?,
            "--batch" => batch = value()?.parse().map_err(|e| format!("--batch: {e}"))?,
            "--timeout-secs" => {
                timeout = value()?
                    .parse()
                    .map_err(|e| format!("--timeout-secs: {e}"))?
            }
            "--from-first" => from_first = true,
            "--assign" => assign = true,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if namesrv.is_empty() || topic.is_empty() || count == 0 {
        return Err("--namesrv (or NAMESRV_ADDR), --topic and --count are required".into());
    }
    let mut builder = DefaultLitePullConsumer::builder(group)
        .namesrv_addr(namesrv)
        .pull_batch_size(batch)
        .auto_commit(false)
        .consume_from_where(if from_first {
            ConsumeFromWhere::FirstOffset
        } else {
            ConsumeFromWhere::LastOffset
        });
    if !assign {
        builder = builder.subscribe(topic.clone(), "*");
    }
    let consumer = builder.build().map_err(|e| e.to_string())?;
    consumer.start().map_err(|e| e.to_string())?;
    if assign {
        let queues = consumer
            .fetch_message_queues(&topic)
            .map_err(|e| e.to_string())?;
        consumer.assign(queues).map_err(|e| e.to_string())?;
    }
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let began = Instant::now();
    let (mut seen, mut total, mut duplicates) = (HashSet::new(), 0u64, 0u64);
    while total < count && Instant::now() < deadline {
        let msgs = consumer
            .poll(Duration::from_millis(500))
            .map_err(|e| e.to_string())?;
        for m in &msgs {
            if !seen.insert(m.msg_id().into_owned()) {
                duplicates += 1;
            }
        }
        total += msgs.len() as u64;
        if !msgs.is_empty() {
            consumer.commit_sync().map_err(|e| e.to_string())?;
        }
    }
    let secs = began.elapsed().as_secs_f64();
    eprintln!(
        "{total} messages in {secs:.2} s ({:.0} msg/s)",
        total as f64 / secs.max(1e-9)
    );
    consumer
        .shutdown(Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    println!("consumed {total} messages, {duplicates} duplicates");
    Ok(total >= count)
}
