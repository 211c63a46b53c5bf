//! [`ScheduledExecutor`]: one named thread running delayed and fixed-rate tasks, Java's
//! `ScheduledExecutorService` with a single thread (`MQClientFactoryScheduledThread`).
//!
//! The thread keeps a `BinaryHeap` of deadlines and blocks in `recv_deadline` on its command
//! channel until the earliest deadline or a new command: no polling, no sleeping. Tasks run on
//! the scheduler thread, one at a time, so a slow task delays the others; hand long work to a
//! [`ThreadPoolExecutor`](super::ThreadPoolExecutor).
//!
//! # Fixed rate
//!
//! A periodic task's next run is due at its previous *scheduled* time plus the period (Java
//! `scheduleAtFixedRate`), so the rate does not drift with the task's run time. If a run overruns
//! so that the next time is already past, the next run starts at once and the schedule continues
//! from that moment: there is at most one catch-up run, never a burst.
//!
//! # Cancellation, panics, shutdown
//!
//! - [`ScheduledHandle::cancel`] prevents every future run; a run in progress finishes. A
//!   cancelled task is dropped when its deadline comes round. Dropping the handle does not cancel.
//! - A panicking task is caught and logged with `log::error!`; a periodic task keeps its schedule.
//! - [`ScheduledExecutor::shutdown`] drops every pending task (none runs after it), waits for a
//!   running task to finish and joins the thread within the timeout. `Drop` does the same with a
//!   short bounded wait.

use std::any::Any;
use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::fmt;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;

use super::thread_pool::{unbox, Task};
use super::{panic_message, Rejected, ShutdownError};

/// How long `Drop for ScheduledExecutor` waits for the thread before leaving it detached.
const DROP_JOIN_TIMEOUT: Duration = Duration::from_secs(1);

/// A cancellable reference to a scheduled task. Cloning it shares the cancellation.
#[derive(Debug, Clone)]
pub(crate) struct ScheduledHandle {
    cancelled: Arc<AtomicBool>,
}

impl ScheduledHandle {
    /// Prevents every future run of the task (Java `ScheduledFuture.cancel(false)`): a run in
    /// progress finishes, and a periodic task is not rescheduled after it.
    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    /// Whether [`cancel`](Self::cancel) has been called.
    #[cfg(test)]
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
}

/// A boxed periodic task that can be run, or turned back into its concrete type.
trait RepeatTask: Send + 'static {
    fn run(&mut self);
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
}

impl<F: FnMut() + Send + 'static> RepeatTask for F {
    fn run(&mut self) {
        self()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}

enum TaskKind {
    Once(Box<dyn Task>),
    FixedRate {
        task: Box<dyn RepeatTask>,
        period: Duration,
    },
}

impl TaskKind {
    fn into_any(self) -> Box<dyn Any + Send> {
        match self {
            TaskKind::Once(task) => task.into_any(),
            TaskKind::FixedRate { task, .. } => task.into_any(),
        }
    }
}

/// One pending run in the heap.
struct Entry {
    deadline: Instant,
    /// Submission order, so tasks due at the same instant run first-in first-out.
    seq: u64,
    cancelled: Arc<AtomicBool>,
    kind: TaskKind,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest deadline first.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.deadline, other.seq).cmp(&(self.deadline, self.seq))
    }
}

enum Command {
    Schedule(Entry),
    Shutdown,
}

