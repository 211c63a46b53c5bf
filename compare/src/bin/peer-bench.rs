//! `peer-bench`: `rmq-bench`'s producer and consumer modes over the peer client,
//! `rocketmq-client-rust` 1.0.0 (the async client of the rocketmq-rust project, on tokio).
//!
//! ```text
//! peer-bench producer -n 127.0.0.1:9876 -t T [-w 1] [-s 128] [--mode sync|async|oneway] [--window 128] [--count N] [--duration SECS]
//! peer-bench consumer -n 127.0.0.1:9876 -t T [-g G] [--orderly] [--from-last] [--count N] [--duration SECS]
//! ```
//!
//! The flags, the status lines (Java's `benchmark/producer.sh` and `consumer.sh` wording) and
//! the final `SUMMARY mode=... tps=... p50_ms=... p99_ms=... max_ms=... cpu_s=... rss_kib=...
//! threads=... count=... failed=... elapsed_s=...` line are those of `rmq-bench`
//! (src/bin/rmq-bench/ of the main crate), with the same meaning, so that
//! `scripts/compare.sh` reads both tools alike. The histogram, the `/proc/self` sample and the
//! `SUMMARY` line are rmq-bench's own `report.rs`, included with `#[path]`; the status lines
//! follow rmq-bench's.
//!
//! Where the peer differs:
//! - `-w` is the number of sending *tasks* on the client's tokio runtime (its worker threads:
//!   one per available CPU), not OS threads: that is how an async client is driven.
//! - `--window` is kept by this tool (a semaphore taken before each `send_with_callback` and
//!   given back by its callback), as in `rmq-bench`. The peer has a bound of its own
//!   (`back_pressure_for_async_send_num`, 1024 by default), left as it is.
//! - The client runtime is the one its examples build: a `RuntimeOwner` (tokio multi-thread
//!   runtime) and a `ClientRuntime`, with a no-op telemetry handle (no log subscriber, as
//!   `rmq-bench` installs no logger).
//! - There is no `rawpull` mode: the broker-bound limit is measured once, by `rmq-bench`.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use rocketmq_client_rust::{
    ClientError, ClientRuntime, ClientRuntimeConfig, ConsumeConcurrentlyContext,
    ConsumeConcurrentlyStatus, ConsumeOrderlyContext, ConsumeOrderlyStatus, DefaultMQProducer,
    DefaultMQPushConsumer, MQPushConsumer, SendResult, TelemetryHandle,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};
use tokio::sync::{mpsc, Notify, Semaphore};

#[derive(Parser)]
#[command(
    name = "peer-bench",
    about = "rmq-bench's producer and consumer over rocketmq-client-rust 1.0.0 (async, tokio), \
             with Java's benchmark output"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

/// What every mode shares.
#[derive(clap::Args)]
struct Common {
    /// Name server address(es), `host:port[;host:port]`; `NAMESRV_ADDR` when not given.
    #[arg(short = 'n', long = "namesrv")]
    namesrv: Option<String>,
    /// Topic.
    #[arg(short = 't', long = "topic", default_value = "BenchmarkTest")]
    topic: String,
    /// Stop after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<u64>,
}

