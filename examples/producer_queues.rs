//! The producer's Java-level sends: to a chosen queue and through a selector (sync, async and
//! one-way), batches with their list of ids, `fetch_publish_message_queues`, and a user
//! property with a reserved name refused at send time.
//!
//! ```text
//! cargo run --example producer_queues -- --namesrv 127.0.0.1:9876 --topic T
//! ```
//!
//! The topic must exist or the broker must auto-create topics. Exits non-zero if anything
//! the example expects does not happen.

use std::process::ExitCode;
use std::time::Duration;

use rocketmq_sync::{DefaultMQProducer, Message, MessageQueue, SelectMessageQueueByHash};

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
                eprintln!("usage: producer_queues --namesrv ADDR --topic T");
                return ExitCode::from(2);
            }
        }
    }
    if namesrv.is_empty() || topic.is_empty() {
        eprintln!("usage: producer_queues --namesrv ADDR (or NAMESRV_ADDR) --topic T");
        return ExitCode::from(2);
    }
    match run(&namesrv, &topic) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(namesrv: &str, topic: &str) -> rocketmq_sync::Result<()> {
    let producer = DefaultMQProducer::builder("example_queues_group")
        .namesrv_addr(namesrv)
        .build()?;
    producer.start()?;
    // A first send creates the topic when the broker auto-creates topics.
    producer.send(&Message::new(topic, "hello"))?;

    // Java: fetchPublishMessageQueues(topic).
    let queues = producer.fetch_publish_message_queues(topic)?;
    println!("{topic} has {} writable queues", queues.len());
    let first: &MessageQueue = &queues[0];

    // Java: send(msg, mq), send(msg, mq, callback), sendOneway(msg, mq).
    let r = producer.send_to_queue(&Message::new(topic, "sync to a queue"), first)?;
    println!(
        "sync to {} -> offset {}",
        r.message_queue(),
        r.queue_offset()
    );
    let (tx, rx) = crossbeam_channel::bounded(1);
    producer.send_async_to_queue(&Message::new(topic, "async to a queue"), first, move |r| {
        let _ = tx.send(r);
    })?;
    let r = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the callback runs once")?;
    println!(
        "async to {} -> offset {}",
        r.message_queue(),
        r.queue_offset()
    );
    producer.send_oneway_to_queue(&Message::new(topic, "one-way to a queue"), first)?;

    // Java: send(msg, selector, arg[, callback]), sendOneway(msg, selector, arg). Every
    // message of one order goes to one queue.
    let order_id = "order-42";
    let r = producer.send_with_selector(
        &Message::new(topic, "created").with_keys(order_id),
        &SelectMessageQueueByHash,
        order_id,
    )?;
    println!("order {order_id} lives on {}", r.message_queue());
    let (tx, rx) = crossbeam_channel::bounded(1);
    producer.send_async_with_selector(
        &Message::new(topic, "paid").with_keys(order_id),
        &SelectMessageQueueByHash,
        order_id,
        move |r| {
            let _ = tx.send(r);
        },
    )?;
    let paid = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("callback")?;
    assert_eq!(
        paid.message_queue(),
        r.message_queue(),
        "same key, same queue"
    );
    producer.send_oneway_with_selector(
        &Message::new(topic, "shipped").with_keys(order_id),
        &SelectMessageQueueByHash,
        order_id,
    )?;

    // Java: send(Collection<Message>, mq). The result lists every message's id.
    let batch: Vec<Message> = (0..3)
        .map(|i| Message::new(topic, format!("batch {i}")))
        .collect();
    let r = producer.send_batch_to_queue(&batch, first)?;
    for (i, id) in r.msg_ids().iter().enumerate() {
        println!(
            "batch message {i}: id {id} at offset {}",
            r.queue_offset() + i as i64
        );
    }

    // A user property may not use a name the system reserves: the message is refused when
    // it is sent, and nothing goes out.
    let bad = Message::new(topic, "x").with_user_property("TAGS", "mine");
    match producer.send(&bad) {
        Err(e) if e.is_message_illegal() => println!("refused as expected: {e}"),
        other => panic!("a reserved property name was not refused: {other:?}"),
    }

    producer.shutdown(Duration::from_secs(5))
}
