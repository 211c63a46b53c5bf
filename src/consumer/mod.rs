//! The push consumer.

pub mod allocate;
#[allow(dead_code)]
pub(crate) mod offset_store;
#[allow(dead_code)]
pub(crate) mod process_queue;
