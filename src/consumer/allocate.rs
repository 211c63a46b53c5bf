//! Queue allocation strategies: which queues of a topic this consumer pulls from.
//!
//! In clustering mode every consumer of a group runs the same strategy on the same inputs during
//! rebalancing, and each keeps only its own share. For that to work the strategy must be a pure
//! function of its arguments, and the inputs must be in the same order on every consumer.
//!
//! # Input contract
//!
//! The caller (rebalancing) sorts both lists before calling
//! [`allocate`](AllocateMessageQueueStrategy::allocate):
//!
//! * `mq_all` by topic, then broker name, then queue id ([`MessageQueue`]'s `Ord`, Java's
//!   `compareTo`);
//! * `cid_all` in string order.
//!
//! The strategies here do not sort again. Called directly with unsorted input they still return a
//! valid answer for that order, but consumers that saw a different order would disagree.
//!
//! # Common checks
//!
//! Java's `AbstractAllocateMessageQueueStrategy.check`, available as [`check_allocate_args`]:
//! an empty `current_cid`, `mq_all` or `cid_all` is an [`Error::Client`] (Java throws
//! `IllegalArgumentException`); a `current_cid` that is not in `cid_all` gives an empty allocation
//! and an `info` log line.
//!
//! # Strategies
//!
//! | Java class | Rust type | [`name`](AllocateMessageQueueStrategy::name) |
//! |---|---|---|
//! | `AllocateMessageQueueAveragely` | [`AllocateMessageQueueAveragely`] | `AVG` |
//! | `AllocateMessageQueueAveragelyByCircle` | [`AllocateMessageQueueAveragelyByCircle`] | `AVG_BY_CIRCLE` |
//! | `AllocateMessageQueueConsistentHash` | [`AllocateMessageQueueConsistentHash`] | `CONSISTENT_HASH` |
//! | `AllocateMessageQueueByConfig` | [`AllocateMessageQueueByConfig`] | `CONFIG` |
//! | `AllocateMessageQueueByMachineRoom` | [`AllocateMessageQueueByMachineRoom`] | `MACHINE_ROOM` |
//! | `AllocateMachineRoomNearby` | [`AllocateMachineRoomNearby`] | `MACHINE_ROOM_NEARBY-<inner>` |
//!
//! The trait is open: implement it for your own type, or pass a closure
//! `Fn(&str, &str, &[MessageQueue], &[String]) -> Vec<MessageQueue>` (named `CUSTOM`).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;

use md5::{Digest, Md5};

use crate::common::MessageQueue;
use crate::error::{ClientErrorCode, Error, Result};

/// The error code for invalid arguments (Java throws `IllegalArgumentException`, which carries no
/// code). Same value the producer's validators use.
const ILLEGAL_ARGUMENT: ClientErrorCode = ClientErrorCode::NO_CODE;

fn illegal(message: impl Into<String>) -> Error {
    Error::client(ILLEGAL_ARGUMENT, message)
}

/// Decides which message queues the current consumer of a group takes (Java
/// `AllocateMessageQueueStrategy`).
///
/// Implement it for your own strategy; any closure with the signature of
/// [`allocate`](Self::allocate) minus the `Result` is a strategy too. Implementations must be
/// deterministic: every consumer of the group runs the same strategy on the same (sorted) input
/// and keeps only what it returns for itself.
///
/// The rebalance sorts both lists before calling: `mq_all` by topic, then broker name, then
/// queue id ([`MessageQueue`]'s `Ord`, Java's `compareTo`), and `cid_all` in string order. The
/// strategies of this crate do not sort again. The built-in ones check their arguments as
/// Java's `AbstractAllocateMessageQueueStrategy.check` does: an empty `current_cid`, `mq_all`
/// or `cid_all` is an [`Error::Client`]; a `current_cid` missing from `cid_all` gets nothing.
///
/// | Java class | Rust type | [`name`](AllocateMessageQueueStrategy::name) |
/// |---|---|---|
/// | `AllocateMessageQueueAveragely` | [`AllocateMessageQueueAveragely`] | `AVG` |
/// | `AllocateMessageQueueAveragelyByCircle` | [`AllocateMessageQueueAveragelyByCircle`] | `AVG_BY_CIRCLE` |
/// | `AllocateMessageQueueConsistentHash` | [`AllocateMessageQueueConsistentHash`] | `CONSISTENT_HASH` |
/// | `AllocateMessageQueueByConfig` | [`AllocateMessageQueueByConfig`] | `CONFIG` |
/// | `AllocateMessageQueueByMachineRoom` | [`AllocateMessageQueueByMachineRoom`] | `MACHINE_ROOM` |
/// | `AllocateMachineRoomNearby` | [`AllocateMachineRoomNearby`] | `MACHINE_ROOM_NEARBY-<inner>` |
pub trait AllocateMessageQueueStrategy: Send + Sync {
    /// The queues of `mq_all` that `current_cid` should consume.
    ///
    /// `mq_all` is sorted by topic, broker name and queue id; `cid_all` in string order. An error
    /// aborts rebalancing of this topic for this round.
    fn allocate(
        &self,
        consumer_group: &str,
        current_cid: &str,
        mq_all: &[MessageQueue],
        cid_all: &[String],
    ) -> Result<Vec<MessageQueue>>;