#[derive(Subcommand)]
enum Mode {
    /// Sends messages (Java `benchmark/producer.sh`).
    Producer {
        #[command(flatten)]
        common: Common,
        /// Sending tasks on the client's tokio runtime (rmq-bench: OS threads).
        #[arg(short = 'w', long = "threads", default_value_t = 1)]
        threads: usize,
        /// Body size in bytes.
        #[arg(short = 's', long = "size", default_value_t = 128)]
        size: usize,
        /// Producer group.
        #[arg(short = 'g', long = "group", default_value = "benchmark_producer")]
        group: String,
        /// How a message is sent.
        #[arg(long, value_enum, default_value_t = SendMode::Async)]
        mode: SendMode,
        /// Async sends in flight at most, over all tasks (kept by this tool with a semaphore
        /// around `send_with_callback`; the client's own bound, 1024, stays as it is).
        #[arg(long, default_value_t = 128)]
        window: usize,
    },
    /// Consumes with a push consumer and a listener that does nothing (Java `consumer.sh`).
    Consumer {
        #[command(flatten)]
        common: Common,
        /// Consumer group.
        #[arg(short = 'g', long = "group", default_value = "benchmark_consumer")]
        group: String,
        /// An orderly listener instead of a concurrent one.
        #[arg(long)]
        orderly: bool,
        /// A new group starts at the end of each queue (Java's default) instead of its start.
        #[arg(long)]
        from_last: bool,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SendMode {
    Sync,
    Async,
    Oneway,
}

impl Common {
    /// `-n`, else `NAMESRV_ADDR`.
    fn namesrv(&self) -> Result<String, String> {
        self.namesrv
            .clone()
            .or_else(|| std::env::var("NAMESRV_ADDR").ok())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| "-n NAMESRV (or NAMESRV_ADDR) is required".to_owned())
    }

    fn deadline(&self, started: Instant) -> Option<Instant> {
        self.duration.map(|s| started + Duration::from_secs(s))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let owner = match RuntimeOwner::plan(RuntimeConfig {
        thread_name: "peer-bench".to_owned(),
        ..RuntimeConfig::default()
    })
    .map_err(|e| e.to_string())
    .and_then(|plan| plan.build().map_err(|e| e.to_string()))
    {
        Ok(owner) => owner,
        Err(e) => {
            eprintln!("peer-bench: client runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = owner.block_on(async {
        let runtime = ClientRuntime::try_new(
            owner.root_context().component("client"),
            ClientRuntimeConfig::default(),
            TelemetryHandle::noop(),
        )
        .map_err(|e| e.to_string())?;
        let outcome = match &cli.mode {
            Mode::Producer {
                common,
                threads,
                size,
                group,
                mode,
                window,
            } => producer(&runtime, common, *threads, *size, group, *mode, *window).await,
            Mode::Consumer {
                common,
                group,
                orderly,
                from_last,
            } => consumer(&runtime, common, group, *orderly, *from_last).await,
        };
        // Bounded: the summary is already out, a slow stop must not hold the exit.
        let _ = tokio::time::timeout(Duration::from_secs(10), runtime.shutdown()).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), owner.shutdown_tasks()).await;
        outcome
    });
    owner.shutdown_background();
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("peer-bench: {e}");
            ExitCode::from(2)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Measurements: rmq-bench's own (histogram, /proc sample, SUMMARY line), so both tools measure
// and print alike.

#[path = "../../../src/bin/rmq-bench/report.rs"]
#[allow(dead_code)]
mod report;

use report::{ms, now_ms, print_summary, rate, Histogram};

/// Calls `tick` with the seconds since its previous call (or since the start) once a second,
/// until `done` yields or every sender is gone or the deadline passes. Returns when the last
/// tick was; the caller prints the partial interval after it once the run has settled.
async fn every_second(
    done: &mut mpsc::Receiver<()>,
    deadline: Option<Instant>,
    tick: &mut impl FnMut(f64),
) -> Instant {
    let mut last = Instant::now();
    let mut next = last + Duration::from_secs(1);
    loop {
        let wake = deadline.map_or(next, |d| d.min(next));
        tokio::select! {
            _ = done.recv() => return last,
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return last;
        }
        tick(now.duration_since(last).as_secs_f64());
        last = now;
        next += Duration::from_secs(1);
    }
}

// ---------------------------------------------------------------------------------------------
// producer

/// The broker's `SYSTEM_BUSY` answer: its flow control refused the message (nothing stored).
const SYSTEM_BUSY: i32 = 2;

#[derive(Default)]
struct SendStats {
    ok: AtomicU64,
    send_failed: AtomicU64,
    response_failed: AtomicU64,
    rt_total_us: AtomicU64,
    rt_max_us: AtomicU64,
}

impl SendStats {
    fn ok(&self, hist: &Histogram, rt: Duration) {
        let us = rt.as_micros() as u64;
        hist.record(us);
        self.rt_total_us.fetch_add(us, Ordering::Relaxed);
        self.rt_max_us.fetch_max(us, Ordering::Relaxed);
        self.ok.fetch_add(1, Ordering::Release);
    }

    /// As rmq-bench (and Java): a broker's error answer is a response failure, anything else a
    /// send failure.
    fn failed(&self, e: &ClientError) {
        if e.broker_response_code().is_some() {
            self.response_failed.fetch_add(1, Ordering::Release);
        } else {
            self.send_failed.fetch_add(1, Ordering::Release);
        }
    }

    fn settled(&self) -> u64 {
        self.ok.load(Ordering::Acquire)
            + self.send_failed.load(Ordering::Acquire)
            + self.response_failed.load(Ordering::Acquire)
    }
}

/// What the sending tasks share.
struct SendRun {
    producer: DefaultMQProducer,
    topic: String,
    body: Vec<u8>,
    mode: SendMode,
    count: Option<u64>,
    /// Indices handed out so far.
    claimed: AtomicU64,
    stop: AtomicBool,
    stats: SendStats,
    hist: Histogram,
    /// Async permits: a send takes one, its callback gives it back.
    permits: Arc<Semaphore>,
    /// Async sends the broker refused as busy (nothing stored), waiting to be sent again.
    resend: AtomicU64,
    resend_ready: Notify,
    busy_resent: AtomicU64,
}

impl SendRun {
    fn message(&self) -> Message {
        Message::builder()
            .topic(self.topic.as_str())
            .tags("TagA")
            .body_slice(&self.body)
            .build_unchecked()
    }

    /// Whether to send one more message: a busy one again first, else a new one while the
    /// count lasts. False once nothing is left to send.
    async fn next(&self) -> bool {
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            if self.take_resend() {
                return true;
            }
            let Some(count) = self.count else {
                return true;
            };
            if self.claimed.load(Ordering::Relaxed) < count
                && self.claimed.fetch_add(1, Ordering::Relaxed) < count
            {
                return true;
            }
            // Everything is claimed; a busy answer still in flight may bring one back.
            if self.stats.settled() >= count {
                return false;
            }
            let _ =
                tokio::time::timeout(Duration::from_millis(50), self.resend_ready.notified()).await;
        }
    }

    fn take_resend(&self) -> bool {
        self.resend
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    async fn send_loop(self: &Arc<Self>) {
        while self.next().await {
            match self.mode {
                SendMode::Sync => {
                    let t = Instant::now();
                    match self.producer.send(self.message()).await {
                        Ok(Some(_)) => self.stats.ok(&self.hist, t.elapsed()),
                        // A sync send always answers a result; count a missing one as failed.
                        Ok(None) => {
                            self.stats.send_failed.fetch_add(1, Ordering::Release);
                        }
                        Err(e) => self.stats.failed(&e),
                    }
                }
                SendMode::Oneway => {
                    let t = Instant::now();
                    match self.producer.send_oneway(self.message()).await {
                        Ok(()) => self.stats.ok(&self.hist, t.elapsed()),
                        Err(e) => self.stats.failed(&e),
                    }
                }
                SendMode::Async => self.send_async().await,
            }
        }
    }

    async fn send_async(self: &Arc<Self>) {
        self.permits
            .acquire()
            .await
            .expect("the semaphore is never closed")
            .forget();
        // The callback may be told of a failure and the call still return it: settle once.
        let settled = Arc::new(AtomicBool::new(false));
        let (run, once) = (self.clone(), settled.clone());
        let t = Instant::now();
        let sent = self
            .producer
            .send_with_callback(
                self.message(),
                move |result: Option<&SendResult>, error: Option<&ClientError>| {
                    if once.swap(true, Ordering::AcqRel) {
                        return;
                    }
                    match (result, error) {
                        (Some(_), None) => run.stats.ok(&run.hist, t.elapsed()),
                        (_, Some(e)) if e.broker_response_code() == Some(SYSTEM_BUSY) => {
                            run.busy_resent.fetch_add(1, Ordering::Relaxed);
                            run.resend.fetch_add(1, Ordering::AcqRel);
                            run.resend_ready.notify_one();
                        }
                        (_, Some(e)) => run.stats.failed(e),
                        (None, None) => {
                            run.stats.send_failed.fetch_add(1, Ordering::Release);
                        }
                    }
                    run.permits.add_permits(1);
                },
            )
            .await;
        if let Err(e) = sent {
            if !settled.swap(true, Ordering::AcqRel) {
                self.stats.failed(&e);
                self.permits.add_permits(1);
            }
        }
    }
}

async fn producer(
    runtime: &Arc<ClientRuntime>,
    common: &Common,
    threads: usize,
    size: usize,
    group: &str,
    mode: SendMode,
    window: usize,
) -> Result<bool, String> {
    if threads == 0 || window == 0 {
        return Err("-w and --window must be at least 1".to_owned());
    }
    let mut producer = DefaultMQProducer::builder(runtime.clone())
        .producer_group(group.to_owned())
        .name_server_addr(common.namesrv()?)
        .build();
    producer.start().await.map_err(|e| e.to_string())?;
    let run = Arc::new(SendRun {
        producer: producer.clone(),
        topic: common.topic.clone(),
        body: (0..size).map(|i| b'a' + (i % 26) as u8).collect(),
        mode,
        count: common.count,
        claimed: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        stats: SendStats::default(),
        hist: Histogram::new(),
        permits: Arc::new(Semaphore::new(window)),
        resend: AtomicU64::new(0),
        resend_ready: Notify::new(),
        busy_resent: AtomicU64::new(0),
    });
    let started = Instant::now();
    // The channel closes once every sending task is out of its loop.
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (run, done) = (run.clone(), done_tx.clone());
            tokio::spawn(async move {
                run.send_loop().await;
                drop(done);
            })
        })
        .collect();
    drop(done_tx);

