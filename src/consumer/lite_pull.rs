//! `DefaultLitePullConsumer` (Java `DefaultLitePullConsumer` and `DefaultLitePullConsumerImpl`,
//! 4.6+): the user's thread calls [`poll`](DefaultLitePullConsumer::poll) in a loop.
//!
//! It is the push consumer's machinery with a poll buffer where the push consumer has its
//! listener and consume pool: the same client instance, rebalance, `rmq-pull` thread, pull
//! callback, `ProcessQueue`s and offset stores. What differs lives here:
//! - [`LitePullState`]: the poll buffer (Java `consumeRequestCache`), the paused queues, the
//!   offsets polled so far (Java `AssignedMessageQueue.consumerOffset`), the assignment of
//!   `assign` mode and the auto-commit clock;
//! - the consume service [`ConsumeMessagePollService`](crate::consumer::consume::poll), which
//!   puts each pulled batch into the buffer;
//! - the hooks in the shared code, each behind [`PushConsumerInner::lite`]: the pull skips
//!   paused queues and stops at `pull_threshold_for_all` buffered messages; an empty pull does
//!   not commit (only the user's polls and commits move the offset); the rebalance calls the
//!   [`MessageQueueListener`] and, in `assign` mode, applies the user's assignment instead of
//!   allocating.
//!
//! Offsets: `poll` records, per queue, the offset after the batch it returns. `commit_sync`
//! (and auto-commit, at the start of a `poll` once `auto_commit_interval` has passed, as Java's
//! `maybeAutoCommit`) moves those offsets into the offset store; the store persists them to
//! the broker (clustering) or the local file (broadcasting). Auto-commit therefore commits
//! what earlier polls returned: a message is committed only once the user polled again.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use crate::client::config::{ClientConfig, ClientOverrides};
use crate::client::instance::MQClientInstance;
use crate::common::{MessageExt, MessageQueue};
use crate::consumer::allocate::AllocateMessageQueueStrategy;
use crate::consumer::builder::DefaultMQPushConsumerBuilder;
use crate::consumer::builder::{build_inner, ConsumerConfig, ConsumerParts};
use crate::consumer::listener::MessageListener;
use crate::consumer::offset_store::ReadOffsetType;
use crate::consumer::process_queue::ProcessQueue;
use crate::consumer::pull::PullRequest;
use crate::consumer::push_consumer::PushConsumerInner;
use crate::consumer::subscription::{
    build_subscription_data, ConsumeFromWhere, ExpressionType, MessageModel,
};
use crate::error::{ClientErrorCode, Error, Result};
use crate::service_state::ServiceState;

/// Java `PULL_TIME_DELAY_MILLS_WHEN_PAUSE`: a paused queue's pull looks again after this long.
pub(crate) const PULL_DELAY_WHEN_PAUSE: Duration = Duration::from_secs(1);
/// Java `MIN_AUTOCOMMIT_INTERVAL_MILLIS`.
const MIN_AUTO_COMMIT_INTERVAL: Duration = Duration::from_secs(1);

/// Told of every change of the queues a subscribing lite pull consumer holds (Java
/// `MessageQueueListener`). Called on the rebalance thread, after the change took effect:
/// `mq_all` is every queue of `topic`, `mq_divided` the ones this consumer now holds, both
/// sorted. A closure `Fn(&str, &[MessageQueue], &[MessageQueue])` is one. A panic is logged
/// and does not stop the rebalance.
pub trait MessageQueueListener: Send + Sync + 'static {
    /// The assignment of `topic` changed.
    fn message_queue_changed(
        &self,
        topic: &str,
        mq_all: &[MessageQueue],
        mq_divided: &[MessageQueue],
    );
}

impl<F> MessageQueueListener for F
where
    F: Fn(&str, &[MessageQueue], &[MessageQueue]) + Send + Sync + 'static,
{
    fn message_queue_changed(
        &self,
        topic: &str,
        mq_all: &[MessageQueue],
        mq_divided: &[MessageQueue],
    ) {
        self(topic, mq_all, mq_divided)
    }
}

/// Told when the queues of a topic change at the name server (Java
/// `TopicMessageQueueChangeListener`): new queues were added, or a broker left. Registered with
/// [`DefaultLitePullConsumer::register_topic_message_queue_change_listener`]; called on the
/// scheduler thread with every readable queue of the topic, sorted. A closure
/// `Fn(&str, &[MessageQueue])` is one. A panic is logged.
pub trait TopicMessageQueueChangeListener: Send + Sync + 'static {
    /// The queues of `topic` are now `queues`.
    fn on_changed(&self, topic: &str, queues: &[MessageQueue]);
}

impl<F> TopicMessageQueueChangeListener for F
where
    F: Fn(&str, &[MessageQueue]) + Send + Sync + 'static,
{
    fn on_changed(&self, topic: &str, queues: &[MessageQueue]) {
        self(topic, queues)
    }
}

/// A registered [`TopicMessageQueueChangeListener`] and the queues it last heard of.
struct TopicWatch {
    listener: Arc<dyn TopicMessageQueueChangeListener>,
    /// Empty until the first successful fetch.
    queues: Vec<MessageQueue>,
}

/// How the consumer gets its queues (Java `SubscriptionType`); the two exclude each other.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Queues {
    /// Neither `subscribe` nor `assign` yet.
    Unset,
    /// `subscribe`: the rebalance allocates.
    Subscribe,
    /// `assign`: these queues, no rebalance.
    Assign(Vec<MessageQueue>),
}

/// One pulled batch waiting for `poll` (Java `ConsumeRequest` of the lite consumer).
struct ReadyBatch {
    pq: Arc<ProcessQueue>,
    msgs: Vec<MessageExt>,
}

