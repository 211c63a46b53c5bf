//! `rmq consume`: a push consumer (or, with `--poll`, a lite pull consumer) that prints or
//! counts what it receives and stops after `--count` messages or `--idle` seconds without one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use rocketmq_sync::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, ConsumeFromWhere,
    DefaultMQPushConsumer, MessageExt,
};
use serde_json::json;

use super::{instance_name, message_json, now_ms};
use crate::output::{self, body_text};
use crate::{Failure, Global, Outcome};

#[derive(Args, Debug)]
#[command(after_help = "Without -g, every run uses a new group (rmq_cli_PID_MILLIS), so \
--from decides where it starts. --from applies only to a group with no committed offset, as \
Java's consumeFromWhere: `first` is each queue's beginning, `last` the messages stored from \
the moment the consumer starts. Without --count or --idle it runs until killed.

With --print, people see one line per message (msgId, queue@offset, tags, body) and scripts \
with --json one JSON object per line; without --print only the count is reported. A message \
received beyond --count is handed back to the broker (RECONSUME_LATER), not dropped.")]
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
    let group = args
        .group
        .clone()
        .unwrap_or_else(|| format!("rmq_cli_{}_{}", std::process::id(), now_ms()));
    let (consumer, rx) = start_push(g, &args, &group)?;
    let result = receive(g, &args, &group, &rx);
    // Unconsumed messages still in the channel go back to the broker: the listener sees the
    // closed channel and answers RECONSUME_LATER.
    drop(rx);
    let _ = consumer.shutdown(Duration::from_secs(10));
    result
}

/// Starts a push consumer whose listener forwards each message to the returned channel, at
/// most `--count` in total.
fn start_push(
    g: &Global,
    args: &ConsumeArgs,
    group: &str,
) -> Result<(DefaultMQPushConsumer, Receiver<MessageExt>), Failure> {
    let (tx, rx) = crossbeam_channel::bounded::<MessageExt>(256);
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
    builder = match args.from {
        From::First => builder.consume_from_where(ConsumeFromWhere::FirstOffset),
        From::Last => builder
            .consume_from_where(ConsumeFromWhere::Timestamp)
            .consume_timestamp_millis(now_ms()),
    };
    let consumer = builder
        .build()
        .map_err(|e| Failure::from_error("consumer", &e))?;
    consumer
        .start()
        .map_err(|e| Failure::from_error("consumer start", &e))?;
    Ok((consumer, rx))
}

/// Prints or counts messages until `--count` or `--idle`.
fn receive(g: &Global, args: &ConsumeArgs, group: &str, rx: &Receiver<MessageExt>) -> Outcome {
    let bar = output::progress(args.count, "consuming");
    let width = output::terminal_width();
    let idle = args.idle.map(Duration::from_secs_f64);
    let mut consumed = 0u64;
    let mut last = Instant::now();
    let outcome = loop {
        if args.count.is_some_and(|n| consumed >= n) {
            break Ok(());
        }
        let msg = match idle {
            Some(idle) => match rx.recv_deadline(last + idle) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => break Ok(()),
                Err(RecvTimeoutError::Disconnected) => break Ok(()),
            },
            None => match rx.recv() {
                Ok(m) => m,
                Err(_) => break Ok(()),
            },
        };
        last = Instant::now();
        consumed += 1;
        bar.inc(1);
        if args.print {
            let written = if g.json {
                bar.suspend(|| output::print_json_line(&message_json(&msg)))
            } else {
                let line = message_line(&msg, width);
                bar.suspend(|| output::print_line(&line))
            };
            // A closed pipe (`rmq consume --print | head`) ends the run.
            if written.is_err() {
                break Ok(());
            }
        }
    };
    bar.finish_and_clear();
    summary(g, args, group, consumed);
    match (outcome, args.count) {
        (Ok(()), Some(n)) if consumed < n => Err(Failure::Incomplete(format!(
            "{consumed} of {n} messages from {} before {}s without a message",
            args.topic,
            args.idle.unwrap_or_default()
        ))),
        (outcome, _) => outcome,
    }
}

/// The run's count: on stdout when it is the output (no --print), else on stderr for people.
fn summary(g: &Global, args: &ConsumeArgs, group: &str, consumed: u64) {
    if args.print {
        if !g.json {
            eprintln!("{consumed} message(s) consumed from {} (group {group})", args.topic);
        }
    } else if g.json {
        let _ = output::print_json_line(&json!({
            "topic": args.topic,
            "group": group,
            "consumed": consumed,
        }));
    } else {
        output::emit(&format!(
            "{consumed} message(s) consumed from {} (group {group})\n",
            args.topic
        ));
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