    let stats = &run.stats;
    let mut last = (0u64, 0u64);
    let mut status =
        |secs: f64| {
            let ok = stats.ok.load(Ordering::Acquire);
            let rt = stats.rt_total_us.load(Ordering::Relaxed);
            let (d_ok, d_rt) = (ok - last.0, rt - last.1);
            last = (ok, rt);
            println!(
            "Send TPS: {} Max RT(ms): {} Average RT(ms): {:.3} Send Failed: {} Response Failed: {}",
            rate(d_ok, secs),
            stats.rt_max_us.load(Ordering::Relaxed) / 1000,
            if d_ok == 0 { 0.0 } else { ms(d_rt) / d_ok as f64 },
            stats.send_failed.load(Ordering::Relaxed),
            stats.response_failed.load(Ordering::Relaxed),
        );
        };
    let last_tick = every_second(&mut done_rx, common.deadline(started), &mut status).await;
    run.stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    // Every async callback has run once every permit is back.
    if mode == SendMode::Async {
        let all = u32::try_from(window).unwrap_or(u32::MAX);
        if tokio::time::timeout(Duration::from_secs(30), run.permits.acquire_many(all))
            .await
            .is_err()
        {
            eprintln!("peer-bench: async sends still unanswered after 30 s");
        }
    }
    status(last_tick.elapsed().as_secs_f64());
    let elapsed = started.elapsed();
    let ok = stats.ok.load(Ordering::Acquire);
    let failed =
        stats.send_failed.load(Ordering::Acquire) + stats.response_failed.load(Ordering::Acquire);
    let busy = run.busy_resent.load(Ordering::Relaxed);
    if busy > 0 {
        eprintln!("peer-bench: {busy} async sends were refused as broker busy and sent again");
    }
    // Sampled before the shutdown: the figures are of the running producer.
    print_summary("producer", ok, failed, elapsed, &run.hist, "");
    let _ = tokio::time::timeout(Duration::from_secs(5), producer.shutdown()).await;
    Ok(failed == 0 && common.count.is_none_or(|c| ok >= c))
}

