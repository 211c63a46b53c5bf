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
mod message_queue;

pub use code::{RequestCode, ResponseCode};
pub use codec_error::CodecError;
pub use command::{
    next_opaque, CommandCustomHeader, LanguageCode, RemotingCommand, SerializeType,
    CURRENT_VERSION, RPC_ONEWAY, RPC_TYPE_RESPONSE,
};
pub use ext_fields::ExtFields;
pub use frame::{FrameDecoder, DEFAULT_MAX_FRAME_LEN};
pub use message_queue::MessageQueue;

// The stored-message codec, the property encoding and the route body live with the message
// model in the crate; tools and tests reach them here, under this module's no-semver rule.
pub use crate::common::decoder::{
    tags_code, DecodedBatch, MessageClientIDSetter, MessageDecoder, MessageSysFlag,
    UndecodableRecord, DEFAULT_MAX_BODY_SIZE, MESSAGE_MAGIC_CODE, MESSAGE_MAGIC_CODE_V2,
};
pub use crate::common::message::{
    properties_to_string, string_to_properties, PullOffsets, NAME_VALUE_SEPARATOR,
    PROPERTY_SEPARATOR,
};
pub use crate::common::route::{
    topic_publish_queues, topic_subscribe_queues, BrokerData, QueueData, TopicRouteData, MASTER_ID,
    PERM_READ, PERM_WRITE,
};
