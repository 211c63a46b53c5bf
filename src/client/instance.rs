//! `MQClientInstance`: the threads and caches one client id shares across its producers and
//! consumers, and `MQClientManager`, which keeps one instance per client id.
//!
//! Threads: the remoting client's `rmq-io` and `rmq-cb-*`, one `rmq-sched` scheduler for the
//! periodic tasks (route refresh, heartbeat, name-server lookup), and with the first consumer
//! `rmq-pull` (which also times delayed pulls) and `rmq-rebal`. Producers and consumers hold an
//! `Arc` to their instance; scheduled tasks hold a `Weak` so they never keep it alive.
//!
//! Registration and the last unregistration are decided under the manager's lock: an instance
//! that has decided to shut down is out of the manager's table before anyone can attach to it,
//! and a new registration gets a fresh instance. Threads are joined outside every lock.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use crate::client::api::expect_success;
use crate::client::api::MQClientAPI;
use crate::client::config::{parse_namesrv_list, ClientConfig, SharedRpcHook};
use crate::client::publish_info::TopicPublishInfo;
use crate::client::pull_service::{PullCommand, PullMessageService, PullTask};
use crate::client::rebalance_service::RebalanceService;
use crate::common::route::MASTER_ID;
use crate::common::TopicRouteData;
use crate::common::{Message, MessageQueue};
use crate::error::{ClientErrorCode, Error, Result};
use crate::executor::{panic_message, ServiceHandle, ShutdownError};
use crate::executor::{ScheduledExecutor, ScheduledHandle};
use crate::remoting::protocol::body::ConsumerRunningInfo;
use crate::remoting::protocol::header::{
    GetConsumerListByGroupRequestHeader, GetMaxOffsetRequestHeader, GetMaxOffsetResponseHeader,
    GetMinOffsetRequestHeader, GetMinOffsetResponseHeader, SearchOffsetRequestHeader,
    SearchOffsetResponseHeader,
};
use crate::remoting::protocol::heartbeat::{ConsumerData, HeartbeatData, ProducerData};
use crate::remoting::protocol::ResponseCode;
use crate::remoting::protocol::{CommandCustomHeader, RemotingCommand, RequestCode};
use crate::remoting::{RemotingClient, RemotingClientConfig};
use crate::service_state::ServiceState;

/// The topic whose route a producer borrows until its own topic is auto-created.
pub(crate) const AUTO_CREATE_TOPIC_KEY_TOPIC: &str = "TBW102";
/// Java's inner producer group: consumers send failed messages to the retry topic with it
/// when CONSUMER_SEND_MSG_BACK fails.
pub(crate) const CLIENT_INNER_PRODUCER_GROUP: &str = "CLIENT_INNER_PRODUCER";
/// Timeout of admin calls such as GET_MAX_OFFSET (Java `MQAdminImpl`, 6 s).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(6);
/// How long an instance released by a dropped producer or consumer waits for its threads.
pub(crate) const DROP_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// How a `CONSUME_MESSAGE_DIRECTLY` ended.
#[derive(Debug)]
pub(crate) enum DirectConsumeOutcome {
    /// The listener ran (Java `ConsumeMessageDirectlyResult`): the `CMResult` name, the panic
    /// message if it panicked, and the milliseconds it took.
    Consumed {
        result: &'static str,
        remark: Option<String>,
        spent_ms: u64,
    },
    /// The listener did not run: the response code and why.
    Refused(ResponseCode, String),
}

/// Receives the outcome of a `CONSUME_MESSAGE_DIRECTLY`, once, on whatever thread it is known.
pub(crate) type DirectConsumeReply = Box<dyn FnOnce(DirectConsumeOutcome) + Send>;

/// What the instance needs from a registered consumer.
pub(crate) trait MQConsumerInner: Send + Sync {
    fn consumer_data(&self) -> ConsumerData;
    fn subscribed_topics(&self) -> Vec<String>;
    fn update_topic_subscribe_info(&self, topic: &str, mqs: Vec<MessageQueue>);
    fn is_subscribe_topic_need_update(&self, topic: &str) -> bool;
    fn do_rebalance(&self);
    /// `CONSUME_MESSAGE_DIRECTLY`: decodes `stored` (one stored record) and runs the listener
    /// on it on the consumer's own pool, never on the calling (callback) thread; `reply` gets
    /// the outcome when the listener returns, or at once if the request is refused.
    fn consume_message_directly(
        &self,
        stored: &bytes::Bytes,
        broker_name: &str,
        reply: DirectConsumeReply,
    );
    fn running_info(&self) -> ConsumerRunningInfo;
    fn reset_offset(&self, topic: &str, offsets: &HashMap<MessageQueue, i64>);
    fn offsets_of_topic(&self, topic: &str) -> HashMap<MessageQueue, i64>;
}

/// The consumer threads of an instance, started with its first consumer.
struct ConsumerServices {
    pull: ServiceHandle,
    pull_tx: crossbeam_channel::Sender<PullCommand>,
    rebalance: ServiceHandle,
}

/// What the instance needs from a registered producer.
pub(crate) trait MQProducerInner: Send + Sync {
    /// Topics this producer has sent to (their routes are refreshed periodically).
    fn publish_topics(&self) -> Vec<String>;
    /// `true` when the producer has no usable route for `topic`.
    fn is_publish_topic_need_update(&self, topic: &str) -> bool;
    /// Installs a new route.
    fn update_topic_publish_info(&self, topic: &str, info: TopicPublishInfo);
    /// The broker at `broker_addr` asks about the half message `msg` (CHECK_TRANSACTION_STATE).
    /// Only a transaction producer answers; the others log it (Java: no check listener).
    fn check_transaction_state(
        &self,
        instance: &Arc<MQClientInstance>,
        broker_addr: &str,
        msg: crate::common::MessageExt,
        header: crate::remoting::protocol::header::CheckTransactionStateRequestHeader,
    ) {
        let _ = (instance, header);
        log::warn!(
            "transaction check from {broker_addr} for {}: this producer runs no transactions",
            msg.msg_id()
        );
    }
}

/// The instance's inner producer (group [`CLIENT_INNER_PRODUCER_GROUP`], Java's
/// `MQClientInstance.defaultMQProducer`) as the instance and the consumers see it: the one send
/// the consumer needs when CONSUMER_SEND_MSG_BACK fails, and a local shutdown for when the
/// instance stops. The producer implements it; the instance holds it type-erased so that it
/// never names the producer module (which sits above it).
pub(crate) trait InnerProducer: Send + Sync {
    /// Sends `msg` and waits for the broker's answer.
    fn send_message(&self, msg: &Message) -> Result<()>;
    /// Marks the producer shut down without any network call: the instance is stopping.
    fn shutdown_local(&self);
}

/// One client id's shared machinery.
pub(crate) struct MQClientInstance {
    me: Weak<MQClientInstance>,
    client_id: String,
    config: ClientConfig,
    api: MQClientAPI,
    state: Mutex<ServiceState>,
    topic_route_table: RwLock<HashMap<String, TopicRouteData>>,
    broker_addr_table: RwLock<HashMap<String, BTreeMap<i64, String>>>,
    broker_version_table: RwLock<HashMap<String, HashMap<String, i32>>>,
    producers: RwLock<HashMap<String, Weak<dyn MQProducerInner>>>,
    consumers: RwLock<HashMap<String, Weak<dyn MQConsumerInner>>>,
    admin_exts: Mutex<HashSet<String>>,
    consumer_services: Mutex<Option<ConsumerServices>>,
    inner_producer: Mutex<Option<Arc<dyn InnerProducer>>>,
    scheduler: Mutex<Option<ScheduledExecutor>>,
    tasks: Mutex<Vec<ScheduledHandle>>,
    route_lock: Mutex<()>,
    heartbeat_lock: Mutex<()>,
    /// Requests waiting for a reply (request-reply).
    request_futures: crate::client::reply::RequestFutureTable,
}

