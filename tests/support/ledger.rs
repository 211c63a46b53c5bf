//! At-least-once accounting for the fault scenarios (issue 9).
//!
//! Every scenario produces numbered messages, consumes them and checks them with one
//! [`Ledger`]:
//! - **produced**: sends the producer acknowledged. A send that failed is not produced; a send
//!   whose outcome is unknown (a timeout) is counted apart as *in doubt*: it may or may not be
//!   consumed, and neither counts against the client.
//! - **lost**: produced and never consumed. Must be 0.
//! - **duplicates**: deliveries beyond the first of a message. Bounded by the scenario's
//!   in-flight window.
//! - **worst gap**: the longest pause between two deliveries, from the first delivery to the
//!   last (or to the end of the wait, when messages are still missing).
//! - **recovery**: from the end of the fault (see [`Ledger::fault_ended`]) to the first
//!   delivery after it.
//!
//! A message's number travels as its key (`seq-<n>`) and as the start of its body, so a
//! listener can read it without a property lookup. [`Report::record`] appends the figures as one
//! JSON line to `target/reliability/results.jsonl`, from which `RELIABILITY.md`'s table is made.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use rocketmq_sync::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, DefaultMQProducer, Error, Message,
    MessageExt,
};

/// The key prefix of a numbered message.
pub const KEY_PREFIX: &str = "seq-";

/// The shared account of one scenario. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    started: Instant,
}

#[derive(Default)]
struct State {
    /// Acknowledged sends: number → when acknowledged.
    produced: HashMap<u64, Instant>,
    /// Sends the producer answered with an error.
    send_failed: u64,
    /// Sends whose outcome is unknown (timed out): they may arrive, and count nowhere.
    in_doubt: HashMap<u64, ()>,
    /// Number → times delivered.
    consumed: HashMap<u64, u32>,
    /// Deliveries of messages that carry no number (a scenario's foreign traffic).
    foreign: u64,
    /// When each delivery happened, in order.
    delivery_times: Vec<Instant>,
    fault_started: Option<Instant>,
    fault_ended: Option<Instant>,
    /// Set by [`Ledger::recovered`].
    recovered: Option<Instant>,
}

impl Default for Ledger {
    fn default() -> Self {
        Self::new()
    }
}

impl Ledger {
    pub fn new() -> Ledger {
        Ledger {
            inner: Arc::new(Shared {
                state: Mutex::new(State::default()),
                changed: Condvar::new(),
                started: Instant::now(),
            }),
        }
    }

    /// A message numbered `n` for `topic`: key `seq-n`, body `seq-n` padded with `.` to
    /// `body_len` bytes (at least the number itself).
    pub fn message(topic: &str, n: u64, body_len: usize) -> Message {
        let key = format!("{KEY_PREFIX}{n}");
        let mut body = key.clone().into_bytes();
        if body.len() < body_len {
            body.resize(body_len, b'.');
        }
        Message::new(topic, body).with_keys(key)
    }

    /// The number a message carries (its body's `seq-n` prefix), if any.
    pub fn number_of(msg: &MessageExt) -> Option<u64> {
        let body = msg.body();
        let rest = body.strip_prefix(KEY_PREFIX.as_bytes())?;
        let end = rest
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
    }

    /// The producer acknowledged message `n`.
    pub fn sent(&self, n: u64) {
        let mut s = self.inner.state.lock();
        s.in_doubt.remove(&n);
        s.produced.insert(n, Instant::now());
        drop(s);
        self.inner.changed.notify_all();
    }

    /// The producer answered the send of message `n` with an error. `timed_out` marks an
    /// outcome the client cannot know (the broker may have stored it).
    pub fn send_failed(&self, n: u64, timed_out: bool) {
        let mut s = self.inner.state.lock();
        if timed_out {
            s.in_doubt.insert(n, ());
        } else {
            s.send_failed += 1;
        }
    }

    /// A listener was given `msg`. Call it for every message of every delivery, before
    /// answering success.
    pub fn consumed(&self, msg: &MessageExt) {
        self.delivered(Self::number_of(msg));
    }

    /// A listener elsewhere (another process, which reports the number it was given) was given
    /// message `n`.
    pub fn consumed_number(&self, n: u64) {
        self.delivered(Some(n));
    }

    fn delivered(&self, n: Option<u64>) {
        let now = Instant::now();
        let mut s = self.inner.state.lock();
        match n {
            Some(n) => *s.consumed.entry(n).or_default() += 1,
            None => s.foreign += 1,
        }
        s.delivery_times.push(now);
        drop(s);
        self.inner.changed.notify_all();
    }