    /// The strategy's name, as Java's `getName()` (for example `AVG`).
    #[doc(alias = "getName")]
    fn name(&self) -> &str;
}

/// A closure is a strategy named `CUSTOM`. It gets the arguments as they are: no argument check
/// is run for it.
impl<F> AllocateMessageQueueStrategy for F
where
    F: Fn(&str, &str, &[MessageQueue], &[String]) -> Vec<MessageQueue> + Send + Sync,
{
    fn allocate(
        &self,
        consumer_group: &str,
        current_cid: &str,
        mq_all: &[MessageQueue],
        cid_all: &[String],
    ) -> Result<Vec<MessageQueue>> {
        Ok(self(consumer_group, current_cid, mq_all, cid_all))
    }

    fn name(&self) -> &str {
        "CUSTOM"
    }
}

/// Shows the strategy's [`name`](AllocateMessageQueueStrategy::name), so configurations holding a
/// `Box` or `Arc` of a strategy can derive `Debug`.
impl fmt::Debug for dyn AllocateMessageQueueStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AllocateMessageQueueStrategy({})", self.name())
    }
}

/// A boxed strategy is a strategy, so `AllocateMachineRoomNearby<Box<dyn ..>>` works.
impl AllocateMessageQueueStrategy for Box<dyn AllocateMessageQueueStrategy> {
    fn allocate(
        &self,
        consumer_group: &str,
        current_cid: &str,
        mq_all: &[MessageQueue],
        cid_all: &[String],
    ) -> Result<Vec<MessageQueue>> {
        (**self).allocate(consumer_group, current_cid, mq_all, cid_all)
    }

    fn name(&self) -> &str {
        (**self).name()
    }
}

/// A shared strategy is a strategy, so `AllocateMachineRoomNearby<Arc<dyn ..>>` works.
impl AllocateMessageQueueStrategy for Arc<dyn AllocateMessageQueueStrategy> {
    fn allocate(
        &self,
        consumer_group: &str,
        current_cid: &str,
        mq_all: &[MessageQueue],
        cid_all: &[String],
    ) -> Result<Vec<MessageQueue>> {
        (**self).allocate(consumer_group, current_cid, mq_all, cid_all)
    }

    fn name(&self) -> &str {
        (**self).name()
    }
}

/// The checks every built-in strategy runs first (Java
/// `AbstractAllocateMessageQueueStrategy.check`), for use in your own strategies too.
///
/// Returns `Ok(true)` to go on, `Ok(false)` when `current_cid` is not in `cid_all` (logged at
/// `info`; the allocation should then be empty), and an [`Error::Client`] with Java's
/// `IllegalArgumentException` text when `current_cid`, `mq_all` or `cid_all` is empty.
#[doc(alias = "check")]
#[doc(alias = "AbstractAllocateMessageQueueStrategy")]
pub(crate) fn check_allocate_args(
    consumer_group: &str,
    current_cid: &str,
    mq_all: &[MessageQueue],
    cid_all: &[String],
) -> Result<bool> {
    if current_cid.is_empty() {
        return Err(illegal("currentCID is empty"));
    }
    if mq_all.is_empty() {
        return Err(illegal("mqAll is null or mqAll empty"));
    }
    if cid_all.is_empty() {
        return Err(illegal("cidAll is null or cidAll empty"));
    }
    if !cid_all.iter().any(|c| c == current_cid) {
        log::info!(
            "[BUG] ConsumerGroup: {consumer_group} The consumerId: {current_cid} not in cidAll: {cid_all:?}"
        );
        return Ok(false);
    }
    Ok(true)
}

/// Position of `current_cid` in `cid_all`, after [`check_allocate_args`]; `None` means "allocate
/// nothing".
fn checked_index(
    consumer_group: &str,
    current_cid: &str,
    mq_all: &[MessageQueue],
    cid_all: &[String],
) -> Result<Option<usize>> {
    if !check_allocate_args(consumer_group, current_cid, mq_all, cid_all)? {
        return Ok(None);
    }
    Ok(cid_all.iter().position(|c| c == current_cid))
}

/// Contiguous blocks: the first `n % c` consumers take `n / c + 1` queues, the others `n / c`
/// (Java `AllocateMessageQueueAveragely`, name `AVG`, the push consumer's default).
///
/// With 8 queues and consumers `c1, c2, c3`: `c1` gets 0, 1, 2; `c2` gets 3, 4, 5; `c3` gets 6, 7.
/// With more consumers than queues, the last consumers get nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocateMessageQueueAveragely;

impl AllocateMessageQueueStrategy for AllocateMessageQueueAveragely {
    fn allocate(
        &self,
        consumer_group: &str,
        current_cid: &str,
        mq_all: &[MessageQueue],
        cid_all: &[String],
    ) -> Result<Vec<MessageQueue>> {
        let Some(index) = checked_index(consumer_group, current_cid, mq_all, cid_all)? else {
            return Ok(Vec::new());
        };
        // Java's int arithmetic, kept signed so a negative range means "nothing".
        let n = mq_all.len() as i64;
        let c = cid_all.len() as i64;
        let i = index as i64;
        let m = n % c;
        let gets_extra = m > 0 && i < m;
        let average = if n <= c {
            1
        } else if gets_extra {
            n / c + 1
        } else {
            n / c
        };
        let start = if gets_extra {
            i * average
        } else {
            i * average + m
        };
        let range = average.min(n - start);
        Ok((0..range.max(0))
            .map(|k| mq_all[((start + k) % n) as usize].clone())
            .collect())
    }

