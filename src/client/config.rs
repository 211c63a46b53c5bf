//! `ClientConfig`: what every producer and consumer shares with its `MQClientInstance`.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use std::sync::Arc;

use crate::client::instance::{ClientRole, MQClientInstance, MQClientManager};
use crate::error::{Error, Result};
use crate::remoting::protocol::{LanguageCode, SerializeType};
use crate::remoting::tls::{self, TlsConfig};
use crate::remoting::RPCHook;

/// Settings shared by producers and consumers (Java `ClientConfig`), built with
/// [`ClientConfig::builder`] and handed to a producer or consumer builder with its
/// `client_config()` method, for the settings those builders have no dedicated setter for.
///
/// Producers and consumers with the same client id (`clientIP@instanceName[@unitName]`) share
/// one client instance: one io thread, one scheduler, one callback pool, and one
/// [`RPCHook`] (see [`ClientConfigBuilder::rpc_hook`]).
///
/// ```
/// use std::time::Duration;
/// use rocketmq_sync::{ClientConfig, DefaultMQProducer};
///
/// let client = ClientConfig::builder()
///     .mq_client_api_timeout(Duration::from_secs(5))
///     .heartbeat_broker_interval(Duration::from_secs(10))
///     .build();
/// let producer = DefaultMQProducer::builder("pg")
///     .client_config(client)
///     .namesrv_addr("127.0.0.1:9876")
///     .build()?;
/// # Ok::<(), rocketmq_sync::Error>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    pub(crate) namesrv_addr: Option<String>,
    pub(crate) client_ip: String,
    /// `None` until set: each client picks its default when it starts (see
    /// [`ClientConfigBuilder::instance_name`]).
    pub(crate) instance_name: Option<String>,
    pub(crate) unit_name: Option<String>,
    /// Java `ClientConfig.namespace`: prefixes this client's topics and groups (`ns%name`).
    pub(crate) namespace: Option<String>,
    pub(crate) client_callback_executor_threads: usize,
    pub(crate) disable_callback_executor: bool,
    pub(crate) poll_name_server_interval: Duration,
    pub(crate) heartbeat_broker_interval: Duration,
    pub(crate) persist_consumer_offset_interval: Duration,
    pub(crate) pull_time_delay_when_exception: Duration,
    pub(crate) mq_client_api_timeout: Duration,
    pub(crate) language: LanguageCode,
    pub(crate) serialize_type: SerializeType,
    pub(crate) namesrv_domain: String,
    pub(crate) namesrv_domain_subgroup: String,
    /// `None`: the `TLS_ENABLE` environment variable decides, when the client starts.
    pub(crate) use_tls: Option<bool>,
    /// `None`: `TlsConfig::from_env()`, when the client starts with TLS on.
    pub(crate) tls: Option<TlsConfig>,
    pub(crate) rpc_hook: Option<SharedRpcHook>,
}

/// An [`RPCHook`] as a client configuration holds it: compared by identity (the same `Arc`),
/// printed without its contents.
#[derive(Clone)]
pub(crate) struct SharedRpcHook(pub(crate) Arc<dyn RPCHook>);

impl SharedRpcHook {
    /// Whether two configurations have the same hook (the same `Arc`, or none).
    pub(crate) fn same(a: Option<&SharedRpcHook>, b: Option<&SharedRpcHook>) -> bool {
        match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(&a.0, &b.0),
            _ => false,
        }
    }
}

impl fmt::Debug for SharedRpcHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A hook may hold credentials: only say which one it is.
        write!(f, "RPCHook@{:p}", Arc::as_ptr(&self.0).cast::<()>())
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            namesrv_addr: std::env::var("NAMESRV_ADDR")
                .ok()
                .filter(|s| !s.trim().is_empty()),
            client_ip: local_ip(),
            instance_name: None,
            unit_name: None,
            namespace: None,
            client_callback_executor_threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            disable_callback_executor: false,
            poll_name_server_interval: Duration::from_secs(30),
            heartbeat_broker_interval: Duration::from_secs(30),
            persist_consumer_offset_interval: Duration::from_secs(5),
            pull_time_delay_when_exception: Duration::from_secs(1),
            mq_client_api_timeout: Duration::from_secs(3),
            language: LanguageCode::JAVA,
            serialize_type: SerializeType::Json,
            namesrv_domain: std::env::var("ROCKETMQ_NAMESRV_DOMAIN")
                .unwrap_or_else(|_| "jmenv.tbsite.net".to_owned()),
            namesrv_domain_subgroup: std::env::var("ROCKETMQ_NAMESRV_DOMAIN_SUBGROUP")
                .unwrap_or_else(|_| "nsaddr".to_owned()),
            rpc_hook: None,
            use_tls: None,
            tls: None,
        }
    }
}

