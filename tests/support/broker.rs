//! A real RocketMQ cluster (rocketmq-rust 1.0.0 name server + brokers) for integration tests.
//!
//! Include it with `mod support;` (then `support::broker::Cluster`) or with
//! `#[path = "support/broker.rs"] mod broker;`. Everything goes through `scripts/broker.sh`:
//!
//! * [`Cluster::start`] starts a private cluster (1 or 2 brokers, topic auto-creation on or off)
//!   in a fresh directory under `std::env::temp_dir()` and stops it on drop. A watchdog started
//!   by the script stops it too if this test process dies without unwinding (abort, SIGKILL).
//!   The message stores are in that directory too, unless its disk is too full for a broker:
//!   then the script puts them on tmpfs (`/dev/shm`) and removes them with the cluster (see
//!   "Disk space" in `scripts/broker.sh`; `ROCKETMQ_SYNC_STORE_DIR` chooses another place).
//! * [`Cluster::shared`] is one single-broker, auto-create cluster per test binary, started on
//!   first use and stopped by the watchdog when the process exits. When the environment variable
//!   `NAMESRV_ADDR` is set, it points at that external cluster instead and starts nothing.
//! * [`Cluster::start_with_acl`] starts a private cluster whose name server and brokers require
//!   signed requests, with the accounts of a Java-style `plain_acl.yml`; its super user is
//!   [`Cluster::acl_admin`].
//! * [`Cluster::start_with_slaves`] starts a private cluster in which every master has a slave
//!   ([`Cluster::slaves`]).
//! * Fault tests kill and restart brokers ([`Cluster::kill_broker`], [`Cluster::restart_broker`])
//!   and the name server ([`Cluster::kill_namesrv`], [`Cluster::restart_namesrv`]).
//!
//! Start failures panic with the script's output (including the tail of every server log);
//! tests never skip silently. The binaries must be installed (`scripts/broker.sh install`, done
//! by `scripts/test.sh`); otherwise the first start installs them, which takes many minutes.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rocketmq_sync::SessionCredentials;

/// `GET_BROKER_CLUSTER_INFO` request code (name server).
pub const GET_BROKER_CLUSTER_INFO: i32 = 106;
/// `GET_BROKER_CONFIG` request code (broker): the body is a Java properties text.
pub const GET_BROKER_CONFIG: i32 = 26;
/// `GET_BROKER_RUNTIME_INFO` request code (broker).
pub const GET_BROKER_RUNTIME_INFO: i32 = 28;

/// What [`Cluster::start`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterOptions {
    /// Number of brokers: `broker-a`, `broker-b`, ... (all master, cluster `DefaultCluster`).
    pub brokers: usize,
    /// `autoCreateTopicEnable` of every broker.
    pub auto_create_topic: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            brokers: 1,
            auto_create_topic: true,
        }
    }
}

impl ClusterOptions {
    /// `n` brokers with topic auto-creation on.
    pub fn brokers(n: usize) -> Self {
        ClusterOptions {
            brokers: n,
            ..Self::default()
        }
    }

    /// The same, with topic auto-creation off (sends to unknown topics fail).
    pub fn no_auto_create(self) -> Self {
        ClusterOptions {
            auto_create_topic: false,
            ..self
        }
    }
}

/// TLS for [`Cluster::start_tls`] (PEM files, e.g. from `support::pki::TestPki`).
#[derive(Debug, Clone)]
pub struct ClusterTls {
    /// The brokers' (and the name server's) certificate chain and key.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// `Some((ca, cert, key))`: brokers require client certificates signed by `ca`; the
    /// script's readiness probes present `cert` and `key`.
    pub client_auth: Option<(PathBuf, PathBuf, PathBuf)>,
}

/// One broker of a [`Cluster`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// `broker-a`, `broker-b`, ...; a slave is `broker-a-slave` (and registers as `broker-a`).
    pub name: String,
    /// `127.0.0.1:port` (the main remoting port).
    pub addr: String,
    /// Process id; `None` for an external cluster.
    pub pid: Option<u32>,
}

/// A running name server with its brokers.
#[derive(Debug)]
pub struct Cluster {
    /// `127.0.0.1:port` of the name server.
    pub namesrv_addr: String,
    /// Name server process id; `None` for an external cluster.
    pub namesrv_pid: Option<u32>,
    /// The brokers (the masters), in name order.
    pub brokers: Vec<BrokerInfo>,
    /// The slaves ([`Cluster::start_with_slaves`]): `broker-a-slave` of `broker-a`, ...
    pub slaves: Vec<BrokerInfo>,
    /// The cluster directory (confs, stores, logs, `cluster.env`); `None` for an external cluster.
    pub dir: Option<PathBuf>,
    /// With ACL ([`Cluster::start_with_acl`]): the super user's credentials, for admin requests.
    pub acl_admin: Option<SessionCredentials>,
    /// Whether dropping this value stops the processes.
    owned: bool,
}

