//! `DefaultMQAdminExt`: the admin and query calls of Java's `MQAdmin` and the `mqadmin` tool
//! (topics, offsets, messages, consumer progress, cluster info), over the client instance the
//! producers and consumers use.

mod types;
mod wire;

pub use types::{
    ClusterInfo, Connection, ConsumeStats, ConsumerConnection, ConsumerRunningInfo, OffsetWrapper,
    ProcessQueueInfo, QueryResult, Subscription, TopicConfig,
};

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::client::api::expect_success;
use crate::client::config::{
    default_instance_name, join_instance_as, ClientConfig, ClientOverrides,
};
use crate::client::instance::{
    release_from_drop, ClientRole, MQClientInstance, MQClientManager, DROP_SHUTDOWN_TIMEOUT,
};
use crate::codec::TopicRouteData;
use crate::common::{MessageClientIDSetter, MessageDecoder, MessageExt, MessageQueue};
use crate::common::{MessageConst, DEFAULT_MAX_BODY_SIZE};
use crate::error::{ClientErrorCode, Error, Result};
use crate::producer::validators::check_topic;
use crate::remoting::protocol::header::{
    CreateTopicRequestHeader, GetConsumeStatsRequestHeader, GetConsumerConnectionListRequestHeader,
    GetConsumerRunningInfoRequestHeader, GetEarliestMsgStoretimeRequestHeader,
    GetEarliestMsgStoretimeResponseHeader, GetMaxOffsetRequestHeader, GetMaxOffsetResponseHeader,
    GetMinOffsetRequestHeader, GetMinOffsetResponseHeader, QueryMessageRequestHeader,
    QueryMessageResponseHeader, SearchOffsetRequestHeader, SearchOffsetResponseHeader,
    ViewMessageRequestHeader,
};
use crate::remoting::protocol::{RemotingCommand, RequestCode, ResponseCode};
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

impl Drop for AdminInner {
    fn drop(&mut self) {
        if *self.state.get_mut() != ServiceState::Running {
            return;
        }
        // The last handle went without shutdown(): leave the instance, so it stops when
        // nothing else uses it and the group can be registered again.
        if let Some(instance) = self.instance.get_mut().take() {
            let group = self.group.clone();
            release_from_drop(move || {
                instance.unregister_admin_ext(&group, DROP_SHUTDOWN_TIMEOUT);
            });
        }
    }
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

    // -----------------------------------------------------------------------------------------
    // Topics

    /// Java `MQAdmin.createTopic(key, newTopic, queueNum)`: creates `topic` with `queue_num`
    /// read and write queues on every master that holds the topic `key` (usually `TBW102`).
    /// Fails when no master took it; a master that failed while another succeeded is logged.
    pub fn create_topic(&self, key: &str, topic: &str, queue_num: u32) -> Result<()> {
        let config = TopicConfig {
            read_queue_nums: queue_num,
            write_queue_nums: queue_num,
            ..TopicConfig::new(topic)
        };
        check_topic_config(&config)?;
        let route = self.examine_topic_route_info(key)?;
        let masters = master_addrs(&route);
        if masters.is_empty() {
            return Err(Error::client(
                ClientErrorCode::BROKER_NOT_EXIST_EXCEPTION,
                format!("no master broker holds the topic {key}"),
            ));
        }
        let mut last_err = None;
        let mut created = 0;
        for (name, addr) in masters {
            match self.create_and_update_topic_config(&addr, &config) {
                Ok(()) => created += 1,
                Err(e) => {
                    log::warn!("create topic {topic} on broker {name} ({addr}) failed: {e}");
                    last_err = Some(e);
                }
            }
        }
        match last_err {
            Some(e) if created == 0 => Err(e),
            _ => Ok(()),
        }
    }

    /// Creates or updates a topic on the broker at `broker_addr` (`mqadmin updateTopic -b`).
    pub fn create_and_update_topic_config(
        &self,
        broker_addr: &str,
        config: &TopicConfig,
    ) -> Result<()> {
        check_topic_config(config)?;
        let header = CreateTopicRequestHeader {
            topic: config.topic_name.clone(),
            default_topic: crate::client::instance::AUTO_CREATE_TOPIC_KEY_TOPIC.to_owned(),
            read_queue_nums: to_i32(config.read_queue_nums, "read_queue_nums")?,
            write_queue_nums: to_i32(config.write_queue_nums, "write_queue_nums")?,
            perm: to_i32(config.perm, "perm")?,
            topic_sys_flag: Some(to_i32(config.topic_sys_flag, "topic_sys_flag")?),
            order: config.order,
            ..CreateTopicRequestHeader::default()
        };
        let req =
            RemotingCommand::request_with_header(RequestCode::UPDATE_AND_CREATE_TOPIC, &header);
        self.invoke(broker_addr, req, self.inner.timeout)
            .map(|_| ())
    }