impl ClientConfig {
    /// A builder with Java's defaults.
    pub fn builder() -> ClientConfigBuilder {
        ClientConfigBuilder {
            config: ClientConfig::default(),
        }
    }

    /// The name servers as configured (`host:port` separated by `;`), if any.
    pub fn namesrv_addr(&self) -> Option<&str> {
        self.namesrv_addr.as_deref()
    }

    /// The IP reported in the client id.
    pub fn client_ip(&self) -> &str {
        &self.client_ip
    }

    /// The instance name, if one was set; otherwise each client picks its default at start.
    pub fn instance_name(&self) -> Option<&str> {
        self.instance_name.as_deref()
    }

    /// The unit name, if any.
    pub fn unit_name(&self) -> Option<&str> {
        self.unit_name.as_deref()
    }

    /// The namespace, if any.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// `resource` (a topic or group) as the broker knows it: in this client's namespace.
    pub(crate) fn with_namespace<'a>(&self, resource: &'a str) -> std::borrow::Cow<'a, str> {
        crate::common::namespace::wrap(self.namespace.as_deref(), resource)
    }

    /// `mq` as the broker knows it (Java `queueWithNamespace`).
    pub(crate) fn queue_with_namespace<'a>(
        &self,
        mq: &'a crate::common::MessageQueue,
    ) -> std::borrow::Cow<'a, crate::common::MessageQueue> {
        crate::common::namespace::wrap_queue(self.namespace.as_deref(), mq)
    }

    /// `mq` as this client's user knows it.
    pub(crate) fn queue_without_namespace(
        &self,
        mq: &crate::common::MessageQueue,
    ) -> crate::common::MessageQueue {
        crate::common::namespace::unwrap_queue(self.namespace.as_deref(), mq)
    }

    /// `resource` as this client's user knows it: without this client's namespace.
    pub(crate) fn without_namespace<'a>(&self, resource: &'a str) -> std::borrow::Cow<'a, str> {
        crate::common::namespace::unwrap(self.namespace.as_deref(), resource)
    }

    /// Threads of the callback pool.
    pub fn client_callback_executor_threads(&self) -> usize {
        self.client_callback_executor_threads
    }

    /// Whether async-send callbacks run on the io thread (see
    /// [`ClientConfigBuilder::disable_callback_executor`]).
    pub fn disable_callback_executor(&self) -> bool {
        self.disable_callback_executor
    }

    /// Route refresh period.
    pub fn poll_name_server_interval(&self) -> Duration {
        self.poll_name_server_interval
    }

    /// Heartbeat period.
    pub fn heartbeat_broker_interval(&self) -> Duration {
        self.heartbeat_broker_interval
    }

    /// Consumer offset persistence period.
    pub fn persist_consumer_offset_interval(&self) -> Duration {
        self.persist_consumer_offset_interval
    }

    /// Delay before pulling again after an error.
    pub fn pull_time_delay_when_exception(&self) -> Duration {
        self.pull_time_delay_when_exception
    }

    /// Timeout of route queries, heartbeats and other admin calls.
    pub fn mq_client_api_timeout(&self) -> Duration {
        self.mq_client_api_timeout
    }

    /// The hook run around every request, if any.
    pub fn rpc_hook(&self) -> Option<&Arc<dyn RPCHook>> {
        self.rpc_hook.as_ref().map(|h| &h.0)
    }

    /// Whether the client's connections use TLS: the [`use_tls`](ClientConfigBuilder::use_tls)
    /// setting, else the `TLS_ENABLE` environment variable (`true` in any case; anything else is
    /// `false` here, and an error when the client starts).
    pub fn use_tls(&self) -> bool {
        self.use_tls
            .unwrap_or_else(|| tls_enabled_by_env().unwrap_or(false))
    }

    /// The TLS settings given to [`tls_config`](ClientConfigBuilder::tls_config), if any
    /// (otherwise they come from the environment, see [`TlsConfig::from_env`]).
    pub fn tls_config(&self) -> Option<&TlsConfig> {
        self.tls.as_ref()
    }

    /// The TLS settings of the client's connections, `None` for plaintext, resolved as Java
    /// does when its client starts: explicit settings first, then the environment.
    pub(crate) fn remoting_tls(&self) -> Result<Option<TlsConfig>> {
        let on = match self.use_tls {
            Some(on) => on,
            None => tls_enabled_by_env()?,
        };
        if !on {
            return Ok(None);
        }
        match &self.tls {
            Some(t) => Ok(Some(t.clone())),
            None => TlsConfig::from_env().map(Some),
        }
    }

    /// `clientIP@instanceName[@unitName]`, the id brokers know this client by, with the
    /// process-wide default instance name when none is set.
    pub(crate) fn client_id(&self) -> String {
        let name = self
            .instance_name
            .clone()
            .unwrap_or_else(default_instance_name);
        let mut id = format!("{}@{}", self.client_ip, name);
        if let Some(unit) = self.unit_name.as_deref().filter(|u| !u.is_empty()) {
            id.push('@');
            id.push_str(unit);
        }
        id
    }

    /// This configuration with `name` as its instance name.
    pub(crate) fn with_instance_name(&self, name: impl Into<String>) -> ClientConfig {
        ClientConfig {
            instance_name: Some(name.into()),
            ..self.clone()
        }
    }

    /// The configured name servers, split on `;`, trimmed, empties dropped. A value of the form
    /// `http://host/path/addr` keeps only the part after the last `/`, as Java does.
    pub(crate) fn namesrv_addr_list(&self) -> Vec<String> {
        self.namesrv_addr
            .as_deref()
            .map(parse_namesrv_list)
            .unwrap_or_default()
    }

    /// The URL of the HTTP name-server lookup (Java `MixAll.getWSAddr`). A domain given with its
    /// scheme (`https://host[:port]`) is used as it is, so the lookup can be https.
    pub(crate) fn namesrv_lookup_url(&self) -> String {
        let domain = self.namesrv_domain.trim();
        let lower = domain.to_ascii_lowercase();
        let base = if lower.starts_with("https://") || lower.starts_with("http://") {
            domain.trim_end_matches('/').to_owned()
        } else if domain.contains(':') {
            format!("http://{domain}")
        } else {
            format!("http://{domain}:8080")
        };
        let mut url = format!("{base}/rocketmq/{}", self.namesrv_domain_subgroup);
        if let Some(unit) = self.unit_name.as_deref().filter(|u| !u.is_empty()) {
            url.push('-');
            url.push_str(unit);
            url.push_str("?nofix=1");
        }
        url
    }
}