/// The repository root (where `scripts/broker.sh` lives).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Path of `scripts/broker.sh`.
pub fn broker_script() -> PathBuf {
    repo_root().join("scripts").join("broker.sh")
}

/// Initialise `env_logger` once (test-friendly; `RUST_LOG` selects the level).
pub fn init_logger() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let _ = env_logger::builder().is_test(true).try_init();
    });
}

/// Whether process `pid` exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    let stat_path = format!("/proc/{pid}/stat");
    if Path::new("/proc/self/stat").exists() {
        return match std::fs::read_to_string(stat_path) {
            // The state letter follows the parenthesised command name.
            Ok(stat) => match stat.rfind(')') {
                Some(i) => !stat[i + 1..].trim_start().starts_with('Z'),
                None => true,
            },
            Err(_) => false,
        };
    }
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn run_script(args: &[&str]) -> Output {
    let script = broker_script();
    let output = Command::new("bash")
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        panic!(
            "`{} {}` failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
            script.display(),
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            stderr
        );
    }
    // Progress lines; the test harness shows them only for failing tests.
    eprint!("{stderr}");
    output
}

fn fresh_dir() -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "rocketmq-sync-test-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

fn read_env(dir: &Path) -> Vec<(String, String)> {
    let path = dir.join("cluster.env");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// The last value of `key` in `dir/cluster.env`, as a pid.
fn env_pid(dir: &Path, key: &str) -> Option<u32> {
    read_env(dir)
        .into_iter()
        .rev()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.parse::<u32>().ok())
}

