//! ProcessQueue benchmarks: the consume hot path at 1k and 100k cached messages, and the pull
//! thread's flow-control reads on a full queue.
//!
//! - `put_32`: a pulled batch of 32 put at the tail of a queue holding N messages (the pull
//!   callback).
//! - `take_32`: the orderly path's `take_messages` of 32 from the head (an orderly consume
//!   request).
//! - `remove_32`: the concurrent path's `remove_messages` of a consumed batch of 32 from the head,
//!   with the commit offset worked out.
//!
//! Each runs on a sliding window, as a consumer that keeps up sees it: the batch goes in at the
//! tail and the oldest batch leaves at the head, so the queue holds N messages throughout. Only
//! the named step is timed (one `Instant` pair per batch of 32, a few ns per message); the
//! other steps that keep the window at N run untimed. Throughput is per message.
//!
//! The messages are real `MessageExt`s decoded from a pull body, as the pull callback caches
//! them: cloning one (as `take_messages` does) costs reference-count increments on the frame,
//! not an allocation. The group `process_queue_arc` runs the same steps on `Arc<MessageExt>`,
//! to show what holding a few-hundred-byte value in the B-tree costs against a pointer (the
//! `Arc`'s allocation is left out: it would come with the decoding).
//!
//! `ProcessQueue` is crate-private, so its source is compiled into this bench directly; the
//! module only needs `crate::common::util::now_millis`, which is crate-private too and is
//! provided below with the same meaning, `ProcessQueueInfo` (compiled from its own source file
//! too), `MessageExt` and `MessageQueue` from the public API, and the `QueuedMessage` impl for
//! `MessageExt`, which lives in the crate's pull module and is repeated below.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rocketmq_sync::codec::MessageDecoder;
use rocketmq_sync::{Message, MessageConst, MessageExt};

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

/// As the crate's own impl (src/consumer/pull.rs). The pull's `MAX_OFFSET` is left out: the
/// bench cannot build the crate-private value that carries it, and it only feeds `msg_acc_cnt`.
impl QueuedMessage for MessageExt {
    fn queue_offset(&self) -> i64 {
        MessageExt::queue_offset(self)
    }
    fn body_len(&self) -> usize {
        self.body().len()
    }
}

/// A pulled batch's size: the consumer's default `pullBatchSize`.
const BATCH: i64 = 32;

/// Cache sizes: 1k is the default per-queue flow-control threshold; 100k is a slow listener
/// with the threshold raised (or a queue with a backlog of small messages).
const CACHED: [i64; 2] = [1_000, 100_000];

/// 32 messages with 128-byte bodies, decoded from one pull body as the pull callback gets them.
fn template() -> Vec<MessageExt> {
    let mut body = BytesMut::new();
    for i in 0..BATCH {
        let msg = Message::new("TopicTest", vec![b'x'; 128])
            .with_tags("TagA")
            .with_keys(format!("key-{i}"));
        let mut m = MessageExt::from_message(&msg);
        m.put_property(
            MessageConst::PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX,
            format!("7F0000010000000000000000000{i:05X}"),
        );
        m.set_queue_offset(i);
        m.set_store_host("127.0.0.1:10911".parse().unwrap());
        m.set_born_host("127.0.0.1:50000".parse().unwrap());
        body.extend_from_slice(&MessageDecoder::encode(&m, false).unwrap());
    }
    MessageDecoder::decodes(Bytes::from(body))
}

/// How the queue holds a message: the consumer's `MessageExt` by value, or behind an `Arc`
/// (for comparison: one pointer to move in the B-tree, one reference count to touch on a
/// clone, against a value of a few hundred bytes with several reference counts).
trait Held: QueuedMessage {
    fn hold(m: MessageExt) -> Self;
}

impl Held for MessageExt {
    fn hold(m: MessageExt) -> Self {
        m
    }
}

impl QueuedMessage for Arc<MessageExt> {
    fn queue_offset(&self) -> i64 {
        MessageExt::queue_offset(self)
    }
    fn body_len(&self) -> usize {
        self.body().len()
    }
}

impl Held for Arc<MessageExt> {
    fn hold(m: MessageExt) -> Self {
        Arc::new(m)
    }
}

