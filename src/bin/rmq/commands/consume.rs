//! `rmq consume`: a push consumer (or, with `--poll`, a lite pull consumer) that prints or
//! counts what it receives and stops after `--count` messages or `--idle` seconds without one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use rocketmq_sync::codec::TopicRouteData;
use rocketmq_sync::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, ConsumeFromWhere,
    DefaultLitePullConsumer, DefaultMQPushConsumer, MessageExt, MessageQueue,
};
use serde_json::json;

use super::{instance_name, message_json, now_ms, Admin};
use crate::output::{self, body_text};
use crate::{Failure, Global, Outcome};

/// How often `--poll` commits what it handed out while it runs (Java's auto-commit interval).
const COMMIT_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Args, Debug)]
#[command(
    after_help = "Without -g, every run uses a new group (rmq_cli_PID_MILLIS): \
--from first starts at each queue's beginning, --from last with the messages stored from the \
moment the consumer starts. With -g, --from is Java's consumeFromWhere: it applies only where \
the group has no committed offset (and brokers start a new group's `last` at 0 while the \
queue's messages are all in memory). Without --count or --idle it runs until killed.

With --print, people see one line per message (msgId, queue@offset, tags, body) and scripts \
with --json one JSON object per line; without --print only the count is reported. Beyond --count \
nothing is lost for the group: the push consumer hands surplus messages back to the broker \
(RECONSUME_LATER), and --poll commits only the offsets of the messages handed out."
)]
pub(crate) struct ConsumeArgs {
    /// Topic.
    #[arg(short = 't', long)]
    topic: String,
    /// Consumer group (default: a new group for this run).
    #[arg(short = 'g', long)]
    group: Option<String>,
    /// Tag expression: `*`, `TagA`, `TagA || TagB`.
    #[arg(short = 's', long = "tags", default_value = "*", value_name = "EXPR")]
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
    let admin = Admin::start(g)?;
    let route = admin
        .examine_topic_route_info(&args.topic)
        .map_err(|e| Failure::from_error(&format!("route of topic {}", args.topic), &e))?;
    let group = args
        .group
        .clone()
        .unwrap_or_else(|| format!("rmq_cli_{}_{}", std::process::id(), now_ms()));
    let start_ms = now_ms();
    if args.from == From::Last && args.group.is_none() {
        pin_to_end(g, &admin, &args.topic, &route, &group)?;
    }
    drop(admin);
    if args.poll {
        run_poll(g, &args, &group, start_ms)
    } else {
        run_push(g, &args, &group, start_ms)
    }
}

/// `--from last` for this run's own new group: commits each queue's current max offset for
/// the group before its consumer starts, so that it begins with what is stored from now on.
///
/// `ConsumeFromWhere` cannot say this reliably: with `LastOffset` a broker starts a new group
/// at offset 0 while the queue's messages are all in memory (Java's broker and rocketmq-rust
/// alike), and a timestamp search for "now" answers 0 on rocketmq-rust 1.0.0 when no message
/// is that recent. A group named with `-g` is left to `ConsumeFromWhere`: whether it has
/// offsets cannot be told apart from offset 0 on every broker.
fn pin_to_end(
    g: &Global,
    admin: &Admin,
    topic: &str,
    route: &TopicRouteData,
    group: &str,
) -> Outcome {
    let mut offsets = HashMap::new();
    for qd in route.queue_datas.iter().filter(|qd| qd.is_readable()) {
        for queue_id in 0..qd.read_queue_nums {
            let mq = MessageQueue::new(topic, qd.broker_name.as_str(), queue_id);
            let max = admin
                .max_offset(&mq)
                .map_err(|e| Failure::from_error(&format!("max offset of {mq}"), &e))?;
            offsets.insert(mq, max);
        }
    }
    // A consumer of the group that only commits; the real one starts after it is gone. It
    // subscribes so that its start-up heartbeat makes the broker create the group, which a
    // commit needs; it polls nothing, so nothing else is committed.
    let pin = DefaultLitePullConsumer::builder(group)
        .namesrv_addr(g.namesrv()?)
        .instance_name(format!("{}-pin", instance_name()))
        .auto_commit(false)
        .build()
        .map_err(|e| Failure::from_error("consumer", &e))?;
    pin.subscribe(topic, "*")
        .map_err(|e| Failure::from_error("subscribe", &e))?;
    pin.start()
        .map_err(|e| Failure::from_error("consumer start", &e))?;
    let committed = pin
        .commit(&offsets)
        .map_err(|e| Failure::from_error(&format!("commit of group {group}'s start"), &e));
    let _ = pin.shutdown(Duration::from_secs(5));
    committed
}

