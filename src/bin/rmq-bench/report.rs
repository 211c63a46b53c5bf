//! What `rmq-bench` and `compare/`'s `peer-bench` report alike: the latency histogram, the
//! `/proc/self` sample and the `SUMMARY` line. `peer-bench` includes this file with `#[path]`,
//! so both tools measure and print the same way; it uses std only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A lock-free latency histogram in microseconds: exact below 512 µs, then 256 buckets per
/// power of two, so a value is at most 0.4% (32 µs at 8–16 ms) above the bucket it is reported
/// as. Values from 2^40 µs (about 12 days) on share the last bucket.
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
    /// The exact largest value.
    pub(crate) max: AtomicU64,
}

const SUB_BITS: u32 = 8;
const LINEAR: u64 = 2 << SUB_BITS;
const TOP: u64 = (1 << 40) - 1;

impl Histogram {
    pub(crate) fn new() -> Self {
        Histogram {
            buckets: (0..Self::index(TOP) + 1)
                .map(|_| AtomicU64::new(0))
                .collect(),
            max: AtomicU64::new(0),
        }
    }

    fn index(us: u64) -> usize {
        let us = us.min(TOP);
        if us < LINEAR {
            return us as usize;
        }
        let exp = 63 - us.leading_zeros();
        let sub = (us >> (exp - SUB_BITS)) & ((1 << SUB_BITS) - 1);
        (LINEAR + u64::from(exp - SUB_BITS - 1) * (1 << SUB_BITS) + sub) as usize
    }

    /// The smallest value of bucket `i`.
    fn lower_bound(i: usize) -> u64 {
        let i = i as u64;
        if i < LINEAR {
            return i;
        }
        let exp = (i - LINEAR) / (1 << SUB_BITS) + u64::from(SUB_BITS) + 1;
        let sub = (i - LINEAR) % (1 << SUB_BITS);
        ((1 << SUB_BITS) + sub) << (exp - u64::from(SUB_BITS))
    }

    pub(crate) fn record(&self, us: u64) {
        self.buckets[Self::index(us)].fetch_add(1, Ordering::Relaxed);
        self.max.fetch_max(us, Ordering::Relaxed);
    }

    /// The value at quantile `q` (0..=1) in microseconds, 0 when nothing was recorded.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((total as f64 * q).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::lower_bound(i);
            }
        }
        Self::lower_bound(counts.len() - 1)
    }
}

/// The process's CPU seconds (user + system), resident set in KiB and thread count.
pub(crate) struct ProcSample {
    pub(crate) cpu_s: f64,
    pub(crate) rss_kib: u64,
    pub(crate) threads: u64,
}

/// Linux reports `/proc/<pid>/stat` times in USER_HZ ticks, fixed at 100 per second on every
/// architecture's user ABI (whatever the kernel's own HZ).
const USER_HZ: f64 = 100.0;

pub(crate) fn proc_sample() -> ProcSample {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis
    // start with field 3 (state), so utime (14) and stime (15) are the 12th and 13th.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    ProcSample {
        cpu_s: (ticks(11) + ticks(12)) as f64 / USER_HZ,
        rss_kib: field("VmRSS:"),
        threads: field("Threads:"),
    }
}

pub(crate) fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Prints the `SUMMARY` line; `extra` (empty, or ` key=value` pairs) goes at its end.
pub(crate) fn print_summary(
    mode: &str,
    count: u64,
    failed: u64,
    elapsed: Duration,
    hist: &Histogram,
    extra: &str,
) {
    let p = proc_sample();
    let secs = elapsed.as_secs_f64();
    let tps = if secs > 0.0 { count as f64 / secs } else { 0.0 };
    println!(
        "SUMMARY mode={mode} tps={tps:.0} p50_ms={:.3} p99_ms={:.3} max_ms={:.3} cpu_s={:.2} rss_kib={} threads={} count={count} failed={failed} elapsed_s={secs:.3}{extra}",
        ms(hist.quantile(0.5)),
        ms(hist.quantile(0.99)),
        ms(hist.max.load(Ordering::Relaxed)),
        p.cpu_s,
        p.rss_kib,
        p.threads,
    );
}

/// Messages per second over an interval, as a whole number.
pub(crate) fn rate(n: u64, secs: f64) -> u64 {
    if secs > 0.0 {
        (n as f64 / secs).round() as u64
    } else {
        n
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_ordered_and_within_0_4_percent() {
        let mut last = 0;
        let mut v = 0u64;
        while v < 1 << 41 {
            let i = Histogram::index(v);
            assert!(i >= last, "index({v}) = {i} after {last}");
            last = i;
            let lb = Histogram::lower_bound(i);
            if v <= TOP {
                assert!(lb <= v && v - lb <= v / 256, "{v} in bucket from {lb}");
                assert_eq!(Histogram::index(lb), i, "{lb} starts bucket {i}");
            }
            v += 1 + v / 1000;
        }
        assert_eq!(Histogram::index(u64::MAX), Histogram::index(TOP));
    }

    #[test]
    fn quantiles_tell_a_tenth_of_a_millisecond_apart_up_to_10_ms() {
        for base in [1_000u64, 5_000, 9_900] {
            let (a, b) = (Histogram::new(), Histogram::new());
            a.record(base);
            b.record(base + 100);
            assert!(b.quantile(0.5) - a.quantile(0.5) >= 60, "{base}");
        }
        let h = Histogram::new();
        for us in 1..=1000 {
            h.record(us * 10);
        }
        assert!((5_000 - 20..=5_000).contains(&h.quantile(0.5)));
        assert!((9_900 - 32..=9_900).contains(&h.quantile(0.99)));
        assert_eq!(h.max.load(Ordering::Relaxed), 10_000);
    }
}