fn env_key(broker: &str) -> String {
    broker
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

impl Cluster {
    /// Start a private cluster; panics (with the script's output and server logs) on failure.
    pub fn start(opts: ClusterOptions) -> Cluster {
        Cluster::start_inner(opts, None, false, &[])
    }

    /// Start a private cluster in which every master `broker-x` has a slave `broker-x-slave`
    /// (brokerId 1, `SLAVE`, `slaveReadEnable`) replicating from it (`broker.sh start --slaves`).
    pub fn start_with_slaves(opts: ClusterOptions) -> Cluster {
        Cluster::start_inner(opts, None, true, &[])
    }

    /// Start a private cluster whose brokers have these extra settings in the `[broker]` table
    /// of their `broker.toml` (`broker.sh start --broker-set KEY=VALUE`), each value written as
    /// TOML as given: `("enablePropertyFilter", "true")`, `("transactionCheckInterval", "1000")`.
    pub fn start_with_broker_settings(opts: ClusterOptions, settings: &[(&str, &str)]) -> Cluster {
        let extra: Vec<String> = settings
            .iter()
            .flat_map(|(k, v)| ["--broker-set".to_owned(), format!("{k}={v}")])
            .collect();
        Cluster::start_inner(opts, None, false, &extra)
    }

    /// Start a private cluster whose name server and brokers require signed requests
    /// (`broker.sh start --acl`): the accounts and permissions of `plain_acl_yml`, the text of a
    /// Java-style `plain_acl.yml`, plus a super user in [`Cluster::acl_admin`].
    pub fn start_with_acl(opts: ClusterOptions, plain_acl_yml: &str) -> Cluster {
        Cluster::start_inner(opts, Some(plain_acl_yml), false, &[])
    }

    /// Start a private cluster whose brokers accept only TLS (`broker.sh start --tls`): the
    /// name server accepts TLS and plaintext, since brokers register with it in plaintext.
    pub fn start_tls(opts: ClusterOptions, tls: &ClusterTls) -> Cluster {
        let path = |p: &PathBuf| p.to_string_lossy().into_owned();
        let mut extra = vec!["--tls".to_owned(), path(&tls.cert), path(&tls.key)];
        if let Some((ca, cert, key)) = &tls.client_auth {
            extra.extend([
                "--tls-client-auth".to_owned(),
                path(ca),
                path(cert),
                path(key),
            ]);
        }
        Self::start_inner(opts, None, false, &extra)
    }

    fn start_inner(
        opts: ClusterOptions,
        plain_acl_yml: Option<&str>,
        slaves: bool,
        extra: &[String],
    ) -> Cluster {
        assert!(
            (1..=26).contains(&opts.brokers),
            "1..=26 brokers, not {}",
            opts.brokers
        );
        let dir = fresh_dir();
        let brokers = opts.brokers.to_string();
        let owner = std::process::id().to_string();
        let dir_arg = dir.to_string_lossy().into_owned();
        let mut args = vec![
            "start",
            "--brokers",
            &brokers,
            "--dir",
            &dir_arg,
            "--owner-pid",
            &owner,
        ];
        if !opts.auto_create_topic {
            args.push("--no-auto-create");
        }
        if slaves {
            args.push("--slaves");
        }
        let acl_file = dir.join("plain_acl.yml").to_string_lossy().into_owned();
        if let Some(yml) = plain_acl_yml {
            std::fs::write(&acl_file, yml)
                .unwrap_or_else(|e| panic!("cannot write {acl_file}: {e}"));
            args.extend(["--acl", &acl_file]);
        }
        args.extend(extra.iter().map(String::as_str));
        let started = Instant::now();
        run_script(&args);
        let cluster = Cluster::from_dir(dir);
        eprintln!(
            "started cluster {} ({} broker(s), {} slave(s)) in {:?}",
            cluster.namesrv_addr,
            cluster.brokers.len(),
            cluster.slaves.len(),
            started.elapsed()
        );
        cluster
    }

    /// Leaves stopping the cluster to the script's watchdog, when this process exits: for a
    /// cluster kept in a `static`, never dropped.
    pub fn for_the_whole_process(mut self) -> Cluster {
        self.owned = false;
        self
    }

    /// One single-broker, auto-create cluster per test binary (or the external cluster named by
    /// `NAMESRV_ADDR`). Stopped by the script's watchdog once this process exits.
    pub fn shared() -> &'static Cluster {
        static SHARED: OnceLock<Cluster> = OnceLock::new();
        SHARED.get_or_init(|| {
            let cluster = match std::env::var("NAMESRV_ADDR") {
                Ok(addr) if !addr.trim().is_empty() => Cluster::external(addr.trim()),
                _ => {
                    let mut cluster = Cluster::start(ClusterOptions::default());
                    // Never dropped; the watchdog stops it when the process exits.
                    cluster.owned = false;
                    cluster
                }
            };
            install_log_dump_hook(&cluster);
            cluster
        })
    }

    /// A cluster somebody else runs: brokers are discovered from the name server.
    pub fn external(namesrv_addr: &str) -> Cluster {
        let info = broker_cluster_info(namesrv_addr).unwrap_or_else(|e| {
            panic!("external name server NAMESRV_ADDR={namesrv_addr} does not answer: {e}")
        });
        let mut brokers = Vec::new();
        if let Some(table) = info.get("brokerAddrTable").and_then(|t| t.as_object()) {
            for (name, data) in table {
                let master = data
                    .get("brokerAddrs")
                    .and_then(|a| a.get("0"))
                    .and_then(|a| a.as_str());
                if let Some(addr) = master {
                    brokers.push(BrokerInfo {
                        name: name.clone(),
                        addr: addr.to_owned(),
                        pid: None,
                    });
                }
            }
        }
        brokers.sort_by(|a, b| a.name.cmp(&b.name));
        Cluster {
            namesrv_addr: namesrv_addr.to_owned(),
            namesrv_pid: None,
            brokers,
            slaves: Vec::new(),
            dir: None,
            acl_admin: None,
            owned: false,
        }
    }

    fn from_dir(dir: PathBuf) -> Cluster {
        let env = read_env(&dir);
        let get = |key: &str| {
            env.iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let need = |key: &str| {
            get(key).unwrap_or_else(|| panic!("{key} missing in {}/cluster.env", dir.display()))
        };
        let pid = |key: &str| need(key).parse::<u32>().ok();
        let brokers_of = |names: &str| -> Vec<BrokerInfo> {
            names
                .split(',')
                .filter(|n| !n.is_empty())
                .map(|name| {
                    let key = env_key(name);
                    BrokerInfo {
                        name: name.to_owned(),
                        addr: need(&format!("{key}_ADDR")),
                        pid: pid(&format!("{key}_PID")),
                    }
                })
                .collect()
        };
        let brokers = brokers_of(&need("BROKER_NAMES"));
        let slaves = brokers_of(&get("SLAVE_NAMES").unwrap_or_default());
        let acl_admin = get("ACL_ADMIN_ACCESS_KEY")
            .map(|ak| SessionCredentials::new(ak, need("ACL_ADMIN_SECRET_KEY")));
        Cluster {
            namesrv_addr: need("NAMESRV_ADDR"),
            namesrv_pid: pid("NAMESRV_PID"),
            brokers,
            slaves,
            dir: Some(dir),
            acl_admin,
            owned: true,
        }
    }

    /// Whether this is an external cluster (`NAMESRV_ADDR`), with no processes of ours.
    pub fn is_external(&self) -> bool {
        self.dir.is_none()
    }

    /// The broker (master or slave) called `name`; panics when there is none.
    pub fn broker(&self, name: &str) -> &BrokerInfo {
        self.brokers
            .iter()
            .chain(&self.slaves)
            .find(|b| b.name == name)
            .unwrap_or_else(|| panic!("no broker {name} in {:?} {:?}", self.brokers, self.slaves))
    }

    /// The address of broker `name`.
    pub fn broker_addr(&self, name: &str) -> &str {
        &self.broker(name).addr
    }

    fn own_dir(&self, what: &str) -> &Path {
        self.dir
            .as_deref()
            .unwrap_or_else(|| panic!("cannot {what} in an external cluster"))
    }

    /// SIGKILL broker `name`, a master or a slave (returns once the process is gone).
    pub fn kill_broker(&self, name: &str) {
        let dir = self.own_dir("kill a broker").to_string_lossy().into_owned();
        run_script(&["kill-broker", &dir, name]);
    }

    /// Start broker `name` again with the same config, ports and store; returns once it answers
    /// and is registered with the name server.
    pub fn restart_broker(&mut self, name: &str) {
        let dir = self.own_dir("restart a broker").to_path_buf();
        run_script(&["restart-broker", &dir.to_string_lossy(), name]);
        let pid = env_pid(&dir, &format!("{}_PID", env_key(name)));
        if let Some(b) = self
            .brokers
            .iter_mut()
            .chain(&mut self.slaves)
            .find(|b| b.name == name)
        {
            b.pid = pid;
        }
    }

    /// SIGKILL the name server (returns once the process is gone).
    pub fn kill_namesrv(&self) {
        let dir = self.own_dir("kill the name server");
        run_script(&["kill-namesrv", &dir.to_string_lossy()]);
    }

    /// Start the name server again on its port. It answers once this returns, but lists the
    /// brokers only after they have registered again (they do every 30 s).
    pub fn restart_namesrv(&mut self) {
        let dir = self.own_dir("restart the name server").to_path_buf();
        run_script(&["restart-namesrv", &dir.to_string_lossy()]);
        self.namesrv_pid = env_pid(&dir, "NAMESRV_PID");
    }

    /// Paths of the server logs (empty for an external cluster).
    pub fn log_files(&self) -> Vec<PathBuf> {
        let Some(dir) = &self.dir else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "log"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }

    /// Print the last `lines` lines of every server log to stderr.
    pub fn print_logs(&self, lines: usize) {
        for file in self.log_files() {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            let tail = &all[all.len().saturating_sub(lines)..];
            eprintln!("----- last {lines} lines of {} -----", file.display());
            for line in tail {
                eprintln!("{}", strip_ansi(line));
            }
        }
    }

    /// Stop the processes now (also done by drop). Keeps the directory when `keep_files`.
    fn stop(&mut self, keep_files: bool) {
        if !self.owned {
            return;
        }
        self.owned = false;
        if let Some(dir) = &self.dir {
            let dir = dir.to_string_lossy().into_owned();
            let mut args = vec!["stop", dir.as_str()];
            if !keep_files {
                args.push("--rm");
            }
            match Command::new("bash")
                .arg(broker_script())
                .args(&args)
                .output()
            {
                Ok(out) if out.status.success() => {
                    eprint!("{}", String::from_utf8_lossy(&out.stderr));
                }
                Ok(out) => eprintln!(
                    "warning: stopping the cluster in {dir} failed ({}):\n{}{}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
                Err(e) => eprintln!("warning: cannot run broker.sh stop {dir}: {e}"),
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let failing = std::thread::panicking();
        if failing {
            // The test failed: show what the servers said, keep the files.
            self.print_logs(60);
            if let Some(dir) = &self.dir {
                eprintln!("cluster files kept in {}", dir.display());
            }
        }
        self.stop(failing);
    }
}

/// On the first panic in this process, print the shared cluster's log tails (the shared cluster
/// is never dropped, so its logs would otherwise be lost with the test's failure).
fn install_log_dump_hook(cluster: &Cluster) {
    if cluster.is_external() {
        return;
    }
    let files = cluster.log_files();
    let dumped = AtomicBool::new(false);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        if !dumped.swap(true, Ordering::SeqCst) {
            for file in &files {
                let text = std::fs::read_to_string(file).unwrap_or_default();
                let all: Vec<&str> = text.lines().collect();
                eprintln!(
                    "----- shared cluster: last 40 lines of {} -----",
                    file.display()
                );
                for line in &all[all.len().saturating_sub(40)..] {
                    eprintln!("{}", strip_ansi(line));
                }
            }
        }
    }));
}

/// Remove the colour escape codes (`ESC [ ... m`) the servers always write to their logs.
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Send one request with an empty body and JSON header (`extFields` may be empty) and return
/// the response header and body.
pub fn raw_request(
    addr: &str,
    code: i32,
    ext_fields: &[(&str, &str)],
) -> io::Result<(serde_json::Value, Vec<u8>)> {
    let timeout = Duration::from_secs(5);
    let sock_addr = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, addr.to_owned()))?;
    let mut stream = TcpStream::connect_timeout(&sock_addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut header = serde_json::json!({
        "code": code,
        "flag": 0,
        "language": "JAVA",
        "opaque": 1,
        "serializeTypeCurrentRPC": "JSON",
        "version": 409,
    });
    if !ext_fields.is_empty() {
        let ext: serde_json::Map<String, serde_json::Value> = ext_fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
            .collect();
        header["extFields"] = serde_json::Value::Object(ext);
    }
    let header = serde_json::to_vec(&header)?;
    let header_len = u32::try_from(header.len()).expect("small header");
    let mut frame = Vec::with_capacity(8 + header.len());
    frame.extend_from_slice(&(4 + header_len).to_be_bytes());
    frame.extend_from_slice(&header_len.to_be_bytes()); // serialize type 0 (JSON) in the high byte
    frame.extend_from_slice(&header);
    stream.write_all(&frame)?;

    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let total = u32::from_be_bytes(len) as usize;
    let mut data = vec![0u8; total];
    stream.read_exact(&mut data)?;
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    if total < 4 {
        return Err(bad("frame shorter than its header word"));
    }
    let header_len =
        (u32::from_be_bytes([data[0], data[1], data[2], data[3]]) & 0x00FF_FFFF) as usize;
    if 4 + header_len > total {
        return Err(bad("header longer than the frame"));
    }
    let header: serde_json::Value = serde_json::from_slice(&data[4..4 + header_len])?;
    Ok((header, data[4 + header_len..].to_vec()))
}

