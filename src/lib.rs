//! A synchronous Apache RocketMQ client: plain OS threads, one mio event loop and thread pools,
//! no async runtime.
//!
//! ```no_run
//! use std::time::Duration;
//! use rocketmq_sync::consumer::{ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, DefaultMQPushConsumer};
//! use rocketmq_sync::{DefaultMQProducer, Message, MessageExt};
//!
//! let producer = DefaultMQProducer::builder("pg").namesrv_addr("127.0.0.1:9876").build()?;
//! producer.start()?;
//! producer.send(&Message::new("TopicTest", "hello").with_tags("TagA"))?;
//!
//! let consumer = DefaultMQPushConsumer::builder("cg")
//!     .namesrv_addr("127.0.0.1:9876")
//!     .subscribe("TopicTest", "TagA")
//!     .register_message_listener_concurrently(|msgs: &[MessageExt], _: &mut ConsumeConcurrentlyContext| {
//!         println!("{} message(s)", msgs.len());
//!         ConsumeConcurrentlyStatus::ConsumeSuccess
//!     })
//!     .build()?;
//! consumer.start()?;
//! consumer.shutdown(Duration::from_secs(10))?;
//! producer.shutdown(Duration::from_secs(5))?;
//! # Ok::<(), rocketmq_sync::Error>(())
//! ```
//!
//! # Threads
//!
//! One client instance per client id (by default one per process) owns `rmq-io` (every
//! socket), `rmq-sched` (periodic tasks), a small `rmq-cb-N` callback pool and, once a consumer
//! exists, `rmq-pull` and `rmq-rebal`. Each consumer adds its consume pool `rmq-cons-N`. The
//! count does not grow with the number of queues.
//!
//! # Where the Java names went
//!
//! | Java | Rust |
//! |---|---|
//! | `DefaultMQProducer` | [`DefaultMQProducer`] |
//! | `DefaultMQPushConsumer` | [`consumer::DefaultMQPushConsumer`] |
//! | `MessageListenerConcurrently` | [`consumer::MessageListenerConcurrently`] or a closure |
//! | `Message`, `MessageExt`, `MessageQueue` | [`Message`], [`MessageExt`], [`MessageQueue`] |
//! | `SendResult`, `SendStatus`, `SendCallback` | [`SendResult`], [`SendStatus`], a closure |
//! | `MessageQueueSelector`, `SelectMessageQueueByHash` | [`producer::MessageQueueSelector`], [`producer::SelectMessageQueueByHash`] |
//! | `AllocateMessageQueueStrategy` | [`consumer::allocate`] |
//! | `RemotingCommand`, `RequestCode`, `ResponseCode` | [`remoting::protocol`] |
//! | `NettyRemotingClient` | [`remoting::RemotingClient`] |
//! | `ClientConfig` | [`client::ClientConfig`] |
//! | `ServiceState` | [`ServiceState`] |
//! | `MQClientException`, `MQBrokerException`, `Remoting*Exception` | variants of [`Error`] |
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

pub mod client;
pub mod common;
pub mod consumer;
mod error;
// The service threads and the pool back the push consumer, which is being wired in.
#[allow(dead_code)]
pub(crate) mod executor;
pub mod producer;
pub mod remoting;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;

pub use common::{Message, MessageExt, MessageQueue, ServiceState, TopicRouteData};
pub use error::{ClientErrorCode, CodecError, Error, Result};
pub use producer::{DefaultMQProducer, SendResult, SendStatus};
