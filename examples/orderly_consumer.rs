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

mod common;

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rocketmq_sync::MessageExt;
use rocketmq_sync::{ConsumeOrderlyContext, ConsumeOrderlyStatus};

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
    common::main("orderly_consumer", run)
}

/// Ok(true) when `count` messages arrived in time, in order.
fn run(args: &common::Args) -> rocketmq_sync::Result<bool> {
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
    let consumer = args
        .consumer_builder()
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
        args.report_timeout(delivered);
        println!("consumed {delivered} messages, {violations} order violations");
        return Ok(false);
    };
    args.report(started, counters.first_at.get().copied(), finished, "");
    println!("consumed {delivered} messages, {violations} order violations");
    Ok(violations == 0)
}
