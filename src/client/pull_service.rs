//! `PullMessageService`: the `rmq-pull` thread a client instance starts with its first consumer,
//! shared by every consumer of that instance.
//!
//! It runs pulls at once or after a delay. Delayed pulls wait in a deadline heap inside the
//! service's own loop, so `rmq-pull` fires them itself: they never queue behind the scheduler's
//! blocking work (sync heartbeats, send-backs), and no thread is added for them (Java gives pulls
//! a timer of their own for the same reason).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::panic::{self, AssertUnwindSafe};
use std::time::Instant;

use crossbeam_channel::{select, Receiver};

use crate::executor::{panic_message, ServiceControl, ServiceThread};

/// One pull of one queue, as the pull service sees it. The consumer's pull request implements
/// it; the instance knows nothing else about it.
pub(crate) trait PullTask: Send + 'static {
    /// Starts the pull: flow control, then an async call (never a blocking wait on a broker).
    /// A panic is caught by the service, which logs it and goes on with the next task; keeping
    /// the queue pulled after a panic is the task's own business.
    fn run(self: Box<Self>);
}

/// What the pull service is asked to do.
pub(crate) enum PullCommand {
    /// Run the pull as soon as the thread gets to it.
    Now(Box<dyn PullTask>),
    /// Run the pull once `Instant` has passed.
    At(Instant, Box<dyn PullTask>),
}

/// A pull waiting for its time.
struct Delayed {
    at: Instant,
    /// Keeps pulls due at the same instant in the order they were asked for.
    seq: u64,
    task: Box<dyn PullTask>,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Delayed {}

impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Delayed {
    /// Reversed, so the `BinaryHeap` (a max-heap) yields the earliest deadline first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Takes pull commands off a queue and runs them (Java `PullMessageService`). Commands come from
/// the rebalance (new queues), the pull callbacks (the next pull, at once or later) and the
/// consumers' watchdogs; each pull only checks flow control and starts an async call, so one
/// thread serves every queue of every consumer.
pub(crate) struct PullMessageService {
    requests: Receiver<PullCommand>,
    delayed: BinaryHeap<Delayed>,
    seq: u64,
}

impl PullMessageService {
    pub(crate) fn new(requests: Receiver<PullCommand>) -> Self {
        PullMessageService {
            requests,
            delayed: BinaryHeap::new(),
            seq: 0,
        }
    }

    fn accept(&mut self, cmd: PullCommand) {
        match cmd {
            PullCommand::Now(task) => run_task(task),
            PullCommand::At(at, task) => {
                self.seq += 1;
                self.delayed.push(Delayed {
                    at,
                    seq: self.seq,
                    task,
                });
            }
        }
    }

    /// Runs every delayed pull that is due.
    fn fire_due(&mut self) {
        let now = Instant::now();
        while self.delayed.peek().is_some_and(|d| d.at <= now) {
            let d = self.delayed.pop().expect("peeked");
            run_task(d.task);
        }
    }
}

/// Runs one pull; a panic is logged and the thread goes on serving the other queues.
fn run_task(task: Box<dyn PullTask>) {
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(move || task.run())) {
        log::error!(
            "a pull request panicked on the pull thread: {}",
            panic_message(&*payload)
        );
    }
}

impl ServiceThread for PullMessageService {
    fn service_name(&self) -> String {
        "PullMessageService".to_owned()
    }

    fn run(&mut self, ctl: &ServiceControl) {
        loop {
            self.fire_due();
            let next = self.delayed.peek().map(|d| d.at);
            let received = match next {
                Some(at) => select! {
                    recv(self.requests) -> cmd => cmd,
                    recv(ctl.stop_receiver()) -> _ => break,
                    default(at.saturating_duration_since(Instant::now())) => continue,
                },
                None => select! {
                    recv(self.requests) -> cmd => cmd,
                    recv(ctl.stop_receiver()) -> _ => break,
                },
            };
            match received {
                Ok(cmd) => self.accept(cmd),
                Err(_) => break,
            }
        }
        // Pulls still waiting are dropped here; their queues are being shut down with us.
        self.delayed.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crossbeam_channel::{unbounded, Sender};

    const WAIT: Duration = Duration::from_secs(10);

    struct Probe {
        id: u32,
        panics: bool,
        ran: Sender<(u32, String)>,
    }

    impl PullTask for Probe {
        fn run(self: Box<Self>) {
            let thread = std::thread::current().name().unwrap_or("").to_owned();
            self.ran.send((self.id, thread)).unwrap();
            if self.panics {
                panic!("pull {} panics", self.id);
            }
        }
    }

    fn probe(id: u32, panics: bool, ran: &Sender<(u32, String)>) -> Box<dyn PullTask> {
        Box::new(Probe {
            id,
            panics,
            ran: ran.clone(),
        })
    }

    #[test]
    fn a_panicking_pull_does_not_stop_the_pull_thread() {
        let (tx, requests) = unbounded();
        let handle =
            crate::executor::spawn(PullMessageService::new(requests), "rmq-pull-t1").unwrap();
        let (ran_tx, ran) = unbounded();
        tx.send(PullCommand::Now(probe(1, true, &ran_tx))).unwrap();
        tx.send(PullCommand::Now(probe(2, false, &ran_tx))).unwrap();
        tx.send(PullCommand::At(Instant::now(), probe(3, false, &ran_tx)))
            .unwrap();
        let got: Vec<u32> = (0..3).map(|_| ran.recv_timeout(WAIT).unwrap().0).collect();
        assert_eq!(
            got,
            vec![1, 2, 3],
            "pulls after the panicking one still run"
        );
        assert!(!handle.is_finished(), "the pull thread is alive");
        assert_eq!(handle.shutdown(WAIT), Ok(()));
    }

    #[test]
    fn delayed_pulls_fire_on_the_pull_thread_in_deadline_order() {
        let (tx, requests) = unbounded();
        let handle =
            crate::executor::spawn(PullMessageService::new(requests), "rmq-pull-t2").unwrap();
        let (ran_tx, ran) = unbounded();
        let now = Instant::now();
        tx.send(PullCommand::At(
            now + Duration::from_millis(300),
            probe(3, false, &ran_tx),
        ))
        .unwrap();
        tx.send(PullCommand::At(
            now + Duration::from_millis(100),
            probe(1, false, &ran_tx),
        ))
        .unwrap();
        tx.send(PullCommand::At(
            now + Duration::from_millis(200),
            probe(2, false, &ran_tx),
        ))
        .unwrap();
        let mut got = Vec::new();
        for _ in 0..3 {
            let (id, thread) = ran.recv_timeout(WAIT).unwrap();
            assert_eq!(thread, "rmq-pull-t2");
            got.push(id);
        }
        assert_eq!(got, vec![1, 2, 3]);
        assert!(
            now.elapsed() >= Duration::from_millis(300),
            "no pull ran before its time"
        );
        assert_eq!(handle.shutdown(WAIT), Ok(()));
    }
}
