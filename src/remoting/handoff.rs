//! The two hand-offs from the `rmq-io` thread to the rest of the client: the one-shot slot a
//! sync caller waits on, and the `rmq-cb` callback pool.
//!
//! Both park a waiting thread at once and wake exactly one thread per hand-off, and only when
//! one is asleep. A channel per sync call (crossbeam's `bounded(1)`) spins and yields before it
//! parks, and the `threadpool` crate's workers queue on a mutex around one receiver, so every job
//! woke two threads. On a loopback round trip of a millisecond or more that spinning and the
//! second wake-up were most of a send's CPU.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use crate::error::Result;
use crate::remoting::protocol::RemotingCommand;

enum SlotState {
    Waiting,
    Done(Result<RemotingCommand>),
    /// The sending half was dropped without an answer (the loop is gone).
    Dropped,
}

struct Slot {
    state: Mutex<SlotState>,
    ready: Condvar,
}

/// The io thread's half of a sync call: [`send`](Self::send) once; dropping it unanswered tells
/// the waiter the call can never complete.
pub(crate) struct SyncReply(Arc<Slot>);

/// The caller's half of a sync call.
pub(crate) struct SyncWait(Arc<Slot>);

/// Why [`SyncWait::wait_until`] returned without an answer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WaitError {
    Timeout,
    Disconnected,
}

/// A fresh one-shot slot for one sync call.
pub(crate) fn sync_slot() -> (SyncReply, SyncWait) {
    let slot = Arc::new(Slot {
        state: Mutex::new(SlotState::Waiting),
        ready: Condvar::new(),
    });
    (SyncReply(Arc::clone(&slot)), SyncWait(slot))
}

impl SyncReply {
    pub(crate) fn send(self, result: Result<RemotingCommand>) {
        self.finish(SlotState::Done(result));
    }

    fn finish(&self, outcome: SlotState) {
        let mut state = self.0.state.lock();
        if matches!(*state, SlotState::Waiting) {
            *state = outcome;
            drop(state);
            self.0.ready.notify_one();
        }
    }
}

impl Drop for SyncReply {
    fn drop(&mut self) {
        self.finish(SlotState::Dropped);
    }
}

impl SyncWait {
    /// Waits for the answer until `deadline`.
    pub(crate) fn wait_until(
        self,
        deadline: Instant,
    ) -> std::result::Result<Result<RemotingCommand>, WaitError> {
        let mut state = self.0.state.lock();
        loop {
            match std::mem::replace(&mut *state, SlotState::Waiting) {
                SlotState::Done(result) => return Ok(result),
                SlotState::Dropped => return Err(WaitError::Disconnected),
                SlotState::Waiting => {}
            }
            if self.0.ready.wait_until(&mut state, deadline).timed_out() {
                return match std::mem::replace(&mut *state, SlotState::Dropped) {
                    SlotState::Done(result) => Ok(result),
                    SlotState::Dropped => Err(WaitError::Disconnected),
                    SlotState::Waiting => Err(WaitError::Timeout),
                };
            }
        }
    }
}

type Job = Box<dyn FnOnce() + Send + 'static>;

thread_local! {
    static ON_CALLBACK_POOL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `true` on an `rmq-cb` worker: code there may block briefly (connect, a route lookup),
/// unlike on the io thread.
pub(crate) fn on_callback_pool() -> bool {
    ON_CALLBACK_POOL.with(|c| c.get())
}

struct PoolState {
    jobs: VecDeque<Job>,
    /// Workers waiting on `work`.
    idle: usize,
    /// Wake-ups sent and not yet taken by a worker: a job finds a worker already woken for it
    /// instead of waking another.
    waking: usize,
    /// Workers running a job.
    active: usize,
    shutdown: bool,
}

struct PoolShared {
    state: Mutex<PoolState>,
    work: Condvar,
}

/// A fixed pool of `rmq-cb` threads for async callbacks and requests from brokers.
///
/// A job wakes a worker only when every worker that could take it is asleep and none is
/// already being woken; a busy worker takes the next job without a wake-up. A panicking job is
/// caught and logged; its worker carries on. Dropping the pool lets the workers finish what is
/// queued and exit.
pub(crate) struct CallbackPool {
    shared: Arc<PoolShared>,
}

impl CallbackPool {
    pub(crate) fn new(threads: usize, name: &str) -> std::io::Result<CallbackPool> {
        let shared = Arc::new(PoolShared {
            state: Mutex::new(PoolState {
                jobs: VecDeque::new(),
                idle: 0,
                waking: 0,
                active: 0,
                shutdown: false,
            }),
            work: Condvar::new(),
        });
        for _ in 0..threads.max(1) {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(name.to_string())
                .spawn(move || worker(&shared))?;
        }
        Ok(CallbackPool { shared })
    }

    pub(crate) fn execute<F: FnOnce() + Send + 'static>(&self, job: F) {
        let mut state = self.shared.state.lock();
        state.jobs.push_back(Box::new(job));
        let wake = state.idle > state.waking && state.jobs.len() > state.waking;
        if wake {
            state.waking += 1;
        }
        drop(state);
        if wake {
            self.shared.work.notify_one();
        }
    }

    /// Jobs running now.
    pub(crate) fn active_count(&self) -> usize {
        self.shared.state.lock().active
    }

    /// Jobs waiting for a worker.
    pub(crate) fn queued_count(&self) -> usize {
        self.shared.state.lock().jobs.len()
    }
}

