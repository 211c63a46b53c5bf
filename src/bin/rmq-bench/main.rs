//! `rmq-bench`: the RocketMQ benchmark tool, in the Java distribution's wording.
//!
//! ```text
//! rmq-bench producer -n 127.0.0.1:9876 -t T [-w 1] [-s 128] [--mode sync|async|oneway] [--window 128] [--queues 8] [--disable-callback-executor] [--count N] [--duration SECS]
//! rmq-bench consumer -n 127.0.0.1:9876 -t T [-g G] [--orderly] [--from-last] [--count N] [--duration SECS]
//! rmq-bench rawpull  -n 127.0.0.1:9876 -t T [-g G] [--batch 32] [--count N] [--duration SECS]
//! rmq-bench rawsend  -n 127.0.0.1:9876 -t T [-s 128] [-g G] [--window 1] [--count N] [--duration SECS]
//! rmq-bench latency  -n 127.0.0.1:9876 -t T [-g G] [--rate 100] [-s 128] [--mode oneway|sync] [--floor] [--count N] [--duration SECS]
//! ```
//!
//! Every second a status line as Java's `benchmark/producer.sh` and `consumer.sh` print it
//! (`Send TPS: ...` or `Consume TPS: ...`), and at the end one line for scripts:
//!
//! ```text
//! SUMMARY mode=producer tps=... p50_ms=... p99_ms=... max_ms=... cpu_s=... rss_kib=... threads=... count=... failed=...
//! ```
//!
//! `tps` is `count` over `elapsed_s`, timed from the producer's first send, or from just before
//! the consumer starts (its start-up and first rebalance included). The status lines' TPS are per
//! second over their interval; the last line covers the interval's remainder. The percentiles
//! are of the send round trip (producer) or of born-to-consume (consumer, rawpull). A one-way
//! send's round trip is the call alone and its count is what the client accepted: the broker
//! answers nothing and may drop what it cannot take. `cpu_s` is the process's user plus system time, `rss_kib` and `threads` its
//! resident set and thread count at the end, all from `/proc/self`. A run ends after `--count`
//! messages, after `--duration` seconds, or (rawpull) once every queue is drained; without
//! either bound, producer and consumer run until killed. The exit code is non-zero when a send
//! failed or fewer than `--count` messages were consumed.
//!
//! `consumer` and `rawpull` add `first_ms` (from the start, client start-up and route lookup
//! included, to the first message) and `drain_tps` (the messages after the first over the time
//! from the first to the last): on a backlog drained in under a second, start-up weighs on
//! `tps`, and `drain_tps` is the rate once running.
//!
//! `latency` sends at `--rate` messages per second on a fixed schedule, each body stamped with
//! its send time in microseconds, and measures send to listener entry on this host's monotonic
//! clock. Before the measured sends, one warm-up message per queue must have been consumed, so
//! the consumer owns every queue and its pulls are parked on the broker. The consumer is a push
//! consumer with a concurrent no-op listener, or with `--floor` one bare long-poll loop per queue
//! (PULL_MESSAGE with a suspend time, the `rawpull` path): the floor the push consumer is judged
//! against. Its status lines are Java's send and consume lines, B2C being this latency; its
//! summary's percentiles are this latency, `count` the messages measured (each once), and
//! `sent=` the sends the client accepted. Without `--count` or `--duration` it runs 60 s; it
//! fails unless every accepted send was measured within 10 s of the last.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use crossbeam_channel::{Receiver, RecvTimeoutError};

mod report;

use report::{ms, now_ms, print_summary, rate, Histogram};
use rocketmq_sync::codec::{MessageDecoder, TopicRouteData};
use rocketmq_sync::remoting::protocol::header::{
    CreateTopicRequestHeader, GetMaxOffsetRequestHeader, GetMaxOffsetResponseHeader,
    GetRouteInfoRequestHeader, PullMessageRequestHeader, PullMessageResponseHeader,
    SendMessageRequestHeader, SendMessageRequestHeaderV2,
};
use rocketmq_sync::remoting::protocol::{RemotingCommand, RequestCode};
use rocketmq_sync::remoting::{RemotingClient, RemotingClientConfig};
use rocketmq_sync::{
    ClientConfig, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, ConsumeFromWhere,
    ConsumeOrderlyContext, ConsumeOrderlyStatus, DefaultLitePullConsumer, DefaultMQProducer,
    DefaultMQPushConsumer, Error, Message, MessageExt, MessageQueue, ResponseCode,
};

#[derive(Parser)]
#[command(
    name = "rmq-bench",
    about = "RocketMQ benchmarks with Java's benchmark output"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

