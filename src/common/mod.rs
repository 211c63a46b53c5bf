//! The message model and shared types.

pub mod decoder;
pub mod message;
pub mod route;
mod service_state;
pub mod util;

pub use decoder::{
    tags_code, DecodedBatch, MessageClientIDSetter, MessageDecoder, MessageSysFlag,
    UndecodableRecord, DEFAULT_MAX_BODY_SIZE,
};
pub use message::{
    properties_to_string, string_to_properties, Message, MessageConst, MessageExt, Properties,
    PullOffsets,
};
pub use route::{
    topic_publish_queues, topic_subscribe_queues, BrokerData, QueueData, TopicRouteData,
};
pub use service_state::ServiceState;

// Defined in the protocol layer, with the wire types it is encoded in.
pub use crate::remoting::protocol::MessageQueue;
