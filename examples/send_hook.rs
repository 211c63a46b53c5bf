//! A `SendMessageHook` (Java `SendMessageHook`) that counts every send attempt by mode and
//! outcome, registered on the producer builder. A hook that panics is logged and skipped; the
//! send goes on.
//!
//! ```text
//! cargo run --example send_hook -- --namesrv 127.0.0.1:9876 --topic T
//! ```

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rocketmq_sync::{
    CommunicationMode, DefaultMQProducer, Message, SendMessageContext, SendMessageHook,
};

/// Counts attempts, and logs each one's queue and outcome.
#[derive(Default)]
struct Counting {
    before: AtomicUsize,
    ok: AtomicUsize,
    failed: AtomicUsize,
    oneway: AtomicUsize,
}

/// The hook the producer owns; the counts are shared with `main`.
struct CountingHook(Arc<Counting>);

impl SendMessageHook for CountingHook {
    fn hook_name(&self) -> &str {
        "counting"
    }

    fn send_message_before(&self, ctx: &SendMessageContext<'_>) {
        self.0.before.fetch_add(1, Ordering::Relaxed);
        println!(
            "before: {} message(s) of {} to {} at {} ({:?})",
            ctx.messages.len(),
            ctx.producer_group,
            ctx.message_queue,
            ctx.broker_addr,
            ctx.communication_mode
        );
    }

    fn send_message_after(&self, ctx: &SendMessageContext<'_>) {
        match (ctx.send_result, ctx.exception) {
            (Some(r), _) => {
                self.0.ok.fetch_add(1, Ordering::Relaxed);
                println!(
                    "after: stored as {} at offset {}",
                    r.msg_id(),
                    r.queue_offset()
                );
            }
            (None, Some(e)) => {
                self.0.failed.fetch_add(1, Ordering::Relaxed);
                println!("after: failed: {e}");
            }
            (None, None) => {
                // One-way: nothing comes back.
                assert_eq!(ctx.communication_mode, CommunicationMode::Oneway);
                self.0.oneway.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A broken hook: the producer logs its panics and goes on.
struct Broken;

impl SendMessageHook for Broken {
    fn hook_name(&self) -> &str {
        "broken"
    }
    fn send_message_before(&self, _: &SendMessageContext<'_>) {
        panic!("this hook is broken");
    }
    fn send_message_after(&self, _: &SendMessageContext<'_>) {}
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let mut namesrv = std::env::var("NAMESRV_ADDR").unwrap_or_default();
    let mut topic = String::new();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--namesrv", Some(v)) => namesrv = v,
            ("--topic", Some(v)) => topic = v,
            _ => {
                eprintln!("usage: send_hook --namesrv ADDR --topic T");
                return ExitCode::from(2);
            }
        }
    }
    if namesrv.is_empty() || topic.is_empty() {
        eprintln!("usage: send_hook --namesrv ADDR (or NAMESRV_ADDR) --topic T");
        return ExitCode::from(2);
    }
    let counts = Arc::new(Counting::default());
    match run(&namesrv, &topic, counts.clone()) {
        Ok(()) => {
            println!(
                "{} attempts: {} stored, {} failed, {} one-way",
                counts.before.load(Ordering::Relaxed),
                counts.ok.load(Ordering::Relaxed),
                counts.failed.load(Ordering::Relaxed),
                counts.oneway.load(Ordering::Relaxed)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(namesrv: &str, topic: &str, counts: Arc<Counting>) -> rocketmq_sync::Result<()> {
    let producer = DefaultMQProducer::builder("example_hook_group")
        .namesrv_addr(namesrv)
        .send_message_hook(Broken)
        .send_message_hook(CountingHook(counts))
        .build()?;
    producer.start()?;
    producer.send(&Message::new(topic, "sync"))?;
    let (tx, rx) = crossbeam_channel::bounded(1);
    producer.send_async(&Message::new(topic, "async"), move |r| {
        let _ = tx.send(r);
    })?;
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the callback runs once")?;
    producer.send_oneway(&Message::new(topic, "one-way"))?;
    producer.send_batch(&[Message::new(topic, "b0"), Message::new(topic, "b1")])?;
    producer.shutdown(Duration::from_secs(5))
}
