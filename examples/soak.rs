//! Soak: produce and consume together at a steady rate for a long time, and watch the client's
//! resources. A benchmark, not a test; `scripts/soak.sh` runs it against a local cluster.
//!
//! ```text
//! cargo run --release --example soak -- --namesrv 127.0.0.1:9876 --out target/soak
//!     [--minutes 30 | --duration-secs S] [--rate 1000] [--size 128] [--topic T] [--group G]
//!     [--queues 8] [--window 1024] [--sample-secs 10] [--warmup-secs 120] [--tail-secs 60]
//!     [--max-lag N] [--broker-pid PID]
//! cargo run --release --example soak -- --plot DIR/soak.csv [--warmup-secs 120] [--rate R] [--size B]
//! ```
//!
//! One process hosts both clients: a `DefaultMQProducer` sending numbered messages with
//! `send_async` at `--rate` messages per second (at most `--window` in flight), and a
//! `DefaultMQPushConsumer` (the library's defaults, from the first offset) consuming them. Both
//! share the process's `MQClientInstance`, as two clients of one application do.
//!
//! Every `--sample-secs` it writes one row of `DIR/soak.csv`, read from `/proc/self`: resident
//! memory, threads, open file descriptors and CPU time of the process, and the accounting:
//! - `produced`: sends the broker acknowledged; `send_failed`: sends answered with an error;
//!   `in_doubt`: sends that timed out or lost their connection (maybe stored, maybe not:
//!   counted nowhere else);
//! - `consumed`: distinct numbered messages delivered; `duplicates`: deliveries beyond the
//!   first (the summary splits them into copies the producer stored twice, a send retried
//!   after a timeout, and redeliveries by the consumer);
//! - `heap_kib`: the live heap, counted by a wrapper around the system allocator: it tells a
//!   leak (the heap grows) from pages the allocator keeps (RSS grows alone);
//! - `lag`: `produced - consumed`, what the application is behind (a message or two below 0
//!   at times: a message can be consumed before the callback of its send has run);
//! - `committed_lag`: over every queue, the highest acknowledged queue offset + 1 minus the
//!   consumer's locally committed offset (the offset it persists to the broker every 5 s):
//!   the lag a console shows, give or take that interval.
//!
//! After `--minutes` it stops sending, waits up to `--tail-secs` for every acknowledged
//! message to be consumed, then counts the **lost** (acknowledged, never consumed). It draws
//! `DIR/soak.png` (RSS, threads and fds, lag, throughput over time), writes `DIR/summary.txt`
//! and prints it. The targets, with warm-up the first `--warmup-secs` and the production phase
//! only (the tail has no traffic):
//! - RSS flat: every sample after warm-up within 10% of the first sample after warm-up;
//! - threads and file descriptors constant after warm-up;
//! - lag bounded: never above `--max-lag` (default: 10 s of traffic);
//! - 0 lost.
//!
//! The exit code is 0 when every target is met, 1 when one is not, 2 for bad flags.
//! `--plot CSV` only redraws the PNG beside a CSV written earlier.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use rocketmq_sync::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, ConsumeFromWhere, DefaultMQProducer,
    DefaultMQPushConsumer, Error, Message, MessageExt, MessageQueue, SendResult,
};

const KEY_PREFIX: &[u8] = b"seq-";

/// The system allocator, counting the bytes allocated and not yet freed: the live heap, which
/// tells a leak (the heap grows) from the allocator keeping freed pages (RSS grows alone).
struct CountingAlloc;

static LIVE_HEAP: AtomicI64 = AtomicI64::new(0);

