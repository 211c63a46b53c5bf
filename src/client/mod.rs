//! `MQClientInstance`, the typed broker/name-server API, and the threads an instance shares
//! among its consumers: `PullMessageService`, `RebalanceService` and the processors of requests
//! brokers send to the client.
//!
//! Everything here is shared by producers and consumers of one client id and stays
//! crate-private, except [`ClientConfig`], which users may set wholesale. The instance drives
//! consumers only through `MQConsumerInner` and pulls only through `PullTask`, and producers
//! only through `MQProducerInner` and `InnerProducer`: nothing here names the consumer or
//! producer modules, which sit above it (`tests/module_layering.rs` checks). What it shares
//! with them are wire bodies (`remoting::protocol`) and `TopicPublishInfo` (here).

pub(crate) mod api;
pub(crate) mod check_client;
pub(crate) mod config;
pub(crate) mod instance;
pub(crate) mod processors;
pub(crate) mod publish_info;
pub(crate) mod pull_service;
pub(crate) mod rebalance_service;
pub(crate) mod reply;
pub(crate) mod transaction_check;

pub use config::{ClientConfig, ClientConfigBuilder};