    /// The fault begins now.
    pub fn fault_started(&self) {
        self.inner.state.lock().fault_started = Some(Instant::now());
    }

    /// The fault is over now: recovery is measured from here.
    pub fn fault_ended(&self) {
        self.inner.state.lock().fault_ended = Some(Instant::now());
    }

    /// Delivery flows again now, by the scenario's own measure (for example, the first delivery
    /// from a queue the fault had stopped, while other queues never stopped). The first call
    /// counts. Without it, recovery ends at the first delivery after the fault.
    pub fn recovered(&self) {
        let mut s = self.inner.state.lock();
        if s.recovered.is_none() {
            s.recovered = Some(Instant::now());
        }
    }

    /// How many messages were produced (acknowledged) so far.
    pub fn produced_count(&self) -> usize {
        self.inner.state.lock().produced.len()
    }

    /// How many distinct numbered messages were consumed so far.
    pub fn consumed_count(&self) -> usize {
        self.inner.state.lock().consumed.len()
    }

    /// How many times message `n` was delivered so far.
    pub fn times_consumed(&self, n: u64) -> u32 {
        self.inner
            .state
            .lock()
            .consumed
            .get(&n)
            .copied()
            .unwrap_or(0)
    }

    /// How many deliveries there were so far, duplicates included.
    pub fn deliveries(&self) -> u64 {
        self.inner.state.lock().delivery_times.len() as u64
    }

    /// Waits until every produced message was consumed at least once, or `within` passes.
    /// Returns whether it was.
    pub fn wait_all_consumed(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut s = self.inner.state.lock();
        loop {
            if s.produced.keys().all(|n| s.consumed.contains_key(n)) {
                return true;
            }
            if self.inner.changed.wait_until(&mut s, deadline).timed_out() {
                return s.produced.keys().all(|n| s.consumed.contains_key(n));
            }
        }
    }

    /// Waits until `n` distinct messages were consumed, or `within` passes.
    pub fn wait_consumed_at_least(&self, n: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut s = self.inner.state.lock();
        loop {
            if s.consumed.len() >= n {
                return true;
            }
            if self.inner.changed.wait_until(&mut s, deadline).timed_out() {
                return s.consumed.len() >= n;
            }
        }
    }

    /// The figures as they stand now.
    pub fn report(&self, scenario: &str) -> Report {
        let now = Instant::now();
        let s = self.inner.state.lock();
        let mut lost: Vec<u64> = s
            .produced
            .keys()
            .filter(|n| !s.consumed.contains_key(n))
            .copied()
            .collect();
        lost.sort_unstable();
        let duplicates = s.consumed.values().map(|&c| u64::from(c - 1)).sum();
        let mut times = s.delivery_times.clone();
        times.sort_unstable();
        // Between consecutive deliveries, and while messages are still missing, from the last
        // delivery to now.
        let tail = match times.last() {
            Some(&last) if !lost.is_empty() => now - last,
            _ => Duration::ZERO,
        };
        let worst_gap = times
            .windows(2)
            .map(|w| w[1] - w[0])
            .fold(tail, Duration::max);
        let recovery = s.fault_ended.map(|ended| {
            if let Some(at) = s.recovered {
                return at.saturating_duration_since(ended);
            }
            times
                .iter()
                .find(|&&t| t >= ended)
                .map(|&t| t - ended)
                .unwrap_or_else(|| now - ended)
        });
        Report {
            scenario: scenario.to_owned(),
            produced: s.produced.len() as u64,
            send_failed: s.send_failed,
            in_doubt: s.in_doubt.len() as u64,
            consumed_distinct: s.consumed.len() as u64,
            deliveries: times.len() as u64,
            foreign: s.foreign,
            lost,
            duplicates,
            worst_gap,
            recovery,
            fault: s
                .fault_started
                .map(|f| s.fault_ended.unwrap_or(now).saturating_duration_since(f)),
            elapsed: now - self.inner.started,
        }
    }
}

/// One scenario's figures.
#[derive(Debug, Clone)]
pub struct Report {
    pub scenario: String,
    pub produced: u64,
    pub send_failed: u64,
    pub in_doubt: u64,
    pub consumed_distinct: u64,
    pub deliveries: u64,
    pub foreign: u64,
    /// Produced and never consumed, in order.
    pub lost: Vec<u64>,
    pub duplicates: u64,
    pub worst_gap: Duration,
    /// From the fault's end to the first delivery after it.
    pub recovery: Option<Duration>,
    /// How long the fault lasted.
    pub fault: Option<Duration>,
    pub elapsed: Duration,
}