    /// Creates or updates a topic on every master of `cluster` (`mqadmin updateTopic -c`);
    /// returns the addresses written. An unknown cluster is an error; so is a master that
    /// refuses (the masters before it keep the topic).
    pub fn create_topic_on_cluster(
        &self,
        cluster: &str,
        config: &TopicConfig,
    ) -> Result<Vec<String>> {
        check_topic_config(config)?;
        let info = self.examine_broker_cluster_info()?;
        let names = info.cluster_addr_table.get(cluster).ok_or_else(|| {
            Error::client(
                ClientErrorCode::NO_CODE,
                format!(
                    "the cluster {cluster} is not known to the name servers (clusters: {})",
                    info.cluster_addr_table
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
        let mut written = Vec::new();
        for name in names {
            let Some(addr) = info
                .broker_addr_table
                .get(name)
                .and_then(|b| b.master_addr())
            else {
                continue;
            };
            self.create_and_update_topic_config(addr, config)?;
            written.push(addr.to_owned());
        }
        if written.is_empty() {
            return Err(Error::client(
                ClientErrorCode::BROKER_NOT_EXIST_EXCEPTION,
                format!("the cluster {cluster} has no master broker"),
            ));
        }
        Ok(written)
    }

    /// A topic's route from the name servers (`mqadmin topicRoute`). An unknown topic is an
    /// error that answers [`Error::is_topic_not_found`].
    pub fn examine_topic_route_info(&self, topic: &str) -> Result<TopicRouteData> {
        let instance = self.instance()?;
        instance
            .api()
            .get_topic_route_info_from_name_server(topic, self.inner.timeout)
    }

    /// Every topic the name servers know, sorted (`mqadmin topicList`).
    pub fn fetch_all_topic_list(&self) -> Result<Vec<String>> {
        let req = RemotingCommand::request(RequestCode::GET_ALL_TOPIC_LIST_FROM_NAMESERVER);
        let resp = self.invoke_namesrv(req)?;
        Ok(wire::decode_topic_list(
            resp.body().map_or(&[][..], |b| &b[..]),
        )?)
    }

    // -----------------------------------------------------------------------------------------
    // Offsets and time

    /// The offset of the first message of `mq` stored at or after `timestamp_ms`.
    pub fn search_offset(&self, mq: &MessageQueue, timestamp_ms: i64) -> Result<i64> {
        let header = SearchOffsetRequestHeader {
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
            timestamp: timestamp_ms,
            bname: Some(mq.broker_name.clone()),
        };
        let h: SearchOffsetResponseHeader =
            self.query_queue(mq, RequestCode::SEARCH_OFFSET_BY_TIMESTAMP, &header)?;
        Ok(h.offset)
    }

    /// The queue's max offset (one past its last message).
    pub fn max_offset(&self, mq: &MessageQueue) -> Result<i64> {
        let h: GetMaxOffsetResponseHeader = self.query_queue(
            mq,
            RequestCode::GET_MAX_OFFSET,
            &GetMaxOffsetRequestHeader::from(mq),
        )?;
        Ok(h.offset)
    }

    /// The queue's min offset (its oldest message still stored).
    pub fn min_offset(&self, mq: &MessageQueue) -> Result<i64> {
        let h: GetMinOffsetResponseHeader = self.query_queue(
            mq,
            RequestCode::GET_MIN_OFFSET,
            &GetMinOffsetRequestHeader::from(mq),
        )?;
        Ok(h.offset)
    }

    /// The store time of the queue's oldest message, ms since the epoch.
    pub fn earliest_msg_store_time(&self, mq: &MessageQueue) -> Result<i64> {
        let h: GetEarliestMsgStoretimeResponseHeader = self.query_queue(
            mq,
            RequestCode::GET_EARLIEST_MSG_STORETIME,
            &GetEarliestMsgStoretimeRequestHeader::from(mq),
        )?;
        Ok(h.timestamp)
    }

    // -----------------------------------------------------------------------------------------
    // Messages

    /// A message by its offset msgId (the store host and commit-log offset it encodes);
    /// `mqadmin queryMsgById`. An id that is not an offset msgId is an error, as is a commit-log
    /// offset where the broker finds no message.
    pub fn view_message(&self, offset_msg_id: &str) -> Result<MessageExt> {
        let (host, offset) = MessageDecoder::decode_message_id(offset_msg_id).map_err(|_| {
            Error::client(
                ClientErrorCode::NO_CODE,
                format!(
                    "{offset_msg_id:?} is not an offset msgId: it must be 32 hex characters \
                     (IPv4 store host, port, commit-log offset) or 56 (IPv6)"
                ),
            )
        })?;
        let addr = host.to_string();
        let req = RemotingCommand::request_with_header(
            RequestCode::VIEW_MESSAGE_BY_ID,
            &ViewMessageRequestHeader { offset },
        );
        let resp = self.invoke(&addr, req, self.inner.timeout)?;
        let body = resp.body().cloned().unwrap_or_default();
        let batch = MessageDecoder::decode_batch(body, true, DEFAULT_MAX_BODY_SIZE);
        batch.messages.into_iter().next().ok_or_else(|| {
            Error::client(
                ResponseCode::NO_MESSAGE.0,
                format!(
                    "the broker {addr} returned no decodable message at commit-log offset \
                     {offset} (msgId {offset_msg_id})"
                ),
            )
        })
    }

    /// Java `viewMessage(topic, msgId)`: `msg_id` as an offset msgId, else as a unique key.
    pub fn view_message_in_topic(&self, topic: &str, msg_id: &str) -> Result<MessageExt> {
        if MessageDecoder::decode_message_id(msg_id).is_ok() {
            match self.view_message(msg_id) {
                Ok(m) if m.topic() == topic => return Ok(m),
                Ok(m) => log::debug!(
                    "{msg_id} as an offset msgId is a message of topic {}, not {topic}; \
                     trying it as a unique key",
                    m.topic()
                ),
                Err(e) => {
                    log::debug!("{msg_id} as an offset msgId: {e}; trying it as a unique key")
                }
            }
        }
        self.query_message_by_unique_key(topic, msg_id)
    }

    /// The messages of `topic` whose keys include `key`, stored between `begin_ms` and
    /// `end_ms`, at most `max_num` from each broker, from every broker of the topic
    /// (`QUERY_MESSAGE`, `mqadmin queryMsgByKey`). The broker's index matches keys by hash;
    /// messages whose keys only collide are dropped here, as Java does. No match is an empty
    /// result; an error only when every broker failed.
    pub fn query_message(
        &self,
        topic: &str,
        key: &str,
        max_num: u32,
        begin_ms: i64,
        end_ms: i64,
    ) -> Result<QueryResult> {
        self.query(topic, key, max_num, begin_ms, end_ms, false)
    }

    /// The message of `topic` with unique key (client msgId) `uniq_key`, the earliest stored
    /// when the broker holds more than one (a retried send). None is an error.
    pub fn query_message_by_unique_key(&self, topic: &str, uniq_key: &str) -> Result<MessageExt> {
        let now = crate::common::util::now_millis();
        // A Java producer counts the id's time from its local midnight: allow a day.
        let begin = MessageClientIDSetter::nearly_time_from_id(uniq_key, now)
            .map_or(0, |t| (t - 86_400_000).max(0));
        let mut result = self.query(topic, uniq_key, 32, begin, i64::MAX, true)?;
        result.messages.sort_by_key(|m| m.store_timestamp());
        result.messages.into_iter().next().ok_or_else(|| {
            Error::client(
                ResponseCode::NO_MESSAGE.0,
                format!("no message of topic {topic} has the unique key {uniq_key}"),
            )
        })
    }

    // -----------------------------------------------------------------------------------------
    // Consumers

    /// A consumer group's progress per queue: broker offset, consumer offset and lag
    /// (`mqadmin consumerProgress`), for one topic or all the group's topics, from every
    /// master of the group. A group no broker knows is an error.
    pub fn examine_consume_stats(&self, group: &str, topic: Option<&str>) -> Result<ConsumeStats> {
        let route = self.group_route(group, topic)?;
        let header = GetConsumeStatsRequestHeader {
            consumer_group: group.to_owned(),
            topic: topic.map(str::to_owned),
        };
        let mut stats = ConsumeStats::default();
        for (_, addr) in master_addrs(&route) {
            let req = RemotingCommand::request_with_header(RequestCode::GET_CONSUME_STATS, &header);
            // Java gives this call three times the admin timeout: the broker reads every queue.
            let resp = self.invoke(&addr, req, self.inner.timeout * 3)?;
            let part = wire::decode_consume_stats(resp.body().map_or(&[][..], |b| &b[..]))?;
            stats.offset_table.extend(part.offset_table);
            stats.consume_tps += part.consume_tps;
        }
        if stats.offset_table.is_empty() {
            return Err(Error::client(
                ResponseCode::CONSUMER_NOT_ONLINE.0,
                format!(
                    "no consume stats of group {group}{}: the brokers know no queue it consumes \
                     (it has consumed nothing yet, or does not subscribe to that topic)",
                    topic.map(|t| format!(" on topic {t}")).unwrap_or_default()
                ),
            ));
        }
        Ok(stats)
    }

    /// The client ids connected to `group` on any broker of the group, sorted
    /// (`GET_CONSUMER_LIST_BY_GROUP`). Empty when the group is known but nobody is connected.
    pub fn consumer_id_list(&self, group: &str) -> Result<Vec<String>> {
        let instance = self.instance()?;
        let route = self.group_route(group, None)?;
        let mut ids = std::collections::BTreeSet::new();
        let mut last_err = None;
        let mut answered = false;
        for (_, addr) in master_addrs(&route) {
            match instance.consumer_id_list_at(&addr, group, self.inner.timeout) {
                Ok(list) => {
                    answered = true;
                    ids.extend(list);
                }
                // Java's broker (and rocketmq-rust's) answers a group with nobody connected
                // this way: that is an empty list, not a failure.
                Err(Error::Broker { code, remark, .. })
                    if code == ResponseCode::SYSTEM_ERROR
                        && remark.starts_with(NO_CONSUMER_REMARK) =>
                {
                    answered = true;
                }
                Err(e) => last_err = Some(e),
            }
        }
        match last_err {
            Some(e) if !answered => Err(e),
            _ => Ok(ids.into_iter().collect()),
        }
    }

    /// The connections and subscriptions of `group`, from every master of the group
    /// (`mqadmin consumerConnection`). A group with no consumer online is an error with
    /// [`ResponseCode::CONSUMER_NOT_ONLINE`].
    pub fn examine_consumer_connection_info(&self, group: &str) -> Result<ConsumerConnection> {
        let route = self.group_route(group, None)?;
        let header = GetConsumerConnectionListRequestHeader {
            consumer_group: group.to_owned(),
        };
        let mut merged: Option<ConsumerConnection> = None;
        let mut last_err = None;
        for (_, addr) in master_addrs(&route) {
            let req = RemotingCommand::request_with_header(
                RequestCode::GET_CONSUMER_CONNECTION_LIST,
                &header,
            );
            let part = match self.invoke(&addr, req, self.inner.timeout) {
                Ok(resp) => {
                    wire::decode_consumer_connection(resp.body().map_or(&[][..], |b| &b[..]))?
                }
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            };
            match &mut merged {
                None => merged = Some(part),
                Some(m) => {
                    for c in part.connections {
                        if !m.connections.iter().any(|x| x.client_id == c.client_id) {
                            m.connections.push(c);
                        }
                    }
                    for s in part.subscriptions {
                        if !m.subscriptions.iter().any(|x| x.topic == s.topic) {
                            m.subscriptions.push(s);
                        }
                    }
                }
            }
        }
        match merged {
            Some(mut m) if !m.connections.is_empty() => {
                m.connections.sort_by(|a, b| a.client_id.cmp(&b.client_id));
                m.subscriptions.sort_by(|a, b| a.topic.cmp(&b.topic));
                Ok(m)
            }
            _ => Err(last_err.unwrap_or_else(|| {
                Error::client(
                    ResponseCode::CONSUMER_NOT_ONLINE.0,
                    format!("no consumer of group {group} is online"),
                )
            })),
        }
    }

    /// The running state of one consumer of `group`, asked through a broker it is connected
    /// to (`GET_CONSUMER_RUNNING_INFO`, `mqadmin consumerStatus`); `jstack` asks for its
    /// threads. A client that is not connected is an error.
    pub fn get_consumer_running_info(
        &self,
        group: &str,
        client_id: &str,
        jstack: bool,
    ) -> Result<ConsumerRunningInfo> {
        let route = self.group_route(group, None)?;
        let header = GetConsumerRunningInfoRequestHeader {
            consumer_group: group.to_owned(),
            client_id: client_id.to_owned(),
            jstack_enable: jstack,
        };
        let mut last_err = None;
        for (_, addr) in master_addrs(&route) {
            let req = RemotingCommand::request_with_header(
                RequestCode::GET_CONSUMER_RUNNING_INFO,
                &header,
            );
            // The broker waits for the client: give it the client's time on top of ours.
            match self.invoke(&addr, req, self.inner.timeout * 2) {
                Ok(resp) => {
                    return Ok(wire::decode_consumer_running_info(
                        resp.body().map_or(&[][..], |b| &b[..]),
                    )?)
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| {
            Error::client(
                ClientErrorCode::BROKER_NOT_EXIST_EXCEPTION,
                format!("no master broker serves the group {group}"),
            )
        }))
    }

    // -----------------------------------------------------------------------------------------
    // Cluster

    /// The brokers of every cluster and their addresses (`mqadmin clusterList`).
    pub fn examine_broker_cluster_info(&self) -> Result<ClusterInfo> {
        let req = RemotingCommand::request(RequestCode::GET_BROKER_CLUSTER_INFO);
        let resp = self.invoke_namesrv(req)?;
        Ok(wire::decode_cluster_info(
            resp.body().map_or(&[][..], |b| &b[..]),
        )?)
    }

    // -----------------------------------------------------------------------------------------
    // Plumbing

    /// Sends `req` to the broker at `addr`; a non-success answer is [`Error::Broker`].
    fn invoke(
        &self,
        addr: &str,
        req: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand> {
        let instance = self.instance()?;
        let req = instance.api().request(req);
        expect_success(instance.remoting().invoke_sync(addr, req, timeout)?, addr)
    }

    /// Sends `req` to a name server; a non-success answer is [`Error::Broker`].
    fn invoke_namesrv(&self, req: RemotingCommand) -> Result<RemotingCommand> {
        let instance = self.instance()?;
        let req = instance.api().request(req);
        let resp = instance
            .remoting()
            .invoke_namesrv_sync(req, self.inner.timeout)?;
        expect_success(resp, "the name server")
    }

    /// A per-queue request to the master of `mq`'s broker. An unknown topic is the name
    /// server's error; a broker the topic's route does not name is an error naming both.
    fn query_queue<R: crate::remoting::protocol::CommandCustomHeader>(
        &self,
        mq: &MessageQueue,
        code: RequestCode,
        header: &impl crate::remoting::protocol::CommandCustomHeader,
    ) -> Result<R> {
        let instance = self.instance()?;
        // Java asks any broker of that name, which answers 0 for a topic it does not hold;
        // here the topic's route must name the broker, so an unknown topic is an error.
        if !instance.topic_route_has_broker(&mq.topic, &mq.broker_name) {
            // The route's own error (an unknown topic, say) is the clearest one.
            instance.try_update_topic_route_info_from_name_server(&mq.topic)?;
            if !instance.topic_route_has_broker(&mq.topic, &mq.broker_name) {
                return Err(Error::client(
                    ClientErrorCode::BROKER_NOT_EXIST_EXCEPTION,
                    format!(
                        "the broker {} has no master known for topic {}",
                        mq.broker_name, mq.topic
                    ),
                ));
            }
        }
        instance.query_master(mq, code, header, self.inner.timeout)
    }

    /// The route that tells where `group` lives: its retry topic's (every subscribing group
    /// has one), else `topic`'s. Neither is an error that names the group.
    fn group_route(&self, group: &str, topic: Option<&str>) -> Result<TopicRouteData> {
        let retry = format!("%RETRY%{group}");
        match self.examine_topic_route_info(&retry) {
            Ok(route) => Ok(route),
            Err(e) if e.is_topic_not_found() => match topic {
                Some(t) => self.examine_topic_route_info(t),
                None => Err(Error::client(
                    ResponseCode::SUBSCRIPTION_GROUP_NOT_EXIST.0,
                    format!(
                        "the consumer group {group} is not known: the name servers have no \
                         route of its retry topic {retry} (no consumer of it ever connected)"
                    ),
                )),
            },
            Err(e) => Err(e),
        }
    }

    /// QUERY_MESSAGE on every broker of `topic`, merged and filtered by key.
    fn query(
        &self,
        topic: &str,
        key: &str,
        max_num: u32,
        begin_ms: i64,
        end_ms: i64,
        unique: bool,
    ) -> Result<QueryResult> {
        let route = self.examine_topic_route_info(topic)?;
        let header = QueryMessageRequestHeader {
            topic: topic.to_owned(),
            key: key.to_owned(),
            max_num: i32::try_from(max_num).unwrap_or(i32::MAX),
            begin_timestamp: begin_ms,
            end_timestamp: end_ms,
        };
        let mut result = QueryResult {
            index_last_update_timestamp: 0,
            messages: Vec::new(),
        };
        let mut last_err = None;
        let mut answered = false;
        for b in &route.broker_datas {
            let Some(addr) = b
                .master_addr()
                .or_else(|| b.broker_addrs.values().next().map(String::as_str))
            else {
                continue;
            };
            let mut req = RemotingCommand::request_with_header(RequestCode::QUERY_MESSAGE, &header);
            req.ext_fields_mut().put(UNIQUE_MSG_QUERY_FLAG, unique);
            // Java gives a query three times the admin timeout: the broker walks its index.
            let resp = match self.invoke(addr, req, self.inner.timeout * 3) {
                Ok(r) => r,
                Err(e) if e.response_code() == Some(ResponseCode::QUERY_NOT_FOUND) => {
                    answered = true;
                    continue;
                }
                Err(e) => {
                    log::warn!("query message by key {key} at {addr} failed: {e}");
                    last_err = Some(e);
                    continue;
                }
            };
            answered = true;
            let h: QueryMessageResponseHeader = resp.decode_header()?;
            result.index_last_update_timestamp = result
                .index_last_update_timestamp
                .max(h.index_last_update_timestamp);
            let body = resp.body().cloned().unwrap_or_default();
            let batch = MessageDecoder::decode_batch(body, true, DEFAULT_MAX_BODY_SIZE);
            for mut m in batch.messages {
                let matched = if unique {
                    m.property(MessageConst::PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX) == Some(key)
                } else {
                    m.keys().is_some_and(|keys| {
                        keys.split(MessageConst::KEY_SEPARATOR).any(|k| k == key)
                    })
                };
                if matched && m.topic() == topic {
                    m.broker_name = Some(b.broker_name.as_str().into());
                    result.messages.push(m);
                }
            }
        }
        match last_err {
            Some(e) if !answered => Err(e),
            _ => Ok(result),
        }
    }
}

/// Java `MixAll.UNIQUE_MSG_QUERY_FLAG`: the ext field that makes QUERY_MESSAGE look a unique
/// key up.
const UNIQUE_MSG_QUERY_FLAG: &str = "_UNIQUE_KEY_QUERY";

/// How a broker's GET_CONSUMER_LIST_BY_GROUP refusal begins when no consumer of the group is
/// connected (Java `ClientManageProcessor`).
const NO_CONSUMER_REMARK: &str = "no consumer for this group";

/// The masters of a route, `(broker name, address)`, in route order.
fn master_addrs(route: &TopicRouteData) -> Vec<(String, String)> {
    route
        .broker_datas
        .iter()
        .filter_map(|b| {
            b.master_addr()
                .map(|a| (b.broker_name.clone(), a.to_owned()))
        })
        .collect()
}

fn to_i32(v: u32, what: &str) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::config(format!("{what} {v} is out of range")))
}

/// Java `Validators.checkTopic` plus the queue counts a broker accepts.
fn check_topic_config(config: &TopicConfig) -> Result<()> {
    check_topic(&config.topic_name)?;
    for (what, n) in [
        ("read_queue_nums", config.read_queue_nums),
        ("write_queue_nums", config.write_queue_nums),
    ] {
        if n == 0 || n as usize > crate::codec::MAX_ROUTE_QUEUES {
            return Err(Error::client(
                ClientErrorCode::NO_CODE,
                format!(
                    "{what} of topic {} must be 1..={}, got {n}",
                    config.topic_name,
                    crate::codec::MAX_ROUTE_QUEUES
                ),
            ));
        }
    }
    Ok(())
}
