//! `MQClientInstance`: the threads and caches one client id shares across its producers and
//! consumers, and `MQClientManager`, which keeps one instance per client id.
//!
//! Threads: the remoting client's `rmq-io` and `rmq-cb-*`, and one `rmq-sched` scheduler for the
//! periodic tasks (route refresh, heartbeat, name-server lookup). Producers and consumers hold an
//! `Arc` to their instance; scheduled tasks hold a `Weak` so they never keep it alive.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use crate::client::api::MQClientAPI;
use crate::client::config::{parse_namesrv_list, ClientConfig};
use crate::client::heartbeat::{HeartbeatData, ProducerData};
use crate::common::route::MASTER_ID;
use crate::common::{ServiceState, TopicRouteData};
use crate::error::{ClientErrorCode, Error, Result};
use crate::executor::{ScheduledExecutor, ScheduledHandle};
use crate::producer::TopicPublishInfo;
use crate::remoting::{RemotingClient, RemotingClientConfig};

/// The topic whose route a producer borrows until its own topic is auto-created.
pub(crate) const AUTO_CREATE_TOPIC_KEY_TOPIC: &str = "TBW102";

/// What the instance needs from a registered producer.
pub(crate) trait MQProducerInner: Send + Sync {
    /// Topics this producer has sent to (their routes are refreshed periodically).
    fn publish_topics(&self) -> Vec<String>;
    /// `true` when the producer has no usable route for `topic`.
    fn is_publish_topic_need_update(&self, topic: &str) -> bool;
    /// Installs a new route.
    fn update_topic_publish_info(&self, topic: &str, info: TopicPublishInfo);
}

/// One client id's shared machinery.
pub(crate) struct MQClientInstance {
    client_id: String,
    config: ClientConfig,
    api: MQClientAPI,
    state: Mutex<ServiceState>,
    topic_route_table: RwLock<HashMap<String, TopicRouteData>>,
    broker_addr_table: RwLock<HashMap<String, BTreeMap<i64, String>>>,
    broker_version_table: RwLock<HashMap<String, HashMap<String, i32>>>,
    producers: RwLock<HashMap<String, Weak<dyn MQProducerInner>>>,
    scheduler: Mutex<Option<ScheduledExecutor>>,
    tasks: Mutex<Vec<ScheduledHandle>>,
    route_lock: Mutex<()>,
    heartbeat_lock: Mutex<()>,
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
    /// The running instance for `config.client_id()`, created and started if needed.
    pub(crate) fn get_or_create(config: &ClientConfig) -> Result<Arc<MQClientInstance>> {
        let client_id = config.client_id();
        let mut table = manager().lock();
        if let Some(existing) = table.get(&client_id) {
            if *existing.state.lock() == ServiceState::Running {
                return Ok(existing.clone());
            }
        }
        let instance = MQClientInstance::new(client_id.clone(), config.clone())?;
        table.insert(client_id, instance.clone());
        Ok(instance)
    }

    fn remove(client_id: &str, instance: &MQClientInstance) {
        let mut table = manager().lock();
        if table
            .get(client_id)
            .is_some_and(|i| std::ptr::eq(Arc::as_ptr(i), instance))
        {
            table.remove(client_id);
        }
    }
}