impl std::fmt::Debug for MQClientInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MQClientInstance")
            .field("client_id", &self.client_id)
            .field("state", &*self.state.lock())
            .finish()
    }
}

fn manager() -> &'static Mutex<HashMap<String, Arc<MQClientInstance>>> {
    static M: OnceLock<Mutex<HashMap<String, Arc<MQClientInstance>>>> = OnceLock::new();
    M.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Java's `MQClientManager`: one instance per client id in this process.
#[derive(Debug)]
pub(crate) struct MQClientManager;

impl MQClientManager {
    /// The running instance for `config.client_id()` in `table`, created and started if needed.
    fn running_or_new(
        table: &mut HashMap<String, Arc<MQClientInstance>>,
        config: &ClientConfig,
    ) -> Result<Arc<MQClientInstance>> {
        let client_id = config.client_id();
        if let Some(existing) = table.get(&client_id) {
            if *existing.state.lock() == ServiceState::Running {
                // Java would sign this client's requests with the first client's hook; a
                // client must never run with another's credentials.
                if !SharedRpcHook::same(existing.config.rpc_hook.as_ref(), config.rpc_hook.as_ref())
                {
                    return Err(Error::config(format!(
                        "the client instance {client_id} runs with {}, this client has {}: the \
                         clients of one instance share its RPC hook; give this client its own \
                         instance_name(), or the same Arc of the hook",
                        describe_hook(existing.config.rpc_hook.as_ref()),
                        describe_hook(config.rpc_hook.as_ref()),
                    )));
                }
                return Ok(existing.clone());
            }
        }
        let instance = MQClientInstance::new(client_id.clone(), config.clone())?;
        table.insert(client_id, instance.clone());
        Ok(instance)
    }

    /// Whether the running instance of `config.client_id()` has `group` registered in `role`:
    /// used to pick a default instance name that does not collide (see
    /// `client::config::join_instance`).
    pub(crate) fn has_group(config: &ClientConfig, role: ClientRole, group: &str) -> bool {
        let table = manager().lock();
        table.get(&config.client_id()).is_some_and(|i| {
            *i.state.lock() == ServiceState::Running
                && match role {
                    ClientRole::Producer => i
                        .producers
                        .read()
                        .get(group)
                        .is_some_and(|p| p.strong_count() > 0),
                    ClientRole::Consumer => i
                        .consumers
                        .read()
                        .get(group)
                        .is_some_and(|c| c.strong_count() > 0),
                    ClientRole::Admin => i.admin_exts.lock().contains(group),
                }
        })
    }

    /// Whether an instance runs under `config.client_id()` with another RPC hook than
    /// `config`'s: used to pick a default instance name (see `client::config::join_instance`).
    pub(crate) fn has_other_rpc_hook(config: &ClientConfig) -> bool {
        let table = manager().lock();
        table.get(&config.client_id()).is_some_and(|i| {
            *i.state.lock() == ServiceState::Running
                && !SharedRpcHook::same(i.config.rpc_hook.as_ref(), config.rpc_hook.as_ref())
        })
    }

    /// Registers a producer group with the running instance of `config.client_id()` (created
    /// if needed), atomically with respect to that instance shutting down.
    pub(crate) fn register_producer(
        config: &ClientConfig,
        group: &str,
        producer: Weak<dyn MQProducerInner>,
    ) -> Result<Arc<MQClientInstance>> {
        let mut table = manager().lock();
        let instance = Self::running_or_new(&mut table, config)?;
        instance.register_producer(group, producer)?;
        Ok(instance)
    }

    /// Registers a consumer group with the running instance of `config.client_id()` (created
    /// if needed) and starts its consumer threads, atomically with respect to that instance
    /// shutting down.
    pub(crate) fn register_consumer(
        config: &ClientConfig,
        group: &str,
        consumer: Weak<dyn MQConsumerInner>,
    ) -> Result<Arc<MQClientInstance>> {
        let mut table = manager().lock();
        let instance = Self::running_or_new(&mut table, config)?;
        instance.register_consumer(group, consumer)?;
        Ok(instance)
    }

    /// Registers an admin group (Java `registerAdminExt`) with the running instance of
    /// `config.client_id()` (created if needed), atomically with respect to that instance
    /// shutting down. An admin group is known only here: it sends no heartbeat.
    pub(crate) fn register_admin_ext(
        config: &ClientConfig,
        group: &str,
    ) -> Result<Arc<MQClientInstance>> {
        let mut table = manager().lock();
        let instance = Self::running_or_new(&mut table, config)?;
        if !instance.admin_exts.lock().insert(group.to_owned()) {
            return Err(Error::client(
                -1,
                format!(
                    "The admin group[{group}] has been created before in client {}, specify \
                     another name or instance name please.",
                    instance.client_id
                ),
            ));
        }
        Ok(instance)
    }
}

/// What a client registers with an instance as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientRole {
    /// A producer group.
    Producer,
    /// A consumer group.
    Consumer,
    /// An admin tool's group (Java `adminExtTable`).
    Admin,
}

fn describe_hook(hook: Option<&SharedRpcHook>) -> String {
    hook.map_or_else(|| "no RPC hook".to_owned(), |h| format!("the {h:?}"))
}

/// Removes `instance` from the manager's table (`table` is the locked table) if it is the one
/// registered for its client id.
fn remove_from_table(
    table: &mut HashMap<String, Arc<MQClientInstance>>,
    instance: &MQClientInstance,
) {
    if table
        .get(&instance.client_id)
        .is_some_and(|i| std::ptr::eq(Arc::as_ptr(i), instance))
    {
        table.remove(&instance.client_id);
    }
}

impl MQClientInstance {
    fn new(client_id: String, config: ClientConfig) -> Result<Arc<Self>> {
        let remoting = RemotingClient::start(RemotingClientConfig {
            callback_threads: config.client_callback_executor_threads.max(1),
            disable_callback_executor: config.disable_callback_executor,
            serialize_type: config.serialize_type,
            tls: config.remoting_tls()?,
            ..RemotingClientConfig::default()
        })?;
        if let Some(hook) = &config.rpc_hook {
            remoting.register_rpc_hook(Arc::clone(&hook.0));
        }
        let api = MQClientAPI::new(remoting, config.serialize_type);
        let instance = Arc::new_cyclic(|me| MQClientInstance {
            me: me.clone(),
            client_id,
            config,
            api,
            state: Mutex::new(ServiceState::CreateJust),
            topic_route_table: RwLock::new(HashMap::new()),
            broker_addr_table: RwLock::new(HashMap::new()),
            broker_version_table: RwLock::new(HashMap::new()),
            producers: RwLock::new(HashMap::new()),
            consumers: RwLock::new(HashMap::new()),
            admin_exts: Mutex::new(HashSet::new()),
            consumer_services: Mutex::new(None),
            inner_producer: Mutex::new(None),
            scheduler: Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
            route_lock: Mutex::new(()),
            heartbeat_lock: Mutex::new(()),
            request_futures: Default::default(),
        });
        crate::client::processors::register(&instance);
        // A broker that restarted lost this client's heartbeat: until the next periodic one (up
        // to 30 s away) it answers every pull with SUBSCRIPTION_NOT_EXIST and leaves the client
        // out of the group's consumer list. Every (re)connection to a broker re-registers at once.
        let weak = instance.me.clone();
        instance.remoting().set_connect_listener(move |addr| {
            if let Some(me) = weak.upgrade() {
                me.on_connected(addr);
            }
        });
        if let Err(e) = instance.start() {
            *instance.state.lock() = ServiceState::StartFailed;
            instance.api.remoting().shutdown();
            return Err(e);
        }
        Ok(instance)
    }