    fn name(&self) -> &str {
        "AVG"
    }
}

/// Round robin: consumer `i` of `c` takes queues `i`, `i + c`, `i + 2c`, ... (Java
/// `AllocateMessageQueueAveragelyByCircle`, name `AVG_BY_CIRCLE`).
///
/// With 8 queues and consumers `c1, c2, c3`: `c1` gets 0, 3, 6; `c2` gets 1, 4, 7; `c3` gets 2, 5.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocateMessageQueueAveragelyByCircle;

impl AllocateMessageQueueStrategy for AllocateMessageQueueAveragelyByCircle {
    fn allocate(
        &self,
        consumer_group: &str,
        current_cid: &str,
        mq_all: &[MessageQueue],
        cid_all: &[String],
    ) -> Result<Vec<MessageQueue>> {
        let Some(index) = checked_index(consumer_group, current_cid, mq_all, cid_all)? else {
            return Ok(Vec::new());
        };
        Ok(mq_all
            .iter()
            .skip(index)
            .step_by(cid_all.len())
            .cloned()
            .collect())
    }

    fn name(&self) -> &str {
        "AVG_BY_CIRCLE"
    }
}

/// Consistent hashing (Java `AllocateMessageQueueConsistentHash`, name `CONSISTENT_HASH`): adding
/// or removing a consumer moves only the queues near it on the ring.
///
/// Each consumer id `cid` puts `virtual_node_cnt` nodes `"<cid>-0"`, `"<cid>-1"`, ... on a ring,
/// keyed by Java's `ConsistentHashRouter.MD5Hash` (the first 4 bytes of the key's MD5, big
/// endian). A queue goes to the node of the first ring key at or above the hash of
/// the queue's Java `toString` ([`MessageQueue`]'s `Display`), wrapping around to the first node.
/// The result is identical to Java's: with 8 queues of `broker-a` and consumers `c1, c2, c3`, `c1`
/// gets 0, 4; `c2` gets 1, 2, 5, 6, 7; `c3` gets 3.
///
/// With `virtual_node_cnt == 0` the ring is empty and nothing is allocated (Java allows 0 too).
/// Java's pluggable `HashFunction` is not offered; implement the trait for a different hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocateMessageQueueConsistentHash {
    /// Virtual nodes per consumer on the hash ring (Java `virtualNodeCnt`, default 10).
    #[doc(alias = "virtualNodeCnt")]
    pub virtual_node_cnt: usize,
}

impl AllocateMessageQueueConsistentHash {
    /// Java's default number of virtual nodes per consumer.
    pub const DEFAULT_VIRTUAL_NODE_CNT: usize = 10;

    /// A strategy with `virtual_node_cnt` virtual nodes per consumer.
    pub fn new(virtual_node_cnt: usize) -> Self {
        AllocateMessageQueueConsistentHash { virtual_node_cnt }
    }
}

impl Default for AllocateMessageQueueConsistentHash {
    /// 10 virtual nodes per consumer, as Java's no-argument constructor.
    fn default() -> Self {
        Self::new(Self::DEFAULT_VIRTUAL_NODE_CNT)
    }
}

/// The hash of Java's consistent-hash ring (`ConsistentHashRouter.MD5Hash`): the first 4 bytes of
/// the MD5 digest of `key`'s UTF-8 bytes, read as an unsigned big-endian 32-bit number.
#[doc(alias = "MD5Hash")]
pub(crate) fn md5_hash(key: &str) -> u64 {
    let digest = Md5::digest(key.as_bytes());
    u64::from(u32::from_be_bytes([
        digest[0], digest[1], digest[2], digest[3],
    ]))
}

impl AllocateMessageQueueStrategy for AllocateMessageQueueConsistentHash {
    fn allocate(
        &self,
        consumer_group: &str,
        current_cid: &str,
        mq_all: &[MessageQueue],
        cid_all: &[String],
    ) -> Result<Vec<MessageQueue>> {
        if checked_index(consumer_group, current_cid, mq_all, cid_all)?.is_none() {
            return Ok(Vec::new());
        }
        // Ring key -> consumer id. A later insert with the same key replaces the earlier one,
        // like Java's `TreeMap.put`.
        let mut ring: BTreeMap<u64, &str> = BTreeMap::new();
        for cid in cid_all {
            for replica in 0..self.virtual_node_cnt {
                ring.insert(md5_hash(&format!("{cid}-{replica}")), cid);
            }
        }
        let route = |mq: &MessageQueue| -> Option<&str> {
            let key = md5_hash(&mq.to_string());
            ring.range(key..)
                .next()
                .or_else(|| ring.iter().next())
                .map(|(_, cid)| *cid)
        };
        Ok(mq_all
            .iter()
            .filter(|mq| route(mq) == Some(current_cid))
            .cloned()
            .collect())
    }

