//! `rmq message query|get` (mqadmin `queryMsgByKey`, `queryMsgById`).

use clap::{Args, Subcommand};
use rocketmq_sync::codec::MessageDecoder;
use rocketmq_sync::MessageExt;
use serde_json::json;

use super::{message_json, properties_text, Admin};
use crate::output::{self, body_text, Col, Table};
use crate::{Failure, Global, Outcome};

#[derive(Subcommand, Debug)]
pub(crate) enum MessageCommand {
    /// Find a topic's messages by key (mqadmin queryMsgByKey).
    Query(QueryArgs),
    /// Show one message by its offset msgId, or with --topic also by its unique key
    /// (mqadmin queryMsgById).
    Get(GetArgs),
}

#[derive(Args, Debug)]
pub(crate) struct QueryArgs {
    /// Topic.
    #[arg(short = 't', long)]
    topic: String,
    /// Message key.
    #[arg(short = 'k', long)]
    key: String,
    /// Only messages stored at or after this time (ms since the epoch).
    #[arg(short = 'b', long, default_value_t = 0, value_name = "MS")]
    begin: i64,
    /// Only messages stored before this time (ms since the epoch).
    #[arg(short = 'e', long, default_value_t = i64::MAX, value_name = "MS")]
    end: i64,
    /// At most this many messages from each broker.
    #[arg(short = 'm', long, default_value_t = 64, value_name = "N")]
    max: u32,
}

#[derive(Args, Debug)]
#[command(
    after_help = "MSGID is the offset msgId (the store host and commit-log offset, \
as `rmq send --json` reports it in offset_msg_id and `message query` in its first column). \
With --topic it may also be the unique key (the MsgId column of `rmq send`)."
)]
pub(crate) struct GetArgs {
    /// Message id.
    #[arg(required_unless_present = "id_flag", value_name = "MSGID")]
    id: Option<String>,
    /// Message id, as mqadmin takes it.
    #[arg(
        short = 'i',
        long = "msg-id",
        conflicts_with = "id",
        value_name = "MSGID"
    )]
    id_flag: Option<String>,
    /// The message's topic: look the id up as a unique key too.
    #[arg(short = 't', long)]
    topic: Option<String>,
}

pub(crate) fn run(g: &Global, cmd: MessageCommand) -> Outcome {
    match cmd {
        MessageCommand::Query(args) => query(g, args),
        MessageCommand::Get(args) => get(g, args),
    }
}

fn query(g: &Global, args: QueryArgs) -> Outcome {
    if args.begin > args.end {
        return Err(Failure::Usage("--begin is after --end".into()));
    }
    let admin = Admin::start(g)?;
    let result = admin
        .query_message(&args.topic, &args.key, args.max, args.begin, args.end)
        .map_err(|e| {
            Failure::from_error(&format!("query of key {} in {}", args.key, args.topic), &e)
        })?;
    if result.messages.is_empty() {
        return Err(Failure::NotFound(format!(
            "no message with key {} in topic {}",
            args.key, args.topic
        )));
    }
    if g.json {
        output::print_json(&json!({
            "topic": args.topic,
            "key": args.key,
            "messages": result.messages.iter().map(message_json).collect::<Vec<_>>(),
        }));
        return Ok(());
    }
    // mqadmin queryMsgByKey's columns (its Message ID is the offset msgId), with the store time.
    let mut table = Table::new(vec![
        Col::text("#Message ID"),
        Col::num("#QID"),
        Col::num("#Offset"),
        Col::text("#Store Time"),
    ]);
    for m in &result.messages {
        table.row(vec![
            m.offset_msg_id(),
            m.queue_id().to_string(),
            m.queue_offset().to_string(),
            output::time(m.store_timestamp()),
        ]);
    }
    table.print();
    Ok(())
}

fn get(g: &Global, args: GetArgs) -> Outcome {
    let id = args
        .id
        .or(args.id_flag)
        .ok_or_else(|| Failure::Usage("give the message id".into()))?;
    let id = id.trim().to_owned();
    let is_offset_id = MessageDecoder::decode_message_id(&id).is_ok();
    match &args.topic {
        None if !is_offset_id => {
            return Err(Failure::Usage(format!(
                "{id} is not an offset msgId (32 or 56 hex digits); \
                 give --topic to look it up as a unique key"
            )))
        }
        Some(_) if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) => {
            return Err(Failure::Usage(format!(
                "{id} is neither an offset msgId nor a unique key (hex digits)"
            )))
        }
        _ => {}
    }
    let admin = Admin::start(g)?;
    let found = match &args.topic {
        Some(topic) => admin.view_message_in_topic(topic, &id),
        None => admin.view_message(&id),
    };
    let msg = found.map_err(|e| Failure::from_error(&format!("message {id}"), &e))?;
    if g.json {
        output::print_json(&message_json(&msg));
    } else {
        output::print_fields(&message_fields(&msg));
    }
    Ok(())
}

/// The fields mqadmin queryMsgById prints, with the unique key and the body itself (instead
/// of the path of a file holding it).
fn message_fields(msg: &MessageExt) -> Vec<(&'static str, String)> {
    vec![
        ("OffsetID", msg.offset_msg_id()),
        ("MsgId", msg.msg_id().into_owned()),
        ("Topic", msg.topic().to_owned()),
        ("Tags", format!("[{}]", msg.tags().unwrap_or_default())),
        ("Keys", format!("[{}]", msg.keys().unwrap_or_default())),
        ("Queue ID", msg.queue_id().to_string()),
        ("Queue Offset", msg.queue_offset().to_string()),
        ("CommitLog Offset", msg.commit_log_offset().to_string()),
        ("Reconsume Times", msg.reconsume_times().to_string()),
        ("Born Timestamp", output::time(msg.born_timestamp())),
        ("Store Timestamp", output::time(msg.store_timestamp())),
        ("Born Host", msg.born_host().to_string()),
        ("Store Host", msg.store_host().to_string()),
        ("System Flag", msg.sys_flag().to_string()),
        ("Properties", properties_text(msg)),
        ("Message Body", body_text(msg.body())),
    ]
}
