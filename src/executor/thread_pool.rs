//! [`ThreadPoolExecutor`]: a pool of named worker threads between `core` and `max`, Java's
//! `ThreadPoolExecutor` with a `max` that is really honoured.
//!
//! # Sizing
//!
//! - `core` workers are started eagerly by [`ThreadPoolBuilder::build`] and never retire.
//! - When a task is queued and the queue holds more tasks than there are idle workers, one more
//!   worker is started, up to `max`. The check runs in [`ThreadPoolExecutor::execute`] and again
//!   in each worker as it takes a task, so a backlog keeps growing the pool even when the
//!   submitter's view of the idle count was stale.
//! - When a bounded queue is full and fewer than `max` workers exist, a new worker is started
//!   with the task as its first task (Java's rule); only at `max` is the task rejected.
//! - A worker above `core` that stays idle for `keep_alive` retires, so the pool shrinks back to
//!   `core`. Java's consume pool never grows past `core` because its queue is unbounded; this one
//!   does.
//!
//! # Hot path
//!
//! `execute` boxes the task, pushes it on a crossbeam channel and updates a few atomics; it takes
//! a lock only when it starts a worker.
//!
//! # Shutdown
//!
//! [`ThreadPoolExecutor::shutdown`] stops accepting tasks, lets the workers drain the queue, and
//! joins them. If the timeout elapses first it behaves like Java's `shutdownNow`: queued tasks
//! that have not started are dropped without running (their count is reported), running tasks
//! are left to finish on their detached threads. `Drop` only signals shutdown: the workers drain
//! the queue and exit on their own, and nothing blocks.
//!
//! # Thread-safety of the fields
//!
//! The counters in `Shared` are atomics touched by every thread. `Shared::lifecycle` (join handles,
//! the stop and done senders) is locked only to start a worker and to shut down.

use std::any::Any;
use std::fmt;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{
    bounded, select, unbounded, Receiver, RecvTimeoutError, Sender, TrySendError,
};
use parking_lot::Mutex;

use super::{panic_message, ShutdownError};

/// The largest `max_threads` accepted, as Java's consumer checks for `consumeThreadMax`.
const MAX_THREADS_LIMIT: usize = 1000;

/// Default `keep_alive`, as Java's consume pool.
const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(60);

/// How long a draining worker waits for a task whose submitter is between its shutdown check and
/// its send. Only reached when `execute` races with `shutdown`.
const SUBMIT_RACE_WAIT: Duration = Duration::from_millis(1);

/// A boxed one-shot task that can be run, or turned back into its concrete type to hand it back
/// to the caller.
pub(super) trait Task: Send + 'static {
    /// Runs the task.
    fn run(self: Box<Self>);
    /// The task as `Any`, to downcast it back to the closure type it was boxed from.
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
}

impl<F: FnOnce() + Send + 'static> Task for F {
    fn run(self: Box<Self>) {
        (*self)()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}

type Job = Box<dyn Task>;

/// Recovers the concrete closure from a box made from an `F`.
pub(super) fn unbox<F: 'static>(any: Box<dyn Any + Send>) -> F {
    *any.downcast::<F>()
        .unwrap_or_else(|_| unreachable!("a task is always unboxed as the type it was boxed from"))
}

type ThreadNameFn = Box<dyn FnMut(usize) -> String + Send>;
type PanicHandler = Box<dyn Fn(Box<dyn Any + Send>) + Send + Sync>;

/// A task the pool did not accept, handed back to the caller (Java's
/// `RejectedExecutionException`, in the shape of crossbeam's `TrySendError<T>`).
#[derive(PartialEq, Eq, Clone, Copy)]
pub(crate) enum Rejected<F> {
    /// The pool is shut down.
    Shutdown(F),
    /// The bounded queue is full and the pool already runs `max` threads.
    Full(F),
}

impl<F> Rejected<F> {
    /// The rejected task.
    pub(crate) fn into_inner(self) -> F {
        match self {
            Rejected::Shutdown(f) | Rejected::Full(f) => f,
        }
    }

    /// Whether the pool was shut down.
    pub(crate) fn is_shutdown(&self) -> bool {
        matches!(self, Rejected::Shutdown(_))
    }

    /// Whether the queue was full.
    #[cfg(test)]
    pub(crate) fn is_full(&self) -> bool {
        matches!(self, Rejected::Full(_))
    }
}

impl<F> fmt::Debug for Rejected<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejected::Shutdown(_) => f.write_str("Shutdown(..)"),
            Rejected::Full(_) => f.write_str("Full(..)"),
        }
    }
}

impl<F> fmt::Display for Rejected<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejected::Shutdown(_) => f.write_str("task rejected: the thread pool is shut down"),
            Rejected::Full(_) => {
                f.write_str("task rejected: the queue is full and the pool runs max threads")
            }
        }
    }
}

impl<F> std::error::Error for Rejected<F> {}

