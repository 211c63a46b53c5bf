//! `rmq cluster` (mqadmin `clusterList`): the clusters, their brokers and addresses.

use std::collections::BTreeMap;

use clap::Args;
use rocketmq_sync::codec::BrokerData;
use serde_json::json;

use super::topic::brokers_table;
use super::Admin;
use crate::output;
use crate::{Global, Outcome};

#[derive(Args, Debug)]
pub(crate) struct ClusterArgs {
    /// Only this cluster.
    #[arg(short = 'c', long)]
    cluster: Option<String>,
}

pub(crate) fn run(g: &Global, args: ClusterArgs) -> Outcome {
    let admin = Admin::start(g)?;
    let info = admin
        .examine_broker_cluster_info()
        .map_err(|e| crate::Failure::from_error("cluster info", &e))?;
    let brokers: Vec<&BrokerData> = info
        .broker_addr_table
        .values()
        .filter(|bd| args.cluster.as_deref().is_none_or(|c| c == bd.cluster))
        .collect();
    if brokers.is_empty() {
        return Err(crate::Failure::NotFound(match args.cluster {
            Some(c) => format!("no broker in cluster {c}"),
            None => "the name server knows no broker".to_owned(),
        }));
    }
    if g.json {
        let mut clusters: BTreeMap<&str, Vec<_>> = BTreeMap::new();
        for bd in brokers {
            clusters.entry(bd.cluster.as_str()).or_default().push(json!({
                "broker_name": bd.broker_name,
                "addrs": bd.broker_addrs.iter().map(|(id, a)| (id.to_string(), a)).collect::<BTreeMap<_, _>>(),
            }));
        }
        output::print_json(&json!({ "clusters": clusters }));
        return Ok(());
    }
    brokers_table(brokers.into_iter()).print();
    Ok(())
}
