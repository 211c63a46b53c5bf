//! Consumes N messages with a push consumer and counts duplicates.
//!
//! ```text
//! cargo run --release --example push_consumer -- --namesrv 127.0.0.1:9876 --topic T --group G --count 1000
//!     [--from-first] [--broadcast] [--threads MIN:MAX] [--batch N] [--tag EXPR] [--timeout-secs 300]
//! ```
//!
//! It stops once N messages have been delivered to the listener. A duplicate is a delivery
//! whose msgId was seen before. Throughput goes to stderr; the last line printed is
//! `consumed N messages, D duplicates`. The exit code is non-zero if N messages did not
//! arrive within `--timeout-secs`.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rocketmq_sync::MessageExt;
use rocketmq_sync::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, ConsumeFromWhere, DefaultMQPushConsumer,
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
        // Java's consumeThreadMin / consumeThreadMax.
        threads: (20, 20),
        // Java's consumeMessageBatchMaxSize.
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

/// The msgIds seen so far, split over shards so that consume threads rarely contend.
struct SeenIds {
    shards: Vec<Mutex<HashSet<u128>>>,
}

const SHARDS: usize = 16;

impl SeenIds {
    fn with_capacity(n: u64) -> Self {
        let per_shard = (n as usize / SHARDS) * 5 / 4 + 16;
        SeenIds {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashSet::with_capacity(per_shard)))
                .collect(),
        }
    }

    /// Records `id`; true if it was new.
    fn insert(&self, id: &str) -> bool {
        let key = id_key(id);
        self.shards[(key as usize) % SHARDS].lock().insert(key)
    }
}

/// A msgId as a u128 without allocating: the 32 hex digits of an IPv4 `UNIQ_KEY` or offset
/// id fit exactly; anything else (IPv6 ids) is hashed, which is good enough for counting.
fn id_key(id: &str) -> u128 {
    if id.len() == 32 {
        if let Ok(v) = u128::from_str_radix(id, 16) {
            return v;
        }
    }
    let mut h = DefaultHasher::new();
    id.hash(&mut h);
    let lo = h.finish();
    id.len().hash(&mut h);
    (u128::from(h.finish()) << 64) | u128::from(lo)
}

struct Counters {
    target: u64,
    delivered: AtomicU64,
    duplicates: AtomicU64,
    first_at: OnceLock<Instant>,
    seen: SeenIds,
    done: crossbeam_channel::Sender<Instant>,
}

impl Counters {
    fn on_messages(&self, msgs: &[MessageExt]) -> ConsumeConcurrentlyStatus {
        self.first_at.get_or_init(Instant::now);
        for m in msgs {
            if !self.seen.insert(&m.msg_id()) {
                self.duplicates.fetch_add(1, Ordering::Relaxed);
            }
        }
        let n = msgs.len() as u64;
        let before = self.delivered.fetch_add(n, Ordering::AcqRel);
        if before < self.target && before + n >= self.target {
            // Exactly one call crosses the target; the channel has room for it.
            let _ = self.done.try_send(Instant::now());
        }
        ConsumeConcurrentlyStatus::ConsumeSuccess
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            eprintln!(
                "usage: push_consumer --namesrv ADDR --topic T --group G --count N [--from-first] [--broadcast] [--threads MIN:MAX] [--batch N] [--tag EXPR] [--timeout-secs S]"
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

/// Ok(true) when `count` messages arrived in time.
fn run(args: &Args) -> rocketmq_sync::Result<bool> {
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    let counters = Arc::new(Counters {
        target: args.count,
        delivered: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
        first_at: OnceLock::new(),
        seen: SeenIds::with_capacity(args.count),
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
        .register_message_listener_concurrently(
            move |msgs: &[MessageExt], _ctx: &mut ConsumeConcurrentlyContext| {
                listener.on_messages(msgs)
            },
        )
        .build()?;

    let started = Instant::now();
    consumer.start()?;
    let finished = done_rx.recv_deadline(started + args.timeout).ok();
    let pool_size = consumer.consume_pool_size();
    consumer.shutdown(Duration::from_secs(10))?;

    let delivered = counters.delivered.load(Ordering::Acquire);
    let duplicates = counters.duplicates.load(Ordering::Relaxed);
    let Some(finished) = finished else {
        eprintln!(
            "timed out after {:?}: {delivered} of {} messages consumed from {} (group {})",
            args.timeout, args.count, args.topic, args.group
        );
        println!("consumed {delivered} messages, {duplicates} duplicates");
        return Ok(false);
    };
    let elapsed = finished - started;
    let first = counters.first_at.get().copied().unwrap_or(started);
    let consuming = finished - first;
    eprintln!(
        "{} messages in {:.2?} since start ({:.0} msg/s); {:.2?} since the first message ({:.0} msg/s); consume pool {} threads",
        args.count,
        elapsed,
        args.count as f64 / elapsed.as_secs_f64(),
        consuming,
        args.count as f64 / consuming.as_secs_f64().max(1e-9),
        pool_size,
    );
    println!("consumed {delivered} messages, {duplicates} duplicates");
    Ok(true)
}