/// The batch at queue offsets `start..start + BATCH`, sharing `template`'s frame.
fn batch_at<M: Held>(template: &[MessageExt], start: i64) -> Vec<M> {
    template
        .iter()
        .zip(start..)
        .map(|(m, offset)| {
            let mut m = m.clone();
            m.set_queue_offset(offset);
            M::hold(m)
        })
        .collect()
}

fn new_queue<M: Held>() -> ProcessQueue<M> {
    ProcessQueue::new(common::MessageQueue::new("T", "broker-a", 0), 0)
}

/// A queue holding offsets `0..n`, and the template its messages share.
fn filled<M: Held>(template: &[MessageExt], n: i64) -> ProcessQueue<M> {
    let pq = new_queue();
    for start in (0..n).step_by(BATCH as usize) {
        pq.put_messages(
            batch_at::<M>(template, start)
                .into_iter()
                .take((n - start) as usize),
        );
    }
    pq
}

/// The window `head..tail` of cached offsets, moved one batch at a time.
struct Window {
    head: i64,
    tail: i64,
}

impl Window {
    fn of(n: i64) -> Self {
        Window { head: 0, tail: n }
    }

    fn head_batch(&self) -> std::ops::Range<i64> {
        self.head..self.head + BATCH
    }
}

fn hot_path(c: &mut Criterion) {
    hot_path_of::<MessageExt>(c, "process_queue");
    hot_path_of::<Arc<MessageExt>>(c, "process_queue_arc");
}

fn hot_path_of<M: Held>(c: &mut Criterion, group: &str) {
    let template = template();
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(BATCH as u64));

    // The empty queue: a batch put and consumed at once (a listener that keeps up).
    let msgs = batch_at::<M>(&template, 0);
    let pq = new_queue::<M>();
    g.bench_function("put_remove_32_empty_queue", |b| {
        b.iter(|| {
            pq.put_messages(msgs.iter().cloned());
            black_box(pq.remove_messages(msgs.iter().map(M::queue_offset), |o| {
                black_box(o);
            }));
        })
    });

    for n in CACHED {
        let pq = filled::<M>(&template, n);
        let mut w = Window::of(n);
        g.bench_with_input(BenchmarkId::new("put_32", n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let batch = batch_at::<M>(&template, w.tail);
                    let begin = Instant::now();
                    pq.put_messages(black_box(batch));
                    spent += begin.elapsed();
                    w.tail += BATCH;
                    pq.remove_messages(w.head_batch(), |_| {});
                    w.head += BATCH;
                }
                spent
            })
        });
        assert_eq!(pq.msg_count(), n, "the window kept its size");

        let mut w = Window::of(n);
        let pq = filled::<M>(&template, n);
        let mut taken = Vec::with_capacity(BATCH as usize);
        g.bench_with_input(BenchmarkId::new("take_32", n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let begin = Instant::now();
                    black_box(pq.take_messages(BATCH as usize, &mut taken));
                    spent += begin.elapsed();
                    // The orderly request's commit, then the next pulled batch.
                    pq.commit(|_| {});
                    pq.put_messages(batch_at::<M>(&template, w.tail));
                    w.tail += BATCH;
                }
                spent
            })
        });
        assert_eq!(pq.msg_count(), n, "the window kept its size");

        let mut w = Window::of(n);
        let pq = filled::<M>(&template, n);
        g.bench_with_input(BenchmarkId::new("remove_32", n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let begin = Instant::now();
                    black_box(pq.remove_messages(w.head_batch(), |o| {
                        black_box(o);
                    }));
                    spent += begin.elapsed();
                    w.head += BATCH;
                    pq.put_messages(batch_at::<M>(&template, w.tail));
                    w.tail += BATCH;
                }
                spent
            })
        });
        assert_eq!(pq.msg_count(), n, "the window kept its size");
    }
    g.finish();
}

fn flow_stats(c: &mut Criterion) {
    let template = template();
    let pq = filled::<MessageExt>(&template, 1000);
    c.bench_function("process_queue/max_span_1000", |b| {
        b.iter(|| black_box(pq.max_span()))
    });
    c.bench_function("process_queue/flow_stats_1000", |b| {
        b.iter(|| black_box(pq.flow_stats()))
    });
}

criterion_group!(benches, hot_path, flow_stats);
criterion_main!(benches);
