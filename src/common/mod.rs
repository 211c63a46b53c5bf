//! The message model and shared types.

pub(crate) mod decoder;
pub(crate) mod message;
pub(crate) mod namespace;
pub(crate) mod reply;
pub(crate) mod route;
pub(crate) mod util;

pub(crate) use decoder::{MessageClientIDSetter, MessageDecoder, DEFAULT_MAX_BODY_SIZE};
pub(crate) use message::PullOffsets;
pub use message::{Message, MessageConst, MessageExt, Properties};
pub use reply::create_reply_message;
pub(crate) use route::{topic_subscribe_queues, TopicRouteData};

// Defined in the protocol layer, with the wire types it is encoded in.
pub use crate::remoting::protocol::MessageQueue;
