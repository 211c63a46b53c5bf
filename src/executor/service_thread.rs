//! [`ServiceThread`]: one named thread running one service loop, Java's `ServiceThread`.
//!
//! Two shapes of service are supported:
//!
//! - **Periodic** (rebalance, offset persistence): loop on
//!   [`ServiceControl::wait_for_running`], which sleeps for the interval but returns early on
//!   [`ServiceHandle::wakeup`] or on stop. Wakeups coalesce: any number of them sent while the
//!   service is busy cause at most one early return (Java's `hasNotified` CAS), because the
//!   wakeup channel holds one token and `wakeup()` is a `try_send`.
//! - **Queue-driven** (`PullMessageService`): `select!` over the service's own work channel and
//!   [`ServiceControl::stop_receiver`], which disconnects on stop (crossbeam's "Disconnection").
//!
//! ```ignore
//! impl ServiceThread for RebalanceService {
//!     fn service_name(&self) -> String { "RebalanceService".into() }
//!     fn run(&mut self, ctl: &ServiceControl) {
//!         while !ctl.is_stopped() {
//!             ctl.wait_for_running(Duration::from_secs(20));
//!             if ctl.is_stopped() { break; }
//!             self.do_rebalance();
//!         }
//!     }
//! }
//! let handle = executor::spawn(RebalanceService::new(..), "rmq-rebal")?;
//! handle.wakeup();
//! handle.shutdown(Duration::from_secs(3))?;
//! ```

use std::fmt;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;

use super::{panic_message, ShutdownError};

/// How long `Drop for ServiceHandle` waits for the thread before leaving it detached.
const DROP_JOIN_TIMEOUT: Duration = Duration::from_secs(1);

/// A long-running service loop on its own named thread (Java `ServiceThread`).
///
/// Start it with [`spawn`]; stop it with [`ServiceHandle::shutdown`]. `run` must return soon
/// after [`ServiceControl::is_stopped`] turns true; every blocking wait offered by
/// [`ServiceControl`] returns at once on stop.
pub(crate) trait ServiceThread: Send + 'static {
    /// Java's name for the service (`"PullMessageService"`), used in logs and errors. The OS
    /// thread name is the short one given to [`spawn`].
    fn service_name(&self) -> String;

    /// The service loop. Return when `ctl.is_stopped()`. A panic here ends the service and is
    /// reported by [`ServiceHandle::shutdown`].
    fn run(&mut self, ctl: &ServiceControl);
}

/// State shared by a [`ServiceHandle`] and its thread's [`ServiceControl`].
#[derive(Debug)]
struct Shared {
    /// Set once by the handle; never cleared.
    stopped: AtomicBool,
    /// Dropped (taken) on stop, which disconnects [`ServiceControl::stop_receiver`].
    stop_tx: Mutex<Option<Sender<()>>>,
    /// The panic message of `run`, written by the service thread before it exits.
    panic: Mutex<Option<String>>,
}

impl Shared {
    fn signal_stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.stop_tx.lock().take();
    }
}

/// What a running service sees of its own lifecycle: the stop flag and the waits that respect it.
pub(crate) struct ServiceControl {
    shared: Arc<Shared>,
    wakeup_rx: Receiver<()>,
    stop_rx: Receiver<()>,
}

impl fmt::Debug for ServiceControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceControl")
            .field("stopped", &self.is_stopped())
            .finish_non_exhaustive()
    }
}

impl ServiceControl {
    /// Whether stop has been requested (by `shutdown` or by dropping the handle).
    pub(crate) fn is_stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::SeqCst)
    }

    /// Waits up to `interval`, returning early if a wakeup is pending or arrives, or on stop
    /// (Java `waitForRunning`). A pending wakeup is consumed, so wakeups sent while the service
    /// was busy cause at most one early return.
    pub(crate) fn wait_for_running(&self, interval: Duration) {
        if self.is_stopped() {
            return;
        }
        select! {
            recv(self.wakeup_rx) -> _ => {}
            recv(self.stop_rx) -> _ => {}
            default(interval) => {}
        }
    }

    /// A receiver that never yields a message and disconnects when stop is requested: add
    /// `recv(ctl.stop_receiver()) -> _ => break` to a `select!` over the service's work channel.
    pub(crate) fn stop_receiver(&self) -> &Receiver<()> {
        &self.stop_rx
    }
}

