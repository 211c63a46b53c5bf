//! `rmq consume`: a push consumer (or, with `--poll`, a lite pull consumer) that prints or
//! counts what it receives and stops after `--count` messages or `--idle` seconds without one.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use rocketmq_sync::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, ConsumeFromWhere,
    DefaultLitePullConsumer, DefaultMQPushConsumer, MessageExt, MessageModel, MessageQueue,
};
use serde_json::json;

use super::{instance_name, message_json, now_ms, Admin};
use crate::output::{self, body_text};
use crate::{Failure, Global, Outcome};

/// How often `--poll` commits what it handed out while it runs (Java's auto-commit interval).
const COMMIT_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Args, Debug)]
#[command(after_help = "Without -g, every run consumes as a group of its own \
(rmq_cli_PID_MILLIS, broadcasting, its offsets in a temporary directory deleted at the end): \
--from first starts at each queue's beginning, --from last with the messages stored once the \
consumer has started. With -g, --from is Java's consumeFromWhere: it applies only where the \
group has no committed offset (and brokers start a new group's `last` at 0 while the queue's \
messages are all in memory). Without --count or --idle it runs until killed.

With --print, people see one line per message (msgId, queue@offset, tags, body) and scripts \
with --json one JSON object per line; without --print only the count is reported. A group named \
with -g loses nothing beyond --count: the push consumer hands surplus messages back to the \
broker (RECONSUME_LATER), and --poll commits only the offsets of the messages handed out.")]
pub(crate) struct ConsumeArgs {
    /// Topic.
    #[arg(short = 't', long)]
    topic: String,
    /// Consumer group (default: a group of this run's own).
    #[arg(short = 'g', long)]
    group: Option<String>,
    /// Tag expression: `*`, `TagA`, `TagA || TagB`.
    #[arg(long = "tags", default_value = "*", value_name = "EXPR")]
    expression: String,
    /// Consume with a lite pull consumer (poll loop) instead of a push consumer.
    #[arg(long)]
    poll: bool,
    /// Where a group without committed offsets starts.
    #[arg(long, value_enum, default_value_t = From::Last)]
    from: From,
    /// Print every message (else only count them).
    #[arg(long)]
    print: bool,
    /// Stop after this many messages.
    #[arg(short = 'c', long, value_name = "N")]
    count: Option<u64>,
    /// Stop after this many seconds without a message.
    #[arg(long, value_name = "SECS")]
    idle: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum From {
    /// Each queue's first message.
    First,
    /// Only messages stored after the consumer starts.
    Last,
}

pub(crate) fn run(g: &Global, args: ConsumeArgs) -> Outcome {
    if let Some(idle) = args.idle {
        if !(idle.is_finite() && idle > 0.0) {
            return Err(Failure::Usage(format!(
                "--idle must be a positive number of seconds, not {idle}"
            )));
        }
    }
    if args.count == Some(0) {
        return Err(Failure::Usage("--count must be at least 1".to_owned()));
    }
    // An unknown topic or an unreachable name server is an answer now, not a silent wait:
    // a consumer by itself only logs that it finds no route.
    let route = Admin::start(g)?
        .examine_topic_route_info(&args.topic)
        .map_err(|e| Failure::from_error(&format!("route of topic {}", args.topic), &e))?;
    let queues = route
        .queue_datas
        .iter()
        .filter(|qd| qd.is_readable())
        .map(|qd| qd.read_queue_nums.max(0) as usize)
        .sum();
    let start_ms = now_ms();
    let setup = match &args.group {
        Some(group) => Setup {
            group: group.clone(),
            own_offsets: None,
            queues,
        },
        None => {
            let name = format!("rmq_cli_{}_{start_ms}", std::process::id());
            Setup {
                own_offsets: Some(std::env::temp_dir().join(&name)),
                group: name,
                queues,
            }
        }
    };
    let result = if args.poll {
        run_poll(g, &args, &setup)
    } else {
        run_push(g, &args, &setup)
    };
    if let Some(dir) = &setup.own_offsets {
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

/// The group a run consumes as.
///
/// Without `-g` it is a group of this run's own, consuming in broadcasting mode with its
/// offsets in a temporary directory that is deleted at the end: it leaves no offsets on the
/// broker, and `--from` means what it says. (A clustering group would ask the broker for its
/// offset, and a broker answers 0 for a new group while the queue's messages are still in
/// memory, which would make `--from last` start at the beginning.) The broker still records
/// the group and its retry topic, as it does for every consumer that sends a heartbeat.
struct Setup {
    group: String,
    /// The offsets directory of the run's own group; `None` for a group named with `-g`.
    own_offsets: Option<PathBuf>,
    /// The topic's readable queues, all of which the run's own group holds once it runs.
    queues: usize,
}

impl Setup {
    /// Waits (up to 30 s) until the run's own group holds every queue of the topic, so that
    /// each start offset is computed before [`announce`] tells that the consumer runs. A
    /// group named with `-g` may share its queues with others, and is not waited for.
    fn wait_until_held(&self, held: impl Fn() -> usize) {
        if self.own_offsets.is_none() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while held() < self.queues && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn from_where(from: From) -> ConsumeFromWhere {
    match from {
        From::First => ConsumeFromWhere::FirstOffset,
        From::Last => ConsumeFromWhere::LastOffset,
    }
}

/// Says on stderr that the consumer runs. With the run's own group and `--from last`, every
/// message stored after this line is consumed: a script may send once it has read it.
fn announce(args: &ConsumeArgs, group: &str) {
    let mode = if args.poll { "lite pull" } else { "push" };
    let text = match (&args.group, args.from) {
        (None, From::First) => format!("({mode}) from the first message"),
        (None, From::Last) => format!("({mode}) from the messages stored from now on"),
        (Some(_), from) => format!(
            "as group {group} ({mode}) from its offsets, else from the {} message",
            if from == From::First { "first" } else { "last" }
        ),
    };
    output::status(&format!("rmq: consuming {} {text}", args.topic));
}

fn run_push(g: &Global, args: &ConsumeArgs, setup: &Setup) -> Outcome {
    let (consumer, rx) = start_push(g, args, setup)?;
    setup.wait_until_held(|| consumer.queue_stats().len());
    announce(args, &setup.group);
    let (result, _) = receive(g, args, &setup.group, no_checkpoint, |deadline| {
        let got = match deadline {
            Some(d) => rx
                .recv_deadline(d)
                .map_err(|e| e == RecvTimeoutError::Disconnected),
            None => rx.recv().map_err(|_| true),
        };
        match got {
            Ok(m) => Ok(vec![m]),
            Err(false) => Ok(Vec::new()),
            Err(true) => Err(Failure::Runtime("the consumer stopped".into())),
        }
    });
    drop(rx);
    let _ = consumer.shutdown(Duration::from_secs(10));
    result
}

fn no_checkpoint(_: &HashMap<MessageQueue, i64>) -> Outcome {
    Ok(())
}

/// Starts a push consumer whose listener forwards each message to the returned channel, at
/// most `--count` in total.
fn start_push(
    g: &Global,
    args: &ConsumeArgs,
    setup: &Setup,
) -> Result<(DefaultMQPushConsumer, Receiver<MessageExt>), Failure> {
    // A rendezvous channel: the listener reports a message consumed only once the main thread
    // has taken it, so no message is acknowledged and then dropped with the channel. A listener
    // that finds the channel closed hands its messages back (RECONSUME_LATER).
    let (tx, rx) = crossbeam_channel::bounded::<MessageExt>(0);
    // Slots left before --count is reached; a listener takes one per message it forwards.
    let slots = Arc::new(AtomicU64::new(args.count.unwrap_or(u64::MAX)));
    let listener = move |msgs: &[MessageExt], _: &mut ConsumeConcurrentlyContext| {
        for msg in msgs {
            let took = slots
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok();
            if !took || tx.send(msg.clone()).is_err() {
                return ConsumeConcurrentlyStatus::ReconsumeLater;
            }
        }
        ConsumeConcurrentlyStatus::ConsumeSuccess
    };
    let mut builder = DefaultMQPushConsumer::builder(setup.group.as_str())
        .namesrv_addr(g.namesrv()?)
        .instance_name(instance_name())
        .subscribe(args.topic.as_str(), args.expression.as_str())
        // One thread: messages reach the channel in queue order.
        .consume_threads(1, 1)
        .consume_from_where(from_where(args.from))
        .register_message_listener_concurrently(listener);
    if let Some(dir) = &setup.own_offsets {
        builder = builder
            .message_model(MessageModel::Broadcasting)
            .offset_store_dir(dir.clone());
    }
    let consumer = builder
        .build()
        .map_err(|e| Failure::from_error("consumer", &e))?;
    consumer
        .start()
        .map_err(|e| Failure::from_error("consumer start", &e))?;
    Ok((consumer, rx))
}

fn run_poll(g: &Global, args: &ConsumeArgs, setup: &Setup) -> Outcome {
    let mut builder = DefaultLitePullConsumer::builder(setup.group.as_str())
        .namesrv_addr(g.namesrv()?)
        .instance_name(instance_name())
        .consume_from_where(from_where(args.from))
        // Only what was printed or counted is committed (below).
        .auto_commit(false);
    if let Some(dir) = &setup.own_offsets {
        builder = builder
            .message_model(MessageModel::Broadcasting)
            .offset_store_dir(dir.clone());
    }
    let consumer = builder
        .build()
        .map_err(|e| Failure::from_error("consumer", &e))?;
    consumer
        .subscribe(&args.topic, &args.expression)
        .map_err(|e| Failure::from_error("subscribe", &e))?;
    consumer
        .start()
        .map_err(|e| Failure::from_error("consumer start", &e))?;
    setup.wait_until_held(|| consumer.assignment().len());
    announce(args, &setup.group);
    // Commits what was handed out every few seconds, so that a run that is killed repeats
    // little; the last commit is after the run.
    let mut next_commit = Instant::now() + COMMIT_INTERVAL;
    let checkpoint = |handed_out: &HashMap<MessageQueue, i64>| {
        if Instant::now() < next_commit || handed_out.is_empty() {
            return Ok(());
        }
        next_commit = Instant::now() + COMMIT_INTERVAL;
        consumer
            .commit(handed_out)
            .map_err(|e| Failure::from_error("commit", &e))
    };
    let (result, handed_out) = receive(g, args, &setup.group, checkpoint, |deadline| {
        // Without --idle, poll in rounds of a second until --count or until killed.
        let timeout = deadline.map_or(Duration::from_secs(1), |d| {
            d.saturating_duration_since(Instant::now())
        });
        loop {
            let batch = consumer
                .poll(timeout)
                .map_err(|e| Failure::from_error("poll", &e))?;
            if !batch.is_empty() || deadline.is_some() {
                return Ok(batch);
            }
        }
    });
    // Commit exactly the messages handed out, also after a failure: what a --count cut off
    // stays unconsumed.
    let committed = if handed_out.is_empty() {
        Ok(())
    } else {
        consumer
            .commit(&handed_out)
            .map_err(|e| Failure::from_error("commit", &e))
    };
    let _ = consumer.shutdown(Duration::from_secs(10));
    result.and(committed)
}

/// Prints or counts messages until `--count` or `--idle`. `next` returns the next messages,
/// or none once the deadline it is given has passed; `checkpoint` is called after each batch.
/// Returns how the run ended and, per queue, the offset after the last message handed out.
fn receive(
    g: &Global,
    args: &ConsumeArgs,
    group: &str,
    mut checkpoint: impl FnMut(&HashMap<MessageQueue, i64>) -> Outcome,
    mut next: impl FnMut(Option<Instant>) -> Result<Vec<MessageExt>, Failure>,
) -> (Outcome, HashMap<MessageQueue, i64>) {
    let bar = output::progress(args.count, "consuming");
    let width = output::terminal_width();
    let idle = args.idle.map(Duration::from_secs_f64);
    let mut consumed = 0u64;
    let mut handed_out = HashMap::new();
    let mut last = Instant::now();
    let outcome = 'run: loop {
        if args.count.is_some_and(|n| consumed >= n) {
            break Ok(());
        }
        let batch = match next(idle.map(|i| last + i)) {
            Ok(b) if b.is_empty() => break Ok(()),
            Ok(b) => b,
            Err(f) => break Err(f),
        };
        last = Instant::now();
        for msg in batch {
            if args.count.is_some_and(|n| consumed >= n) {
                break 'run Ok(());
            }
            consumed += 1;
            bar.inc(1);
            let mq = MessageQueue::new(
                msg.topic(),
                msg.broker_name().unwrap_or_default(),
                msg.queue_id(),
            );
            handed_out.insert(mq, msg.queue_offset() + 1);
            if args.print {
                let written = if g.json {
                    bar.suspend(|| output::print_json_line(&message_json(&msg)))
                } else {
                    let line = message_line(&msg, width);
                    bar.suspend(|| output::print_line(&line))
                };
                // A closed pipe (`rmq consume --print | head`) ends the run.
                if written.is_err() {
                    break 'run Ok(());
                }
            }
        }
        if let Err(f) = checkpoint(&handed_out) {
            break Err(f);
        }
    };
    bar.finish_and_clear();
    summary(g, args, group, consumed);
    let outcome = outcome.and_then(|()| match args.count {
        Some(n) if consumed < n => Err(Failure::Incomplete(format!(
            "{consumed} of {n} messages from {} before {}s without a message",
            args.topic,
            args.idle.unwrap_or_default()
        ))),
        _ => Ok(()),
    });
    (outcome, handed_out)
}

/// The run's count: on stdout when it is the output (no --print), else on stderr for people.
fn summary(g: &Global, args: &ConsumeArgs, group: &str, consumed: u64) {
    // The run's own group is gone after the run; a named one is worth repeating.
    let text = match &args.group {
        Some(_) => format!("{consumed} message(s) consumed, group {group}"),
        None => format!("{consumed} message(s) consumed"),
    };
    if args.print {
        if !g.json {
            output::status(&text);
        }
    } else if g.json {
        let _ = output::print_json_line(&json!({
            "topic": args.topic,
            "group": group,
            "consumed": consumed,
        }));
    } else {
        output::emit(&format!("{text}\n"));
    }
}

/// One message for people: msgId, queue@offset, tags and the body, cut to the screen.
fn message_line(msg: &MessageExt, width: Option<usize>) -> String {
    let line = format!(
        "{}  {}:{}@{}  {}  {}",
        msg.msg_id(),
        msg.broker_name().unwrap_or("-"),
        msg.queue_id(),
        msg.queue_offset(),
        msg.tags().unwrap_or("-"),
        body_text(msg.body()).replace('\n', "\\n"),
    );
    match width {
        Some(w) if line.chars().count() > w => {
            let mut cut: String = line.chars().take(w.saturating_sub(1)).collect();
            cut.push('…');
            cut
        }
        _ => line,
    }
}