/// A single named thread running delayed and periodic tasks. See the module docs.
pub(crate) struct ScheduledExecutor {
    name: String,
    commands: Sender<Command>,
    shutdown: AtomicBool,
    next_seq: AtomicU64,
    thread_id: ThreadId,
    /// Disconnects when the scheduler thread has exited.
    done_rx: Receiver<()>,
    /// `None` once joined.
    join: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for ScheduledExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScheduledExecutor")
            .field("name", &self.name)
            .field("shutdown", &self.shutdown.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl ScheduledExecutor {
    /// Starts the scheduler thread named `thread_name` (e.g. `rmq-sched`; 15 bytes at most show).
    pub(crate) fn new(thread_name: impl Into<String>) -> io::Result<Self> {
        let name = thread_name.into();
        let (commands, command_rx) = unbounded();
        let (done_tx, done_rx) = bounded::<()>(0);
        let thread_label = name.clone();
        let join = thread::Builder::new().name(name.clone()).spawn(move || {
            let _done = done_tx;
            Scheduler {
                name: thread_label,
                commands: command_rx,
                heap: BinaryHeap::new(),
            }
            .run();
        })?;
        Ok(ScheduledExecutor {
            name,
            commands,
            shutdown: AtomicBool::new(false),
            next_seq: AtomicU64::new(0),
            thread_id: join.thread().id(),
            done_rx,
            join: Mutex::new(Some(join)),
        })
    }

    /// Runs `task` once, `delay` from now (Java `schedule(Runnable, delay, unit)`).
    ///
    /// Fails with [`Rejected::Shutdown`], handing the task back, once the executor is shut down.
    pub(crate) fn schedule<F>(
        &self,
        delay: Duration,
        task: F,
    ) -> Result<ScheduledHandle, Rejected<F>>
    where
        F: FnOnce() + Send + 'static,
    {
        self.submit(Instant::now() + delay, TaskKind::Once(Box::new(task)))
            .map_err(|kind| Rejected::Shutdown(unbox::<F>(kind.into_any())))
    }

    /// Runs `task` first after `initial_delay`, then every `period` at a fixed rate (Java
    /// `scheduleAtFixedRate`); see the module docs for overruns. A `period` under 1 ms is
    /// treated as 1 ms.
    ///
    /// Fails with [`Rejected::Shutdown`], handing the task back, once the executor is shut down.
    pub(crate) fn schedule_at_fixed_rate<F>(
        &self,
        initial_delay: Duration,
        period: Duration,
        task: F,
    ) -> Result<ScheduledHandle, Rejected<F>>
    where
        F: FnMut() + Send + 'static,
    {
        let kind = TaskKind::FixedRate {
            task: Box::new(task),
            period: period.max(Duration::from_millis(1)),
        };
        self.submit(Instant::now() + initial_delay, kind)
            .map_err(|kind| Rejected::Shutdown(unbox::<F>(kind.into_any())))
    }

    /// Sends a new entry to the scheduler thread, or hands the task back if it is shut down.
    fn submit(&self, deadline: Instant, kind: TaskKind) -> Result<ScheduledHandle, TaskKind> {
        if self.shutdown.load(Ordering::SeqCst) {
            return Err(kind);
        }
        let cancelled = Arc::new(AtomicBool::new(false));
        let entry = Entry {
            deadline,
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
            cancelled: Arc::clone(&cancelled),
            kind,
        };
        match self.commands.send(Command::Schedule(entry)) {
            Ok(()) => Ok(ScheduledHandle { cancelled }),
            // The thread has exited: only after shutdown.
            Err(err) => match err.into_inner() {
                Command::Schedule(entry) => Err(entry.kind),
                Command::Shutdown => unreachable!("we sent a Schedule command"),
            },
        }
    }

    /// Whether shutdown has been requested.
    #[cfg(test)]
    pub(crate) fn is_shutdown(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// Drops every pending task, waits for a running task to finish and joins the thread within
    /// `timeout`. Idempotent: once it has returned `Ok`, later calls return `Ok` at once.
    ///
    /// [`ShutdownError::Timeout`] if a task is still running at the deadline (the thread exits
    /// after it; a later call waits again). Called from a scheduled task, it only requests
    /// shutdown and returns `Ok(())`.
    pub(crate) fn shutdown(&self, timeout: Duration) -> Result<(), ShutdownError> {
        let deadline = Instant::now() + timeout;
        if !self.shutdown.swap(true, Ordering::SeqCst) {
            // Fails only if the thread has already exited.
            let _ = self.commands.send(Command::Shutdown);
        }
        if thread::current().id() == self.thread_id {
            log::debug!(
                "{}: shutdown called from a scheduled task: not joined",
                self.name
            );
            return Ok(());
        }
        let mut join = self.join.lock();
        if join.is_none() {
            return Ok(());
        }
        match self.done_rx.recv_deadline(deadline) {
            Err(RecvTimeoutError::Timeout) => Err(ShutdownError::Timeout {
                name: self.name.clone(),
                timeout,
                unfinished_threads: 1,
                abandoned_tasks: 0,
                threads: vec![self.name.clone()],
            }),
            // Nothing is ever sent: the channel disconnects when the thread exits.
            Err(RecvTimeoutError::Disconnected) | Ok(()) => {
                let handle = join.take().expect("checked above");
                handle.join().map_err(|payload| ShutdownError::Panicked {
                    name: self.name.clone(),
                    message: panic_message(&*payload),
                })
            }
        }
    }
}

impl Drop for ScheduledExecutor {
    /// Shuts down with a 1 s bounded wait (none when dropped from a scheduled task); a timeout
    /// is logged.
    fn drop(&mut self) {
        if let Err(e) = self.shutdown(DROP_JOIN_TIMEOUT) {
            log::warn!("dropping ScheduledExecutor: {e}");
        }
    }
}

/// The scheduler thread's state: only this thread touches the heap.
struct Scheduler {
    name: String,
    commands: Receiver<Command>,
    heap: BinaryHeap<Entry>,
}

impl Scheduler {
    fn run(mut self) {
        log::debug!("{}: scheduler started", self.name);
        loop {
            self.run_due();
            let command = match self.heap.peek() {
                Some(next) => match self.commands.recv_deadline(next.deadline) {
                    Ok(command) => command,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match self.commands.recv() {
                    Ok(command) => command,
                    Err(_) => break,
                },
            };
            match command {
                Command::Schedule(entry) => self.heap.push(entry),
                Command::Shutdown => break,
            }
        }
        log::debug!(
            "{}: scheduler stopped, {} pending task(s) dropped",
            self.name,
            self.heap.len()
        );
    }

    /// Runs every entry whose deadline has passed, rescheduling periodic ones.
    fn run_due(&mut self) {
        loop {
            let now = Instant::now();
            match self.heap.peek() {
                Some(next) if next.deadline <= now => {}
                _ => return,
            }
            let Some(mut entry) = self.heap.pop() else {
                return;
            };
            if entry.cancelled.load(Ordering::SeqCst) {
                continue;
            }
            match entry.kind {
                TaskKind::Once(task) => self.guarded(|| task.run()),
                TaskKind::FixedRate {
                    ref mut task,
                    period,
                } => {
                    self.guarded(|| task.run());
                    if !entry.cancelled.load(Ordering::SeqCst) {
                        // Fixed rate from the scheduled time; after an overrun, one prompt run
                        // and the schedule restarts from now (no burst of catch-up runs).
                        entry.deadline = (entry.deadline + period).max(Instant::now());
                        self.heap.push(entry);
                    }
                }
            }
        }
    }

    /// Runs a task, catching and logging a panic.
    fn guarded(&self, task: impl FnOnce()) {
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(task)) {
            log::error!(
                "{}: scheduled task panicked: {}",
                self.name,
                panic_message(&*payload)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::TryRecvError;

    /// Generous guard for anything that should happen promptly.
    const WAIT: Duration = Duration::from_secs(10);

    #[test]
    fn delayed_task_runs_after_the_delay_on_the_named_thread() {
        let sched = ScheduledExecutor::new("rmq-sched").unwrap();
        let (tx, rx) = bounded(1);
        let start = Instant::now();
        sched
            .schedule(Duration::from_millis(100), move || {
                tx.send((Instant::now(), thread::current().name().map(str::to_owned)))
                    .unwrap()
            })
            .unwrap();
        let (ran_at, name) = rx.recv_timeout(WAIT).unwrap();
        assert!(ran_at - start >= Duration::from_millis(100));
        assert_eq!(name.as_deref(), Some("rmq-sched"));
        assert_eq!(sched.shutdown(WAIT), Ok(()));
    }

    #[test]
    fn tasks_run_in_deadline_order() {
        let sched = ScheduledExecutor::new("rmq-sched-o").unwrap();
        let (tx, rx) = unbounded();
        for (delay, label) in [(90, "c"), (30, "a"), (60, "b")] {
            let tx = tx.clone();
            sched
                .schedule(Duration::from_millis(delay), move || {
                    tx.send(label).unwrap()
                })
                .unwrap();
        }
        let got: Vec<_> = (0..3).map(|_| rx.recv_timeout(WAIT).unwrap()).collect();
        assert_eq!(got, ["a", "b", "c"]);
        assert_eq!(sched.shutdown(WAIT), Ok(()));
    }

    #[test]
    fn fixed_rate_repeats_until_cancelled() {
        let sched = ScheduledExecutor::new("rmq-sched-r").unwrap();
        let (tx, rx) = unbounded();
        let handle = sched
            .schedule_at_fixed_rate(Duration::ZERO, Duration::from_millis(20), move || {
                let _ = tx.send(());
            })
            .unwrap();
        for _ in 0..3 {
            rx.recv_timeout(WAIT).unwrap();
        }
        handle.cancel();
        assert!(handle.is_cancelled());
        // Tasks run one at a time: once this marker has run, no run of the periodic task is in
        // progress, and none may follow.
        let (marker_tx, marker_rx) = bounded(1);
        sched
            .schedule(Duration::ZERO, move || marker_tx.send(()).unwrap())
            .unwrap();
        marker_rx.recv_timeout(WAIT).unwrap();
        while rx.try_recv().is_ok() {}
        // No run for ten periods. The cancelled entry comes due meanwhile and is dropped with
        // its closure, which disconnects the channel.
        assert_ne!(rx.recv_timeout(Duration::from_millis(200)), Ok(()));
        assert_eq!(rx.recv_timeout(WAIT), Err(RecvTimeoutError::Disconnected));
        assert_eq!(sched.shutdown(WAIT), Ok(()));
    }

    #[test]
    fn periodic_task_keeps_its_schedule_after_a_panic() {
        let sched = ScheduledExecutor::new("rmq-sched-p").unwrap();
        let (tx, rx) = unbounded();
        let mut runs = 0;
        let handle = sched
            .schedule_at_fixed_rate(Duration::ZERO, Duration::from_millis(10), move || {
                runs += 1;
                if runs == 1 {
                    panic!("first run fails");
                }
                let _ = tx.send(runs);
            })
            .unwrap();
        assert_eq!(rx.recv_timeout(WAIT), Ok(2));
        assert_eq!(rx.recv_timeout(WAIT), Ok(3));
        handle.cancel();
        assert_eq!(sched.shutdown(WAIT), Ok(()));
    }

    #[test]
    fn overrun_runs_once_promptly_without_a_burst() {
        let sched = ScheduledExecutor::new("rmq-sched-v").unwrap();
        let (tx, rx) = unbounded();
        let period = Duration::from_millis(20);
        let mut runs = 0;
        sched
            .schedule_at_fixed_rate(Duration::ZERO, period, move || {
                runs += 1;
                let _ = tx.send(Instant::now());
                if runs == 1 {
                    // A slow job overrunning five periods (a sleep inside a task is fine).
                    thread::sleep(period * 5);
                }
            })
            .unwrap();
        let first = rx.recv_timeout(WAIT).unwrap();
        let second = rx.recv_timeout(WAIT).unwrap();
        let third = rx.recv_timeout(WAIT).unwrap();
        assert!(second - first >= period * 5);
        // Java would run the four missed periods back to back; we run one and resume the rate.
        assert!(
            third - second >= period / 2,
            "burst after an overrun: {:?}",
            third - second
        );
        assert_eq!(sched.shutdown(WAIT), Ok(()));
    }

    #[test]
    fn shutdown_joins_drops_pending_tasks_and_rejects_new_ones() {
        let sched = ScheduledExecutor::new("rmq-sched-s").unwrap();
        let (tx, rx) = bounded::<()>(1);
        sched
            .schedule(Duration::from_secs(60), move || tx.send(()).unwrap())
            .unwrap();
        assert_eq!(sched.shutdown(WAIT), Ok(()));
        // The pending task (and its sender) was dropped, not run.
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        assert!(sched.is_shutdown());
        let (tx, rx) = bounded(1);
        let rejected = sched
            .schedule(Duration::ZERO, move || tx.send("back").unwrap())
            .unwrap_err();
        (rejected.into_inner())();
        assert_eq!(rx.try_recv(), Ok("back"));
        let rejected = sched
            .schedule_at_fixed_rate(Duration::ZERO, Duration::from_secs(1), || {})
            .unwrap_err();
        assert!(rejected.is_shutdown());
        assert_eq!(sched.shutdown(WAIT), Ok(()));
    }

    #[test]
    fn shutdown_times_out_on_a_running_task_and_can_be_retried() {
        let sched = ScheduledExecutor::new("rmq-sched-t").unwrap();
        let (gate_tx, gate_rx) = bounded::<()>(0);
        let (started_tx, started_rx) = bounded(1);
        sched
            .schedule(Duration::ZERO, move || {
                started_tx.send(()).unwrap();
                let _ = gate_rx.recv();
            })
            .unwrap();
        started_rx.recv_timeout(WAIT).unwrap();
        let err = sched.shutdown(Duration::from_millis(50)).unwrap_err();
        assert!(matches!(err, ShutdownError::Timeout { .. }), "{err:?}");
        drop(gate_tx);
        assert_eq!(sched.shutdown(WAIT), Ok(()));
    }

    #[test]
    fn drop_shuts_down_and_joins() {
        let sched = ScheduledExecutor::new("rmq-sched-d").unwrap();
        let (tx, rx) = bounded::<()>(1);
        sched
            .schedule(Duration::from_secs(60), move || tx.send(()).unwrap())
            .unwrap();
        drop(sched);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    }
}
