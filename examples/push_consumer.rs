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

mod common;

use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rocketmq_sync::MessageExt;
use rocketmq_sync::{ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus};

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
    common::main("push_consumer", run)
}

/// Ok(true) when `count` messages arrived in time.
fn run(args: &common::Args) -> rocketmq_sync::Result<bool> {
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
    let consumer = args
        .consumer_builder()
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
        args.report_timeout(delivered);
        println!("consumed {delivered} messages, {duplicates} duplicates");
        return Ok(false);
    };
    args.report(
        started,
        counters.first_at.get().copied(),
        finished,
        &format!("; consume pool {pool_size} threads"),
    );
    println!("consumed {delivered} messages, {duplicates} duplicates");
    Ok(true)
}