/// Builds a [`ClientConfig`]. Every setter documents Java's default.
#[derive(Debug, Clone)]
pub struct ClientConfigBuilder {
    config: ClientConfig,
}

impl ClientConfigBuilder {
    /// The name servers, `host:port` separated by `;`. Default: the `NAMESRV_ADDR`
    /// environment variable, else an HTTP lookup (see [`namesrv_domain`](Self::namesrv_domain)).
    #[doc(alias = "setNamesrvAddr")]
    pub fn namesrv_addr(mut self, addr: impl Into<String>) -> Self {
        self.config.namesrv_addr = Some(addr.into());
        self
    }

    /// The IP reported in the client id. Default: this host's first non-loopback IPv4.
    #[doc(alias = "setClientIP")]
    pub fn client_ip(mut self, ip: impl Into<String>) -> Self {
        self.config.client_ip = ip.into();
        self
    }

    /// The instance name. Clients with the same instance name share one client instance
    /// (threads and connections).
    ///
    /// Default, as in Java: a broadcasting consumer uses `DEFAULT`, so that a restarted process
    /// finds its offsets file again (the file is kept per client id). Every other client uses a
    /// name unique to the process (`<pid>#<nanos>`) shared by the clients of the process, except
    /// a consumer or producer whose group is already registered under that name: it gets a name
    /// of its own, so two consumers of one group in one process each have their own client id.
    #[doc(alias = "setInstanceName")]
    pub fn instance_name(mut self, name: impl Into<String>) -> Self {
        self.config.instance_name = Some(name.into());
        self
    }

    /// The unit name appended to the client id. Default: none.
    #[doc(alias = "setUnitName")]
    pub fn unit_name(mut self, name: impl Into<String>) -> Self {
        self.config.unit_name = Some(name.into());
        self
    }

