//! The producer.
//!
//! | Java | Rust |
//! |---|---|
//! | `SendResult` | [`SendResult`] |
//! | `SendStatus` | [`SendStatus`] |
//! | `SendCallback` | [`SendCallback`] (any `FnOnce(Result<SendResult>)` closure) |
//! | `MessageQueueSelector` | [`MessageQueueSelector`] (or a closure) |
//! | `SelectMessageQueueByHash` | [`SelectMessageQueueByHash`] |
//! | `SelectMessageQueueByRandom` | [`SelectMessageQueueByRandom`] |
//! | `Object.hashCode()` of a selector argument | [`JavaHash`] |
//! | `TransactionMQProducer` | [`TransactionMQProducer`] |
//! | `TransactionListener` | [`TransactionListener`] (or two closures: [`FnTransactionListener`]) |
//! | `LocalTransactionState` | [`LocalTransactionState`] |
//! | `TransactionSendResult` | [`TransactionSendResult`] |
//!
//! Queue choice for ordinary sends uses latency fault tolerance, which this crate turns on by
//! default (Java: off); see `MQFaultStrategy` in the source of `producer::fault`.

mod default_producer;
pub(crate) mod fault;
mod selector;
mod send_result;
pub(crate) mod transaction;
pub(crate) mod validators;

pub use default_producer::{DefaultMQProducer, DefaultMQProducerBuilder};

pub use selector::{
    JavaHash, MessageQueueSelector, SelectMessageQueueByHash, SelectMessageQueueByRandom,
    SelectedQueue,
};
pub use send_result::{SendCallback, SendResult, SendStatus};
pub use transaction::{
    FnTransactionListener, LocalTransactionState, TransactionListener, TransactionMQProducer,
    TransactionMQProducerBuilder, TransactionSendResult,
};

pub(crate) use send_result::process_send_response;