/// The producer mode's own flags.
#[derive(clap::Args)]
struct ProducerArgs {
    /// Sending threads.
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
    /// Async sends in flight at most, over all threads.
    #[arg(long, default_value_t = 128)]
    window: usize,
    /// Run async callbacks on the io thread (`ClientConfig::disable_callback_executor`).
    #[arg(long)]
    disable_callback_executor: bool,
    /// Queues of the topic on each master broker: a topic that does not exist yet is
    /// created with this many read and write queues on every master of the `TBW102`
    /// route (as `mqadmin updateTopic` does) before the first send. An existing topic is
    /// left as it is.
    #[arg(long, default_value_t = 8)]
    queues: i32,
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
        #[command(flatten)]
        args: ProducerArgs,
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
        /// A lite pull consumer driven by a `poll` loop instead of a push consumer.
        #[arg(long, conflicts_with = "orderly")]
        poll: bool,
        /// With `--poll`: messages per pull (Java's lite default is 10; the push consumer's 32).
        #[arg(long, default_value_t = 32)]
        batch: i32,
    },
    /// Polls an idle topic with a lite pull consumer and measures how long past its timeout
    /// each empty `poll` returns.
    Pollidle {
        #[command(flatten)]
        common: Common,
        /// Consumer group.
        #[arg(short = 'g', long = "group", default_value = "benchmark_pollidle")]
        group: String,
        /// Empty polls to time.
        #[arg(long, default_value_t = 200)]
        polls: u64,
        /// The timeout of each poll, in ms.
        #[arg(long, default_value_t = 10)]
        timeout_ms: u64,
    },
    /// Pulls every queue from its first offset with bare PULL_MESSAGE requests: the
    /// broker-bound limit a push consumer is judged against.
    Rawpull {
        #[command(flatten)]
        common: Common,
        /// The consumer group named in the requests (no offsets are committed).
        #[arg(short = 'g', long = "group", default_value = "benchmark_rawpull")]
        group: String,
        /// Messages asked for per pull.
        #[arg(long, default_value_t = 32)]
        batch: i32,
    },
    /// Sends one message at a time over a bare blocking socket, with no client machinery: the
    /// floor that sync sends are judged against (what the broker and the kernel cost).
    Rawsend {
        #[command(flatten)]
        common: Common,
        /// Body size in bytes.
        #[arg(short = 's', long = "size", default_value_t = 128)]
        size: usize,
        /// The producer group named in the requests.
        #[arg(short = 'g', long = "group", default_value = "benchmark_rawsend")]
        group: String,
        /// Requests in flight: 1 sends and reads in turn on one thread (the sync floor); more
        /// writes from one thread and reads on another (the async floor).
        #[arg(long, default_value_t = 1)]
        window: usize,
    },
    /// Sends at a fixed rate, each message stamped with its send time, and measures the
    /// produce-to-consume latency (send to listener entry) on an idle long poll.
    Latency {
        #[command(flatten)]
        common: Common,
        /// Consumer group.
        #[arg(short = 'g', long = "group", default_value = "benchmark_latency")]
        group: String,
        /// Messages per second, sent on a fixed schedule.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Body size in bytes (at least 24, the stamp).
        #[arg(short = 's', long = "size", default_value_t = 128)]
        size: usize,
        /// How a message is sent.
        #[arg(long, value_enum, default_value_t = StampedSend::Oneway)]
        mode: StampedSend,
        /// Consume with a bare long-poll loop per queue (the rawpull path, no consumer
        /// machinery) instead of a push consumer: the floor a push consumer is judged against.
        #[arg(long)]
        floor: bool,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StampedSend {
    Sync,
    Oneway,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SendMode {
    Sync,
    Async,
    Oneway,
}

impl Common {
    /// `-n`, else `NAMESRV_ADDR` (read here rather than by clap's `env` feature, which the
    /// build leaves out).
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
    let outcome = match &cli.mode {
        Mode::Producer { common, args } => producer(common, args),
        Mode::Consumer {
            common,
            group,
            orderly,
            from_last,
            poll: false,
            ..
        } => consumer(common, group, *orderly, *from_last),
        Mode::Consumer {
            common,
            group,
            from_last,
            poll: true,
            batch,
            ..
        } => poll_consumer(common, group, *from_last, *batch),
        Mode::Pollidle {
            common,
            group,
            polls,
            timeout_ms,
        } => pollidle(common, group, *polls, *timeout_ms),
        Mode::Rawpull {
            common,
            group,
            batch,
        } => rawpull(common, group, *batch),
        Mode::Rawsend {
            common,
            size,
            group,
            window,
        } => rawsend(common, *size, group, *window),
        Mode::Latency {
            common,
            group,
            rate,
            size,
            mode,
            floor,
        } => latency(common, group, *rate, *size, *mode, *floor),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("rmq-bench: {e}");
            ExitCode::from(2)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Measurements

/// Calls `tick` with the seconds since its previous call (or since the start) once a second,
/// until `done` yields or disconnects or the deadline passes. Returns when the last tick was;
/// the caller prints the partial interval after it once the run has settled.
fn every_second(
    done: &Receiver<()>,
    deadline: Option<Instant>,
    tick: &mut impl FnMut(f64),
) -> Instant {
    let mut last = Instant::now();
    let mut next = last + Duration::from_secs(1);
    loop {
        let wake = deadline.map_or(next, |d| d.min(next));
        match done.recv_deadline(wake) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return last,
            Err(RecvTimeoutError::Timeout) => {}
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
        hist.record(rt.as_micros() as u64);
        self.ok_rt(rt);
    }

    /// Counts a send that succeeded after `rt`, with no histogram.
    fn ok_rt(&self, rt: Duration) {
        let us = rt.as_micros() as u64;
        self.rt_total_us.fetch_add(us, Ordering::Relaxed);
        self.rt_max_us.fetch_max(us, Ordering::Relaxed);
        self.ok.fetch_add(1, Ordering::Release);
    }

    /// Java counts a broker's error answer (`MQBrokerException`) as a response failure and
    /// anything else as a send failure.
    fn failed(&self, e: &Error) {
        if matches!(e, Error::Broker { .. }) {
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

/// Java's producer status line for the last `secs`; `last` is (ok, rt total) at the last line.
fn print_send_status(stats: &SendStats, last: &mut (u64, u64), secs: f64) {
    let ok = stats.ok.load(Ordering::Acquire);
    let rt = stats.rt_total_us.load(Ordering::Relaxed);
    let (d_ok, d_rt) = (ok - last.0, rt - last.1);
    *last = (ok, rt);
    println!(
        "Send TPS: {} Max RT(ms): {} Average RT(ms): {:.3} Send Failed: {} Response Failed: {}",
        rate(d_ok, secs),
        stats.rt_max_us.load(Ordering::Relaxed) / 1000,
        if d_ok == 0 {
            0.0
        } else {
            ms(d_rt) / d_ok as f64
        },
        stats.send_failed.load(Ordering::Relaxed),
        stats.response_failed.load(Ordering::Relaxed),
    );
}

/// What the sending threads share.
struct SendRun {
    producer: DefaultMQProducer,
    topic: String,
    body: Bytes,
    mode: SendMode,
    count: Option<u64>,
    /// Indices handed out so far.
    claimed: AtomicU64,
    stop: AtomicBool,
    stats: SendStats,
    hist: Histogram,
    /// Async sends in flight: a send takes a slot, its callback returns it.
    window: Window,
    /// Async sends the broker refused as busy (its flow control; nothing stored), sent again.
    resend: (
        crossbeam_channel::Sender<()>,
        crossbeam_channel::Receiver<()>,
    ),
    busy_resent: AtomicU64,
}

impl SendRun {
    fn message(&self) -> Message {
        Message::new(self.topic.clone(), self.body.clone()).with_tags("TagA")
    }

    /// Whether to send one more message: a busy one again first, else a new one while the
    /// count lasts. False once nothing is left to send.
    fn next(&self) -> bool {
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            if self.resend.1.try_recv().is_ok() {
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
            match self.resend.1.recv_timeout(Duration::from_millis(50)) {
                Ok(()) => return true,
                Err(_) => continue,
            }
        }
    }

    fn send_loop(self: &Arc<Self>) {
        while self.next() {
            let msg = self.message();
            match self.mode {
                SendMode::Sync => {
                    let t = Instant::now();
                    match self.producer.send(&msg) {
                        Ok(_) => self.stats.ok(&self.hist, t.elapsed()),
                        Err(e) => self.stats.failed(&e),
                    }
                }
                SendMode::Oneway => {
                    let t = Instant::now();
                    match self.producer.send_oneway(&msg) {
                        Ok(()) => self.stats.ok(&self.hist, t.elapsed()),
                        Err(e) => self.stats.failed(&e),
                    }
                }
                SendMode::Async => self.send_async(&msg),
            }
        }
    }

    fn send_async(self: &Arc<Self>, msg: &Message) {
        self.window.acquire();
        loop {
            let run = self.clone();
            let t = Instant::now();
            let sent = self.producer.send_async(msg, move |r| {
                match r {
                    Ok(_) => run.stats.ok(&run.hist, t.elapsed()),
                    Err(e) if e.is_system_busy() => {
                        run.busy_resent.fetch_add(1, Ordering::Relaxed);
                        let _ = run.resend.0.send(());
                    }
                    Err(e) => run.stats.failed(&e),
                }
                run.window.release();
            });
            match sent {
                Ok(()) => return,
                // The client's own bound on requests in flight: wait for room, not a failure.
                Err(e) if e.is_too_many_requests() => std::thread::yield_now(),
                Err(e) => {
                    self.stats.failed(&e);
                    self.window.release();
                    return;
                }
            }
        }
    }
}

/// The async window: at most `size` sends in flight. A sender that finds it full sleeps until a
/// quarter of it is free again, so it wakes once per batch of answers rather than once per
/// answer, and sends that batch back to back (the io thread then writes it in few syscalls).
struct Window {
    size: usize,
    free: parking_lot::Mutex<usize>,
    room: parking_lot::Condvar,
}

impl Window {
    fn new(size: usize) -> Self {
        Window {
            size,
            free: parking_lot::Mutex::new(size),
            room: parking_lot::Condvar::new(),
        }
    }

    fn refill_at(&self) -> usize {
        (self.size / 4).max(1)
    }

    fn acquire(&self) {
        let mut free = self.free.lock();
        if *free == 0 {
            while *free < self.refill_at() {
                self.room.wait(&mut free);
            }
        }
        *free -= 1;
    }

    fn release(&self) {
        let mut free = self.free.lock();
        *free += 1;
        if *free == self.refill_at() || *free == self.size {
            self.room.notify_all();
        }
    }

    /// Waits until every slot is back (every callback has run), or `deadline`.
    fn wait_empty(&self, deadline: Instant) -> bool {
        let mut free = self.free.lock();
        while *free < self.size {
            if self.room.wait_until(&mut free, deadline).timed_out() {
                return *free == self.size;
            }
        }
        true
    }
}

fn producer(common: &Common, args: &ProducerArgs) -> Result<bool, String> {
    let ProducerArgs {
        threads,
        size,
        ref group,
        mode,
        window,
        disable_callback_executor,
        queues,
    } = *args;
    if threads == 0 || window == 0 {
        return Err("-w and --window must be at least 1".to_owned());
    }
    if !(1..=1024).contains(&queues) {
        return Err(format!("--queues must be 1..=1024, not {queues}"));
    }
    ensure_topic(&common.namesrv()?, &common.topic, queues)?;
    let producer = DefaultMQProducer::builder(group)
        .client_config(
            ClientConfig::builder()
                .disable_callback_executor(disable_callback_executor)
                .build(),
        )
        .namesrv_addr(common.namesrv()?)
        .default_topic_queue_nums(queues)
        .build()
        .map_err(|e| e.to_string())?;
    producer.start().map_err(|e| e.to_string())?;
    let run = Arc::new(SendRun {
        producer,
        topic: common.topic.clone(),
        body: (0..size).map(|i| b'a' + (i % 26) as u8).collect(),
        mode,
        count: common.count,
        claimed: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        stats: SendStats::default(),
        hist: Histogram::new(),
        window: Window::new(window),
        resend: crossbeam_channel::unbounded(),
        busy_resent: AtomicU64::new(0),
    });
    let started = Instant::now();
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
    let workers: Vec<_> = (0..threads)
        .map(|i| {
            let run = run.clone();
            let done = done_tx.clone();
            std::thread::Builder::new()
                .name(format!("bench-send-{i}"))
                .spawn(move || {
                    run.send_loop();
                    drop(done);
                })
                .expect("spawn a sending thread")
        })
        .collect();
    // The channel disconnects once every sending thread is out of its loop.
    drop(done_tx);

    let stats = &run.stats;
    let mut last = (0u64, 0u64);
    let mut status = |secs: f64| print_send_status(stats, &mut last, secs);
    let last_tick = every_second(&done_rx, common.deadline(started), &mut status);
    run.stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    // Every async callback has run once every permit is back.
    if mode == SendMode::Async
        && !run
            .window
            .wait_empty(Instant::now() + Duration::from_secs(30))
    {
        eprintln!("rmq-bench: async sends still unanswered after 30 s");
    }
    status(last_tick.elapsed().as_secs_f64());
    let elapsed = started.elapsed();
    let ok = stats.ok.load(Ordering::Acquire);
    let failed =
        stats.send_failed.load(Ordering::Acquire) + stats.response_failed.load(Ordering::Acquire);
    let busy = run.busy_resent.load(Ordering::Relaxed);
    if busy > 0 {
        eprintln!("rmq-bench: {busy} async sends were refused as broker busy and sent again");
    }
    // Sampled before the shutdown: the figures are of the running producer.
    print_summary("producer", ok, failed, elapsed, &run.hist, "");
    let _ = run.producer.shutdown(Duration::from_secs(5));
    Ok(failed == 0 && common.count.is_none_or(|c| ok >= c))
}

// ---------------------------------------------------------------------------------------------
// consumer and rawpull

/// Consume counters, Java's B2C (born to consume) and S2C (store to consume) in milliseconds.
#[derive(Default)]
struct ConsumeStats {
    count: AtomicU64,
    b2c_total: AtomicU64,
    s2c_total: AtomicU64,
    b2c_max: AtomicU64,
    s2c_max: AtomicU64,
    /// Wall clock (ms) of the first and the last batch; 0 until the first.
    first_ms: AtomicI64,
    last_ms: AtomicI64,
}

impl ConsumeStats {
    /// Adds a batch; counters move once per batch, the histogram once per message.
    /// True when this batch reached `target`.
    fn on_batch(&self, msgs: &[MessageExt], hist: &Histogram, target: Option<u64>) -> bool {
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
        let _ = self
            .first_ms
            .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire);
        self.last_ms.fetch_max(now, Ordering::AcqRel);
        let n = msgs.len() as u64;
        let before = self.count.fetch_add(n, Ordering::AcqRel);
        target.is_some_and(|t| before < t && before + n >= t)
    }

    /// The summary's extra fields: `first_ms`, from `started_ms` to the first message (start-up,
    /// route and first rebalance), and `drain_tps`, the messages after the first over the time
    /// from the first to the last: the rate once running, which start-up does not dilute.
    fn drain_extra(&self, started_ms: i64) -> String {
        let first = self.first_ms.load(Ordering::Acquire);
        if first == 0 {
            return String::new();
        }
        let span_ms = self.last_ms.load(Ordering::Acquire) - first;
        let count = self.count.load(Ordering::Acquire);
        let drain_tps = if span_ms > 0 {
            (count.saturating_sub(1)) as f64 * 1000.0 / span_ms as f64
        } else {
            0.0
        };
        format!(" first_ms={} drain_tps={drain_tps:.0}", first - started_ms)
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

fn consumer(common: &Common, group: &str, orderly: bool, from_last: bool) -> Result<bool, String> {
    let stats = Arc::new(ConsumeStats::default());
    let hist = Arc::new(Histogram::new());
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
    let target = common.count;
    let builder = DefaultMQPushConsumer::builder(group)
        .namesrv_addr(common.namesrv()?)
        .subscribe(common.topic.clone(), "*")
        .consume_from_where(if from_last {
            ConsumeFromWhere::LastOffset
        } else {
            ConsumeFromWhere::FirstOffset
        });
    let (s, h) = (stats.clone(), hist.clone());
    let builder = if orderly {
        builder.register_message_listener_orderly(
            move |msgs: &[MessageExt], _: &mut ConsumeOrderlyContext| {
                if s.on_batch(msgs, &h, target) {
                    let _ = done_tx.try_send(());
                }
                ConsumeOrderlyStatus::Success
            },
        )
    } else {
        builder.register_message_listener_concurrently(
            move |msgs: &[MessageExt], _: &mut ConsumeConcurrentlyContext| {
                if s.on_batch(msgs, &h, target) {
                    let _ = done_tx.try_send(());
                }
                ConsumeConcurrentlyStatus::ConsumeSuccess
            },
        )
    };
    let consumer = builder.build().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let started_ms = now_ms();
    consumer.start().map_err(|e| e.to_string())?;
    // Shut down after the sample: the summary is of the running consumer.
    let count = report_drain(
        "consumer", common, &stats, &hist, &done_rx, started, started_ms,
    );
    let _ = consumer.shutdown(Duration::from_secs(10));
    Ok(target.is_none_or(|t| count >= t))
}

/// Prints the status line every second until the target is reached (`done`) or the run's
/// deadline, then the summary of `mode`. Returns the messages consumed.
fn report_drain(
    mode: &str,
    common: &Common,
    stats: &ConsumeStats,
    hist: &Histogram,
    done: &Receiver<()>,
    started: Instant,
    started_ms: i64,
) -> u64 {
    let mut last = (0, 0, 0);
    let mut status = |secs: f64| stats.print_status(&mut last, secs);
    let last_tick = every_second(done, common.deadline(started), &mut status);
    status(last_tick.elapsed().as_secs_f64());
    let elapsed = started.elapsed();
    let count = stats.count.load(Ordering::Acquire);
    let extra = stats.drain_extra(started_ms);
    print_summary(mode, count, 0, elapsed, hist, &extra);
    count
}

/// The consumer mode with `--poll`: a lite pull consumer drained by one thread's poll loop.
fn poll_consumer(
    common: &Common,
    group: &str,
    from_last: bool,
    batch: i32,
) -> Result<bool, String> {
    let stats = Arc::new(ConsumeStats::default());
    let hist = Arc::new(Histogram::new());
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
    let target = common.count;
    let consumer = DefaultLitePullConsumer::builder(group)
        .namesrv_addr(common.namesrv()?)
        .subscribe(common.topic.clone(), "*")
        .pull_batch_size(batch)
        .consume_from_where(if from_last {
            ConsumeFromWhere::LastOffset
        } else {
            ConsumeFromWhere::FirstOffset
        })
        .build()
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let started_ms = now_ms();
    consumer.start().map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (c, s, h, stop) = (consumer.clone(), stats.clone(), hist.clone(), stop.clone());
        std::thread::Builder::new()
            .name("bench-poll".into())
            .spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    match c.poll(Duration::from_millis(100)) {
                        Ok(msgs) if !msgs.is_empty() => {
                            if s.on_batch(&msgs, &h, target) {
                                let _ = done_tx.try_send(());
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            eprintln!("rmq-bench: poll failed: {e}");
                            return;
                        }
                    }
                }
            })
            .map_err(|e| e.to_string())?
    };
    let count = report_drain("poll", common, &stats, &hist, &done_rx, started, started_ms);
    stop.store(true, Ordering::Release);
    let _ = poller.join();
    let _ = consumer.shutdown(Duration::from_secs(10));
    Ok(target.is_none_or(|t| count >= t))
}

/// Empty polls on an idle topic: the histogram is of how long past its timeout each returned.
fn pollidle(common: &Common, group: &str, polls: u64, timeout_ms: u64) -> Result<bool, String> {
    ensure_topic(&common.namesrv()?, &common.topic, 8)?;
    let consumer = DefaultLitePullConsumer::builder(group)
        .namesrv_addr(common.namesrv()?)
        .build()
        .map_err(|e| e.to_string())?;
    consumer.start().map_err(|e| e.to_string())?;
    let queues = consumer
        .fetch_message_queues(&common.topic)
        .map_err(|e| e.to_string())?;
    consumer.assign(queues.clone()).map_err(|e| e.to_string())?;
    for mq in &queues {
        consumer.seek_to_end(mq).map_err(|e| e.to_string())?;
    }
    let hist = Histogram::new();
    let timeout = Duration::from_millis(timeout_ms);
    let started = Instant::now();
    let (mut empty, mut late_max) = (0u64, Duration::ZERO);
    for _ in 0..polls {
        let t = Instant::now();
        let msgs = consumer.poll(timeout).map_err(|e| e.to_string())?;
        let took = t.elapsed();
        if msgs.is_empty() {
            let late = took.saturating_sub(timeout);
            late_max = late_max.max(late);
            hist.record(late.as_micros() as u64);
            empty += 1;
        }
    }
    let elapsed = started.elapsed();
    let extra = format!(
        " timeout_ms={timeout_ms} queues={} late_max_us={}",
        queues.len(),
        late_max.as_micros()
    );
    print_summary("pollidle", empty, polls - empty, elapsed, &hist, &extra);
    let _ = consumer.shutdown(Duration::from_secs(10));
    Ok(empty == polls)
}

const RPC_TIMEOUT: Duration = Duration::from_secs(10);

fn route(client: &RemotingClient, namesrv: &str, topic: &str) -> Result<TopicRouteData, String> {
    let req = RemotingCommand::request_with_header(
        RequestCode::GET_ROUTEINFO_BY_TOPIC,
        &GetRouteInfoRequestHeader {
            topic: topic.to_owned(),
            accept_standard_json_only: None,
        },
    );
    let mut last_err = String::new();
    // A name server list is `;`-separated; the first that knows the route answers.
    for addr in namesrv.split(';').filter(|a| !a.is_empty()) {
        match client.invoke_sync(addr, req.clone(), RPC_TIMEOUT) {
            Ok(resp) if resp.response_code() == ResponseCode::SUCCESS => {
                let body = resp.body().ok_or("route answer without a body")?;
                return TopicRouteData::decode(body).map_err(|e| e.to_string());
            }
            Ok(resp) => {
                last_err = format!(
                    "route of {topic}: {} {}",
                    resp.response_code(),
                    resp.remark().unwrap_or_default()
                )
            }
            Err(e) => last_err = format!("route of {topic} from {addr}: {e}"),
        }
    }
    Err(last_err)
}

/// Creates `topic` with `queues` queues on every master that holds `TBW102`, unless the name
/// server already has a route for it, then waits until it has one.
fn ensure_topic(namesrv: &str, topic: &str, queues: i32) -> Result<(), String> {
    let client =
        RemotingClient::start(RemotingClientConfig::default()).map_err(|e| e.to_string())?;
    if route(&client, namesrv, topic).is_ok() {
        return Ok(());
    }
    let template = route(&client, namesrv, "TBW102")?;
    let masters: Vec<&String> = template
        .broker_datas
        .iter()
        .filter_map(|b| b.broker_addrs.get(&0))
        .collect();
    if masters.is_empty() {
        return Err("no master broker holds TBW102: cannot create the topic".to_owned());
    }
    for addr in &masters {
        let header = CreateTopicRequestHeader {
            topic: topic.to_owned(),
            default_topic: "TBW102".to_owned(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm: 6,
            ..Default::default()
        };
        let req =
            RemotingCommand::request_with_header(RequestCode::UPDATE_AND_CREATE_TOPIC, &header);
        let resp = client
            .invoke_sync(addr, req, RPC_TIMEOUT)
            .map_err(|e| format!("create {topic} on {addr}: {e}"))?;
        if resp.response_code() != ResponseCode::SUCCESS {
            return Err(format!(
                "create {topic} on {addr}: {} {}",
                resp.response_code(),
                resp.remark().unwrap_or_default()
            ));
        }
    }
    // The brokers register the topic with the name server on their own schedule.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < deadline {
        match route(&client, namesrv, topic) {
            Ok(r) if r.queue_datas.len() >= masters.len() => {
                eprintln!(
                    "rmq-bench: created {topic} with {queues} queues on {} broker(s)",
                    masters.len()
                );
                client.shutdown();
                return Ok(());
            }
            Ok(_) => last = "route lists fewer brokers than created".to_owned(),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    client.shutdown();
    Err(format!(
        "{topic} was created but its route never appeared: {last}"
    ))
}

/// Every readable queue of `topic`, with its master's address.
fn read_queues(
    client: &RemotingClient,
    namesrv: &str,
    topic: &str,
) -> Result<Vec<(String, MessageQueue)>, String> {
    topic_queues(client, namesrv, topic, false)
}

/// Every queue of `topic` that may be read (or, with `write`, every queue of a writable
/// broker entry that may be written), with its master's address.
fn topic_queues(
    client: &RemotingClient,
    namesrv: &str,
    topic: &str,
    write: bool,
) -> Result<Vec<(String, MessageQueue)>, String> {
    let r = route(client, namesrv, topic)?;
    let mut queues = Vec::new();
    for q in r.queue_datas.iter().filter(|q| !write || q.is_writeable()) {
        let addr = r
            .broker_datas
            .iter()
            .find(|b| b.broker_name == q.broker_name)
            .and_then(|b| b.master_addr())
            .ok_or_else(|| format!("broker {} has no master", q.broker_name))?
            .to_owned();
        let count = if write {
            q.write_queue_nums
        } else {
            q.read_queue_nums
        };
        for id in 0..count {
            queues.push((addr.clone(), MessageQueue::new(topic, &q.broker_name, id)));
        }
    }
    Ok(queues)
}

/// What the pulling threads share.
struct Puller {
    client: RemotingClient,
    group: String,
    batch: i32,
    stats: ConsumeStats,
    hist: Histogram,
    target: Option<u64>,
    stop: AtomicBool,
}

impl Puller {
    /// Pulls `mq` on `addr` from offset 0 until it is drained, the target is reached or `stop`.
    fn pull_queue(&self, addr: &str, mq: &MessageQueue) -> Result<(), String> {
        let Puller {
            client,
            group,
            batch,
            stats,
            hist,
            target,
            stop,
        } = self;
        let (batch, target) = (*batch, *target);
        let mut offset = 0i64;
        while !stop.load(Ordering::Relaxed) {
            let header = PullMessageRequestHeader {
                consumer_group: group.clone(),
                topic: mq.topic.clone(),
                queue_id: mq.queue_id,
                queue_offset: offset,
                max_msg_nums: batch,
                // SUBSCRIPTION: the broker takes the subscription from this request.
                sys_flag: 0x4,
                commit_offset: 0,
                suspend_timeout_millis: 0,
                subscription: Some("*".to_owned()),
                sub_version: 0,
                expression_type: Some("TAG".to_owned()),
                bname: Some(mq.broker_name.clone()),
            };
            let req = RemotingCommand::request_with_header(RequestCode::PULL_MESSAGE, &header);
            let resp = client
                .invoke_sync(addr, req, RPC_TIMEOUT)
                .map_err(|e| format!("pull of {mq}: {e}"))?;
            let code = resp.response_code();
            let rh: PullMessageResponseHeader = resp
                .decode_header()
                .map_err(|e| format!("pull of {mq}: {e}"))?;
            match code {
                ResponseCode::SUCCESS => {
                    let msgs = MessageDecoder::decodes(resp.body().cloned().unwrap_or_default());
                    if stats.on_batch(&msgs, hist, target)
                        || target.is_some_and(|t| stats.count.load(Ordering::Acquire) >= t)
                    {
                        stop.store(true, Ordering::Relaxed);
                    }
                    if rh.next_begin_offset <= offset && msgs.is_empty() {
                        return Err(format!("pull of {mq} at {offset}: FOUND but no message"));
                    }
                    offset = rh.next_begin_offset;
                }
                ResponseCode::PULL_NOT_FOUND
                | ResponseCode::PULL_RETRY_IMMEDIATELY
                | ResponseCode::PULL_OFFSET_MOVED
                    if rh.next_begin_offset > offset =>
                {
                    offset = rh.next_begin_offset
                }
                // Nothing past `offset`: drained.
                ResponseCode::PULL_NOT_FOUND | ResponseCode::PULL_RETRY_IMMEDIATELY => {
                    return Ok(())
                }
                other => {
                    return Err(format!(
                        "pull of {mq} at {offset}: {other} {}",
                        resp.remark().unwrap_or_default()
                    ))
                }
            }
        }
        Ok(())
    }
}

fn rawpull(common: &Common, group: &str, batch: i32) -> Result<bool, String> {
    if batch < 1 {
        return Err("--batch must be at least 1".to_owned());
    }
    // first_ms counts from here, client start and route included, as the consumer's does.
    let started_ms = now_ms();
    let client =
        RemotingClient::start(RemotingClientConfig::default()).map_err(|e| e.to_string())?;
    let queues = read_queues(&client, &common.namesrv()?, &common.topic)?;
    let puller = Arc::new(Puller {
        client,
        group: group.to_owned(),
        batch,
        stats: ConsumeStats::default(),
        hist: Histogram::new(),
        target: common.count,
        stop: AtomicBool::new(false),
    });
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
    let started = Instant::now();
    // One thread per queue, each with one pull in flight, as a push consumer keeps one pull
    // in flight per queue.
    let workers: Vec<_> = queues
        .into_iter()
        .map(|(addr, mq)| {
            let (puller, done) = (puller.clone(), done_tx.clone());
            std::thread::Builder::new()
                .name(format!("bench-pull-{}", mq.queue_id))
                .spawn(move || {
                    let r = puller.pull_queue(&addr, &mq);
                    drop(done);
                    r
                })
                .expect("spawn a pulling thread")
        })
        .collect();
    drop(done_tx);
    let mut last = (0, 0, 0);
    let mut status = |secs: f64| puller.stats.print_status(&mut last, secs);
    let last_tick = every_second(&done_rx, common.deadline(started), &mut status);
    puller.stop.store(true, Ordering::Relaxed);
    let mut ok = true;
    for w in workers {
        if let Ok(Err(e)) = w.join() {
            eprintln!("rmq-bench: {e}");
            ok = false;
        }
    }
    status(last_tick.elapsed().as_secs_f64());
    let elapsed = started.elapsed();
    let count = puller.stats.count.load(Ordering::Acquire);
    let extra = puller.stats.drain_extra(started_ms);
    print_summary("rawpull", count, 0, elapsed, &puller.hist, &extra);
    puller.client.shutdown();
    Ok(ok && common.count.is_none_or(|t| count >= t))
}

// ---------------------------------------------------------------------------------------------
// rawsend

/// Sends over one blocking `std::net::TcpStream` with no client machinery. Window 1: encode,
/// write, read the answer, next, on one thread (one wake-up per send). A larger window: one
/// thread writes while fewer than `window` are unanswered, another reads the answers.
fn rawsend(common: &Common, size: usize, group: &str, window: usize) -> Result<bool, String> {
    if window == 0 {
        return Err("--window must be at least 1".to_owned());
    }
    let namesrv = common.namesrv()?;
    ensure_topic(&namesrv, &common.topic, 8)?;
    let client =
        RemotingClient::start(RemotingClientConfig::default()).map_err(|e| e.to_string())?;
    let mut targets = topic_queues(&client, &namesrv, &common.topic, true)?;
    client.shutdown();
    drop(client);
    // One broker: the floor is one connection's.
    let addr = targets
        .first()
        .ok_or("the topic has no writable queue")?
        .0
        .clone();
    targets.retain(|t| t.0 == addr);
    let sock = std::net::TcpStream::connect(&addr).map_err(|e| format!("{addr}: {e}"))?;
    sock.set_nodelay(true).map_err(|e| e.to_string())?;
    let raw = Arc::new(RawSend {
        topic: common.topic.clone(),
        group: group.to_owned(),
        targets,
        body: Bytes::from(
            (0..size)
                .map(|i| b'a' + (i % 26) as u8)
                .collect::<Vec<u8>>(),
        ),
        count: common.count,
        stats: SendStats::default(),
        hist: Histogram::new(),
        stop: AtomicBool::new(false),
        window: Window::new(window),
        started: Instant::now(),
        sent_at: (0..window * 2).map(|_| AtomicU64::new(0)).collect(),
    });
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
    let mut threads = Vec::new();
    let mut closer = None;
    if window == 1 {
        let (raw, done) = (raw.clone(), done_tx.clone());
        threads.push(spawn_raw("bench-rawsend", move || {
            let _done = done;
            raw.sync_loop(sock)
        })?);
    } else {
        let reader = sock.try_clone().map_err(|e| e.to_string())?;
        closer = Some(sock.try_clone().map_err(|e| e.to_string())?);
        let (raw_w, done_w) = (raw.clone(), done_tx.clone());
        threads.push(spawn_raw("bench-rawsend", move || {
            let _done = done_w;
            raw_w.write_loop(sock)
        })?);
        let (raw_r, done_r) = (raw.clone(), done_tx.clone());
        threads.push(spawn_raw("bench-rawread", move || {
            let _done = done_r;
            raw_r.read_loop(reader)
        })?);
    }
    drop(done_tx);
    let mut last = (0u64, 0u64);
    let mut status = |secs: f64| print_send_status(&raw.stats, &mut last, secs);
    let last_tick = every_second(&done_rx, common.deadline(raw.started), &mut status);
    raw.stop.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    let mut threads = threads.into_iter();
    if let Some(closer) = closer {
        // The writer stops; the reader takes the answers in flight, then is woken from its
        // read by the shutdown.
        if let Some(writer) = threads.next() {
            match writer.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(e),
                Err(_) => errors.push("the rawsend writer panicked".to_owned()),
            }
        }
        if !raw
            .window
            .wait_empty(Instant::now() + Duration::from_secs(30))
        {
            errors.push("answers still missing 30 s after the last send".to_owned());
        }
        let _ = closer.shutdown(std::net::Shutdown::Both);
    }
    for t in threads {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(e),
            Err(_) => errors.push("a rawsend thread panicked".to_owned()),
        }
    }
    status(last_tick.elapsed().as_secs_f64());
    let ok = raw.stats.ok.load(Ordering::Acquire);
    let failed = raw.stats.response_failed.load(Ordering::Acquire);
    print_summary("rawsend", ok, failed, raw.started.elapsed(), &raw.hist, "");
    for e in &errors {
        eprintln!("rmq-bench: {e}");
    }
    Ok(errors.is_empty() && failed == 0 && common.count.is_none_or(|c| ok >= c))
}

fn spawn_raw(
    name: &str,
    f: impl FnOnce() -> Result<(), String> + Send + 'static,
) -> Result<std::thread::JoinHandle<Result<(), String>>, String> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .map_err(|e| e.to_string())
}

/// What rawsend's threads share.
struct RawSend {
    topic: String,
    group: String,
    targets: Vec<(String, MessageQueue)>,
    body: Bytes,
    count: Option<u64>,
    stats: SendStats,
    hist: Histogram,
    stop: AtomicBool,
    window: Window,
    started: Instant,
    /// Send time (µs since `started`) by opaque, modulo its length: twice the window, so a
    /// slot is read before it is reused.
    sent_at: Vec<AtomicU64>,
}

impl RawSend {
    /// The `i`-th request, and its encoded frame.
    fn frame(&self, i: u64) -> Result<(i32, Bytes), String> {
        let (_, mq) = &self.targets[i as usize % self.targets.len()];
        let header = SendMessageRequestHeader {
            producer_group: self.group.clone(),
            topic: self.topic.clone(),
            default_topic: "TBW102".to_owned(),
            default_topic_queue_nums: 4,
            queue_id: mq.queue_id,
            born_timestamp: now_ms(),
            properties: Some("TAGS\u{1}TagA\u{2}WAIT\u{1}true\u{2}".to_owned()),
            bname: Some(mq.broker_name.clone()),
            ..Default::default()
        };
        let req = RemotingCommand::request_with_header(
            RequestCode::SEND_MESSAGE_V2,
            &SendMessageRequestHeaderV2::from(&header),
        )
        .with_body(self.body.clone());
        let bytes = req.encode_to_bytes().map_err(|e| e.to_string())?;
        Ok((req.opaque(), bytes))
    }

    fn more(&self, i: u64) -> bool {
        !self.stop.load(Ordering::Relaxed) && self.count.is_none_or(|c| i < c)
    }

    fn answered(&self, resp: &RemotingCommand, rt: Duration) {
        if resp.response_code() == ResponseCode::SUCCESS {
            self.stats.ok(&self.hist, rt);
        } else {
            self.stats.response_failed.fetch_add(1, Ordering::Release);
        }
    }

    fn sync_loop(&self, mut sock: std::net::TcpStream) -> Result<(), String> {
        let mut buf = Vec::new();
        let mut i = 0;
        while self.more(i) {
            let t = Instant::now();
            let (_, frame) = self.frame(i)?;
            sock.write_all(&frame).map_err(|e| format!("write: {e}"))?;
            let resp = read_frame(&mut sock, &mut buf)?;
            self.answered(&resp, t.elapsed());
            i += 1;
        }
        Ok(())
    }

    fn write_loop(&self, mut sock: std::net::TcpStream) -> Result<(), String> {
        let mut i = 0;
        while self.more(i) {
            self.window.acquire();
            let (opaque, frame) = self.frame(i)?;
            let slot = &self.sent_at[opaque as u32 as usize % self.sent_at.len()];
            slot.store(self.started.elapsed().as_micros() as u64, Ordering::Release);
            sock.write_all(&frame).map_err(|e| format!("write: {e}"))?;
            i += 1;
        }
        Ok(())
    }

    fn read_loop(&self, mut sock: std::net::TcpStream) -> Result<(), String> {
        let mut buf = Vec::new();
        let mut read = 0;
        while self.count.is_none_or(|c| read < c) {
            let resp = match read_frame(&mut sock, &mut buf) {
                Ok(resp) => resp,
                Err(_) if self.stop.load(Ordering::Relaxed) => break,
                Err(e) => return Err(e),
            };
            let slot = &self.sent_at[resp.opaque() as u32 as usize % self.sent_at.len()];
            let sent = slot.load(Ordering::Acquire);
            let now = self.started.elapsed().as_micros() as u64;
            self.answered(&resp, Duration::from_micros(now.saturating_sub(sent)));
            self.window.release();
            read += 1;
        }
        Ok(())
    }
}

/// Reads one length-prefixed frame.
fn read_frame(
    sock: &mut std::net::TcpStream,
    buf: &mut Vec<u8>,
) -> Result<RemotingCommand, String> {
    let mut len = [0u8; 4];
    sock.read_exact(&mut len)
        .map_err(|e| format!("read: {e}"))?;
    buf.resize(u32::from_be_bytes(len) as usize, 0);
    sock.read_exact(buf).map_err(|e| format!("read: {e}"))?;
    RemotingCommand::decode(Bytes::copy_from_slice(buf)).map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------------
// latency

/// A latency message's body starts with three little-endian words: the run's id, the sequence
/// number, and the send time in microseconds on the run's monotonic clock. Padding fills it to
/// `-s` bytes.
const STAMP_LEN: usize = 24;
/// A sequence number with this bit set is a warm-up message for the queue whose index (in the
/// run's queue list) is in the low bits: it is not measured, it shows that the consumer takes
/// messages from that queue.
const WARM_UP: u64 = 1 << 63;
/// How long the consumer has to take a warm-up message from every queue.
const SETTLE: Duration = Duration::from_secs(60);
/// A queue whose warm-up has not arrived after this long gets another one (a push consumer may
/// have started past the first one).
const WARM_UP_AGAIN: Duration = Duration::from_secs(1);
/// How long after the last send the run waits for the last messages.
const DRAIN: Duration = Duration::from_secs(10);
/// The floor's long-poll suspend time (a push consumer's default) and its RPC timeout.
const FLOOR_SUSPEND: Duration = Duration::from_secs(15);
const FLOOR_RPC_TIMEOUT: Duration = Duration::from_secs(30);
/// More measured messages than this in one run is refused (the duplicate bitmap is one bit each).
const MAX_LATENCY_MESSAGES: u64 = 1 << 32;

fn stamp_body(run_id: u64, seq: u64, sent_us: u64, size: usize) -> Bytes {
    let mut b = Vec::with_capacity(size);
    b.extend_from_slice(&run_id.to_le_bytes());
    b.extend_from_slice(&seq.to_le_bytes());
    b.extend_from_slice(&sent_us.to_le_bytes());
    b.resize(size, b'x');
    b.into()
}

/// What the sender, the consumer (listener or floor threads) and the status lines share.
struct LatencyRun {
    /// The stamps' clock: microseconds since this instant.
    base: Instant,
    /// Tells this run's messages from others' on the same topic.
    run_id: u64,
    topic: String,
    size: usize,
    queues: Vec<MessageQueue>,
    warmed: Box<[AtomicBool]>,
    warmed_count: AtomicU64,
    /// Bit `seq` is set once message `seq` was measured; a second delivery is a duplicate.
    seen: Box<[AtomicU64]>,
    hist: Histogram,
    measured: AtomicU64,
    duplicates: AtomicU64,
    lat_total_us: AtomicU64,
    lat_max_us: AtomicU64,
    s2c_total_ms: AtomicU64,
    s2c_max_ms: AtomicU64,
    /// Nudged, never blocking, when a message was measured or a queue warmed up.
    progress: (
        crossbeam_channel::Sender<()>,
        crossbeam_channel::Receiver<()>,
    ),
    send: SendStats,
}

impl LatencyRun {
    fn now_us(&self) -> u64 {
        self.base.elapsed().as_micros() as u64
    }

    /// Message `seq`, stamped now.
    fn message(&self, seq: u64) -> Message {
        let body = stamp_body(self.run_id, seq, self.now_us(), self.size);
        Message::new(self.topic.clone(), body).with_tags("latency")
    }

    /// `(seq, sent_us)` of a message of this run.
    fn stamp(&self, body: &[u8]) -> Option<(u64, u64)> {
        let word = |i: usize| {
            body.get(i * 8..i * 8 + 8)
                .map(|w| u64::from_le_bytes(w.try_into().expect("eight bytes")))
        };
        (word(0)? == self.run_id).then_some((word(1)?, word(2)?))
    }

    /// Measures the messages that reached the consumer at `at_us`; other runs' are skipped.
    fn on_batch(&self, msgs: &[MessageExt], at_us: u64) {
        let now = now_ms();
        let (mut n, mut total, mut max, mut s2c, mut s2c_max) = (0u64, 0u64, 0u64, 0u64, 0u64);
        let mut nudge = false;
        for m in msgs {
            let Some((seq, sent_us)) = self.stamp(m.body()) else {
                continue;
            };
            if seq & WARM_UP != 0 {
                let first = self
                    .warmed
                    .get((seq & !WARM_UP) as usize)
                    .is_some_and(|w| !w.swap(true, Ordering::AcqRel));
                if first {
                    self.warmed_count.fetch_add(1, Ordering::AcqRel);
                    nudge = true;
                }
                continue;
            }
            let Some(word) = self.seen.get((seq / 64) as usize) else {
                continue;
            };
            let bit = 1 << (seq % 64);
            if word.fetch_or(bit, Ordering::AcqRel) & bit != 0 {
                self.duplicates.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let us = at_us.saturating_sub(sent_us);
            self.hist.record(us);
            let s = (now - m.store_timestamp()).max(0) as u64;
            n += 1;
            total += us;
            max = max.max(us);
            s2c += s;
            s2c_max = s2c_max.max(s);
        }
        if n > 0 {
            self.lat_total_us.fetch_add(total, Ordering::Relaxed);
            self.lat_max_us.fetch_max(max, Ordering::Relaxed);
            self.s2c_total_ms.fetch_add(s2c, Ordering::Relaxed);
            self.s2c_max_ms.fetch_max(s2c_max, Ordering::Relaxed);
            self.measured.fetch_add(n, Ordering::AcqRel);
            nudge = true;
        }
        if nudge {
            let _ = self.progress.0.try_send(());
        }
    }

    /// Sends a warm-up message to every queue that has not had one consumed, again each
    /// [`WARM_UP_AGAIN`], until all have or [`SETTLE`] runs out.
    fn settle(&self, producer: &DefaultMQProducer) -> Result<(), String> {
        let deadline = Instant::now() + SETTLE;
        let n = self.queues.len() as u64;
        loop {
            for (i, mq) in self.queues.iter().enumerate() {
                if self.warmed[i].load(Ordering::Acquire) {
                    continue;
                }
                // A failed warm-up is sent again at the next round; the deadline bounds them.
                if let Err(e) = producer.send_to_queue(&self.message(WARM_UP | i as u64), mq) {
                    eprintln!("rmq-bench: warm-up send to {mq}: {e}");
                }
            }
            let again = (Instant::now() + WARM_UP_AGAIN).min(deadline);
            while self.warmed_count.load(Ordering::Acquire) < n {
                if self.progress.1.recv_deadline(again).is_err() {
                    break;
                }
            }
            let warmed = self.warmed_count.load(Ordering::Acquire);
            if warmed == n {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the consumer took a warm-up message from {warmed} of {n} queues in {SETTLE:?}"
                ));
            }
        }
    }

    /// Sends messages `0..total` with `mode`, message `i` at `start + i / rate` (late ones at
    /// once: the schedule does not drift) and none due at or after `end`. Returns how many the
    /// client accepted.
    fn send_paced(
        &self,
        producer: &DefaultMQProducer,
        mode: StampedSend,
        rate: f64,
        total: u64,
        end: Option<Instant>,
    ) -> u64 {
        let start = Instant::now();
        for seq in 0..total {
            let due = start + Duration::from_secs_f64(seq as f64 / rate);
            if end.is_some_and(|e| due >= e) {
                break;
            }
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let msg = self.message(seq);
            let t = Instant::now();
            let sent = match mode {
                StampedSend::Sync => producer.send(&msg).map(|_| ()),
                StampedSend::Oneway => producer.send_oneway(&msg),
            };
            match sent {
                Ok(()) => self.send.ok_rt(t.elapsed()),
                Err(e) => self.send.failed(&e),
            }
        }
        self.send.ok.load(Ordering::Acquire)
    }

    /// Waits until `accepted` messages were measured, for at most [`DRAIN`].
    fn drain(&self, accepted: u64) {
        let deadline = Instant::now() + DRAIN;
        while self.measured.load(Ordering::Acquire) < accepted {
            if self.progress.1.recv_deadline(deadline) == Err(RecvTimeoutError::Timeout) {
                return;
            }
        }
    }

    /// Java's send and consume status lines over the second since `last`; B2C is the
    /// send-to-listener latency measured here.
    fn print_status(&self, last: &mut [u64; 5], secs: f64) {
        let ok = self.send.ok.load(Ordering::Acquire);
        let rt = self.send.rt_total_us.load(Ordering::Relaxed);
        let measured = self.measured.load(Ordering::Acquire);
        let lat = self.lat_total_us.load(Ordering::Relaxed);
        let s2c = self.s2c_total_ms.load(Ordering::Relaxed);
        let avg = |total: u64, prev: u64, n: u64| {
            if n == 0 {
                0.0
            } else {
                (total - prev) as f64 / n as f64
            }
        };
        let (d_ok, d_measured) = (ok - last[0], measured - last[2]);
        println!(
            "Send TPS: {} Max RT(ms): {} Average RT(ms): {:.3} Send Failed: {} Response Failed: {}",
            rate(d_ok, secs),
            self.send.rt_max_us.load(Ordering::Relaxed) / 1000,
            avg(rt, last[1], d_ok) / 1000.0,
            self.send.send_failed.load(Ordering::Relaxed),
            self.send.response_failed.load(Ordering::Relaxed),
        );
        println!(
            "Consume TPS: {} Average(B2C) RT(ms): {:.3} Average(S2C) RT(ms): {:.3} MAX(B2C) RT(ms): {} MAX(S2C) RT(ms): {}",
            rate(d_measured, secs),
            avg(lat, last[3], d_measured) / 1000.0,
            avg(s2c, last[4], d_measured),
            self.lat_max_us.load(Ordering::Relaxed) / 1000,
            self.s2c_max_ms.load(Ordering::Relaxed),
        );
        *last = [ok, rt, measured, lat, s2c];
    }
}

/// The floor's consumer: one long poll in flight per queue, each on its own thread, with
/// nothing between the response and the measurement.
fn floor_pull(
    client: &RemotingClient,
    addr: &str,
    mq: &MessageQueue,
    group: &str,
    run: &LatencyRun,
    stop: &AtomicBool,
    ready: crossbeam_channel::Sender<()>,
) -> Result<(), String> {
    let header = GetMaxOffsetRequestHeader {
        topic: mq.topic.clone(),
        queue_id: mq.queue_id,
        bname: Some(mq.broker_name.clone()),
    };
    let req = RemotingCommand::request_with_header(RequestCode::GET_MAX_OFFSET, &header);
    let resp = client
        .invoke_sync(addr, req, RPC_TIMEOUT)
        .map_err(|e| format!("max offset of {mq}: {e}"))?;
    if resp.response_code() != ResponseCode::SUCCESS {
        return Err(format!(
            "max offset of {mq}: {} {}",
            resp.response_code(),
            resp.remark().unwrap_or_default()
        ));
    }
    let mut offset = resp
        .decode_header::<GetMaxOffsetResponseHeader>()
        .map_err(|e| format!("max offset of {mq}: {e}"))?
        .offset;
    // From here on, whatever is sent to the queue is pulled.
    let _ = ready.send(());
    drop(ready);
    while !stop.load(Ordering::Acquire) {
        let header = PullMessageRequestHeader {
            consumer_group: group.to_owned(),
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
            queue_offset: offset,
            max_msg_nums: 32,
            // SUSPEND | SUBSCRIPTION: the broker holds the pull until a message arrives, and
            // takes the subscription from this request.
            sys_flag: 0x2 | 0x4,
            commit_offset: 0,
            suspend_timeout_millis: FLOOR_SUSPEND.as_millis() as i64,
            subscription: Some("*".to_owned()),
            sub_version: 0,
            expression_type: Some("TAG".to_owned()),
            bname: Some(mq.broker_name.clone()),
        };
        let req = RemotingCommand::request_with_header(RequestCode::PULL_MESSAGE, &header);
        let resp = match client.invoke_sync(addr, req, FLOOR_RPC_TIMEOUT) {
            Ok(resp) => resp,
            // The run is over: the client was shut down under the parked pull.
            Err(_) if stop.load(Ordering::Acquire) => return Ok(()),
            Err(e) => return Err(format!("pull of {mq}: {e}")),
        };
        let at = run.now_us();
        let code = resp.response_code();
        let rh: PullMessageResponseHeader = resp
            .decode_header()
            .map_err(|e| format!("pull of {mq}: {e}"))?;
        match code {
            ResponseCode::SUCCESS => {
                let msgs = MessageDecoder::decodes(resp.body().cloned().unwrap_or_default());
                if rh.next_begin_offset <= offset && msgs.is_empty() {
                    return Err(format!("pull of {mq} at {offset}: FOUND but no message"));
                }
                run.on_batch(&msgs, at);
                offset = rh.next_begin_offset;
            }
            // The suspend time passed with nothing new, or the offset was out of range.
            ResponseCode::PULL_NOT_FOUND
            | ResponseCode::PULL_RETRY_IMMEDIATELY
            | ResponseCode::PULL_OFFSET_MOVED => offset = rh.next_begin_offset,
            other => {
                return Err(format!(
                    "pull of {mq} at {offset}: {other} {}",
                    resp.remark().unwrap_or_default()
                ))
            }
        }
    }
    Ok(())
}

/// The consumer side of a latency run, stopped after the summary.
enum LatencyConsumer {
    Push(DefaultMQPushConsumer),
    Floor {
        client: RemotingClient,
        stop: Arc<AtomicBool>,
        threads: Vec<std::thread::JoinHandle<Result<(), String>>>,
    },
}

impl LatencyConsumer {
    /// Stops it; false when a floor thread had failed.
    fn stop(self) -> bool {
        match self {
            LatencyConsumer::Push(consumer) => {
                let _ = consumer.shutdown(Duration::from_secs(10));
                true
            }
            LatencyConsumer::Floor {
                client,
                stop,
                threads,
            } => {
                stop.store(true, Ordering::Release);
                // Fails the parked pulls at once.
                client.shutdown();
                let mut ok = true;
                for t in threads {
                    if let Ok(Err(e)) = t.join() {
                        eprintln!("rmq-bench: {e}");
                        ok = false;
                    }
                }
                ok
            }
        }
    }
}

fn latency(
    common: &Common,
    group: &str,
    rate: f64,
    size: usize,
    mode: StampedSend,
    floor: bool,
) -> Result<bool, String> {
    if size < STAMP_LEN {
        return Err(format!("-s must be at least {STAMP_LEN} (the stamp)"));
    }
    if !(rate.is_finite() && rate > 0.0) {
        return Err(format!("--rate must be a positive number, got {rate}"));
    }
    // Without a bound the run lasts a minute: its result is the summary at the end.
    let duration = match (common.count, common.duration) {
        (None, None) => Some(60),
        (_, d) => d,
    };
    let by_duration = duration.map(|d| (d as f64 * rate).ceil() as u64);
    let total = match (common.count, by_duration) {
        (Some(c), Some(d)) => c.min(d),
        (Some(n), None) | (None, Some(n)) => n,
        (None, None) => unreachable!("a duration is set when no count is"),
    };
    if total == 0 || total > MAX_LATENCY_MESSAGES {
        return Err(format!(
            "a run measures 1 to {MAX_LATENCY_MESSAGES} messages; --count, --duration and --rate give {total}"
        ));
    }
    let namesrv = common.namesrv()?;
    // A new topic gets 8 queues, as the producer mode's default.
    ensure_topic(&namesrv, &common.topic, 8)?;
    let base = Instant::now();
    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ (u64::from(std::process::id()) << 32);

    let producer = DefaultMQProducer::builder("benchmark_latency_producer")
        .namesrv_addr(namesrv.clone())
        .build()
        .map_err(|e| e.to_string())?;
    producer.start().map_err(|e| e.to_string())?;
    // The topic exists once something was stored in it (a warm-up of no queue: not measured).
    let create = stamp_body(run_id, u64::MAX, 0, size);
    producer
        .send(&Message::new(common.topic.clone(), create))
        .map_err(|e| format!("first send to {}: {e}", common.topic))?;
    let client =
        RemotingClient::start(RemotingClientConfig::default()).map_err(|e| e.to_string())?;
    let queues = read_queues(&client, &namesrv, &common.topic)?;
    let run = Arc::new(LatencyRun {
        base,
        run_id,
        topic: common.topic.clone(),
        size,
        queues: queues.iter().map(|(_, mq)| mq.clone()).collect(),
        warmed: queues.iter().map(|_| AtomicBool::new(false)).collect(),
        warmed_count: AtomicU64::new(0),
        seen: (0..total.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
        hist: Histogram::new(),
        measured: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
        lat_total_us: AtomicU64::new(0),
        lat_max_us: AtomicU64::new(0),
        s2c_total_ms: AtomicU64::new(0),
        s2c_max_ms: AtomicU64::new(0),
        progress: crossbeam_channel::bounded(1),
        send: SendStats::default(),
    });

    let mut floor_ready = run.queues.len();
    let consumer = if floor {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready) = crossbeam_channel::unbounded();
        let threads = queues
            .into_iter()
            .map(|(addr, mq)| {
                let (client, run, stop, group, ready) = (
                    client.clone(),
                    run.clone(),
                    stop.clone(),
                    group.to_owned(),
                    ready_tx.clone(),
                );
                std::thread::Builder::new()
                    .name(format!("bench-floor-{}", mq.queue_id))
                    .spawn(move || floor_pull(&client, &addr, &mq, &group, &run, &stop, ready))
                    .expect("spawn a pulling thread")
            })
            .collect();
        drop(ready_tx);
        // Every thread has its start offset before the warm-ups go out (a thread that failed
        // disconnects instead; its error is reported at the end and the warm-up times out).
        let deadline = Instant::now() + SETTLE;
        let mut n = 0;
        while ready.recv_deadline(deadline).is_ok() {
            n += 1;
        }
        floor_ready = n;
        LatencyConsumer::Floor {
            client,
            stop,
            threads,
        }
    } else {
        // Only the route needed it; its io thread is not the push consumer's.
        client.shutdown();
        let r = run.clone();
        let consumer = DefaultMQPushConsumer::builder(group)
            .namesrv_addr(namesrv)
            .subscribe(common.topic.clone(), "*")
            .consume_from_where(ConsumeFromWhere::LastOffset)
            .register_message_listener_concurrently(
                move |msgs: &[MessageExt], _: &mut ConsumeConcurrentlyContext| {
                    r.on_batch(msgs, r.now_us());
                    ConsumeConcurrentlyStatus::ConsumeSuccess
                },
            )
            .build()
            .map_err(|e| e.to_string())?;
        consumer.start().map_err(|e| e.to_string())?;
        LatencyConsumer::Push(consumer)
    };
    let settling = Instant::now();
    let settled = if floor_ready < run.queues.len() {
        Err(format!(
            "{} of {} floor threads could not start",
            run.queues.len() - floor_ready,
            run.queues.len()
        ))
    } else {
        run.settle(&producer)
    };
    if let Err(e) = settled {
        consumer.stop();
        let _ = producer.shutdown(Duration::from_secs(5));
        return Err(e);
    }
    eprintln!(
        "rmq-bench: {} consumer took a warm-up message from each of {} queues in {:.3} s",
        if floor { "the floor" } else { "the push" },
        run.queues.len(),
        settling.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
    let end = duration.map(|d| started + Duration::from_secs(d));
    let sender = {
        let run = run.clone();
        std::thread::Builder::new()
            .name("bench-send".to_owned())
            .spawn(move || {
                let accepted = run.send_paced(&producer, mode, rate, total, end);
                run.drain(accepted);
                drop(done_tx);
                (producer, accepted)
            })
            .expect("spawn the sending thread")
    };
    let mut last = [0; 5];
    let mut status = |secs: f64| run.print_status(&mut last, secs);
    let last_tick = every_second(&done_rx, None, &mut status);
    let (producer, accepted) = sender.join().map_err(|_| "the sending thread panicked")?;
    status(last_tick.elapsed().as_secs_f64());
    let elapsed = started.elapsed();

    let measured = run.measured.load(Ordering::Acquire);
    let failed = run.send.send_failed.load(Ordering::Acquire)
        + run.send.response_failed.load(Ordering::Acquire);
    // Sampled before the shutdown: the figures are of the running clients.
    print_summary(
        "latency",
        measured,
        failed,
        elapsed,
        &run.hist,
        &format!(" sent={accepted} floor={}", u8::from(floor)),
    );
    let consumer_ok = consumer.stop();
    let _ = producer.shutdown(Duration::from_secs(5));
    let duplicates = run.duplicates.load(Ordering::Relaxed);
    if duplicates > 0 {
        eprintln!("rmq-bench: {duplicates} messages were delivered more than once (measured once)");
    }
    if measured < accepted {
        eprintln!(
            "rmq-bench: {} of {accepted} sent messages were not consumed within {DRAIN:?}",
            accepted - measured
        );
    }
    Ok(consumer_ok
        && failed == 0
        && measured == accepted
        && common.count.is_none_or(|c| measured >= c))
}