/// Says on stderr that the consumer runs, and from which instant `--from last` counts: a
/// script may send its messages once it has read this line.
fn announce(args: &ConsumeArgs, group: &str, start_ms: i64) {
    let mode = if args.poll { "lite pull" } else { "push" };
    let text = match (&args.group, args.from) {
        (None, From::First) => format!("new group {group} ({mode}) from the first message"),
        (None, From::Last) => format!(
            "new group {group} ({mode}) from the messages stored since {}",
            output::time(start_ms)
        ),
        (Some(_), from) => format!(
            "group {group} ({mode}) from its offsets, else from the {} message",
            if from == From::First { "first" } else { "last" }
        ),
    };
    output::status(&format!("rmq: consuming {} as {text}", args.topic));
}

fn run_push(g: &Global, args: &ConsumeArgs, group: &str, start_ms: i64) -> Outcome {
    let (consumer, rx) = start_push(g, args, group)?;
    announce(args, group, start_ms);
    let (result, _) = receive(g, args, group, no_checkpoint, |deadline| {
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
    group: &str,
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
    let mut builder = DefaultMQPushConsumer::builder(group)
        .namesrv_addr(g.namesrv()?)
        .instance_name(instance_name())
        .subscribe(args.topic.as_str(), args.expression.as_str())
        // One thread: messages reach the channel in queue order.
        .consume_threads(1, 1)
        .register_message_listener_concurrently(listener);
    // For `last`, the offsets were pinned; queues added meanwhile start at their end.
    builder = match args.from {
        From::First => builder.consume_from_where(ConsumeFromWhere::FirstOffset),
        From::Last => builder.consume_from_where(ConsumeFromWhere::LastOffset),
    };
    let consumer = builder
        .build()
        .map_err(|e| Failure::from_error("consumer", &e))?;
    consumer
        .start()
        .map_err(|e| Failure::from_error("consumer start", &e))?;
    Ok((consumer, rx))
}

fn run_poll(g: &Global, args: &ConsumeArgs, group: &str, start_ms: i64) -> Outcome {
    let mut builder = DefaultLitePullConsumer::builder(group)
        .namesrv_addr(g.namesrv()?)
        .instance_name(instance_name())
        // Only what was printed or counted is committed, at the end.
        .auto_commit(false);
    builder = match args.from {
        From::First => builder.consume_from_where(ConsumeFromWhere::FirstOffset),
        From::Last => builder.consume_from_where(ConsumeFromWhere::LastOffset),
    };
    let consumer = builder
        .build()
        .map_err(|e| Failure::from_error("consumer", &e))?;
    consumer
        .subscribe(&args.topic, &args.expression)
        .map_err(|e| Failure::from_error("subscribe", &e))?;
    consumer
        .start()
        .map_err(|e| Failure::from_error("consumer start", &e))?;
    announce(args, group, start_ms);
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
    let (result, handed_out) = receive(g, args, group, checkpoint, |deadline| {
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
    if args.print {
        if !g.json {
            output::status(&format!("{consumed} message(s) consumed, group {group}"));
        }
    } else if g.json {
        let _ = output::print_json_line(&json!({
            "topic": args.topic,
            "group": group,
            "consumed": consumed,
        }));
    } else {
        output::emit(&format!("{consumed} message(s) consumed, group {group}\n"));
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
