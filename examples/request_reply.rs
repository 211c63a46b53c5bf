//! Request-reply (Java `DefaultMQProducer.request`): a replier consumes the request topic and
//! answers each request with `create_reply_message`; a requester sends requests, one sync and
//! one async, and prints the replies.
//!
//! ```text
//! cargo run --example request_reply -- --namesrv 127.0.0.1:9876 --topic RequestTopic [--count 3]
//! ```
//!
//! Both sides run in this one process for the demonstration; in practice they are different
//! services. The topic is auto-created by the first request when the broker allows it.
//! The exit code is non-zero if a request got no reply.

use std::process::ExitCode;
use std::time::Duration;

use rocketmq_sync::{create_reply_message, ConsumeFromWhere, DefaultMQProducer, MessageExt};
use rocketmq_sync::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, DefaultMQPushConsumer, Message,
};

fn main() -> ExitCode {
    let mut namesrv = std::env::var("NAMESRV_ADDR").unwrap_or_default();
    let mut topic = String::from("RequestTopic");
    let mut count = 3u32;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        match flag.as_str() {
            "--namesrv" => namesrv = value,
            "--topic" => topic = value,
            "--count" => count = value.parse().unwrap_or(count),
            other => {
                eprintln!("unknown flag {other}");
                return ExitCode::FAILURE;
            }
        }
    }
    if namesrv.is_empty() {
        eprintln!("--namesrv (or NAMESRV_ADDR) is required");
        return ExitCode::FAILURE;
    }
    match run(&namesrv, &topic, count) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(namesrv: &str, topic: &str, count: u32) -> rocketmq_sync::Result<()> {
    // The replier: a consumer of the request topic and a producer for the replies.
    let reply_producer = DefaultMQProducer::builder("example_reply_producer")
        .namesrv_addr(namesrv)
        .build()?;
    reply_producer.start()?;
    let p = reply_producer.clone();
    let replier = DefaultMQPushConsumer::builder("example_replier")
        .namesrv_addr(namesrv)
        .subscribe(topic, "*")
        .consume_from_where(ConsumeFromWhere::LastOffset)
        .register_message_listener_concurrently(
            move |msgs: &[MessageExt], _: &mut ConsumeConcurrentlyContext| {
                for request in msgs {
                    let answer = format!("reply to '{}'", String::from_utf8_lossy(request.body()));
                    // A message that is not a request (no reply properties) is refused here.
                    match create_reply_message(request, answer).and_then(|r| p.send(&r)) {
                        Ok(_) => {}
                        Err(e) => eprintln!("cannot reply: {e}"),
                    }
                }
                ConsumeConcurrentlyStatus::ConsumeSuccess
            },
        )
        .build()?;
    replier.start()?;

    // The requester.
    let requester = DefaultMQProducer::builder("example_requester")
        .namesrv_addr(namesrv)
        .build()?;
    requester.start()?;
    let timeout = Duration::from_secs(10);
    let mut result = Ok(());
    for i in 0..count {
        match requester.request(&Message::new(topic, format!("request {i}")), timeout) {
            Ok(reply) => println!("sync: {}", String::from_utf8_lossy(reply.body())),
            Err(e) => {
                eprintln!("sync request {i}: {e}");
                result = Err(e);
            }
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    requester.request_async(
        &Message::new(topic, "async request"),
        timeout,
        move |r: rocketmq_sync::Result<MessageExt>| {
            let _ = tx.send(r);
        },
    )?;
    match rx.recv() {
        Ok(Ok(reply)) => println!("async: {}", String::from_utf8_lossy(reply.body())),
        Ok(Err(e)) => {
            eprintln!("async request: {e}");
            result = Err(e);
        }
        Err(_) => eprintln!("async request: the client shut down before it completed"),
    }

    requester.shutdown(Duration::from_secs(5))?;
    replier.shutdown(Duration::from_secs(10))?;
    reply_producer.shutdown(Duration::from_secs(5))?;
    result
}
