//! `rmq progress GROUP` (mqadmin `consumerProgress -g GROUP`): per queue the broker's offset,
//! the group's offset and the lag.

use std::collections::BTreeMap;

use clap::Args;
use rocketmq_sync::{ConsumeStats, MessageQueue};
use serde_json::json;

use super::Admin;
use crate::output::{self, Col, Table};
use crate::{Failure, Global, Outcome};

#[derive(Args, Debug)]
pub(crate) struct ProgressArgs {
    /// Consumer group.
    #[arg(required_unless_present = "group_flag", value_name = "GROUP")]
    group: Option<String>,
    /// Consumer group, as mqadmin takes it.
    #[arg(
        short = 'g',
        long = "group",
        conflicts_with = "group",
        value_name = "GROUP"
    )]
    group_flag: Option<String>,
    /// Only this topic of the group.
    #[arg(short = 't', long)]
    topic: Option<String>,
}

pub(crate) fn run(g: &Global, args: ProgressArgs) -> Outcome {
    let group = args
        .group
        .or(args.group_flag)
        .ok_or_else(|| Failure::Usage("give the consumer group".into()))?;
    let admin = Admin::start(g)?;
    let stats = consume_stats(&admin, &group, args.topic.as_deref())?;
    if stats.offset_table.is_empty() {
        return Err(Failure::NotFound(format!(
            "group {group} has no consume progress (no offsets committed{})",
            args.topic
                .as_ref()
                .map(|t| format!(" for topic {t}"))
                .unwrap_or_default()
        )));
    }
    let clients = client_ips(&admin, &group);
    if g.json {
        let queues: Vec<_> = stats
            .offset_table
            .iter()
            .map(|(mq, ow)| {
                json!({
                    "topic": mq.topic,
                    "broker_name": mq.broker_name,
                    "queue_id": mq.queue_id,
                    "broker_offset": ow.broker_offset,
                    "consumer_offset": ow.consumer_offset,
                    "client_ip": clients.get(mq),
                    "diff": ow.lag(),
                    "last_timestamp": ow.last_timestamp,
                })
            })
            .collect();
        output::print_json(&json!({
            "group": group,
            "queues": queues,
            "consume_tps": stats.consume_tps,
            "diff_total": stats.diff_total(),
        }));
        return Ok(());
    }
    // mqadmin consumerProgress's columns.
    let mut table = Table::new(vec![
        Col::name("#Topic"),
        Col::name("#Broker Name"),
        Col::num("#QID"),
        Col::num("#Broker Offset"),
        Col::num("#Consumer Offset"),
        Col::text("#Client IP"),
        Col::num("#Diff"),
        Col::text("#LastTime"),
    ])
    .grouped(2);
    for (mq, ow) in &stats.offset_table {
        table.row(vec![
            mq.topic.clone(),
            mq.broker_name.clone(),
            mq.queue_id.to_string(),
            ow.broker_offset.to_string(),
            ow.consumer_offset.to_string(),
            clients.get(mq).cloned().unwrap_or_else(|| "NA".into()),
            ow.lag().to_string(),
            output::time(ow.last_timestamp),
        ]);
    }
    table.print();
    output::emit(&format!(
        "\nConsume TPS: {:.2}\nDiff Total: {}\n",
        stats.consume_tps,
        stats.diff_total()
    ));
    Ok(())
}

/// The group's progress. Without a topic, a broker reports the topics the group has committed
/// offsets on; the topics its online consumers subscribe to are added, so that a consumer that
/// has not committed yet shows up too.
fn consume_stats(admin: &Admin, group: &str, topic: Option<&str>) -> Result<ConsumeStats, Failure> {
    let fail =
        |e: &rocketmq_sync::Error| Failure::from_error(&format!("progress of group {group}"), e);
    if topic.is_some() {
        return admin
            .examine_consume_stats(group, topic)
            .map_err(|e| fail(&e));
    }
    let committed = admin.examine_consume_stats(group, None);
    let subscribed: Vec<String> = admin
        .examine_consumer_connection_info(group)
        .map(|c| c.subscriptions.into_iter().map(|s| s.topic).collect())
        .unwrap_or_default();
    let mut stats = match committed {
        Ok(stats) => stats,
        Err(e) if subscribed.is_empty() => return Err(fail(&e)),
        Err(_) => ConsumeStats::default(),
    };
    for t in subscribed {
        if stats.offset_table.keys().any(|mq| mq.topic == t) {
            continue;
        }
        if let Ok(more) = admin.examine_consume_stats(group, Some(&t)) {
            stats.offset_table.extend(more.offset_table);
            stats.consume_tps += more.consume_tps;
        }
    }
    Ok(stats)
}

/// Which client's IP holds each queue, from the running info of every connected consumer, as
/// mqadmin finds it. Best effort: a group with no consumer online, or a consumer that does not
/// answer, leaves its queues without an IP.
fn client_ips(admin: &Admin, group: &str) -> BTreeMap<MessageQueue, String> {
    let mut ips = BTreeMap::new();
    let Ok(conn) = admin.examine_consumer_connection_info(group) else {
        return ips;
    };
    for c in &conn.connections {
        let ip = c
            .client_addr
            .rsplit_once(':')
            .map_or(c.client_addr.as_str(), |(h, _)| h);
        if let Ok(info) = admin.get_consumer_running_info(group, &c.client_id, false) {
            for mq in info.mq_table.keys() {
                ips.insert(mq.clone(), ip.to_owned());
            }
        }
    }
    ips
}