/// Why [`ThreadPoolBuilder::build`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub(crate) enum ThreadPoolBuildError {
    /// `core_threads` was 0.
    ZeroCoreThreads,
    /// `core_threads` was larger than `max_threads`.
    CoreAboveMax {
        /// The requested core size.
        core: usize,
        /// The requested maximum.
        max: usize,
    },
    /// `max_threads` was above the limit of 1000.
    MaxAboveLimit {
        /// The requested maximum.
        max: usize,
    },
    /// `keep_alive` was zero.
    ZeroKeepAlive,
    /// `queue_capacity` was `Some(0)`.
    ZeroQueueCapacity,
    /// The OS refused to start a core thread.
    Spawn(io::Error),
}

impl fmt::Display for ThreadPoolBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ThreadPoolBuildError::ZeroCoreThreads => f.write_str("core_threads must be at least 1"),
            ThreadPoolBuildError::CoreAboveMax { core, max } => write!(
                f,
                "core_threads ({core}) must not be greater than max_threads ({max})"
            ),
            ThreadPoolBuildError::MaxAboveLimit { max } => write!(
                f,
                "max_threads ({max}) must not be greater than {MAX_THREADS_LIMIT}"
            ),
            ThreadPoolBuildError::ZeroKeepAlive => f.write_str("keep_alive must be non-zero"),
            ThreadPoolBuildError::ZeroQueueCapacity => {
                f.write_str("queue_capacity must be at least 1 (or None for unbounded)")
            }
            ThreadPoolBuildError::Spawn(e) => write!(f, "could not start a pool thread: {e}"),
        }
    }
}

impl std::error::Error for ThreadPoolBuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ThreadPoolBuildError::Spawn(e) => Some(e),
            _ => None,
        }
    }
}

/// Configures and builds a [`ThreadPoolExecutor`] (rayon's builder names, Java's core/max).
///
/// ```ignore
/// let pool = ThreadPoolBuilder::new()
///     .name("ConsumeMessageThread_group")
///     .core_threads(20)
///     .max_threads(64)
///     .thread_name(|i| format!("rmq-cons-{i}"))
///     .build()?;
/// ```
pub(crate) struct ThreadPoolBuilder {
    name: String,
    core: usize,
    max: Option<usize>,
    keep_alive: Duration,
    queue_capacity: Option<usize>,
    thread_name: Option<ThreadNameFn>,
    panic_handler: Option<PanicHandler>,
}

impl fmt::Debug for ThreadPoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPoolBuilder")
            .field("name", &self.name)
            .field("core", &self.core)
            .field("max", &self.max)
            .field("keep_alive", &self.keep_alive)
            .field("queue_capacity", &self.queue_capacity)
            .finish_non_exhaustive()
    }
}

impl Default for ThreadPoolBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ThreadPoolBuilder {
    /// A builder with one core thread, `max` equal to `core`, a 60 s keep-alive, an unbounded
    /// queue, threads named `rmq-pool-{index}` and panics logged with `log::error!`.
    pub(crate) fn new() -> Self {
        ThreadPoolBuilder {
            name: "ThreadPoolExecutor".to_owned(),
            core: 1,
            max: None,
            keep_alive: DEFAULT_KEEP_ALIVE,
            queue_capacity: None,
            thread_name: None,
            panic_handler: None,
        }
    }

    /// The pool's name for logs and errors (Java's thread-factory prefix, say
    /// `"ConsumeMessageThread_group"`); the OS thread names come from
    /// [`thread_name`](Self::thread_name).
    pub(crate) fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Threads started at build time and kept for the pool's life (Java `corePoolSize`,
    /// `consumeThreadMin`). At least 1.
    pub(crate) fn core_threads(mut self, n: usize) -> Self {
        self.core = n;
        self
    }

    /// The most threads the pool runs at once (Java `maximumPoolSize`, `consumeThreadMax`).
    /// Between `core_threads` and 1000; defaults to `core_threads`.
    pub(crate) fn max_threads(mut self, n: usize) -> Self {
        self.max = Some(n);
        self
    }

    /// How long a thread above `core` may stay idle before it retires. Default 60 s; non-zero.
    pub(crate) fn keep_alive(mut self, keep_alive: Duration) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// The queue's capacity: `None` (the default) is unbounded, `Some(n)` (n ≥ 1) makes
    /// `execute` reject tasks once `n` are queued and `max` threads run. The consume pools are
    /// unbounded (as Java's); the transaction check pool is bounded (Java's
    /// `checkRequestHoldMax`).
    pub(crate) fn queue_capacity(mut self, capacity: Option<usize>) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// Names each new thread from its index (0, 1, 2, … in start order, never reused). Keep names
    /// within Linux's 15 bytes, e.g. `rmq-cons-3`.
    pub(crate) fn thread_name<N>(mut self, name: N) -> Self
    where
        N: FnMut(usize) -> String + Send + 'static,
    {
        self.thread_name = Some(Box::new(name));
        self
    }

    /// Receives the payload of every panicking task (rayon's `panic_handler`). The default logs
    /// it with `log::error!`. The worker keeps running either way; a panic inside the handler is
    /// caught and logged too. The crate's pools use the default; tests install their own.
    #[cfg(test)]
    pub(crate) fn panic_handler<H>(mut self, handler: H) -> Self
    where
        H: Fn(Box<dyn Any + Send>) + Send + Sync + 'static,
    {
        self.panic_handler = Some(Box::new(handler));
        self
    }

