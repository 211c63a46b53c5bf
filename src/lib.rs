//! A synchronous Apache RocketMQ client: plain OS threads, one mio event loop and thread pools,
//! no async runtime.
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
