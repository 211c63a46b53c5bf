//! The stored-message codec (what a pull body holds), the message property encoding and the
//! topic route body: low-level plumbing for tools and tests, public like
//! [`remoting::protocol`](crate::remoting::protocol) and, like it, with no semver promise yet.
//! They live with the message model in the crate; the wire protocol itself imports nothing
//! from here.

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
    MAX_ROUTE_QUEUES, PERM_READ, PERM_WRITE,
};