impl Drop for CallbackPool {
    fn drop(&mut self) {
        self.shared.state.lock().shutdown = true;
        self.shared.work.notify_all();
    }
}

fn worker(shared: &PoolShared) {
    ON_CALLBACK_POOL.with(|c| c.set(true));
    let mut state = shared.state.lock();
    loop {
        if let Some(job) = state.jobs.pop_front() {
            state.active += 1;
            drop(state);
            if let Err(panic) = catch_unwind(AssertUnwindSafe(job)) {
                log::error!(
                    "rmq-cb: a callback panicked: {}",
                    crate::executor::panic_message(panic.as_ref())
                );
            }
            state = shared.state.lock();
            state.active -= 1;
            continue;
        }
        if state.shutdown {
            return;
        }
        state.idle += 1;
        shared.work.wait(&mut state);
        state.idle -= 1;
        // A spurious wake-up may find no wake-up owed; never go below zero.
        state.waking = state.waking.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn a_sync_slot_delivers_times_out_and_reports_a_dropped_sender() {
        let (tx, rx) = sync_slot();
        let t = std::thread::Builder::new()
            .name("test-peer".into())
            .spawn(move || {
                tx.send(Ok(RemotingCommand::response(
                    crate::remoting::protocol::ResponseCode::SUCCESS,
                    None,
                )))
            })
            .unwrap();
        let got = rx.wait_until(Instant::now() + Duration::from_secs(10));
        assert!(matches!(got, Ok(Ok(_))));
        t.join().unwrap();

        let (_tx, rx) = sync_slot();
        let got = rx.wait_until(Instant::now() + Duration::from_millis(20));
        assert_eq!(got.err(), Some(WaitError::Timeout));

        let (tx, rx) = sync_slot();
        std::thread::Builder::new()
            .name("test-peer".into())
            .spawn(move || drop(tx))
            .unwrap();
        let got = rx.wait_until(Instant::now() + Duration::from_secs(10));
        assert_eq!(got.err(), Some(WaitError::Disconnected));
    }

    #[test]
    fn the_pool_runs_every_job_once_and_survives_a_panic() {
        let pool = CallbackPool::new(2, "rmq-cb-test").unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        pool.execute(|| panic!("a callback's panic"));
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        for _ in 0..1000 {
            let ran = Arc::clone(&ran);
            let done_tx = done_tx.clone();
            pool.execute(move || {
                ran.fetch_add(1, Ordering::Relaxed);
                let _ = done_tx.send(());
            });
        }
        for _ in 0..1000 {
            done_rx
                .recv_timeout(Duration::from_secs(10))
                .expect("every job runs");
        }
        assert_eq!(ran.load(Ordering::Relaxed), 1000);
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.active_count() + pool.queued_count() > 0 {
            assert!(Instant::now() < deadline, "the pool never went idle");
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_job_queued_while_both_workers_sleep_wakes_one() {
        let pool = CallbackPool::new(2, "rmq-cb-test").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.shared.state.lock().idle < 2 {
            assert!(Instant::now() < deadline, "workers never went to sleep");
            std::thread::yield_now();
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        pool.execute(move || {
            let _ = tx.send(());
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the sleeping pool ran the job");
    }
}