impl MQClientInstance {
    fn new(client_id: String, config: ClientConfig) -> Result<Arc<Self>> {
        let remoting = RemotingClient::start(RemotingClientConfig {
            callback_threads: config.client_callback_executor_threads.max(1),
            serialize_type: config.serialize_type,
            ..RemotingClientConfig::default()
        })?;
        let api = MQClientAPI::new(remoting, config.serialize_type);
        let instance = Arc::new(MQClientInstance {
            client_id,
            config,
            api,
            state: Mutex::new(ServiceState::CreateJust),
            topic_route_table: RwLock::new(HashMap::new()),
            broker_addr_table: RwLock::new(HashMap::new()),
            broker_version_table: RwLock::new(HashMap::new()),
            producers: RwLock::new(HashMap::new()),
            scheduler: Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
            route_lock: Mutex::new(()),
            heartbeat_lock: Mutex::new(()),
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

    /// The remoting client.
    pub(crate) fn remoting(&self) -> &RemotingClient {
        self.api.remoting()
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

    /// Registers a producer group. A group can be registered once per client id.
    pub(crate) fn register_producer(
        &self,
        group: &str,
        producer: Weak<dyn MQProducerInner>,
    ) -> Result<()> {
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

    /// Unregisters a producer group from this instance and, with `notify_brokers`, from every
    /// broker; shuts the instance down when nothing else uses it.
    pub(crate) fn unregister_producer(&self, group: &str, notify_brokers: bool) {
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
        if self.producers.read().is_empty() {
            self.shutdown();
        }
    }

    /// Stops the scheduler and the remoting client. Idempotent.
    pub(crate) fn shutdown(&self) {
        {
            let mut state = self.state.lock();
            if *state != ServiceState::Running {
                return;
            }
            *state = ServiceState::ShutdownAlready;
        }
        for t in self.tasks.lock().drain(..) {
            t.cancel();
        }
        if let Some(s) = self.scheduler.lock().take() {
            if let Err(e) = s.shutdown(Duration::from_secs(5)) {
                log::warn!("scheduler of {} did not stop cleanly: {e}", self.client_id);
            }
        }
        self.remoting().shutdown();
        MQClientManager::remove(&self.client_id, self);
        log::info!("the client factory [{}] shut down", self.client_id);
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
        self.update_route(topic, None)
    }

    /// Like [`update_topic_route_info_from_name_server`](Self::update_topic_route_info_from_name_server),
    /// but borrows the route of the auto-create topic (`TBW102`) with at most
    /// `default_queue_nums` queues per broker, so a first send can auto-create `topic`.
    pub(crate) fn update_topic_route_info_from_default(
        &self,
        topic: &str,
        default_queue_nums: i32,
    ) -> bool {
        self.update_route(topic, Some(default_queue_nums))
    }

    fn update_route(&self, topic: &str, default_queue_nums: Option<i32>) -> bool {
        let Some(_guard) = self.route_lock.try_lock_for(Duration::from_secs(3)) else {
            log::warn!("updateTopicRouteInfoFromNameServer tryLock timeout 3000ms");
            return false;
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
            Err(e) => {
                let quiet = topic.starts_with("%RETRY%")
                    || topic == AUTO_CREATE_TOPIC_KEY_TOPIC
                    || e.response_code()
                        == Some(crate::remoting::protocol::ResponseCode::TOPIC_NOT_EXIST);
                if quiet {
                    log::debug!("route of {topic} not available: {e}");
                } else {
                    log::warn!("updateTopicRouteInfoFromNameServer for {topic} failed: {e}");
                }
                return false;
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
        let changed = old_changed
            || producers
                .iter()
                .any(|(_, p)| p.is_publish_topic_need_update(topic));
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
            log::info!("topicRouteTable.put. Topic = {topic}, TopicRouteData[{route:?}]");
            self.topic_route_table
                .write()
                .insert(topic.to_owned(), route);
        }
        true
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

    /// Sends a heartbeat to every known broker, unless one is already being sent.
    pub(crate) fn send_heartbeat_to_all_broker_with_lock(&self) {
        let Some(_guard) = self.heartbeat_lock.try_lock() else {
            log::warn!("lock heartBeat, but failed. [{}]", self.client_id);
            return;
        };
        let producers = self.live_producers();
        let mut producer_data_set: Vec<ProducerData> = producers
            .iter()
            .map(|(g, _)| ProducerData {
                group_name: g.clone(),
            })
            .collect();
        producer_data_set.sort();
        let data = HeartbeatData {
            client_id: self.client_id.clone(),
            consumer_data_set: Vec::new(),
            producer_data_set,
        };
        if data.producer_data_set.is_empty() && data.consumer_data_set.is_empty() {
            return;
        }
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
            match self
                .api
                .send_heartbeat(&addr, &data, self.config.mq_client_api_timeout)
            {
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

    #[test]
    fn http_lookup_failure_is_a_clear_error() {
        let url = serve_once("404 Not Found", "");
        let err = fetch_name_server_addr(&url).unwrap_err();
        assert!(err.to_string().contains("NAMESRV_ADDR"), "{err}");
    }
}
