//! `DefaultMQPushConsumer`: the public handle and its lifecycle (Java `DefaultMQPushConsumer`
//! and `DefaultMQPushConsumerImpl`), and the table of held queues that the other parts share.
//!
//! The consumer is one `PushConsumerInner`; its parts live along Java's seams:
//! - `builder.rs`: the builder and `check_config`;
//! - this file: start, shutdown, the queue table, and `MQConsumerInner` for the instance;
//! - `pull.rs`: `pullMessage` and the pull callback (`PullAPIWrapper`);
//! - `rebalance.rs`: `RebalanceImpl` / `RebalancePushImpl`;
//! - `consume/`: the consume services behind `ConsumeMessageService` (the concurrent one now),
//!   which run the listener;
//! - `send_back.rs`: `sendMessageBack`;
//! - `broker_requests.rs`: what the broker asks of the consumer;
//! - `offset_store.rs`: the offset stores and the broker offset API;
//! - `process_queue.rs`: `ProcessQueue`, all that is kept per held queue.
//!
//! Which thread touches what:
//! - `rmq-rebal` (shared by the client instance) runs the rebalance: it alone adds entries to
//!   `process_queue_table`, and removes the queues it releases. A broker's reset (`rmq-cb`), the
//!   `PULL_OFFSET_MOVED` fix-up (`rmq-sched`) and shutdown also remove entries, each only the
//!   `ProcessQueue` it dropped ([`PushConsumerInner::remove_from_table`]).
//! - `rmq-pull` runs `pull_message` for first, delayed and flow-controlled pulls: flow control,
//!   then an async `PULL_MESSAGE`; it also times delayed pulls, so they never wait behind
//!   `rmq-sched`.
//! - `rmq-cb` runs the pull callback: decode, filter, put into the `ProcessQueue`, hand to the
//!   consume pool, then the queue's next pull itself (`pull_message` as `rmq-pull` would run it,
//!   its request written into the socket by this thread), so an answer wakes no pull thread.
//! - `rmq-cons-N` run the listener and commit offsets into the offset store.
//! - `rmq-sched` persists offsets and runs the pull watchdog.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use crate::client::config::{
    default_instance_name, join_instance, ClientConfig, BROADCASTING_INSTANCE_NAME,
};
use crate::client::instance::{
    DirectConsumeReply, MQClientInstance, MQClientManager, MQConsumerInner,
};
use crate::common::MessageQueue;
use crate::consumer::allocate::AllocateMessageQueueStrategy;
use crate::consumer::builder::{ConsumerConfig, DefaultMQPushConsumerBuilder};
use crate::consumer::consume::ConsumeMessageService;
use crate::consumer::listener::{ConsumeMessageHook, MessageListener};
use crate::consumer::offset_store::BrokerOffsetApi;
use crate::consumer::offset_store::{
    LocalFileOffsetStore, OffsetStore, ReadOffsetType, RemoteBrokerOffsetStore,
};
use crate::consumer::process_queue::ProcessQueue;
use crate::consumer::stats::ConsumerStats;
use crate::consumer::subscription::{build_subscription_data, ExpressionType, MessageModel};
use crate::error::{Error, Result};
use crate::remoting::protocol::body::ConsumerRunningInfo;
use crate::remoting::protocol::heartbeat::{ConsumerData, SubscriptionData};
use crate::service_state::ServiceState;

// ---------------------------------------------------------------------------------------------
// The public handle

/// A push consumer (Java `DefaultMQPushConsumer` and `DefaultMQPushConsumerImpl`).
///
/// ```no_run
/// use rocketmq_sync::{ConsumeConcurrentlyStatus, DefaultMQPushConsumer};
///
/// let consumer = DefaultMQPushConsumer::builder("my_group")
///     .namesrv_addr("127.0.0.1:9876")
///     .subscribe("TopicTest", "*")
///     .register_message_listener_concurrently(|msgs: &[rocketmq_sync::MessageExt], _ctx: &mut _| {
///         for m in msgs {
///             println!("{} {:?}", m.msg_id(), m.body());
///         }
///         ConsumeConcurrentlyStatus::ConsumeSuccess
///     })
///     .build()?;
/// consumer.start()?;
/// // ...
/// consumer.shutdown(std::time::Duration::from_secs(10))?;
/// # Ok::<(), rocketmq_sync::Error>(())
/// ```
#[doc(alias = "DefaultMQPushConsumerImpl")]
#[derive(Debug, Clone)]
pub struct DefaultMQPushConsumer {
    pub(crate) inner: Arc<PushConsumerInner>,
}

