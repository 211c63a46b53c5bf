//! `rmq topic create|route|list` (mqadmin `updateTopic`, `topicRoute`, `topicList`).

use clap::{Args, Subcommand};
use rocketmq_sync::codec::{BrokerData, PERM_READ, PERM_WRITE};
use rocketmq_sync::TopicConfig;
use serde_json::json;

use super::Admin;
use crate::output::{self, Col, Table};
use crate::{Failure, Global, Outcome};

#[derive(Subcommand, Debug)]
pub(crate) enum TopicCommand {
    /// Create a topic, or update its queues and permission (mqadmin updateTopic).
    Create(CreateArgs),
    /// Show which brokers hold a topic, with their queues (mqadmin topicRoute).
    Route(RouteArgs),
    /// List every topic the name server knows (mqadmin topicList).
    List(ListArgs),
}

#[derive(Args, Debug)]
#[command(
    after_help = "Without -c or -b, the topic goes on every master of the only \
cluster; with several clusters, name one."
)]
pub(crate) struct CreateArgs {
    /// Topic.
    #[arg(short = 't', long)]
    topic: String,
    /// Create it on every master of this cluster.
    #[arg(short = 'c', long, conflicts_with = "broker")]
    cluster: Option<String>,
    /// Create it on the broker at this address (`host:port`).
    #[arg(short = 'b', long, value_name = "ADDR")]
    broker: Option<String>,
    /// Read queues per broker.
    #[arg(
        short = 'r',
        long = "read-queues",
        default_value_t = 8,
        value_name = "N"
    )]
    read_queues: u32,
    /// Write queues per broker.
    #[arg(
        short = 'w',
        long = "write-queues",
        default_value_t = 8,
        value_name = "N"
    )]
    write_queues: u32,
    /// Permission: 2 write only, 4 read only, 6 read and write.
    #[arg(short = 'p', long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(0..=7))]
    perm: u32,
    /// An ordered topic.
    #[arg(short = 'o', long)]
    order: bool,
}

#[derive(Args, Debug)]
pub(crate) struct RouteArgs {
    /// Topic.
    #[arg(short = 't', long)]
    topic: String,
}

#[derive(Args, Debug)]
pub(crate) struct ListArgs {}

pub(crate) fn run(g: &Global, cmd: TopicCommand) -> Outcome {
    match cmd {
        TopicCommand::Create(args) => create(g, args),
        TopicCommand::Route(args) => route(g, args),
        TopicCommand::List(_) => list(g),
    }
}

/// The permission number as mqadmin shows it, with its meaning: `6 (RW)`.
fn perm_text(perm: i64) -> String {
    let r = if perm & i64::from(PERM_READ) != 0 {
        'R'
    } else {
        '-'
    };
    let w = if perm & i64::from(PERM_WRITE) != 0 {
        'W'
    } else {
        '-'
    };
    format!("{perm} ({r}{w})")
}

fn create(g: &Global, args: CreateArgs) -> Outcome {
    if args.read_queues == 0 || args.write_queues == 0 {
        return Err(Failure::Usage(
            "a topic needs at least one read and one write queue".into(),
        ));
    }
    let admin = Admin::start(g)?;
    let mut config = TopicConfig::new(args.topic.as_str());
    config.read_queue_nums = args.read_queues;
    config.write_queue_nums = args.write_queues;
    config.perm = args.perm;
    config.order = args.order;
    let written = match (&args.broker, &args.cluster) {
        (Some(addr), _) => {
            admin
                .create_and_update_topic_config(addr, &config)
                .map_err(|e| Failure::from_error(&format!("create topic on {addr}"), &e))?;
            vec![addr.clone()]
        }
        (None, cluster) => {
            let cluster = match cluster {
                Some(c) => c.clone(),
                None => only_cluster(&admin)?,
            };
            let addrs = admin
                .create_topic_on_cluster(&cluster, &config)
                .map_err(|e| {
                    Failure::from_error(&format!("create topic on cluster {cluster}"), &e)
                })?;
            if addrs.is_empty() {
                return Err(Failure::NotFound(format!(
                    "cluster {cluster} has no master broker"
                )));
            }
            addrs
        }
    };
    if g.json {
        output::print_json(&json!({
            "topic": config.topic_name,
            "brokers": written,
            "read_queue_nums": config.read_queue_nums,
            "write_queue_nums": config.write_queue_nums,
            "perm": config.perm,
            "order": config.order,
        }));
        return Ok(());
    }
    let mut text = String::new();
    for addr in &written {
        text.push_str(&format!("create topic to {addr} success.\n"));
    }
    output::emit(&text);
    output::print_fields(&[
        ("Topic", config.topic_name.clone()),
        ("Read Queues", config.read_queue_nums.to_string()),
        ("Write Queues", config.write_queue_nums.to_string()),
        ("Perm", perm_text(i64::from(config.perm))),
        ("Order", config.order.to_string()),
    ]);
    Ok(())
}