// ---------------------------------------------------------------------------------------------
// consumer

/// Consume counters, Java's B2C (born to consume) and S2C (store to consume) in milliseconds.
#[derive(Default)]
struct ConsumeStats {
    count: AtomicU64,
    b2c_total: AtomicU64,
    s2c_total: AtomicU64,
    b2c_max: AtomicU64,
    s2c_max: AtomicU64,
}

impl ConsumeStats {
    /// Adds a batch; counters move once per batch, the histogram once per message.
    /// True when this batch reached `target`.
    fn on_batch(&self, msgs: &[&MessageExt], hist: &Histogram, target: Option<u64>) -> bool {
        let now = now_ms();
        let (mut b2c, mut s2c, mut b2c_max, mut s2c_max) = (0u64, 0u64, 0u64, 0u64);
        for m in msgs {
            let b = (now - m.born_timestamp()).max(0) as u64;
            let s = (now - m.store_timestamp()).max(0) as u64;
            hist.record(b * 1000);
            b2c += b;
            s2c += s;
            b2c_max = b2c_max.max(b);
            s2c_max = s2c_max.max(s);
        }
        self.b2c_total.fetch_add(b2c, Ordering::Relaxed);
        self.s2c_total.fetch_add(s2c, Ordering::Relaxed);
        self.b2c_max.fetch_max(b2c_max, Ordering::Relaxed);
        self.s2c_max.fetch_max(s2c_max, Ordering::Relaxed);
        let n = msgs.len() as u64;
        let before = self.count.fetch_add(n, Ordering::AcqRel);
        target.is_some_and(|t| before < t && before + n >= t)
    }