    /// The namespace (Java `setNamespace`): this client's topics and groups are `ns%name` at
    /// the broker, as Java names them (system topics and groups, and the retry and
    /// dead-letter prefixes, follow Java's rules), and its user sees them without `ns%`. Two
    /// namespaces on one broker do not see each other's messages. Default: none.
    #[doc(alias = "setNamespace")]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.config.namespace = Some(namespace.into());
        self
    }

    /// Threads running async-send callbacks, pull callbacks and broker requests. Default: the
    /// number of CPUs. Values below 1 are raised to 1.
    #[doc(alias = "setClientCallbackExecutorThreads")]
    pub fn client_callback_executor_threads(mut self, threads: usize) -> Self {
        self.config.client_callback_executor_threads = threads.max(1);
        self
    }

    /// `true`: a successful async send's callback runs on the `rmq-io` thread as soon as the
    /// broker's answer is read, instead of on the callback pool (Java
    /// `setDisableCallbackExecutor`). Default: false.
    ///
    /// It saves a thread wake-up per send, about half the client's CPU per async send when the
    /// broker answers one send at a time. The price: every connection of the client, pulls
    /// included, waits while a callback runs. Callbacks must be short, must not block, and must
    /// not call a sync API (a sync send would wait for the very thread it runs on, until its
    /// timeout). Failed sends, their retries and requests from brokers still run on the pool.
    /// Like the other settings here, the first client of an instance (one client id) decides.
    #[doc(alias = "setDisableCallbackExecutor")]
    pub fn disable_callback_executor(mut self, disable: bool) -> Self {
        self.config.disable_callback_executor = disable;
        self
    }

    /// Route refresh period. Default: 30 s.
    #[doc(alias = "setPollNameServerInterval")]
    pub fn poll_name_server_interval(mut self, period: Duration) -> Self {
        self.config.poll_name_server_interval = period;
        self
    }

    /// Heartbeat period. Default: 30 s.
    #[doc(alias = "setHeartbeatBrokerInterval")]
    pub fn heartbeat_broker_interval(mut self, period: Duration) -> Self {
        self.config.heartbeat_broker_interval = period;
        self
    }

    /// Consumer offset persistence period. Default: 5 s.
    #[doc(alias = "setPersistConsumerOffsetInterval")]
    pub fn persist_consumer_offset_interval(mut self, period: Duration) -> Self {
        self.config.persist_consumer_offset_interval = period;
        self
    }

    /// Delay before pulling a queue again after an error. Default: 1 s.
    #[doc(alias = "setPullTimeDelayMillsWhenException")]
    pub fn pull_time_delay_when_exception(mut self, delay: Duration) -> Self {
        self.config.pull_time_delay_when_exception = delay;
        self
    }

    /// Timeout of route queries, heartbeats and other admin calls. Default: 3 s.
    #[doc(alias = "setMqClientApiTimeout")]
    pub fn mq_client_api_timeout(mut self, timeout: Duration) -> Self {
        self.config.mq_client_api_timeout = timeout;
        self
    }

    /// The language declared on requests. Default: `JAVA`, since brokers older than 4.9.4
    /// reject `RUST`.
    #[doc(alias = "setLanguage")]
    pub fn language(mut self, language: LanguageCode) -> Self {
        self.config.language = language;
        self
    }

    /// Header encoding of outgoing requests. Default: JSON, as Java.
    pub fn serialize_type(mut self, serialize_type: SerializeType) -> Self {
        self.config.serialize_type = serialize_type;
        self
    }

    /// Host (`host` or `host:port`) serving the name-server list over HTTP when no address is
    /// configured. Default: the `ROCKETMQ_NAMESRV_DOMAIN` environment variable, else
    /// `jmenv.tbsite.net` (Java `rocketmq.namesrv.domain`). Port 8080 unless one is given. With
    /// a scheme (`https://host[:port]` or `http://...`) the lookup uses that scheme and URL base;
    /// https certificates are verified against Mozilla's roots.
    pub fn namesrv_domain(mut self, host: impl Into<String>) -> Self {
        self.config.namesrv_domain = host.into();
        self
    }

    /// Path segment of that lookup. Default: the `ROCKETMQ_NAMESRV_DOMAIN_SUBGROUP`
    /// environment variable, else `nsaddr` (Java `rocketmq.namesrv.domain.subgroup`).
    pub fn namesrv_domain_subgroup(mut self, subgroup: impl Into<String>) -> Self {
        self.config.namesrv_domain_subgroup = subgroup.into();
        self
    }

    /// The hook run around every request of the client instance (Java: the `rpcHook` given to
    /// a producer or consumer constructor), for example an
    /// [`AclClientRPCHook`](crate::AclClientRPCHook) that signs requests. Default: none.
    ///
    /// The hook belongs to the client instance, which producers and consumers with the same
    /// client id share. Java keeps the first client's hook for all of them; here a client
    /// whose hook is not the same `Arc` as that of the instance it would share never uses the
    /// other's: without an instance name it gets an instance of its own, and with an instance
    /// name in use by an instance with another hook its `start()` fails with
    /// [`Error::Config`](crate::Error::Config). Pass clones of one `Arc` to clients that
    /// should share an instance.
    #[doc(alias = "RPCHook")]
    pub fn rpc_hook(mut self, hook: Arc<dyn RPCHook>) -> Self {
        self.config.rpc_hook = Some(SharedRpcHook(hook));
        self
    }

    /// Whether every connection (name servers and brokers) uses TLS. Java `useTLS`. Default:
    /// the `TLS_ENABLE` environment variable (Java `tls.enable`), else `false`.
    ///
    /// The name server and the brokers must all accept TLS. The TLS settings are those of
    /// [`tls_config`](Self::tls_config), else those of [`TlsConfig::from_env`] (Java's
    /// `tls.client.*` properties and `tls.config.file`). A bad setting or file fails the start of
    /// the producer or consumer with [`Error::Config`].
    #[doc(alias = "setUseTLS")]
    pub fn use_tls(mut self, on: bool) -> Self {
        self.config.use_tls = Some(on);
        self
    }

    /// The TLS settings used when TLS is on, instead of the environment's: certificate
    /// verification, CA bundle, client certificate, server name. Default: [`TlsConfig::from_env`]
    /// when the client starts. Does not turn TLS on by itself (see [`use_tls`](Self::use_tls)).
    pub fn tls_config(mut self, tls: TlsConfig) -> Self {
        self.config.tls = Some(tls);
        self
    }

    /// The configuration.
    pub fn build(self) -> ClientConfig {
        self.config
    }
}