impl DefaultMQPushConsumer {
    /// A builder for a consumer of `group`, with Java's defaults.
    pub fn builder(group: impl Into<String>) -> DefaultMQPushConsumerBuilder {
        DefaultMQPushConsumerBuilder::new(group.into())
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
        self.inner
            .instance
            .read()
            .as_ref()
            .map(|i| i.client_id().to_owned())
    }

    /// Starts consuming. Starting twice is an error.
    pub fn start(&self) -> Result<()> {
        self.inner.start()
    }

    /// Stops consuming: no new pulls, running listeners finish (bounded by `timeout`), offsets
    /// are persisted, the group is unregistered from the brokers, and the client instance stops
    /// when nothing else uses it. Idempotent.
    ///
    /// [`Error::ShutdownTimeout`] names the threads still running when `timeout` is up, for
    /// example a consume thread whose listener has not returned: everything else is shut down,
    /// and they are left to finish on their own. The call returns soon after `timeout`.
    pub fn shutdown(&self, timeout: Duration) -> Result<()> {
        self.inner.shutdown(timeout)
    }

    /// Subscribes to another topic with a tag expression (`"*"`, `"TagA || TagB"`); takes
    /// effect at the next rebalance, and a heartbeat is sent at once.
    pub fn subscribe(&self, topic: &str, expr: &str) -> Result<()> {
        self.subscribe_with(topic, expr, ExpressionType::Tag)
    }

    /// Subscribes to another topic with an SQL92 expression over message properties, evaluated
    /// by the broker (Java `subscribe(topic, MessageSelector.bySql(sql))`). A running consumer
    /// first asks the topic's brokers whether they accept it: a broker without property
    /// filtering (`enablePropertyFilter`), or one that cannot parse the expression, makes this
    /// fail with its answer, and the subscriptions stay as they were.
    pub fn subscribe_sql92(&self, topic: &str, sql: &str) -> Result<()> {
        self.subscribe_with(topic, sql, ExpressionType::Sql92)
    }

    fn subscribe_with(&self, topic: &str, expr: &str, kind: ExpressionType) -> Result<()> {
        crate::producer::validators::check_topic(topic)?;
        let topic = &*self.inner.client.with_namespace(topic);
        let sd = build_subscription_data(topic, expr, kind)?;
        if let Some(i) = self.inner.instance.read().clone() {
            crate::client::check_client::check_client_in_broker(&i, &self.inner.cfg.group, &sd)?;
        }
        self.inner
            .subscription_inner
            .write()
            .insert(topic.to_owned(), Arc::new(sd));
        if let Some(i) = self.inner.instance.read().clone() {
            i.update_topic_route_info_from_name_server(topic);
            i.send_heartbeat_to_all_broker_now();
            i.rebalance_immediately();
        }
        Ok(())
    }

    /// Stops consuming `topic` at the next rebalance.
    pub fn unsubscribe(&self, topic: &str) {
        let topic = self.inner.client.with_namespace(topic);
        self.inner.subscription_inner.write().remove(&*topic);
        if let Some(i) = self.inner.instance.read().clone() {
            i.send_heartbeat_to_all_broker_now();
            i.rebalance_immediately();
        }
    }

    /// Pauses pulling (Java `suspend`); cached messages are still consumed.
    pub fn suspend(&self) {
        self.inner.paused.store(true, Ordering::Release);
        log::info!("suspend this consumer, {}", self.inner.cfg.group);
    }

    /// Resumes pulling and rebalances at once.
    pub fn resume(&self) {
        self.inner.paused.store(false, Ordering::Release);
        if let Some(i) = self.inner.instance.read().clone() {
            i.rebalance_immediately();
        }
        log::info!("resume this consumer, {}", self.inner.cfg.group);
    }

    /// The queues of the subscribed topics this consumer holds now (its share of the
    /// assignment), with their state, sorted by queue.
    ///
    /// A clustering consumer also pulls its group's retry topic (`%RETRY%<group>`), where
    /// messages it asked to reconsume come back; those queues are not part of the assignment of
    /// the subscribed topics and are left out.
    pub fn queue_stats(&self) -> Vec<QueueStat> {
        self.inner.queue_stats()
    }

    /// Consume statistics per topic (Java `ConsumeStatus`).
    pub fn consume_stats(&self) -> HashMap<String, crate::consumer::ConsumeStatus> {
        self.inner.stats.snapshot()
    }