    /// The id brokers know this client by.
    pub(crate) fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Typed RPCs.
    pub(crate) fn api(&self) -> &MQClientAPI {
        &self.api
    }

    /// The settings this instance was created with.
    pub(crate) fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The remoting client.
    pub(crate) fn remoting(&self) -> &RemotingClient {
        self.api.remoting()
    }

    /// The requests of this client waiting for a reply.
    pub(crate) fn request_futures(&self) -> &crate::client::reply::RequestFutureTable {
        &self.request_futures
    }

    fn start(self: &Arc<Self>) -> Result<()> {
        let mut list = self.config.namesrv_addr_list();
        let fetch_namesrv = list.is_empty();
        if fetch_namesrv {
            list = fetch_name_server_addr(&self.config.namesrv_lookup_url())?;
        }
        self.remoting().update_namesrv_addr_list(list);

        let scheduler = ScheduledExecutor::new("rmq-sched").map_err(Error::Io)?;
        let mut tasks = Vec::new();
        if fetch_namesrv {
            let weak = Arc::downgrade(self);
            tasks.push(schedule(
                &scheduler,
                Duration::from_secs(10),
                Duration::from_secs(120),
                move || {
                    if let Some(me) = weak.upgrade() {
                        match fetch_name_server_addr(&me.config.namesrv_lookup_url()) {
                            Ok(list) => me.remoting().update_namesrv_addr_list(list),
                            Err(e) => log::warn!("fetch name server address failed: {e}"),
                        }
                    }
                },
            )?);
        }
        let weak = Arc::downgrade(self);
        tasks.push(schedule(
            &scheduler,
            Duration::from_millis(10),
            self.config.poll_name_server_interval,
            move || {
                if let Some(me) = weak.upgrade() {
                    me.update_topic_route_info_from_name_server_all();
                }
            },
        )?);
        let weak = Arc::downgrade(self);
        tasks.push(schedule(
            &scheduler,
            Duration::from_secs(1),
            self.config.heartbeat_broker_interval,
            move || {
                if let Some(me) = weak.upgrade() {
                    me.clean_offline_broker();
                    me.send_heartbeat_to_all_broker_with_lock();
                }
            },
        )?);
        *self.tasks.lock() = tasks;
        *self.scheduler.lock() = Some(scheduler);
        *self.state.lock() = ServiceState::Running;
        log::info!("the client factory [{}] started", self.client_id);
        Ok(())
    }

    /// Registers a producer group. A group can be registered once per client id. Called with
    /// the manager's lock held (see [`MQClientManager::register_producer`]), or for the inner
    /// producer, whose owner checks the state first.
    fn register_producer(&self, group: &str, producer: Weak<dyn MQProducerInner>) -> Result<()> {
        let mut producers = self.producers.write();
        if producers.get(group).is_some_and(|p| p.strong_count() > 0) {
            return Err(Error::client(
                -1,
                format!(
                    "The producer group[{group}] has been created before, specify another name please."
                ),
            ));
        }
        producers.insert(group.to_owned(), producer);
        Ok(())
    }

    /// Registers the inner producer of this instance (see
    /// [`inner_producer_or_init`](Self::inner_producer_or_init), which checks that the instance
    /// is running).
    pub(crate) fn register_inner_producer(
        &self,
        group: &str,
        producer: Weak<dyn MQProducerInner>,
    ) -> Result<()> {
        self.register_producer(group, producer)
    }

