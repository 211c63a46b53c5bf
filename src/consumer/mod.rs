//! The push consumer, and the lite pull consumer built on its machinery.
//!
//! | Java | Rust |
//! |---|---|
//! | `DefaultMQPushConsumer` / `DefaultMQPushConsumerImpl` | [`DefaultMQPushConsumer`] |
//! | `DefaultLitePullConsumer` / `DefaultLitePullConsumerImpl` | [`DefaultLitePullConsumer`] (the same machinery, a poll buffer for a listener) |
//! | `MessageQueueListener` | [`MessageQueueListener`] (or a closure) |
//! | `MessageListenerConcurrently` | [`MessageListenerConcurrently`] (or a closure) |
//! | `ConsumeConcurrentlyStatus`, `ConsumeConcurrentlyContext` | [`ConsumeConcurrentlyStatus`], [`ConsumeConcurrentlyContext`] |
//! | `MessageModel`, `ConsumeFromWhere` | [`MessageModel`], [`ConsumeFromWhere`] |
//! | `AllocateMessageQueueStrategy` and its implementations | [`allocate`] |
//! | `ConsumeMessageHook` | [`ConsumeMessageHook`] |
//! | `ConsumeStatus` (`ConsumerStatsManager`) | [`ConsumeStatus`] |
//!
//! Threads: the client instance's `rmq-pull` and `rmq-rebal` (shared by all consumers of the
//! instance), its callback pool `rmq-cb` and scheduler `rmq-sched`, plus each consumer's
//! consume pool `rmq-cons-*` (core..max, really honoured). The thread count does not grow with
//! the number of queues.

mod allocate;
mod broker_lock;
mod broker_requests;
mod builder;
pub(crate) mod consume;
mod listener;
pub(crate) mod lite_pull;
pub(crate) mod offset_store;
pub(crate) mod process_queue;
mod pull;
pub(crate) mod push_consumer;
mod rebalance;
mod send_back;
pub(crate) mod stats;
mod subscription;

pub use crate::remoting::protocol::body::ConsumeStatus;
pub use allocate::{
    AllocateMachineRoomNearby, AllocateMessageQueueAveragely,
    AllocateMessageQueueAveragelyByCircle, AllocateMessageQueueByConfig,
    AllocateMessageQueueByMachineRoom, AllocateMessageQueueConsistentHash,
    AllocateMessageQueueStrategy, MachineRoomResolver,
};
pub use builder::DefaultMQPushConsumerBuilder;
pub use listener::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, ConsumeMessageContext,
    ConsumeMessageHook, ConsumeOrderlyContext, ConsumeOrderlyStatus, MessageListenerConcurrently,
    MessageListenerOrderly,
};
pub use lite_pull::{
    DefaultLitePullConsumer, DefaultLitePullConsumerBuilder, MessageQueueListener,
    TopicMessageQueueChangeListener,
};
pub use push_consumer::{DefaultMQPushConsumer, QueueStat};
pub use subscription::{ConsumeFromWhere, ExpressionType, MessageModel, SUB_ALL};