    /// How many times, since start, a pull was put off by client-side flow control: its queue
    /// cached more than `pull_threshold_for_queue` messages or `pull_threshold_size_for_queue`
    /// MiB (or their per-topic shares), or, for concurrent consumption, spanned more than
    /// `consume_concurrently_max_span` offsets. Each time the queue is looked at again 50 ms
    /// later. Java counts the same events in `queueFlowControlTimes` and
    /// `queueMaxSpanFlowControlTimes`, and only logs them.
    pub fn flow_control_times(&self) -> u64 {
        self.inner.stats.flow_control_times()
    }

    /// Trace records dropped, since start, because the trace queue was full (0 without
    /// message trace). Trace data is dropped rather than a send or a consume made to wait.
    pub fn trace_dropped(&self) -> u64 {
        self.inner.trace.as_ref().map_or(0, |t| t.dropped())
    }

    /// Threads of the consume pool right now.
    pub fn consume_pool_size(&self) -> usize {
        self.inner
            .consume_service
            .read()
            .as_ref()
            .map_or(0, |c| c.pool_size())
    }
}

/// One held queue as seen by [`DefaultMQPushConsumer::queue_stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStat {
    /// The queue.
    pub message_queue: MessageQueue,
    /// Messages cached (pulled, not yet consumed).
    pub cached_msg_count: usize,
    /// Bytes cached.
    pub cached_msg_size: u64,
    /// Offset span of the cache.
    pub span: i64,
    /// The offset committed locally (next to consume), -1 if none.
    pub commit_offset: i64,
    /// The broker's max offset at the last pull minus the next pull offset.
    pub lag: i64,
    /// Messages at the broker beyond the last one cached (Java `ProcessQueue.msgAccCnt`), from
    /// the `MAX_OFFSET` of the last pull.
    pub msg_acc_cnt: i64,
}

// ---------------------------------------------------------------------------------------------
// The consumer's machinery

pub(crate) struct PushConsumerInner {
    pub(crate) me: Weak<PushConsumerInner>,
    pub(crate) cfg: ConsumerConfig,
    pub(crate) client: ClientConfig,
    pub(crate) state: Mutex<ServiceState>,
    pub(crate) paused: AtomicBool,
    pub(crate) instance: RwLock<Option<Arc<MQClientInstance>>>,
    pub(crate) subscription_inner: RwLock<HashMap<String, Arc<SubscriptionData>>>,
    pub(crate) topic_subscribe_info: RwLock<HashMap<String, Vec<MessageQueue>>>,
    pub(crate) process_queue_table: RwLock<HashMap<MessageQueue, Arc<ProcessQueue>>>,
    pub(crate) offset_store: RwLock<Option<Arc<dyn OffsetStore>>>,
    pub(crate) consume_service: RwLock<Option<Arc<dyn ConsumeMessageService>>>,
    pub(crate) listener: MessageListener,
    pub(crate) hooks: Vec<Arc<dyn ConsumeMessageHook>>,
    pub(crate) allocate: Arc<dyn AllocateMessageQueueStrategy>,
    pub(crate) pull_from_which_node: Mutex<HashMap<MessageQueue, i64>>,
    pub(crate) stats: ConsumerStats,
    pub(crate) start_time: i64,
    /// This consumer's periodic tasks on the shared scheduler, cancelled at shutdown.
    pub(crate) tasks: Mutex<Vec<crate::executor::ScheduledHandle>>,
    /// Message trace, when on: its trace hook is among `hooks`.
    pub(crate) trace: Option<Arc<crate::producer::trace::AsyncTraceDispatcher>>,
}

impl std::fmt::Debug for PushConsumerInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DefaultMQPushConsumer")
            .field("group", &self.cfg.group)
            .field("state", &*self.state.lock())
            .finish()
    }
}

pub(crate) fn shut_down() -> Error {
    Error::ServiceState {
        state: ServiceState::ShutdownAlready,
        action: "reach the broker: the client instance is shut down",
    }
}

impl PushConsumerInner {
    pub(crate) fn stats(&self) -> &ConsumerStats {
        &self.stats
    }

    pub(crate) fn offset_store(&self) -> Arc<dyn OffsetStore> {
        self.offset_store
            .read()
            .clone()
            .expect("the offset store exists once started")
    }

    pub(crate) fn instance(&self) -> Option<Arc<MQClientInstance>> {
        self.instance.read().clone()
    }

