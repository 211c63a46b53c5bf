//! A completion counter the bench thread parks on (shared by the benches with `#[path]`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// How long a wait may take before the bench gives up: a lost completion is a bug.
const STUCK: Duration = Duration::from_secs(30);

/// Things finished on other threads, and the thread to wake while it waits for them. The
/// finishing side unparks only while the waiter waits, so counting costs one atomic add when
/// nobody waits.
pub(crate) struct Done {
    count: AtomicU64,
    waiting: AtomicBool,
    waiter: Thread,
}

impl Done {
    /// A counter at 0 whose waiter is the calling thread.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Done {
            count: AtomicU64::new(0),
            waiting: AtomicBool::new(false),
            waiter: thread::current(),
        })
    }

    /// One more finished.
    pub(crate) fn add_one(&self) {
        // SeqCst on both flags: either this side sees `waiting` or the waiter sees the count.
        self.count.fetch_add(1, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) {
            self.waiter.unpark();
        }
    }

    /// How many have finished.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    /// Parks the waiter until `target` have finished; panics after 30 s.
    pub(crate) fn wait_for(&self, target: u64) {
        let deadline = Instant::now() + STUCK;
        self.waiting.store(true, Ordering::SeqCst);
        while self.count.load(Ordering::SeqCst) < target {
            let now = Instant::now();
            assert!(
                now < deadline,
                "stuck: {} of {target} finished after {STUCK:?}",
                self.count()
            );
            thread::park_timeout(deadline - now);
        }
        self.waiting.store(false, Ordering::SeqCst);
    }
}
