//! Proves the real-broker test harness (`tests/support/broker.rs`, `scripts/broker.sh`) works:
//! clusters start, brokers register with the name server, fault injection and restart work,
//! drop stops everything, and the shared cluster answers.

mod support;

use std::time::Duration;

use support::broker::{
    broker_cluster_info, pid_alive, raw_request, registered_master, wait_until, Cluster,
    ClusterOptions, GET_BROKER_CONFIG, GET_BROKER_RUNTIME_INFO,
};

/// The broker's own configuration as properties text (GET_BROKER_CONFIG): `key=value` lines
/// from a Java broker, `key:value` lines from the rocketmq-rust broker.
fn broker_config(addr: &str) -> String {
    let (header, body) = raw_request(addr, GET_BROKER_CONFIG, &[]).expect("GET_BROKER_CONFIG");
    assert_eq!(header["code"], 0, "GET_BROKER_CONFIG answered {header}");
    String::from_utf8_lossy(&body).into_owned()
}

fn config_value(config: &str, key: &str) -> Option<String> {
    config
        .lines()
        .filter_map(|l| l.split_once(['=', ':']))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_owned())
}

#[test]
fn two_broker_cluster_registers_both_and_survives_kill_and_restart() {
    support::broker::init_logger();
    let mut cluster = Cluster::start(ClusterOptions::brokers(2));
    assert_eq!(cluster.brokers.len(), 2);

    // Both brokers are registered with the name server, under their own addresses.
    let info = broker_cluster_info(&cluster.namesrv_addr).expect("cluster info");
    for name in ["broker-a", "broker-b"] {
        let addr = info["brokerAddrTable"][name]["brokerAddrs"]["0"].as_str();
        assert_eq!(
            addr,
            Some(cluster.broker_addr(name)),
            "{name} in brokerAddrTable: {info}"
        );
        let pid = cluster.broker(name).pid.expect("pid");
        assert!(pid_alive(pid), "{name} pid {pid} not running");
        let (header, _) =
            raw_request(cluster.broker_addr(name), GET_BROKER_RUNTIME_INFO, &[]).expect("ping");
        assert_eq!(header["code"], 0, "{name} runtime info: {header}");
    }
    let members = info["clusterAddrTable"]["DefaultCluster"].to_string();
    assert!(
        members.contains("broker-a") && members.contains("broker-b"),
        "clusterAddrTable: {info}"
    );
    // Auto-creation is on by default.
    let config = broker_config(cluster.broker_addr("broker-a"));
    assert_eq!(
        config_value(&config, "autoCreateTopicEnable").as_deref(),
        Some("true"),
        "{config}"
    );

    // Fault injection: SIGKILL broker-a.
    let old_pid = cluster.broker("broker-a").pid.expect("pid");
    cluster.kill_broker("broker-a");
    assert!(
        !pid_alive(old_pid),
        "broker-a pid {old_pid} survived SIGKILL"
    );
    assert!(
        raw_request(
            cluster.broker_addr("broker-a"),
            GET_BROKER_RUNTIME_INFO,
            &[]
        )
        .is_err(),
        "killed broker-a still answers"
    );
    let b_pid = cluster.broker("broker-b").pid.expect("pid");
    assert!(pid_alive(b_pid), "broker-b died with broker-a");

    // Restart: same address, new process, registered again.
    cluster.restart_broker("broker-a");
    let new_pid = cluster.broker("broker-a").pid.expect("pid");
    assert_ne!(new_pid, old_pid);
    assert!(pid_alive(new_pid));
    let (header, _) = raw_request(
        cluster.broker_addr("broker-a"),
        GET_BROKER_RUNTIME_INFO,
        &[],
    )
    .expect("restarted broker-a answers");
    assert_eq!(header["code"], 0, "{header}");
    let addr = cluster.broker_addr("broker-a").to_owned();
    assert!(
        wait_until(Duration::from_secs(30), || {
            registered_master(&cluster.namesrv_addr, "broker-a")
                .ok()
                .flatten()
                == Some(addr.clone())
        }),
        "restarted broker-a not registered"
    );

    // Drop stops every process and removes the directory.
    let pids: Vec<u32> = cluster
        .brokers
        .iter()
        .filter_map(|b| b.pid)
        .chain(cluster.namesrv_pid)
        .collect();
    let dir = cluster.dir.clone().expect("dir");
    drop(cluster);
    for pid in pids {
        assert!(!pid_alive(pid), "pid {pid} still running after drop");
    }
    assert!(!dir.exists(), "{} not removed", dir.display());
}

#[test]
fn cluster_without_topic_auto_creation() {
    let cluster = Cluster::start(ClusterOptions::brokers(1).no_auto_create());
    let config = broker_config(cluster.broker_addr("broker-a"));
    assert_eq!(
        config_value(&config, "autoCreateTopicEnable").as_deref(),
        Some("false"),
        "{config}"
    );
    assert_eq!(
        registered_master(&cluster.namesrv_addr, "broker-a").expect("cluster info"),
        Some(cluster.broker_addr("broker-a").to_owned())
    );
}

#[test]
fn shared_cluster_has_a_working_name_server() {
    let cluster = Cluster::shared();
    assert!(std::ptr::eq(cluster, Cluster::shared()), "one per process");
    assert!(!cluster.brokers.is_empty());
    let info = broker_cluster_info(&cluster.namesrv_addr).expect("shared name server answers");
    let broker = &cluster.brokers[0];
    assert_eq!(
        info["brokerAddrTable"][&broker.name]["brokerAddrs"]["0"].as_str(),
        Some(broker.addr.as_str()),
        "{info}"
    );
    if !cluster.is_external() {
        let config = broker_config(&broker.addr);
        assert_eq!(
            config_value(&config, "autoCreateTopicEnable").as_deref(),
            Some("true"),
            "{config}"
        );
    }
}
