//! `rmq`: look at and move messages of a RocketMQ cluster from a shell, without a JVM.
//!
//! ```text
//! rmq send -t T [--tags TAG] [--keys K] [BODY...]     (stdin lines when no BODY)
//! rmq consume -t T [--poll] [--print] [--from first|last] [--count N] [--idle SECS]
//! rmq topic create|route|list ...
//! rmq progress GROUP
//! rmq message query -t T -k KEY
//! rmq message get MSGID [-t T]
//! rmq cluster
//! ```
//!
//! Java `mqadmin`'s names are top-level aliases with its short flags (`updateTopic`,
//! `topicRoute`, `topicList`, `consumerProgress`, `queryMsgByKey`, `queryMsgById`,
//! `clusterList`), and the output uses mqadmin's column headings where it has an equivalent.
//! Every command takes `--json` (one JSON document on stdout; `consume` writes one object per
//! line), `-n`/`NAMESRV_ADDR` for the name server, and exits with the codes in [`Failure`].

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod commands;
mod failure;
mod output;

use commands::{cluster, consume, message, progress, send, topic};

pub(crate) use failure::{Failure, Outcome};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  runtime error: the broker or name server refused or failed the request
  2  usage error: bad flags or arguments (a malformed message id included)
  3  not found: no such topic, message or consumer group progress
  4  unreachable: no name server or broker answered (connect failure, timeout)
  5  incomplete: `consume --count N` stopped at --idle before N messages";

const ALIASES: &str = "\
Java mqadmin names (same short flags):
  updateTopic       = topic create      consumerProgress  = progress
  topicRoute        = topic route       queryMsgByKey     = message query
  topicList         = topic list        queryMsgById      = message get
  clusterList       = cluster";

#[derive(Parser)]
#[command(
    name = "rmq",
    version,
    about = "Send, consume and look at messages, topics and consumer groups of a RocketMQ \
             cluster (Java mqadmin's commands, without a JVM)"
)]
#[command(after_help = format!("{ALIASES}\n\n{EXIT_CODES}"))]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// The flags every command takes.
#[derive(Args, Clone, Debug)]
pub(crate) struct Global {
    /// Name server address(es), `host:port[;host:port]`.
    #[arg(short = 'n', long = "namesrv", env = "NAMESRV_ADDR", global = true)]
    pub(crate) namesrv: Option<String>,
    /// Print one JSON document for scripts instead of tables (`consume`: one object per line).
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Time limit of each request to a name server or broker, in seconds.
    #[arg(long, global = true, default_value_t = 5, value_name = "SECS")]
    pub(crate) timeout: u64,
}

impl Global {
    /// The name server address, or a usage error naming both ways to give it.
    pub(crate) fn namesrv(&self) -> Result<&str, Failure> {
        match self.namesrv.as_deref().map(str::trim) {
            Some(addr) if !addr.is_empty() => Ok(addr),
            _ => Err(Failure::Usage(
                "no name server address: give -n HOST:PORT or set NAMESRV_ADDR".to_owned(),
            )),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Send messages, from arguments or stdin lines.
    Send(send::SendArgs),
    /// Consume messages (push consumer, or a lite pull consumer with --poll).
    Consume(consume::ConsumeArgs),
    /// Create, show and list topics.
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// A consumer group's progress per queue: broker offset, consumer offset, lag.
    Progress(progress::ProgressArgs),
    /// Find messages by key, or fetch one by its id.
    #[command(subcommand)]
    Message(message::MessageCommand),
    /// The clusters, their brokers and addresses.
    Cluster(cluster::ClusterArgs),

    /// mqadmin's name for `topic create`.
    #[command(name = "updateTopic", hide = true)]
    UpdateTopic(topic::CreateArgs),
    /// mqadmin's name for `topic route`.
    #[command(name = "topicRoute", hide = true)]
    TopicRoute(topic::RouteArgs),
    /// mqadmin's name for `topic list`.
    #[command(name = "topicList", hide = true)]
    TopicList(topic::ListArgs),
    /// mqadmin's name for `progress`.
    #[command(name = "consumerProgress", hide = true)]
    ConsumerProgress(progress::ProgressArgs),
    /// mqadmin's name for `message query`.
    #[command(name = "queryMsgByKey", hide = true)]
    QueryMsgByKey(message::QueryArgs),
    /// mqadmin's name for `message get`.
    #[command(name = "queryMsgById", hide = true)]
    QueryMsgById(message::GetArgs),
    /// mqadmin's name for `cluster`.
    #[command(name = "clusterList", hide = true)]
    ClusterList(cluster::ClusterArgs),
}

fn run(cli: Cli) -> Outcome {
    let g = &cli.global;
    match cli.command {
        Command::Send(args) => send::run(g, args),
        Command::Consume(args) => consume::run(g, args),
        Command::Topic(cmd) => topic::run(g, cmd),
        Command::UpdateTopic(args) => topic::run(g, topic::TopicCommand::Create(args)),
        Command::TopicRoute(args) => topic::run(g, topic::TopicCommand::Route(args)),
        Command::TopicList(args) => topic::run(g, topic::TopicCommand::List(args)),
        Command::Progress(args) | Command::ConsumerProgress(args) => progress::run(g, args),
        Command::Message(cmd) => message::run(g, cmd),
        Command::QueryMsgByKey(args) => message::run(g, message::MessageCommand::Query(args)),
        Command::QueryMsgById(args) => message::run(g, message::MessageCommand::Get(args)),
        Command::Cluster(args) | Command::ClusterList(args) => cluster::run(g, args),
    }
}

fn main() -> ExitCode {
    // clap prints usage errors itself and exits with 2.
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            output::status(&format!("rmq: {}", failure.one_line()));
            ExitCode::from(failure.code())
        }
    }
}
