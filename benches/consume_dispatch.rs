//! The consume pool's dispatch cost against a bare crossbeam channel.
//!
//! A consume request is handed from the thread that put a pulled batch into its `ProcessQueue`
//! (the pull callback) to a consume thread, which runs the listener over it and removes it from
//! the queue. Here the same request runs either
//! - on the crate's `ThreadPoolExecutor` (`pool_20`: the consumer's default 20 threads;
//!   `pool_1`: one thread, the same shape as the channel's), or
//! - on one worker thread fed by a bare crossbeam channel (`channel`),
//!
//! so the difference between them is what the pool's dispatch costs: its boxed task, its
//! counters, and which of its threads wakes.
//!
//! - `roundtrip_*`: one request submitted, then waited for: the hand-off and the wake-up of an
//!   idle consume thread, as with a consumer that keeps up.
//! - `burst_64_*`: 64 requests (over 8 queues) submitted back to back, then all waited for:
//!   the cost per request with a backlog, when workers find the next request without sleeping.
//!
//! Each runs with `empty` requests (nothing but the hand-off and the completion count) and
//! with `32_msgs` requests (a pulled batch of 32 messages of 128 bytes, see below). Throughput
//! is per request.
//!
//! # What runs
//!
//! The crate's `ConsumeMessageConcurrentlyService` cannot run without a whole push consumer
//! behind it, so the request is rebuilt here from the same parts: the submitter puts the batch
//! into the queue and counts the request in flight (`task_submitted`); the consume thread calls
//! a no-op listener once per message (the default `consumeMessageBatchMaxSize` of 1) under
//! `catch_unwind`, removes the batch from the queue under one lock and ends the request
//! (`task_done`). Left out: the service's per-request registration for the consume-timeout
//! sweep (one lock), the consume stats and the offset store update. The pool and the queue are
//! the crate's own sources, compiled in with `#[path]` (both are crate-private).
//!
//! Waiting for a request is a completion counter the bench thread parks on; the consume thread
//! unparks it only while it waits. It costs the same in both variants.

use std::hint::black_box;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use crossbeam_channel::{unbounded, Sender};
use rocketmq_sync::codec::MessageDecoder;
use rocketmq_sync::{Message, MessageExt};

// Its test modules come along under `cargo test`, without their #[test] functions.
#[allow(dead_code, unreachable_pub, unused_imports)]
#[path = "../src/executor/mod.rs"]
mod executor;

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

#[allow(dead_code)]
#[path = "support/done.rs"]
mod done;

use done::Done;
use executor::ThreadPoolExecutor;
use process_queue::{ProcessQueue, QueuedMessage};

/// As the crate's own impl (src/consumer/pull.rs), without the pull's `MAX_OFFSET`.
impl QueuedMessage for MessageExt {
    fn queue_offset(&self) -> i64 {
        MessageExt::queue_offset(self)
    }
    fn body_len(&self) -> usize {
        self.body().len()
    }
}

/// Messages per request: a pulled batch (`pullBatchSize`).
const BATCH: i64 = 32;
/// Queues the burst spreads its requests over.
const QUEUES: usize = 8;
/// Requests per burst.
const BURST: u64 = 64;

/// The listener: Java's `MessageListenerConcurrently` shape, doing nothing.
type Listener = Arc<dyn Fn(&[MessageExt]) -> bool + Send + Sync>;

/// One consume request: a pulled batch of one queue, or nothing at all (the hand-off alone).
struct Request {
    work: Option<Batch>,
    done: Arc<Done>,
}

/// A pulled batch, cached in its queue.
struct Batch {
    msgs: Vec<MessageExt>,
    pq: Arc<ProcessQueue<MessageExt>>,
    listener: Listener,
}

impl Request {
    /// The consume thread's part.
    fn run(self) {
        if let Some(Batch { msgs, pq, listener }) = self.work {
            let mut ok = 0usize;
            for one in msgs.chunks(1) {
                if let Ok(true) = catch_unwind(AssertUnwindSafe(|| listener(one))) {
                    ok += 1;
                }
            }
            assert_eq!(ok, msgs.len(), "the no-op listener consumed all");
            pq.remove_messages(msgs.iter().map(MessageExt::queue_offset), |o| {
                black_box(o);
            });
            pq.task_done();
        }
        self.done.add_one();
    }
}

/// How a request reaches a consume thread.
enum Dispatch {
    Pool(ThreadPoolExecutor),
    Channel {
        tx: Option<Sender<Request>>,
        worker: Option<JoinHandle<()>>,
    },
}

impl Dispatch {
    fn pool(threads: usize) -> Self {
        let pool = ThreadPoolExecutor::builder()
            .name("ConsumeMessageThread_bench")
            .core_threads(threads)
            .max_threads(threads)
            .keep_alive(Duration::from_secs(60))
            .thread_name(|n| format!("rmq-cons-{n}"))
            .build()
            .expect("pool settings are valid");
        Dispatch::Pool(pool)
    }

    fn channel() -> Self {
        let (tx, rx) = unbounded::<Request>();
        let worker = thread::Builder::new()
            .name("bench-chan".into())
            .spawn(move || {
                for req in rx {
                    req.run();
                }
            })
            .expect("spawn the channel's worker");
        Dispatch::Channel {
            tx: Some(tx),
            worker: Some(worker),
        }
    }

