//! Sends N messages of a given size.
//!
//! ```text
//! cargo run --release --example producer -- --namesrv 127.0.0.1:9876 --topic T --count 1000 --size 128
//!     [--group G] [--mode async|sync|oneway] [--window 1024] [--tag TagA] [--queues 4] [--keys K]
//! ```
//!
//! `--keys K` sends for orderly consumption (see `examples/orderly_consumer.rs`): message `i`
//! belongs to key `i % K` with sequence number `i / K` (user properties `ORDER_KEY` and
//! `ORDER_SEQ`, and the key as its `KEYS`), and goes through `SelectMessageQueueByHash` on
//! its key, so each key's messages stay on one queue in sequence. These sends are synchronous
//! whatever `--mode` says: a send waits for the previous one of its key.
//!
//! `--queues N` is the number of queues a topic gets when the first send auto-creates it
//! (the broker caps it by its `TBW102` template, 8 queues by default).
//!
//! The last line printed is `sent N messages`. The exit code is non-zero if any send failed.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rocketmq_sync::{DefaultMQProducer, Message, SelectMessageQueueByHash};

struct Args {
    namesrv: String,
    topic: String,
    count: u64,
    size: usize,
    group: String,
    mode: String,
    window: usize,
    tag: String,
    queues: i32,
    /// Orderly sends over this many keys; 0 is off.
    keys: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        namesrv: std::env::var("NAMESRV_ADDR").unwrap_or_default(),
        topic: String::new(),
        count: 0,
        size: 128,
        group: "example_producer_group".to_owned(),
        mode: "async".to_owned(),
        window: 1024,
        tag: "TagA".to_owned(),
        queues: 4,
        keys: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--namesrv" => a.namesrv = value()?,
            "--topic" => a.topic = value()?,
            "--count" => a.count = value()?.parse().map_err(|e| format!("--count: {e}"))?,
            "--size" => a.size = value()?.parse().map_err(|e| format!("--size: {e}"))?,
            "--group" => a.group = value()?,
            "--mode" => a.mode = value()?,
            "--window" => a.window = value()?.parse().map_err(|e| format!("--window: {e}"))?,
            "--tag" => a.tag = value()?,
            "--queues" => a.queues = value()?.parse().map_err(|e| format!("--queues: {e}"))?,
            "--keys" => a.keys = value()?.parse().map_err(|e| format!("--keys: {e}"))?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.namesrv.is_empty() || a.topic.is_empty() || a.count == 0 {
        return Err("--namesrv (or NAMESRV_ADDR), --topic and --count are required".to_owned());
    }
    if !matches!(a.mode.as_str(), "async" | "sync" | "oneway") {
        return Err(format!(
            "--mode must be async, sync or oneway, not {}",
            a.mode
        ));
    }
    if a.window == 0 {
        return Err("--window must be at least 1".to_owned());
    }
    if !(1..=1024).contains(&a.queues) {
        return Err(format!("--queues must be 1..=1024, not {}", a.queues));
    }
    Ok(a)
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            eprintln!(
                "usage: producer --namesrv ADDR --topic T --count N [--size BYTES] [--group G] [--mode async|sync|oneway] [--window W] [--tag TAG] [--queues N] [--keys K]"
            );
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(0) => {
            println!("sent {} messages", args.count);
            ExitCode::SUCCESS
        }
        Ok(failed) => {
            eprintln!("{failed} of {} sends failed", args.count);
            println!("sent {} messages", args.count - failed);
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> rocketmq_sync::Result<u64> {
    let producer = DefaultMQProducer::builder(args.group.clone())
        .namesrv_addr(args.namesrv.clone())
        .default_topic_queue_nums(args.queues)
        .build()?;
    producer.start()?;
    let body: Vec<u8> = (0..args.size).map(|i| b'a' + (i % 26) as u8).collect();
    let body = bytes::Bytes::from(body);
    let started = Instant::now();
    let failed = Arc::new(AtomicU64::new(0));

    match args.mode.as_str() {
        _ if args.keys > 0 => {
            for i in 0..args.count {
                let (key, seq) = (i % args.keys, i / args.keys);
                let mut msg = Message::new(args.topic.clone(), body.clone())
                    .with_tags(args.tag.clone())
                    .with_keys(format!("key-{key}"));
                msg.put_property("ORDER_KEY", key.to_string());
                msg.put_property("ORDER_SEQ", seq.to_string());
                if let Err(e) = producer.send_with_selector(&msg, &SelectMessageQueueByHash, &key) {
                    eprintln!("send {i} (key {key}, seq {seq}) failed: {e}");
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        "sync" | "oneway" => {
            for i in 0..args.count {
                let msg = Message::new(args.topic.clone(), body.clone())
                    .with_tags(args.tag.clone())
                    .with_keys(format!("key-{i}"));
                let r = if args.mode == "sync" {
                    producer.send(&msg).map(|_| ())
                } else {
                    producer.send_oneway(&msg)
                };
                if let Err(e) = r {
                    eprintln!("send {i} failed: {e}");
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        _ => {
            // Keep at most `window` sends in flight: each callback returns a permit. Sends the
            // broker refused with SYSTEM_BUSY (its flow control: not stored) are sent again
            // synchronously at the end.
            let busy = Arc::new(parking_lot::Mutex::new(Vec::new()));
            let (permit_tx, permit_rx) = crossbeam_channel::bounded::<()>(args.window);
            for _ in 0..args.window {
                permit_tx.send(()).expect("channel has room");
            }
            for i in 0..args.count {
                permit_rx.recv().expect("permits never disconnect");
                let msg = Message::new(args.topic.clone(), body.clone())
                    .with_tags(args.tag.clone())
                    .with_keys(format!("key-{i}"));
                let tx = permit_tx.clone();
                let failed_cb = failed.clone();
                let busy_cb = busy.clone();
                let sent = producer.send_async(&msg, move |r| {
                    match r {
                        Ok(_) => {}
                        Err(e) if e.is_system_busy() => busy_cb.lock().push(i),
                        Err(e) => {
                            eprintln!("send {i} failed: {e}");
                            failed_cb.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    let _ = tx.send(());
                });
                if let Err(e) = sent {
                    eprintln!("send {i} failed: {e}");
                    failed.fetch_add(1, Ordering::Relaxed);
                    let _ = permit_tx.send(());
                }
            }
            // Wait for every permit to come back: all callbacks have run.
            for _ in 0..args.window {
                permit_rx.recv().expect("permits never disconnect");
            }
            let busy = std::mem::take(&mut *busy.lock());
            if !busy.is_empty() {
                eprintln!(
                    "{} sends were refused as broker busy; sending them again",
                    busy.len()
                );
            }
            for i in busy {
                let msg = Message::new(args.topic.clone(), body.clone())
                    .with_tags(args.tag.clone())
                    .with_keys(format!("key-{i}"));
                let mut result = producer.send(&msg).map(|_| ());
                for _ in 0..4 {
                    match &result {
                        Err(e) if e.is_system_busy() => {
                            result = producer.send(&msg).map(|_| ());
                        }
                        _ => break,
                    }
                }
                if let Err(e) = result {
                    eprintln!("send {i} failed: {e}");
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{} messages of {} bytes in {:.2?} ({:.0} msg/s, mode {})",
        args.count,
        args.size,
        elapsed,
        args.count as f64 / elapsed.as_secs_f64(),
        if args.keys > 0 {
            "sync, by key"
        } else {
            args.mode.as_str()
        }
    );
    producer.shutdown(std::time::Duration::from_secs(5))?;
    Ok(failed.load(Ordering::Relaxed))
}