    fn name(&self) -> &str {
        "CONSISTENT_HASH"
    }
}

/// A fixed list of queues, whatever the input (Java `AllocateMessageQueueByConfig`, name `CONFIG`).
///
/// No checks are run: the list comes back even for empty input. Every consumer of the group that
/// uses it consumes exactly these queues.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllocateMessageQueueByConfig {
    /// The queues to consume (Java `messageQueueList`).
    #[doc(alias = "messageQueueList")]
    pub message_queue_list: Vec<MessageQueue>,
}

impl AllocateMessageQueueByConfig {
    /// A strategy that always returns `message_queue_list`.
    pub fn new(message_queue_list: Vec<MessageQueue>) -> Self {
        AllocateMessageQueueByConfig { message_queue_list }
    }
}

impl AllocateMessageQueueStrategy for AllocateMessageQueueByConfig {
    fn allocate(
        &self,
        _consumer_group: &str,
        _current_cid: &str,
        _mq_all: &[MessageQueue],
        _cid_all: &[String],
    ) -> Result<Vec<MessageQueue>> {
        Ok(self.message_queue_list.clone())
    }

    fn name(&self) -> &str {
        "CONFIG"
    }
}

/// Java's `brokerName.split("@")`: the parts, with trailing empty parts removed.
fn java_split_at(broker_name: &str) -> Vec<&str> {
    let mut parts: Vec<&str> = broker_name.split('@').collect();
    if parts.len() > 1 {
        while parts.last() == Some(&"") {
            parts.pop();
        }
    }
    parts
}

/// Only queues of brokers in the given machine rooms (IDCs), split evenly (Java
/// `AllocateMessageQueueByMachineRoom`, name `MACHINE_ROOM`).
///
/// Broker names must look like `"<idc>@<name>"`; queues of other brokers and of rooms not in
/// [`consumer_idcs`](Self::consumer_idcs) are ignored. Of the `p` remaining queues, consumer `i`
/// of `c` takes the block `[i * (p / c), (i + 1) * (p / c))`, plus queue `i + (p / c) * c` when
/// `i < p % c`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllocateMessageQueueByMachineRoom {
    /// The machine rooms whose queues are consumed (Java `consumeridcs`).
    #[doc(alias = "consumeridcs")]
    pub consumer_idcs: HashSet<String>,
}

impl AllocateMessageQueueByMachineRoom {
    /// A strategy consuming the queues of the rooms in `consumer_idcs`.
    pub fn new<I, S>(consumer_idcs: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        AllocateMessageQueueByMachineRoom {
            consumer_idcs: consumer_idcs.into_iter().map(Into::into).collect(),
        }
    }
}

impl AllocateMessageQueueStrategy for AllocateMessageQueueByMachineRoom {
    fn allocate(
        &self,
        consumer_group: &str,
        current_cid: &str,
        mq_all: &[MessageQueue],
        cid_all: &[String],
    ) -> Result<Vec<MessageQueue>> {
        let Some(index) = checked_index(consumer_group, current_cid, mq_all, cid_all)? else {
            return Ok(Vec::new());
        };
        let pre: Vec<&MessageQueue> = mq_all
            .iter()
            .filter(|mq| {
                let parts = java_split_at(&mq.broker_name);
                parts.len() == 2 && self.consumer_idcs.contains(parts[0])
            })
            .collect();
        let c = cid_all.len();
        let per = pre.len() / c;
        let rem = pre.len() % c;
        let start = per * index;
        let mut result: Vec<MessageQueue> = pre[start..start + per]
            .iter()
            .map(|mq| (*mq).clone())
            .collect();
        if rem > index {
            result.push(pre[index + per * c].clone());
        }
        Ok(result)
    }

    fn name(&self) -> &str {
        "MACHINE_ROOM"
    }
}

/// Tells which machine room (IDC) a broker's queue and a consumer are deployed in (Java
/// `AllocateMachineRoomNearby.MachineRoomResolver`).
///
/// Implement it for your deployment, or build [`AllocateMachineRoomNearby::from_fns`] from two
/// closures. Both answers must be non-empty.
pub trait MachineRoomResolver: Send + Sync {
    /// The machine room of the broker hosting `mq` (Java `brokerDeployIn`).
    #[doc(alias = "brokerDeployIn")]
    fn broker_deploy_idc(&self, mq: &MessageQueue) -> String;

    /// The machine room of the consumer with client id `cid` (Java `consumerDeployIn`).
    #[doc(alias = "consumerDeployIn")]
    fn consumer_deploy_idc(&self, cid: &str) -> String;
}

/// A [`MachineRoomResolver`] made of two closures.
struct FnResolver<B, C> {
    broker: B,
    consumer: C,
}

impl<B, C> MachineRoomResolver for FnResolver<B, C>
where
    B: Fn(&MessageQueue) -> String + Send + Sync,
    C: Fn(&str) -> String + Send + Sync,
{
    fn broker_deploy_idc(&self, mq: &MessageQueue) -> String {
        (self.broker)(mq)
    }

    fn consumer_deploy_idc(&self, cid: &str) -> String {
        (self.consumer)(cid)
    }
}