/// What the dedicated client setters of a producer or consumer builder set. They are applied
/// over the wholesale `client_config()` at `build()`, so the order of the calls does not matter.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientOverrides {
    pub(crate) namesrv_addr: Option<String>,
    pub(crate) instance_name: Option<String>,
    pub(crate) unit_name: Option<String>,
    pub(crate) namespace: Option<String>,
    pub(crate) client_ip: Option<String>,
    pub(crate) rpc_hook: Option<SharedRpcHook>,
}

impl ClientOverrides {
    pub(crate) fn apply(self, mut config: ClientConfig) -> ClientConfig {
        if let Some(v) = self.namesrv_addr {
            config.namesrv_addr = Some(v);
        }
        if let Some(v) = self.instance_name {
            config.instance_name = Some(v);
        }
        if let Some(v) = self.unit_name {
            config.unit_name = Some(v);
        }
        if let Some(v) = self.namespace {
            config.namespace = Some(v);
        }
        if let Some(v) = self.client_ip {
            config.client_ip = v;
        }
        if let Some(v) = self.rpc_hook {
            config.rpc_hook = Some(v);
        }
        config
    }
}

/// The client settings every producer and consumer builder offers (Java `ClientConfig`'s
/// setters). Expands to builder methods over `client: ClientConfig` and
/// `client_overrides: ClientOverrides` fields; `build()` applies the overrides.
macro_rules! client_config_setters {
    () => {
        /// The name servers, `host:port` separated by `;`. Default: the `NAMESRV_ADDR`
        /// environment variable, else an HTTP lookup.
        #[doc(alias = "setNamesrvAddr")]
        pub fn namesrv_addr(mut self, addr: impl Into<String>) -> Self {
            self.client_overrides.namesrv_addr = Some(addr.into());
            self
        }

        /// The instance name. Clients with the same instance name share one client instance
        /// (threads and connections). The default is described at
        /// [`ClientConfigBuilder::instance_name`]($crate::ClientConfigBuilder::instance_name).
        #[doc(alias = "setInstanceName")]
        pub fn instance_name(mut self, name: impl Into<String>) -> Self {
            self.client_overrides.instance_name = Some(name.into());
            self
        }

        /// The unit name appended to the client id. Default: none.
        #[doc(alias = "setUnitName")]
        pub fn unit_name(mut self, name: impl Into<String>) -> Self {
            self.client_overrides.unit_name = Some(name.into());
            self
        }

        /// The IP reported in the client id. Default: this host's first non-loopback IPv4.
        #[doc(alias = "setClientIP")]
        pub fn client_ip(mut self, ip: impl Into<String>) -> Self {
            self.client_overrides.client_ip = Some(ip.into());
            self
        }

        /// The namespace of this client's topics and groups (Java `setNamespace`); see
        /// [`ClientConfigBuilder::namespace`]($crate::ClientConfigBuilder::namespace).
        /// Default: none.
        #[doc(alias = "setNamespace")]
        pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
            self.client_overrides.namespace = Some(namespace.into());
            self
        }

        /// The hook run around every request, for example an
        /// [`AclClientRPCHook`]($crate::AclClientRPCHook) that signs requests for a broker
        /// with ACL enabled (Java: the `rpcHook` constructor argument). Default: none. Clients
        /// sharing a client instance share its hook; see
        /// [`ClientConfigBuilder::rpc_hook`]($crate::ClientConfigBuilder::rpc_hook).
        #[doc(alias = "RPCHook")]
        pub fn rpc_hook(mut self, hook: std::sync::Arc<dyn $crate::RPCHook>) -> Self {
            self.client_overrides.rpc_hook = Some($crate::client::config::SharedRpcHook(hook));
            self
        }

        /// The whole client configuration, for settings without a dedicated setter. The
        /// dedicated setters above (`namesrv_addr`, `instance_name`, `unit_name`, `client_ip`,
        /// `rpc_hook`) win over it whatever the order of the calls; a second call replaces the
        /// first.
        pub fn client_config(mut self, client: $crate::ClientConfig) -> Self {
            self.client = client;
            self
        }
    };
}
pub(crate) use client_config_setters;

