//! The message model and shared types.

pub mod decoder;
pub mod message;
mod message_queue;
pub mod route;
mod service_state;
pub mod util;

pub use decoder::{tags_code, MessageClientIDSetter, MessageDecoder, MessageSysFlag};
pub use message::{
    properties_to_string, string_to_properties, Message, MessageConst, MessageExt, Properties,
};
pub use message_queue::MessageQueue;
pub use route::{
    topic_publish_queues, topic_subscribe_queues, BrokerData, QueueData, TopicRouteData,
};
pub use service_state::ServiceState;
