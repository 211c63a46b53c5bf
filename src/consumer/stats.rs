//! Consumer statistics (Java `ConsumerStatsManager`). The snapshots they give, `ConsumeStatus`,
//! are a protocol body (`remoting::protocol::body`).
//!
//! Counters are updated once per pulled batch and once per listener call, never per message.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use crate::remoting::protocol::body::ConsumeStatus;

#[derive(Debug, Default)]
struct Counters {
    pulled: AtomicU64,
    pulls: AtomicU64,
    pull_rt_us: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    calls: AtomicU64,
    consume_rt_us: AtomicU64,
    undecodable: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    pulled: u64,
    pulls: u64,
    pull_rt_us: u64,
    ok: u64,
    failed: u64,
    calls: u64,
    consume_rt_us: u64,
}

impl Counters {
    fn sample(&self) -> Sample {
        Sample {
            pulled: self.pulled.load(Ordering::Relaxed),
            pulls: self.pulls.load(Ordering::Relaxed),
            pull_rt_us: self.pull_rt_us.load(Ordering::Relaxed),
            ok: self.ok.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            calls: self.calls.load(Ordering::Relaxed),
            consume_rt_us: self.consume_rt_us.load(Ordering::Relaxed),
        }
    }
}

/// The per-topic counters of one consumer.
#[derive(Debug)]
pub(crate) struct ConsumerStats {
    topics: RwLock<HashMap<String, Arc<Counters>>>,
    last: Mutex<(Instant, HashMap<String, Sample>)>,
    flow_control: AtomicU64,
}

impl Default for ConsumerStats {
    fn default() -> Self {
        ConsumerStats {
            topics: RwLock::new(HashMap::new()),
            last: Mutex::new((Instant::now(), HashMap::new())),
            flow_control: AtomicU64::new(0),
        }
    }
}

impl ConsumerStats {
    fn topic(&self, topic: &str) -> Arc<Counters> {
        if let Some(c) = self.topics.read().get(topic) {
            return c.clone();
        }
        self.topics
            .write()
            .entry(topic.to_owned())
            .or_default()
            .clone()
    }

    /// One pull returned `msgs` messages after `rt`.
    pub(crate) fn pulled(&self, topic: &str, msgs: usize, rt: Duration) {
        let c = self.topic(topic);
        c.pulled.fetch_add(msgs as u64, Ordering::Relaxed);
        c.pulls.fetch_add(1, Ordering::Relaxed);
        c.pull_rt_us
            .fetch_add(rt.as_micros() as u64, Ordering::Relaxed);
    }

    /// `calls` listener calls consumed `ok` messages and failed `failed`, taking `rt` in all.
    pub(crate) fn consumed(
        &self,
        topic: &str,
        ok: usize,
        failed: usize,
        rt: Duration,
        calls: usize,
    ) {
        let c = self.topic(topic);
        c.ok.fetch_add(ok as u64, Ordering::Relaxed);
        c.failed.fetch_add(failed as u64, Ordering::Relaxed);
        c.calls.fetch_add(calls as u64, Ordering::Relaxed);
        c.consume_rt_us
            .fetch_add(rt.as_micros() as u64, Ordering::Relaxed);
    }

    /// `n` records of one pull of `topic` could not be decoded and were skipped.
    pub(crate) fn undecodable(&self, topic: &str, n: usize) {
        self.topic(topic)
            .undecodable
            .fetch_add(n as u64, Ordering::Relaxed);
    }

    /// A pull was delayed by client-side flow control.
    pub(crate) fn flow_controlled(&self) {
        self.flow_control.fetch_add(1, Ordering::Relaxed);
    }

    /// Pulls delayed by client-side flow control so far.
    pub(crate) fn flow_control_times(&self) -> u64 {
        self.flow_control.load(Ordering::Relaxed)
    }

    /// Rates since the previous snapshot (at least over one second).
    pub(crate) fn snapshot(&self) -> HashMap<String, ConsumeStatus> {
        let topics: Vec<(String, Arc<Counters>)> = self
            .topics
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut last = self.last.lock();
        let secs = last.0.elapsed().as_secs_f64().max(1.0);
        let mut out = HashMap::new();
        let mut next = HashMap::new();
        for (topic, c) in topics {
            let now = c.sample();
            let prev = last.1.get(&topic).copied().unwrap_or_default();
            let d = |a: u64, b: u64| a.saturating_sub(b) as f64;
            let pulls = d(now.pulls, prev.pulls);
            let calls = d(now.calls, prev.calls);
            out.insert(
                topic.clone(),
                ConsumeStatus {
                    pull_rt: if pulls > 0.0 {
                        d(now.pull_rt_us, prev.pull_rt_us) / pulls / 1000.0
                    } else {
                        0.0
                    },
                    pull_tps: d(now.pulled, prev.pulled) / secs,
                    consume_rt: if calls > 0.0 {
                        d(now.consume_rt_us, prev.consume_rt_us) / calls / 1000.0
                    } else {
                        0.0
                    },
                    consume_ok_tps: d(now.ok, prev.ok) / secs,
                    consume_failed_tps: d(now.failed, prev.failed) / secs,
                    consume_failed_msgs: now.failed,
                    undecodable_msgs: c.undecodable.load(Ordering::Relaxed),
                },
            );
            next.insert(topic, now);
        }
        *last = (Instant::now(), next);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_rates() {
        let s = ConsumerStats::default();
        s.pulled("T", 32, Duration::from_millis(4));
        s.pulled("T", 32, Duration::from_millis(2));
        s.consumed("T", 30, 2, Duration::from_millis(10), 1);
        s.undecodable("T", 1);
        let snap = s.snapshot();
        let t = &snap["T"];
        assert!((t.pull_rt - 3.0).abs() < 1e-9);
        assert!(t.pull_tps > 0.0 && t.pull_tps <= 64.0);
        assert_eq!(t.consume_failed_msgs, 2);
        assert!((t.consume_rt - 10.0).abs() < 1e-9);
        // A second snapshot sees no new activity.
        let again = s.snapshot();
        assert_eq!(again["T"].pull_tps, 0.0);
        assert_eq!(again["T"].consume_failed_msgs, 2);
        assert_eq!(again["T"].undecodable_msgs, 1, "a total, not a rate");
        assert_eq!(s.flow_control_times(), 0);
        s.flow_controlled();
        s.flow_controlled();
        assert_eq!(s.flow_control_times(), 2, "a total since start");
    }
}
