//! Sends ten messages with a property `n` (0 to 9) and consumes those an SQL92 expression
//! selects, evaluated by the broker.
//!
//! ```text
//! cargo run --example sql92_consumer -- --namesrv 127.0.0.1:9876 --topic T [--sql "n >= 5"]
//! ```
//!
//! The broker must have property filtering on (`enablePropertyFilter = true`; with
//! `scripts/broker.sh start --broker-set enablePropertyFilter=true`). A broker without it refuses
//! the subscription, and the example prints that error and fails. It prints each message it
//! consumes for 20 seconds. (rocketmq-rust 1.0.0 accepts the expression but evaluates it without
//! the message properties, so an expression on `n` selects nothing there; `TRUE` selects all.)

use std::process::ExitCode;
use std::time::Duration;

use rocketmq_sync::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, ConsumeFromWhere, DefaultMQProducer,
    DefaultMQPushConsumer, Message, MessageExt,
};

fn main() -> ExitCode {
    let mut namesrv = std::env::var("NAMESRV_ADDR").unwrap_or_default();
    let mut topic = String::new();
    let mut sql = "n >= 5".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        match flag.as_str() {
            "--namesrv" => namesrv = value,
            "--topic" => topic = value,
            "--sql" => sql = value,
            _ => {
                eprintln!("unknown argument {flag}");
                return ExitCode::from(2);
            }
        }
    }
    if namesrv.is_empty() || topic.is_empty() {
        eprintln!("usage: sql92_consumer --namesrv ADDR --topic T [--sql EXPR]");
        return ExitCode::from(2);
    }
    match run(&namesrv, &topic, &sql) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(namesrv: &str, topic: &str, sql: &str) -> rocketmq_sync::Result<()> {
    let producer = DefaultMQProducer::builder("example_sql92_producer")
        .namesrv_addr(namesrv)
        .build()?;
    producer.start()?;
    for n in 0..10 {
        let mut msg = Message::new(topic, format!("message {n}"));
        msg.put_user_property("n", n.to_string())?;
        producer.send(&msg)?;
    }
    producer.shutdown(Duration::from_secs(5))?;

    let consumer = DefaultMQPushConsumer::builder("example_sql92_consumer")
        .namesrv_addr(namesrv)
        .subscribe_sql92(topic, sql)
        .consume_from_where(ConsumeFromWhere::FirstOffset)
        .register_message_listener_concurrently(
            |msgs: &[MessageExt], _: &mut ConsumeConcurrentlyContext| {
                for m in msgs {
                    println!(
                        "{} (n = {:?})",
                        String::from_utf8_lossy(m.body()),
                        m.property("n")
                    );
                }
                ConsumeConcurrentlyStatus::ConsumeSuccess
            },
        )
        .build()?;
    // A broker without property filtering refuses here, with its reason.
    consumer.start()?;
    println!("consuming {topic} where {sql} for 20 s");
    std::thread::sleep(Duration::from_secs(20));
    consumer.shutdown(Duration::from_secs(5))
}
