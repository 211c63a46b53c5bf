//! A synchronous Apache RocketMQ client: plain OS threads, one mio event loop and thread pools,
//! no async runtime.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms, unreachable_pub)]

pub mod common;
mod error;
pub mod remoting;

pub use common::ServiceState;
pub use error::{ClientErrorCode, CodecError, Error, Result};
