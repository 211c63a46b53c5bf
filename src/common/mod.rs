//! The message model and shared types.

mod service_state;

pub use service_state::ServiceState;