/// The lite pull consumer's own state, shared by the user's threads (poll, commit, seek,
/// pause), the pull callback (which fills the buffer) and the rebalance.
pub(crate) struct LitePullState {
    buffer: Mutex<VecDeque<ReadyBatch>>,
    /// Notified when a batch arrives, a queue resumes, or the consumer shuts down.
    ready: Condvar,
    /// Messages in `buffer` (Java counts requests × `pullBatchSize`; this is exact).
    buffered: AtomicUsize,
    closed: AtomicBool,
    paused: RwLock<HashSet<MessageQueue>>,
    any_paused: AtomicBool,
    /// Per queue: the `ProcessQueue` polled from and the offset after the last batch `poll`
    /// returned. Keyed with the queue object so that an offset polled from a queue that was
    /// dropped since (seek, rebalance, offset fix) never commits over its successor's.
    polled: Mutex<HashMap<MessageQueue, (Arc<ProcessQueue>, i64)>>,
    queues: Mutex<Queues>,
    /// Serialises every change of the queue table: the rebalance, `assign` and `seek`.
    pub(crate) table_lock: Mutex<()>,
    auto_commit: bool,
    auto_commit_interval: Duration,
    next_auto_commit: Mutex<Instant>,
    pull_threshold_for_all: usize,
    queue_listener: Option<Arc<dyn MessageQueueListener>>,
    /// The topics watched for queue changes (Java `topicMessageQueueChangeListenerMap`).
    topic_watches: Mutex<BTreeMap<String, TopicWatch>>,
    /// How often the watched topics' queues are fetched (Java
    /// `topicMetadataCheckIntervalMillis`).
    topic_metadata_check_interval: Duration,
}

impl std::fmt::Debug for LitePullState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LitePullState")
            .field("buffered", &self.buffered.load(Ordering::Relaxed))
            .field("queues", &*self.queues.lock())
            .field("auto_commit", &self.auto_commit)
            .finish()
    }
}

impl LitePullState {
    fn new(
        queues: Queues,
        auto_commit: bool,
        auto_commit_interval: Duration,
        pull_threshold_for_all: usize,
        queue_listener: Option<Arc<dyn MessageQueueListener>>,
        topic_metadata_check_interval: Duration,
    ) -> Self {
        LitePullState {
            buffer: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            buffered: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            paused: RwLock::new(HashSet::new()),
            any_paused: AtomicBool::new(false),
            polled: Mutex::new(HashMap::new()),
            queues: Mutex::new(queues),
            table_lock: Mutex::new(()),
            auto_commit,
            auto_commit_interval,
            next_auto_commit: Mutex::new(Instant::now() + auto_commit_interval),
            pull_threshold_for_all,
            queue_listener,
            topic_watches: Mutex::new(BTreeMap::new()),
            topic_metadata_check_interval,
        }
    }

    pub(crate) fn auto_commit(&self) -> bool {
        self.auto_commit
    }

    pub(crate) fn open(&self) {
        self.closed.store(false, Ordering::Release);
    }

