//! `RebalanceService`: the `rmq-rebal` thread a client instance starts with its first consumer,
//! shared by every consumer of that instance.

use std::sync::Weak;
use std::time::Duration;

use crate::client::instance::MQClientInstance;
use crate::executor::{ServiceControl, ServiceThread};

/// Java `rocketmq.client.rebalance.waitInterval`.
pub(crate) const REBALANCE_INTERVAL: Duration = Duration::from_secs(20);

/// Rebalances every consumer of the instance every 20 s, or at once when woken (Java
/// `RebalanceService`). A consumer whose rebalance panics is skipped for that round (see
/// [`MQClientInstance::do_rebalance`]); the thread keeps serving the others.
pub(crate) struct RebalanceService {
    pub(crate) instance: Weak<MQClientInstance>,
}

impl ServiceThread for RebalanceService {
    fn service_name(&self) -> String {
        "RebalanceService".to_owned()
    }

    fn run(&mut self, ctl: &ServiceControl) {
        while !ctl.is_stopped() {
            ctl.wait_for_running(REBALANCE_INTERVAL);
            if ctl.is_stopped() {
                break;
            }
            match self.instance.upgrade() {
                Some(i) => i.do_rebalance(),
                None => break,
            }
        }
    }
}