    pub(crate) fn retry_topic(&self) -> String {
        format!("%RETRY%{}", self.cfg.group)
    }

    /// Runs `task` after `delay` on the client's scheduler.
    pub(crate) fn schedule(&self, delay: Duration, task: impl FnOnce() + Send + 'static) {
        if let Some(i) = self.instance() {
            i.schedule(delay, task);
        }
    }

    pub(crate) fn start(&self) -> Result<()> {
        let mut state = self.state.lock();
        if *state != ServiceState::CreateJust {
            return Err(Error::ServiceState {
                state: *state,
                action: "start the consumer",
            });
        }
        let result = self
            .start_inner()
            .and_then(|()| self.check_client_in_broker());
        *state = if result.is_ok() {
            ServiceState::Running
        } else {
            ServiceState::StartFailed
        };
        drop(state);
        match result {
            Ok(()) => {
                let instance = self.instance().expect("started");
                for topic in self.subscription_inner.read().keys() {
                    instance.update_topic_route_info_from_name_server(topic);
                }
                instance.send_heartbeat_to_all_broker_now();
                instance.rebalance_immediately();
                log::info!(
                    "the consumer [{}] started ({:?}), client id {}",
                    self.cfg.group,
                    self.cfg.message_model,
                    instance.client_id()
                );
                Ok(())
            }
            Err(e) => {
                if let Some(i) = self.instance.write().take() {
                    i.unregister_consumer(
                        &self.cfg.group,
                        false,
                        crate::client::instance::DROP_SHUTDOWN_TIMEOUT,
                    );
                }
                Err(e)
            }
        }
    }

    /// Java `checkClientInBroker` at start: the brokers must accept every subscription that is
    /// not by tag.
    fn check_client_in_broker(&self) -> Result<()> {
        let Some(instance) = self.instance() else {
            return Ok(());
        };
        let subscriptions: Vec<_> = self.subscription_inner.read().values().cloned().collect();
        for sd in subscriptions {
            crate::client::check_client::check_client_in_broker(&instance, &self.cfg.group, &sd)?;
        }
        Ok(())
    }

    pub(crate) fn start_inner(&self) -> Result<()> {
        // A lite pull consumer may subscribe or assign after start, as in Java; it has no
        // retry topic (nothing is sent back: the user's poll loop owns redelivery).
        let lite = self.lite().is_some();
        if !lite && self.subscription_inner.read().is_empty() {
            return Err(Error::config(
                "the consumer subscribes to no topic: call subscribe() before start()",
            ));
        }
        if !lite && self.cfg.message_model == MessageModel::Clustering {
            let retry = self.retry_topic();
            let sd = build_subscription_data(&retry, "*", ExpressionType::Tag)?;
            self.subscription_inner.write().insert(retry, Arc::new(sd));
        }
        let weak: Weak<dyn MQConsumerInner> = self.me.clone() as Weak<dyn MQConsumerInner>;
        let broadcasting = self.cfg.message_model == MessageModel::Broadcasting;
        // Java keeps `DEFAULT` for a broadcasting consumer: its offsets file is found by the
        // client id, so the name must survive a restart.
        let default_name = if broadcasting {
            BROADCASTING_INSTANCE_NAME.to_owned()
        } else {
            default_instance_name()
        };
        let group = &self.cfg.group;
        let instance = join_instance(
            &self.client,
            &default_name,
            broadcasting,
            false,
            group,
            |client| MQClientManager::register_consumer(client, group, weak.clone()),
        )?;
        *self.instance.write() = Some(instance.clone());

        let store: Arc<dyn OffsetStore> = match self.cfg.message_model {
            MessageModel::Clustering => Arc::new(RemoteBrokerOffsetStore::new(
                self.cfg.group.clone(),
                BrokerOffsetApi {
                    instance: Arc::downgrade(&instance),
                    group: self.cfg.group.clone(),
                },
            )),
            MessageModel::Broadcasting => Arc::new(LocalFileOffsetStore::new(
                instance.client_id(),
                &self.cfg.group,
                self.cfg.offset_store_dir.clone(),
            )),
        };
        store.load()?;
        *self.offset_store.write() = Some(store);

        if let Some(trace) = &self.trace {
            // As Java: tracing that cannot start does not stop the consumer. Its internal
            // producer joins this consumer's instance.
            let mut client = self.client.clone();
            client.instance_name = instance.config().instance_name.clone();
            if let Err(e) = trace.start(&client) {
                log::warn!("message trace of {} did not start: {e}", self.cfg.group);
            }
        }

        let service = crate::consumer::consume::create(
            self.me.clone(),
            &self.cfg,
            &self.listener,
            self.hooks.clone(),
        )?;
        service.start(&instance)?;
        *self.consume_service.write() = Some(service);

        let mut tasks = Vec::new();
        let me = self.me.clone();
        let period = self.client.persist_consumer_offset_interval;
        tasks.push(instance.schedule_periodic(
            Duration::from_secs(10).min(period * 2),
            period,
            move || {
                if let Some(me) = me.upgrade() {
                    me.persist_consumer_offset();
                }
            },
        )?);
        // The pull watchdog: every held queue has exactly one live pull request.
        let me = self.me.clone();
        tasks.push(instance.schedule_periodic(
            Duration::from_secs(10),
            Duration::from_secs(10),
            move || {
                if let Some(me) = me.upgrade() {
                    me.check_pulls();
                }
            },
        )?);
        *self.tasks.lock() = tasks;
        Ok(())
    }

