//! `ClientConfig`: what every producer and consumer shares with its `MQClientInstance`.

use std::sync::OnceLock;
use std::time::Duration;

use crate::remoting::protocol::{LanguageCode, SerializeType};

/// Settings shared by producers and consumers (Java `ClientConfig`). Producers and consumers
/// with the same [`client_id`](ClientConfig::client_id) share one client instance: one io
/// thread, one scheduler, one callback pool.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` list separated by `;`. Defaults to the `NAMESRV_ADDR` environment variable;
    /// when neither is set, the list is fetched over HTTP (see `namesrv_domain`).
    pub namesrv_addr: Option<String>,
    /// The IP this client reports in its client id.
    pub client_ip: String,
    /// Instance name; the default is unique per process.
    pub instance_name: String,
    /// Unit name, appended to the client id when set.
    pub unit_name: Option<String>,
    /// Threads running async-send callbacks, pull callbacks and broker requests.
    pub client_callback_executor_threads: usize,
    /// Route refresh period (Java `pollNameServerInterval`, 30 s).
    pub poll_name_server_interval: Duration,
    /// Heartbeat period (Java `heartbeatBrokerInterval`, 30 s).
    pub heartbeat_broker_interval: Duration,
    /// Consumer offset persistence period (Java `persistConsumerOffsetInterval`, 5 s).
    pub persist_consumer_offset_interval: Duration,
    /// Delay before pulling again after an error (Java `pullTimeDelayMillsWhenException`, 1 s).
    pub pull_time_delay_when_exception: Duration,
    /// Timeout of route queries, heartbeats and other admin calls (Java `mqClientApiTimeout`, 3 s).
    pub mq_client_api_timeout: Duration,
    /// The language declared on requests. `JAVA` by default, since brokers older than 4.9.4
    /// reject `RUST`.
    pub language: LanguageCode,
    /// Header encoding of outgoing requests (JSON by default, as Java).
    pub serialize_type: SerializeType,
    /// Host (`host` or `host:port`) serving the name-server list over HTTP when no address is
    /// configured (Java `rocketmq.namesrv.domain`, default `jmenv.tbsite.net`).
    pub namesrv_domain: String,
    /// Path segment of that lookup (Java `rocketmq.namesrv.domain.subgroup`, default `nsaddr`).
    pub namesrv_domain_subgroup: String,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            namesrv_addr: std::env::var("NAMESRV_ADDR")
                .ok()
                .filter(|s| !s.trim().is_empty()),
            client_ip: local_ip(),
            instance_name: default_instance_name(),
            unit_name: None,
            client_callback_executor_threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
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
        }
    }
}

impl ClientConfig {
    /// `clientIP@instanceName[@unitName]`, the id brokers know this client by.
    pub fn client_id(&self) -> String {
        let mut id = format!("{}@{}", self.client_ip, self.instance_name);
        if let Some(unit) = self.unit_name.as_deref().filter(|u| !u.is_empty()) {
            id.push('@');
            id.push_str(unit);
        }
        id
    }

    /// The configured name servers, split on `;`, trimmed, empties dropped. A value of the form
    /// `http://host/path/addr` keeps only the part after the last `/`, as Java does.
    pub fn namesrv_addr_list(&self) -> Vec<String> {
        self.namesrv_addr
            .as_deref()
            .map(parse_namesrv_list)
            .unwrap_or_default()
    }

    /// The URL of the HTTP name-server lookup (Java `MixAll.getWSAddr`).
    pub fn namesrv_lookup_url(&self) -> String {
        let host = if self.namesrv_domain.contains(':') {
            self.namesrv_domain.clone()
        } else {
            format!("{}:8080", self.namesrv_domain)
        };
        let mut url = format!("http://{}/rocketmq/{}", host, self.namesrv_domain_subgroup);
        if let Some(unit) = self.unit_name.as_deref().filter(|u| !u.is_empty()) {
            url.push('-');
            url.push_str(unit);
            url.push_str("?nofix=1");
        }
        url
    }
}

/// The client settings every producer and consumer builder offers (Java `ClientConfig`'s
/// setters). Expands to builder methods over a `client: ClientConfig` field.
macro_rules! client_config_setters {
    () => {
        /// The name servers, `host:port` separated by `;`. Default: the `NAMESRV_ADDR`
        /// environment variable, else an HTTP lookup.
        #[doc(alias = "setNamesrvAddr")]
        pub fn namesrv_addr(mut self, addr: impl Into<String>) -> Self {
            self.client.namesrv_addr = Some(addr.into());
            self
        }

        /// The instance name. Default: unique per process. Producers and consumers with the
        /// same instance name share one client instance (threads and connections); two
        /// consumers of one group in one process need different instance names.
        #[doc(alias = "setInstanceName")]
        pub fn instance_name(mut self, name: impl Into<String>) -> Self {
            self.client.instance_name = name.into();
            self
        }

        /// The unit name appended to the client id. Default: none.
        #[doc(alias = "setUnitName")]
        pub fn unit_name(mut self, name: impl Into<String>) -> Self {
            self.client.unit_name = Some(name.into());
            self
        }

        /// The IP reported in the client id. Default: this host's first non-loopback IPv4.
        #[doc(alias = "setClientIP")]
        pub fn client_ip(mut self, ip: impl Into<String>) -> Self {
            self.client.client_ip = ip.into();
            self
        }

        /// The whole client configuration, for settings without a dedicated setter.
        pub fn client_config(mut self, client: $crate::client::ClientConfig) -> Self {
            self.client = client;
            self
        }
    };
}
pub(crate) use client_config_setters;

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

/// The default instance name: `<pid>#<nanos at first use>`, the same for every client in this
/// process and different between processes, so two processes on one host never collide while
/// the clients of one process share a single client instance (and its threads).
pub(crate) fn default_instance_name() -> String {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        format!("{}#{}", std::process::id(), nanos)
    })
    .clone()
}

/// This host's address as Java's `RemotingUtil.getLocalAddress` would usually find it: the first
/// non-loopback IPv4 the host name resolves to, else 127.0.0.1.
pub(crate) fn local_ip() -> String {
    crate::common::util::local_ipv4()
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "127.0.0.1".to_owned())
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
        let mut c = ClientConfig {
            client_ip: "10.0.0.1".into(),
            instance_name: "i".into(),
            ..ClientConfig::default()
        };
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
    }

    #[test]
    fn default_instance_name_is_stable_in_process() {
        assert_eq!(default_instance_name(), default_instance_name());
        assert!(default_instance_name().starts_with(&format!("{}#", std::process::id())));
    }
}
