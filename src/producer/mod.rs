//! The producer.
//!
//! | Java | Rust |
//! |---|---|
//! | `SendResult` | [`SendResult`] |
//! | `SendStatus` | [`SendStatus`] |
//! | `SendCallback` | [`SendCallback`] (any `FnOnce(Result<SendResult>)` closure) |
//! | `RequestCallback` | [`RequestCallback`] (or any `FnOnce(Result<MessageExt>)` closure) |
//! | `MessageQueueSelector` | [`MessageQueueSelector`] (or a closure) |
//! | `SelectMessageQueueByHash` | [`SelectMessageQueueByHash`] |
//! | `SelectMessageQueueByRandom` | [`SelectMessageQueueByRandom`] |
//! | `Object.hashCode()` of a selector argument | [`JavaHash`] |
//! | `SendMessageHook`, `SendMessageContext`, `CommunicationMode` | [`SendMessageHook`], [`SendMessageContext`], [`CommunicationMode`] |
//! | `CompressionType` (5.x) | [`CompressionType`] |
//! | `TransactionMQProducer` | [`TransactionMQProducer`] |
//! | `TransactionListener` | [`TransactionListener`] (or two closures: [`FnTransactionListener`]) |
//! | `LocalTransactionState` | [`LocalTransactionState`] |
//! | `TransactionSendResult` | [`TransactionSendResult`] |
//!
//! Queue choice for ordinary sends uses latency fault tolerance, which this crate turns on by
//! default (Java: off); see `MQFaultStrategy` in the source of `producer::fault`.

mod default_producer;
pub(crate) mod fault;
mod hook;
mod request;
mod selector;
mod send_result;
pub(crate) mod trace;
pub(crate) mod transaction;
pub(crate) mod validators;

pub use default_producer::{DefaultMQProducer, DefaultMQProducerBuilder};
pub use hook::{CommunicationMode, CompressionType, SendMessageContext, SendMessageHook};
pub use request::RequestCallback;

pub use selector::{
    JavaHash, MessageQueueSelector, SelectMessageQueueByHash, SelectMessageQueueByRandom,
    SelectedQueue,
};
pub use send_result::{SendCallback, SendResult, SendStatus};
pub use trace::{TraceBean, TraceContext, TraceType, RMQ_SYS_TRACE_TOPIC};
pub use transaction::{
    FnTransactionListener, LocalTransactionState, TransactionListener, TransactionMQProducer,
    TransactionMQProducerBuilder, TransactionSendResult,
};

pub(crate) use send_result::process_send_response;