    /// Validates the settings and starts the `core` threads.
    pub(crate) fn build(self) -> Result<ThreadPoolExecutor, ThreadPoolBuildError> {
        let core = self.core;
        let max = self.max.unwrap_or(core);
        if core == 0 {
            return Err(ThreadPoolBuildError::ZeroCoreThreads);
        }
        if max > MAX_THREADS_LIMIT {
            return Err(ThreadPoolBuildError::MaxAboveLimit { max });
        }
        if core > max {
            return Err(ThreadPoolBuildError::CoreAboveMax { core, max });
        }
        if self.keep_alive.is_zero() {
            return Err(ThreadPoolBuildError::ZeroKeepAlive);
        }
        let (queue_tx, queue_rx) = match self.queue_capacity {
            Some(0) => return Err(ThreadPoolBuildError::ZeroQueueCapacity),
            Some(n) => bounded(n),
            None => unbounded(),
        };
        let (stop_tx, stop_rx) = bounded(0);
        let (done_tx, done_rx) = bounded(0);
        let shared = Arc::new(Shared {
            name: self.name,
            core,
            max,
            keep_alive: self.keep_alive,
            queue: queue_rx,
            stop: stop_rx,
            workers: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            submitting: AtomicUsize::new(0),
            completed: AtomicU64::new(0),
            abandoned: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            abandon: AtomicBool::new(false),
            thread_name: Mutex::new(
                self.thread_name
                    .unwrap_or_else(|| Box::new(|i| format!("rmq-pool-{i}"))),
            ),
            next_index: AtomicUsize::new(0),
            panic_handler: self.panic_handler,
            lifecycle: Mutex::new(Lifecycle {
                handles: Vec::new(),
                stop_tx: Some(stop_tx),
                done_tx: Some(done_tx),
            }),
        });
        for _ in 0..core {
            if let Err(e) = shared.spawn_worker(None) {
                shared.signal_shutdown();
                return Err(ThreadPoolBuildError::Spawn(e.error));
            }
        }
        Ok(ThreadPoolExecutor {
            shared,
            queue_tx,
            done_rx,
        })
    }
}

/// What only starting a worker or shutting down touches.
struct Lifecycle {
    /// Join handles of started workers; finished ones are pruned when a worker starts.
    handles: Vec<JoinHandle<()>>,
    /// Dropped on shutdown: disconnects `Shared::stop`.
    stop_tx: Option<Sender<()>>,
    /// Each worker holds a clone; the pool's copy is dropped on shutdown, so `done_rx`
    /// disconnects once the last worker has exited (tokio's blocking-pool shutdown).
    done_tx: Option<Sender<()>>,
}

/// State shared by the pool handle and its workers.
struct Shared {
    name: String,
    core: usize,
    max: usize,
    keep_alive: Duration,
    queue: Receiver<Job>,
    /// Never yields a message; disconnects on shutdown.
    stop: Receiver<()>,
    /// Live workers, including ones being started (the slot is reserved first).
    workers: AtomicUsize,
    /// Workers blocked waiting for a task.
    idle: AtomicUsize,
    /// Workers running a task.
    active: AtomicUsize,
    /// `execute` calls between their shutdown check and their send (see `next_job_draining`).
    submitting: AtomicUsize,
    completed: AtomicU64,
    abandoned: AtomicUsize,
    shutdown: AtomicBool,
    /// Set when a shutdown times out: queued tasks are dropped, not run.
    abandon: AtomicBool,
    thread_name: Mutex<ThreadNameFn>,
    next_index: AtomicUsize,
    panic_handler: Option<PanicHandler>,
    lifecycle: Mutex<Lifecycle>,
}

/// A failed worker start, with the first task it was to run.
struct SpawnError {
    error: io::Error,
    first: Option<Job>,
}

/// What woke an idle worker.
enum Wake {
    Job(Job),
    Disconnected,
    Stop,
    KeepAliveElapsed,
}

impl Shared {
    /// Starts one worker unless the pool already runs `max` or is shut down.
    fn try_spawn(self: &Arc<Self>, first: Option<Job>) -> Result<(), Option<Job>> {
        let mut n = self.workers.load(Ordering::SeqCst);
        loop {
            if n >= self.max {
                return Err(first);
            }
            match self
                .workers
                .compare_exchange_weak(n, n + 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => break,
                Err(actual) => n = actual,
            }
        }
        self.spawn_reserved(first).map_err(|e| {
            log::warn!("{}: could not start a worker: {}", self.name, e.error);
            e.first
        })
    }

    /// Starts a worker for a slot already counted in `workers` (released again on failure).
    fn spawn_worker(self: &Arc<Self>, first: Option<Job>) -> Result<(), SpawnError> {
        self.workers.fetch_add(1, Ordering::SeqCst);
        self.spawn_reserved(first)
    }

