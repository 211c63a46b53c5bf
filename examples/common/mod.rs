//! What the consumer examples share: their flags, the builder those flags configure, and how
//! a run starts and reports.
//!
//! Not an example itself: Cargo only builds `examples/*.rs` and `examples/*/main.rs`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use rocketmq_sync::{
    ConsumeFromWhere, DefaultMQPushConsumer, DefaultMQPushConsumerBuilder, MessageModel,
};

const FLAGS: &str = "--namesrv ADDR --topic T --group G --count N [--from-first] [--broadcast] [--threads MIN:MAX] [--batch N] [--tag EXPR] [--timeout-secs S]";

pub struct Args {
    pub namesrv: String,
    pub topic: String,
    pub group: String,
    pub count: u64,
    pub from_first: bool,
    pub broadcast: bool,
    pub threads: (usize, usize),
    pub batch: usize,
    pub tag: String,
    pub timeout: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        namesrv: std::env::var("NAMESRV_ADDR").unwrap_or_default(),
        topic: String::new(),
        group: String::new(),
        count: 0,
        from_first: false,
        broadcast: false,
        // Java's consumeThreadMin / consumeThreadMax.
        threads: (20, 20),
        // Java's consumeMessageBatchMaxSize.
        batch: 1,
        tag: "*".to_owned(),
        timeout: Duration::from_secs(300),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--namesrv" => a.namesrv = value()?,
            "--topic" => a.topic = value()?,
            "--group" => a.group = value()?,
            "--count" => a.count = value()?.parse().map_err(|e| format!("--count: {e}"))?,
            "--from-first" => a.from_first = true,
            "--broadcast" => a.broadcast = true,
            "--threads" => {
                let v = value()?;
                let (min, max) = v
                    .split_once(':')
                    .ok_or(format!("--threads must be MIN:MAX, not {v}"))?;
                a.threads = (
                    min.parse().map_err(|e| format!("--threads MIN: {e}"))?,
                    max.parse().map_err(|e| format!("--threads MAX: {e}"))?,
                );
            }
            "--batch" => a.batch = value()?.parse().map_err(|e| format!("--batch: {e}"))?,
            "--tag" => a.tag = value()?,
            "--timeout-secs" => {
                let secs: u64 = value()?
                    .parse()
                    .map_err(|e| format!("--timeout-secs: {e}"))?;
                a.timeout = Duration::from_secs(secs);
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.namesrv.is_empty() || a.topic.is_empty() || a.group.is_empty() || a.count == 0 {
        return Err(
            "--namesrv (or NAMESRV_ADDR), --topic, --group and --count are required".to_owned(),
        );
    }
    if a.threads.0 == 0 || a.threads.0 > a.threads.1 {
        return Err(format!(
            "--threads needs 1 <= MIN <= MAX, got {}:{}",
            a.threads.0, a.threads.1
        ));
    }
    Ok(a)
}

impl Args {
    /// A consumer builder with every setting the flags give; the caller adds the listener.
    pub fn consumer_builder(&self) -> DefaultMQPushConsumerBuilder {
        DefaultMQPushConsumer::builder(self.group.clone())
            .namesrv_addr(self.namesrv.clone())
            .subscribe(self.topic.clone(), self.tag.clone())
            .consume_from_where(if self.from_first {
                ConsumeFromWhere::FirstOffset
            } else {
                ConsumeFromWhere::LastOffset
            })
            .message_model(if self.broadcast {
                MessageModel::Broadcasting
            } else {
                MessageModel::Clustering
            })
            .consume_threads(self.threads.0, self.threads.1)
            .consume_message_batch_max_size(self.batch)
    }

    /// The throughput line on stderr: since start, and since the first message.
    pub fn report(&self, started: Instant, first: Option<Instant>, finished: Instant, extra: &str) {
        let elapsed = finished - started;
        let consuming = finished - first.unwrap_or(started);
        eprintln!(
            "{} messages in {:.2?} since start ({:.0} msg/s); {:.2?} since the first message ({:.0} msg/s){extra}",
            self.count,
            elapsed,
            self.count as f64 / elapsed.as_secs_f64(),
            consuming,
            self.count as f64 / consuming.as_secs_f64().max(1e-9),
        );
    }

    /// The line on stderr when `count` messages did not arrive in time.
    pub fn report_timeout(&self, delivered: u64) {
        eprintln!(
            "timed out after {:?}: {delivered} of {} messages consumed from {} (group {})",
            self.timeout, self.count, self.topic, self.group
        );
    }
}

/// Parses the flags, runs `run` (Ok(true) when the run succeeded) and turns the outcome into
/// the exit code: 2 for bad flags, 1 for a failed run or an error.
pub fn main(name: &str, run: impl FnOnce(&Args) -> rocketmq_sync::Result<bool>) -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("usage: {name} {FLAGS}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
