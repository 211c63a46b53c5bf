//! Sends a message at a delay level and consumes it, printing how long it took.
//!
//! ```text
//! cargo run --example delay_message -- --namesrv 127.0.0.1:9876 --topic T [--level 2]
//! ```
//!
//! Levels follow the broker's `messageDelayLevel` (default `1s 5s 10s 30s 1m 2m ...`: level 1
//! is 1 s, level 2 is 5 s, level 3 is 10 s). Prints `consumed after ...` and exits, or fails
//! after 5 minutes.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use rocketmq_sync::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, DefaultMQProducer,
    DefaultMQPushConsumer, Message, MessageExt,
};

fn main() -> ExitCode {
    let mut namesrv = std::env::var("NAMESRV_ADDR").unwrap_or_default();
    let mut topic = String::new();
    let mut level = 2;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        match flag.as_str() {
            "--namesrv" => namesrv = value,
            "--topic" => topic = value,
            "--level" => level = value.parse().unwrap_or(0),
            _ => {
                eprintln!("unknown argument {flag}");
                return ExitCode::from(2);
            }
        }
    }
    if namesrv.is_empty() || topic.is_empty() || !(1..=18).contains(&level) {
        eprintln!("usage: delay_message --namesrv ADDR --topic T [--level 1..18]");
        return ExitCode::from(2);
    }
    match run(&namesrv, &topic, level) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(namesrv: &str, topic: &str, level: i32) -> rocketmq_sync::Result<()> {
    let body = format!(
        "delayed at level {level}, {:?}",
        std::time::SystemTime::now()
    );
    let (tx, rx) = crossbeam_channel::unbounded();
    let expected = body.clone();
    let consumer = DefaultMQPushConsumer::builder("example_delay_consumer")
        .namesrv_addr(namesrv)
        .subscribe(topic, "*")
        .register_message_listener_concurrently(
            move |msgs: &[MessageExt], _: &mut ConsumeConcurrentlyContext| {
                for m in msgs {
                    if m.body()[..] == *expected.as_bytes() {
                        let _ = tx.send(Instant::now());
                    }
                }
                ConsumeConcurrentlyStatus::ConsumeSuccess
            },
        )
        .build()?;
    consumer.start()?;
    let producer = DefaultMQProducer::builder("example_delay_producer")
        .namesrv_addr(namesrv)
        .build()?;
    producer.start()?;
    let sent = Instant::now();
    let result = producer.send(&Message::new(topic, body).with_delay_level(level))?;
    println!("sent {} at delay level {level}", result.msg_id());
    match rx.recv_timeout(Duration::from_secs(300)) {
        Ok(at) => println!("consumed after {:?}", at.duration_since(sent)),
        Err(_) => eprintln!("not consumed within 5 minutes"),
    }
    producer.shutdown(Duration::from_secs(5))?;
    consumer.shutdown(Duration::from_secs(5))
}