    fn spawn_reserved(self: &Arc<Self>, first: Option<Job>) -> Result<(), SpawnError> {
        let mut lifecycle = self.lifecycle.lock();
        let done = match (&lifecycle.done_tx, self.shutdown.load(Ordering::SeqCst)) {
            (Some(done), false) => done.clone(),
            _ => {
                self.workers.fetch_sub(1, Ordering::SeqCst);
                return Err(SpawnError {
                    error: io::Error::other("the pool is shut down"),
                    first,
                });
            }
        };
        let index = self.next_index.fetch_add(1, Ordering::Relaxed);
        let name = (self.thread_name.lock())(index);
        // The first task goes through a slot so it can be handed back if the thread won't start.
        let slot = first.map(|job| Arc::new(Mutex::new(Some(job))));
        let worker_slot = slot.clone();
        let shared = Arc::clone(self);
        let spawned = thread::Builder::new().name(name).spawn(move || {
            let first = worker_slot.and_then(|slot| slot.lock().take());
            shared.worker_loop(first, done);
        });
        match spawned {
            Ok(handle) => {
                lifecycle.handles.retain(|h| !h.is_finished());
                lifecycle.handles.push(handle);
                Ok(())
            }
            Err(error) => {
                self.workers.fetch_sub(1, Ordering::SeqCst);
                Err(SpawnError {
                    error,
                    first: slot.and_then(|slot| slot.lock().take()),
                })
            }
        }
    }

    /// Starts another worker if more tasks are queued than workers wait for them.
    fn grow_if_backlogged(self: &Arc<Self>) {
        if self.queue.len() > self.idle.load(Ordering::SeqCst) {
            // At `max` or shut down: the queued tasks wait for a running worker.
            let _ = self.try_spawn(None);
        }
    }

    fn worker_loop(self: &Arc<Self>, first: Option<Job>, done: Sender<()>) {
        // Drop order is the reverse of declaration: the guard releases the worker's slot, then
        // `_done` tells a waiting `shutdown` that this worker is gone.
        let _done = done;
        let mut guard = WorkerGuard {
            shared: self,
            retired: false,
        };
        if let Some(job) = first {
            self.run_job(job);
        }
        loop {
            if self.abandon.load(Ordering::SeqCst) {
                break;
            }
            self.idle.fetch_add(1, Ordering::SeqCst);
            let wake = select! {
                recv(self.queue) -> job => job.map_or(Wake::Disconnected, Wake::Job),
                recv(self.stop) -> _ => Wake::Stop,
                default(self.keep_alive) => Wake::KeepAliveElapsed,
            };
            self.idle.fetch_sub(1, Ordering::SeqCst);
            match wake {
                Wake::Job(job) => {
                    self.grow_if_backlogged();
                    self.run_job(job);
                }
                // The pool handle was dropped and the queue is empty.
                Wake::Disconnected => break,
                Wake::Stop => match self.next_job_draining() {
                    Some(job) => self.run_job(job),
                    None => break,
                },
                Wake::KeepAliveElapsed => {
                    // A task sent while this worker still counted as idle is taken here, so no
                    // submitter relies on a worker that is about to retire.
                    if let Ok(job) = self.queue.try_recv() {
                        self.run_job(job);
                    } else if self.try_retire() {
                        guard.retired = true;
                        log::debug!("{}: idle worker retired", self.name);
                        if !self.queue.is_empty() {
                            self.grow_if_backlogged();
                        }
                        break;
                    }
                }
            }
        }
    }

    /// Releases this worker's slot if the pool runs more than `core` workers.
    fn try_retire(&self) -> bool {
        let mut n = self.workers.load(Ordering::SeqCst);
        loop {
            if n <= self.core {
                return false;
            }
            match self
                .workers
                .compare_exchange_weak(n, n - 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return true,
                Err(actual) => n = actual,
            }
        }
    }

    /// After shutdown: the next queued task, or `None` once the queue is empty for good.
    ///
    /// `execute` increments `submitting` before it checks the shutdown flag and decrements it
    /// after its send. So once the flag is set and `submitting` reads 0, every accepted task is
    /// already in the queue, and an empty queue stays empty.
    fn next_job_draining(&self) -> Option<Job> {
        loop {
            if self.abandon.load(Ordering::SeqCst) {
                return None;
            }
            if let Ok(job) = self.queue.try_recv() {
                return Some(job);
            }
            if self.submitting.load(Ordering::SeqCst) == 0 {
                return self.queue.try_recv().ok();
            }
            match self.queue.recv_timeout(SUBMIT_RACE_WAIT) {
                Ok(job) => return Some(job),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    fn run_job(&self, job: Job) {
        if self.abandon.load(Ordering::SeqCst) {
            self.abandoned.fetch_add(1, Ordering::SeqCst);
            drop(job);
            return;
        }
        self.active.fetch_add(1, Ordering::SeqCst);
        let result = panic::catch_unwind(AssertUnwindSafe(|| job.run()));
        self.active.fetch_sub(1, Ordering::SeqCst);
        self.completed.fetch_add(1, Ordering::SeqCst);
        if let Err(payload) = result {
            self.report_panic(payload);
        }
    }

    fn report_panic(&self, payload: Box<dyn Any + Send>) {
        match &self.panic_handler {
            Some(handler) => {
                if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| handler(payload))) {
                    log::error!(
                        "{}: the panic handler panicked: {}",
                        self.name,
                        panic_message(&*p)
                    );
                }
            }
            None => log::error!(
                "{}: task panicked on {}: {}",
                self.name,
                thread::current().name().unwrap_or("<unnamed>"),
                panic_message(&*payload)
            ),
        }
    }

    /// Stops accepting tasks and tells the workers to drain the queue and exit.
    fn signal_shutdown(&self) {
        let mut lifecycle = self.lifecycle.lock();
        self.shutdown.store(true, Ordering::SeqCst);
        lifecycle.stop_tx.take();
        lifecycle.done_tx.take();
    }

    /// Whether the current thread is one of this pool's workers.
    fn is_worker_thread(&self) -> bool {
        let me = thread::current().id();
        self.lifecycle
            .lock()
            .handles
            .iter()
            .any(|h| h.thread().id() == me)
    }
}

/// Releases a worker's slot when its thread ends, however it ends.
struct WorkerGuard<'a> {
    shared: &'a Shared,
    retired: bool,
}

