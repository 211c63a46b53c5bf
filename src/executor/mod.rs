//! Threads: [`ServiceThread`], [`ThreadPoolExecutor`] and the [`ScheduledExecutor`].
//!
//! Every thread this module starts is named (`std::thread::Builder::name`); Linux shows only the
//! first 15 bytes, so callers pass short names such as `rmq-pull` or `rmq-cons-3` and keep Java's
//! longer service name for log lines ([`ServiceThread::service_name`]).
//!
//! # Panic policy
//!
//! - A panic inside a pool task or a scheduled task is caught with `catch_unwind`, reported (the
//!   pool's `panic_handler`, or `log::error!`), and the thread keeps serving.
//! - A panic inside [`ServiceThread::run`] ends that service; the panic message is returned by
//!   [`ServiceHandle::shutdown`] as [`ShutdownError::Panicked`], never swallowed.
//!
//! # Shutdown
//!
//! Every `shutdown(timeout)` here is idempotent, signals the threads, waits for them up to the
//! timeout and joins them. A thread still busy when the timeout elapses is left to finish on its
//! own (detached) and the call returns [`ShutdownError::Timeout`]. `Drop` signals shutdown and never
//! blocks for long; none of them ever tries to join the thread it is called from.

use std::any::Any;
use std::fmt;
use std::time::Duration;

mod scheduled;
mod service_thread;
mod thread_pool;

pub(crate) use scheduled::{ScheduledExecutor, ScheduledHandle};
pub(crate) use service_thread::{spawn, ServiceControl, ServiceHandle, ServiceThread};
pub(crate) use thread_pool::{Rejected, ThreadPoolExecutor};

/// Why a `shutdown(timeout)` of a service thread, pool or scheduler did not end cleanly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ShutdownError {
    /// Some threads were still running when the timeout elapsed. They have been told to stop and
    /// are left to finish on their own; calling `shutdown` again waits for them again.
    Timeout {
        /// The service, pool or scheduler name.
        name: String,
        /// The timeout that elapsed.
        timeout: Duration,
        /// How many threads had not finished.
        unfinished_threads: usize,
        /// How many queued tasks were dropped without running (thread pools only).
        abandoned_tasks: usize,
        /// The names of the threads still running, as far as they are known.
        threads: Vec<String>,
    },
    /// A thread ended with a panic that nothing else had reported.
    Panicked {
        /// The service, pool or scheduler name.
        name: String,
        /// The panic message (or a placeholder if the payload was not a string).
        message: String,
    },
}

impl fmt::Display for ShutdownError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShutdownError::Timeout {
                name,
                timeout,
                unfinished_threads,
                abandoned_tasks,
                threads,
            } => {
                write!(
                    f,
                    "{name}: {unfinished_threads} thread(s) still running after {timeout:?}"
                )?;
                if !threads.is_empty() {
                    write!(f, " ({})", threads.join(", "))?;
                }
                if *abandoned_tasks > 0 {
                    write!(f, ", {abandoned_tasks} queued task(s) dropped")?;
                }
                Ok(())
            }
            ShutdownError::Panicked { name, message } => write!(f, "{name} panicked: {message}"),
        }
    }
}

impl std::error::Error for ShutdownError {}

impl ShutdownError {
    /// The threads this error leaves running: none for a panic (the thread has ended).
    pub(crate) fn unfinished_threads(&self) -> Vec<String> {
        match self {
            ShutdownError::Timeout { threads, .. } => threads.clone(),
            ShutdownError::Panicked { .. } => Vec::new(),
        }
    }
}

/// The message of a panic payload: the `&str` or `String` given to `panic!`, or a placeholder.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_message_reads_str_and_string_payloads() {
        let p = std::panic::catch_unwind(|| panic!("static")).unwrap_err();
        assert_eq!(panic_message(&*p), "static");
        let n = 7;
        let p = std::panic::catch_unwind(|| panic!("formatted {n}")).unwrap_err();
        assert_eq!(panic_message(&*p), "formatted 7");
        let p = std::panic::catch_unwind(|| std::panic::panic_any(42_u8)).unwrap_err();
        assert_eq!(panic_message(&*p), "<non-string panic payload>");
    }

    #[test]
    fn shutdown_error_display_is_readable() {
        let e = ShutdownError::Timeout {
            name: "pool".into(),
            timeout: Duration::from_secs(1),
            unfinished_threads: 2,
            abandoned_tasks: 3,
            threads: vec!["w-1".into(), "w-2".into()],
        };
        assert_eq!(
            e.to_string(),
            "pool: 2 thread(s) still running after 1s (w-1, w-2), 3 queued task(s) dropped"
        );
        let e = ShutdownError::Panicked {
            name: "PullMessageService".into(),
            message: "boom".into(),
        };
        assert_eq!(e.to_string(), "PullMessageService panicked: boom");
    }
}