/// Parse a JSON body leniently: fastjson writes numeric map keys bare (`{0:"addr"}`).
pub fn lenient_json(body: &[u8]) -> io::Result<serde_json::Value> {
    if let Ok(v) = serde_json::from_slice(body) {
        return Ok(v);
    }
    let text = String::from_utf8_lossy(body);
    let mut fixed = String::with_capacity(text.len() + 16);
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    let mut escaped = false;
    let mut after_open = false; // just after `{` or `,` (outside strings)
    while let Some(c) = chars.next() {
        if in_string {
            fixed.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        if after_open && (c.is_ascii_digit() || c == '-') {
            let mut key = String::from(c);
            while let Some(&d) = chars.peek() {
                if d.is_ascii_digit() {
                    key.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
            let rest_is_colon = chars.clone().find(|c| !c.is_whitespace()) == Some(':');
            if rest_is_colon {
                fixed.push('"');
                fixed.push_str(&key);
                fixed.push('"');
            } else {
                fixed.push_str(&key);
            }
            after_open = false;
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                after_open = false;
            }
            '{' | ',' => after_open = true,
            c if c.is_whitespace() => {}
            _ => after_open = false,
        }
        fixed.push(c);
    }
    serde_json::from_str(&fixed).map_err(io::Error::from)
}

/// `GET_BROKER_CLUSTER_INFO` from the name server: `{"brokerAddrTable": {...},
/// "clusterAddrTable": {...}}`.
pub fn broker_cluster_info(namesrv_addr: &str) -> io::Result<serde_json::Value> {
    let (header, body) = raw_request(namesrv_addr, GET_BROKER_CLUSTER_INFO, &[])?;
    if header["code"] != 0 {
        return Err(io::Error::other(format!(
            "GET_BROKER_CLUSTER_INFO answered {header}"
        )));
    }
    lenient_json(&body)
}

/// Master address of `broker` as registered with the name server, if any.
pub fn registered_master(namesrv_addr: &str, broker: &str) -> io::Result<Option<String>> {
    let info = broker_cluster_info(namesrv_addr)?;
    Ok(info["brokerAddrTable"][broker]["brokerAddrs"]["0"]
        .as_str()
        .map(str::to_owned))
}

/// Poll `check` every 100 ms until it is true or `timeout` passes; returns the last result.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