/// The cluster's name when the name server knows exactly one.
fn only_cluster(admin: &Admin) -> Result<String, Failure> {
    let info = admin
        .examine_broker_cluster_info()
        .map_err(|e| Failure::from_error("cluster info", &e))?;
    let mut names = info.cluster_addr_table.keys();
    match (names.next(), names.next()) {
        (Some(one), None) => Ok(one.clone()),
        (None, _) => Err(Failure::NotFound("the name server knows no cluster".into())),
        (Some(_), Some(_)) => Err(Failure::Usage(format!(
            "several clusters ({}): name one with -c, or a broker with -b",
            info.cluster_addr_table
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn route(g: &Global, args: RouteArgs) -> Outcome {
    let admin = Admin::start(g)?;
    let route = admin
        .examine_topic_route_info(&args.topic)
        .map_err(|e| Failure::from_error(&format!("route of topic {}", args.topic), &e))?;
    if g.json {
        // The name server's own JSON shape, as mqadmin topicRoute prints it.
        output::print_json(&serde_json::to_value(&route).unwrap_or_default());
        return Ok(());
    }
    let mut queues = Table::new(vec![
        Col::name("#Broker Name"),
        Col::num("#Read Queues"),
        Col::num("#Write Queues"),
        Col::text("#Perm"),
    ]);
    let mut qds = route.queue_datas.clone();
    qds.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
    for qd in &qds {
        queues.row(vec![
            qd.broker_name.clone(),
            qd.read_queue_nums.to_string(),
            qd.write_queue_nums.to_string(),
            perm_text(i64::from(qd.perm)),
        ]);
    }
    queues.print();
    output::emit("\n");
    brokers_table(route.broker_datas.iter()).print();
    Ok(())
}

/// mqadmin clusterList's first columns: cluster, broker name, broker id, address.
pub(crate) fn brokers_table<'a>(brokers: impl Iterator<Item = &'a BrokerData>) -> Table {
    let mut table = Table::new(vec![
        Col::name("#Cluster Name"),
        Col::name("#Broker Name"),
        Col::num("#BID"),
        Col::text("#Addr"),
    ]);
    let mut brokers: Vec<&BrokerData> = brokers.collect();
    brokers.sort_by(|a, b| (&a.cluster, &a.broker_name).cmp(&(&b.cluster, &b.broker_name)));
    for bd in brokers {
        for (id, addr) in &bd.broker_addrs {
            table.row(vec![
                bd.cluster.clone(),
                bd.broker_name.clone(),
                id.to_string(),
                addr.clone(),
            ]);
        }
    }
    table
}

fn list(g: &Global) -> Outcome {
    let admin = Admin::start(g)?;
    let mut topics = admin
        .fetch_all_topic_list()
        .map_err(|e| Failure::from_error("topic list", &e))?;
    topics.sort();
    if g.json {
        output::print_json(&json!({ "topics": topics }));
    } else {
        let mut text = topics.join("\n");
        text.push('\n');
        output::emit(&text);
    }
    Ok(())
}