impl Drop for WorkerGuard<'_> {
    fn drop(&mut self) {
        if !self.retired {
            self.shared.workers.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// A pool of named worker threads that grows from `core` towards `max` while tasks are queued
/// and shrinks back after `keep_alive` (Java `ThreadPoolExecutor`). Build it with
/// [`ThreadPoolBuilder`]; see the module docs for sizing and shutdown.
pub(crate) struct ThreadPoolExecutor {
    shared: Arc<Shared>,
    queue_tx: Sender<Job>,
    /// Disconnects once shutdown has been signalled and every worker has exited.
    done_rx: Receiver<()>,
}

impl fmt::Debug for ThreadPoolExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPoolExecutor")
            .field("name", &self.shared.name)
            .field("core", &self.shared.core)
            .field("max", &self.shared.max)
            .field("pool_size", &self.pool_size())
            .field("active", &self.active_count())
            .field("queued", &self.queue_len())
            .field("shutdown", &self.is_shutdown())
            .finish()
    }
}

impl ThreadPoolExecutor {
    /// A builder with the defaults described on [`ThreadPoolBuilder::new`].
    pub(crate) fn builder() -> ThreadPoolBuilder {
        ThreadPoolBuilder::new()
    }

    /// Queues `task` to run on a worker, starting a worker if the backlog needs one.
    ///
    /// Fails, handing `task` back, with [`Rejected::Shutdown`] once the pool is shut down, or
    /// with [`Rejected::Full`] when the bounded queue is full and `max` threads already run.
    pub(crate) fn execute<F>(&self, task: F) -> Result<(), Rejected<F>>
    where
        F: FnOnce() + Send + 'static,
    {
        let shared = &self.shared;
        shared.submitting.fetch_add(1, Ordering::SeqCst);
        let result = if shared.shutdown.load(Ordering::SeqCst) {
            Err(Rejected::Shutdown(task))
        } else {
            match self.queue_tx.try_send(Box::new(task)) {
                Ok(()) => {
                    shared.grow_if_backlogged();
                    Ok(())
                }
                Err(TrySendError::Full(job)) => match shared.try_spawn(Some(job)) {
                    Ok(()) => Ok(()),
                    Err(job) => {
                        let task =
                            unbox::<F>(job.expect("a failed spawn returns its task").into_any());
                        if shared.shutdown.load(Ordering::SeqCst) {
                            Err(Rejected::Shutdown(task))
                        } else {
                            Err(Rejected::Full(task))
                        }
                    }
                },
                // The pool owns a receiver for as long as this handle exists.
                Err(TrySendError::Disconnected(job)) => {
                    Err(Rejected::Shutdown(unbox::<F>(job.into_any())))
                }
            }
        };
        shared.submitting.fetch_sub(1, Ordering::SeqCst);
        result
    }

    /// Threads currently alive (Java `getPoolSize`).
    pub(crate) fn pool_size(&self) -> usize {
        self.shared.workers.load(Ordering::SeqCst)
    }

    /// Threads currently running a task (Java `getActiveCount`).
    pub(crate) fn active_count(&self) -> usize {
        self.shared.active.load(Ordering::SeqCst)
    }

    /// Tasks queued and not yet started.
    pub(crate) fn queue_len(&self) -> usize {
        self.queue_tx.len()
    }

    /// Tasks that have finished, panicked ones included (Java `getCompletedTaskCount`).
    #[cfg(test)]
    pub(crate) fn completed_task_count(&self) -> u64 {
        self.shared.completed.load(Ordering::SeqCst)
    }

    /// The configured `core` size.
    pub(crate) fn core_threads(&self) -> usize {
        self.shared.core
    }

    /// The configured `max` size.
    #[cfg(test)]
    pub(crate) fn max_threads(&self) -> usize {
        self.shared.max
    }

    /// Whether shutdown has been signalled (by `shutdown` or `Drop`).
    pub(crate) fn is_shutdown(&self) -> bool {
        self.shared.shutdown.load(Ordering::SeqCst)
    }

