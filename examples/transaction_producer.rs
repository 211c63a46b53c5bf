//! Sends messages in transactions and answers the broker's transaction checks.
//!
//! ```text
//! cargo run --example transaction_producer -- --namesrv 127.0.0.1:9876 --topic T [--count 4]
//! ```
//!
//! Message `i` commits at once when `i % 3 == 0`, rolls back when `i % 3 == 1`, and is left
//! unknown when `i % 3 == 2`: the broker then asks the producer (a transaction check, after its
//! `transactionTimeout`, every `transactionCheckInterval`; rocketmq-rust's defaults are 6 s and
//! 30 s), and the check commits it. The example waits for those checks (up to 2 minutes), then
//! prints `checked N, done`. Consumers of `T` see the committed messages only.

use std::any::Any;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rocketmq_sync::{LocalTransactionState, Message, MessageExt, TransactionMQProducer};

fn main() -> ExitCode {
    let mut namesrv = std::env::var("NAMESRV_ADDR").unwrap_or_default();
    let mut topic = String::new();
    let mut count = 4u32;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        match flag.as_str() {
            "--namesrv" => namesrv = value,
            "--topic" => topic = value,
            "--count" => count = value.parse().unwrap_or(0),
            _ => {
                eprintln!("unknown argument {flag}");
                return ExitCode::from(2);
            }
        }
    }
    if namesrv.is_empty() || topic.is_empty() || count == 0 {
        eprintln!("usage: transaction_producer --namesrv ADDR --topic T [--count N]");
        return ExitCode::from(2);
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
    let (checked_tx, checked_rx) = crossbeam_channel::unbounded();
    let producer = TransactionMQProducer::builder("example_transaction_group")
        .namesrv_addr(namesrv)
        .transaction_listener_fn(
            // The local transaction: `arg` is what send_message_in_transaction was given.
            |msg: &Message, arg: &dyn Any| {
                let i = *arg.downcast_ref::<u32>().expect("the example passes a u32");
                println!("execute {} ({:?})", i, msg.property("UNIQ_KEY"));
                match i % 3 {
                    0 => LocalTransactionState::CommitMessage,
                    1 => LocalTransactionState::RollbackMessage,
                    _ => LocalTransactionState::Unknow,
                }
            },
            // The broker's question about a message left unknown.
            move |msg: &MessageExt| {
                println!("check {} -> commit", String::from_utf8_lossy(msg.body()));
                let _ = checked_tx.send(());
                LocalTransactionState::CommitMessage
            },
        )
        .build()?;
    producer.start()?;
    let mut unknown = 0;
    for i in 0..count {
        let msg = Message::new(topic, format!("transaction {i}"));
        let result = producer.send_message_in_transaction(&msg, &i)?;
        println!(
            "sent {} -> {:?}, {}",
            result.msg_id(),
            result.send_status(),
            result.local_transaction_state()
        );
        if result.local_transaction_state() == LocalTransactionState::Unknow {
            unknown += 1;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut checked = 0;
    while checked < unknown && checked_rx.recv_deadline(deadline).is_ok() {
        checked += 1;
    }
    println!("checked {checked}, done");
    producer.shutdown(Duration::from_secs(5))
}
