//! Helpers shared by the integration tests. Each test binary uses a different subset.
#![allow(dead_code)]

pub mod broker;
pub mod client;
pub mod consume;
pub mod fake;
pub mod golden;
pub mod ledger;
pub mod pki;
pub mod proxy;