    /// Prints Java's consume status line over the second since `last`.
    fn print_status(&self, last: &mut (u64, u64, u64), secs: f64) {
        let count = self.count.load(Ordering::Acquire);
        let b2c = self.b2c_total.load(Ordering::Relaxed);
        let s2c = self.s2c_total.load(Ordering::Relaxed);
        let d = count - last.0;
        let avg = |total: u64, prev: u64| {
            if d == 0 {
                0.0
            } else {
                (total - prev) as f64 / d as f64
            }
        };
        println!(
            "Consume TPS: {} Average(B2C) RT(ms): {:.3} Average(S2C) RT(ms): {:.3} MAX(B2C) RT(ms): {} MAX(S2C) RT(ms): {}",
            rate(d, secs),
            avg(b2c, last.1),
            avg(s2c, last.2),
            self.b2c_max.load(Ordering::Relaxed),
            self.s2c_max.load(Ordering::Relaxed),
        );
        *last = (count, b2c, s2c);
    }
}

async fn consumer(
    runtime: &Arc<ClientRuntime>,
    common: &Common,
    group: &str,
    orderly: bool,
    from_last: bool,
) -> Result<bool, String> {
    let stats = Arc::new(ConsumeStats::default());
    let hist = Arc::new(Histogram::new());
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let target = common.count;
    let mut consumer = DefaultMQPushConsumer::builder(runtime.clone())
        .consumer_group(group.to_owned())
        .name_server_addr(common.namesrv()?)
        .consume_from_where(if from_last {
            ConsumeFromWhere::ConsumeFromLastOffset
        } else {
            ConsumeFromWhere::ConsumeFromFirstOffset
        })
        .build();
    consumer
        .subscribe(common.topic.as_str(), "*")
        .await
        .map_err(|e| e.to_string())?;
    let (s, h) = (stats.clone(), hist.clone());
    if orderly {
        consumer.register_message_listener_orderly(
            move |msgs: &[&MessageExt], _: &mut ConsumeOrderlyContext| {
                if s.on_batch(msgs, &h, target) {
                    let _ = done_tx.try_send(());
                }
                Ok(ConsumeOrderlyStatus::Success)
            },
        );
    } else {
        consumer.register_message_listener_concurrently(
            move |msgs: &[&MessageExt], _: &ConsumeConcurrentlyContext| {
                if s.on_batch(msgs, &h, target) {
                    let _ = done_tx.try_send(());
                }
                Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
            },
        );
    }
    let started = Instant::now();
    consumer.start().await.map_err(|e| e.to_string())?;
    let mut last = (0, 0, 0);
    let mut status = |secs: f64| stats.print_status(&mut last, secs);
    let last_tick = every_second(&mut done_rx, common.deadline(started), &mut status).await;
    status(last_tick.elapsed().as_secs_f64());
    let elapsed = started.elapsed();
    // Shut down after the sample: the summary is of the running consumer.
    let count = stats.count.load(Ordering::Acquire);
    print_summary("consumer", count, 0, elapsed, &hist, "");
    let _ = tokio::time::timeout(Duration::from_secs(10), consumer.shutdown()).await;
    Ok(target.is_none_or(|t| count >= t))
}
