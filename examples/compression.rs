//! Bodies compressed with each of Java 5's compression types (`compressType`: ZLIB, the
//! default, LZ4 and ZSTD), then consumed: the consumer reads the type from the message's sys
//! flag and decompresses.
//!
//! ```text
//! cargo run --example compression -- --namesrv 127.0.0.1:9876 --topic T
//! ```
//!
//! Java 4.x consumers read only ZLIB; use LZ4 or ZSTD when every consumer is this crate or a
//! Java 5.x client.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use rocketmq_sync::{
    CompressionType, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, ConsumeFromWhere,
    DefaultMQProducer, DefaultMQPushConsumer, Message, MessageExt,
};

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
                eprintln!("usage: compression --namesrv ADDR --topic T");
                return ExitCode::from(2);
            }
        }
    }
    if namesrv.is_empty() || topic.is_empty() {
        eprintln!("usage: compression --namesrv ADDR (or NAMESRV_ADDR) --topic T");
        return ExitCode::from(2);
    }
    match run(&namesrv, &topic) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn body(kind: CompressionType) -> String {
    // 64 KiB of text that compresses well.
    format!("{} ", kind.as_java_str()).repeat(64 * 1024 / 5)
}

fn run(namesrv: &str, topic: &str) -> rocketmq_sync::Result<bool> {
    let kinds = [
        CompressionType::Zlib,
        CompressionType::Lz4,
        CompressionType::Zstd,
    ];
    for kind in kinds {
        let producer =
            DefaultMQProducer::builder(format!("example_compress_{}", kind.as_java_str()))
                .namesrv_addr(namesrv)
                .compress_type(kind)
                // Java's default threshold: bodies of 4 KiB and more are compressed.
                .compress_msg_body_over_howmuch(4096)
                .build()?;
        producer.start()?;
        let r = producer.send(&Message::new(topic, body(kind)).with_tags(kind.as_java_str()))?;
        println!("{} body sent as {}", kind.as_java_str(), r.msg_id());
        producer.shutdown(Duration::from_secs(5))?;
    }

    let (tx, rx) = crossbeam_channel::unbounded::<(String, usize, bool, i32)>();
    let consumer = DefaultMQPushConsumer::builder("example_compress_consumer")
        .namesrv_addr(namesrv)
        .subscribe(topic, "ZLIB || LZ4 || ZSTD")
        .consume_from_where(ConsumeFromWhere::FirstOffset)
        .register_message_listener_concurrently(
            move |msgs: &[MessageExt], _: &mut ConsumeConcurrentlyContext| {
                for m in msgs {
                    let tag = m.tags().unwrap_or("").to_owned();
                    let kind = match tag.as_str() {
                        "LZ4" => CompressionType::Lz4,
                        "ZSTD" => CompressionType::Zstd,
                        _ => CompressionType::Zlib,
                    };
                    let intact = m.body().as_ref() == body(kind).as_bytes();
                    let _ = tx.send((tag, m.body().len(), intact, m.sys_flag()));
                }
                ConsumeConcurrentlyStatus::ConsumeSuccess
            },
        )
        .build()?;
    consumer.start()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = 0;
    let mut all_intact = true;
    while seen < kinds.len() {
        let Ok((tag, len, intact, sys_flag)) = rx.recv_deadline(deadline) else {
            eprintln!("only {seen} of {} messages arrived", kinds.len());
            all_intact = false;
            break;
        };
        println!("consumed {tag}: {len} bytes after decompression, intact: {intact}, sys flag {sys_flag:#x}");
        all_intact &= intact;
        seen += 1;
    }
    consumer.shutdown(Duration::from_secs(5))?;
    Ok(all_intact)
}
