//! Rebalance of the push consumer (Java `RebalanceImpl` and `RebalancePushImpl`): allocation
//! per topic, adding and removing `ProcessQueue`s, and where a new queue starts.
//!
//! It runs on `rmq-rebal`, the only thread that adds entries to `process_queue_table`. Entries
//! also leave it through a broker's reset, the `PULL_OFFSET_MOVED` fix-up and shutdown; a
//! queue whose start offset cannot be read is left unassigned until the next rebalance.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::instance::MQClientInstance;
use crate::common::util::now_millis;
use crate::common::MessageQueue;
use crate::consumer::allocate::AllocateMessageQueueStrategy;
use crate::consumer::offset_store::ReadOffsetType;
use crate::consumer::process_queue::{ProcessQueue, PULL_MAX_IDLE_TIME_MS};
use crate::consumer::pull::PullRequest;
use crate::consumer::push_consumer::PushConsumerInner;
use crate::consumer::subscription::{ConsumeFromWhere, MessageModel};
use crate::error::{Error, Result};

/// How long a removed queue may wait for its consume requests in flight.
const REMOVE_QUEUE_WAIT: Duration = Duration::from_secs(3);
/// Orderly: a rebalance that could not lock a newly assigned queue runs again after this long.
const LOCK_REFUSED_RETRY: Duration = Duration::from_secs(1);

impl PushConsumerInner {
    pub(crate) fn do_rebalance_inner(&self) {
        if !self.is_running() || self.paused.load(Ordering::Acquire) {
            return;
        }
        let Some(instance) = self.instance() else {
            return;
        };
        // A lite pull consumer's user thread also changes the table (seek, assign).
        let _table = self.lite().map(|lite| lite.table_lock.lock());
        if let Some(assigned) = self
            .lite()
            .and_then(|l| crate::consumer::lite_pull::assigned_queues(l))
        {
            self.apply_assignment(&instance, &assigned);
            return;
        }
        let subs: Vec<String> = self.subscription_inner.read().keys().cloned().collect();
        let mut changed_topics = Vec::new();
        let mut new_pulls = Vec::new();
        for topic in &subs {
            match self.rebalance_by_topic(&instance, topic, &mut new_pulls) {
                Ok(true) => changed_topics.push(topic.clone()),
                Ok(false) => {}
                Err(e) => {
                    if !topic.starts_with("%RETRY%") {
                        log::warn!("rebalance of {topic} for {} failed: {e}", self.cfg.group);
                    }
                }
            }
        }
        // Queues of topics no longer subscribed.
        let stale: Vec<Arc<ProcessQueue>> = self
            .process_queue_table
            .read()
            .values()
            .filter(|s| !subs.contains(&s.mq.topic))
            .cloned()
            .collect();
        if !stale.is_empty() {
            self.remove_queues(&stale);
        }
        if !changed_topics.is_empty() {
            for t in &changed_topics {
                if let Some(sd) = self.subscription_inner.write().get_mut(t) {
                    let mut fresh = (**sd).clone();
                    fresh.sub_version = now_millis();
                    *sd = Arc::new(fresh);
                }
            }
            instance.send_heartbeat_to_all_broker_now();
        }
        // Pull only once the brokers know the new subscription version: a pull that carries a
        // version newer than the broker's is refused and retried a second later.
        for r in new_pulls {
            self.pull_now(r);
        }
    }

    pub(crate) fn rebalance_by_topic(
        &self,
        instance: &Arc<MQClientInstance>,
        topic: &str,
        new_pulls: &mut Vec<PullRequest>,
    ) -> Result<bool> {
        let mq_all = self
            .topic_subscribe_info
            .read()
            .get(topic)
            .cloned()
            .unwrap_or_default();
        if mq_all.is_empty() {
            return Err(Error::client(
                crate::error::ClientErrorCode::NOT_FOUND_TOPIC_EXCEPTION,
                format!("no subscribe info for topic {topic} yet"),
            ));
        }
        let target: HashSet<MessageQueue> = match self.cfg.message_model {
            MessageModel::Broadcasting => mq_all.iter().cloned().collect(),
            MessageModel::Clustering => {
                let mut cids = instance.find_consumer_id_list(topic, &self.cfg.group)?;
                cids.sort();
                let mut mqs = mq_all.clone();
                mqs.sort();
                // A panicking strategy is the user's code: this topic keeps its assignment.
                let allocate = std::panic::AssertUnwindSafe(|| {
                    self.allocate
                        .allocate(&self.cfg.group, instance.client_id(), &mqs, &cids)
                });
                std::panic::catch_unwind(allocate)
                    .map_err(|payload| {
                        Error::client(
                            -1,
                            format!(
                                "the allocation strategy {} panicked: {}",
                                self.allocate.name(),
                                crate::executor::panic_message(&*payload)
                            ),
                        )
                    })??
                    .into_iter()
                    .collect()
            }
        };
        let changed = self.update_process_queue_table(instance, topic, &target, new_pulls);
        if changed {
            if let Some(lite) = self.lite() {
                lite.queues_changed(self.cfg.namespace.as_deref(), topic, &mq_all, &target);
            }
        }
        Ok(changed)
    }

