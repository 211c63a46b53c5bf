//! The RocketMQ remoting protocol, with no I/O and no threads.
//!
//! This is low-level plumbing for the client, public so tools and tests can build and inspect
//! frames. It does not follow semver yet.

pub mod body;
mod code;
mod codec_error;
mod command;
mod ext_fields;
mod frame;
pub mod header;
pub(crate) mod heartbeat;
mod message_queue;
mod process_queue_info;

pub use code::{RequestCode, ResponseCode};
pub use codec_error::CodecError;
pub use command::{
    next_opaque, CommandCustomHeader, LanguageCode, RemotingCommand, SerializeType,
    CURRENT_VERSION, RPC_ONEWAY, RPC_TYPE_RESPONSE,
};
pub use ext_fields::ExtFields;
pub use frame::{FrameDecoder, DEFAULT_MAX_FRAME_LEN};
pub use message_queue::MessageQueue;
