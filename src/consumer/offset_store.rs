//! Offset stores (Java `OffsetStore`, `RemoteBrokerOffsetStore`, `LocalFileOffsetStore`).
//!
//! Offsets are "the next offset to consume" (what `ProcessQueue::remove_messages` returns).
//! Clustering consumers keep them at the broker ([`RemoteBrokerOffsetStore`]); broadcasting
//! consumers in a local JSON file ([`LocalFileOffsetStore`]).
//!
//! Both keep the in-memory table as `RwLock<HashMap<MessageQueue, AtomicI64>>`: the consume
//! threads' `update_offset` for a known queue takes only the read lock and does a CAS loop, so
//! concurrent consumers of different queues never serialize on a writer lock; the write lock is
//! taken only to add or remove a queue.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};

use parking_lot::{Mutex, RwLock};

use std::sync::Weak;
use std::time::Duration;

use crate::client::api::expect_success;
use crate::client::instance::MQClientInstance;
use crate::common::MessageQueue;
use crate::consumer::push_consumer::shut_down;
use crate::error::{Error, Result};
use crate::remoting::protocol::body::OffsetSerializeWrapper;
use crate::remoting::protocol::header::{
    QueryConsumerOffsetRequestHeader, QueryConsumerOffsetResponseHeader,
    UpdateConsumerOffsetRequestHeader,
};
use crate::remoting::protocol::{RemotingCommand, RequestCode, ResponseCode};

/// Where `read_offset` looks (Java `ReadOffsetType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadOffsetType {
    /// Only the in-memory table; −1 if absent.
    ReadFromMemory,
    /// Only the store (broker or file); the result is cached.
    ReadFromStore,
}

/// A consumer group's offset store (Java `OffsetStore`).
pub(crate) trait OffsetStore: Send + Sync {
    /// Loads persisted offsets into memory (local file: reads it; remote: nothing).
    fn load(&self) -> Result<()>;
    /// Sets `mq`'s offset, creating the entry if absent; with `increase_only` the cached value is
    /// only ever raised.
    fn update_offset(&self, mq: &MessageQueue, offset: i64, increase_only: bool);
    /// Reads `mq`'s offset: −1 when the store has none; −2 (remote) when it could not be read (the
    /// broker could not be asked, or answered an error other than `QUERY_NOT_FOUND`).
    fn read_offset(&self, mq: &MessageQueue, ty: ReadOffsetType) -> i64;
    /// Persists the cached offsets of `mqs` (does nothing when `mqs` is empty).
    fn persist_all(&self, mqs: &HashSet<MessageQueue>);
    /// Persists one queue's cached offset.
    fn persist(&self, mq: &MessageQueue);
    /// Persists one queue's cached offset and, for the broker store, waits for the broker's
    /// answer: an orderly consumer calls it before it gives a queue's lock back, so the next
    /// owner reads the offset it leaves. Defaults to [`persist`](Self::persist).
    fn persist_and_wait(&self, mq: &MessageQueue) {
        self.persist(mq)
    }
    /// Persists the cached offsets of `mqs` and waits until they are stored: the broker
    /// answered each update (remote), or the file is written and synced (local). Every queue
    /// is tried; the first failure is returned.
    fn persist_sync(&self, mqs: &HashSet<MessageQueue>) -> Result<()>;
    /// Forgets `mq` (remote only; Java's local store keeps it).
    fn remove_offset(&self, mq: &MessageQueue);
    /// A copy of the cached offsets of `topic` (all topics when `topic` is blank).
    fn clone_offset_table(&self, topic: &str) -> HashMap<MessageQueue, i64>;
}

/// The in-memory offset table shared by both stores.
#[derive(Debug, Default)]
struct OffsetTable {
    map: RwLock<HashMap<MessageQueue, AtomicI64>>,
}

impl OffsetTable {
    fn update(&self, mq: &MessageQueue, offset: i64, increase_only: bool) {
        {
            let map = self.map.read();
            if let Some(cur) = map.get(mq) {
                Self::apply(cur, offset, increase_only);
                return;
            }
        }
        let mut map = self.map.write();
        match map.get(mq) {
            // Raced with another creator: apply on top of its value.
            Some(cur) => Self::apply(cur, offset, increase_only),
            None => {
                map.insert(mq.clone(), AtomicI64::new(offset));
            }
        }
    }