    /// Java `updateProcessQueueTableInRebalance`. The pull requests of new queues are pushed
    /// to `new_pulls` for the caller to dispatch.
    pub(crate) fn update_process_queue_table(
        &self,
        instance: &Arc<MQClientInstance>,
        topic: &str,
        target: &HashSet<MessageQueue>,
        new_pulls: &mut Vec<PullRequest>,
    ) -> bool {
        let now = now_millis();
        let held: Vec<Arc<ProcessQueue>> = self
            .process_queue_table
            .read()
            .values()
            .filter(|s| s.mq.topic == topic)
            .cloned()
            .collect();
        let change = assignment_change(
            held.iter()
                .map(|s| (&s.mq, s.is_pull_expired(now, PULL_MAX_IDLE_TIME_MS))),
            target,
        );
        let mut changed = false;
        let mut lock_refused = false;
        if !change.remove.is_empty() {
            let removed: Vec<Arc<ProcessQueue>> = held
                .iter()
                .filter(|s| change.remove.contains(&s.mq))
                .cloned()
                .collect();
            for s in &removed {
                if target.contains(&s.mq) {
                    log::warn!("the pull of {} expired; rebuilding it", s.mq);
                }
            }
            self.remove_queues(&removed);
            changed = true;
        }
        for mq in &change.add {
            if self.process_queue_table.read().contains_key(mq) {
                continue;
            }
            // Orderly: a queue is taken only with its broker lock; the next rebalance tries
            // again (Java `updateProcessQueueTableInRebalance`).
            let locks = self.uses_broker_locks();
            if locks && !self.lock_mq(instance, mq) {
                log::info!(
                    "doRebalance, {}, add new mq failed, {mq}: its lock is held by another client",
                    self.cfg.group
                );
                lock_refused = true;
                continue;
            }
            let store = self.offset_store();
            store.remove_offset(mq);
            let next = match self.compute_pull_from_where(instance, mq) {
                Ok(o) if o >= 0 => Some(o),
                Ok(_) => {
                    log::warn!(
                        "doRebalance, {}, add new mq failed, {mq}: its committed offset could not be read; retrying at the next rebalance",
                        self.cfg.group
                    );
                    None
                }
                Err(e) => {
                    log::warn!(
                        "doRebalance, {}, compute offset of {mq} failed: {e}",
                        self.cfg.group
                    );
                    None
                }
            };
            let Some(next) = next else {
                if locks {
                    // Not taken after all: the lock must not keep the queue from the other
                    // clients until the broker expires it (60 s).
                    self.unlock_mqs(std::slice::from_ref(mq));
                }
                continue;
            };
            let st = Arc::new(ProcessQueue::new(mq.clone(), next));
            if locks {
                st.set_locked(true);
            }
            self.process_queue_table
                .write()
                .insert(mq.clone(), st.clone());
            log::info!(
                "doRebalance, {}, add a new mq, {mq}, next offset {next}",
                self.cfg.group
            );
            new_pulls.push(PullRequest::new(self.me.clone(), st, next));
            changed = true;
        }
        if lock_refused {
            // The queue's previous owner gives its lock back as soon as its rebalance releases
            // the queue (it is told of this client by the broker): try again shortly rather
            // than at the next periodic rebalance, 20 s away.
            let instance = Arc::downgrade(instance);
            self.schedule(LOCK_REFUSED_RETRY, move || {
                if let Some(i) = instance.upgrade() {
                    i.rebalance_immediately();
                }
            });
        }
        changed
    }

    /// Removes queues: stop pulling, wait (bounded) for their consume requests in flight so that
    /// they commit, drop them, persist their offsets, then forget them.
    pub(crate) fn remove_queues(&self, queues: &[Arc<ProcessQueue>]) {
        for pq in queues {
            pq.stop_pulling();
        }
        let deadline = Instant::now() + REMOVE_QUEUE_WAIT;
        let mut idle = vec![true; queues.len()];
        if let Some(cs) = self.consume_service.read().clone() {
            for (pq, idle) in queues.iter().zip(idle.iter_mut()) {
                *idle = cs.wait_queue_idle(pq, deadline);
            }
        }
        let store = self.offset_store();
        let locks = self.uses_broker_locks();
        let mut unlock = Vec::new();
        let lite = self.lite();
        for (pq, idle) in queues.iter().zip(idle) {
            if let Some(lite) = lite {
                lite.before_release(self, pq);
            }
            pq.set_dropped();
            if let Some(lite) = lite {
                lite.after_release(pq);
            }
            if locks {
                // The lock goes back at once, after the offset is at the broker, so the next
                // owner starts where this one stopped. A batch still running keeps it: the
                // orderly consume service gives it back when that batch ends.
                store.persist_and_wait(&pq.mq);
                if idle {
                    unlock.push(pq.mq.clone());
                }
            } else if self.cfg.message_model == MessageModel::Clustering {
                store.persist(&pq.mq);
            }
            store.remove_offset(&pq.mq);
            self.remove_from_table(pq);
            log::info!(
                "doRebalance, {}, remove unnecessary mq, {}, {} consume request(s) still in flight",
                self.cfg.group,
                pq.mq,
                pq.inflight()
            );
        }
        if !unlock.is_empty() {
            self.unlock_mqs(&unlock);
        }
    }

