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
//!
//! Queue choice for ordinary sends uses latency fault tolerance, which this crate turns on by
//! default (Java: off); see `MQFaultStrategy` in the source of `producer::fault`.

// `fault`, `publish_info` and `validators` are crate-internal machinery for the producer's
// send path (route lookup, queue choice, retries), which is wired in a later change; until
// then their items look unused.
#[allow(dead_code)]
mod fault;
#[allow(dead_code)]
mod publish_info;
mod selector;
mod send_result;
#[allow(dead_code)]
mod validators;

pub use selector::{
    JavaHash, MessageQueueSelector, SelectMessageQueueByHash, SelectMessageQueueByRandom,
    SelectedQueue,
};
pub use send_result::{SendCallback, SendResult, SendStatus};

// The producer's send path, wired in a later change, uses these.
#[allow(unused_imports)]
pub(crate) use fault::{LatencyFaultTolerance, MQFaultStrategy, DEFAULT_SEND_LATENCY_FAULT_ENABLE};
#[allow(unused_imports)]
pub(crate) use publish_info::{RotatingIndex, TopicPublishInfo};
#[allow(unused_imports)]
pub(crate) use send_result::send_status_from_response;
#[allow(unused_imports)]
pub(crate) use validators::{check_body, check_group, check_message, check_topic};