/// Prefers queues in the consumer's own machine room (Java `AllocateMachineRoomNearby`, name
/// `MACHINE_ROOM_NEARBY-<inner name>`).
///
/// Queues and consumers are grouped by room with the [`MachineRoomResolver`]. Then:
///
/// 1. the queues of the current consumer's room are allocated with the inner strategy among the
///    consumers of that room;
/// 2. the queues of each room with **no** consumer are allocated with the inner strategy among
///    **all** consumers (rooms in string order).
///
/// The results are concatenated. A queue or consumer whose room resolves to an empty string is an
/// [`Error::Client`] (Java: "Machine room is null for ...").
pub struct AllocateMachineRoomNearby<S> {
    inner: S,
    resolver: Arc<dyn MachineRoomResolver>,
    name: String,
}

impl<S: AllocateMessageQueueStrategy> AllocateMachineRoomNearby<S> {
    /// Wraps `inner`, grouping by the rooms `resolver` reports.
    pub fn new(inner: S, resolver: Arc<dyn MachineRoomResolver>) -> Self {
        let name = format!("MACHINE_ROOM_NEARBY-{}", inner.name());
        AllocateMachineRoomNearby {
            inner,
            resolver,
            name,
        }
    }

    /// Wraps `inner`, with rooms given by two closures: `broker_deploy_idc` for queues and
    /// `consumer_deploy_idc` for consumer ids.
    pub fn from_fns<B, C>(inner: S, broker_deploy_idc: B, consumer_deploy_idc: C) -> Self
    where
        B: Fn(&MessageQueue) -> String + Send + Sync + 'static,
        C: Fn(&str) -> String + Send + Sync + 'static,
    {
        Self::new(
            inner,
            Arc::new(FnResolver {
                broker: broker_deploy_idc,
                consumer: consumer_deploy_idc,
            }),
        )
    }

    /// The inner strategy.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The machine room resolver.
    pub fn resolver(&self) -> &Arc<dyn MachineRoomResolver> {
        &self.resolver
    }
}

