//! `DefaultMQAdminExt`: the admin and query calls of Java's `MQAdmin` and the `mqadmin` tool
//! (topics, offsets, messages, consumer progress, cluster info), over the client instance the
//! producers and consumers use.

mod types;

pub use types::{
    ClusterInfo, Connection, ConsumeStats, ConsumerConnection, ConsumerRunningInfo, OffsetWrapper,
    ProcessQueueInfo, QueryResult, Subscription, TopicConfig,
};

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::client::config::{
    default_instance_name, join_instance_as, ClientConfig, ClientOverrides,
};
use crate::client::instance::{
    ClientRole, MQClientInstance, MQClientManager, DROP_SHUTDOWN_TIMEOUT,
};
use crate::codec::TopicRouteData;
use crate::common::{MessageExt, MessageQueue};
use crate::error::{Error, Result};
use crate::service_state::ServiceState;

/// Java's default admin group.
const DEFAULT_ADMIN_EXT_GROUP: &str = "admin_ext_group";

/// Builds a [`DefaultMQAdminExt`]. Every setter documents Java's default.
#[derive(Debug, Clone)]
pub struct DefaultMQAdminExtBuilder {
    group: String,
    timeout: Duration,
    client: ClientConfig,
    client_overrides: ClientOverrides,
}

impl DefaultMQAdminExtBuilder {
    crate::client::config::client_config_setters!();

    /// The admin group this tool registers its client instance under. Java default:
    /// `admin_ext_group`.
    #[doc(alias = "setAdminExtGroup")]
    pub fn admin_ext_group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }

    /// The time budget of each request an admin call sends. Java default: 5 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks the settings and builds the admin client (not started).
    pub fn build(self) -> Result<DefaultMQAdminExt> {
        if self.group.trim().is_empty() {
            return Err(Error::config("admin_ext_group must not be blank"));
        }
        if self.timeout.is_zero() {
            return Err(Error::config("timeout must be positive"));
        }
        Ok(DefaultMQAdminExt {
            inner: Arc::new(AdminInner {
                group: self.group,
                timeout: self.timeout,
                client: self.client_overrides.apply(self.client),
                state: Mutex::new(ServiceState::CreateJust),
                instance: parking_lot::RwLock::new(None),
            }),
        })
    }
}

/// Admin and query calls (Java `DefaultMQAdminExt`, the `mqadmin` tool's client): create
/// topics, read offsets, look messages up by id or key, follow a consumer group's progress and
/// list the cluster.
///
/// ```no_run
/// use rocketmq_sync::DefaultMQAdminExt;
///
/// let admin = DefaultMQAdminExt::builder().namesrv_addr("127.0.0.1:9876").build()?;
/// admin.start()?;
/// let route = admin.examine_topic_route_info("TopicTest")?;
/// println!("{} broker(s)", route.broker_datas.len());
/// admin.shutdown();
/// # Ok::<(), rocketmq_sync::Error>(())
/// ```
///
/// The handle is cheap to clone and `Send + Sync`; every clone is the same admin client.
#[doc(alias = "MQAdmin")]
#[derive(Debug, Clone)]
pub struct DefaultMQAdminExt {
    inner: Arc<AdminInner>,
}

#[derive(Debug)]
struct AdminInner {
    group: String,
    timeout: Duration,
    client: ClientConfig,
    state: Mutex<ServiceState>,
    instance: parking_lot::RwLock<Option<Arc<MQClientInstance>>>,
}

fn not_yet() -> Error {
    Error::config("not implemented yet")
}

impl DefaultMQAdminExt {
    /// A builder with Java's defaults.
    pub fn builder() -> DefaultMQAdminExtBuilder {
        DefaultMQAdminExtBuilder {
            group: DEFAULT_ADMIN_EXT_GROUP.to_owned(),
            timeout: Duration::from_secs(5),
            client: ClientConfig::default(),
            client_overrides: ClientOverrides::default(),
        }
    }

    /// Starts the admin client: joins (or creates) the client instance. Starting twice is an
    /// error.
    pub fn start(&self) -> Result<()> {
        let inner = &self.inner;
        let mut state = inner.state.lock();
        if *state != ServiceState::CreateJust {
            return Err(Error::ServiceState {
                state: *state,
                action: "start the admin client",
            });
        }
        let group = &inner.group;
        let joined = join_instance_as(
            &inner.client,
            &default_instance_name(),
            false,
            ClientRole::Admin,
            group,
            |client| MQClientManager::register_admin_ext(client, group),
        );
        match joined {
            Ok(instance) => {
                *inner.instance.write() = Some(instance);
                *state = ServiceState::Running;
                Ok(())
            }
            Err(e) => {
                *state = ServiceState::StartFailed;
                Err(e)
            }
        }
    }

    /// Leaves the client instance, which stops (within a few seconds) when nothing else uses
    /// it. Idempotent.
    pub fn shutdown(&self) {
        let mut state = self.inner.state.lock();
        if *state != ServiceState::Running {
            if *state == ServiceState::CreateJust {
                *state = ServiceState::ShutdownAlready;
            }
            return;
        }
        *state = ServiceState::ShutdownAlready;
        drop(state);
        if let Some(instance) = self.inner.instance.write().take() {
            let left = instance.unregister_admin_ext(&self.inner.group, DROP_SHUTDOWN_TIMEOUT);
            if !left.is_empty() {
                log::warn!("admin client shut down; threads still running: {left:?}");
            }
        }
    }