    /// Java `MixAll.compareAndIncreaseOnly` or a plain set.
    fn apply(cur: &AtomicI64, offset: i64, increase_only: bool) {
        if increase_only {
            cur.fetch_max(offset, Ordering::AcqRel);
        } else {
            cur.store(offset, Ordering::Release);
        }
    }

    fn get(&self, mq: &MessageQueue) -> Option<i64> {
        self.map.read().get(mq).map(|v| v.load(Ordering::Acquire))
    }

    fn remove(&self, mq: &MessageQueue) {
        self.map.write().remove(mq);
    }

    fn clone_for_topic(&self, topic: &str) -> HashMap<MessageQueue, i64> {
        let blank = topic.trim().is_empty();
        self.map
            .read()
            .iter()
            .filter(|(mq, _)| blank || mq.topic == topic)
            .map(|(mq, v)| (mq.clone(), v.load(Ordering::Acquire)))
            .collect()
    }

    /// The cached (mq, offset) pairs, sorted by queue for a deterministic file order.
    fn snapshot_sorted(&self) -> Vec<(MessageQueue, i64)> {
        let mut v: Vec<_> = self
            .map
            .read()
            .iter()
            .map(|(mq, off)| (mq.clone(), off.load(Ordering::Acquire)))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

// ---------------------------------------------------------------------------------------------
// Remote (clustering)

/// The broker calls a [`RemoteBrokerOffsetStore`] needs; the client implements it over the
/// remoting client (broker lookup by name, master address, route refresh once if unknown).
pub(crate) trait OffsetBrokerApi: Send + Sync {
    /// QUERY_CONSUMER_OFFSET to the queue's master. A non-success answer must come back as
    /// [`Error::Broker`] with its code (QUERY_NOT_FOUND: the group has no offset for `mq`).
    fn query_consumer_offset(&self, mq: &MessageQueue) -> Result<i64>;
    /// UPDATE_CONSUMER_OFFSET, one-way or synchronous (timeout 5 s).
    fn update_consumer_offset(&self, mq: &MessageQueue, offset: i64, oneway: bool) -> Result<()>;
}

const OFFSET_RPC_TIMEOUT: Duration = Duration::from_secs(5);

/// [`OffsetBrokerApi`] over the client instance: QUERY_CONSUMER_OFFSET and
/// UPDATE_CONSUMER_OFFSET to the queue's master broker (Java `MQClientAPIImpl`'s offset calls).
pub(crate) struct BrokerOffsetApi {
    pub(crate) instance: Weak<MQClientInstance>,
    pub(crate) group: String,
}

impl OffsetBrokerApi for BrokerOffsetApi {
    fn query_consumer_offset(&self, mq: &MessageQueue) -> Result<i64> {
        let instance = self.instance.upgrade().ok_or_else(shut_down)?;
        let addr = instance.master_addr_refreshing(mq)?;
        let header = QueryConsumerOffsetRequestHeader {
            consumer_group: self.group.clone(),
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
            bname: Some(mq.broker_name.clone()),
        };
        let req = instance.api().request(RemotingCommand::request_with_header(
            RequestCode::QUERY_CONSUMER_OFFSET,
            &header,
        ));
        let resp = expect_success(
            instance
                .remoting()
                .invoke_sync(&addr, req, OFFSET_RPC_TIMEOUT)?,
            &addr,
        )?;
        let h: QueryConsumerOffsetResponseHeader = resp.decode_header()?;
        Ok(h.offset)
    }

    fn update_consumer_offset(&self, mq: &MessageQueue, offset: i64, oneway: bool) -> Result<()> {
        let instance = self.instance.upgrade().ok_or_else(shut_down)?;
        let addr = instance.master_addr_refreshing(mq)?;
        let header = UpdateConsumerOffsetRequestHeader {
            consumer_group: self.group.clone(),
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
            commit_offset: offset,
            bname: Some(mq.broker_name.clone()),
        };
        let req = instance.api().request(RemotingCommand::request_with_header(
            RequestCode::UPDATE_CONSUMER_OFFSET,
            &header,
        ));
        if oneway {
            instance
                .remoting()
                .invoke_oneway(&addr, req, OFFSET_RPC_TIMEOUT)
        } else {
            let resp = instance
                .remoting()
                .invoke_sync(&addr, req, OFFSET_RPC_TIMEOUT)?;
            expect_success(resp, &addr).map(|_| ())
        }
    }
}

/// Offsets kept at the broker (Java `RemoteBrokerOffsetStore`), for clustering consumers.
pub(crate) struct RemoteBrokerOffsetStore<B> {
    group: String,
    api: B,
    table: OffsetTable,
}

impl<B> std::fmt::Debug for RemoteBrokerOffsetStore<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteBrokerOffsetStore")
            .field("group", &self.group)
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl<B: OffsetBrokerApi> RemoteBrokerOffsetStore<B> {
    /// A store for `group` talking to brokers through `api`.
    pub(crate) fn new(group: impl Into<String>, api: B) -> Self {
        RemoteBrokerOffsetStore {
            group: group.into(),
            api,
            table: OffsetTable::default(),
        }
    }

    fn send(&self, mq: &MessageQueue, offset: i64) {
        match self.api.update_consumer_offset(mq, offset, true) {
            Ok(()) => log::debug!(
                "[persist] group {} {mq} offset {offset} sent to broker",
                self.group
            ),
            Err(e) => log::warn!(
                "[persist] group {} {mq} offset {offset} not sent: {e}",
                self.group
            ),
        }
    }
}

impl<B: OffsetBrokerApi> OffsetStore for RemoteBrokerOffsetStore<B> {
    fn load(&self) -> Result<()> {
        Ok(())
    }

    fn update_offset(&self, mq: &MessageQueue, offset: i64, increase_only: bool) {
        self.table.update(mq, offset, increase_only);
    }

    fn read_offset(&self, mq: &MessageQueue, ty: ReadOffsetType) -> i64 {
        if ty == ReadOffsetType::ReadFromMemory {
            return self.table.get(mq).unwrap_or(-1);
        }
        match self.api.query_consumer_offset(mq) {
            Ok(offset) => {
                self.table.update(mq, offset, false);
                offset
            }
            // Only this code means "no offset": anything else read as no offset would start the
            // queue at consume_from_where and skip or repeat messages.
            Err(Error::Broker {
                code: ResponseCode::QUERY_NOT_FOUND,
                remark,
                ..
            }) => {
                log::debug!("group {} {mq}: broker has no offset ({remark})", self.group);
                -1
            }
            Err(e) => {
                log::warn!("group {} {mq}: cannot query offset: {e}", self.group);
                -2
            }
        }
    }

    fn persist_all(&self, mqs: &HashSet<MessageQueue>) {
        if mqs.is_empty() {
            return;
        }
        let mut unused = Vec::new();
        for (mq, offset) in self.table.snapshot_sorted() {
            if mqs.contains(&mq) {
                self.send(&mq, offset);
            } else {
                unused.push(mq);
            }
        }
        for mq in unused {
            self.table.remove(&mq);
            log::info!("remove unused mq {mq}, group {}", self.group);
        }
    }

    fn persist(&self, mq: &MessageQueue) {
        if let Some(offset) = self.table.get(mq) {
            self.send(mq, offset);
        }
    }

    fn persist_and_wait(&self, mq: &MessageQueue) {
        if let Some(offset) = self.table.get(mq) {
            if let Err(e) = self.api.update_consumer_offset(mq, offset, false) {
                log::warn!(
                    "[persist] group {} {mq} offset {offset} not sent: {e}",
                    self.group
                );
            }
        }
    }

    fn persist_sync(&self, mqs: &HashSet<MessageQueue>) -> Result<()> {
        let mut first = None;
        for (mq, offset) in self.table.snapshot_sorted() {
            if !mqs.contains(&mq) {
                continue;
            }
            if let Err(e) = self.api.update_consumer_offset(&mq, offset, false) {
                log::warn!(
                    "[persist] group {} {mq} offset {offset} not stored: {e}",
                    self.group
                );
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn remove_offset(&self, mq: &MessageQueue) {
        self.table.remove(mq);
    }

    fn clone_offset_table(&self, topic: &str) -> HashMap<MessageQueue, i64> {
        self.table.clone_for_topic(topic)
    }
}

// ---------------------------------------------------------------------------------------------
// Local file (broadcasting)

/// Environment variable overriding the directory of local offset files (Java system property
/// `rocketmq.client.localOffsetStoreDir`).
pub(crate) const LOCAL_OFFSET_STORE_DIR_ENV: &str = "ROCKETMQ_CLIENT_LOCAL_OFFSET_STORE_DIR";

/// The default directory of local offset files: the env override, else `$HOME/.rocketmq_offsets`.
pub(crate) fn default_local_offset_store_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(LOCAL_OFFSET_STORE_DIR_ENV) {
        if !dir.is_empty() {
            return PathBuf::from(dir);
        }
    }
    let home = std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".rocketmq_offsets")
}

/// Offsets kept in `<dir>/<client_id>/<group>/offsets.json` (Java `LocalFileOffsetStore`), for
/// broadcasting consumers. The file has Java's pretty fastjson form, so a Java and a Rust client
/// can read each other's files.
#[derive(Debug)]
pub(crate) struct LocalFileOffsetStore {
    group: String,
    path: PathBuf,
    table: OffsetTable,
    /// Serializes file writers (the scheduler's persist and shutdown's persist).
    file_lock: Mutex<()>,
}

impl LocalFileOffsetStore {
    /// A store for `group` under `dir` (default: [`default_local_offset_store_dir`]).
    pub(crate) fn new(client_id: &str, group: &str, dir: Option<PathBuf>) -> Self {
        let dir = dir.unwrap_or_else(default_local_offset_store_dir);
        LocalFileOffsetStore {
            group: group.to_string(),
            path: dir.join(client_id).join(group).join("offsets.json"),
            table: OffsetTable::default(),
            file_lock: Mutex::new(()),
        }
    }

    /// The offsets file.
    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn sibling(&self, ext: &str) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(ext);
        PathBuf::from(s)
    }

    /// Java `readLocalOffset`: the file, or `.bak` when the file is missing, empty or
    /// unparseable. `Ok(None)` when neither has content; an error when only an unparseable
    /// `.bak` is left.
    fn read_local(&self) -> Result<Option<OffsetSerializeWrapper>> {
        if let Some(content) = read_nonempty(&self.path)? {
            match OffsetSerializeWrapper::decode(content.as_bytes()) {
                Ok(w) => return Ok(Some(w)),
                Err(e) => log::warn!(
                    "offset file {} unparseable ({e}), trying the backup",
                    self.path.display()
                ),
            }
        }
        let bak = self.sibling(".bak");
        match read_nonempty(&bak)? {
            Some(content) => Ok(Some(OffsetSerializeWrapper::decode(content.as_bytes())?)),
            None => Ok(None),
        }
    }

    /// Java `MixAll.string2File`, made crash-safe: write and fsync `<file>.tmp`, copy the previous
    /// content to `<file>.bak`, then rename `.tmp` over the file (atomic on POSIX, so the file is
    /// always either the old or the new content).
    fn write_atomically(&self, content: &str) -> std::io::Result<()> {
        if let Some(parent) = self.path.parent() {
            fs::create_dir_all(parent)?;
        }
        let tmp = self.sibling(".tmp");
        write_synced(&tmp, content.as_bytes())?;
        if let Some(prev) = read_nonempty(&self.path)? {
            write_synced(&self.sibling(".bak"), prev.as_bytes())?;
        }
        fs::rename(&tmp, &self.path)?;
        // Make the rename itself durable.
        if let Some(parent) = self.path.parent() {
            if let Ok(d) = fs::File::open(parent) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    fn persist_set(&self, mqs: &HashSet<MessageQueue>) -> Result<()> {
        if mqs.is_empty() {
            return Ok(());
        }
        let _guard = self.file_lock.lock();
        // Do not overwrite a file that cannot be read: it may hold other queues' offsets.
        let mut wrapper = self.read_local()?.unwrap_or_default();
        for (mq, offset) in self.table.snapshot_sorted() {
            if mqs.contains(&mq) {
                wrapper.put(&mq, offset);
            }
        }
        let json = wrapper.encode_pretty()?;
        self.write_atomically(&json)?;
        Ok(())
    }

    fn log_persist_failure(&self, e: &Error) {
        log::error!(
            "persisting offsets of group {} to {} failed: {e}",
            self.group,
            self.path.display()
        );
    }
}

/// The file's content, or `None` when it is missing or empty.
fn read_nonempty(path: &Path) -> std::io::Result<Option<String>> {
    match fs::read(path) {
        Ok(bytes) if bytes.is_empty() => Ok(None),
        // Invalid UTF-8 is treated as unparseable content by the caller.
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

impl OffsetStore for LocalFileOffsetStore {
    fn load(&self) -> Result<()> {
        if let Some(w) = self.read_local()? {
            for (mq, offset) in w.offset_table {
                log::info!("load consumer's offset, {} {mq} {offset}", self.group);
                self.table.update(&mq, offset, false);
            }
        }
        Ok(())
    }

    fn update_offset(&self, mq: &MessageQueue, offset: i64, increase_only: bool) {
        self.table.update(mq, offset, increase_only);
    }

    fn read_offset(&self, mq: &MessageQueue, ty: ReadOffsetType) -> i64 {
        if ty == ReadOffsetType::ReadFromMemory {
            return self.table.get(mq).unwrap_or(-1);
        }
        match self.read_local() {
            Ok(Some(w)) => match w.get(mq) {
                Some(offset) => {
                    self.table.update(mq, offset, false);
                    offset
                }
                None => -1,
            },
            Ok(None) => -1,
            Err(e) => {
                log::warn!("group {} {mq}: cannot read offset file: {e}", self.group);
                -1
            }
        }
    }

    fn persist_all(&self, mqs: &HashSet<MessageQueue>) {
        if let Err(e) = self.persist_set(mqs) {
            self.log_persist_failure(&e);
        }
    }

    fn persist_sync(&self, mqs: &HashSet<MessageQueue>) -> Result<()> {
        self.persist_set(mqs)
    }

    /// Java's local `persist(mq)` is empty; writing the one queue is cheap and keeps a removed
    /// queue's last offset on disk (no duplicates after it comes back).
    fn persist(&self, mq: &MessageQueue) {
        if self.table.get(mq).is_some() {
            let mut one = HashSet::with_capacity(1);
            one.insert(mq.clone());
            if let Err(e) = self.persist_set(&one) {
                self.log_persist_failure(&e);
            }
        }
    }

    /// As in Java, the local store keeps the offset (a broadcasting consumer reads it back when
    /// the queue returns).
    fn remove_offset(&self, _mq: &MessageQueue) {}

    fn clone_offset_table(&self, topic: &str) -> HashMap<MessageQueue, i64> {
        self.table.clone_for_topic(topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const GOLDEN_PRETTY: &str = "{\n\t\"offsetTable\":{{\n\t\t\t\"brokerName\":\"broker-a\",\n\t\t\t\"queueId\":1,\n\t\t\t\"topic\":\"T\"\n\t\t}:7,{\n\t\t\t\"brokerName\":\"broker-a\",\n\t\t\t\"queueId\":0,\n\t\t\t\"topic\":\"T\"\n\t\t}:42\n\t}\n}";

    fn mq(q: i32) -> MessageQueue {
        MessageQueue::new("T", "broker-a", q)
    }

    fn set(qs: &[MessageQueue]) -> HashSet<MessageQueue> {
        qs.iter().cloned().collect()
    }

    /// A fresh directory under the system temp dir (pid + nanos + a counter), removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static N: AtomicI64 = AtomicI64::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let p = std::env::temp_dir().join(format!(
                "rmq-offsets-{}-{}-{}",
                std::process::id(),
                nanos,
                N.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn local(dir: &TempDir) -> LocalFileOffsetStore {
        LocalFileOffsetStore::new("127.0.0.1@1", "cg", Some(dir.0.clone()))
    }

    #[test]
    fn local_path_layout() {
        let dir = TempDir::new();
        let s = local(&dir);
        assert_eq!(
            s.path(),
            dir.0.join("127.0.0.1@1").join("cg").join("offsets.json")
        );
    }

    #[test]
    fn local_dir_env_override() {
        // The only test that reads this variable; the others pass the directory explicitly.
        std::env::set_var(LOCAL_OFFSET_STORE_DIR_ENV, "/tmp/rmq-offsets-env-test");
        let s = LocalFileOffsetStore::new("c", "g", None);
        std::env::remove_var(LOCAL_OFFSET_STORE_DIR_ENV);
        assert_eq!(
            s.path(),
            Path::new("/tmp/rmq-offsets-env-test/c/g/offsets.json")
        );
        assert!(default_local_offset_store_dir().ends_with(".rocketmq_offsets"));
    }

    #[test]
    fn local_round_trip_through_file() {
        let dir = TempDir::new();
        let s = local(&dir);
        s.update_offset(&mq(0), 42, false);
        s.update_offset(&mq(1), 7, false);
        s.persist_all(&set(&[mq(0), mq(1)]));
        let s2 = local(&dir);
        assert_eq!(s2.read_offset(&mq(0), ReadOffsetType::ReadFromMemory), -1);
        s2.load().unwrap();
        assert_eq!(s2.read_offset(&mq(0), ReadOffsetType::ReadFromMemory), 42);
        let s3 = local(&dir);
        assert_eq!(s3.read_offset(&mq(1), ReadOffsetType::ReadFromStore), 7);
        // ReadFromStore caches.
        assert_eq!(s3.read_offset(&mq(1), ReadOffsetType::ReadFromMemory), 7);
        assert_eq!(s3.read_offset(&mq(2), ReadOffsetType::ReadFromStore), -1);
        assert!(!s.sibling(".tmp").exists());
    }

    #[test]
    fn local_file_content_is_the_golden_format() {
        let dir = TempDir::new();
        let s = local(&dir);
        // Existing file already lists queue 1 then queue 0 (Java's hash order); entries keep it.
        fs::create_dir_all(s.path().parent().unwrap()).unwrap();
        fs::write(
            s.path(),
            r#"{"offsetTable":{{"brokerName":"broker-a","queueId":1,"topic":"T"}:1,{"brokerName":"broker-a","queueId":0,"topic":"T"}:2}}"#,
        )
        .unwrap();
        s.update_offset(&mq(0), 42, false);
        s.update_offset(&mq(1), 7, false);
        s.persist_all(&set(&[mq(0), mq(1)]));
        assert_eq!(fs::read_to_string(s.path()).unwrap(), GOLDEN_PRETTY);
    }

    #[test]
    fn local_persist_merges_with_existing_entries_and_keeps_a_backup() {
        let dir = TempDir::new();
        let s = local(&dir);
        s.update_offset(&mq(0), 10, false);
        s.update_offset(&mq(1), 11, false);
        s.persist_all(&set(&[mq(0), mq(1)]));
        let first = fs::read_to_string(s.path()).unwrap();

        // Another run owns only queue 1 now; queue 0's entry must survive, queue 2 is not in mqs.
        let s2 = local(&dir);
        s2.update_offset(&mq(1), 20, false);
        s2.update_offset(&mq(2), 30, false);
        s2.persist_all(&set(&[mq(1)]));
        let w = OffsetSerializeWrapper::decode(fs::read(s.path()).unwrap().as_slice()).unwrap();
        assert_eq!(w.offset_table, vec![(mq(0), 10), (mq(1), 20)]);
        // The previous content went to .bak.
        assert_eq!(fs::read_to_string(s.sibling(".bak")).unwrap(), first);
        // persist(mq) writes just that queue.
        s2.persist(&mq(2));
        let w = OffsetSerializeWrapper::decode(fs::read(s.path()).unwrap().as_slice()).unwrap();
        assert_eq!(w.get(&mq(2)), Some(30));
        // Empty set: nothing written.
        let before = fs::read(s.path()).unwrap();
        s2.update_offset(&mq(1), 99, false);
        s2.persist_all(&HashSet::new());
        assert_eq!(fs::read(s.path()).unwrap(), before);
    }

    #[test]
    fn local_reads_fall_back_to_bak() {
        let dir = TempDir::new();
        let s = local(&dir);
        s.update_offset(&mq(0), 5, false);
        s.persist_all(&set(&[mq(0)]));
        s.update_offset(&mq(0), 6, false);
        s.persist_all(&set(&[mq(0)])); // .bak holds 5, file holds 6
        assert_eq!(
            local(&dir).read_offset(&mq(0), ReadOffsetType::ReadFromStore),
            6
        );

        fs::write(s.path(), "{\"offsetTable\":{{").unwrap(); // corrupted (e.g. torn copy)
        assert_eq!(
            local(&dir).read_offset(&mq(0), ReadOffsetType::ReadFromStore),
            5
        );
        fs::write(s.path(), "").unwrap(); // empty
        assert_eq!(
            local(&dir).read_offset(&mq(0), ReadOffsetType::ReadFromStore),
            5
        );
        fs::remove_file(s.path()).unwrap(); // missing
        let s2 = local(&dir);
        s2.load().unwrap();
        assert_eq!(s2.read_offset(&mq(0), ReadOffsetType::ReadFromMemory), 5);

        // A bad .bak with no main file: load fails, reads give -1, persisting does not clobber.
        fs::write(s.sibling(".bak"), "garbage").unwrap();
        let s3 = local(&dir);
        assert!(s3.load().is_err());
        assert_eq!(s3.read_offset(&mq(0), ReadOffsetType::ReadFromStore), -1);
        s3.update_offset(&mq(0), 1, false);
        s3.persist_all(&set(&[mq(0)]));
        assert!(!s.path().exists());
    }

    #[test]
    fn update_offset_increase_only_never_lowers() {
        let dir = TempDir::new();
        let s = local(&dir);
        s.update_offset(&mq(0), 10, true); // creates
        s.update_offset(&mq(0), 5, true);
        assert_eq!(s.read_offset(&mq(0), ReadOffsetType::ReadFromMemory), 10);
        s.update_offset(&mq(0), 12, true);
        assert_eq!(s.read_offset(&mq(0), ReadOffsetType::ReadFromMemory), 12);
        s.update_offset(&mq(0), 3, false); // overwrite
        assert_eq!(s.read_offset(&mq(0), ReadOffsetType::ReadFromMemory), 3);
    }

    #[test]
    fn increase_only_is_atomic_across_threads() {
        let store = Arc::new(RemoteBrokerOffsetStore::new("cg", FakeBroker::default()));
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let store = Arc::clone(&store);
                std::thread::Builder::new()
                    .name(format!("offset-test-{t}"))
                    .spawn(move || {
                        for i in 0..1000 {
                            store.update_offset(&mq(0), i * 4 + t, true);
                        }
                    })
                    .unwrap()
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(
            store.read_offset(&mq(0), ReadOffsetType::ReadFromMemory),
            3999
        );
    }

    #[test]
    fn clone_offset_table_filters_by_topic() {
        let store = RemoteBrokerOffsetStore::new("cg", FakeBroker::default());
        store.update_offset(&mq(0), 1, false);
        store.update_offset(&MessageQueue::new("U", "broker-a", 0), 2, false);
        let t = store.clone_offset_table("T");
        assert_eq!(t.len(), 1);
        assert_eq!(t[&mq(0)], 1);
        assert_eq!(store.clone_offset_table(" ").len(), 2);
    }

    /// A scripted broker: query answers per queue, and a log of updates.
    #[derive(Default)]
    struct FakeBroker {
        answers: Mutex<HashMap<MessageQueue, std::result::Result<i64, &'static str>>>,
        updates: Mutex<Vec<(MessageQueue, i64, bool)>>,
    }

    impl OffsetBrokerApi for FakeBroker {
        fn query_consumer_offset(&self, mq: &MessageQueue) -> Result<i64> {
            match self.answers.lock().get(mq) {
                Some(Ok(v)) => Ok(*v),
                Some(Err("broker")) | None => Err(Error::Broker {
                    code: ResponseCode::QUERY_NOT_FOUND,
                    remark: "not found".into(),
                    addr: "127.0.0.1:10911".into(),
                }),
                Some(Err("system")) => Err(Error::Broker {
                    code: ResponseCode::SYSTEM_ERROR,
                    remark: "store failure".into(),
                    addr: "127.0.0.1:10911".into(),
                }),
                Some(Err(_)) => Err(Error::Timeout {
                    addr: "127.0.0.1:10911".into(),
                    timeout: std::time::Duration::from_secs(5),
                }),
            }
        }

        fn update_consumer_offset(
            &self,
            mq: &MessageQueue,
            offset: i64,
            oneway: bool,
        ) -> Result<()> {
            self.updates.lock().push((mq.clone(), offset, oneway));
            Ok(())
        }
    }

    #[test]
    fn remote_read_from_store_maps_errors() {
        let api = FakeBroker::default();
        api.answers.lock().insert(mq(0), Ok(100));
        api.answers.lock().insert(mq(1), Err("broker"));
        api.answers.lock().insert(mq(2), Err("timeout"));
        api.answers.lock().insert(mq(3), Err("system"));
        let store = RemoteBrokerOffsetStore::new("cg", api);
        assert_eq!(
            store.read_offset(&mq(0), ReadOffsetType::ReadFromMemory),
            -1
        );
        assert_eq!(
            store.read_offset(&mq(0), ReadOffsetType::ReadFromStore),
            100
        );
        assert_eq!(
            store.read_offset(&mq(0), ReadOffsetType::ReadFromMemory),
            100
        ); // cached
        assert_eq!(store.read_offset(&mq(1), ReadOffsetType::ReadFromStore), -1);
        assert_eq!(store.read_offset(&mq(2), ReadOffsetType::ReadFromStore), -2);
        // A broker error other than QUERY_NOT_FOUND is not "no offset".
        assert_eq!(store.read_offset(&mq(3), ReadOffsetType::ReadFromStore), -2);
        assert_eq!(
            store.read_offset(&mq(2), ReadOffsetType::ReadFromMemory),
            -1
        );
        // ReadFromStore overwrites the cache, even downwards (Java: updateOffset(.., false)).
        store.update_offset(&mq(0), 500, false);
        assert_eq!(
            store.read_offset(&mq(0), ReadOffsetType::ReadFromStore),
            100
        );
        assert_eq!(
            store.read_offset(&mq(0), ReadOffsetType::ReadFromMemory),
            100
        );
        // A failed read leaves the cache alone.
        store.api.answers.lock().insert(mq(0), Err("system"));
        assert_eq!(store.read_offset(&mq(0), ReadOffsetType::ReadFromStore), -2);
        assert_eq!(
            store.read_offset(&mq(0), ReadOffsetType::ReadFromMemory),
            100
        );
    }

    #[test]
    fn remote_persist_all_sends_oneway_and_drops_unused() {
        let store = RemoteBrokerOffsetStore::new("cg", FakeBroker::default());
        store.update_offset(&mq(0), 10, false);
        store.update_offset(&mq(1), 11, false);
        store.update_offset(&mq(2), 12, false);
        store.persist_all(&set(&[mq(0), mq(2), mq(3)]));
        let mut sent = store.api.updates.lock().clone();
        sent.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(sent, vec![(mq(0), 10, true), (mq(2), 12, true)]);
        assert_eq!(
            store.read_offset(&mq(1), ReadOffsetType::ReadFromMemory),
            -1
        );
        assert_eq!(store.clone_offset_table("").len(), 2);
        // An empty set changes nothing (Java returns early).
        store.persist_all(&HashSet::new());
        assert_eq!(store.clone_offset_table("").len(), 2);
        assert_eq!(store.api.updates.lock().len(), 2);
    }

    #[test]
    fn remote_persist_and_remove() {
        let store = RemoteBrokerOffsetStore::new("cg", FakeBroker::default());
        store.persist(&mq(0)); // not cached: nothing sent
        assert!(store.api.updates.lock().is_empty());
        store.update_offset(&mq(0), 3, true);
        store.persist(&mq(0));
        assert_eq!(*store.api.updates.lock(), vec![(mq(0), 3, true)]);
        store.remove_offset(&mq(0));
        assert_eq!(
            store.read_offset(&mq(0), ReadOffsetType::ReadFromMemory),
            -1
        );
        assert!(store.load().is_ok());
    }
}
