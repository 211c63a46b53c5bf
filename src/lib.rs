//! A synchronous Apache RocketMQ client: plain OS threads, one mio event loop and thread pools,
//! no async runtime.
//!
//! ```no_run
//! use std::time::Duration;
//! use rocketmq_sync::{ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, DefaultMQPushConsumer};
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
//! Everything a user touches is at the crate root; the modules behind it are private.
//!
//! | Java | Rust |
//! |---|---|
//! | `DefaultMQProducer` / `DefaultMQProducerImpl` | [`DefaultMQProducer`], built by [`DefaultMQProducerBuilder`] |
//! | `DefaultMQPushConsumer` / `DefaultMQPushConsumerImpl` | [`DefaultMQPushConsumer`], built by [`DefaultMQPushConsumerBuilder`] |
//! | `DefaultLitePullConsumer` / `DefaultLitePullConsumerImpl`, `MessageQueueListener`, `TopicMessageQueueChangeListener` | [`DefaultLitePullConsumer`], built by [`DefaultLitePullConsumerBuilder`]; [`MessageQueueListener`], [`TopicMessageQueueChangeListener`] (or closures) |
//! | `ClientConfig` | [`ClientConfig`], built by [`ClientConfigBuilder`] |
//! | `ClientConfig.namespace`, `NamespaceUtil.wrapNamespace` / `withoutNamespace` | [`ClientConfigBuilder::namespace`] and `namespace` on every client builder; the wrapping is internal |
//! | `Message`, `MessageExt`, `MessageQueue`, `MessageConst` | [`Message`], [`MessageExt`], [`MessageQueue`], [`MessageConst`] ([`Properties`]) |
//! | `SendResult`, `SendStatus`, `SendCallback` | [`SendResult`], [`SendStatus`], [`SendCallback`] (a closure) |
//! | `DefaultMQProducer.request` (request-reply), `RequestCallback`, `MessageUtil.createReplyMessage` | [`DefaultMQProducer::request`], [`request_async`](DefaultMQProducer::request_async), [`request_to_queue`](DefaultMQProducer::request_to_queue), [`request_with_selector`](DefaultMQProducer::request_with_selector), [`request_async_to_queue`](DefaultMQProducer::request_async_to_queue), [`request_async_with_selector`](DefaultMQProducer::request_async_with_selector); [`RequestCallback`] (or a closure); [`create_reply_message`] |
//! | `send(msg, mq[, callback])`, `sendOneway(msg, mq)`, `send(msg, selector, arg[, callback])`, `sendOneway(msg, selector, arg)` | [`DefaultMQProducer::send_to_queue`], [`send_async_to_queue`](DefaultMQProducer::send_async_to_queue), [`send_oneway_to_queue`](DefaultMQProducer::send_oneway_to_queue), [`send_with_selector`](DefaultMQProducer::send_with_selector), [`send_async_with_selector`](DefaultMQProducer::send_async_with_selector), [`send_oneway_with_selector`](DefaultMQProducer::send_oneway_with_selector) |
//! | `send(Collection<Message>[, mq][, callback])`, `SendResult.getMsgId()` of a batch | [`DefaultMQProducer::send_batch`], [`send_batch_to_queue`](DefaultMQProducer::send_batch_to_queue), [`send_batch_async`](DefaultMQProducer::send_batch_async), [`send_batch_async_to_queue`](DefaultMQProducer::send_batch_async_to_queue); [`SendResult::msg_ids`] lists the ids |
//! | `fetchPublishMessageQueues` | [`DefaultMQProducer::fetch_publish_message_queues`] |
//! | `Message.putUserProperty` | [`Message::put_user_property`] (checks at once), [`Message::with_user_property`] (chains; the send refuses a reserved name) |
//! | `SendMessageHook`, `SendMessageContext`, `CommunicationMode` | [`SendMessageHook`], [`SendMessageContext`], [`CommunicationMode`]; registered with [`DefaultMQProducerBuilder::send_message_hook`] |
//! | 5.x `compressType`, `CompressionType`, `compressLevel` | [`DefaultMQProducerBuilder::compress_type`], [`CompressionType`], [`DefaultMQProducerBuilder::compress_level`] |
//! | `TransactionMQProducer`, `TransactionListener`, `LocalTransactionState`, `TransactionSendResult` | [`TransactionMQProducer`], built by [`TransactionMQProducerBuilder`]; [`TransactionListener`] (or two closures, [`FnTransactionListener`]), [`LocalTransactionState`], [`TransactionSendResult`]; the broker's checks run on its bounded check pool |
//! | `MessageQueueSelector`, `SelectMessageQueueByHash`, `SelectMessageQueueByRandom` | [`MessageQueueSelector`] (or a closure), [`SelectMessageQueueByHash`], [`SelectMessageQueueByRandom`]; Java's `Object.hashCode()` is [`JavaHash`] |
//! | `MessageListenerConcurrently` | [`MessageListenerConcurrently`] or a closure |
//! | `ConsumeConcurrentlyStatus`, `ConsumeConcurrentlyContext` | [`ConsumeConcurrentlyStatus`], [`ConsumeConcurrentlyContext`] |
//! | `MessageListenerOrderly` | [`MessageListenerOrderly`] or a closure |
//! | `ConsumeOrderlyStatus`, `ConsumeOrderlyContext` | [`ConsumeOrderlyStatus`], [`ConsumeOrderlyContext`] |
//! | `MessageModel`, `ConsumeFromWhere`, `ExpressionType`, `SubscriptionData.SUB_ALL` | [`MessageModel`], [`ConsumeFromWhere`], [`ExpressionType`], [`SUB_ALL`] |
//! | `subscribe(topic, MessageSelector.bySql(sql))` (SQL92 filtering) | `subscribe_sql92` on [`DefaultMQPushConsumerBuilder`](DefaultMQPushConsumerBuilder::subscribe_sql92), [`DefaultMQPushConsumer`](DefaultMQPushConsumer::subscribe_sql92) and [`DefaultLitePullConsumer`](DefaultLitePullConsumer::subscribe_sql92); the brokers are asked first (`CHECK_CLIENT_CONFIG`), and one without `enablePropertyFilter` makes `start` or `subscribe_sql92` fail with its reason |
//! | `Message.setDelayTimeLevel` | [`Message::with_delay_level`] (levels of the broker's `messageDelayLevel`) |
//! | `AllocateMessageQueueStrategy` | [`AllocateMessageQueueStrategy`] |
//! | `AllocateMessageQueueAveragely`, `...AveragelyByCircle`, `...ConsistentHash`, `...ByConfig`, `...ByMachineRoom`, `AllocateMachineRoomNearby` | [`AllocateMessageQueueAveragely`], [`AllocateMessageQueueAveragelyByCircle`], [`AllocateMessageQueueConsistentHash`], [`AllocateMessageQueueByConfig`], [`AllocateMessageQueueByMachineRoom`], [`AllocateMachineRoomNearby`] ([`MachineRoomResolver`]) |
//! | `ConsumeMessageHook`, `ConsumeMessageContext` | [`ConsumeMessageHook`], [`ConsumeMessageContext`] |
//! | `enableMsgTrace`, `customizedTraceTopic`, `AsyncTraceDispatcher`, `TraceContext`, `TraceBean`, `TraceType`, `TraceDataEncoder`, `TopicValidator.RMQ_SYS_TRACE_TOPIC` | [`DefaultMQPushConsumerBuilder::enable_msg_trace`], [`DefaultMQPushConsumerBuilder::customized_trace_topic`], a background queue inside the client; [`TraceContext`] ([`TraceContext::encode`], [`TraceContext::decode_all`]), [`TraceBean`], [`TraceType`], [`RMQ_SYS_TRACE_TOPIC`] |
//! | `DefaultMQAdminExt` (`MQAdmin`), `TopicConfig`, `QueryResult`, `ConsumeStats`, `OffsetWrapper`, `ConsumerConnection`, `Connection`, `ClusterInfo`, `ConsumerRunningInfo`, `ProcessQueueInfo` | [`DefaultMQAdminExt`], built by [`DefaultMQAdminExtBuilder`]; [`TopicConfig`], [`QueryResult`], [`ConsumeStats`], [`OffsetWrapper`], [`ConsumerConnection`], [`Connection`], [`Subscription`], [`ClusterInfo`], [`ConsumerRunningInfo`], [`ProcessQueueInfo`] |
//! | `RPCHook` | [`RPCHook`] (or a closure) |
//! | `AclClientRPCHook`, `SessionCredentials` | [`AclClientRPCHook`], [`SessionCredentials`] |
//! | `ConsumeStatus` (`ConsumerStatsManager`), `ProcessQueueInfo` | [`ConsumeStatus`], [`QueueStat`] |
//! | `ServiceState` | [`ServiceState`] |
//! | `MQClientException`, `MQBrokerException`, `Remoting*Exception` | variants of [`Error`] |
//! | `ClientErrorCode`, `ResponseCode` | [`ClientErrorCode`], [`ResponseCode`] |
//! | `RemotingCommand`, `RequestCode` | [`remoting::protocol`] |
//! | `MessageDecoder`, `TopicRouteData` | [`codec`] |
//! | `NettyRemotingClient` | [`remoting::RemotingClient`] |
//!
//! # Stability
//!
//! The root items follow semver. [`remoting`], [`remoting::protocol`] and [`codec`] are the low-level
//! plumbing (the wire codec, the remoting client) for tools and tests: public, but with no
//! semver promise yet. `testing` (feature `test-util`) holds an in-process scripted broker for
//! fault-injection tests, with the same caveat.
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod acl;
mod admin;
mod client;
pub mod codec;
mod common;
mod consumer;
mod error;
mod executor;
mod producer;
pub mod remoting;
mod service_state;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;