    fn submit(&self, req: Request) {
        match self {
            Dispatch::Pool(pool) => {
                if pool.execute(move || req.run()).is_err() {
                    panic!("the pool refused a request");
                }
            }
            Dispatch::Channel { tx, .. } => {
                if tx.as_ref().expect("open").send(req).is_err() {
                    panic!("the channel's worker is gone");
                }
            }
        }
    }
}

impl Drop for Dispatch {
    fn drop(&mut self) {
        match self {
            Dispatch::Pool(pool) => {
                let _ = pool.shutdown(Duration::from_secs(10));
            }
            Dispatch::Channel { tx, worker } => {
                tx.take();
                if let Some(w) = worker.take() {
                    let _ = w.join();
                }
            }
        }
    }
}

/// The submitting side: the queues, the next offset of each, and the batch they share.
struct Pulls {
    queues: Vec<Arc<ProcessQueue<MessageExt>>>,
    next: Vec<i64>,
    template: Vec<MessageExt>,
    listener: Listener,
    done: Arc<Done>,
}

impl Pulls {
    fn new(done: Arc<Done>) -> Self {
        let queues = (0..QUEUES)
            .map(|q| {
                Arc::new(ProcessQueue::new(
                    common::MessageQueue::new("T", "broker-a", q as i32),
                    0,
                ))
            })
            .collect();
        Pulls {
            queues,
            next: vec![0; QUEUES],
            template: template(),
            listener: Arc::new(|msgs: &[MessageExt]| black_box(msgs).len() <= 1),
            done,
        }
    }

    /// Hands on the next request: a batch of queue `q`, or an empty one when `empty`.
    fn submit(&mut self, q: usize, empty: bool, dispatch: &Dispatch) {
        if empty {
            dispatch.submit(Request {
                work: None,
                done: self.done.clone(),
            });
        } else {
            self.pulled(q, dispatch);
        }
    }

    /// The pull callback's part for the next batch of queue `q`: the batch is cached and its
    /// request counted in flight, then handed on.
    fn pulled(&mut self, q: usize, dispatch: &Dispatch) {
        let start = self.next[q];
        self.next[q] += BATCH;
        let msgs: Vec<MessageExt> = self
            .template
            .iter()
            .zip(start..)
            .map(|(m, offset)| {
                let mut m = m.clone();
                m.set_queue_offset(offset);
                m
            })
            .collect();
        let pq = &self.queues[q];
        pq.put_messages(msgs.iter().cloned());
        pq.task_submitted();
        dispatch.submit(Request {
            work: Some(Batch {
                msgs,
                pq: pq.clone(),
                listener: self.listener.clone(),
            }),
            done: self.done.clone(),
        });
    }

    /// Every queue is empty and idle again.
    fn check_drained(&self) {
        for pq in &self.queues {
            assert_eq!((pq.msg_count(), pq.inflight()), (0, 0), "{:?}", pq.mq);
        }
    }
}

/// 32 messages with 128-byte bodies, decoded from one pull body.
fn template() -> Vec<MessageExt> {
    let mut body = BytesMut::new();
    for i in 0..BATCH {
        let mut m = MessageExt::from_message(&Message::new("TopicTest", vec![b'x'; 128]));
        m.set_queue_offset(i);
        m.set_store_host("127.0.0.1:10911".parse().unwrap());
        m.set_born_host("127.0.0.1:50000".parse().unwrap());
        body.extend_from_slice(&MessageDecoder::encode(&m, false).unwrap());
    }
    MessageDecoder::decodes(Bytes::from(body))
}

type MakeDispatch = fn() -> Dispatch;

const VARIANTS: [(&str, MakeDispatch); 3] = [
    ("pool_20", || Dispatch::pool(20)),
    ("pool_1", || Dispatch::pool(1)),
    ("channel", Dispatch::channel),
];

/// The two kinds of request: nothing (the hand-off alone) and a pulled batch.
const KINDS: [(&str, bool); 2] = [("empty", true), ("32_msgs", false)];

fn roundtrip(c: &mut Criterion) {
    for (kind, empty) in KINDS {
        let mut g = c.benchmark_group(format!("consume_dispatch/roundtrip_{kind}"));
        g.throughput(Throughput::Elements(1));
        for (name, make) in VARIANTS {
            let done = Done::new();
            let mut pulls = Pulls::new(done.clone());
            let dispatch = make();
            let mut submitted = 0u64;
            g.bench_function(name, |b| {
                b.iter(|| {
                    pulls.submit(0, empty, &dispatch);
                    submitted += 1;
                    done.wait_for(submitted);
                })
            });
            drop(dispatch);
            pulls.check_drained();
        }
        g.finish();
    }
}

fn burst(c: &mut Criterion) {
    for (kind, empty) in KINDS {
        let mut g = c.benchmark_group(format!("consume_dispatch/burst_64_{kind}"));
        g.throughput(Throughput::Elements(BURST));
        // A burst of batches takes a few ms: fewer samples keep the run near its 5 s.
        g.sample_size(50);
        for (name, make) in VARIANTS {
            let done = Done::new();
            let mut pulls = Pulls::new(done.clone());
            let dispatch = make();
            let mut submitted = 0u64;
            g.bench_function(name, |b| {
                b.iter(|| {
                    for i in 0..BURST {
                        pulls.submit(i as usize % QUEUES, empty, &dispatch);
                    }
                    submitted += BURST;
                    done.wait_for(submitted);
                })
            });
            drop(dispatch);
            pulls.check_drained();
        }
        g.finish();
    }
}

criterion_group!(benches, roundtrip, burst);
criterion_main!(benches);