    /// Unregisters a producer group from this instance and, with `notify_brokers`, from every
    /// broker; shuts the instance down when nothing else uses it, waiting up to `timeout` for
    /// its threads. Returns the threads still running after that.
    pub(crate) fn unregister_producer(
        &self,
        group: &str,
        notify_brokers: bool,
        timeout: Duration,
    ) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        self.producers.write().remove(group);
        let addrs = if notify_brokers {
            self.all_broker_addrs()
        } else {
            Vec::new()
        };
        for addr in addrs {
            if let Err(e) = self.api.unregister_client(
                &addr,
                &self.client_id,
                Some(group),
                None,
                self.config.mq_client_api_timeout,
            ) {
                log::warn!("unregister producer {group} from {addr} failed: {e}");
            }
        }
        self.shutdown_if_unused(deadline)
    }

    /// Shuts the instance down once no producer, consumer or admin client uses it (the inner
    /// producer does not count). The decision and the state change happen under the manager's lock, so no
    /// registration can slip in between; the threads are joined (until `deadline`) after it is
    /// released. Returns the threads still running.
    fn shutdown_if_unused(&self, deadline: Instant) -> Vec<String> {
        {
            let mut table = manager().lock();
            let producers_left = self
                .producers
                .read()
                .keys()
                .any(|g| g != CLIENT_INNER_PRODUCER_GROUP);
            if producers_left
                || !self.consumers.read().is_empty()
                || !self.admin_exts.lock().is_empty()
            {
                return Vec::new();
            }
            #[cfg(test)]
            tests::run_shutdown_hook(&self.client_id);
            if !self.mark_shut_down(&mut table) {
                return Vec::new();
            }
        }
        self.stop(deadline)
    }

    /// Flips a running instance to `ShutdownAlready` and takes it out of the manager's table
    /// (`table`, locked by the caller). `false` if it was not running.
    fn mark_shut_down(&self, table: &mut HashMap<String, Arc<MQClientInstance>>) -> bool {
        {
            let mut state = self.state.lock();
            if *state != ServiceState::Running {
                return false;
            }
            *state = ServiceState::ShutdownAlready;
        }
        remove_from_table(table, self);
        true
    }

    /// Registers a consumer group; starts the pull and rebalance threads with the first one.
    /// Called with the manager's lock held (see [`MQClientManager::register_consumer`]).
    fn register_consumer(&self, group: &str, consumer: Weak<dyn MQConsumerInner>) -> Result<()> {
        {
            let mut consumers = self.consumers.write();
            if consumers.get(group).is_some_and(|c| c.strong_count() > 0) {
                return Err(Error::client(
                    -1,
                    format!(
                        "The consumer group[{group}] has been created before in client {}, specify another name or instance name please.",
                        self.client_id
                    ),
                ));
            }
            consumers.insert(group.to_owned(), consumer);
        }
        let mut services = self.consumer_services.lock();
        if services.is_none() {
            let (pull_tx, requests) = crossbeam_channel::unbounded();
            let pull = crate::executor::spawn(PullMessageService::new(requests), "rmq-pull")
                .map_err(Error::Io)?;
            let rebalance = crate::executor::spawn(
                RebalanceService {
                    instance: self.me.clone(),
                },
                "rmq-rebal",
            )
            .map_err(Error::Io)?;
            *services = Some(ConsumerServices {
                pull,
                pull_tx,
                rebalance,
            });
        }
        Ok(())
    }

    /// Unregisters a consumer group locally and, with `notify_brokers`, from every broker;
    /// shuts the instance down when nothing else uses it, waiting up to `timeout` for its
    /// threads. Returns the threads still running after that.
    pub(crate) fn unregister_consumer(
        &self,
        group: &str,
        notify_brokers: bool,
        timeout: Duration,
    ) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        self.consumers.write().remove(group);
        if notify_brokers {
            for addr in self.all_broker_addrs() {
                if let Err(e) = self.api.unregister_client(
                    &addr,
                    &self.client_id,
                    None,
                    Some(group),
                    self.config.mq_client_api_timeout,
                ) {
                    log::warn!("unregister consumer {group} from {addr} failed: {e}");
                }
            }
        }
        self.shutdown_if_unused(deadline)
    }

    /// Unregisters an admin group; shuts the instance down when nothing else uses it, waiting
    /// up to `timeout` for its threads. Returns the threads still running after that.
    pub(crate) fn unregister_admin_ext(&self, group: &str, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        self.admin_exts.lock().remove(group);
        self.shutdown_if_unused(deadline)
    }

    pub(crate) fn live_consumers(&self) -> Vec<Arc<dyn MQConsumerInner>> {
        self.consumers
            .read()
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// The consumer of `group`, if it is registered here.
    /// The live producer of `group` in this instance (Java `selectProducer`).
    pub(crate) fn producer(&self, group: &str) -> Option<Arc<dyn MQProducerInner>> {
        self.producers.read().get(group).and_then(Weak::upgrade)
    }

    pub(crate) fn consumer(&self, group: &str) -> Option<Arc<dyn MQConsumerInner>> {
        self.consumers.read().get(group).and_then(Weak::upgrade)
    }

    /// Wakes the rebalance thread.
    pub(crate) fn rebalance_immediately(&self) {
        if let Some(s) = self.consumer_services.lock().as_ref() {
            s.rebalance.wakeup();
        }
    }

    /// Rebalances every consumer (on `rmq-rebal`). A consumer whose rebalance panics (a
    /// user's allocation strategy, say) is logged and skipped for this round; the others are
    /// still served, and it is tried again at the next round.
    pub(crate) fn do_rebalance(&self) {
        for c in self.live_consumers() {
            if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| c.do_rebalance())) {
                log::error!(
                    "rebalance of a consumer of {} panicked; it keeps its assignment until the next round: {}",
                    self.client_id,
                    panic_message(&*payload)
                );
            }
        }
    }

    fn send_pull_command(&self, cmd: PullCommand) {
        let tx = self
            .consumer_services
            .lock()
            .as_ref()
            .map(|s| s.pull_tx.clone());
        if let Some(tx) = tx {
            // A send fails only after shutdown; the request is then dropped.
            let _ = tx.send(cmd);
        }
    }

    /// Queues a pull at once.
    pub(crate) fn execute_pull_request_immediately(&self, req: impl PullTask) {
        self.send_pull_command(PullCommand::Now(Box::new(req)));
    }

    /// Queues a pull after `delay`, on the pull thread's own timer: it never waits behind the
    /// scheduler's blocking work.
    pub(crate) fn execute_pull_request_later(&self, req: impl PullTask, delay: Duration) {
        self.send_pull_command(PullCommand::At(Instant::now() + delay, Box::new(req)));
    }

    /// Runs `task` once after `delay` on the scheduler (dropped if it is shut down).
    pub(crate) fn schedule(&self, delay: Duration, task: impl FnOnce() + Send + 'static) {
        if let Some(s) = self.scheduler.lock().as_ref() {
            if s.schedule(delay, task).is_err() {
                log::debug!("scheduler of {} is shut down; task dropped", self.client_id);
            }
        }
    }

    /// Runs `task` periodically on the scheduler.
    pub(crate) fn schedule_periodic(
        &self,
        initial: Duration,
        period: Duration,
        task: impl FnMut() + Send + 'static,
    ) -> Result<ScheduledHandle> {
        match self.scheduler.lock().as_ref() {
            Some(s) => schedule(s, initial, period, task),
            None => Err(Error::client(-1, "the client instance is shut down")),
        }
    }

    /// Java `findBrokerAddressInSubscribe(brokerName, brokerId, onlyThisBroker=false)`: the
    /// address and whether it is a slave.
    pub(crate) fn find_broker_address_in_subscribe(
        &self,
        mq: &MessageQueue,
        broker_id: i64,
    ) -> Option<(String, bool)> {
        let table = self.broker_addr_table.read();
        let addrs = table.get(&mq.broker_name)?;
        if let Some(a) = addrs.get(&broker_id) {
            return Some((a.clone(), broker_id != MASTER_ID));
        }
        if broker_id != MASTER_ID {
            // The id comes from the broker's `suggestWhichBrokerId`: anything is possible.
            if let Some(a) = broker_id.checked_add(1).and_then(|id| addrs.get(&id)) {
                return Some((a.clone(), true));
            }
        }
        addrs
            .iter()
            .next()
            .map(|(id, a)| (a.clone(), *id != MASTER_ID))
    }

    /// The master of `mq`'s broker, refreshing the route once if it is unknown.
    pub(crate) fn master_addr_refreshing(&self, mq: &MessageQueue) -> Result<String> {
        if let Some(a) = self.find_broker_address_in_publish(&mq.broker_name) {
            return Ok(a);
        }
        self.update_topic_route_info_from_name_server(&mq.topic);
        self.find_broker_address_in_publish(&mq.broker_name)
            .ok_or_else(|| {
                Error::client(
                    ClientErrorCode::BROKER_NOT_EXIST_EXCEPTION,
                    format!("The broker[{}] not exist", mq.broker_name),
                )
            })
    }

    /// Whether the route of `topic` this instance holds names the broker `broker_name`.
    pub(crate) fn topic_route_has_broker(&self, topic: &str, broker_name: &str) -> bool {
        self.topic_route_table
            .read()
            .get(topic)
            .is_some_and(|r| r.broker_datas.iter().any(|b| b.broker_name == broker_name))
    }

    /// One address of every broker in the route of `topic` this instance holds, the master's
    /// when there is one.
    pub(crate) fn topic_broker_addrs(&self, topic: &str) -> Vec<String> {
        let routes = self.topic_route_table.read();
        let Some(route) = routes.get(topic) else {
            return Vec::new();
        };
        route
            .broker_datas
            .iter()
            .filter_map(|b| {
                b.master_addr()
                    .map(str::to_owned)
                    .or_else(|| b.broker_addrs.values().next().cloned())
            })
            .collect()
    }

    /// A broker serving `topic` (Java `findBrokerAddrByTopic`).
    fn find_broker_addr_by_topic(&self, topic: &str) -> Option<String> {
        let routes = self.topic_route_table.read();
        let route = routes.get(topic)?;
        let n = route.broker_datas.len();
        if n == 0 {
            return None;
        }
        let pick = (crate::common::util::now_millis() as usize) % n;
        let b = &route.broker_datas[pick];
        b.master_addr()
            .map(str::to_owned)
            .or_else(|| b.broker_addrs.values().next().cloned())
    }

    /// GET_CONSUMER_LIST_BY_GROUP from a broker of `topic`.
    pub(crate) fn find_consumer_id_list(&self, topic: &str, group: &str) -> Result<Vec<String>> {
        let addr = match self.find_broker_addr_by_topic(topic) {
            Some(a) => a,
            None => {
                self.update_topic_route_info_from_name_server(topic);
                self.find_broker_addr_by_topic(topic).ok_or_else(|| {
                    Error::client(
                        ClientErrorCode::BROKER_NOT_EXIST_EXCEPTION,
                        format!("no broker known for topic {topic}"),
                    )
                })?
            }
        };
        let ids = self.consumer_id_list_at(&addr, group, self.config.mq_client_api_timeout)?;
        if ids.is_empty() {
            return Err(Error::client(
                -1,
                format!("no consumer of {group} is registered at {addr} yet"),
            ));
        }
        Ok(ids)
    }

    /// GET_CONSUMER_LIST_BY_GROUP at the broker `addr`: the ids it knows, maybe none.
    pub(crate) fn consumer_id_list_at(
        &self,
        addr: &str,
        group: &str,
        timeout: Duration,
    ) -> Result<Vec<String>> {
        let header = GetConsumerListByGroupRequestHeader {
            consumer_group: group.to_owned(),
        };
        let req = self.api.request(RemotingCommand::request_with_header(
            RequestCode::GET_CONSUMER_LIST_BY_GROUP,
            &header,
        ));
        let resp = expect_success(self.remoting().invoke_sync(addr, req, timeout)?, addr)?;
        #[derive(serde::Deserialize)]
        struct Body {
            #[serde(rename = "consumerIdList", default)]
            consumer_id_list: Vec<String>,
        }
        match resp.body() {
            Some(b) => serde_json::from_slice::<Body>(b)
                .map(|b| b.consumer_id_list)
                .map_err(|e| crate::error::CodecError::Json(e.to_string()).into()),
            None => Ok(Vec::new()),
        }
    }

    /// GET_MAX_OFFSET of `mq`.
    pub(crate) fn max_offset(&self, mq: &MessageQueue) -> Result<i64> {
        let header = GetMaxOffsetRequestHeader::from(mq);
        let h: GetMaxOffsetResponseHeader =
            self.query_master(mq, RequestCode::GET_MAX_OFFSET, &header, ADMIN_TIMEOUT)?;
        Ok(h.offset)
    }

    /// GET_MIN_OFFSET of `mq`.
    pub(crate) fn min_offset(&self, mq: &MessageQueue) -> Result<i64> {
        let header = GetMinOffsetRequestHeader::from(mq);
        let h: GetMinOffsetResponseHeader =
            self.query_master(mq, RequestCode::GET_MIN_OFFSET, &header, ADMIN_TIMEOUT)?;
        Ok(h.offset)
    }

    /// SEARCH_OFFSET_BY_TIMESTAMP of `mq`.
    pub(crate) fn search_offset(&self, mq: &MessageQueue, timestamp: i64) -> Result<i64> {
        let header = SearchOffsetRequestHeader {
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
            timestamp,
            bname: Some(mq.broker_name.clone()),
        };
        let h: SearchOffsetResponseHeader = self.query_master(
            mq,
            RequestCode::SEARCH_OFFSET_BY_TIMESTAMP,
            &header,
            ADMIN_TIMEOUT,
        )?;
        Ok(h.offset)
    }

    /// Sends `header` as a `code` request to the master of `mq`'s broker (refreshing the route
    /// once if it is unknown) and decodes the response header of a success.
    pub(crate) fn query_master<R: CommandCustomHeader>(
        &self,
        mq: &MessageQueue,
        code: RequestCode,
        header: &impl CommandCustomHeader,
        timeout: Duration,
    ) -> Result<R> {
        let addr = self.master_addr_refreshing(mq)?;
        let req = self
            .api
            .request(RemotingCommand::request_with_header(code, header));
        let resp = expect_success(self.remoting().invoke_sync(&addr, req, timeout)?, &addr)?;
        Ok(resp.decode_header()?)
    }

    /// The inner producer (group [`CLIENT_INNER_PRODUCER_GROUP`]): one per instance, created
    /// by `init` on first use, started on this instance (which `init` is given), and shut down
    /// with it. Later calls return the same producer and do not call `init`; a failed `init`
    /// leaves the slot empty for the next call to try again. An instance that is not running
    /// has none: that is an error, and `init` is not called.
    pub(crate) fn inner_producer_or_init(
        &self,
        init: impl FnOnce(&Arc<MQClientInstance>) -> Result<Arc<dyn InnerProducer>>,
    ) -> Result<Arc<dyn InnerProducer>> {
        let mut slot = self.inner_producer.lock();
        if let Some(p) = slot.as_ref() {
            return Ok(p.clone());
        }
        // `stop` flips the state before it takes this slot: a producer stored after this check
        // is still found and stopped by it.
        let state = *self.state.lock();
        if state != ServiceState::Running {
            return Err(Error::ServiceState {
                state,
                action: "start the inner producer: the client instance is shut down",
            });
        }
        let me = self.me.upgrade().ok_or(Error::ServiceState {
            state: ServiceState::ShutdownAlready,
            action: "start the inner producer: the client instance is dropped",
        })?;
        let p = init(&me)?;
        *slot = Some(p.clone());
        Ok(p)
    }

    /// Stops the consumer threads, the scheduler and the remoting client of an instance
    /// already marked shut down, joining each until `deadline`; no lock is held while joining.
    /// Returns the threads still running.
    fn stop(&self, deadline: Instant) -> Vec<String> {
        let mut unfinished = Vec::new();
        let mut note = |what: &str, r: std::result::Result<(), ShutdownError>| {
            if let Err(e) = r {
                log::warn!("{what} of {} did not stop cleanly: {e}", self.client_id);
                unfinished.extend(e.unfinished_threads());
            }
        };
        let left = || deadline.saturating_duration_since(Instant::now());
        // Upstream first: rebalance, then pull.
        let services = self.consumer_services.lock().take();
        if let Some(s) = services {
            note("RebalanceService", s.rebalance.shutdown(left()));
            drop(s.pull_tx);
            note("PullMessageService", s.pull.shutdown(left()));
        }
        let inner = self.inner_producer.lock().take();
        if let Some(p) = inner {
            self.producers.write().remove(CLIENT_INNER_PRODUCER_GROUP);
            p.shutdown_local();
        }
        let tasks = std::mem::take(&mut *self.tasks.lock());
        for t in tasks {
            t.cancel();
        }
        let scheduler = self.scheduler.lock().take();
        if let Some(s) = scheduler {
            note("scheduler", s.shutdown(left()));
        }
        self.remoting().shutdown();
        self.request_futures.fail_all(&self.client_id);
        log::info!("the client factory [{}] shut down", self.client_id);
        unfinished
    }

    fn all_broker_addrs(&self) -> Vec<String> {
        let table = self.broker_addr_table.read();
        let set: HashSet<&String> = table.values().flat_map(|m| m.values()).collect();
        set.into_iter().cloned().collect()
    }

    fn live_producers(&self) -> Vec<(String, Arc<dyn MQProducerInner>)> {
        self.producers
            .read()
            .iter()
            .filter_map(|(g, w)| w.upgrade().map(|p| (g.clone(), p)))
            .collect()
    }

    /// Refreshes the route of every topic a producer (or, later, consumer) uses.
    pub(crate) fn update_topic_route_info_from_name_server_all(&self) {
        let mut topics: HashSet<String> = HashSet::new();
        for (_, p) in self.live_producers() {
            topics.extend(p.publish_topics());
        }
        for c in self.live_consumers() {
            topics.extend(c.subscribed_topics());
        }
        for topic in topics {
            if topic == AUTO_CREATE_TOPIC_KEY_TOPIC {
                continue;
            }
            self.update_topic_route_info_from_name_server(&topic);
        }
    }

    /// Fetches `topic`'s route and installs it if it changed. Returns `true` when a route is
    /// known afterwards.
    pub(crate) fn update_topic_route_info_from_name_server(&self, topic: &str) -> bool {
        self.update_route(topic, None).unwrap_or(false)
    }

    /// [`update_topic_route_info_from_name_server`](Self::update_topic_route_info_from_name_server)
    /// that also returns the route query's error (already logged), for a caller that reports
    /// why there is no route: a name server that refuses the client's credentials, or a route
    /// the client refused because it does not decode or its queue counts are nonsense
    /// ([`Error::Codec`]). The installed route is kept on every error.
    pub(crate) fn try_update_topic_route_info_from_name_server(&self, topic: &str) -> Result<bool> {
        self.update_route(topic, None)
    }

    /// Like [`try_update_topic_route_info_from_name_server`](Self::try_update_topic_route_info_from_name_server),
    /// but borrows the route of the auto-create topic (`TBW102`) with at most
    /// `default_queue_nums` queues per broker, so a first send can auto-create `topic`.
    /// `Err` is the failed name-server query (logged too), for the caller's error to name.
    pub(crate) fn try_update_topic_route_info_from_default(
        &self,
        topic: &str,
        default_queue_nums: i32,
    ) -> Result<bool> {
        self.update_route(topic, Some(default_queue_nums))
    }

    /// `Ok(true)` when the route was fetched, `Ok(false)` when another update held the lock too
    /// long, the query's error otherwise.
    fn update_route(&self, topic: &str, default_queue_nums: Option<i32>) -> Result<bool> {
        let Some(_guard) = self.route_lock.try_lock_for(Duration::from_secs(3)) else {
            log::warn!("updateTopicRouteInfoFromNameServer tryLock timeout 3000ms");
            return Ok(false);
        };
        let timeout = self.config.mq_client_api_timeout;
        let fetched = match default_queue_nums {
            None => self
                .api
                .get_topic_route_info_from_name_server(topic, timeout),
            Some(n) => self
                .api
                .get_topic_route_info_from_name_server(AUTO_CREATE_TOPIC_KEY_TOPIC, timeout)
                .map(|mut route| {
                    for q in &mut route.queue_datas {
                        let nums = n.min(q.read_queue_nums);
                        q.read_queue_nums = nums;
                        q.write_queue_nums = nums;
                    }
                    route
                }),
        };
        let mut route = match fetched {
            Ok(r) => r,
            Err(e @ Error::Codec(_)) => {
                log::warn!(
                    "updateTopicRouteInfoFromNameServer for {topic}: refused the name server's \
                     route, keeping the previous one: {e}"
                );
                return Err(e);
            }
            Err(e) => {
                let quiet = topic.starts_with("%RETRY%")
                    || topic == AUTO_CREATE_TOPIC_KEY_TOPIC
                    || e.response_code() == Some(ResponseCode::TOPIC_NOT_EXIST);
                if quiet {
                    log::debug!("route of {topic} not available: {e}");
                } else {
                    log::warn!("updateTopicRouteInfoFromNameServer for {topic} failed: {e}");
                }
                return Err(e);
            }
        };
        route
            .queue_datas
            .sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
        route
            .broker_datas
            .sort_by(|a, b| a.broker_name.cmp(&b.broker_name));

        let old_changed = self.topic_route_table.read().get(topic) != Some(&route);
        let producers = self.live_producers();
        let consumers = self.live_consumers();
        let changed = old_changed
            || producers
                .iter()
                .any(|(_, p)| p.is_publish_topic_need_update(topic))
            || consumers
                .iter()
                .any(|c| c.is_subscribe_topic_need_update(topic));
        if changed {
            {
                let mut addrs = self.broker_addr_table.write();
                for b in &route.broker_datas {
                    addrs.insert(b.broker_name.clone(), b.broker_addrs.clone());
                }
            }
            match TopicPublishInfo::from_route(topic, &route) {
                Ok(info) => {
                    for (_, p) in &producers {
                        p.update_topic_publish_info(topic, info.clone());
                    }
                }
                Err(e) => log::warn!("route of {topic} is unusable for sending: {e}"),
            }
            match crate::common::topic_subscribe_queues(topic, &route) {
                Ok(subscribe) => {
                    for c in &consumers {
                        c.update_topic_subscribe_info(topic, subscribe.clone());
                    }
                }
                Err(e) => log::warn!("route of {topic} is unusable for consuming: {e}"),
            }
            log::info!("topicRouteTable.put. Topic = {topic}, TopicRouteData[{route:?}]");
            self.topic_route_table
                .write()
                .insert(topic.to_owned(), route);
        }
        Ok(true)
    }

    /// The master address of `broker_name` (Java `findBrokerAddressInPublish`).
    pub(crate) fn find_broker_address_in_publish(&self, broker_name: &str) -> Option<String> {
        self.broker_addr_table
            .read()
            .get(broker_name)
            .and_then(|m| m.get(&MASTER_ID).cloned())
    }

    /// Forgets broker addresses that no cached route mentions any more.
    pub(crate) fn clean_offline_broker(&self) {
        let routes = self.topic_route_table.read();
        let live: HashSet<&str> = routes
            .values()
            .flat_map(|r| r.broker_datas.iter())
            .flat_map(|b| b.broker_addrs.values().map(String::as_str))
            .collect();
        let mut table = self.broker_addr_table.write();
        table.retain(|name, addrs| {
            addrs.retain(|_, a| live.contains(a.as_str()));
            if addrs.is_empty() {
                log::info!("the broker[{name}] name's host is offline, remove it");
            }
            !addrs.is_empty()
        });
    }

    /// A new connection to `addr` is open (on the connecting thread): if `addr` is a known
    /// broker, send it a heartbeat soon, from the scheduler. Not when the connecting call is a
    /// heartbeat itself: it is about to tell the broker everything, and a heartbeat set off by
    /// its own connection would loop without end against a peer that closes every connection
    /// at once (thousands of connections a second).
    fn on_connected(&self, addr: &str) {
        if SENDING_HEARTBEAT.with(Cell::get) {
            return;
        }
        let broker = self.broker_addr_table.read().iter().find_map(|(name, m)| {
            m.iter()
                .find(|(_, a)| a.as_str() == addr)
                .map(|(id, _)| (name.clone(), *id))
        });
        let Some((name, id)) = broker else {
            return;
        };
        let me = self.me.clone();
        let addr = addr.to_owned();
        self.schedule(Duration::ZERO, move || {
            if let Some(me) = me.upgrade() {
                me.send_heartbeat_to_broker(&name, id, &addr);
            }
        });
    }

    /// What a heartbeat says: every live producer and consumer group; `None` if there is none.
    fn heartbeat_data(&self) -> Option<HeartbeatData> {
        let mut producer_data_set: Vec<ProducerData> = self
            .live_producers()
            .iter()
            .map(|(g, _)| ProducerData {
                group_name: g.clone(),
            })
            .collect();
        producer_data_set.sort();
        let data = HeartbeatData {
            client_id: self.client_id.clone(),
            consumer_data_set: self
                .live_consumers()
                .iter()
                .map(|c| c.consumer_data())
                .collect(),
            producer_data_set,
        };
        if data.producer_data_set.is_empty() && data.consumer_data_set.is_empty() {
            return None;
        }
        Some(data)
    }

    /// Sends a heartbeat to one broker (after a reconnect), waiting for a full heartbeat in
    /// progress rather than skipping: that one may already have passed this broker.
    fn send_heartbeat_to_broker(&self, name: &str, id: i64, addr: &str) {
        let _guard = self.heartbeat_lock.lock();
        let Some(data) = self.heartbeat_data() else {
            return;
        };
        if data.consumer_data_set.is_empty() && id != MASTER_ID {
            return;
        }
        self.heartbeat_one(&data, name.to_owned(), id, addr.to_owned());
    }

    fn heartbeat_one(&self, data: &HeartbeatData, name: String, id: i64, addr: String) {
        let sent = {
            let _heartbeat = HeartbeatOnThisThread::enter();
            self.api
                .send_heartbeat(&addr, data, self.config.mq_client_api_timeout)
        };
        match sent {
            Ok(version) => {
                self.broker_version_table
                    .write()
                    .entry(name)
                    .or_default()
                    .insert(addr, version);
            }
            Err(e) => log::warn!("send heart beat to broker[{name} {id} {addr}] failed: {e}"),
        }
    }

    /// Sends a heartbeat to every known broker, unless one is already being sent.
    pub(crate) fn send_heartbeat_to_all_broker_with_lock(&self) {
        let Some(_guard) = self.heartbeat_lock.try_lock() else {
            log::warn!("lock heartBeat, but failed. [{}]", self.client_id);
            return;
        };
        self.heartbeat_all_locked();
    }

    /// Sends a heartbeat to every known broker, waiting (up to 3 s) for one already being sent:
    /// used when the brokers must learn new subscription data before the next pull.
    pub(crate) fn send_heartbeat_to_all_broker_now(&self) {
        let Some(_guard) = self.heartbeat_lock.try_lock_for(Duration::from_secs(3)) else {
            log::warn!("lock heartBeat for 3 s, but failed. [{}]", self.client_id);
            return;
        };
        self.heartbeat_all_locked();
    }

    fn heartbeat_all_locked(&self) {
        let Some(data) = self.heartbeat_data() else {
            return;
        };
        let only_masters = data.consumer_data_set.is_empty();
        let targets: Vec<(String, i64, String)> = self
            .broker_addr_table
            .read()
            .iter()
            .flat_map(|(name, m)| m.iter().map(move |(id, a)| (name.clone(), *id, a.clone())))
            .collect();
        for (name, id, addr) in targets {
            if only_masters && id != MASTER_ID {
                continue;
            }
            self.heartbeat_one(&data, name, id, addr);
        }
    }
}