    /// Wakes every waiting `poll`; they return at once from now on.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let _buffer = self.buffer.lock();
        self.ready.notify_all();
    }

    /// A pulled batch of `pq`, in offset order (the pull callback; one pull per queue is in
    /// flight, so a queue's batches arrive in order).
    pub(crate) fn push(&self, pq: Arc<ProcessQueue>, msgs: Vec<MessageExt>) {
        self.buffered.fetch_add(msgs.len(), Ordering::AcqRel);
        self.buffer.lock().push_back(ReadyBatch { pq, msgs });
        self.ready.notify_one();
    }

    /// Messages pulled and not yet polled.
    pub(crate) fn buffered(&self) -> usize {
        self.buffered.load(Ordering::Acquire)
    }

    pub(crate) fn over_threshold(&self) -> bool {
        self.buffered() > self.pull_threshold_for_all
    }

    pub(crate) fn is_paused(&self, mq: &MessageQueue) -> bool {
        self.any_paused.load(Ordering::Acquire) && self.paused.read().contains(mq)
    }

    /// The first batch `poll` may return: batches of dropped queues are discarded on the way,
    /// batches of paused queues stay where they are (each queue's order is kept).
    fn take_ready(&self, buffer: &mut VecDeque<ReadyBatch>) -> Option<ReadyBatch> {
        let paused = self
            .any_paused
            .load(Ordering::Acquire)
            .then(|| self.paused.read());
        let mut i = 0;
        while i < buffer.len() {
            let batch = &buffer[i];
            let dropped = batch.pq.is_dropped();
            if !dropped && paused.as_ref().is_some_and(|p| p.contains(&batch.pq.mq)) {
                i += 1;
                continue;
            }
            let batch = buffer.remove(i).expect("index checked");
            self.buffered.fetch_sub(batch.msgs.len(), Ordering::AcqRel);
            if !dropped {
                return Some(batch);
            }
        }
        None
    }

    /// Waits until a batch is ready, the deadline passes or the consumer shuts down.
    fn take(&self, deadline: Option<Instant>) -> Option<ReadyBatch> {
        let mut buffer = self.buffer.lock();
        loop {
            if let Some(batch) = self.take_ready(&mut buffer) {
                return Some(batch);
            }
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            match deadline {
                Some(d) => {
                    if self.ready.wait_until(&mut buffer, d).timed_out() {
                        return self.take_ready(&mut buffer);
                    }
                }
                None => self.ready.wait(&mut buffer),
            }
        }
    }

    /// Drops the buffered batches of dropped queues now rather than at the next poll.
    fn purge_dropped(&self) {
        let mut buffer = self.buffer.lock();
        let before = buffer.len();
        buffer.retain(|b| {
            let keep = !b.pq.is_dropped();
            if !keep {
                self.buffered.fetch_sub(b.msgs.len(), Ordering::AcqRel);
            }
            keep
        });
        if buffer.len() != before {
            log::debug!("dropped {} buffered batch(es)", before - buffer.len());
        }
    }

    /// Java `commitAll` (without persisting): the polled offsets of the queues still held go
    /// into the offset store. Returns those queues.
    pub(crate) fn commit_polled(&self, consumer: &PushConsumerInner) -> HashSet<MessageQueue> {
        let mut committed = HashSet::new();
        let Some(store) = consumer.offset_store.read().clone() else {
            return committed;
        };
        let polled: Vec<(MessageQueue, Arc<ProcessQueue>, i64)> = self
            .polled
            .lock()
            .iter()
            .map(|(mq, (pq, o))| (mq.clone(), pq.clone(), *o))
            .collect();
        let table = consumer.process_queue_table.read();
        for (mq, pq, offset) in polled {
            let held = table.get(&mq).is_some_and(|cur| Arc::ptr_eq(cur, &pq));
            if held && !pq.is_dropped() {
                store.update_offset(&mq, offset, false);
                committed.insert(mq);
            }
        }
        committed
    }

    /// Before the rebalance releases `pq`: with auto-commit, its polled offset goes into the
    /// store, which the release persists.
    pub(crate) fn before_release(&self, consumer: &PushConsumerInner, pq: &Arc<ProcessQueue>) {
        if !self.auto_commit {
            return;
        }
        let offset = match self.polled.lock().get(&pq.mq) {
            Some((polled_pq, o)) if Arc::ptr_eq(polled_pq, pq) => *o,
            _ => return,
        };
        if let Some(store) = consumer.offset_store.read().clone() {
            store.update_offset(&pq.mq, offset, false);
        }
    }

    /// After `pq` was dropped: its polled offset and buffered batches go.
    pub(crate) fn after_release(&self, pq: &Arc<ProcessQueue>) {
        {
            let mut polled = self.polled.lock();
            if polled
                .get(&pq.mq)
                .is_some_and(|(polled_pq, _)| Arc::ptr_eq(polled_pq, pq))
            {
                polled.remove(&pq.mq);
            }
        }
        self.purge_dropped();
    }

    /// Tells the [`MessageQueueListener`] of a changed assignment (rebalance thread).
    pub(crate) fn queues_changed(
        &self,
        namespace: Option<&str>,
        topic: &str,
        mq_all: &[MessageQueue],
        divided: &HashSet<MessageQueue>,
    ) {
        let Some(listener) = &self.queue_listener else {
            return;
        };
        // The user's names: without the namespace.
        let bare = |mq: &MessageQueue| crate::common::namespace::unwrap_queue(namespace, mq);
        let topic = &*crate::common::namespace::unwrap(namespace, topic);
        let mut all: Vec<MessageQueue> = mq_all.iter().map(bare).collect();
        all.sort();
        let mut mine: Vec<MessageQueue> = divided.iter().map(bare).collect();
        mine.sort();
        let call =
            std::panic::AssertUnwindSafe(|| listener.message_queue_changed(topic, &all, &mine));
        if let Err(p) = std::panic::catch_unwind(call) {
            log::error!(
                "the MessageQueueListener panicked on a change of {topic}: {}",
                crate::executor::panic_message(p.as_ref())
            );
        }
    }
}

impl PushConsumerInner {
    /// The lite pull consumer's state, when this is one.
    pub(crate) fn lite(&self) -> Option<&Arc<LitePullState>> {
        match &self.listener {
            MessageListener::Poll(state) => Some(state),
            _ => None,
        }
    }

