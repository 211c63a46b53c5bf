//! `MQClientInstance` and the typed broker/name-server API.
//!
//! Everything here is shared by producers and consumers of one client id and stays
//! crate-private, except [`ClientConfig`], which users may set wholesale.

pub(crate) mod api;
pub(crate) mod config;
pub(crate) mod heartbeat;
pub(crate) mod instance;

pub use config::{ClientConfig, ClientConfigBuilder};
