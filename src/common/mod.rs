//! The message model and shared types.

pub(crate) mod decoder;
pub(crate) mod message;
mod message_queue;
pub(crate) mod route;
mod service_state;
pub(crate) mod util;

pub(crate) use decoder::{MessageClientIDSetter, MessageDecoder};
pub use message::{Message, MessageConst, MessageExt, Properties};
pub use message_queue::MessageQueue;
pub(crate) use route::{topic_subscribe_queues, TopicRouteData};
pub use service_state::ServiceState;
