//! `ProcessQueueInfo`, the per-queue part of the GET_CONSUMER_RUNNING_INFO body (see
//! `body::ConsumerRunningInfo`, which re-exports it). In a file of its own, importing only serde,
//! because the `process_queue` bench compiles the consumer's `ProcessQueue` source without the
//! crate and must provide this type to it.

use serde::{Deserialize, Serialize};

/// Java `ProcessQueueInfo`: a snapshot for `ConsumerRunningInfo.mqTable`. Members are declared in
/// fastjson's (alphabetical) order with its names, including the `droped` misspelling.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct ProcessQueueInfo {
    /// Number of messages in the cache.
    #[serde(rename = "cachedMsgCount")]
    pub(crate) cached_msg_count: i32,
    /// Largest cached offset, 0 when empty.
    #[serde(rename = "cachedMsgMaxOffset")]
    pub(crate) cached_msg_max_offset: i64,
    /// Smallest cached offset, 0 when empty.
    #[serde(rename = "cachedMsgMinOffset")]
    pub(crate) cached_msg_min_offset: i64,
    /// Cached bytes in MiB (rounded down).
    #[serde(rename = "cachedMsgSizeInMiB")]
    pub(crate) cached_msg_size_in_mib: i32,
    /// The committed offset, from the consumer's offset store.
    #[serde(rename = "commitOffset")]
    pub(crate) commit_offset: i64,
    /// Whether the queue is being released or was (sic, as Java spells it).
    #[serde(rename = "droped")]
    pub(crate) droped: bool,
    /// Last consume, ms since the epoch.
    #[serde(rename = "lastConsumeTimestamp")]
    pub(crate) last_consume_timestamp: i64,
    /// Orderly: last successful broker lock, ms since the epoch (0 for concurrent consumers).
    #[serde(rename = "lastLockTimestamp")]
    pub(crate) last_lock_timestamp: i64,
    /// Last pull, ms since the epoch.
    #[serde(rename = "lastPullTimestamp")]
    pub(crate) last_pull_timestamp: i64,
    /// Orderly: the queue is locked at the broker.
    pub(crate) locked: bool,
    /// Orderly in-flight message count.
    #[serde(rename = "transactionMsgCount")]
    pub(crate) transaction_msg_count: i32,
    /// Largest orderly in-flight offset, 0 when none.
    #[serde(rename = "transactionMsgMaxOffset")]
    pub(crate) transaction_msg_max_offset: i64,
    /// Smallest orderly in-flight offset, 0 when none.
    #[serde(rename = "transactionMsgMinOffset")]
    pub(crate) transaction_msg_min_offset: i64,
    /// Orderly: times an unlock was deferred because a consume was running.
    #[serde(rename = "tryUnlockTimes")]
    pub(crate) try_unlock_times: i64,
}
