//! `PullMessageService` and `RebalanceService`: the two service threads a client instance
//! starts when its first consumer registers, shared by every consumer of that instance.

use std::sync::Weak;
use std::time::Duration;

use crossbeam_channel::{select, Receiver};

use crate::client::instance::MQClientInstance;
use crate::consumer::push_consumer::PullRequest;
use crate::executor::{ServiceControl, ServiceThread};

/// Java `rocketmq.client.rebalance.waitInterval`.
pub(crate) const REBALANCE_INTERVAL: Duration = Duration::from_secs(20);

/// Takes pull requests off a queue and runs them (Java `PullMessageService`). Requests come
/// from the rebalance (new queues), the pull callbacks (the next pull) and the scheduler
/// (delayed pulls); each `pull_message` only checks flow control and starts an async call, so
/// one thread serves every queue of every consumer.
pub(crate) struct PullMessageService {
    pub(crate) requests: Receiver<PullRequest>,
}

impl ServiceThread for PullMessageService {
    fn service_name(&self) -> String {
        "PullMessageService".to_owned()
    }

    fn run(&mut self, ctl: &ServiceControl) {
        log::info!("PullMessageService service started");
        loop {
            select! {
                recv(self.requests) -> req => match req {
                    Ok(req) => req.run(),
                    Err(_) => break,
                },
                recv(ctl.stop_receiver()) -> _ => break,
            }
        }
        log::info!("PullMessageService service end");
    }
}

/// Rebalances every consumer of the instance every 20 s, or at once when woken (Java
/// `RebalanceService`).
pub(crate) struct RebalanceService {
    pub(crate) instance: Weak<MQClientInstance>,
}

impl ServiceThread for RebalanceService {
    fn service_name(&self) -> String {
        "RebalanceService".to_owned()
    }

    fn run(&mut self, ctl: &ServiceControl) {
        log::info!("RebalanceService service started");
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
        log::info!("RebalanceService service end");
    }
}