thread_local! {
    /// Set while this thread sends a heartbeat (see `MQClientInstance::on_connected`).
    static SENDING_HEARTBEAT: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as sending a heartbeat until dropped (also on unwind).
struct HeartbeatOnThisThread {
    was: bool,
}

impl HeartbeatOnThisThread {
    fn enter() -> Self {
        HeartbeatOnThisThread {
            was: SENDING_HEARTBEAT.with(|f| f.replace(true)),
        }
    }
}

impl Drop for HeartbeatOnThisThread {
    fn drop(&mut self) {
        SENDING_HEARTBEAT.with(|f| f.set(self.was));
    }
}

/// Runs `release` (which may shut a client instance down and join its threads) for a producer
/// or consumer dropped without `shutdown()`. On one of the instance's own threads (the last
/// handle may die inside a callback) it runs on a short-lived thread of its own instead, so no
/// thread ever waits for itself.
pub(crate) fn release_from_drop(release: impl FnOnce() + Send + 'static) {
    let on_own_thread = std::thread::current()
        .name()
        .is_some_and(|n| n.starts_with("rmq-"));
    if !on_own_thread {
        release();
        return;
    }
    if let Err(e) = std::thread::Builder::new()
        .name("rmq-release".to_owned())
        .spawn(release)
    {
        log::warn!("could not start a thread to release a dropped client: {e}");
    }
}

/// Schedules a periodic task; a scheduler that was shut down refuses it.
fn schedule(
    scheduler: &ScheduledExecutor,
    initial_delay: Duration,
    period: Duration,
    task: impl FnMut() + Send + 'static,
) -> Result<ScheduledHandle> {
    scheduler
        .schedule_at_fixed_rate(initial_delay, period, task)
        .map_err(|_| Error::client(-1, "the scheduler is shut down"))
}

/// Fetches the name-server list over HTTP (Java `TopAddressing.fetchNSAddr`): a 200 response
/// whose body, trimmed and cut at the first line break, is a `;`-separated address list.
pub(crate) fn fetch_name_server_addr(url: &str) -> Result<Vec<String>> {
    let no_ns = |why: String| {
        Error::client(
            ClientErrorCode::NO_NAME_SERVER_EXCEPTION,
            format!("no name server address is configured (set NAMESRV_ADDR or namesrv_addr) and the HTTP lookup at {url} failed: {why}"),
        )
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(3)))
        .build()
        .into();
    let mut resp = agent.get(url).call().map_err(|e| no_ns(e.to_string()))?;
    let body = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| no_ns(e.to_string()))?;
    let first = body.trim().lines().next().unwrap_or("").to_owned();
    let list = parse_namesrv_list(&first);
    if list.is_empty() {
        return Err(no_ns("the response was empty".to_owned()));
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    const WAIT: Duration = Duration::from_secs(10);

    type Hook = Arc<dyn Fn() + Send + Sync>;

    /// Hooks run by `shutdown_if_unused` once it has decided to shut an instance down, by
    /// client id.
    static SHUTDOWN_HOOKS: Mutex<Vec<(String, Hook)>> = Mutex::new(Vec::new());

    pub(super) fn run_shutdown_hook(client_id: &str) {
        let hook = SHUTDOWN_HOOKS
            .lock()
            .iter()
            .find(|(id, _)| id == client_id)
            .map(|(_, h)| h.clone());
        if let Some(h) = hook {
            h();
        }
    }

    fn set_shutdown_hook(client_id: &str, hook: impl Fn() + Send + Sync + 'static) {
        SHUTDOWN_HOOKS
            .lock()
            .push((client_id.to_owned(), Arc::new(hook)));
    }

    /// A consumer that does nothing: something for an instance to hold.
    struct Idle;

    impl MQConsumerInner for Idle {
        fn consumer_data(&self) -> ConsumerData {
            ConsumerData::default()
        }
        fn subscribed_topics(&self) -> Vec<String> {
            Vec::new()
        }
        fn update_topic_subscribe_info(&self, _: &str, _: Vec<MessageQueue>) {}
        fn is_subscribe_topic_need_update(&self, _: &str) -> bool {
            false
        }
        fn do_rebalance(&self) {}
        fn consume_message_directly(&self, _: &bytes::Bytes, _: &str, reply: DirectConsumeReply) {
            reply(DirectConsumeOutcome::Consumed {
                result: "CR_SUCCESS",
                remark: None,
                spent_ms: 0,
            })
        }
        fn running_info(&self) -> ConsumerRunningInfo {
            unimplemented!("not asked in these tests")
        }
        fn reset_offset(&self, _: &str, _: &HashMap<MessageQueue, i64>) {}
        fn offsets_of_topic(&self, _: &str) -> HashMap<MessageQueue, i64> {
            HashMap::new()
        }
    }

    /// A client config whose name server is a closed port: route refreshes fail quickly.
    fn config(instance_name: &str) -> ClientConfig {
        ClientConfig {
            namesrv_addr: Some("127.0.0.1:9".to_owned()),
            instance_name: Some(instance_name.to_owned()),
            ..ClientConfig::default()
        }
    }

    fn register(
        cfg: &ClientConfig,
        group: &str,
        consumer: &Arc<dyn MQConsumerInner>,
    ) -> Arc<MQClientInstance> {
        MQClientManager::register_consumer(cfg, group, Arc::downgrade(consumer)).unwrap()
    }

    fn is_running(i: &MQClientInstance) -> bool {
        *i.state.lock() == ServiceState::Running
    }

    #[test]
    fn a_consumer_never_attaches_to_an_instance_that_is_shutting_down() {
        let cfg = config("attach-race");
        let first: Arc<dyn MQConsumerInner> = Arc::new(Idle);
        let old = register(&cfg, "g1", &first);
        let (decided_tx, decided_rx) = crossbeam_channel::bounded(1);
        let (attached_tx, attached_rx) = crossbeam_channel::bounded::<()>(1);
        // Once the last consumer is gone and the shutdown decided, a second consumer tries to
        // attach; the hook gives it up to 2 s to do so before the shutdown goes on.
        set_shutdown_hook(&cfg.client_id(), move || {
            let _ = decided_tx.send(());
            let _ = attached_rx.recv_timeout(Duration::from_secs(2));
        });
        let leaving = old.clone();
        let unregister = std::thread::Builder::new()
            .name("test-unregister".into())
            .spawn(move || leaving.unregister_consumer("g1", false, WAIT))
            .unwrap();
        decided_rx
            .recv_timeout(WAIT)
            .expect("the shutdown was decided");
        let second: Arc<dyn MQConsumerInner> = Arc::new(Idle);
        let cfg2 = cfg.clone();
        let attach = std::thread::Builder::new()
            .name("test-attach".into())
            .spawn(move || {
                let i = register(&cfg2, "g2", &second);
                let _ = attached_tx.send(());
                (i, second)
            })
            .unwrap();
        unregister.join().unwrap();
        let (new, _second) = attach.join().unwrap();
        assert!(!is_running(&old), "the unused instance was shut down");
        assert!(
            is_running(&new),
            "the consumer registered while the old instance shut down is on a stopped instance"
        );
        assert!(!Arc::ptr_eq(&old, &new));
        new.unregister_consumer("g2", false, WAIT);
        assert!(!is_running(&new));
    }

    #[test]
    fn the_inner_producer_of_a_stopped_instance_is_an_error_and_starts_nothing() {
        let cfg = config("stopped-inner");
        let consumer: Arc<dyn MQConsumerInner> = Arc::new(Idle);
        let i = register(&cfg, "g", &consumer);
        i.unregister_consumer("g", false, WAIT);
        assert!(!is_running(&i));
        let init_called = AtomicBool::new(false);
        let r = i.inner_producer_or_init(|_| {
            init_called.store(true, Ordering::SeqCst);
            Err(Error::config("init must not run on a stopped instance"))
        });
        let leaked = manager().lock().get(&cfg.client_id()).cloned();
        if let Some(l) = &leaked {
            if l.mark_shut_down(&mut manager().lock()) {
                l.stop(Instant::now() + WAIT);
            }
        }
        assert!(
            matches!(r, Err(Error::ServiceState { .. })),
            "a stopped instance has no inner producer"
        );
        assert!(
            !init_called.load(Ordering::SeqCst),
            "a stopped instance created an inner producer"
        );
        assert!(
            leaked.is_none(),
            "asking a stopped instance for its inner producer started another instance"
        );
    }

    /// An inner producer that counts what the instance does with it.
    #[derive(Default)]
    struct CountingProducer {
        sent: AtomicUsize,
        shut_down: AtomicBool,
    }

    impl InnerProducer for CountingProducer {
        fn send_message(&self, _: &Message) -> Result<()> {
            self.sent.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn shutdown_local(&self) {
            self.shut_down.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_inner_producer_is_created_once_and_shut_down_with_the_instance() {
        let cfg = config("one-inner");
        let consumer: Arc<dyn MQConsumerInner> = Arc::new(Idle);
        let i = register(&cfg, "g", &consumer);
        let made = Arc::new(CountingProducer::default());
        let inits = AtomicUsize::new(0);
        let init = |instance: &Arc<MQClientInstance>| -> Result<Arc<dyn InnerProducer>> {
            assert!(Arc::ptr_eq(instance, &i), "started on this instance");
            inits.fetch_add(1, Ordering::SeqCst);
            Ok(made.clone())
        };
        let failed = i.inner_producer_or_init(|_| Err(Error::config("first try fails")));
        assert!(failed.is_err());
        let a = i.inner_producer_or_init(init).unwrap();
        let b = i.inner_producer_or_init(init).unwrap();
        a.send_message(&Message::new("T", "x")).unwrap();
        b.send_message(&Message::new("T", "y")).unwrap();
        assert_eq!(
            inits.load(Ordering::SeqCst),
            1,
            "one inner producer per instance"
        );
        assert_eq!(
            made.sent.load(Ordering::SeqCst),
            2,
            "both calls reach the same producer"
        );
        assert!(!made.shut_down.load(Ordering::SeqCst));
        i.unregister_consumer("g", false, WAIT);
        assert!(
            !is_running(&i),
            "the inner producer does not keep the instance alive"
        );
        assert!(
            made.shut_down.load(Ordering::SeqCst),
            "the inner producer is shut down with its instance"
        );
    }

    #[test]
    fn a_broker_id_from_the_network_never_overflows() {
        let cfg = config("broker-id");
        let consumer: Arc<dyn MQConsumerInner> = Arc::new(Idle);
        let i = register(&cfg, "g", &consumer);
        let addrs = BTreeMap::from([(MASTER_ID, "m:1".to_owned()), (1, "s:1".to_owned())]);
        // A route names the broker, as it does in production, so the periodic
        // clean_offline_broker (first run 1 s after start) keeps its addresses.
        i.topic_route_table.write().insert(
            "t".to_owned(),
            TopicRouteData {
                broker_datas: vec![crate::common::route::BrokerData {
                    broker_name: "b".to_owned(),
                    broker_addrs: addrs.clone(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        i.broker_addr_table.write().insert("b".to_owned(), addrs);
        let mq = MessageQueue::new("t", "b", 0);
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            i.find_broker_address_in_subscribe(&mq, i64::MAX)
        }));
        // The sweep may run at any time; run it here so the test never depends on when.
        i.clean_offline_broker();
        i.unregister_consumer("g", false, WAIT);
        assert_eq!(
            found.expect("no overflow"),
            Some(("m:1".to_owned(), false)),
            "an unknown broker id falls back to the first address"
        );
        assert_eq!(
            i.find_broker_address_in_subscribe(&mq, 0),
            Some(("m:1".to_owned(), false))
        );
    }

    fn serve_once(status: &str, body: &str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        std::thread::Builder::new()
            .name("http-fake".into())
            .spawn(move || {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                s.write_all(response.as_bytes()).unwrap();
            })
            .unwrap();
        format!("http://{addr}/rocketmq/nsaddr")
    }

    #[test]
    fn http_lookup_parses_first_line() {
        let url = serve_once("200 OK", "127.0.0.1:9876;127.0.0.2:9876\nignored\n");
        assert_eq!(
            fetch_name_server_addr(&url).unwrap(),
            vec!["127.0.0.1:9876".to_owned(), "127.0.0.2:9876".to_owned()]
        );
    }

    /// An https lookup speaks TLS and verifies the server: a certificate from an unknown CA is
    /// refused (Mozilla's roots are the trust anchors), with the reason in the error.
    #[test]
    fn https_lookup_speaks_tls_and_verifies_the_certificate() {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let dir = std::env::temp_dir().join(format!("rmq-https-lookup-{}", std::process::id()));
        let pki = crate::remoting::test_pki::TestPki::generate(&dir, "lookup");
        let certs = CertificateDer::pem_file_iter(&pki.server_cert)
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
        let key = PrivateKeyDer::from_pem_file(&pki.server_key).unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::Builder::new()
            .name("https-fake".into())
            .spawn(move || {
                let (mut sock, _) = listener.accept().unwrap();
                sock.set_read_timeout(Some(WAIT)).unwrap();
                let mut conn = rustls::ServerConnection::new(config).unwrap();
                let mut first = [0u8; 1];
                sock.peek(&mut first).unwrap();
                while conn.is_handshaking() {
                    if conn.complete_io(&mut sock).is_err() {
                        break;
                    }
                }
                first[0]
            })
            .unwrap();
        let url = format!("https://localhost:{port}/rocketmq/nsaddr");
        let _ = std::fs::remove_dir_all(&dir);
        let err = fetch_name_server_addr(&url).unwrap_err().to_string();
        assert_eq!(server.join().unwrap(), 0x16, "a TLS ClientHello");
        assert!(err.contains(&url), "{err}");
        assert!(err.contains("UnknownIssuer"), "{err}");
    }

    #[test]
    fn http_lookup_failure_is_a_clear_error() {
        let url = serve_once("404 Not Found", "");
        let err = fetch_name_server_addr(&url).unwrap_err();
        assert!(err.to_string().contains("NAMESRV_ADDR"), "{err}");
    }
}