    pub(crate) fn shutdown(&self, timeout: Duration) -> Result<()> {
        {
            let mut state = self.state.lock();
            match *state {
                ServiceState::Running => *state = ServiceState::ShutdownAlready,
                ServiceState::CreateJust => {
                    *state = ServiceState::ShutdownAlready;
                    return Ok(());
                }
                _ => return Ok(()),
            }
        }
        let deadline = Instant::now() + timeout;
        for t in self.tasks.lock().drain(..) {
            t.cancel();
        }
        // 1. Stop pulling (the rebalance skips a consumer that is not running).
        let queues: Vec<Arc<ProcessQueue>> =
            self.process_queue_table.read().values().cloned().collect();
        for pq in &queues {
            pq.stop_pulling();
        }
        // 2. Let running listeners finish and commit, bounded; then nothing more commits.
        let mut unfinished = Vec::new();
        if let Some(cs) = self.consume_service.read().clone() {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Err(e) = cs.shutdown(left) {
                log::warn!(
                    "consume pool of {} did not drain in {left:?}: {e}",
                    self.cfg.group
                );
                unfinished.extend(e.unfinished_threads());
            }
        }
        for pq in &queues {
            pq.set_dropped();
        }
        // The listener calls are over: send their trace records.
        if let Some(trace) = &self.trace {
            trace.shutdown(deadline.saturating_duration_since(Instant::now()));
        }
        // 3. Persist offsets (orderly: then give the locks back, so the queues' next owners
        // start at once, from these offsets), 4. unregister.
        self.persist_consumer_offset();
        if self.uses_broker_locks() && !queues.is_empty() {
            let store = self.offset_store();
            for pq in &queues {
                store.persist_and_wait(&pq.mq);
            }
            let mqs: Vec<MessageQueue> = queues.iter().map(|pq| pq.mq.clone()).collect();
            self.unlock_mqs(&mqs);
        }
        let instance = self.instance.write().take();
        if let Some(i) = instance {
            let left = deadline.saturating_duration_since(Instant::now());
            unfinished.extend(i.unregister_consumer(&self.cfg.group, true, left));
        }
        self.process_queue_table.write().clear();
        log::info!("the consumer [{}] shut down", self.cfg.group);
        if unfinished.is_empty() {
            Ok(())
        } else {
            Err(Error::ShutdownTimeout {
                timeout,
                threads: unfinished,
            })
        }
    }

    /// Removes `pq` from the table if it is still its queue's entry (a rebalance may have
    /// replaced it since). Returns whether it did.
    pub(crate) fn remove_from_table(&self, pq: &Arc<ProcessQueue>) -> bool {
        let mut table = self.process_queue_table.write();
        if table.get(&pq.mq).is_some_and(|cur| Arc::ptr_eq(cur, pq)) {
            table.remove(&pq.mq);
            true
        } else {
            false
        }
    }