    /// Stops accepting tasks, lets the workers finish the queued ones, and joins them within
    /// `timeout`. Idempotent: once it has returned `Ok`, later calls return `Ok` at once.
    ///
    /// If the timeout elapses first, queued tasks not yet started are dropped without running,
    /// the busy workers are left to finish their current task and exit, and
    /// [`ShutdownError::Timeout`] says how many of each; a later call waits for them again.
    ///
    /// Called from one of the pool's own tasks, it cannot wait for its own thread: it signals
    /// shutdown (the queue still drains) and returns `Ok(())`.
    pub(crate) fn shutdown(&self, timeout: Duration) -> Result<(), ShutdownError> {
        let deadline = Instant::now() + timeout;
        self.shared.signal_shutdown();
        if self.shared.is_worker_thread() {
            log::debug!(
                "{}: shutdown called from a pool thread: signalled, not joined",
                self.shared.name
            );
            return Ok(());
        }
        match self.done_rx.recv_deadline(deadline) {
            Err(RecvTimeoutError::Timeout) => {
                self.shared.abandon.store(true, Ordering::SeqCst);
                while let Ok(job) = self.shared.queue.try_recv() {
                    drop(job);
                    self.shared.abandoned.fetch_add(1, Ordering::SeqCst);
                }
                let threads: Vec<String> = self
                    .shared
                    .lifecycle
                    .lock()
                    .handles
                    .iter()
                    .filter(|h| !h.is_finished())
                    .filter_map(|h| h.thread().name().map(str::to_owned))
                    .collect();
                let err = ShutdownError::Timeout {
                    name: self.shared.name.clone(),
                    timeout,
                    unfinished_threads: self.pool_size(),
                    abandoned_tasks: self.shared.abandoned.load(Ordering::SeqCst),
                    threads,
                };
                log::warn!("{err}");
                Err(err)
            }
            // Nothing is ever sent: the channel disconnects when the last worker exits.
            Err(RecvTimeoutError::Disconnected) | Ok(()) => {
                let handles = std::mem::take(&mut self.shared.lifecycle.lock().handles);
                for handle in handles {
                    // Every worker has already dropped its `done` sender, its last act.
                    if let Err(payload) = handle.join() {
                        return Err(ShutdownError::Panicked {
                            name: self.shared.name.clone(),
                            message: panic_message(&*payload),
                        });
                    }
                }
                Ok(())
            }
        }
    }
}

impl Drop for ThreadPoolExecutor {
    /// Signals shutdown without waiting: the workers finish the queued tasks and exit on their
    /// own. Call [`shutdown`](ThreadPoolExecutor::shutdown) first to wait for them.
    fn drop(&mut self) {
        self.shared.signal_shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Generous guard for anything that should happen promptly.
    const WAIT: Duration = Duration::from_secs(10);

    /// Polls `cond` every few milliseconds (paced by a tick channel) until it holds or `WAIT`
    /// elapses; returns whether it held.
    fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + WAIT;
        let tick = crossbeam_channel::tick(Duration::from_millis(5));
        while Instant::now() < deadline {
            if cond() {
                return true;
            }
            let _ = tick.recv_timeout(WAIT);
        }
        cond()
    }

    #[test]
    fn runs_every_task_exactly_once() {
        let pool = ThreadPoolBuilder::new()
            .core_threads(2)
            .max_threads(4)
            .build()
            .unwrap();
        let (tx, rx) = unbounded();
        for i in 0..1000 {
            let tx = tx.clone();
            pool.execute(move || tx.send(i).unwrap()).unwrap();
        }
        drop(tx);
        let mut seen: Vec<i32> = (0..1000).map(|_| rx.recv_timeout(WAIT).unwrap()).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
        assert_eq!(pool.shutdown(WAIT), Ok(()));
        assert_eq!(pool.completed_task_count(), 1000);
        // Every task closure (and its sender) is gone: nothing ran twice or is still queued.
        assert!(rx.recv_timeout(Duration::ZERO).is_err());
        assert_eq!(pool.pool_size(), 0);
    }

