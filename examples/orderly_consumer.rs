//! Consumes N messages with an orderly push consumer and checks each key's order.
//!
//! ```text
//! cargo run --release --example orderly_consumer -- --namesrv 127.0.0.1:9876 --topic T --group G --count 1000
//!     [--from-first] [--broadcast] [--threads MIN:MAX] [--batch N] [--tag EXPR] [--timeout-secs 300]
//! ```
//!
//! Feed it with `examples/producer.rs --keys K`, which gives every message the user properties
//! `ORDER_KEY` and `ORDER_SEQ`. An order violation is a message whose sequence number is not
//! above the last one seen for its key (it came late, or again); a message without those
//! properties is counted but not checked. Throughput goes to stderr; the last line printed is
//! `consumed N messages, V order violations`. The exit code is non-zero if N messages did not
//! arrive within `--timeout-secs`, or if any order violation was seen.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rocketmq_sync::MessageExt;
use rocketmq_sync::{
    ConsumeFromWhere, ConsumeOrderlyContext, ConsumeOrderlyStatus, DefaultMQPushConsumer,
    MessageModel,
};

struct Args {
    namesrv: String,
    topic: String,
    group: String,
    count: u64,
    from_first: bool,
    broadcast: bool,
    threads: (usize, usize),
    batch: usize,
    tag: String,
    timeout: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        namesrv: std::env::var("NAMESRV_ADDR").unwrap_or_default(),
        topic: String::new(),
        group: String::new(),
        count: 0,
        from_first: false,
        broadcast: false,
        threads: (20, 20),
        batch: 1,
        tag: "*".to_owned(),
        timeout: Duration::from_secs(300),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--namesrv" => a.namesrv = value()?,
            "--topic" => a.topic = value()?,
            "--group" => a.group = value()?,
            "--count" => a.count = value()?.parse().map_err(|e| format!("--count: {e}"))?,
            "--from-first" => a.from_first = true,
            "--broadcast" => a.broadcast = true,
            "--threads" => {
                let v = value()?;
                let (min, max) = v
                    .split_once(':')
                    .ok_or(format!("--threads must be MIN:MAX, not {v}"))?;
                a.threads = (
                    min.parse().map_err(|e| format!("--threads MIN: {e}"))?,
                    max.parse().map_err(|e| format!("--threads MAX: {e}"))?,
                );
            }
            "--batch" => a.batch = value()?.parse().map_err(|e| format!("--batch: {e}"))?,
            "--tag" => a.tag = value()?,
            "--timeout-secs" => {
                let secs: u64 = value()?
                    .parse()
                    .map_err(|e| format!("--timeout-secs: {e}"))?;
                a.timeout = Duration::from_secs(secs);
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.namesrv.is_empty() || a.topic.is_empty() || a.group.is_empty() || a.count == 0 {
        return Err(
            "--namesrv (or NAMESRV_ADDR), --topic, --group and --count are required".to_owned(),
        );
    }
    if a.threads.0 == 0 || a.threads.0 > a.threads.1 {
        return Err(format!(
            "--threads needs 1 <= MIN <= MAX, got {}:{}",
            a.threads.0, a.threads.1
        ));
    }
    Ok(a)
}

/// The last sequence number seen per key, split over shards so that consume threads (one per
/// queue at a time) rarely contend.
struct LastSeq {
    shards: Vec<Mutex<HashMap<u64, u64>>>,
}

const SHARDS: usize = 16;

struct Counters {
    target: u64,
    delivered: AtomicU64,
    violations: AtomicU64,
    first_at: OnceLock<Instant>,
    last: LastSeq,
    done: crossbeam_channel::Sender<Instant>,
}

fn order_of(m: &MessageExt) -> Option<(u64, u64)> {
    let key = m.property("ORDER_KEY")?.parse().ok()?;
    let seq = m.property("ORDER_SEQ")?.parse().ok()?;
    Some((key, seq))
}

impl Counters {
    fn on_messages(&self, msgs: &[MessageExt]) -> ConsumeOrderlyStatus {
        self.first_at.get_or_init(Instant::now);
        for m in msgs {
            let Some((key, seq)) = order_of(m) else {
                continue;
            };
            let mut shard = self.last.shards[(key as usize) % SHARDS].lock();
            match shard.insert(key, seq) {
                Some(prev) if seq <= prev => {
                    // Keep the highest seen, so one late message counts once.
                    shard.insert(key, prev);
                    let n = self.violations.fetch_add(1, Ordering::Relaxed);
                    if n < 10 {
                        eprintln!("order violation: key {key} seq {seq} after {prev}");
                    }
                }
                _ => {}
            }
        }
        let n = msgs.len() as u64;
        let before = self.delivered.fetch_add(n, Ordering::AcqRel);
        if before < self.target && before + n >= self.target {
            let _ = self.done.try_send(Instant::now());
        }
        ConsumeOrderlyStatus::Success
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            eprintln!(
                "usage: orderly_consumer --namesrv ADDR --topic T --group G --count N [--from-first] [--broadcast] [--threads MIN:MAX] [--batch N] [--tag EXPR] [--timeout-secs S]"
            );
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Ok(true) when `count` messages arrived in time, in order.
fn run(args: &Args) -> rocketmq_sync::Result<bool> {
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    let counters = Arc::new(Counters {
        target: args.count,
        delivered: AtomicU64::new(0),
        violations: AtomicU64::new(0),
        first_at: OnceLock::new(),
        last: LastSeq {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        },
        done: done_tx,
    });
    let listener = counters.clone();
    let consumer = DefaultMQPushConsumer::builder(args.group.clone())
        .namesrv_addr(args.namesrv.clone())
        .subscribe(args.topic.clone(), args.tag.clone())
        .consume_from_where(if args.from_first {
            ConsumeFromWhere::FirstOffset
        } else {
            ConsumeFromWhere::LastOffset
        })
        .message_model(if args.broadcast {
            MessageModel::Broadcasting
        } else {
            MessageModel::Clustering
        })
        .consume_threads(args.threads.0, args.threads.1)
        .consume_message_batch_max_size(args.batch)
        .register_message_listener_orderly(
            move |msgs: &[MessageExt], _ctx: &mut ConsumeOrderlyContext| listener.on_messages(msgs),
        )
        .build()?;

    let started = Instant::now();
    consumer.start()?;
    let finished = done_rx.recv_deadline(started + args.timeout).ok();
    consumer.shutdown(Duration::from_secs(10))?;

    let delivered = counters.delivered.load(Ordering::Acquire);
    let violations = counters.violations.load(Ordering::Relaxed);
    let Some(finished) = finished else {
        eprintln!(
            "timed out after {:?}: {delivered} of {} messages consumed from {} (group {})",
            args.timeout, args.count, args.topic, args.group
        );
        println!("consumed {delivered} messages, {violations} order violations");
        return Ok(false);
    };
    let elapsed = finished - started;
    let first = counters.first_at.get().copied().unwrap_or(started);
    let consuming = finished - first;
    eprintln!(
        "{} messages in {:.2?} since start ({:.0} msg/s); {:.2?} since the first message ({:.0} msg/s)",
        args.count,
        elapsed,
        args.count as f64 / elapsed.as_secs_f64(),
        consuming,
        args.count as f64 / consuming.as_secs_f64().max(1e-9),
    );
    println!("consumed {delivered} messages, {violations} order violations");
    Ok(violations == 0)
}