    /// Java `ConsumeType`: a lite pull consumer's user pulls (`CONSUME_ACTIVELY`), a push
    /// consumer's listener is called (`CONSUME_PASSIVELY`).
    pub(crate) fn consume_type(&self) -> &'static str {
        if self.lite().is_some() {
            "CONSUME_ACTIVELY"
        } else {
            "CONSUME_PASSIVELY"
        }
    }

    pub(crate) fn is_running(&self) -> bool {
        *self.state.lock() == ServiceState::Running
    }

    pub(crate) fn persist_consumer_offset(&self) {
        let Some(store) = self.offset_store.read().clone() else {
            return;
        };
        let mqs: HashSet<MessageQueue> = self.process_queue_table.read().keys().cloned().collect();
        store.persist_all(&mqs);
    }

    pub(crate) fn queue_stats(&self) -> Vec<QueueStat> {
        let store = self.offset_store.read().clone();
        let mut v: Vec<QueueStat> = self
            .process_queue_table
            .read()
            .values()
            .filter(|s| !s.mq.topic.starts_with("%RETRY%"))
            .map(|s| {
                let commit = store.as_ref().map_or(-1, |st| {
                    st.read_offset(&s.mq, ReadOffsetType::ReadFromMemory)
                });
                let max = s.broker_max_offset.load(Ordering::Relaxed);
                let next = s.next_offset.load(Ordering::Relaxed);
                QueueStat {
                    message_queue: s.mq.clone(),
                    cached_msg_count: s.msg_count().max(0) as usize,
                    cached_msg_size: s.msg_size().max(0) as u64,
                    span: s.max_span(),
                    commit_offset: commit,
                    lag: if max >= 0 {
                        max.saturating_sub(next).max(0)
                    } else {
                        0
                    },
                    msg_acc_cnt: s.msg_acc_cnt(),
                }
            })
            .collect();
        v.sort_by(|a, b| a.message_queue.cmp(&b.message_queue));
        v
    }
}

impl Drop for PushConsumerInner {
    /// The local half of `shutdown` only: pulls stop (their requests hold this consumer weakly),
    /// the group leaves its client instance, which stops when nothing else uses it. Nothing is
    /// sent over the network, so offsets consumed since the last persist (at most 5 s) are not
    /// committed: call `shutdown()` for that.
    fn drop(&mut self) {
        if *self.state.get_mut() != ServiceState::Running {
            return;
        }
        log::warn!(
            "consumer {} dropped without shutdown(); offsets since the last persist are not committed",
            self.cfg.group
        );
        for t in self.tasks.get_mut().drain(..) {
            t.cancel();
        }
        if let Some(cs) = self.consume_service.get_mut().take() {
            // Signals the pool; workers finish their current task and exit.
            drop(cs);
        }
        if let Some(instance) = self.instance.get_mut().take() {
            let group = self.cfg.group.clone();
            crate::client::instance::release_from_drop(move || {
                instance.unregister_consumer(
                    &group,
                    false,
                    crate::client::instance::DROP_SHUTDOWN_TIMEOUT,
                );
            });
        }
    }
}

impl MQConsumerInner for PushConsumerInner {
    fn consumer_data(&self) -> ConsumerData {
        ConsumerData {
            consume_from_where: self.cfg.consume_from_where.as_java_str().to_owned(),
            consume_type: self.consume_type().to_owned(),
            group_name: self.cfg.group.clone(),
            message_model: self.cfg.message_model.as_java_str().to_owned(),
            subscription_data_set: self
                .subscription_inner
                .read()
                .values()
                .map(|s| (**s).clone())
                .collect(),
            unit_mode: false,
        }
    }

    fn subscribed_topics(&self) -> Vec<String> {
        self.subscription_inner.read().keys().cloned().collect()
    }

    fn update_topic_subscribe_info(&self, topic: &str, mqs: Vec<MessageQueue>) {
        if self.subscription_inner.read().contains_key(topic) {
            self.topic_subscribe_info
                .write()
                .insert(topic.to_owned(), mqs);
        }
    }

    fn is_subscribe_topic_need_update(&self, topic: &str) -> bool {
        self.subscription_inner.read().contains_key(topic)
            && !self.topic_subscribe_info.read().contains_key(topic)
    }

    fn do_rebalance(&self) {
        self.do_rebalance_inner();
    }

    fn consume_message_directly(
        &self,
        stored: &bytes::Bytes,
        broker_name: &str,
        reply: DirectConsumeReply,
    ) {
        self.on_consume_message_directly(stored, broker_name, reply)
    }

    fn running_info(&self) -> ConsumerRunningInfo {
        self.on_get_consumer_running_info()
    }

    fn reset_offset(&self, topic: &str, offsets: &HashMap<MessageQueue, i64>) {
        self.on_reset_offset(topic, offsets)
    }

    fn offsets_of_topic(&self, topic: &str) -> HashMap<MessageQueue, i64> {
        self.on_get_consumer_status(topic)
    }
}