    /// `assign` mode's rebalance: holds exactly the assigned queues. The subscriptions follow
    /// the assignment (`*` per topic), so that heartbeats and pulls carry them. Called with
    /// `table_lock` held.
    pub(crate) fn apply_assignment(
        &self,
        instance: &Arc<MQClientInstance>,
        assigned: &[MessageQueue],
    ) {
        let mut by_topic: BTreeMap<String, HashSet<MessageQueue>> = BTreeMap::new();
        for mq in assigned {
            by_topic
                .entry(mq.topic.clone())
                .or_default()
                .insert(mq.clone());
        }
        let mut subs_changed = false;
        {
            let mut subs = self.subscription_inner.write();
            subs.retain(|topic, _| {
                let keep = by_topic.contains_key(topic);
                subs_changed |= !keep;
                keep
            });
            for topic in by_topic.keys() {
                if !subs.contains_key(topic) {
                    match build_subscription_data(
                        topic,
                        crate::consumer::SUB_ALL,
                        ExpressionType::Tag,
                    ) {
                        Ok(sd) => {
                            subs.insert(topic.clone(), Arc::new(sd));
                            subs_changed = true;
                        }
                        Err(e) => log::warn!("cannot subscribe to the assigned topic {topic}: {e}"),
                    }
                }
            }
        }
        if subs_changed {
            for topic in by_topic.keys() {
                instance.update_topic_route_info_from_name_server(topic);
            }
            instance.send_heartbeat_to_all_broker_now();
        }
        let mut new_pulls = Vec::new();
        for (topic, target) in &by_topic {
            self.update_process_queue_table(instance, topic, target, &mut new_pulls);
        }
        let stale: Vec<Arc<ProcessQueue>> = self
            .process_queue_table
            .read()
            .values()
            .filter(|pq| !by_topic.contains_key(&pq.mq.topic))
            .cloned()
            .collect();
        if !stale.is_empty() {
            self.remove_queues(&stale);
        }
        for r in new_pulls {
            self.pull_now(r);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The public handle

/// A pull consumer the user's thread drives with [`poll`](Self::poll) (Java
/// `DefaultLitePullConsumer`, 4.6+; rdkafka's `BaseConsumer::poll`).
///
/// Queues come from [`subscribe`](Self::subscribe) (the group's rebalance, clustering or
/// broadcasting, with any allocation strategy) or [`assign`](Self::assign) (exactly the
/// queues given, no rebalance). The client instance pulls them in the background, on its
/// shared `rmq-pull` thread and callback pool, into a buffer bounded per queue
/// (`pull_threshold_for_queue`, `pull_threshold_size_for_queue`, `consume_max_span`) and in
/// all (`pull_threshold_for_all`). `poll` returns one pulled batch (at most
/// `pull_batch_size` messages, of one queue, in offset order), as soon as one is ready.
///
/// ```no_run
/// use std::time::Duration;
/// use rocketmq_sync::DefaultLitePullConsumer;
///
/// let consumer = DefaultLitePullConsumer::builder("my_group")
///     .namesrv_addr("127.0.0.1:9876")
///     .subscribe("TopicTest", "*")
///     .auto_commit(false)
///     .build()?;
/// consumer.start()?;
/// loop {
///     let msgs = consumer.poll(Duration::from_secs(1))?;
///     if msgs.is_empty() {
///         break;
///     }
///     for m in &msgs {
///         println!("{} {}", m.queue_offset(), String::from_utf8_lossy(m.body()));
///     }
///     consumer.commit_sync()?; // everything polled so far is done
/// }
/// consumer.shutdown(Duration::from_secs(10))?;
/// # Ok::<(), rocketmq_sync::Error>(())
/// ```
#[doc(alias = "DefaultLitePullConsumerImpl")]
#[derive(Debug, Clone)]
pub struct DefaultLitePullConsumer {
    inner: Arc<PushConsumerInner>,
    lite: Arc<LitePullState>,
}

impl DefaultLitePullConsumer {
    /// A builder for a lite pull consumer of `group`, with Java's defaults.
    pub fn builder(group: impl Into<String>) -> DefaultLitePullConsumerBuilder {
        DefaultLitePullConsumerBuilder::new(group.into())
    }

    /// The consumer group.
    pub fn consumer_group(&self) -> &str {
        &self.inner.cfg.group
    }

    /// The lifecycle state.
    pub fn service_state(&self) -> ServiceState {
        *self.inner.state.lock()
    }

    /// The client id, once started.
    pub fn client_id(&self) -> Option<String> {
        self.inner.instance().map(|i| i.client_id().to_owned())
    }

    /// Starts pulling. In `assign` mode the assigned queues are held when this returns; with
    /// `subscribe`, the first rebalance runs right after (the [`MessageQueueListener`] tells
    /// when queues arrive). Starting twice is an error.
    pub fn start(&self) -> Result<()> {
        self.inner.start()?;
        self.apply_assignment_now();
        // Java `fetchTopicMessageQueuesAndComparePeriodically`: the topics registered before
        // start get their queues now, then every `topic_metadata_check_interval`.
        self.check_topic_queues();
        if let Some(instance) = self.inner.instance() {
            let me = self.clone_weak();
            let period = self.lite.topic_metadata_check_interval;
            match instance.schedule_periodic(period, period, move || {
                if let Some(c) = me.upgrade() {
                    c.check_topic_queues();
                }
            }) {
                Ok(task) => self.inner.tasks.lock().push(task),
                Err(e) => log::warn!("the topic queue check was not scheduled: {e}"),
            }
        }
        Ok(())
    }

    /// `mq` as the broker knows it (in the namespace).
    fn mq_in<'a>(&self, mq: &'a MessageQueue) -> std::borrow::Cow<'a, MessageQueue> {
        self.inner.client.queue_with_namespace(mq)
    }

    /// `mq` as the user knows it.
    fn mq_out(&self, mq: &MessageQueue) -> MessageQueue {
        self.inner.client.queue_without_namespace(mq)
    }

    fn clone_weak(&self) -> WeakLitePullConsumer {
        WeakLitePullConsumer {
            inner: Arc::downgrade(&self.inner),
            lite: self.lite.clone(),
        }
    }

    /// Watches `topic`'s queues at the name server: `listener` is called whenever they
    /// change, checked every `topic_metadata_check_interval` (Java
    /// `registerTopicMessageQueueChangeListener`). Once started, the current queues are
    /// fetched at once (an unknown topic is an error) and are the baseline: the listener hears
    /// of changes only. Registering a topic again replaces its listener.
    pub fn register_topic_message_queue_change_listener(
        &self,
        topic: &str,
        listener: impl TopicMessageQueueChangeListener,
    ) -> Result<()> {
        crate::producer::validators::check_topic(topic)?;
        let queues = if self.inner.is_running() {
            self.fetch_message_queues(topic)?
        } else {
            Vec::new()
        };
        self.lite.topic_watches.lock().insert(
            topic.to_owned(),
            TopicWatch {
                listener: Arc::new(listener),
                queues,
            },
        );
        Ok(())
    }

    /// Fetches every watched topic's queues and tells the listeners of the ones that changed.
    fn check_topic_queues(&self) {
        let topics: Vec<String> = self.lite.topic_watches.lock().keys().cloned().collect();
        for topic in topics {
            let queues = match self.fetch_message_queues(&topic) {
                Ok(q) => q,
                Err(e) => {
                    log::warn!("fetching the queues of {topic} failed: {e}");
                    continue;
                }
            };
            let listener = {
                let mut watches = self.lite.topic_watches.lock();
                let Some(watch) = watches.get_mut(&topic) else {
                    continue;
                };
                if watch.queues == queues {
                    continue;
                }
                // The first fetch is the baseline, not a change.
                let first = watch.queues.is_empty();
                watch.queues = queues.clone();
                if first {
                    continue;
                }
                watch.listener.clone()
            };
            let call = std::panic::AssertUnwindSafe(|| listener.on_changed(&topic, &queues));
            if let Err(p) = std::panic::catch_unwind(call) {
                log::error!(
                    "the TopicMessageQueueChangeListener of {topic} panicked: {}",
                    crate::executor::panic_message(p.as_ref())
                );
            }
        }
    }

    /// Stops pulling; with auto-commit, commits what was polled; persists the offsets,
    /// unregisters the group and stops the client instance if nothing else uses it. A `poll`
    /// waiting on another thread returns at once.
    pub fn shutdown(&self, timeout: Duration) -> Result<()> {
        self.inner.shutdown(timeout)
    }

    /// Subscribes to `topic` with a tag expression (`"*"`, `"TagA || TagB"`); the rebalance
    /// allocates its queues. Allowed before and after `start`; not after [`assign`](Self::assign).
    pub fn subscribe(&self, topic: &str, expr: &str) -> Result<()> {
        self.subscribe_with(topic, expr, ExpressionType::Tag)
    }

    /// Subscribes to `topic` with an SQL92 expression evaluated by the broker.
    pub fn subscribe_sql92(&self, topic: &str, sql: &str) -> Result<()> {
        self.subscribe_with(topic, sql, ExpressionType::Sql92)
    }

    fn subscribe_with(&self, topic: &str, expr: &str, kind: ExpressionType) -> Result<()> {
        crate::producer::validators::check_topic(topic)?;
        let topic = &*self.inner.client.with_namespace(topic);
        let sd = build_subscription_data(topic, expr, kind)?;
        if let Some(i) = self.inner.instance() {
            crate::client::check_client::check_client_in_broker(&i, &self.inner.cfg.group, &sd)?;
        }
        {
            let mut queues = self.lite.queues.lock();
            if matches!(*queues, Queues::Assign(_)) {
                return Err(Error::config(
                    "subscribe and assign are mutually exclusive: this consumer already assigned queues",
                ));
            }
            *queues = Queues::Subscribe;
        }
        self.inner
            .subscription_inner
            .write()
            .insert(topic.to_owned(), Arc::new(sd));
        if let Some(i) = self.inner.instance() {
            i.update_topic_route_info_from_name_server(topic);
            i.send_heartbeat_to_all_broker_now();
            i.rebalance_immediately();
        }
        Ok(())
    }

    /// Stops consuming `topic`: its queues are released at the next rebalance (at once in
    /// `assign` mode).
    pub fn unsubscribe(&self, topic: &str) {
        let topic = &*self.inner.client.with_namespace(topic);
        let assign = {
            let mut queues = self.lite.queues.lock();
            if let Queues::Assign(mqs) = &mut *queues {
                mqs.retain(|mq| mq.topic != *topic);
                true
            } else {
                false
            }
        };
        self.inner.subscription_inner.write().remove(topic);
        if assign {
            self.apply_assignment_now();
        } else if let Some(i) = self.inner.instance() {
            i.send_heartbeat_to_all_broker_now();
            i.rebalance_immediately();
        }
    }

    /// Takes exactly `queues` (Java `assign`), replacing an earlier assignment, with no
    /// rebalance; each starts at the group's committed offset, else where `consume_from_where`
    /// says. Once started, the change has taken effect when this returns. Not after
    /// [`subscribe`](Self::subscribe).
    pub fn assign(&self, queues: impl IntoIterator<Item = MessageQueue>) -> Result<()> {
        let mut mqs = Vec::new();
        for mq in queues {
            crate::producer::validators::check_topic(&mq.topic)?;
            mqs.push(self.mq_in(&mq).into_owned());
        }
        mqs.sort();
        mqs.dedup();
        {
            let mut queues = self.lite.queues.lock();
            if *queues == Queues::Subscribe {
                return Err(Error::config(
                    "subscribe and assign are mutually exclusive: this consumer already subscribed",
                ));
            }
            *queues = Queues::Assign(mqs.clone());
        }
        {
            // Before start, the topics must be known for `start` (and its route lookups).
            let mut subs = self.inner.subscription_inner.write();
            subs.retain(|t, _| mqs.iter().any(|mq| &mq.topic == t));
            for mq in &mqs {
                if !subs.contains_key(&mq.topic) {
                    let sd = build_subscription_data(
                        &mq.topic,
                        crate::consumer::SUB_ALL,
                        ExpressionType::Tag,
                    )?;
                    subs.insert(mq.topic.clone(), Arc::new(sd));
                }
            }
        }
        self.apply_assignment_now();
        Ok(())
    }

    fn apply_assignment_now(&self) {
        if !self.inner.is_running() {
            return;
        }
        let Some(instance) = self.inner.instance() else {
            return;
        };
        let _table = self.lite.table_lock.lock();
        let assigned = match &*self.lite.queues.lock() {
            Queues::Assign(mqs) => mqs.clone(),
            _ => return,
        };
        self.inner.apply_assignment(&instance, &assigned);
    }

    /// The queues this consumer holds now, sorted (Java `assignment()`).
    pub fn assignment(&self) -> Vec<MessageQueue> {
        let mut v: Vec<MessageQueue> = self
            .inner
            .process_queue_table
            .read()
            .keys()
            .map(|mq| self.mq_out(mq))
            .collect();
        v.sort();
        v
    }

    /// The next pulled batch: one queue's messages in offset order, at most `pull_batch_size`
    /// of them. Returns as soon as a batch is ready, or an empty `Vec` once `timeout` has
    /// passed (or the consumer is shut down meanwhile). Batches of paused queues are kept for
    /// after [`resume`](Self::resume).
    ///
    /// With auto-commit, a poll first commits what earlier polls returned, once
    /// `auto_commit_interval` has passed since the last such commit (Java `maybeAutoCommit`).
    pub fn poll(&self, timeout: Duration) -> Result<Vec<MessageExt>> {
        let state = *self.inner.state.lock();
        if state != ServiceState::Running {
            return Err(Error::ServiceState {
                state,
                action: "poll",
            });
        }
        if self.lite.auto_commit {
            self.maybe_auto_commit();
        }
        let deadline = Instant::now().checked_add(timeout);
        let Some(batch) = self.lite.take(deadline) else {
            return Ok(Vec::new());
        };
        let pq = batch.pq;
        let polled = &self.lite.polled;
        // Under the queue's lock, and only while it is not dropped: a seek or release that
        // drops it either sees this offset recorded or keeps its own.
        pq.remove_messages(batch.msgs.iter().map(MessageExt::queue_offset), |next| {
            polled.lock().insert(pq.mq.clone(), (pq.clone(), next));
        });
        let mut msgs = batch.msgs;
        if let Some(ns) = self.inner.cfg.namespace.as_deref() {
            for m in &mut msgs {
                let bare = crate::common::namespace::unwrap(Some(ns), m.topic()).into_owned();
                m.set_topic(bare);
            }
        }
        Ok(msgs)
    }

    fn maybe_auto_commit(&self) {
        let now = Instant::now();
        {
            let mut next = self.lite.next_auto_commit.lock();
            if now < *next {
                return;
            }
            *next = now + self.lite.auto_commit_interval;
        }
        self.lite.commit_polled(&self.inner);
    }

    fn running(&self, action: &'static str) -> Result<Arc<MQClientInstance>> {
        let state = *self.inner.state.lock();
        match (state, self.inner.instance()) {
            (ServiceState::Running, Some(i)) => Ok(i),
            _ => Err(Error::ServiceState { state, action }),
        }
    }

    /// Commits everything polled so far, from the queues still held, and waits until the
    /// broker (clustering) or the offsets file (broadcasting) has it (Java `commitSync`, which
    /// only updates the in-memory store; this also persists, as the name promises).
    pub fn commit_sync(&self) -> Result<()> {
        self.running("commit")?;
        let queues = self.lite.commit_polled(&self.inner);
        self.inner.offset_store().persist_sync(&queues)
    }

    /// Commits the given offsets (each the offset of the next message to consume) and waits
    /// until they are persisted. The queues need not be held.
    pub fn commit(&self, offsets: &HashMap<MessageQueue, i64>) -> Result<()> {
        self.running("commit")?;
        let store = self.inner.offset_store();
        for (mq, offset) in offsets {
            if *offset < 0 {
                return Err(Error::config(format!(
                    "cannot commit offset {offset} of {mq}: offsets are not negative"
                )));
            }
        }
        let offsets: HashMap<MessageQueue, i64> = offsets
            .iter()
            .map(|(mq, o)| (self.mq_in(mq).into_owned(), *o))
            .collect();
        for (mq, offset) in &offsets {
            store.update_offset(mq, *offset, false);
        }
        store.persist_sync(&offsets.keys().cloned().collect())
    }

    /// The group's committed offset of `mq` (Java `committed`): this consumer's, else the
    /// broker's (or the offsets file's); −1 when the group has none.
    pub fn committed(&self, mq: &MessageQueue) -> Result<i64> {
        self.running("read a committed offset")?;
        let mq = &*self.mq_in(mq);
        let store = self.inner.offset_store();
        let memory = store.read_offset(mq, ReadOffsetType::ReadFromMemory);
        if memory >= 0 {
            return Ok(memory);
        }
        match store.read_offset(mq, ReadOffsetType::ReadFromStore) {
            -2 => Err(Error::client(
                ClientErrorCode::BROKER_NOT_EXIST_EXCEPTION,
                format!("the committed offset of {mq} could not be read from the broker"),
            )),
            o => Ok(o),
        }
    }

    /// Moves the next `poll` of `mq` to `offset`, which must lie within the queue's min and max
    /// offsets (Java `seek`). Messages of `mq` pulled and not yet polled are discarded; its
    /// polled offset becomes `offset` (committed with the next commit). `mq` must be held.
    pub fn seek(&self, mq: &MessageQueue, offset: i64) -> Result<()> {
        let instance = self.running("seek")?;
        let mq = &*self.mq_in(mq);
        let (min, max) = (instance.min_offset(mq)?, instance.max_offset(mq)?);
        if offset < min || offset > max {
            return Err(Error::config(format!(
                "seek offset {offset} of {mq} is illegal: the queue holds offsets {min}..={max}"
            )));
        }
        self.seek_unchecked(mq, offset)
    }

    /// [`seek`](Self::seek) to the queue's first offset (Java `seekToBegin`).
    pub fn seek_to_begin(&self, mq: &MessageQueue) -> Result<()> {
        let instance = self.running("seek")?;
        let mq = &*self.mq_in(mq);
        let min = instance.min_offset(mq)?;
        self.seek_unchecked(mq, min)
    }

    /// [`seek`](Self::seek) past the queue's last message (Java `seekToEnd`): only messages
    /// sent from now on are polled.
    pub fn seek_to_end(&self, mq: &MessageQueue) -> Result<()> {
        let instance = self.running("seek")?;
        let mq = &*self.mq_in(mq);
        let max = instance.max_offset(mq)?;
        self.seek_unchecked(mq, max)
    }

    fn seek_unchecked(&self, mq: &MessageQueue, offset: i64) -> Result<()> {
        let _table = self.lite.table_lock.lock();
        let Some(old) = self.inner.process_queue_table.read().get(mq).cloned() else {
            return Err(Error::client(
                ClientErrorCode::NOT_FOUND_TOPIC_EXCEPTION,
                format!("cannot seek {mq}: this consumer does not hold it (not assigned, or a rebalance is moving it)"),
            ));
        };
        old.stop_pulling();
        old.set_dropped();
        let pq = Arc::new(ProcessQueue::new(mq.clone(), offset));
        self.inner
            .process_queue_table
            .write()
            .insert(mq.clone(), pq.clone());
        self.lite
            .polled
            .lock()
            .insert(mq.clone(), (pq.clone(), offset));
        self.lite.purge_dropped();
        log::info!("{}: seek {mq} to {offset}", self.inner.cfg.group);
        self.inner
            .pull_now(PullRequest::new(self.inner.me.clone(), pq, offset));
        Ok(())
    }

    /// The offset of the first message of `mq` stored at or after `timestamp_ms` (Java
    /// `offsetForTimestamp`).
    pub fn offset_for_timestamp(&self, mq: &MessageQueue, timestamp_ms: i64) -> Result<i64> {
        self.running("search an offset")?
            .search_offset(&self.mq_in(mq), timestamp_ms)
    }

    /// Stops delivering `queues`: their pulls stop within a second and `poll` returns none of
    /// their messages, buffered or not, until [`resume`](Self::resume). Queues not held yet are
    /// paused when they come.
    pub fn pause(&self, queues: impl IntoIterator<Item = MessageQueue>) {
        let queues: Vec<MessageQueue> = queues
            .into_iter()
            .map(|mq| self.mq_in(&mq).into_owned())
            .collect();
        let mut paused = self.lite.paused.write();
        paused.extend(queues);
        self.lite
            .any_paused
            .store(!paused.is_empty(), Ordering::Release);
    }

    /// Delivers `queues` again: their buffered messages at once, new pulls within a second.
    pub fn resume(&self, queues: impl IntoIterator<Item = MessageQueue>) {
        {
            let mut paused = self.lite.paused.write();
            for mq in queues {
                paused.remove(&*self.mq_in(&mq));
            }
            self.lite
                .any_paused
                .store(!paused.is_empty(), Ordering::Release);
        }
        let _buffer = self.lite.buffer.lock();
        self.lite.ready.notify_all();
    }

    /// Whether `mq` is paused.
    pub fn is_paused(&self, mq: &MessageQueue) -> bool {
        self.lite.paused.read().contains(&*self.mq_in(mq))
    }

    /// The readable queues of `topic`, from the name server (Java `fetchMessageQueues`).
    pub fn fetch_message_queues(&self, topic: &str) -> Result<Vec<MessageQueue>> {
        let instance = self.running("fetch message queues")?;
        let wrapped = self.inner.client.with_namespace(topic);
        let route = instance.api().get_topic_route_info_from_name_server(
            &wrapped,
            self.inner.client.mq_client_api_timeout,
        )?;
        let queues: Vec<MessageQueue> = crate::common::topic_subscribe_queues(&wrapped, &route)?
            .iter()
            .map(|mq| self.mq_out(mq))
            .collect();
        if queues.is_empty() {
            return Err(Error::client(
                ClientErrorCode::NOT_FOUND_TOPIC_EXCEPTION,
                format!("the topic {topic} has no readable queue"),
            ));
        }
        Ok(queues)
    }

    /// Messages pulled and waiting for `poll`.
    pub fn buffered_messages(&self) -> usize {
        self.lite.buffered()
    }
}

/// The consumer as its periodic task holds it: it must not keep a dropped consumer alive.
struct WeakLitePullConsumer {
    inner: std::sync::Weak<PushConsumerInner>,
    lite: Arc<LitePullState>,
}

impl WeakLitePullConsumer {
    fn upgrade(&self) -> Option<DefaultLitePullConsumer> {
        self.inner.upgrade().map(|inner| DefaultLitePullConsumer {
            inner,
            lite: self.lite.clone(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The builder

/// Builds a [`DefaultLitePullConsumer`]. Every setter documents Java's default.
pub struct DefaultLitePullConsumerBuilder {
    cfg: ConsumerConfig,
    client: ClientConfig,
    client_overrides: ClientOverrides,
    subscriptions: Vec<(String, String, ExpressionType)>,
    allocate: Arc<dyn AllocateMessageQueueStrategy>,
    consume_timestamp_text: Option<String>,
    auto_commit: bool,
    auto_commit_interval: Duration,
    pull_threshold_for_all: usize,
    queue_listener: Option<Arc<dyn MessageQueueListener>>,
    topic_metadata_check_interval: Duration,
}

impl std::fmt::Debug for DefaultLitePullConsumerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DefaultLitePullConsumerBuilder")
            .field("cfg", &self.cfg)
            .field("subscriptions", &self.subscriptions)
            .field("auto_commit", &self.auto_commit)
            .finish()
    }
}

impl DefaultLitePullConsumerBuilder {
    fn new(group: String) -> Self {
        let DefaultMQPushConsumerBuilder {
            mut cfg,
            client,
            client_overrides,
            allocate,
            ..
        } = DefaultMQPushConsumerBuilder::new(group);
        // Java `DefaultLitePullConsumer`'s own defaults where they differ from the push
        // consumer's; it always sends the subscription with a pull (no consume pool here).
        cfg.pull_batch_size = 10;
        cfg.broker_suspend_max_time = Duration::from_secs(20);
        cfg.consumer_timeout_when_suspend = Duration::from_secs(30);
        cfg.post_subscription_when_pull = true;
        cfg.consume_thread_min = 1;
        cfg.consume_thread_max = 1;
        DefaultLitePullConsumerBuilder {
            cfg,
            client,
            client_overrides,
            subscriptions: Vec::new(),
            allocate,
            consume_timestamp_text: None,
            auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            pull_threshold_for_all: 10_000,
            queue_listener: None,
            topic_metadata_check_interval: Duration::from_secs(30),
        }
    }

    crate::client::config::client_config_setters!();
    crate::consumer::builder::consumer_common_setters!();

    crate::consumer::builder::setter!(
        /// Messages per pull, and so at most per `poll`. Default: 10.
        #[doc(alias = "setPullBatchSize")]
        pull_batch_size: i32 => pull_batch_size
    );
    /// Messages pulled and not yet polled, over all queues, before pulling pauses. Default:
    /// 10 000. `build()` accepts 1..=`i32::MAX`.
    #[doc(alias = "setPullThresholdForAll")]
    pub fn pull_threshold_for_all(mut self, messages: usize) -> Self {
        self.pull_threshold_for_all = messages;
        self
    }
    crate::consumer::builder::setter!(
        /// Largest offset span cached per queue before its pulling pauses. Default: 2000.
        #[doc(alias = "setConsumeMaxSpan")]
        consume_max_span: i64 => consume_concurrently_max_span
    );
    /// Commit what was polled automatically. Default: true.
    #[doc(alias = "setAutoCommit")]
    pub fn auto_commit(mut self, on: bool) -> Self {
        self.auto_commit = on;
        self
    }
    /// How often a `poll` commits automatically. Default: 5 s; at least 1 s (Java ignores a
    /// smaller value; `build()` refuses it).
    #[doc(alias = "setAutoCommitIntervalMillis")]
    pub fn auto_commit_interval(mut self, interval: Duration) -> Self {
        self.auto_commit_interval = interval;
        self
    }
    crate::consumer::builder::setter!(
        /// How long the broker holds a long poll. Default: 20 s. Must be shorter than the
        /// pull timeout.
        #[doc(alias = "setBrokerSuspendMaxTimeMillis")]
        broker_suspend_max_time: Duration => broker_suspend_max_time
    );
    crate::consumer::builder::setter!(
        /// The largest size, in bytes, a compressed body may inflate to. Default: 4 MiB (see
        /// the push consumer's builder).
        max_decompressed_body_size: usize => max_decompressed_body_size
    );
    /// How often the topics of
    /// [`register_topic_message_queue_change_listener`](DefaultLitePullConsumer::register_topic_message_queue_change_listener)
    /// are checked for new or lost queues. Default: 30 s; `build()` accepts 1 s and more.
    #[doc(alias = "setTopicMetadataCheckIntervalMillis")]
    pub fn topic_metadata_check_interval(mut self, interval: Duration) -> Self {
        self.topic_metadata_check_interval = interval;
        self
    }
    /// Told of each change of the queues `subscribe` holds (Java `setMessageQueueListener`).
    #[doc(alias = "setMessageQueueListener")]
    pub fn message_queue_listener(mut self, listener: impl MessageQueueListener) -> Self {
        self.queue_listener = Some(Arc::new(listener));
        self
    }
    /// Checks every setting and builds the consumer (not started).
    pub fn build(self) -> Result<DefaultLitePullConsumer> {
        if self.auto_commit_interval < MIN_AUTO_COMMIT_INTERVAL {
            return Err(Error::config(format!(
                "autoCommitIntervalMillis must be at least 1000: {:?}",
                self.auto_commit_interval
            )));
        }
        if self.pull_threshold_for_all == 0 || self.pull_threshold_for_all > i32::MAX as usize {
            return Err(Error::config(format!(
                "pullThresholdForAll out of range [1, {}]: {}",
                i32::MAX,
                self.pull_threshold_for_all
            )));
        }
        if self.topic_metadata_check_interval < Duration::from_secs(1) {
            return Err(Error::config(format!(
                "topicMetadataCheckIntervalMillis must be at least 1000: {:?}",
                self.topic_metadata_check_interval
            )));
        }
        let queues = if self.subscriptions.is_empty() {
            Queues::Unset
        } else {
            Queues::Subscribe
        };
        let lite = Arc::new(LitePullState::new(
            queues,
            self.auto_commit,
            self.auto_commit_interval,
            self.pull_threshold_for_all,
            self.queue_listener,
            self.topic_metadata_check_interval,
        ));
        let inner = build_inner(
            ConsumerParts {
                cfg: self.cfg,
                client: self.client_overrides.apply(self.client),
                subscriptions: self.subscriptions,
                consume_timestamp_text: self.consume_timestamp_text,
                allocate: self.allocate,
            },
            MessageListener::Poll(lite.clone()),
            Vec::new(),
        )?;
        Ok(DefaultLitePullConsumer { inner, lite })
    }
}

/// Whether the rebalance of this consumer allocates (`subscribe`), or applies `assign`.
pub(crate) fn assigned_queues(lite: &LitePullState) -> Option<Vec<MessageQueue>> {
    match &*lite.queues.lock() {
        Queues::Assign(mqs) => Some(mqs.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> LitePullState {
        LitePullState::new(
            Queues::Unset,
            true,
            Duration::from_secs(5),
            10,
            None,
            Duration::from_secs(30),
        )
    }

    fn pq(q: i32) -> Arc<ProcessQueue> {
        Arc::new(ProcessQueue::new(MessageQueue::new("T", "b", q), 0))
    }

    fn batch(n: usize) -> Vec<MessageExt> {
        (0..n).map(|_| MessageExt::new("T", "b")).collect()
    }

    #[test]
    fn paused_batches_wait_and_dropped_ones_are_discarded() {
        let s = state();
        let (a, b, c) = (pq(0), pq(1), pq(2));
        s.push(a.clone(), batch(2));
        s.push(b.clone(), batch(3));
        s.push(c.clone(), batch(4));
        assert_eq!(s.buffered(), 9);
        s.paused.write().insert(a.mq.clone());
        s.any_paused.store(true, Ordering::Release);
        b.set_dropped();
        let got = s.take(Some(Instant::now())).expect("c is ready");
        assert!(Arc::ptr_eq(&got.pq, &c));
        // b was discarded on the way, a waits.
        assert_eq!(s.buffered(), 2);
        assert!(s.take(Some(Instant::now())).is_none());
        s.paused.write().clear();
        s.any_paused.store(false, Ordering::Release);
        let got = s.take(Some(Instant::now())).expect("a resumed");
        assert!(Arc::ptr_eq(&got.pq, &a));
        assert_eq!(s.buffered(), 0);
        assert!(!s.over_threshold());
    }

    #[test]
    fn close_wakes_a_waiting_take() {
        let s = Arc::new(state());
        let waiter = {
            let s = s.clone();
            std::thread::Builder::new()
                .name("take".into())
                .spawn(move || s.take(None).is_none())
                .unwrap()
        };
        s.close();
        assert!(waiter.join().unwrap());
    }
}
