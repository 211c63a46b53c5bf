//! The message model and shared types.

mod message_queue;
pub mod route;
mod service_state;
pub mod util;

pub use message_queue::MessageQueue;
pub use route::{BrokerData, QueueData, TopicRouteData};
pub use service_state::ServiceState;