/// The owner's side of a running [`ServiceThread`]: wake it, stop it, join it.
///
/// Dropping the handle requests stop and waits briefly (up to 1 s) for the thread; use
/// [`shutdown`](Self::shutdown) to choose the timeout and see a panic.
pub(crate) struct ServiceHandle {
    service_name: String,
    thread_name: String,
    thread_id: ThreadId,
    shared: Arc<Shared>,
    wakeup_tx: Sender<()>,
    /// Disconnects when the service thread has finished (its sender is dropped last).
    done_rx: Receiver<()>,
    /// `None` once joined.
    join: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for ServiceHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceHandle")
            .field("service_name", &self.service_name)
            .field("thread_name", &self.thread_name)
            .field("stopped", &self.shared.stopped.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

/// Starts `service` on a new thread named `thread_name` (keep it within 15 bytes, e.g.
/// `rmq-rebal`), Java's `ServiceThread.start()`.
pub(crate) fn spawn<S: ServiceThread>(
    service: S,
    thread_name: impl Into<String>,
) -> io::Result<ServiceHandle> {
    let thread_name = thread_name.into();
    let service_name = service.service_name();
    // Nothing is ever sent on `stop` or `done`: dropping their senders is the signal.
    let (stop_tx, stop_rx) = bounded::<()>(0);
    let (wakeup_tx, wakeup_rx) = bounded::<()>(1);
    let (done_tx, done_rx) = bounded::<()>(0);
    let shared = Arc::new(Shared {
        stopped: AtomicBool::new(false),
        stop_tx: Mutex::new(Some(stop_tx)),
        panic: Mutex::new(None),
    });
    let ctl = ServiceControl {
        shared: Arc::clone(&shared),
        wakeup_rx,
        stop_rx,
    };
    let name_for_thread = service_name.clone();
    let join = thread::Builder::new()
        .name(thread_name.clone())
        .spawn(move || {
            // Declared first so it is dropped last: `done_rx` disconnects only after the panic
            // message is stored and the service itself has been dropped.
            let _done = done_tx;
            log::info!("{name_for_thread} service started");
            let shared = Arc::clone(&ctl.shared);
            let mut service = service;
            let result = panic::catch_unwind(AssertUnwindSafe(move || {
                service.run(&ctl);
                drop(service);
            }));
            match result {
                Ok(()) => log::info!("{name_for_thread} service end"),
                Err(payload) => {
                    let message = panic_message(&*payload);
                    log::error!("{name_for_thread} service panicked: {message}");
                    *shared.panic.lock() = Some(message);
                }
            }
        })?;
    let thread_id = join.thread().id();
    Ok(ServiceHandle {
        service_name,
        thread_name,
        thread_id,
        shared,
        wakeup_tx,
        done_rx,
        join: Mutex::new(Some(join)),
    })
}

impl ServiceHandle {
    /// Java's name of the service (`ServiceThread::service_name`).
    #[cfg(test)]
    pub(crate) fn service_name(&self) -> &str {
        &self.service_name
    }

    /// The OS thread's name.
    #[cfg(test)]
    pub(crate) fn thread_name(&self) -> &str {
        &self.thread_name
    }

    /// Makes a pending or the next [`ServiceControl::wait_for_running`] return at once. Wakeups
    /// coalesce: while one is pending, further calls do nothing.
    pub(crate) fn wakeup(&self) {
        let _ = self.wakeup_tx.try_send(());
    }

    /// Whether the service thread has finished (returned from or panicked in `run`).
    #[cfg(test)]
    pub(crate) fn is_finished(&self) -> bool {
        matches!(
            self.done_rx.try_recv(),
            Err(crossbeam_channel::TryRecvError::Disconnected)
        )
    }

    /// Requests stop, wakes the service, and joins its thread within `timeout`.
    ///
    /// - `Ok(())` once the thread has been joined; calling again is a no-op returning `Ok(())`.
    /// - [`ShutdownError::Panicked`] if `run` panicked (reported by the call that joins).
    /// - [`ShutdownError::Timeout`] if the thread is still running at the deadline: it stays
    ///   asked to stop, and a later `shutdown` waits for it again.
    ///
    /// Called from the service's own thread, it only requests stop and returns `Ok(())`.
    pub(crate) fn shutdown(&self, timeout: Duration) -> Result<(), ShutdownError> {
        self.join_until(Instant::now() + timeout, timeout)
    }

    fn join_until(&self, deadline: Instant, timeout: Duration) -> Result<(), ShutdownError> {
        self.shared.signal_stop();
        self.wakeup();
        if thread::current().id() == self.thread_id {
            log::debug!(
                "{} shutdown called from its own thread: stop requested, not joined",
                self.service_name
            );
            return Ok(());
        }
        let mut join = self.join.lock();
        if join.is_none() {
            return Ok(());
        }
        match self.done_rx.recv_deadline(deadline) {
            Err(RecvTimeoutError::Timeout) => {
                log::warn!(
                    "{} did not stop within {timeout:?}; leaving thread {} detached",
                    self.service_name,
                    self.thread_name
                );
                Err(ShutdownError::Timeout {
                    name: self.service_name.clone(),
                    timeout,
                    unfinished_threads: 1,
                    abandoned_tasks: 0,
                    threads: vec![self.thread_name.clone()],
                })
            }
            // Nothing is ever sent, so `Ok` cannot happen; either way the thread is done.
            Err(RecvTimeoutError::Disconnected) | Ok(()) => {
                let handle = join.take().expect("checked above");
                // The thread's last act was dropping `done`; this join does not block for long.
                let joined = handle.join();
                let message = self
                    .shared
                    .panic
                    .lock()
                    .take()
                    .or_else(|| joined.err().map(|payload| panic_message(&*payload)));
                match message {
                    Some(message) => Err(ShutdownError::Panicked {
                        name: self.service_name.clone(),
                        message,
                    }),
                    None => Ok(()),
                }
            }
        }
    }
}

impl Drop for ServiceHandle {
    /// Requests stop and waits up to 1 s for the thread (never when dropped on the service's own
    /// thread). A panic or a timeout is logged, since there is no caller to return it to.
    fn drop(&mut self) {
        if self.join.get_mut().is_none() {
            return;
        }
        match self.shutdown(DROP_JOIN_TIMEOUT) {
            Ok(()) => {}
            Err(e @ ShutdownError::Panicked { .. }) => log::error!("dropping ServiceHandle: {e}"),
            Err(e) => log::warn!("dropping ServiceHandle: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::{unbounded, TryRecvError};

    /// Generous guard for anything that should happen promptly.
    const WAIT: Duration = Duration::from_secs(10);

    /// A periodic service built from a closure.
    struct FnService<F>(F);

    impl<F: FnMut(&ServiceControl) + Send + 'static> ServiceThread for FnService<F> {
        fn service_name(&self) -> String {
            "TestService".to_owned()
        }

        fn run(&mut self, ctl: &ServiceControl) {
            (self.0)(ctl)
        }
    }

    #[test]
    fn runs_and_shutdown_joins_within_timeout() {
        let (tx, rx) = unbounded();
        let handle = spawn(
            FnService(move |ctl: &ServiceControl| {
                tx.send("started").unwrap();
                while !ctl.is_stopped() {
                    ctl.wait_for_running(Duration::from_secs(60));
                }
                tx.send("ended").unwrap();
            }),
            "rmq-test-svc",
        )
        .unwrap();
        assert_eq!(handle.service_name(), "TestService");
        assert_eq!(handle.thread_name(), "rmq-test-svc");
        assert_eq!(rx.recv_timeout(WAIT), Ok("started"));
        let start = Instant::now();
        assert_eq!(handle.shutdown(WAIT), Ok(()));
        // The 60 s wait was cut short by the stop signal.
        assert!(start.elapsed() < WAIT);
        assert!(handle.is_finished());
        assert_eq!(rx.try_recv(), Ok("ended"));
        // Idempotent.
        assert_eq!(handle.shutdown(WAIT), Ok(()));
    }

    #[test]
    fn thread_gets_the_given_name() {
        let (tx, rx) = unbounded();
        let handle = spawn(
            FnService(move |_: &ServiceControl| {
                tx.send(thread::current().name().map(str::to_owned))
                    .unwrap();
            }),
            "rmq-rebal",
        )
        .unwrap();
        assert_eq!(rx.recv_timeout(WAIT), Ok(Some("rmq-rebal".to_owned())));
        assert_eq!(handle.shutdown(WAIT), Ok(()));
    }

    #[test]
    fn wakeup_shortens_the_wait() {
        let (tx, rx) = unbounded();
        let handle = spawn(
            FnService(move |ctl: &ServiceControl| loop {
                ctl.wait_for_running(Duration::from_secs(60));
                if ctl.is_stopped() {
                    break;
                }
                tx.send(()).unwrap();
            }),
            "rmq-test-wake",
        )
        .unwrap();
        for _ in 0..3 {
            handle.wakeup();
            // Without the wakeup the service would wait 60 s.
            assert_eq!(rx.recv_timeout(WAIT), Ok(()));
        }
        assert_eq!(handle.shutdown(WAIT), Ok(()));
    }

    #[test]
    fn wakeups_while_busy_coalesce_into_one_early_return() {
        let (gate_tx, gate_rx) = bounded::<()>(0);
        let (tx, rx) = unbounded();
        let handle = spawn(
            FnService(move |ctl: &ServiceControl| {
                // Busy until the test has sent its wakeups.
                let _ = gate_rx.recv();
                let start = Instant::now();
                ctl.wait_for_running(Duration::from_secs(60));
                tx.send(start.elapsed()).unwrap();
                let start = Instant::now();
                ctl.wait_for_running(Duration::from_millis(300));
                tx.send(start.elapsed()).unwrap();
            }),
            "rmq-test-coal",
        )
        .unwrap();
        for _ in 0..100 {
            handle.wakeup();
        }
        drop(gate_tx);
        let first = rx.recv_timeout(WAIT).unwrap();
        assert!(
            first < WAIT,
            "the pending wakeup should end the first wait early"
        );
        let second = rx.recv_timeout(WAIT).unwrap();
        assert!(
            second >= Duration::from_millis(300),
            "a second early return means wakeups did not coalesce ({second:?})"
        );
        assert_eq!(handle.shutdown(WAIT), Ok(()));
    }

    #[test]
    fn queue_driven_service_selects_on_stop_receiver() {
        let (work_tx, work_rx) = unbounded::<u32>();
        let (out_tx, out_rx) = unbounded();
        let handle = spawn(
            FnService(move |ctl: &ServiceControl| loop {
                select! {
                    recv(work_rx) -> item => match item {
                        Ok(n) => out_tx.send(n * 2).unwrap(),
                        Err(_) => break,
                    },
                    recv(ctl.stop_receiver()) -> _ => break,
                }
            }),
            "rmq-pull",
        )
        .unwrap();
        work_tx.send(1).unwrap();
        work_tx.send(2).unwrap();
        assert_eq!(out_rx.recv_timeout(WAIT), Ok(2));
        assert_eq!(out_rx.recv_timeout(WAIT), Ok(4));
        // `work_tx` is still alive: only the stop signal can end the loop.
        assert_eq!(handle.shutdown(WAIT), Ok(()));
        drop(work_tx);
    }

    #[test]
    fn panicking_run_is_reported_by_shutdown() {
        let handle = spawn(
            FnService(|_: &ServiceControl| panic!("boom in run")),
            "rmq-test-pan",
        )
        .unwrap();
        assert_eq!(
            handle.shutdown(WAIT),
            Err(ShutdownError::Panicked {
                name: "TestService".to_owned(),
                message: "boom in run".to_owned(),
            })
        );
        // Reported once; the thread is joined.
        assert_eq!(handle.shutdown(WAIT), Ok(()));
    }

    #[test]
    fn shutdown_times_out_on_a_stuck_service_and_can_be_retried() {
        let (gate_tx, gate_rx) = bounded::<()>(0);
        let (started_tx, started_rx) = bounded(1);
        let handle = spawn(
            FnService(move |_: &ServiceControl| {
                started_tx.send(()).unwrap();
                // Ignores the stop signal until the gate opens.
                let _ = gate_rx.recv();
            }),
            "rmq-test-stuck",
        )
        .unwrap();
        started_rx.recv_timeout(WAIT).unwrap();
        let err = handle.shutdown(Duration::from_millis(50)).unwrap_err();
        assert!(
            matches!(
                err,
                ShutdownError::Timeout {
                    unfinished_threads: 1,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!handle.is_finished());
        drop(gate_tx);
        assert_eq!(handle.shutdown(WAIT), Ok(()));
    }

    #[test]
    fn drop_stops_and_joins_the_thread() {
        let (tx, rx) = unbounded();
        let handle = spawn(
            FnService(move |ctl: &ServiceControl| {
                while !ctl.is_stopped() {
                    ctl.wait_for_running(Duration::from_secs(60));
                }
                tx.send("ended").unwrap();
                // `tx` is dropped with the service, before the thread finishes.
            }),
            "rmq-test-drop",
        )
        .unwrap();
        drop(handle);
        assert_eq!(rx.try_recv(), Ok("ended"));
        // The service itself has been dropped: the thread was joined, not just signalled.
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    }

    #[test]
    fn drop_on_the_service_thread_does_not_self_join() {
        let (handle_tx, handle_rx) = bounded::<ServiceHandle>(1);
        let (tx, rx) = unbounded();
        let handle = spawn(
            FnService(move |_: &ServiceControl| {
                // Receives its own handle and drops it here.
                let own = handle_rx.recv().unwrap();
                drop(own);
                tx.send("dropped own handle").unwrap();
            }),
            "rmq-test-self",
        )
        .unwrap();
        handle_tx.send(handle).unwrap();
        assert_eq!(rx.recv_timeout(WAIT), Ok("dropped own handle"));
    }
}