/// Joins the client instance a producer or consumer of `group` uses: `register` registers it
/// with the instance of the configuration it is given (creating the instance if needed).
///
/// With an instance name set, that name is used as is. Without one, `default_name` is used,
/// unless a live producer (`producer`) or consumer of `group` is already registered under it,
/// or the instance running under it has another RPC hook: then a name of its own
/// ([`unique_instance_name`]) is used instead, or, when `shared_default` says the default must
/// stay (a broadcasting consumer), the start is refused with an error that names the fix.
pub(crate) fn join_instance(
    config: &ClientConfig,
    default_name: &str,
    shared_default: bool,
    producer: bool,
    group: &str,
    register: impl Fn(&ClientConfig) -> Result<Arc<MQClientInstance>>,
) -> Result<Arc<MQClientInstance>> {
    let role = if producer {
        ClientRole::Producer
    } else {
        ClientRole::Consumer
    };
    join_instance_as(config, default_name, shared_default, role, group, register)
}

/// [`join_instance`] for any [`ClientRole`], the admin tool's included.
pub(crate) fn join_instance_as(
    config: &ClientConfig,
    default_name: &str,
    shared_default: bool,
    role: ClientRole,
    group: &str,
    register: impl Fn(&ClientConfig) -> Result<Arc<MQClientInstance>>,
) -> Result<Arc<MQClientInstance>> {
    if config.instance_name.is_some() {
        return register(config);
    }
    let what = match (role, shared_default) {
        (ClientRole::Producer, _) => "producer",
        (ClientRole::Consumer, true) => "broadcasting consumer",
        (ClientRole::Consumer, false) => "consumer",
        (ClientRole::Admin, _) => "admin client",
    };
    let default = config.with_instance_name(default_name);
    let taken = || MQClientManager::has_group(&default, role, group);
    let other_hook = || MQClientManager::has_other_rpc_hook(&default);
    let own_name = |why: &str| {
        let name = unique_instance_name();
        log::info!(
            "{why} the instance {default_name} in this process; this {what} of group {group} \
             uses the instance name {name}"
        );
        register(&config.with_instance_name(name))
    };
    const SAME_GROUP: &str = "a client of the same group already uses";
    const OTHER_HOOK: &str = "another RPC hook is used by";
    if taken() {
        if shared_default {
            return Err(Error::config(format!(
                "a {what} of group {group} is already running in this process under the \
                 default instance name {default_name}; two of them would share one offsets \
                 file: give each its own instance_name()"
            )));
        }
        return own_name(SAME_GROUP);
    }
    if other_hook() {
        if shared_default {
            return Err(Error::config(format!(
                "the client instance {default_name}, the default of a {what}, runs with \
                 another RPC hook than this {what} of group {group}: give it its own \
                 instance_name(), or the same Arc of the hook"
            )));
        }
        return own_name(OTHER_HOOK);
    }
    match register(&default) {
        // Another one registered in between: the refusal was the collision.
        Err(_) if !shared_default && taken() => own_name(SAME_GROUP),
        Err(_) if !shared_default && other_hook() => own_name(OTHER_HOOK),
        other => other,
    }
}