impl Report {
    /// Asserts the promise: nothing lost, and at most `max_duplicates` extra deliveries (the
    /// scenario's in-flight window). Prints the report either way, and records it.
    pub fn check(&self, max_duplicates: u64) {
        println!("{self}");
        self.record(max_duplicates);
        assert!(
            self.lost.is_empty(),
            "{}: {} produced message(s) never consumed, first {:?}",
            self.scenario,
            self.lost.len(),
            &self.lost[..self.lost.len().min(20)]
        );
        assert!(
            self.duplicates <= max_duplicates,
            "{}: {} duplicate deliveries, more than the in-flight window of {max_duplicates}",
            self.scenario,
            self.duplicates
        );
        assert!(self.produced > 0, "{}: nothing was produced", self.scenario);
    }

    /// Appends this report as one JSON line to `target/reliability/results.jsonl` (or the file
    /// named by `RELIABILITY_RESULTS`).
    pub fn record(&self, window: u64) {
        let path = std::env::var_os("RELIABILITY_RESULTS")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/reliability/results.jsonl")
            });
        if let Some(dir) = path.parent() {
            let _ = fs::create_dir_all(dir);
        }
        let line = serde_json::json!({
            "scenario": self.scenario,
            "produced": self.produced,
            "send_failed": self.send_failed,
            "in_doubt": self.in_doubt,
            "consumed": self.consumed_distinct,
            "deliveries": self.deliveries,
            "lost": self.lost.len(),
            "duplicates": self.duplicates,
            "window": window,
            "worst_gap_ms": self.worst_gap.as_millis() as u64,
            "recovery_ms": self.recovery.map(|d| d.as_millis() as u64),
            "fault_ms": self.fault.map(|d| d.as_millis() as u64),
            "elapsed_ms": self.elapsed.as_millis() as u64,
        });
        match OpenOptions::new().create(true).append(true).open(&path) {
            Ok(mut f) => {
                let _ = writeln!(f, "{line}");
            }
            Err(e) => eprintln!("cannot record the report in {}: {e}", path.display()),
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}] produced {} (send failed {}, in doubt {}), consumed {} in {} deliveries, \
             lost {}, duplicates {}, worst gap {:.2?}, recovery {}, fault {}, elapsed {:.1?}",
            self.scenario,
            self.produced,
            self.send_failed,
            self.in_doubt,
            self.consumed_distinct,
            self.deliveries,
            self.lost.len(),
            self.duplicates,
            self.worst_gap,
            self.recovery
                .map_or_else(|| "-".to_owned(), |d| format!("{d:.2?}")),
            self.fault
                .map_or_else(|| "-".to_owned(), |d| format!("{d:.1?}")),
            self.elapsed,
        )
    }
}

/// A concurrent listener that records every message it is given in `ledger` and succeeds.
pub fn recording(
    ledger: &Ledger,
) -> impl Fn(&[MessageExt], &mut ConsumeConcurrentlyContext) -> ConsumeConcurrentlyStatus
       + Send
       + Sync
       + 'static {
    let ledger = ledger.clone();
    move |msgs: &[MessageExt], _: &mut ConsumeConcurrentlyContext| {
        for m in msgs {
            ledger.consumed(m);
        }
        ConsumeConcurrentlyStatus::ConsumeSuccess
    }
}

/// Whether a failed send may still have been stored by the broker (its outcome is unknown).
pub fn outcome_unknown(e: &Error) -> bool {
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

/// Sends the numbered messages of `numbers` to `topic` one at a time with sync sends, and
/// records each outcome in `ledger`. `pause` spaces the sends to set a rate (it paces the load;
/// it synchronises nothing). Stops early when `stop` is set; returns how many were attempted.
pub fn produce_numbered(
    producer: &DefaultMQProducer,
    topic: &str,
    numbers: Range<u64>,
    body_len: usize,
    ledger: &Ledger,
    pause: Option<Duration>,
    stop: &AtomicBool,
) -> u64 {
    let mut attempted = 0;
    for n in numbers {
        if stop.load(Ordering::Acquire) {
            break;
        }
        attempted += 1;
        match producer.send(&Ledger::message(topic, n, body_len)) {
            Ok(_) => ledger.sent(n),
            Err(e) => {
                log::info!("send of seq-{n} failed: {e}");
                ledger.send_failed(n, outcome_unknown(&e));
            }
        }
        if let Some(p) = pause {
            std::thread::sleep(p);
        }
    }
    attempted
}
