//! Broker queue locks for orderly consumption in clustering mode (Java `RebalanceImpl.lock`,
//! `lockAll`, `unlock`, `unlockAll`): `LOCK_BATCH_MQ` and `UNLOCK_BATCH_MQ` to the master of
//! each queue's broker.
//!
//! A queue is consumed orderly only while its `ProcessQueue` holds the lock (granted, and
//! renewed within `REBALANCE_LOCK_MAX_LIVE_TIME_MS`). The broker grants a queue to one client
//! of the group at a time, which is what keeps two consumers off one queue during a rebalance.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::client::api::expect_success;
use crate::client::instance::MQClientInstance;
use crate::common::MessageQueue;
use crate::consumer::process_queue::ProcessQueue;
use crate::consumer::push_consumer::{shut_down, PushConsumerInner};
use crate::error::Result;
use crate::remoting::protocol::body::{decode_lock_batch_response, lock_batch_body};
use crate::remoting::protocol::{RemotingCommand, RequestCode};

/// Java: lock and unlock requests wait 1 s.
const LOCK_TIMEOUT: Duration = Duration::from_secs(1);
/// Java `lockMQPeriodically`: every 20 s, the first after 1 s.
pub(crate) const LOCK_ALL_INITIAL_DELAY: Duration = Duration::from_secs(1);
pub(crate) const LOCK_ALL_PERIOD: Duration = Duration::from_secs(20);

impl PushConsumerInner {
    /// `LOCK_BATCH_MQ` of `mqs` (all of one broker) to that broker's master; the queues
    /// granted.
    fn lock_batch(
        &self,
        instance: &MQClientInstance,
        broker_name: &str,
        mqs: &[MessageQueue],
    ) -> Result<Vec<MessageQueue>> {
        let addr = instance.master_addr_refreshing(&mqs[0])?;
        let mut req = RemotingCommand::request(RequestCode::LOCK_BATCH_MQ);
        req.set_body(lock_batch_body(instance.client_id(), &self.cfg.group, mqs));
        let req = instance.api().request(req);
        let resp = expect_success(
            instance.remoting().invoke_sync(&addr, req, LOCK_TIMEOUT)?,
            &addr,
        )?;
        let granted = decode_lock_batch_response(resp.body().map(|b| &b[..]))?;
        log::debug!(
            "locked {} of {} queue(s) of {broker_name} for {}",
            granted.len(),
            mqs.len(),
            self.cfg.group
        );
        Ok(granted)
    }

    /// Java `lock(mq)`: asks the broker for `mq`'s lock. On a grant, the held `ProcessQueue`
    /// (if any) is marked locked. Returns whether it was granted.
    pub(crate) fn lock_mq(&self, instance: &MQClientInstance, mq: &MessageQueue) -> bool {
        match self.lock_batch(instance, &mq.broker_name, std::slice::from_ref(mq)) {
            Ok(granted) => {
                let ok = granted.contains(mq);
                if let Some(pq) = self.process_queue_table.read().get(mq) {
                    pq.set_locked(ok);
                }
                if !ok {
                    log::info!("the broker refused the lock of {mq} to {}", self.cfg.group);
                }
                ok
            }
            Err(e) => {
                log::warn!("lock of {mq} for {} failed: {e}", self.cfg.group);
                false
            }
        }
    }

    /// Java `lockAll`: renews the locks of every held queue, one request per broker. Queues
    /// granted are marked locked (renewed); queues refused lose the lock, which stops their
    /// consumption. A broker that does not answer changes nothing: its locks expire on their
    /// own if it stays silent.
    pub(crate) fn lock_all(&self) {
        let Some(instance) = self.instance() else {
            return;
        };
        for (broker, queues) in self.queues_by_broker() {
            let mqs: Vec<MessageQueue> = queues.iter().map(|pq| pq.mq.clone()).collect();
            match self.lock_batch(&instance, &broker, &mqs) {
                Ok(granted) => {
                    for pq in &queues {
                        let ok = granted.contains(&pq.mq);
                        if !ok && pq.is_locked() {
                            log::warn!("the lock of {} for {} was lost", pq.mq, self.cfg.group);
                        }
                        pq.set_locked(ok);
                    }
                }
                Err(e) => log::warn!("lockAll of {} at {broker} failed: {e}", self.cfg.group),
            }
        }
    }

    /// Java `unlock(mq)`: gives `mq`'s lock back, so another client may take the queue at
    /// once instead of after the broker's lock expiry.
    pub(crate) fn unlock_mqs(&self, mqs: &[MessageQueue]) {
        let Some(instance) = self.instance() else {
            return;
        };
        let mut by_broker: HashMap<&str, Vec<MessageQueue>> = HashMap::new();
        for mq in mqs {
            by_broker
                .entry(mq.broker_name.as_str())
                .or_default()
                .push(mq.clone());
        }
        for (broker, mqs) in by_broker {
            if let Err(e) = self.unlock_batch(&instance, &mqs) {
                log::warn!("unlock at {broker} for {} failed: {e}", self.cfg.group);
            }
        }
    }

    fn unlock_batch(&self, instance: &MQClientInstance, mqs: &[MessageQueue]) -> Result<()> {
        let addr = instance.master_addr_refreshing(&mqs[0])?;
        let mut req = RemotingCommand::request(RequestCode::UNLOCK_BATCH_MQ);
        req.set_body(lock_batch_body(instance.client_id(), &self.cfg.group, mqs));
        let req = instance.api().request(req);
        expect_success(
            instance.remoting().invoke_sync(&addr, req, LOCK_TIMEOUT)?,
            &addr,
        )?;
        Ok(())
    }

    /// The held queues, by broker name.
    fn queues_by_broker(&self) -> HashMap<String, Vec<Arc<ProcessQueue>>> {
        let mut out: HashMap<String, Vec<Arc<ProcessQueue>>> = HashMap::new();
        for pq in self.process_queue_table.read().values() {
            if !pq.is_pull_stopped() {
                out.entry(pq.mq.broker_name.clone())
                    .or_default()
                    .push(pq.clone());
            }
        }
        out
    }

    /// Whether this consumer takes broker locks: orderly and clustering.
    pub(crate) fn uses_broker_locks(&self) -> bool {
        self.listener.is_orderly()
            && self.cfg.message_model == crate::consumer::subscription::MessageModel::Clustering
    }

    /// For the orderly consume service: lock `mq` again from a consume thread.
    pub(crate) fn relock(&self, mq: &MessageQueue) -> Result<bool> {
        let instance = self.instance().ok_or_else(shut_down)?;
        Ok(self.lock_mq(&instance, mq))
    }
}