/// Splits a `;`-separated name-server list.
pub(crate) fn parse_namesrv_list(s: &str) -> Vec<String> {
    let s = s.trim();
    let s = if s.starts_with("http://") {
        s.rsplit('/').next().unwrap_or("")
    } else {
        s
    };
    s.split(';')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The process-wide default instance name: `<pid>#<nanos at first use>`, the same for every
/// client in this process and different between processes, so two processes on one host never
/// collide while the clients of one process share a single client instance (and its threads).
pub(crate) fn default_instance_name() -> String {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| format!("{}#{}", std::process::id(), nanos_now()))
        .clone()
}

/// An instance name of its own for a client whose group is already registered under the
/// process-wide default: `<pid>#<nanos>#<n>`, never handed out twice in this process.
pub(crate) fn unique_instance_name() -> String {
    static N: AtomicUsize = AtomicUsize::new(1);
    format!(
        "{}#{}",
        default_instance_name(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The instance name Java gives a broadcasting consumer that sets none: it stays the same
/// across restarts, and so does the offsets file kept under the client id.
pub(crate) const BROADCASTING_INSTANCE_NAME: &str = "DEFAULT";

fn nanos_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// This host's address as Java's `RemotingUtil.getLocalAddress` would usually find it: the first
/// non-loopback IPv4 the host name resolves to, else 127.0.0.1.
pub(crate) fn local_ip() -> String {
    crate::common::util::local_ipv4()
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "127.0.0.1".to_owned())
}

/// `TLS_ENABLE` (Java `tls.enable`): `false` when unset, an error when it is neither `true` nor
/// `false` or not UTF-8.
fn tls_enabled_by_env() -> Result<bool> {
    match std::env::var(tls::env::ENABLE) {
        Ok(v) => tls::parse_bool(
            &v,
            &format!("the environment variable {}", tls::env::ENABLE),
        ),
        Err(std::env::VarError::NotPresent) => Ok(false),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::config(format!(
            "the environment variable {} is not valid UTF-8",
            tls::env::ENABLE
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namesrv_list_parsing() {
        assert_eq!(
            parse_namesrv_list(" a:9876; b:9876 ;;"),
            vec!["a:9876".to_owned(), "b:9876".to_owned()]
        );
        assert_eq!(
            parse_namesrv_list("http://x/rocketmq/h:1;g:2"),
            vec!["h:1".to_owned(), "g:2".to_owned()]
        );
        assert!(parse_namesrv_list("").is_empty());
    }

    #[test]
    fn client_id_and_lookup_url() {
        let mut c = ClientConfig::builder()
            .client_ip("10.0.0.1")
            .instance_name("i")
            .build();
        assert_eq!(c.client_id(), "10.0.0.1@i");
        c.unit_name = Some("u".into());
        assert_eq!(c.client_id(), "10.0.0.1@i@u");
        c.namesrv_domain = "h".into();
        c.namesrv_domain_subgroup = "nsaddr".into();
        assert_eq!(
            c.namesrv_lookup_url(),
            "http://h:8080/rocketmq/nsaddr-u?nofix=1"
        );
        c.unit_name = None;
        c.namesrv_domain = "h:81".into();
        assert_eq!(c.namesrv_lookup_url(), "http://h:81/rocketmq/nsaddr");
        c.namesrv_domain = "https://h.example/".into();
        assert_eq!(c.namesrv_lookup_url(), "https://h.example/rocketmq/nsaddr");
        c.namesrv_domain = "HTTP://h:9".into();
        assert_eq!(c.namesrv_lookup_url(), "HTTP://h:9/rocketmq/nsaddr");
    }

    /// Java's `tls.*` properties as environment variables, the `tls.config.file` over them, and
    /// explicit settings over both. Run in child processes, since the environment is global.
    #[test]
    fn tls_settings_come_from_the_environment_as_in_java() {
        const CHILD: &str = "RMQ_TEST_TLS_ENV_CHILD";
        if let Some(case) = std::env::var_os(CHILD) {
            let report = |c: &ClientConfig| match c.remoting_tls() {
                Ok(None) => "PLAINTEXT".to_owned(),
                Ok(Some(t)) => format!(
                    "TLS ca={:?} cert={:?} key={:?} verify={}",
                    t.trust_cert_file(),
                    t.client_cert_file(),
                    t.client_key_file(),
                    t.verifies_server()
                ),
                Err(e) => format!("ERROR {e}"),
            };
            let default = ClientConfig::builder().build();
            let explicit = ClientConfig::builder()
                .use_tls(case != "off")
                .tls_config(TlsConfig::new().trust_cert_path("/explicit/ca.pem"))
                .build();
            println!("CHILD default: {}", report(&default));
            println!("CHILD explicit: {}", report(&explicit));
            println!("CHILD use_tls: {}", default.use_tls());
            return;
        }
        let dir = std::env::temp_dir().join(format!("rmq-tls-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tls.properties");
        std::fs::write(
            &file,
            "# Java's format\ntls.client.certPath=/file/c.pem\ntls.client.keyPath : /file/k.pem\n\
             tls.client.authServer=false\ntls.server.mode=enforcing\n",
        )
        .unwrap();
        let file = file.to_string_lossy().into_owned();
        let run = |case: &str, vars: &[(&str, &str)]| {
            let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
            cmd.args([
                "--exact",
                "client::config::tests::tls_settings_come_from_the_environment_as_in_java",
                "--nocapture",
            ])
            .env(CHILD, case);
            for var in [
                "TLS_ENABLE",
                "TLS_CONFIG_FILE",
                "TLS_TEST_MODE_ENABLE",
                "TLS_CLIENT_AUTHSERVER",
                "TLS_CLIENT_TRUSTCERTPATH",
                "TLS_CLIENT_CERTPATH",
                "TLS_CLIENT_KEYPATH",
                "TLS_CLIENT_KEYPASSWORD",
            ] {
                cmd.env_remove(var);
            }
            cmd.envs(vars.iter().copied());
            let out = cmd.output().unwrap();
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.strip_prefix("CHILD "))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };

        let nothing = run("on", &[("TLS_CONFIG_FILE", "")]);
        assert_eq!(nothing[0], "default: PLAINTEXT");
        assert!(nothing[1].starts_with("explicit: TLS ca=Some(\"/explicit/ca.pem\")"));

        let java = run(
            "off",
            &[
                ("TLS_ENABLE", "True"),
                ("TLS_CLIENT_TRUSTCERTPATH", "/env/ca.pem"),
                ("TLS_CLIENT_CERTPATH", "/env/c.pem"),
                ("TLS_CONFIG_FILE", &file),
            ],
        );
        assert_eq!(
            java[0],
            "default: TLS ca=Some(\"/env/ca.pem\") cert=Some(\"/file/c.pem\") \
             key=Some(\"/file/k.pem\") verify=false"
        );
        assert_eq!(java[1], "explicit: PLAINTEXT", "use_tls(false) wins");
        assert_eq!(java[2], "use_tls: true");

        let bad = run("on", &[("TLS_ENABLE", "yes"), ("TLS_CONFIG_FILE", "")]);
        assert!(
            bad[0].starts_with("default: ERROR") && bad[0].contains("TLS_ENABLE"),
            "{bad:?}"
        );
        assert!(bad[1].starts_with("explicit: TLS"), "{bad:?}");
        assert_eq!(bad[2], "use_tls: false");

        let missing = run(
            "on",
            &[
                ("TLS_ENABLE", "true"),
                ("TLS_CONFIG_FILE", "/nonexistent/tls.properties"),
            ],
        );
        assert!(
            missing[0].contains("ERROR") && missing[0].contains("/nonexistent/tls.properties"),
            "{missing:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn default_instance_name_is_stable_in_process() {
        assert_eq!(default_instance_name(), default_instance_name());
        assert!(default_instance_name().starts_with(&format!("{}#", std::process::id())));
        let (a, b) = (unique_instance_name(), unique_instance_name());
        assert_ne!(a, b);
        assert!(a.starts_with(&default_instance_name()));
        let c = ClientConfig::builder().client_ip("10.0.0.1").build();
        assert_eq!(c.instance_name(), None);
        assert_eq!(
            c.client_id(),
            format!("10.0.0.1@{}", default_instance_name())
        );
    }
}