    #[test]
    fn grows_to_max_under_backlog_and_never_beyond() {
        let pool = ThreadPoolBuilder::new()
            .core_threads(2)
            .max_threads(5)
            .build()
            .unwrap();
        assert_eq!(pool.pool_size(), 2, "core threads start eagerly");
        let (gate_tx, gate_rx) = bounded::<()>(0);
        let (started_tx, started_rx) = unbounded();
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        for _ in 0..20 {
            let (gate_rx, started_tx) = (gate_rx.clone(), started_tx.clone());
            let (running, peak) = (Arc::clone(&running), Arc::clone(&peak));
            pool.execute(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                started_tx.send(()).unwrap();
                let _ = gate_rx.recv();
                running.fetch_sub(1, Ordering::SeqCst);
            })
            .unwrap();
            assert!(pool.pool_size() <= 5);
        }
        for _ in 0..5 {
            started_rx
                .recv_timeout(WAIT)
                .expect("the pool should grow to max");
        }
        assert_eq!(pool.pool_size(), 5);
        assert_eq!(pool.active_count(), 5);
        assert_eq!(pool.queue_len(), 15);
        drop(gate_tx);
        for _ in 5..20 {
            started_rx.recv_timeout(WAIT).unwrap();
        }
        assert_eq!(pool.shutdown(WAIT), Ok(()));
        assert_eq!(
            peak.load(Ordering::SeqCst),
            5,
            "never more than max at once"
        );
        assert_eq!(pool.completed_task_count(), 20);
    }

    #[test]
    fn shrinks_back_to_core_after_keep_alive() {
        let pool = ThreadPoolBuilder::new()
            .core_threads(1)
            .max_threads(4)
            .keep_alive(Duration::from_millis(100))
            .build()
            .unwrap();
        let (gate_tx, gate_rx) = bounded::<()>(0);
        let (started_tx, started_rx) = unbounded();
        for _ in 0..8 {
            let (gate_rx, started_tx) = (gate_rx.clone(), started_tx.clone());
            pool.execute(move || {
                started_tx.send(()).unwrap();
                let _ = gate_rx.recv();
            })
            .unwrap();
        }
        for _ in 0..4 {
            started_rx.recv_timeout(WAIT).unwrap();
        }
        assert_eq!(pool.pool_size(), 4);
        drop(gate_tx);
        assert!(
            wait_until(|| pool.pool_size() == 1),
            "pool_size stayed at {}",
            pool.pool_size()
        );
        assert_eq!(pool.completed_task_count(), 8);
        // The core worker never retires and still serves.
        let (tx, rx) = bounded(1);
        pool.execute(move || tx.send(()).unwrap()).unwrap();
        assert_eq!(rx.recv_timeout(WAIT), Ok(()));
        assert_eq!(pool.pool_size(), 1);
        assert_eq!(pool.shutdown(WAIT), Ok(()));
    }

    #[test]
    fn panicking_task_goes_to_the_handler_and_the_pool_keeps_working() {
        let (panic_tx, panic_rx) = unbounded();
        let pool = ThreadPoolBuilder::new()
            .core_threads(1)
            .panic_handler(move |payload| panic_tx.send(panic_message(&*payload)).unwrap())
            .build()
            .unwrap();
        pool.execute(|| panic!("task boom")).unwrap();
        assert_eq!(panic_rx.recv_timeout(WAIT), Ok("task boom".to_owned()));
        let (tx, rx) = bounded(1);
        pool.execute(move || tx.send(()).unwrap()).unwrap();
        assert_eq!(rx.recv_timeout(WAIT), Ok(()));
        assert_eq!(pool.pool_size(), 1, "the worker survived the panic");
        assert_eq!(pool.shutdown(WAIT), Ok(()));
        assert_eq!(pool.completed_task_count(), 2);
    }

    #[test]
    fn default_panic_policy_logs_and_keeps_working() {
        let pool = ThreadPoolBuilder::new().build().unwrap();
        pool.execute(|| panic!("logged, not propagated")).unwrap();
        let (tx, rx) = bounded(1);
        pool.execute(move || tx.send(()).unwrap()).unwrap();
        assert_eq!(rx.recv_timeout(WAIT), Ok(()));
        assert_eq!(pool.shutdown(WAIT), Ok(()));
    }

    #[test]
    fn execute_after_shutdown_hands_the_task_back() {
        let pool = ThreadPoolBuilder::new().build().unwrap();
        assert_eq!(pool.shutdown(WAIT), Ok(()));
        assert!(pool.is_shutdown());
        let (tx, rx) = bounded(1);
        let rejected = pool.execute(move || tx.send("ran").unwrap()).unwrap_err();
        assert!(rejected.is_shutdown());
        // The returned value is the task itself.
        (rejected.into_inner())();
        assert_eq!(rx.try_recv(), Ok("ran"));
        // Idempotent.
        assert_eq!(pool.shutdown(WAIT), Ok(()));
    }

    #[test]
    fn full_bounded_queue_at_max_rejects_with_the_task() {
        let pool = ThreadPoolBuilder::new()
            .core_threads(1)
            .max_threads(1)
            .queue_capacity(Some(1))
            .build()
            .unwrap();
        let (gate_tx, gate_rx) = bounded::<()>(0);
        let (tx, rx) = unbounded();
        let started = tx.clone();
        pool.execute(move || {
            started.send("a").unwrap();
            let _ = gate_rx.recv();
        })
        .unwrap();
        assert_eq!(rx.recv_timeout(WAIT), Ok("a"));
        let queued = tx.clone();
        pool.execute(move || queued.send("b").unwrap()).unwrap();
        assert_eq!(pool.queue_len(), 1);
        let rejected = pool.execute(move || tx.send("c").unwrap()).unwrap_err();
        assert!(rejected.is_full());
        assert_eq!(format!("{rejected:?}"), "Full(..)");
        (rejected.into_inner())();
        assert_eq!(rx.try_recv(), Ok("c"));
        drop(gate_tx);
        assert_eq!(rx.recv_timeout(WAIT), Ok("b"));
        assert_eq!(pool.shutdown(WAIT), Ok(()));
    }

    #[test]
    fn threads_are_named_as_configured() {
        let pool = ThreadPoolBuilder::new()
            .core_threads(2)
            .thread_name(|i| format!("rmq-cons-{i}"))
            .build()
            .unwrap();
        let (tx, rx) = unbounded();
        for _ in 0..10 {
            let tx = tx.clone();
            pool.execute(move || {
                tx.send(thread::current().name().map(str::to_owned))
                    .unwrap()
            })
            .unwrap();
        }
        for _ in 0..10 {
            let name = rx.recv_timeout(WAIT).unwrap().unwrap();
            assert!(name == "rmq-cons-0" || name == "rmq-cons-1", "{name}");
        }
        assert_eq!(pool.shutdown(WAIT), Ok(()));

        let pool = ThreadPoolBuilder::new().build().unwrap();
        pool.execute(move || {
            tx.send(thread::current().name().map(str::to_owned))
                .unwrap()
        })
        .unwrap();
        assert_eq!(rx.recv_timeout(WAIT), Ok(Some("rmq-pool-0".to_owned())));
        assert_eq!(pool.shutdown(WAIT), Ok(()));
    }

    #[test]
    fn build_validates_the_settings() {
        let err = |b: ThreadPoolBuilder| b.build().unwrap_err().to_string();
        assert_eq!(
            err(ThreadPoolBuilder::new().core_threads(0)),
            "core_threads must be at least 1"
        );
        assert_eq!(
            err(ThreadPoolBuilder::new().core_threads(3).max_threads(2)),
            "core_threads (3) must not be greater than max_threads (2)"
        );
        assert_eq!(
            err(ThreadPoolBuilder::new().max_threads(1001)),
            "max_threads (1001) must not be greater than 1000"
        );
        assert_eq!(
            err(ThreadPoolBuilder::new().keep_alive(Duration::ZERO)),
            "keep_alive must be non-zero"
        );
        assert_eq!(
            err(ThreadPoolBuilder::new().queue_capacity(Some(0))),
            "queue_capacity must be at least 1 (or None for unbounded)"
        );
        // `max` defaults to `core`.
        let pool = ThreadPoolBuilder::new().core_threads(3).build().unwrap();
        assert_eq!((pool.core_threads(), pool.max_threads()), (3, 3));
        assert_eq!(pool.shutdown(WAIT), Ok(()));
    }

    #[test]
    fn shutdown_drains_queued_tasks() {
        let pool = ThreadPoolBuilder::new().build().unwrap();
        let (gate_tx, gate_rx) = bounded::<()>(0);
        let (started_tx, started_rx) = bounded(1);
        pool.execute(move || {
            started_tx.send(()).unwrap();
            let _ = gate_rx.recv();
        })
        .unwrap();
        started_rx.recv_timeout(WAIT).unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        for _ in 0..10 {
            let ran = Arc::clone(&ran);
            pool.execute(move || {
                ran.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        }
        drop(gate_tx);
        assert_eq!(pool.shutdown(WAIT), Ok(()));
        assert_eq!(ran.load(Ordering::SeqCst), 10);
        assert_eq!(pool.pool_size(), 0);
    }

    #[test]
    fn shutdown_timeout_drops_queued_tasks_and_can_be_retried() {
        let pool = ThreadPoolBuilder::new().build().unwrap();
        let (gate_tx, gate_rx) = bounded::<()>(0);
        let (started_tx, started_rx) = bounded(1);
        pool.execute(move || {
            started_tx.send(()).unwrap();
            let _ = gate_rx.recv();
        })
        .unwrap();
        started_rx.recv_timeout(WAIT).unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        for _ in 0..5 {
            let ran = Arc::clone(&ran);
            pool.execute(move || {
                ran.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        }
        let err = pool.shutdown(Duration::from_millis(50)).unwrap_err();
        assert_eq!(
            err,
            ShutdownError::Timeout {
                name: "ThreadPoolExecutor".to_owned(),
                timeout: Duration::from_millis(50),
                unfinished_threads: 1,
                abandoned_tasks: 5,
                threads: vec!["rmq-pool-0".to_owned()],
            }
        );
        assert_eq!(pool.queue_len(), 0);
        drop(gate_tx);
        assert_eq!(pool.shutdown(WAIT), Ok(()));
        assert_eq!(ran.load(Ordering::SeqCst), 0, "abandoned tasks never run");
    }

    #[test]
    fn drop_signals_shutdown_without_blocking() {
        let pool = ThreadPoolBuilder::new().build().unwrap();
        let (gate_tx, gate_rx) = bounded::<()>(0);
        let (tx, rx) = unbounded();
        let started = tx.clone();
        pool.execute(move || {
            started.send("blocked").unwrap();
            let _ = gate_rx.recv();
        })
        .unwrap();
        pool.execute(move || tx.send("drained").unwrap()).unwrap();
        assert_eq!(rx.recv_timeout(WAIT), Ok("blocked"));
        // Would hang here if Drop waited for the blocked task: the gate opens only afterwards.
        drop(pool);
        drop(gate_tx);
        assert_eq!(rx.recv_timeout(WAIT), Ok("drained"));
    }

    #[test]
    fn shutdown_from_a_task_does_not_deadlock() {
        let pool = Arc::new(ThreadPoolBuilder::new().build().unwrap());
        let (tx, rx) = bounded(1);
        let inner = Arc::clone(&pool);
        pool.execute(move || tx.send(inner.shutdown(WAIT)).unwrap())
            .unwrap();
        assert_eq!(rx.recv_timeout(WAIT), Ok(Ok(())));
        assert!(pool.is_shutdown());
        assert_eq!(pool.shutdown(WAIT), Ok(()));
    }

    #[test]
    fn executors_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ThreadPoolExecutor>();
        assert_send_sync::<super::super::ScheduledExecutor>();
        assert_send_sync::<super::super::ServiceHandle>();
    }
}