pub use acl::{AclClientRPCHook, SessionCredentials};
pub use admin::{
    ClusterInfo, Connection, ConsumeStats, ConsumerConnection, ConsumerRunningInfo,
    DefaultMQAdminExt, DefaultMQAdminExtBuilder, OffsetWrapper, ProcessQueueInfo, QueryResult,
    Subscription, TopicConfig,
};
pub use client::{ClientConfig, ClientConfigBuilder};
pub use common::{
    create_reply_message, Message, MessageConst, MessageExt, MessageQueue, Properties,
};
pub use consumer::{
    AllocateMachineRoomNearby, AllocateMessageQueueAveragely,
    AllocateMessageQueueAveragelyByCircle, AllocateMessageQueueByConfig,
    AllocateMessageQueueByMachineRoom, AllocateMessageQueueConsistentHash,
    AllocateMessageQueueStrategy, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus,
    ConsumeFromWhere, ConsumeMessageContext, ConsumeMessageHook, ConsumeOrderlyContext,
    ConsumeOrderlyStatus, ConsumeStatus, DefaultLitePullConsumer, DefaultLitePullConsumerBuilder,
    DefaultMQPushConsumer, DefaultMQPushConsumerBuilder, ExpressionType, MachineRoomResolver,
    MessageListenerConcurrently, MessageListenerOrderly, MessageModel, MessageQueueListener,
    QueueStat, TopicMessageQueueChangeListener, SUB_ALL,
};
pub use error::{ClientErrorCode, CodecError, Error, Result};
pub use producer::RequestCallback;
pub use producer::{CommunicationMode, CompressionType, SendMessageContext, SendMessageHook};
pub use producer::{
    DefaultMQProducer, DefaultMQProducerBuilder, JavaHash, MessageQueueSelector,
    SelectMessageQueueByHash, SelectMessageQueueByRandom, SelectedQueue, SendCallback, SendResult,
    SendStatus, TraceBean, TraceContext, TraceType, RMQ_SYS_TRACE_TOPIC,
};
pub use producer::{
    FnTransactionListener, LocalTransactionState, TransactionListener, TransactionMQProducer,
    TransactionMQProducerBuilder, TransactionSendResult,
};
pub use remoting::protocol::ResponseCode;
pub use remoting::RPCHook;
pub use remoting::TlsConfig;
pub use service_state::ServiceState;

/// The README's examples, compiled by `cargo test --doc` so they keep up with the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

// Compile-time check (no test to run): the handles users share between threads, and what
// crosses threads with them, are `Send + Sync`; the builders can at least move. A change that
// breaks this fails the build of the crate itself.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    const fn send<T: Send>() {}
    send_sync::<DefaultMQProducer>();
    send_sync::<DefaultMQPushConsumer>();
    send_sync::<DefaultLitePullConsumer>();
    send_sync::<Error>();
    send_sync::<Message>();
    send_sync::<MessageExt>();
    send_sync::<SendResult>();
    send_sync::<ClientConfig>();
    send_sync::<AclClientRPCHook>();
    send_sync::<DefaultMQAdminExt>();
    send::<DefaultMQProducerBuilder>();
    send::<DefaultMQPushConsumerBuilder>();
    send::<DefaultLitePullConsumerBuilder>();
    send::<DefaultMQAdminExtBuilder>();
};