// SAFETY: every call goes to the system allocator with the caller's arguments unchanged; the
// counter is only arithmetic on the sizes.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is (see above).
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE_HEAP.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE_HEAP.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_HEAP.fetch_sub(layout.size() as i64, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE_HEAP.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;
const USAGE: &str = "usage: soak --namesrv ADDR --out DIR [--minutes M | --duration-secs S] [--rate R] [--size B] [--topic T] [--group G] [--queues N] [--window W] [--sample-secs S] [--warmup-secs S] [--tail-secs S] [--max-lag N] [--broker-pid PID]\n       soak --plot CSV [--warmup-secs S] [--rate R] [--size B]";

#[derive(Clone)]
struct Args {
    namesrv: String,
    out: PathBuf,
    topic: String,
    group: String,
    rate: u64,
    size: usize,
    duration: Duration,
    queues: i32,
    window: usize,
    sample: Duration,
    warmup: Duration,
    tail: Duration,
    max_lag: Option<i64>,
    broker_pid: Option<u32>,
    plot: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut a = Args {
        namesrv: std::env::var("NAMESRV_ADDR").unwrap_or_default(),
        out: PathBuf::new(),
        // A fresh topic and group per run: a run never inherits another's backlog or offsets.
        topic: format!("SoakTopic_{stamp}"),
        group: format!("SoakGroup_{stamp}"),
        // About 70% of what the rocketmq-rust 1.0.0 broker stores from one client on a 2-core
        // machine that it shares (~1.4k msg/s of 128 B): steady, with room for stalls.
        rate: 1000,
        size: 128,
        duration: Duration::from_secs(30 * 60),
        queues: 8,
        window: 1024,
        sample: Duration::from_secs(10),
        warmup: Duration::from_secs(120),
        tail: Duration::from_secs(60),
        max_lag: None,
        broker_pid: None,
        plot: None,
    };
    fn num<T: std::str::FromStr>(flag: &str, v: String) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        v.parse().map_err(|e| format!("{flag}: {e}"))
    }
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--namesrv" => a.namesrv = value()?,
            "--out" => a.out = PathBuf::from(value()?),
            "--topic" => a.topic = value()?,
            "--group" => a.group = value()?,
            "--rate" => a.rate = num(&flag, value()?)?,
            "--size" => a.size = num(&flag, value()?)?,
            "--minutes" => {
                let m: f64 = num(&flag, value()?)?;
                if !(m > 0.0 && m.is_finite()) {
                    return Err(format!("--minutes must be positive, not {m}"));
                }
                a.duration = Duration::from_secs_f64(m * 60.0);
            }
            "--duration-secs" => a.duration = Duration::from_secs(num(&flag, value()?)?),
            "--queues" => a.queues = num(&flag, value()?)?,
            "--window" => a.window = num(&flag, value()?)?,
            "--sample-secs" => a.sample = Duration::from_secs(num(&flag, value()?)?),
            "--warmup-secs" => a.warmup = Duration::from_secs(num(&flag, value()?)?),
            "--tail-secs" => a.tail = Duration::from_secs(num(&flag, value()?)?),
            "--max-lag" => a.max_lag = Some(num(&flag, value()?)?),
            "--broker-pid" => a.broker_pid = Some(num(&flag, value()?)?),
            "--plot" => a.plot = Some(PathBuf::from(value()?)),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.plot.is_some() {
        return Ok(a);
    }
    if a.namesrv.is_empty() || a.out.as_os_str().is_empty() {
        return Err("--namesrv (or NAMESRV_ADDR) and --out are required".to_owned());
    }
    if a.rate == 0 || a.window == 0 || a.sample.is_zero() || a.duration.is_zero() {
        return Err("--rate, --window, --sample-secs and the duration must be positive".to_owned());
    }
    if a.size < 32 {
        return Err(format!(
            "--size must be at least 32 bytes (the message number), not {}",
            a.size
        ));
    }
    if !(1..=1024).contains(&a.queues) {
        return Err(format!("--queues must be 1..=1024, not {}", a.queues));
    }
    if a.warmup >= a.duration {
        return Err(format!(
            "--warmup-secs ({}) must be shorter than the run ({} s)",
            a.warmup.as_secs(),
            a.duration.as_secs()
        ));
    }
    Ok(a)
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("{e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let outcome = match &args.plot {
        Some(csv) => replot(&args, csv).map(|()| true),
        None => run(&args),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The accounting: one bit per message number, so that its memory is fixed from the start and
// does not show up as growth in the RSS the soak measures.

struct Bits {
    words: Box<[AtomicU64]>,
}

impl Bits {
    fn new(bits: u64) -> Bits {
        // black_box: written word by word, never turned into a lazily zeroed allocation
        // (malloc + memset into calloc), so every page is resident from the start.
        let words: Box<[AtomicU64]> = (0..bits.div_ceil(64))
            .map(|_| AtomicU64::new(std::hint::black_box(0)))
            .collect();
        Bits { words }
    }

    /// Sets bit `i`; true if it was set already.
    fn set(&self, i: u64) -> bool {
        let mask = 1 << (i % 64);
        self.words[(i / 64) as usize].fetch_or(mask, Ordering::AcqRel) & mask != 0
    }
}

struct Account {
    capacity: u64,
    acked: Bits,
    consumed: Bits,
    in_doubt: Bits,
    produced: AtomicU64,
    send_failed: AtomicU64,
    in_doubt_count: AtomicU64,
    consumed_distinct: AtomicU64,
    deliveries: AtomicU64,
    duplicates: AtomicU64,
    /// Deliveries that carry no number of this run (foreign traffic on the topic).
    foreign: AtomicU64,
    started: Instant,
    /// Nanoseconds since `started` of the last delivery, and the longest pause between two.
    last_delivery_ns: AtomicU64,
    worst_gap_ns: AtomicU64,
    /// The highest acknowledged queue offset of each queue the producer has sent to.
    queue_max: RwLock<HashMap<MessageQueue, AtomicI64>>,
}

impl Account {
    fn new(capacity: u64) -> Account {
        Account {
            capacity,
            acked: Bits::new(capacity),
            consumed: Bits::new(capacity),
            in_doubt: Bits::new(capacity),
            produced: AtomicU64::new(0),
            send_failed: AtomicU64::new(0),
            in_doubt_count: AtomicU64::new(0),
            consumed_distinct: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
            started: Instant::now(),
            last_delivery_ns: AtomicU64::new(0),
            worst_gap_ns: AtomicU64::new(0),
            queue_max: RwLock::new(HashMap::new()),
        }
    }

    fn message(topic: &str, n: u64, size: usize) -> Message {
        let mut body = Vec::with_capacity(size);
        body.extend_from_slice(KEY_PREFIX);
        let _ = write!(DigitsInto(&mut body), "{n}");
        body.push(b' ');
        body.resize(size, b'.');
        Message::new(topic, body)
    }

    fn number_of(msg: &MessageExt) -> Option<u64> {
        let rest = msg.body().strip_prefix(KEY_PREFIX)?;
        let end = rest.iter().position(|b| !b.is_ascii_digit())?;
        std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
    }

    fn on_send(&self, n: u64, result: Result<&SendResult, &Error>) {
        match result {
            Ok(r) => {
                self.acked.set(n);
                self.produced.fetch_add(1, Ordering::AcqRel);
                let offset = r.queue_offset();
                let known = self
                    .queue_max
                    .read()
                    .get(r.message_queue())
                    .map(|max| max.fetch_max(offset, Ordering::AcqRel));
                if known.is_none() {
                    self.queue_max
                        .write()
                        .entry(r.message_queue().clone())
                        .or_insert_with(|| AtomicI64::new(-1))
                        .fetch_max(offset, Ordering::AcqRel);
                }
            }
            Err(e) if outcome_unknown(e) => {
                self.in_doubt.set(n);
                self.in_doubt_count.fetch_add(1, Ordering::AcqRel);
            }
            Err(e) => {
                self.send_failed.fetch_add(1, Ordering::AcqRel);
                // The first few are worth seeing; a flood of them shows in the CSV.
                if self.send_failed.load(Ordering::Relaxed) <= 10 {
                    eprintln!("send {n} failed: {e}");
                }
            }
        }
    }

    fn on_delivery(&self, msg: &MessageExt) {
        let now = self.started.elapsed().as_nanos() as u64;
        let last = self.last_delivery_ns.swap(now, Ordering::AcqRel);
        if last != 0 {
            self.worst_gap_ns
                .fetch_max(now.saturating_sub(last), Ordering::AcqRel);
        }
        self.deliveries.fetch_add(1, Ordering::AcqRel);
        match Self::number_of(msg).filter(|&n| n < self.capacity) {
            Some(n) => {
                if self.consumed.set(n) {
                    self.duplicates.fetch_add(1, Ordering::AcqRel);
                } else {
                    self.consumed_distinct.fetch_add(1, Ordering::AcqRel);
                }
            }
            None => {
                self.foreign.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    /// Acknowledged sends never consumed: how many, and the first few numbers.
    fn lost(&self) -> (u64, Vec<u64>) {
        let mut count = 0;
        let mut first = Vec::new();
        for (i, (a, c)) in self
            .acked
            .words
            .iter()
            .zip(&*self.consumed.words)
            .enumerate()
        {
            let mut missing = a.load(Ordering::Acquire) & !c.load(Ordering::Acquire);
            count += u64::from(missing.count_ones());
            while missing != 0 && first.len() < 10 {
                first.push(i as u64 * 64 + u64::from(missing.trailing_zeros()));
                missing &= missing - 1;
            }
        }
        (count, first)
    }

    /// Sends in doubt that were consumed after all (the broker had stored them).
    fn in_doubt_consumed(&self) -> u64 {
        self.in_doubt
            .words
            .iter()
            .zip(&*self.consumed.words)
            .map(|(d, c)| {
                u64::from((d.load(Ordering::Acquire) & c.load(Ordering::Acquire)).count_ones())
            })
            .sum()
    }

    /// Everything acknowledged has been consumed. (Counting distinct deliveries would not do:
    /// a send in doubt that was stored after all is consumed without being acknowledged.)
    fn caught_up(&self) -> bool {
        self.lost().0 == 0
    }
}

/// Formats a number into a byte buffer without an intermediate `String`.
struct DigitsInto<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for DigitsInto<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Whether a failed send may still have been stored by the broker.
fn outcome_unknown(e: &Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(e) = err.downcast_ref::<Error>() {
            if matches!(e, Error::Timeout { .. } | Error::ConnectionClosed { .. }) {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

// ---------------------------------------------------------------------------------------------
// The run

/// What the producer thread reports when it is done.
struct Produced {
    /// The next unused message number: numbers below it were sent.
    next: u64,
    /// Time spent waiting for a free place in the window: the broker was slower than the rate.
    waited: Duration,
    /// Time spent in `send_async` calls, and how many calls.
    in_calls: Duration,
    calls: u64,
}

/// Sends numbered messages from `first` on at `rate` per second until `end`, keeping at most
/// `window` in flight.
fn produce(
    producer: &DefaultMQProducer,
    account: &Arc<Account>,
    args: &Args,
    first: u64,
    end: Instant,
    behind: &AtomicU64,
) -> Produced {
    let (permit_tx, permit_rx) = crossbeam_channel::bounded::<()>(args.window);
    for _ in 0..args.window {
        permit_tx
            .send(())
            .expect("the channel has room for every permit");
    }
    let started = Instant::now();
    let mut n = first;
    // Messages the schedule dropped: after a stall the producer catches up by at most one
    // second's worth, instead of bursting the whole backlog.
    let mut dropped = 0u64;
    let (mut waited, mut in_calls) = (Duration::ZERO, Duration::ZERO);
    'run: loop {
        let now = Instant::now();
        if now >= end || n >= account.capacity {
            break;
        }
        let mut due = first + scheduled(now - started, args.rate) - dropped;
        if due > n + args.rate {
            dropped += due - n - args.rate;
            due = n + args.rate;
            behind.store(dropped, Ordering::Release);
        }
        while n < due.min(account.capacity) {
            let wait = Instant::now();
            if permit_rx.recv_deadline(end).is_err() {
                break 'run;
            }
            let call = Instant::now();
            waited += call - wait;
            let msg = Account::message(&args.topic, n, args.size);
            let acc = account.clone();
            let tx = permit_tx.clone();
            let number = n;
            let sent = producer.send_async(&msg, move |r| {
                acc.on_send(number, r.as_ref());
                let _ = tx.send(());
            });
            if let Err(e) = sent {
                account.on_send(n, Err(&e));
                let _ = permit_tx.send(());
            }
            in_calls += call.elapsed();
            n += 1;
        }
        // Pacing the load generator, not synchronisation: the next batch is due in ~1 ms.
        thread::sleep(Duration::from_millis(1));
    }
    // Every permit back: every callback has run.
    let drain_until = Instant::now() + Duration::from_secs(60);
    for _ in 0..args.window {
        if permit_rx.recv_deadline(drain_until).is_err() {
            eprintln!("soak: some send callbacks had not run 60 s after the last send");
            break;
        }
    }
    Produced {
        next: n,
        waited,
        in_calls,
        calls: n - first,
    }
}

/// Messages the broker stored that the consumer has consumed: on a fresh topic, whose queues
/// start at offset 0, the sum of the committed offsets (the next offset to consume). Once
/// everything is consumed that is every copy the broker stored, so it tells the two kinds of
/// duplicate apart: `stored - distinct` copies stored twice by the producer (a send retried
/// after a timeout although its first attempt had been stored), `deliveries - stored`
/// deliveries of one stored copy more than once by the consumer.
fn stored_and_consumed(consumer: &DefaultMQPushConsumer, account: &Account) -> u64 {
    let sum = || -> u64 {
        consumer
            .queue_stats()
            .iter()
            .map(|q| q.commit_offset.max(0) as u64)
            .sum()
    };
    // The offset of the last message is committed just after its listener returns: wait a
    // moment for it (without redeliveries, the sum reaches the deliveries).
    let deadline = Instant::now() + Duration::from_secs(3);
    let deliveries = account.deliveries.load(Ordering::Acquire);
    let mut stored = sum();
    while stored < deliveries && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
        stored = sum();
    }
    stored
}

/// Messages due `elapsed` into the run at `rate` per second.
fn scheduled(elapsed: Duration, rate: u64) -> u64 {
    (elapsed.as_secs_f64() * rate as f64) as u64
}

fn run(args: &Args) -> Result<bool, Box<dyn std::error::Error>> {
    fs::create_dir_all(&args.out)?;
    let csv_path = args.out.join("soak.csv");
    let mut csv = BufWriter::new(File::create(&csv_path)?);
    writeln!(csv, "{}", Sample::HEADER)?;
    let clk_tck = clock_ticks_per_second();

    // Room for every message of the run plus a margin; allocated and zeroed up front.
    let capacity = scheduled(args.duration, args.rate) + args.rate + 16;
    let account = Arc::new(Account::new(capacity));

    let producer = DefaultMQProducer::builder(format!("{}_producer", args.group))
        .namesrv_addr(args.namesrv.clone())
        .default_topic_queue_nums(args.queues)
        .build()?;
    producer.start()?;
    // Message 0 creates the topic (the broker auto-creates it), so that the consumer finds
    // its route at once.
    let created = Instant::now();
    loop {
        match producer.send(&Account::message(&args.topic, 0, args.size)) {
            Ok(r) => {
                account.on_send(0, Ok(&r));
                break;
            }
            Err(e) if created.elapsed() < Duration::from_secs(30) => {
                eprintln!("soak: creating topic {}: {e}; trying again", args.topic);
                thread::sleep(Duration::from_secs(1));
            }
            Err(e) => return Err(format!("could not create topic {}: {e}", args.topic).into()),
        }
    }

    let listener = account.clone();
    let consumer = DefaultMQPushConsumer::builder(args.group.clone())
        .namesrv_addr(args.namesrv.clone())
        .subscribe(args.topic.clone(), "*")
        .consume_from_where(ConsumeFromWhere::FirstOffset)
        .register_message_listener_concurrently(
            move |msgs: &[MessageExt], _ctx: &mut ConsumeConcurrentlyContext| {
                for m in msgs {
                    listener.on_delivery(m);
                }
                ConsumeConcurrentlyStatus::ConsumeSuccess
            },
        )
        .build()?;
    consumer.start()?;

    let t0 = Instant::now();
    let end = t0 + args.duration;
    let behind = Arc::new(AtomicU64::new(0));
    let producing = Arc::new(AtomicBool::new(true));
    let producer = Arc::new(producer);
    let sender = {
        let (producer, account, behind, producing) = (
            producer.clone(),
            account.clone(),
            behind.clone(),
            producing.clone(),
        );
        let args = args.clone();
        thread::Builder::new()
            .name("soak-producer".into())
            .spawn(move || {
                let next = produce(&producer, &account, &args, 1, end, &behind);
                producing.store(false, Ordering::Release);
                next
            })?
    };

    eprintln!(
        "soak: {} msg/s of {} B to {} for {:.1} min; samples every {} s into {}",
        args.rate,
        args.size,
        args.topic,
        args.duration.as_secs_f64() / 60.0,
        args.sample.as_secs(),
        csv_path.display()
    );
    // Room for every sample from the start: the soak's own memory stays flat.
    let mut samples = Vec::with_capacity(
        ((args.duration + args.tail).as_secs() / args.sample.as_secs().max(1)) as usize + 16,
    );
    let sample_now = |phase: &'static str| {
        Sample::take(
            t0,
            phase,
            &account,
            &consumer,
            clk_tck,
            args.broker_pid,
            behind.load(Ordering::Acquire),
        )
    };
    // Production phase: one sample every interval, on the interval.
    let mut k = 0u32;
    while producing.load(Ordering::Acquire) {
        let at = t0 + args.sample * k;
        let now = Instant::now();
        if at > now {
            thread::sleep((at - now).min(Duration::from_millis(200)));
            continue;
        }
        let s = sample_now("run");
        s.progress();
        writeln!(csv, "{}", s.csv_row())?;
        csv.flush()?;
        samples.push(s);
        k += 1;
    }
    let produced = sender.join().map_err(|_| "the producer thread panicked")?;
    let sent = produced.next;
    let production_end = t0.elapsed();

    // Tail: no more sends; wait for the last acknowledged messages to be consumed.
    let tail_end = Instant::now() + args.tail;
    let mut next_sample = Instant::now();
    while !account.caught_up() && Instant::now() < tail_end {
        if Instant::now() >= next_sample {
            let s = sample_now("tail");
            s.progress();
            writeln!(csv, "{}", s.csv_row())?;
            samples.push(s);
            next_sample += args.sample;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let caught_up_after = t0.elapsed() - production_end;
    let last = sample_now("end");
    writeln!(csv, "{}", last.csv_row())?;
    csv.flush()?;
    samples.push(last);

    let (lost, first_lost) = account.lost();
    let in_doubt_consumed = account.in_doubt_consumed();
    let stored = stored_and_consumed(&consumer, &account);
    consumer.shutdown(Duration::from_secs(10))?;
    producer.shutdown(Duration::from_secs(10))?;

    let png = args.out.join("soak.png");
    let title = plot_title(args.size, &samples);
    plot(&samples, args.warmup, &title, &png)?;

    let summary = summarize(
        args,
        &samples,
        &account,
        Totals {
            sent,
            lost,
            first_lost,
            in_doubt_consumed,
            caught_up_after,
            produced,
            stored,
        },
    );
    fs::write(args.out.join("summary.txt"), &summary.text)?;
    print!("{}", summary.text);
    println!("CSV: {}", csv_path.display());
    println!("PNG: {}", png.display());
    Ok(summary.all_met)
}

// ---------------------------------------------------------------------------------------------
// Samples

/// One row of the CSV.
#[derive(Clone, Debug, Default)]
struct Sample {
    time_s: f64,
    /// `run` while producing, `tail` while waiting for the last messages, `end` for the last.
    phase: String,
    rss_kib: u64,
    /// Live heap bytes / 1024 (absent in CSVs of earlier versions).
    heap_kib: Option<u64>,
    threads: u64,
    fds: u64,
    cpu_s: f64,
    produced: u64,
    consumed: u64,
    deliveries: u64,
    duplicates: u64,
    send_failed: u64,
    in_doubt: u64,
    lag: i64,
    committed_lag: i64,
    cached: u64,
    held_queues: u64,
    schedule_dropped: u64,
    broker_rss_kib: Option<u64>,
    broker_cpu_s: Option<f64>,
    load1: f64,
}

impl Sample {
    const HEADER: &'static str = "time_s,phase,rss_kib,heap_kib,threads,fds,cpu_s,produced,consumed,deliveries,duplicates,send_failed,in_doubt,lag,committed_lag,cached,held_queues,schedule_dropped,broker_rss_kib,broker_cpu_s,load1";

    #[allow(clippy::too_many_arguments)]
    fn take(
        t0: Instant,
        phase: &str,
        account: &Account,
        consumer: &DefaultMQPushConsumer,
        clk_tck: f64,
        broker_pid: Option<u32>,
        schedule_dropped: u64,
    ) -> Sample {
        let time_s = t0.elapsed().as_secs_f64();
        let me = ProcStat::read("self", clk_tck).unwrap_or_default();
        let broker = broker_pid.and_then(|pid| ProcStat::read(&pid.to_string(), clk_tck));
        // The queue stats first, then the producer's offsets: a send acknowledged in between
        // can only make the lag look larger, never negative.
        let stats = consumer.queue_stats();
        let committed: HashMap<&MessageQueue, i64> = stats
            .iter()
            .map(|q| (&q.message_queue, q.commit_offset.max(0)))
            .collect();
        let committed_lag = account
            .queue_max
            .read()
            .iter()
            .map(|(mq, max)| {
                let next = max.load(Ordering::Acquire) + 1;
                (next - committed.get(mq).copied().unwrap_or(0)).max(0)
            })
            .sum();
        let consumed = account.consumed_distinct.load(Ordering::Acquire);
        let produced = account.produced.load(Ordering::Acquire);
        Sample {
            time_s,
            phase: phase.to_owned(),
            rss_kib: me.rss_kib,
            heap_kib: Some(LIVE_HEAP.load(Ordering::Relaxed).max(0) as u64 / 1024),
            threads: me.threads,
            fds: count_fds("self"),
            cpu_s: me.cpu_s,
            produced,
            consumed,
            deliveries: account.deliveries.load(Ordering::Acquire),
            duplicates: account.duplicates.load(Ordering::Acquire),
            send_failed: account.send_failed.load(Ordering::Acquire),
            in_doubt: account.in_doubt_count.load(Ordering::Acquire),
            lag: produced as i64 - consumed as i64,
            committed_lag,
            cached: stats.iter().map(|q| q.cached_msg_count as u64).sum(),
            held_queues: stats.len() as u64,
            schedule_dropped,
            broker_rss_kib: broker.as_ref().map(|b| b.rss_kib),
            broker_cpu_s: broker.as_ref().map(|b| b.cpu_s),
            load1: fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok())
                .unwrap_or(0.0),
        }
    }

    fn csv_row(&self) -> String {
        let opt = |v: Option<String>| v.unwrap_or_default();
        format!(
            "{:.1},{},{},{},{},{},{:.2},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.2}",
            self.time_s,
            self.phase,
            self.rss_kib,
            opt(self.heap_kib.map(|v| v.to_string())),
            self.threads,
            self.fds,
            self.cpu_s,
            self.produced,
            self.consumed,
            self.deliveries,
            self.duplicates,
            self.send_failed,
            self.in_doubt,
            self.lag,
            self.committed_lag,
            self.cached,
            self.held_queues,
            self.schedule_dropped,
            opt(self.broker_rss_kib.map(|v| v.to_string())),
            opt(self.broker_cpu_s.map(|v| format!("{v:.2}"))),
            self.load1,
        )
    }

    fn from_csv(header: &str, row: &str) -> Result<Sample, String> {
        let names: Vec<&str> = header.split(',').collect();
        let values: Vec<&str> = row.split(',').collect();
        if names.len() != values.len() {
            return Err(format!(
                "{} values for {} columns in row {row}",
                values.len(),
                names.len()
            ));
        }
        let col: HashMap<&str, &str> = names.into_iter().zip(values).collect();
        fn get<T: std::str::FromStr>(col: &HashMap<&str, &str>, name: &str) -> Result<T, String> {
            let v = col.get(name).ok_or(format!("no column {name}"))?;
            v.parse()
                .map_err(|_| format!("column {name}: bad value {v:?}"))
        }
        fn opt<T: std::str::FromStr>(col: &HashMap<&str, &str>, name: &str) -> Option<T> {
            col.get(name).and_then(|v| v.parse().ok())
        }
        Ok(Sample {
            time_s: get(&col, "time_s")?,
            phase: get(&col, "phase")?,
            rss_kib: get(&col, "rss_kib")?,
            heap_kib: opt(&col, "heap_kib"),
            threads: get(&col, "threads")?,
            fds: get(&col, "fds")?,
            cpu_s: get(&col, "cpu_s")?,
            produced: get(&col, "produced")?,
            consumed: get(&col, "consumed")?,
            deliveries: get(&col, "deliveries")?,
            duplicates: get(&col, "duplicates")?,
            send_failed: get(&col, "send_failed")?,
            in_doubt: get(&col, "in_doubt")?,
            lag: get(&col, "lag")?,
            committed_lag: get(&col, "committed_lag")?,
            cached: get(&col, "cached")?,
            held_queues: get(&col, "held_queues")?,
            schedule_dropped: get(&col, "schedule_dropped")?,
            broker_rss_kib: opt(&col, "broker_rss_kib"),
            broker_cpu_s: opt(&col, "broker_cpu_s"),
            load1: get(&col, "load1")?,
        })
    }

    fn progress(&self) {
        eprintln!(
            "[{:>6.0} s] rss {} KiB, heap {} KiB, {} threads, {} fds, produced {}, consumed {}, lag {} (committed {}), dup {}, failed {}, in doubt {}, load {:.2}",
            self.time_s,
            self.rss_kib,
            self.heap_kib.unwrap_or(0),
            self.threads,
            self.fds,
            self.produced,
            self.consumed,
            self.lag,
            self.committed_lag,
            self.duplicates,
            self.send_failed,
            self.in_doubt,
            self.load1,
        );
    }
}

/// What `/proc/<pid>/status` and `/proc/<pid>/stat` say of a process.
#[derive(Default)]
struct ProcStat {
    rss_kib: u64,
    threads: u64,
    cpu_s: f64,
}

impl ProcStat {
    fn read(pid: &str, clk_tck: f64) -> Option<ProcStat> {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| -> Option<u64> {
            let line = status.lines().find(|l| l.starts_with(name))?;
            line[name.len()..].split_whitespace().next()?.parse().ok()
        };
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The fields after the command name, which is in parentheses and may hold spaces:
        // state is field 3, utime and stime fields 14 and 15.
        let rest: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
        let ticks = |i: usize| rest.get(i - 3).and_then(|v| v.parse::<u64>().ok());
        Some(ProcStat {
            rss_kib: field("VmRSS:")?,
            threads: field("Threads:")?,
            cpu_s: (ticks(14)? + ticks(15)?) as f64 / clk_tck,
        })
    }
}

/// Open file descriptors of a process, not counting the one that lists them.
fn count_fds(pid: &str) -> u64 {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count().saturating_sub(1) as u64)
        .unwrap_or(0)
}

/// The kernel's clock tick (`getconf CLK_TCK`), in which `/proc/*/stat` counts CPU time.
fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

// ---------------------------------------------------------------------------------------------
// Summary

struct Totals {
    sent: u64,
    lost: u64,
    first_lost: Vec<u64>,
    in_doubt_consumed: u64,
    caught_up_after: Duration,
    produced: Produced,
    /// Messages the broker stored and the consumer consumed, copies included.
    stored: u64,
}

struct Summary {
    text: String,
    all_met: bool,
}

fn summarize(args: &Args, samples: &[Sample], account: &Account, t: Totals) -> Summary {
    let warm = args.warmup.as_secs_f64();
    let run: Vec<&Sample> = samples.iter().filter(|s| s.phase == "run").collect();
    let steady: Vec<&Sample> = run.iter().copied().filter(|s| s.time_s >= warm).collect();
    let last = samples.last().cloned().unwrap_or_default();
    let mut out = String::new();
    let mut all_met = true;
    let mut target = |out: &mut String, met: bool, line: String| {
        all_met &= met;
        let _ = writeln!(out, "  [{}] {line}", if met { "met" } else { "NOT MET" });
    };

    let produced_in_run = run.last().map_or(0, |s| s.produced);
    let run_secs = run.last().map_or(0.0, |s| s.time_s).max(1e-9);
    let _ = writeln!(
        out,
        "soak: {} msg/s of {} B asked for {:.1} min; achieved {:.0} msg/s produced; topic {}, group {}",
        args.rate,
        args.size,
        args.duration.as_secs_f64() / 60.0,
        produced_in_run as f64 / run_secs,
        args.topic,
        args.group
    );
    let cpu = |first: Option<f64>, last: Option<f64>| match (first, last) {
        (Some(a), Some(b)) => format!("{:.0}% of one core", (b - a) / run_secs * 100.0),
        _ => "not sampled".to_owned(),
    };
    let _ = writeln!(
        out,
        "producer: {:.0} us a send on average (building the message and send_async); {:.1} s waiting for the window of {} sends in flight (the broker slower than the rate)",
        t.produced.in_calls.as_secs_f64() * 1e6 / t.produced.calls.max(1) as f64,
        t.produced.waited.as_secs_f64(),
        args.window,
    );
    let loads: Vec<f64> = run.iter().map(|s| s.load1).collect();
    let _ = writeln!(
        out,
        "cpu: soak process {}, broker {}; machine load (1 min) mean {:.2}, max {:.2}",
        cpu(run.first().map(|s| s.cpu_s), run.last().map(|s| s.cpu_s)),
        cpu(
            run.first().and_then(|s| s.broker_cpu_s),
            run.last().and_then(|s| s.broker_cpu_s)
        ),
        loads.iter().sum::<f64>() / loads.len().max(1) as f64,
        loads.iter().copied().fold(0.0, f64::max),
    );
    let _ = writeln!(
        out,
        "warm-up: the first {} s; steady state: {} samples from {:.0} s to {:.0} s",
        args.warmup.as_secs(),
        steady.len(),
        steady.first().map_or(0.0, |s| s.time_s),
        steady.last().map_or(0.0, |s| s.time_s),
    );
    out.push_str("targets:\n");

    match (run.first(), steady.first(), steady.last()) {
        (Some(first), Some(base), Some(end)) => {
            let min = steady.iter().map(|s| s.rss_kib).min().unwrap_or(0);
            let max = steady.iter().map(|s| s.rss_kib).max().unwrap_or(0);
            let dev = |v: u64| (v as f64 - base.rss_kib as f64) / base.rss_kib as f64 * 100.0;
            let worst = dev(min).abs().max(dev(max).abs());
            target(
                &mut out,
                worst <= 10.0,
                format!(
                    "RSS flat within 10% after warm-up: start {} KiB, after warm-up {} KiB, end {} KiB; after warm-up min {} max {} KiB (worst {:+.1}%)",
                    first.rss_kib,
                    base.rss_kib,
                    end.rss_kib,
                    min,
                    max,
                    if dev(max).abs() >= dev(min).abs() { dev(max) } else { dev(min) },
                ),
            );
            if let (Some(b), Some(e)) = (base.heap_kib, end.heap_kib) {
                let max = steady.iter().filter_map(|s| s.heap_kib).max().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "  [info] live heap (not a target; tells a leak from pages the allocator keeps): after warm-up {b} KiB, end {e} KiB, max after warm-up {max} KiB"
                );
            }
            for (name, get) in [
                ("threads", (|s: &Sample| s.threads) as fn(&Sample) -> u64),
                ("file descriptors", |s: &Sample| s.fds),
            ] {
                let min = steady.iter().map(|s| get(s)).min().unwrap_or(0);
                let max = steady.iter().map(|s| get(s)).max().unwrap_or(0);
                target(
                    &mut out,
                    min == max,
                    format!(
                        "{name} constant after warm-up: start {}, after warm-up {}..={}, end {}",
                        get(first),
                        min,
                        max,
                        get(end)
                    ),
                );
            }
        }
        _ => target(
            &mut out,
            false,
            "no sample after warm-up: the run was too short to judge RSS, threads and fds"
                .to_owned(),
        ),
    }

    let bound = args.max_lag.unwrap_or(args.rate as i64 * 10);
    let max_lag = run.iter().map(|s| s.lag).max().unwrap_or(0);
    let max_committed = run.iter().map(|s| s.committed_lag).max().unwrap_or(0);
    let steady_lag = steady.iter().map(|s| s.lag).max().unwrap_or(0);
    target(
        &mut out,
        max_lag <= bound,
        format!(
            "lag bounded by {bound} messages: max {max_lag} (after warm-up {steady_lag}); committed lag max {max_committed}; {} {:.1} s after the last send",
            if t.lost == 0 {
                "all consumed"
            } else {
                "the wait for the rest ended"
            },
            t.caught_up_after.as_secs_f64()
        ),
    );
    let first_lost = if t.first_lost.is_empty() {
        String::new()
    } else {
        format!(" (first: {:?})", t.first_lost)
    };
    target(
        &mut out,
        t.lost == 0,
        format!(
            "0 lost: {} lost of {} acknowledged{first_lost}",
            t.lost, last.produced
        ),
    );
    let _ = writeln!(
        out,
        "accounting: {} sends, {} acknowledged, {} failed, {} in doubt ({} of them consumed after all); {} consumed, {} deliveries, {} duplicates, {} foreign; worst pause between two deliveries {:.0} ms; {} messages dropped from the schedule after stalls",
        t.sent,
        last.produced,
        last.send_failed,
        last.in_doubt,
        t.in_doubt_consumed,
        last.consumed,
        last.deliveries,
        last.duplicates,
        account.foreign.load(Ordering::Acquire),
        account.worst_gap_ns.load(Ordering::Acquire) as f64 / 1e6,
        last.schedule_dropped,
    );
    let distinct = last.consumed;
    let _ = writeln!(
        out,
        "duplicates: {} = {} copies stored twice by the producer (stored {} - distinct {}: a send retried after a timeout whose first attempt had been stored) + {} redelivered by the consumer (deliveries {} - stored)",
        last.duplicates,
        t.stored.saturating_sub(distinct),
        t.stored,
        distinct,
        last.deliveries.saturating_sub(t.stored),
        last.deliveries,
    );
    let _ = writeln!(
        out,
        "result: {}",
        if all_met {
            "every target met"
        } else {
            "some target NOT met"
        }
    );
    Summary { text: out, all_met }
}

// ---------------------------------------------------------------------------------------------
// Plot

fn replot(args: &Args, csv: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let text = fs::read_to_string(csv).map_err(|e| format!("{}: {e}", csv.display()))?;
    let mut lines = text.lines();
    let header = lines.next().ok_or("the CSV is empty")?;
    let samples = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| Sample::from_csv(header, l))
        .collect::<Result<Vec<_>, _>>()?;
    let png = csv.with_extension("png");
    plot(
        &samples,
        args.warmup,
        &plot_title(args.size, &samples),
        &png,
    )?;
    println!("PNG: {}", png.display());
    Ok(())
}

fn plot_title(size: usize, samples: &[Sample]) -> String {
    let run: Vec<&Sample> = samples.iter().filter(|s| s.phase == "run").collect();
    let (secs, produced) = run.last().map_or((0.0, 0), |s| (s.time_s, s.produced));
    format!(
        "rocketmq-sync soak: produce + consume {:.0} msg/s of {size} B (acknowledged) for {:.0} min, one process",
        produced as f64 / secs.max(1e-9),
        secs / 60.0
    )
}

fn plot(
    samples: &[Sample],
    warmup: Duration,
    title: &str,
    path: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;

    // Text is drawn with an embedded font: no system font library or font file is needed.
    plotters::style::register_font(
        "sans-serif",
        FontStyle::Normal,
        epaint_default_fonts::UBUNTU_LIGHT,
    )
    .map_err(|_| "the embedded font did not load")?;

    let (w, h) = (1600u32, 1100u32);
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    let minutes = |s: &Sample| s.time_s / 60.0;
    let xmax = samples.last().map_or(1.0, minutes).max(0.1);
    let warm = warmup.as_secs_f64() / 60.0;
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(title, ("sans-serif", 30))?;
        let panels = root.split_evenly((2, 2));

        let line = |f: fn(&Sample) -> f64| -> Vec<(f64, f64)> {
            samples.iter().map(|s| (minutes(s), f(s))).collect()
        };
        let rss = line(|s| s.rss_kib as f64 / 1024.0);
        let heap: Vec<(f64, f64)> = samples
            .iter()
            .filter_map(|s| Some((minutes(s), s.heap_kib? as f64 / 1024.0)))
            .collect();
        let base = samples
            .iter()
            .find(|s| s.phase == "run" && s.time_s >= warmup.as_secs_f64())
            .map(|s| s.rss_kib as f64 / 1024.0);
        panel(
            &panels[0],
            "memory of the soak process (band: RSS +-10% of its value after warm-up)",
            ("MiB", 0.0),
            (xmax, warm),
            base.map(|b| (b * 0.9, b * 1.1)),
            &if heap.is_empty() {
                vec![("RSS", RED, rss)]
            } else {
                vec![("RSS", RED, rss), ("live heap", BLUE, heap)]
            },
        )?;
        panel(
            &panels[1],
            "threads and open file descriptors",
            ("count", 0.0),
            (xmax, warm),
            None,
            &[
                ("threads", BLUE, line(|s| s.threads as f64)),
                ("fds", MAGENTA, line(|s| s.fds as f64)),
            ],
        )?;
        panel(
            &panels[2],
            "consumer lag",
            // A lag of a message or two is noise: it need not fill the panel.
            ("messages", 20.0),
            (xmax, warm),
            None,
            &[
                ("produced - consumed", RED, line(|s| s.lag as f64)),
                (
                    "max offset - committed offset",
                    BLUE,
                    line(|s| s.committed_lag as f64),
                ),
            ],
        )?;
        let rate = |f: fn(&Sample) -> u64| -> Vec<(f64, f64)> {
            samples
                .windows(2)
                // The last sample comes a moment after the one before: no rate from that.
                .filter(|p| p[1].time_s - p[0].time_s >= 1.0)
                .map(|p| {
                    let dt = (p[1].time_s - p[0].time_s).max(1e-9);
                    (
                        minutes(&p[1]),
                        f(&p[1]).saturating_sub(f(&p[0])) as f64 / dt,
                    )
                })
                .collect()
        };
        panel(
            &panels[3],
            "throughput per sample interval",
            ("messages/s", 0.0),
            (xmax, warm),
            None,
            &[
                ("produced", RED, rate(|s| s.produced)),
                ("consumed", BLUE, rate(|s| s.consumed)),
                ("send failed", BLACK, rate(|s| s.send_failed)),
            ],
        )?;
        root.present()?;
    }
    let file = BufWriter::new(File::create(path).map_err(|e| format!("{}: {e}", path.display()))?);
    let mut encoder = png::Encoder::new(file, w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&rgb)?;
    writer.finish()?;
    Ok(())
}

/// A named line of a chart: its colour and its points (minutes, value).
type Series<'a> = (&'a str, plotters::style::RGBColor, Vec<(f64, f64)>);

/// One chart: lines over minutes (up to `xmax`), a grey line at the end of the warm-up, an
/// optional green band of acceptable values; the y axis reaches at least `y_floor`.
fn panel(
    area: &plotters::drawing::DrawingArea<
        plotters::backend::BitMapBackend<'_>,
        plotters::coord::Shift,
    >,
    caption: &str,
    (y_desc, y_floor): (&str, f64),
    (xmax, warmup_min): (f64, f64),
    band: Option<(f64, f64)>,
    series: &[Series<'_>],
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;

    let top = series
        .iter()
        .flat_map(|(_, _, pts)| pts.iter().map(|p| p.1))
        .chain(band.map(|b| b.1))
        .fold(0.0, f64::max);
    let ymax = (top * 1.2).max(y_floor).max(1.0);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..xmax, 0f64..ymax)?;
    let decimals = if ymax >= 20.0 { 0 } else { 1 };
    chart
        .configure_mesh()
        .y_label_formatter(&|v| format!("{v:.decimals$}"))
        .x_desc("minutes")
        .y_desc(y_desc)
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 17))
        .draw()?;
    if let Some((lo, hi)) = band {
        chart.draw_series(std::iter::once(Rectangle::new(
            [(warmup_min.min(xmax), lo), (xmax, hi)],
            GREEN.mix(0.15).filled(),
        )))?;
    }
    if warmup_min < xmax {
        chart
            .draw_series(LineSeries::new(
                [(warmup_min, 0.0), (warmup_min, ymax)],
                BLACK.mix(0.6).stroke_width(1),
            ))?
            .label("end of warm-up")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.mix(0.6)));
    }
    for (i, (name, color, pts)) in series.iter().enumerate() {
        let color = *color;
        // The first line a little wider, so that it shows when the next one covers it.
        let width = if i == 0 { 4 } else { 2 };
        chart
            .draw_series(LineSeries::new(
                pts.iter().copied(),
                color.stroke_width(width),
            ))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    // The legend goes in the right-hand corner the lines leave free.
    let right: Vec<f64> = series
        .iter()
        .flat_map(|(_, _, pts)| pts.iter().filter(|p| p.0 >= xmax * 0.6).map(|p| p.1))
        .collect();
    let high = right.iter().sum::<f64>() / right.len().max(1) as f64 > ymax / 2.0;
    chart
        .configure_series_labels()
        .position(if high {
            SeriesLabelPosition::LowerRight
        } else {
            SeriesLabelPosition::UpperRight
        })
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
