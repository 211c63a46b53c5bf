//! ProcessQueue benchmarks: the consume hot path (put a pulled batch, remove it once consumed)
//! and the pull thread's flow-control read (`max_span`) on a full queue.
//!
//! `ProcessQueue` is crate-private, so its source is compiled into this bench directly; the
//! module only needs `crate::common::util::now_millis`, which is crate-private too and is
//! provided below with the same meaning, `ProcessQueueInfo` (compiled from its own source file
//! too), and `MessageExt` and `MessageQueue` from the public API.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

#[allow(dead_code, unreachable_pub)]
#[path = "../src/consumer/process_queue.rs"]
mod process_queue;

#[allow(dead_code, unreachable_pub)]
#[path = "../src/remoting/protocol/process_queue_info.rs"]
mod process_queue_info;

mod remoting {
    pub(crate) mod protocol {
        pub(crate) mod body {
            pub(crate) use crate::process_queue_info::ProcessQueueInfo;
        }
    }
}

mod common {
    pub(crate) use rocketmq_sync::{MessageExt, MessageQueue};
    pub(crate) mod util {
        /// Milliseconds since the Unix epoch, as the crate's helper.
        pub(crate) fn now_millis() -> i64 {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0)
        }
    }
}

use process_queue::{ProcessQueue, QueuedMessage};

/// Stands in for `Arc<MessageExt>`: cloning is a reference-count increment, not an allocation.
#[derive(Clone)]
struct Msg(Arc<(i64, bytes::Bytes)>);

impl QueuedMessage for Msg {
    fn queue_offset(&self) -> i64 {
        self.0 .0
    }
    fn body_len(&self) -> usize {
        self.0 .1.len()
    }
}

fn new_queue() -> ProcessQueue<Msg> {
    ProcessQueue::new(common::MessageQueue::new("T", "broker-a", 0), 0)
}

fn batch(start: i64, n: i64) -> Vec<Msg> {
    let body = bytes::Bytes::from_static(&[0u8; 128]);
    (start..start + n)
        .map(|o| Msg(Arc::new((o, body.clone()))))
        .collect()
}

fn put_remove(c: &mut Criterion) {
    let mut g = c.benchmark_group("process_queue");
    g.throughput(Throughput::Elements(32));
    let msgs = batch(0, 32);

    let pq = new_queue();
    g.bench_function("put_remove_32_empty_queue", |b| {
        b.iter(|| {
            pq.put_messages(msgs.iter().cloned());
            black_box(
                pq.remove_messages(msgs.iter().map(|m| m.queue_offset()), |o| {
                    black_box(o);
                }),
            );
        })
    });

    // Steady state under load: 1000 older messages stay cached (e.g. a slow head).
    let pq = new_queue();
    pq.put_messages(batch(-1000, 1000));
    g.bench_function("put_remove_32_with_1000_cached", |b| {
        b.iter(|| {
            pq.put_messages(msgs.iter().cloned());
            black_box(
                pq.remove_messages(msgs.iter().map(|m| m.queue_offset()), |o| {
                    black_box(o);
                }),
            );
        })
    });
    g.finish();
}

fn max_span(c: &mut Criterion) {
    let pq = new_queue();
    pq.put_messages(batch(0, 1000));
    c.bench_function("process_queue/max_span_1000", |b| {
        b.iter(|| black_box(pq.max_span()))
    });
    c.bench_function("process_queue/flow_stats_1000", |b| {
        b.iter(|| black_box(pq.flow_stats()))
    });
}

criterion_group!(benches, put_remove, max_span);
criterion_main!(benches);
