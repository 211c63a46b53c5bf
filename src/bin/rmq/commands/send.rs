//! `rmq send`: synchronous sends, one message per argument or per stdin line.

use std::io::{self, BufRead, IsTerminal};
use std::time::Duration;

use clap::Args;
use rocketmq_sync::{DefaultMQProducer, Message, SendResult};
use serde_json::{json, Value};

use super::instance_name;
use crate::output::{self, Col, Table};
use crate::{Failure, Global, Outcome};

#[derive(Args, Debug)]
#[command(
    after_help = "Each BODY is one message; without BODY, each line of stdin is one \
message (an empty line is an error: RocketMQ refuses empty bodies). Sends are synchronous \
and stop at the first failure, after printing what was sent before it."
)]
pub(crate) struct SendArgs {
    /// Topic.
    #[arg(short = 't', long)]
    topic: String,
    /// Tag of every message (mqadmin sendMessage's -c).
    #[arg(short = 'c', long)]
    tags: Option<String>,
    /// Key(s) of every message, space-separated, for `rmq message query`.
    #[arg(short = 'k', long)]
    keys: Option<String>,
    /// Producer group.
    #[arg(long, default_value = "rmq_cli_producer")]
    group: String,
    /// Print only how many were sent, not a row per message (for long stdin input).
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Message bodies.
    #[arg(value_name = "BODY")]
    bodies: Vec<String>,
}

/// What was sent: the results so far, and the failure that stopped the run, if any.
struct Sent {
    results: Vec<SendResult>,
    failure: Option<Failure>,
}

pub(crate) fn run(g: &Global, args: SendArgs) -> Outcome {
    let producer = DefaultMQProducer::builder(args.group.as_str())
        .namesrv_addr(g.namesrv()?)
        .instance_name(instance_name())
        .send_msg_timeout(Duration::from_secs(g.timeout))
        .build()
        .map_err(|e| Failure::from_error("producer", &e))?;
    producer
        .start()
        .map_err(|e| Failure::from_error("producer start", &e))?;
    let sent = if args.bodies.is_empty() {
        if io::stdin().is_terminal() {
            output::status("rmq: one message per line; end with Ctrl-D");
        }
        let lines = io::stdin().lock().lines();
        send_all(
            &producer,
            &args,
            None,
            lines.map(|l| l.map_err(|e| e.to_string())),
        )
    } else {
        let n = args.bodies.len() as u64;
        let bodies = args.bodies.iter().map(|b| Ok(b.clone()));
        send_all(&producer, &args, Some(n), bodies)
    };
    // A failed shutdown cannot lose what was sent: every send was acknowledged.
    let _ = producer.shutdown(Duration::from_secs(5));
    report(g, &args, &sent);
    match sent.failure {
        Some(f) => Err(f),
        None => Ok(()),
    }
}

fn send_all(
    producer: &DefaultMQProducer,
    args: &SendArgs,
    len: Option<u64>,
    bodies: impl Iterator<Item = Result<String, String>>,
) -> Sent {
    let bar = output::progress(len, "sending");
    let mut results = Vec::new();
    let mut failure = None;
    for (i, body) in bodies.enumerate() {
        let what = match len {
            Some(_) => format!("BODY argument {}", i + 1),
            None => format!("stdin line {}", i + 1),
        };
        let body = match body {
            Ok(b) => b,
            Err(e) => {
                failure = Some(Failure::Runtime(format!("reading stdin: {e}")));
                break;
            }
        };
        if body.is_empty() {
            failure = Some(Failure::Usage(format!(
                "{what} is empty; RocketMQ refuses empty bodies"
            )));
            break;
        }
        let mut msg = Message::new(args.topic.as_str(), body);
        if let Some(tags) = &args.tags {
            msg = msg.with_tags(tags.as_str());
        }
        if let Some(keys) = &args.keys {
            msg = msg.with_keys(keys.as_str());
        }
        match producer.send(&msg) {
            Ok(r) => {
                results.push(r);
                bar.inc(1);
            }
            Err(e) => {
                failure = Some(Failure::from_error(&format!("sending {what}"), &e));
                break;
            }
        }
    }
    bar.finish_and_clear();
    Sent { results, failure }
}

fn result_json(r: &SendResult) -> Value {
    json!({
        "send_status": r.send_status().as_java_str(),
        "msg_id": r.msg_id(),
        "offset_msg_id": r.offset_msg_id(),
        "broker_name": r.message_queue().broker_name,
        "queue_id": r.message_queue().queue_id,
        "queue_offset": r.queue_offset(),
    })
}

fn report(g: &Global, args: &SendArgs, sent: &Sent) {
    if g.json {
        output::print_json(&json!({
            "topic": args.topic,
            "sent": sent.results.len(),
            "failed": sent.failure.is_some(),
            "error": sent.failure.as_ref().map(Failure::one_line),
            "results": sent.results.iter().map(result_json).collect::<Vec<_>>(),
        }));
        return;
    }
    if args.quiet {
        output::emit(&format!(
            "{} message(s) sent to {}\n",
            sent.results.len(),
            args.topic
        ));
        return;
    }
    // mqadmin sendMessage's columns, with the queue offset added.
    let mut table = Table::new(vec![
        Col::name("#Broker Name"),
        Col::num("#QID"),
        Col::num("#Offset"),
        Col::text("#Send Result"),
        Col::text("#MsgId"),
    ]);
    for r in &sent.results {
        let mq = r.message_queue();
        table.row(vec![
            mq.broker_name.clone(),
            mq.queue_id.to_string(),
            r.queue_offset().to_string(),
            r.send_status().as_java_str().to_owned(),
            r.msg_id().to_owned(),
        ]);
    }
    if !table.is_empty() {
        table.print();
    }
}