    /// Java `computePullFromWhereWithException`: the committed offset, or where
    /// `consume_from_where` says when the group has none. −1 when the committed offset could not
    /// be read (the broker failed, or answered an error other than `QUERY_NOT_FOUND`): the caller
    /// leaves the queue unassigned until the next rebalance rather than start it elsewhere.
    pub(crate) fn compute_pull_from_where(
        &self,
        instance: &Arc<MQClientInstance>,
        mq: &MessageQueue,
    ) -> Result<i64> {
        let last = self
            .offset_store()
            .read_offset(mq, ReadOffsetType::ReadFromStore);
        if last >= 0 {
            return Ok(last);
        }
        if last != -1 {
            // Unknown (−2), not absent: see the caller.
            return Ok(-1);
        }
        let retry = mq.topic.starts_with("%RETRY%");
        match self.cfg.consume_from_where {
            ConsumeFromWhere::LastOffset if retry => Ok(0),
            ConsumeFromWhere::LastOffset => instance.max_offset(mq),
            ConsumeFromWhere::FirstOffset => Ok(0),
            ConsumeFromWhere::Timestamp if retry => instance.max_offset(mq),
            ConsumeFromWhere::Timestamp => instance.search_offset(mq, self.cfg.consume_timestamp),
        }
    }
}

/// What one topic's rebalance changes (the decision half of Java
/// `updateProcessQueueTableInRebalance`), sorted for deterministic logs and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct AssignmentChange {
    /// Queues to start pulling: assigned and not held, or held with an expired pull (rebuilt).
    pub(crate) add: Vec<MessageQueue>,
    /// Queues to release: held and no longer assigned, or held with an expired pull.
    pub(crate) remove: Vec<MessageQueue>,
}

/// Compares the queues held now (each with whether its pull has been idle past
/// `PULL_MAX_IDLE_TIME_MS`) with the queues just assigned. Pure: no I/O, no locks.
pub(crate) fn assignment_change<'a>(
    held: impl IntoIterator<Item = (&'a MessageQueue, bool)>,
    assigned: &HashSet<MessageQueue>,
) -> AssignmentChange {
    let mut kept = HashSet::new();
    let mut change = AssignmentChange::default();
    for (mq, pull_expired) in held {
        if !assigned.contains(mq) || pull_expired {
            change.remove.push(mq.clone());
        } else {
            kept.insert(mq);
        }
    }
    change.add = assigned
        .iter()
        .filter(|mq| !kept.contains(mq))
        .cloned()
        .collect();
    change.add.sort();
    change.remove.sort();
    change
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(id: i32) -> MessageQueue {
        MessageQueue::new("T", "broker-a", id)
    }

    fn set(ids: &[i32]) -> HashSet<MessageQueue> {
        ids.iter().map(|&i| q(i)).collect()
    }

    fn change(held: &[(i32, bool)], assigned: &[i32]) -> (Vec<i32>, Vec<i32>) {
        let held: Vec<(MessageQueue, bool)> = held.iter().map(|&(i, e)| (q(i), e)).collect();
        let c = assignment_change(held.iter().map(|(m, e)| (m, *e)), &set(assigned));
        let ids = |v: Vec<MessageQueue>| v.into_iter().map(|m| m.queue_id).collect();
        (ids(c.add), ids(c.remove))
    }

    #[test]
    fn first_assignment_adds_everything() {
        assert_eq!(change(&[], &[2, 0, 1]), (vec![0, 1, 2], vec![]));
    }

    #[test]
    fn unchanged_assignment_changes_nothing() {
        assert_eq!(change(&[(0, false), (1, false)], &[0, 1]), (vec![], vec![]));
    }

    #[test]
    fn moved_queues_are_added_and_removed() {
        assert_eq!(
            change(&[(0, false), (1, false), (2, false)], &[2, 3]),
            (vec![3], vec![0, 1])
        );
    }

    #[test]
    fn losing_every_queue_removes_all() {
        assert_eq!(change(&[(0, false), (1, false)], &[]), (vec![], vec![0, 1]));
    }

    #[test]
    fn an_expired_pull_is_rebuilt_when_still_assigned() {
        assert_eq!(
            change(&[(0, true), (1, false)], &[0, 1]),
            (vec![0], vec![0])
        );
    }

    #[test]
    fn an_expired_pull_of_a_lost_queue_is_only_removed() {
        assert_eq!(change(&[(0, true)], &[1]), (vec![1], vec![0]));
    }
}