    /// The lifecycle state.
    pub fn service_state(&self) -> ServiceState {
        *self.inner.state.lock()
    }

    /// The running client instance, or the lifecycle error.
    fn instance(&self) -> Result<Arc<MQClientInstance>> {
        let state = *self.inner.state.lock();
        match self.inner.instance.read().as_ref() {
            Some(i) if state == ServiceState::Running => Ok(i.clone()),
            _ => Err(Error::ServiceState {
                state,
                action: "use the admin client: start() it first",
            }),
        }
    }

    /// Java `MQAdmin.createTopic(key, newTopic, queueNum)`: creates `topic` with `queue_num`
    /// read and write queues on every master that holds the topic `key` (usually `TBW102`).
    pub fn create_topic(&self, key: &str, topic: &str, queue_num: u32) -> Result<()> {
        let _ = (key, topic, queue_num);
        Err(not_yet())
    }

    /// Creates or updates a topic on the broker at `broker_addr` (`mqadmin updateTopic -b`).
    pub fn create_and_update_topic_config(
        &self,
        broker_addr: &str,
        config: &TopicConfig,
    ) -> Result<()> {
        let _ = (broker_addr, config);
        Err(not_yet())
    }

    /// Creates or updates a topic on every master of `cluster` (`mqadmin updateTopic -c`);
    /// returns the addresses written.
    pub fn create_topic_on_cluster(
        &self,
        cluster: &str,
        config: &TopicConfig,
    ) -> Result<Vec<String>> {
        let _ = (cluster, config);
        Err(not_yet())
    }

    /// A topic's route from the name servers (`mqadmin topicRoute`).
    pub fn examine_topic_route_info(&self, topic: &str) -> Result<TopicRouteData> {
        let _ = topic;
        Err(not_yet())
    }

    /// Every topic the name servers know (`mqadmin topicList`).
    pub fn fetch_all_topic_list(&self) -> Result<Vec<String>> {
        Err(not_yet())
    }

    /// The offset of the first message of `mq` stored at or after `timestamp_ms`.
    pub fn search_offset(&self, mq: &MessageQueue, timestamp_ms: i64) -> Result<i64> {
        let _ = (mq, timestamp_ms);
        Err(not_yet())
    }

    /// The queue's max offset (one past its last message).
    pub fn max_offset(&self, mq: &MessageQueue) -> Result<i64> {
        let _ = mq;
        Err(not_yet())
    }

    /// The queue's min offset (its oldest message still stored).
    pub fn min_offset(&self, mq: &MessageQueue) -> Result<i64> {
        let _ = mq;
        Err(not_yet())
    }

    /// The store time of the queue's oldest message, ms since the epoch.
    pub fn earliest_msg_store_time(&self, mq: &MessageQueue) -> Result<i64> {
        let _ = mq;
        Err(not_yet())
    }

    /// A message by its offset msgId (the store host and commit-log offset it encodes);
    /// `mqadmin queryMsgById`.
    pub fn view_message(&self, offset_msg_id: &str) -> Result<MessageExt> {
        let _ = offset_msg_id;
        Err(not_yet())
    }

    /// Java `viewMessage(topic, msgId)`: `msg_id` as an offset msgId, else as a unique key.
    pub fn view_message_in_topic(&self, topic: &str, msg_id: &str) -> Result<MessageExt> {
        let _ = (topic, msg_id);
        Err(not_yet())
    }

    /// The messages of `topic` with key `key` stored between `begin_ms` and `end_ms`, at most
    /// `max_num` per broker, from every broker of the topic (`mqadmin queryMsgByKey`).
    pub fn query_message(
        &self,
        topic: &str,
        key: &str,
        max_num: u32,
        begin_ms: i64,
        end_ms: i64,
    ) -> Result<QueryResult> {
        let _ = (topic, key, max_num, begin_ms, end_ms);
        Err(not_yet())
    }

    /// The message of `topic` with unique key (client msgId) `uniq_key`.
    pub fn query_message_by_unique_key(&self, topic: &str, uniq_key: &str) -> Result<MessageExt> {
        let _ = (topic, uniq_key);
        Err(not_yet())
    }

    /// A consumer group's progress per queue: broker offset, consumer offset and lag
    /// (`mqadmin consumerProgress`), for one topic or all the group's topics.
    pub fn examine_consume_stats(&self, group: &str, topic: Option<&str>) -> Result<ConsumeStats> {
        let _ = (group, topic);
        Err(not_yet())
    }

    /// The client ids connected to `group` (`GET_CONSUMER_LIST_BY_GROUP`).
    pub fn consumer_id_list(&self, group: &str) -> Result<Vec<String>> {
        let _ = group;
        Err(not_yet())
    }

    /// The connections and subscriptions of `group` (`mqadmin consumerConnection`).
    pub fn examine_consumer_connection_info(&self, group: &str) -> Result<ConsumerConnection> {
        let _ = group;
        Err(not_yet())
    }

    /// The running state of one consumer of `group`, asked through a broker
    /// (`GET_CONSUMER_RUNNING_INFO`, `mqadmin consumerStatus`); `jstack` asks for its threads.
    pub fn get_consumer_running_info(
        &self,
        group: &str,
        client_id: &str,
        jstack: bool,
    ) -> Result<ConsumerRunningInfo> {
        let _ = (group, client_id, jstack);
        Err(not_yet())
    }

    /// The brokers of every cluster and their addresses (`mqadmin clusterList`).
    pub fn examine_broker_cluster_info(&self) -> Result<ClusterInfo> {
        Err(not_yet())
    }
}