impl<S: fmt::Debug> fmt::Debug for AllocateMachineRoomNearby<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AllocateMachineRoomNearby")
            .field("name", &self.name)
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S: AllocateMessageQueueStrategy> AllocateMessageQueueStrategy
    for AllocateMachineRoomNearby<S>
{
    fn allocate(
        &self,
        consumer_group: &str,
        current_cid: &str,
        mq_all: &[MessageQueue],
        cid_all: &[String],
    ) -> Result<Vec<MessageQueue>> {
        if !check_allocate_args(consumer_group, current_cid, mq_all, cid_all)? {
            return Ok(Vec::new());
        }
        let mut room_to_mqs: BTreeMap<String, Vec<MessageQueue>> = BTreeMap::new();
        for mq in mq_all {
            let room = self.resolver.broker_deploy_idc(mq);
            if room.is_empty() {
                return Err(illegal(format!("Machine room is null for mq {mq}")));
            }
            room_to_mqs.entry(room).or_default().push(mq.clone());
        }
        let mut room_to_cids: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for cid in cid_all {
            let room = self.resolver.consumer_deploy_idc(cid);
            if room.is_empty() {
                return Err(illegal(format!(
                    "Machine room is null for consumer id {cid}"
                )));
            }
            room_to_cids.entry(room).or_default().push(cid.clone());
        }

        let mut result = Vec::new();
        // 1. The queues in my room, among the consumers in my room.
        let my_room = self.resolver.consumer_deploy_idc(current_cid);
        if let Some(mqs) = room_to_mqs.remove(&my_room) {
            let cids = room_to_cids
                .get(&my_room)
                .map(Vec::as_slice)
                .unwrap_or_default();
            result.extend(
                self.inner
                    .allocate(consumer_group, current_cid, &mqs, cids)?,
            );
        }
        // 2. The queues of rooms without consumers, among everyone.
        for (room, mqs) in &room_to_mqs {
            if !room_to_cids.contains_key(room) {
                result.extend(
                    self.inner
                        .allocate(consumer_group, current_cid, mqs, cid_all)?,
                );
            }
        }
        Ok(result)
    }

    fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queues(n: usize) -> Vec<MessageQueue> {
        (0..n)
            .map(|i| MessageQueue::new("T", "broker-a", i as i32))
            .collect()
    }

    fn cids(c: usize) -> Vec<String> {
        (1..=c).map(|i| format!("c{i}")).collect()
    }

    fn ids(mqs: &[MessageQueue]) -> Vec<i32> {
        mqs.iter().map(|mq| mq.queue_id).collect()
    }

    /// Allocation of every consumer in `cid_all`, in order.
    fn allocate_all(
        strategy: &dyn AllocateMessageQueueStrategy,
        mq_all: &[MessageQueue],
        cid_all: &[String],
    ) -> Vec<Vec<MessageQueue>> {
        cid_all
            .iter()
            .map(|cid| strategy.allocate("G", cid, mq_all, cid_all).unwrap())
            .collect()
    }

    fn golden(strategy: &dyn AllocateMessageQueueStrategy, expected: [&[i32]; 3]) {
        let got = allocate_all(strategy, &queues(8), &cids(3));
        for (i, want) in expected.iter().enumerate() {
            assert_eq!(ids(&got[i]), *want, "{} c{}", strategy.name(), i + 1);
        }
    }

    #[test]
    fn golden_avg() {
        golden(
            &AllocateMessageQueueAveragely,
            [&[0, 1, 2], &[3, 4, 5], &[6, 7]],
        );
    }

    #[test]
    fn golden_avg_by_circle() {
        golden(
            &AllocateMessageQueueAveragelyByCircle,
            [&[0, 3, 6], &[1, 4, 7], &[2, 5]],
        );
    }

    #[test]
    fn golden_consistent_hash() {
        golden(
            &AllocateMessageQueueConsistentHash::default(),
            [&[0, 4], &[1, 2, 5, 6, 7], &[3]],
        );
    }

    #[test]
    fn md5_hash_reads_first_four_bytes_big_endian() {
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e.
        assert_eq!(md5_hash(""), 0xd41d_8cd9);
        // MD5("abc") = 900150983cd24fb0d6963f7d28e17f72: above i32::MAX, stays unsigned.
        assert_eq!(md5_hash("abc"), 0x9001_5098);
    }

    #[test]
    fn names_match_java() {
        assert_eq!(AllocateMessageQueueAveragely.name(), "AVG");
        assert_eq!(
            AllocateMessageQueueAveragelyByCircle.name(),
            "AVG_BY_CIRCLE"
        );
        assert_eq!(
            AllocateMessageQueueConsistentHash::default().name(),
            "CONSISTENT_HASH"
        );
        assert_eq!(AllocateMessageQueueByConfig::default().name(), "CONFIG");
        assert_eq!(
            AllocateMessageQueueByMachineRoom::default().name(),
            "MACHINE_ROOM"
        );
        let nearby = AllocateMachineRoomNearby::from_fns(
            AllocateMessageQueueAveragely,
            |_: &MessageQueue| "a".to_string(),
            |_: &str| "a".to_string(),
        );
        assert_eq!(nearby.name(), "MACHINE_ROOM_NEARBY-AVG");
        assert_eq!(
            AllocateMessageQueueConsistentHash::default().virtual_node_cnt,
            10
        );
    }

    /// Every queue goes to exactly one consumer and shares differ by at most one.
    fn assert_partition(strategy: &dyn AllocateMessageQueueStrategy, n: usize, c: usize) {
        let mq_all = queues(n);
        let all = allocate_all(strategy, &mq_all, &cids(c));
        let mut seen = vec![0usize; n];
        for mq in all.iter().flatten() {
            seen[mq.queue_id as usize] += 1;
        }
        assert!(
            seen.iter().all(|&k| k == 1),
            "{} n={n} c={c}: {seen:?}",
            strategy.name()
        );
        let max = all.iter().map(Vec::len).max().unwrap();
        let min = all.iter().map(Vec::len).min().unwrap();
        assert!(
            max - min <= 1,
            "{} n={n} c={c}: {min}..{max}",
            strategy.name()
        );
        assert_eq!(max, n.div_ceil(c), "{} n={n} c={c}", strategy.name());
    }

    #[test]
    fn avg_and_circle_partition_evenly() {
        for n in 1..=40 {
            for c in 1..=15 {
                assert_partition(&AllocateMessageQueueAveragely, n, c);
                assert_partition(&AllocateMessageQueueAveragelyByCircle, n, c);
            }
        }
    }

    #[test]
    fn avg_gives_contiguous_blocks() {
        for n in 1..=30 {
            for c in 1..=10 {
                let all = allocate_all(&AllocateMessageQueueAveragely, &queues(n), &cids(c));
                let flat: Vec<i32> = all.iter().flat_map(|v| ids(v)).collect();
                assert_eq!(flat, (0..n as i32).collect::<Vec<_>>(), "n={n} c={c}");
            }
        }
    }

    #[test]
    fn consistent_hash_partitions() {
        let strategy = AllocateMessageQueueConsistentHash::default();
        for n in 1..=20 {
            for c in 1..=6 {
                let all = allocate_all(&strategy, &queues(n), &cids(c));
                let mut flat: Vec<i32> = all.iter().flat_map(|v| ids(v)).collect();
                flat.sort_unstable();
                assert_eq!(flat, (0..n as i32).collect::<Vec<_>>(), "n={n} c={c}");
            }
        }
    }

    #[test]
    fn consistent_hash_without_virtual_nodes_allocates_nothing() {
        let strategy = AllocateMessageQueueConsistentHash::new(0);
        assert!(strategy
            .allocate("G", "c1", &queues(4), &cids(2))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn more_consumers_than_queues_leaves_some_idle() {
        let strategies: [&dyn AllocateMessageQueueStrategy; 3] = [
            &AllocateMessageQueueAveragely,
            &AllocateMessageQueueAveragelyByCircle,
            &AllocateMessageQueueConsistentHash::new(10),
        ];
        for strategy in strategies {
            let all = allocate_all(strategy, &queues(3), &cids(5));
            assert_eq!(
                all.iter().map(Vec::len).sum::<usize>(),
                3,
                "{}",
                strategy.name()
            );
            assert!(all.iter().any(Vec::is_empty), "{}", strategy.name());
        }
        let all = allocate_all(&AllocateMessageQueueAveragely, &queues(3), &cids(5));
        assert_eq!(
            all.iter().map(|v| ids(v)).collect::<Vec<_>>(),
            vec![vec![0], vec![1], vec![2], vec![], vec![]]
        );
    }

    #[test]
    fn unknown_consumer_gets_nothing() {
        let strategies: [&dyn AllocateMessageQueueStrategy; 5] = [
            &AllocateMessageQueueAveragely,
            &AllocateMessageQueueAveragelyByCircle,
            &AllocateMessageQueueConsistentHash::default(),
            &AllocateMessageQueueByMachineRoom::new(["a"]),
            &AllocateMachineRoomNearby::from_fns(
                AllocateMessageQueueAveragely,
                |_: &MessageQueue| "a".to_string(),
                |_: &str| "a".to_string(),
            ),
        ];
        for strategy in strategies {
            let got = strategy.allocate("G", "zz", &queues(8), &cids(3)).unwrap();
            assert!(got.is_empty(), "{}", strategy.name());
        }
    }

    #[test]
    fn empty_inputs_are_errors() {
        let strategies: [&dyn AllocateMessageQueueStrategy; 5] = [
            &AllocateMessageQueueAveragely,
            &AllocateMessageQueueAveragelyByCircle,
            &AllocateMessageQueueConsistentHash::default(),
            &AllocateMessageQueueByMachineRoom::new(["a"]),
            &AllocateMachineRoomNearby::from_fns(
                AllocateMessageQueueAveragely,
                |_: &MessageQueue| "a".to_string(),
                |_: &str| "a".to_string(),
            ),
        ];
        let message = |r: Result<Vec<MessageQueue>>| match r {
            Err(Error::Client { code, message, .. }) => {
                assert_eq!(code, ILLEGAL_ARGUMENT);
                message
            }
            other => panic!("expected a client error, got {other:?}"),
        };
        for strategy in strategies {
            let mqs = queues(2);
            let cs = cids(2);
            assert_eq!(
                message(strategy.allocate("G", "", &mqs, &cs)),
                "currentCID is empty"
            );
            assert_eq!(
                message(strategy.allocate("G", "c1", &[], &cs)),
                "mqAll is null or mqAll empty"
            );
            assert_eq!(
                message(strategy.allocate("G", "c1", &mqs, &[])),
                "cidAll is null or cidAll empty"
            );
        }
    }

    #[test]
    fn by_config_returns_its_list() {
        let list = vec![
            MessageQueue::new("X", "broker-z", 9),
            MessageQueue::new("T", "broker-a", 1),
        ];
        let strategy = AllocateMessageQueueByConfig::new(list.clone());
        assert_eq!(
            strategy.allocate("G", "c1", &queues(8), &cids(3)).unwrap(),
            list
        );
        // No checks: even empty input returns the list.
        assert_eq!(strategy.allocate("G", "", &[], &[]).unwrap(), list);
    }

    #[test]
    fn java_split_drops_trailing_empty_parts() {
        assert_eq!(java_split_at("a@b"), ["a", "b"]);
        assert_eq!(java_split_at("a@b@"), ["a", "b"]);
        assert_eq!(java_split_at("@b"), ["", "b"]);
        assert_eq!(java_split_at("a@"), ["a"]);
        assert_eq!(java_split_at("a@b@c"), ["a", "b", "c"]);
        assert_eq!(java_split_at("ab"), ["ab"]);
    }

    #[test]
    fn machine_room_keeps_matching_idcs_and_splits_with_remainder() {
        // 5 queues in room1, 3 in room2, 2 in room3, 1 without a room.
        let mut mq_all = Vec::new();
        for i in 0..5 {
            mq_all.push(MessageQueue::new("T", "room1@broker-a", i));
        }
        for i in 0..3 {
            mq_all.push(MessageQueue::new("T", "room2@broker-b", i));
        }
        for i in 0..2 {
            mq_all.push(MessageQueue::new("T", "room3@broker-c", i));
        }
        mq_all.push(MessageQueue::new("T", "broker-d", 0));
        mq_all.sort();
        let strategy = AllocateMessageQueueByMachineRoom::new(["room1", "room3"]);
        let cid_all = cids(3);
        let all = allocate_all(&strategy, &mq_all, &cid_all);
        let names = |v: &[MessageQueue]| -> Vec<String> {
            v.iter()
                .map(|mq| format!("{}:{}", mq.broker_name, mq.queue_id))
                .collect()
        };
        // pre = a0..a4, c0, c1 (7 queues); 7 / 3 = 2 each, remainder 1 goes to c1 (pre[6]).
        assert_eq!(
            names(&all[0]),
            ["room1@broker-a:0", "room1@broker-a:1", "room3@broker-c:1"]
        );
        assert_eq!(names(&all[1]), ["room1@broker-a:2", "room1@broker-a:3"]);
        assert_eq!(names(&all[2]), ["room1@broker-a:4", "room3@broker-c:0"]);
        assert!(all
            .iter()
            .flatten()
            .all(|mq| !mq.broker_name.starts_with("room2") && mq.broker_name != "broker-d"));
    }

    /// Rooms: brokers "<room>@name", consumers "<room>-<n>".
    fn nearby() -> AllocateMachineRoomNearby<AllocateMessageQueueAveragely> {
        AllocateMachineRoomNearby::from_fns(
            AllocateMessageQueueAveragely,
            |mq: &MessageQueue| mq.broker_name.split('@').next().unwrap_or("").to_string(),
            |cid: &str| cid.split('-').next().unwrap_or("").to_string(),
        )
    }

    #[test]
    fn nearby_prefers_own_room_and_shares_rooms_without_consumers() {
        let mut mq_all = Vec::new();
        for room in ["hz", "sh", "bj"] {
            for i in 0..4 {
                mq_all.push(MessageQueue::new("T", format!("{room}@broker"), i));
            }
        }
        mq_all.sort();
        // Consumers in hz (2) and sh (1); nobody in bj.
        let cid_all: Vec<String> = vec!["hz-1".into(), "hz-2".into(), "sh-1".into()];
        let strategy = nearby();
        let all = allocate_all(&strategy, &mq_all, &cid_all);
        let names = |v: &[MessageQueue]| -> Vec<String> {
            v.iter()
                .map(|mq| format!("{}:{}", mq.broker_name, mq.queue_id))
                .collect()
        };
        // bj's 4 queues go AVG among all three: hz-1 → 0,1; hz-2 → 2; sh-1 → 3.
        assert_eq!(
            names(&all[0]),
            ["hz@broker:0", "hz@broker:1", "bj@broker:0", "bj@broker:1"]
        );
        assert_eq!(
            names(&all[1]),
            ["hz@broker:2", "hz@broker:3", "bj@broker:2"]
        );
        assert_eq!(
            names(&all[2]),
            [
                "sh@broker:0",
                "sh@broker:1",
                "sh@broker:2",
                "sh@broker:3",
                "bj@broker:3"
            ]
        );
        let total: usize = all.iter().map(Vec::len).sum();
        assert_eq!(total, mq_all.len());
    }

    #[test]
    fn nearby_rejects_empty_rooms() {
        let strategy = AllocateMachineRoomNearby::from_fns(
            AllocateMessageQueueAveragely,
            |_: &MessageQueue| String::new(),
            |_: &str| "a".to_string(),
        );
        let err = strategy
            .allocate("G", "c1", &queues(2), &cids(2))
            .unwrap_err();
        assert!(
            err.to_string().contains("Machine room is null for mq"),
            "{err}"
        );
    }

    #[test]
    fn nearby_accepts_a_resolver_impl_and_a_dyn_inner() {
        struct AllIn;
        impl MachineRoomResolver for AllIn {
            fn broker_deploy_idc(&self, _: &MessageQueue) -> String {
                "x".into()
            }
            fn consumer_deploy_idc(&self, _: &str) -> String {
                "x".into()
            }
        }
        let inner: Box<dyn AllocateMessageQueueStrategy> =
            Box::new(AllocateMessageQueueAveragelyByCircle);
        let strategy = AllocateMachineRoomNearby::new(inner, Arc::new(AllIn));
        assert_eq!(strategy.name(), "MACHINE_ROOM_NEARBY-AVG_BY_CIRCLE");
        let got = strategy.allocate("G", "c2", &queues(8), &cids(3)).unwrap();
        assert_eq!(ids(&got), [1, 4, 7]);
        assert!(format!("{strategy:?}").contains("MACHINE_ROOM_NEARBY-AVG_BY_CIRCLE"));
    }

    #[test]
    fn closure_is_a_strategy() {
        let last_queue_to_first_consumer =
            |_: &str, cid: &str, mq_all: &[MessageQueue], cid_all: &[String]| {
                if cid_all.first().map(String::as_str) == Some(cid) {
                    mq_all.last().cloned().into_iter().collect()
                } else {
                    Vec::new()
                }
            };
        assert_eq!(last_queue_to_first_consumer.name(), "CUSTOM");
        let got = last_queue_to_first_consumer
            .allocate("G", "c1", &queues(8), &cids(3))
            .unwrap();
        assert_eq!(ids(&got), [7]);
        // Usable as a shared trait object, and inside the nearby strategy.
        let shared: Arc<dyn AllocateMessageQueueStrategy> = Arc::new(last_queue_to_first_consumer);
        let nearby = AllocateMachineRoomNearby::from_fns(
            shared,
            |_: &MessageQueue| "a".to_string(),
            |_: &str| "a".to_string(),
        );
        assert_eq!(nearby.name(), "MACHINE_ROOM_NEARBY-CUSTOM");
        assert_eq!(
            ids(&nearby.allocate("G", "c1", &queues(8), &cids(3)).unwrap()),
            [7]
        );
    }

    #[test]
    fn strategies_are_send_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<AllocateMessageQueueAveragely>();
        assert_send_sync::<AllocateMessageQueueAveragelyByCircle>();
        assert_send_sync::<AllocateMessageQueueConsistentHash>();
        assert_send_sync::<AllocateMessageQueueByConfig>();
        assert_send_sync::<AllocateMessageQueueByMachineRoom>();
        assert_send_sync::<AllocateMachineRoomNearby<AllocateMessageQueueAveragely>>();
        assert_send_sync::<Arc<dyn AllocateMessageQueueStrategy>>();
    }
}
