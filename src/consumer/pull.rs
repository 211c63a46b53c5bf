//! The pull path (Java `DefaultMQPushConsumerImpl.pullMessage` and `PullAPIWrapper`): flow
//! control, the async long-polling `PULL_MESSAGE`, and the pull callback that feeds the
//! `ProcessQueue` and the consume service.
//!
//! One [`PullRequest`] lives per active `ProcessQueue`. It moves from `rmq-pull` (which sends the
//! pull) to the callback on `rmq-cb` (which handles the answer) and back, possibly through the
//! scheduler; it stops when its queue is no longer pulled.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::common::util::now_millis;
use crate::common::{MessageDecoder, MessageExt, PullOffsets};
use crate::consumer::offset_store::ReadOffsetType;
use crate::consumer::process_queue::ProcessQueue;
use crate::consumer::push_consumer::PushConsumerInner;
use crate::consumer::subscription::{tag_matches, MessageModel};
use crate::error::Result;
use crate::remoting::protocol::header::{PullMessageRequestHeader, PullMessageResponseHeader};
use crate::remoting::protocol::heartbeat::SubscriptionData;
use crate::remoting::protocol::{RemotingCommand, RequestCode, ResponseCode};

const PULL_DELAY_WHEN_FLOW_CONTROL: Duration = Duration::from_millis(50);
const PULL_DELAY_WHEN_BROKER_FLOW_CONTROL: Duration = Duration::from_millis(20);
const PULL_DELAY_WHEN_SUSPEND: Duration = Duration::from_secs(1);
/// Orderly: a queue whose broker lock is not held is looked at again after this long (Java
/// `PULL_TIME_DELAY_MILLS_WHEN_EXCEPTION`, 3 s, in `pullMessage`).
const PULL_DELAY_WHEN_NOT_LOCKED: Duration = Duration::from_secs(3);
/// Java waits this long after `PULL_OFFSET_MOVED` before it moves the offset and releases the
/// queue (the consumer's `offset_moved_fix_delay`).
pub(crate) const OFFSET_ILLEGAL_FIX_DELAY: Duration = Duration::from_secs(10);
const PULL_SYS_FLAG_COMMIT_OFFSET: i32 = 0x1;
const PULL_SYS_FLAG_SUSPEND: i32 = 0x2;
const PULL_SYS_FLAG_SUBSCRIPTION: i32 = 0x4;

/// A pull of one queue (Java `PullRequest`). Exactly one lives per active queue: it moves from
/// the pull thread to the callback and back, and dropping it anywhere is counted in the queue's
/// `live_pulls`.
pub(crate) struct PullRequest {
    pub(crate) consumer: Weak<PushConsumerInner>,
    pub(crate) pq: Arc<ProcessQueue>,
    pub(crate) next_offset: i64,
    /// Orderly, clustering: the first pull since the queue's lock was held has been made
    /// (Java `previouslyLocked`, the `lockedFirst` step).
    pub(crate) previously_locked: bool,
}

impl PullRequest {
    pub(crate) fn new(
        consumer: Weak<PushConsumerInner>,
        pq: Arc<ProcessQueue>,
        next_offset: i64,
    ) -> Self {
        pq.live_pulls.fetch_add(1, Ordering::AcqRel);
        PullRequest {
            consumer,
            pq,
            next_offset,
            previously_locked: false,
        }
    }
}

impl crate::client::pull_service::PullTask for PullRequest {
    /// Runs the pull (on `rmq-pull`). If it panics, the request was lost in the unwinding (or
    /// already handed to a callback): the queue gets a new pull later unless it still has one.
    fn run(self: Box<Self>) {
        let Some(c) = self.consumer.upgrade() else {
            return;
        };
        let pq = self.pq.clone();
        let pull = std::panic::AssertUnwindSafe(|| c.pull_message(*self));
        if let Err(payload) = std::panic::catch_unwind(pull) {
            log::error!(
                "the pull of {} panicked: {}",
                pq.mq,
                crate::executor::panic_message(&*payload)
            );
            c.revive_pull(&pq, c.client.pull_time_delay_when_exception);
        }
    }
}

impl Drop for PullRequest {
    fn drop(&mut self) {
        self.pq.live_pulls.fetch_sub(1, Ordering::AcqRel);
    }
}

impl crate::consumer::process_queue::QueuedMessage for MessageExt {
    fn queue_offset(&self) -> i64 {
        MessageExt::queue_offset(self)
    }
    fn body_len(&self) -> usize {
        self.body().len()
    }
    fn max_offset_property(&self) -> Option<i64> {
        self.pull_offsets().map(|o| o.max())
    }
}

impl PushConsumerInner {
    pub(crate) fn pull_later(&self, req: PullRequest, delay: Duration) {
        match self.instance() {
            Some(i) => i.execute_pull_request_later(req, delay),
            None => drop(req),
        }
    }

    pub(crate) fn pull_now(&self, req: PullRequest) {
        match self.instance() {
            Some(i) => i.execute_pull_request_immediately(req),
            None => drop(req),
        }
    }

    /// The next pull of a queue, right after its last pull's answer. On the callback pool it
    /// is sent from here, as the pull thread would send it (panics caught the same way): that
    /// saves waking `rmq-pull`, one thread hand-off per pull. Elsewhere (the io thread, when
    /// `disable_callback_executor` runs callbacks there and a connect must not block it) it
    /// goes to the pull thread, as Java's `executePullRequestImmediately` does.
    pub(crate) fn pull_next(&self, req: PullRequest) {
        if crate::remoting::on_callback_pool() {
            use crate::client::pull_service::PullTask;
            Box::new(req).run();
        } else {
            self.pull_now(req);
        }
    }

    /// Java `DefaultMQPushConsumerImpl.pullMessage`: flow control, then an async pull.
    pub(crate) fn pull_message(&self, mut req: PullRequest) {
        #[cfg(test)]
        tests::injected_panic(&self.cfg.group);
        let st = req.pq.clone();
        if st.is_pull_stopped() {
            log::debug!("the pull request of {} is dropped", st.mq);
            return;
        }
        let now = now_millis();
        st.set_last_pull_timestamp(now);
        if !self.is_running() {
            self.pull_later(req, self.client.pull_time_delay_when_exception);
            return;
        }
        if self.paused.load(Ordering::Acquire) {
            self.pull_later(req, PULL_DELAY_WHEN_SUSPEND);
            return;
        }
        if let Some(lite) = self.lite() {
            if lite.is_paused(&st.mq) {
                self.pull_later(req, crate::consumer::lite_pull::PULL_DELAY_WHEN_PAUSE);
                return;
            }
            if lite.over_threshold() {
                self.stats.flow_controlled();
                self.pull_later(req, PULL_DELAY_WHEN_FLOW_CONTROL);
                return;
            }
        }
        let flow = st.flow_stats();
        let count = flow.count.max(0) as usize;
        let size_mib = flow.size.max(0) as u64 / (1024 * 1024);
        let (count_limit, size_limit) = self.queue_thresholds();
        if count > count_limit {
            self.stats.flow_controlled();
            self.pull_later(req, PULL_DELAY_WHEN_FLOW_CONTROL);
            return;
        }
        if size_mib > size_limit {
            self.stats.flow_controlled();
            self.pull_later(req, PULL_DELAY_WHEN_FLOW_CONTROL);
            return;
        }
        // Java checks the span only for concurrent consumption: an orderly queue's cache is
        // consumed from its front only, so its span says nothing about a stuck message.
        if !self.listener.is_orderly() && flow.span > self.cfg.consume_concurrently_max_span {
            self.stats.flow_controlled();
            self.pull_later(req, PULL_DELAY_WHEN_FLOW_CONTROL);
            return;
        }
        if self.uses_broker_locks() {
            if !st.is_locked() {
                self.pull_later(req, PULL_DELAY_WHEN_NOT_LOCKED);
                return;
            }
            if !req.previously_locked {
                // The first pull under the lock starts from the committed offset: the queue's
                // previous owner may have committed more since this queue was created.
                let Some(instance) = self.instance() else {
                    return;
                };
                match self.compute_pull_from_where(&instance, &st.mq) {
                    Ok(offset) if offset >= 0 => {
                        if offset != req.next_offset {
                            log::info!(
                                "the first locked pull of {} starts at {offset}, not {}",
                                st.mq,
                                req.next_offset
                            );
                        }
                        req.next_offset = offset;
                        st.next_offset.store(offset, Ordering::Relaxed);
                        req.previously_locked = true;
                    }
                    Ok(_) | Err(_) => {
                        self.pull_later(req, self.client.pull_time_delay_when_exception);
                        return;
                    }
                }
            }
        }
        let Some(sd) = self.subscription_inner.read().get(&st.mq.topic).cloned() else {
            log::warn!("find the consumer's subscription failed, {}", st.mq);
            self.pull_later(req, self.client.pull_time_delay_when_exception);
            return;
        };
        let Some(instance) = self.instance() else {
            return;
        };
        let mut commit_offset = 0;
        let mut sys_flag = PULL_SYS_FLAG_SUSPEND;
        if self.cfg.message_model == MessageModel::Clustering {
            let o = self
                .offset_store()
                .read_offset(&st.mq, ReadOffsetType::ReadFromMemory);
            if o > 0 {
                commit_offset = o;
                sys_flag |= PULL_SYS_FLAG_COMMIT_OFFSET;
            }
        }
        if self.cfg.post_subscription_when_pull {
            sys_flag |= PULL_SYS_FLAG_SUBSCRIPTION;
        }
        let node = self
            .pull_from_which_node
            .lock()
            .get(&st.mq)
            .copied()
            .unwrap_or(0);
        let Some((addr, is_slave)) = instance.find_broker_address_in_subscribe(&st.mq, node) else {
            log::warn!(
                "the broker[{}] not exist; refreshing the route",
                st.mq.broker_name
            );
            instance.update_topic_route_info_from_name_server(&st.mq.topic);
            self.pull_later(req, self.client.pull_time_delay_when_exception);
            return;
        };
        if is_slave {
            sys_flag &= !PULL_SYS_FLAG_COMMIT_OFFSET;
        }
        let header = PullMessageRequestHeader {
            consumer_group: self.cfg.group.clone(),
            topic: st.mq.topic.clone(),
            queue_id: st.mq.queue_id,
            queue_offset: req.next_offset,
            max_msg_nums: self.cfg.pull_batch_size,
            sys_flag,
            commit_offset,
            suspend_timeout_millis: self.cfg.broker_suspend_max_time.as_millis() as i64,
            subscription: (sys_flag & PULL_SYS_FLAG_SUBSCRIPTION != 0)
                .then(|| sd.sub_string.clone()),
            sub_version: sd.sub_version,
            expression_type: Some(sd.expression_type.clone()),
            bname: Some(st.mq.broker_name.clone()),
        };
        let request = instance.api().request(RemotingCommand::request_with_header(
            RequestCode::PULL_MESSAGE,
            &header,
        ));
        // The callback holds the consumer weakly: a long poll in flight must not keep a
        // consumer alive that its user dropped.
        let me = self.me.clone();
        let begin = Instant::now();
        // The request travels into the callback; if the call is refused, it comes back.
        let slot = Arc::new(Mutex::new(Some(req)));
        let cb_slot = slot.clone();
        // Pulls go out one at a time per queue: written by this thread, not woken for.
        let sent = instance.remoting().invoke_async_direct(
            &addr,
            request,
            self.cfg.consumer_timeout_when_suspend,
            move |resp| {
                let req = cb_slot.lock().take();
                if let (Some(req), Some(me)) = (req, me.upgrade()) {
                    me.process_pull_result(req, resp, &sd, begin.elapsed());
                }
            },
        );
        if let Err(e) = sent {
            if let Some(req) = slot.lock().take() {
                log::warn!("pull of {} failed to start: {e}", req.pq.mq);
                self.pull_later(req, self.client.pull_time_delay_when_exception);
            }
        }
    }

    pub(crate) fn queue_thresholds(&self) -> (usize, u64) {
        let mut count = self.cfg.pull_threshold_for_queue;
        let mut size = self.cfg.pull_threshold_size_for_queue;
        let n = self.process_queue_table.read().len().max(1);
        if let Some(topic) = self.cfg.pull_threshold_for_topic {
            count = (topic / n).max(1);
        }
        if let Some(topic) = self.cfg.pull_threshold_size_for_topic {
            size = (topic / n as u64).max(1);
        }
        (count, size)
    }

    /// The pull callback (on `rmq-cb`): every branch re-enqueues the request unless the queue
    /// was dropped.
    pub(crate) fn process_pull_result(
        &self,
        mut req: PullRequest,
        resp: Result<RemotingCommand>,
        sd: &SubscriptionData,
        rt: Duration,
    ) {
        let st = req.pq.clone();
        let mut resp = match resp {
            Ok(r) => r,
            Err(e) => {
                if self.is_running() {
                    log::warn!("pull of {} failed: {e}", st.mq);
                }
                self.pull_later(req, self.client.pull_time_delay_when_exception);
                return;
            }
        };
        let code = resp.response_code();
        let header = match code {
            ResponseCode::SUCCESS
            | ResponseCode::PULL_NOT_FOUND
            | ResponseCode::PULL_RETRY_IMMEDIATELY
            | ResponseCode::PULL_OFFSET_MOVED => {
                match resp.decode_header::<PullMessageResponseHeader>() {
                    Ok(h) => h,
                    Err(e) => {
                        log::warn!("bad pull response for {}: {e}", st.mq);
                        self.pull_later(req, self.client.pull_time_delay_when_exception);
                        return;
                    }
                }
            }
            ResponseCode::FLOW_CONTROL => {
                self.pull_later(req, PULL_DELAY_WHEN_BROKER_FLOW_CONTROL);
                return;
            }
            other => {
                if self.is_running() {
                    log::warn!(
                        "pull of {} answered {other}: {}",
                        st.mq,
                        resp.remark().unwrap_or("")
                    );
                }
                self.pull_later(req, self.client.pull_time_delay_when_exception);
                return;
            }
        };
        self.pull_from_which_node
            .lock()
            .insert(st.mq.clone(), header.suggest_which_broker_id);
        st.broker_max_offset
            .store(header.max_offset, Ordering::Relaxed);
        match code {
            ResponseCode::SUCCESS => {
                let requested = req.next_offset;
                let body = resp.take_body().unwrap_or_default();
                let batch =
                    MessageDecoder::decode_batch(body, true, self.cfg.max_decompressed_body_size);
                req.next_offset = batch.next_pull_offset(header.next_begin_offset);
                st.next_offset.store(req.next_offset, Ordering::Relaxed);
                if batch.undecodable() > 0 {
                    self.stats.undecodable(&st.mq.topic, batch.undecodable());
                    batch.log_undecodable(&st.mq, req.next_offset);
                }
                let mut msgs = batch.messages;
                let pulled = msgs.len();
                if !sd.tags_set.is_empty() {
                    msgs.retain(|m| tag_matches(sd, m.tags()));
                }
                self.stats.pulled(&st.mq.topic, pulled, rt);
                if header.next_begin_offset < requested
                    || msgs.first().is_some_and(|m| m.queue_offset() < requested)
                {
                    log::warn!(
                        "[BUG] pull of {} from {requested} returned offsets below it (next {})",
                        st.mq,
                        header.next_begin_offset
                    );
                }
                if msgs.is_empty() {
                    self.pull_next(req);
                    return;
                }
                let broker: Arc<str> = Arc::from(st.mq.broker_name.as_str());
                let offsets = Arc::new(PullOffsets::new(header.min_offset, header.max_offset));
                for m in msgs.iter_mut() {
                    m.set_broker_name(broker.clone());
                    m.set_pull_offsets(offsets.clone());
                }
                st.put_messages(msgs.iter().cloned());
                if let Some(cs) = self.consume_service.read().clone() {
                    cs.submit_consume_request(msgs, &st);
                }
                if self.cfg.pull_interval.is_zero() {
                    self.pull_next(req);
                } else {
                    self.pull_later(req, self.cfg.pull_interval);
                }
            }
            ResponseCode::PULL_NOT_FOUND | ResponseCode::PULL_RETRY_IMMEDIATELY => {
                req.next_offset = header.next_begin_offset;
                st.next_offset.store(req.next_offset, Ordering::Relaxed);
                // Atomic with dropping: a reset that dropped this queue while the pull was in
                // flight keeps its offset. A lite pull consumer commits only what was polled.
                if self.lite().is_none() {
                    let store = self.offset_store();
                    st.commit_if_empty(req.next_offset, |o| store.update_offset(&st.mq, o, true));
                }
                self.pull_next(req);
            }
            _ => {
                // PULL_OFFSET_MOVED: restart from the broker's offset via a fresh rebalance.
                let delay = self.cfg.offset_moved_fix_delay;
                log::warn!(
                    "the pull offset of {} is illegal ({} -> {}), fixing it in {delay:?}",
                    st.mq,
                    req.next_offset,
                    header.next_begin_offset
                );
                let next = header.next_begin_offset;
                st.set_dropped();
                drop(req);
                let me = self.me.clone();
                self.schedule(delay, move || {
                    if let Some(me) = me.upgrade() {
                        me.fix_moved_offset(&st, next);
                    }
                });
            }
        }
    }

    /// The delayed half of `PULL_OFFSET_MOVED` (Java's `OFFSET_ILLEGAL` task): if `pq` is still
    /// the queue's entry, move the offset to `next`, persist it and release the queue for the
    /// rebalance to rebuild from that offset. If a rebalance or a reset replaced it meanwhile, the
    /// new queue has its own offset and its own puller: leave both alone.
    pub(crate) fn fix_moved_offset(&self, pq: &Arc<ProcessQueue>, next: i64) {
        if !self.is_running() {
            return;
        }
        let store = self.offset_store();
        let same = {
            // Under the table lock: a reset removes the entry before it writes its offset, so it
            // cannot come between this check and this write.
            let table = self.process_queue_table.read();
            let same = table.get(&pq.mq).is_some_and(|cur| Arc::ptr_eq(cur, pq));
            if same {
                pq.set_dropped();
                store.update_offset(&pq.mq, next, false);
            }
            same
        };
        if same {
            store.persist(&pq.mq);
            self.remove_from_table(pq);
            log::warn!("fixed the pull offset of {}: {next}", pq.mq);
        } else {
            log::info!(
                "the moved offset {next} of {} is not applied: the queue was rebuilt since",
                pq.mq
            );
        }
        // Either way the queue's entry changed since the pull: settle the assignment now rather
        // than at the periodic rebalance.
        if let Some(i) = self.instance() {
            i.rebalance_immediately();
        }
    }

    /// Every active queue must have exactly one live pull request; re-dispatch a lost one.
    pub(crate) fn check_pulls(&self) {
        if !self.is_running() {
            return;
        }
        for st in self.process_queue_table.read().values() {
            if st.is_pull_stopped() {
                continue;
            }
            let live = st.live_pulls.load(Ordering::Acquire);
            if live == 0 {
                if self.revive_pull(st, Duration::ZERO) {
                    log::error!(
                        "the queue {} had no pull in flight or scheduled; re-dispatched it from offset {}",
                        st.mq,
                        st.next_offset.load(Ordering::Relaxed)
                    );
                }
            } else if live > 1 {
                log::error!("the queue {} has {live} pull requests; expected one", st.mq);
            }
        }
    }

    /// Gives a held queue that lost its pull request (to a panic) a new one after `delay`. The
    /// compare-and-set of its live count from 0 makes sure a queue never gets two: `false` when
    /// it still has one, or is no longer pulled.
    pub(crate) fn revive_pull(&self, pq: &Arc<ProcessQueue>, delay: Duration) -> bool {
        if !self.is_running() || pq.is_pull_stopped() {
            return false;
        }
        if pq
            .live_pulls
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        // The count is already taken for this request.
        let req = PullRequest {
            consumer: self.me.clone(),
            pq: pq.clone(),
            next_offset: pq.next_offset.load(Ordering::Relaxed),
            previously_locked: false,
        };
        self.pull_later(req, delay);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::{ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus};
    use crate::testing::{FakeAction, FakeBroker};
    use std::sync::OnceLock;

    const TOPIC: &str = "ReviveTopic";

    /// Groups whose next `pull_message` panics (a stand-in for a bug on the pull path).
    static PANIC_NEXT_PULL: Mutex<Vec<String>> = Mutex::new(Vec::new());

    pub(super) fn injected_panic(group: &str) {
        let mut groups = PANIC_NEXT_PULL.lock();
        if let Some(i) = groups.iter().position(|g| g == group) {
            groups.remove(i);
            drop(groups);
            panic!("injected panic in the pull of {group}");
        }
    }

    fn ok() -> RemotingCommand {
        RemotingCommand::response(ResponseCode::SUCCESS, None)
    }

    /// A name server and broker with one empty queue of [`TOPIC`]; every pull is reported.
    fn fake(pulls: crossbeam_channel::Sender<i64>) -> FakeBroker {
        let addr: Arc<OnceLock<String>> = Arc::new(OnceLock::new());
        let client_id: Arc<Mutex<String>> = Arc::default();
        let a = addr.clone();
        let fake = FakeBroker::start(move |req| {
            let f = req.ext_fields();
            match req.request_code() {
                RequestCode::GET_ROUTEINFO_BY_TOPIC if f.get("topic") == Some(TOPIC) => {
                    let body = format!(
                        r#"{{"brokerDatas":[{{"brokerAddrs":{{"0":"{}"}},"brokerName":"b","cluster":"C"}}],"filterServerTable":{{}},"queueDatas":[{{"brokerName":"b","perm":6,"readQueueNums":1,"topicSysFlag":0,"writeQueueNums":1}}]}}"#,
                        a.get().expect("address known")
                    );
                    FakeAction::Respond(ok().with_body(body.into_bytes()))
                }
                RequestCode::GET_ROUTEINFO_BY_TOPIC => FakeAction::Respond(
                    RemotingCommand::response(ResponseCode::TOPIC_NOT_EXIST, None),
                ),
                RequestCode::HEART_BEAT => {
                    if let Some(b) = req.body() {
                        let v: serde_json::Value = serde_json::from_slice(b).unwrap();
                        *client_id.lock() = v["clientID"].as_str().unwrap_or("").to_owned();
                    }
                    FakeAction::Respond(ok())
                }
                RequestCode::GET_CONSUMER_LIST_BY_GROUP => {
                    let body = format!(r#"{{"consumerIdList":["{}"]}}"#, client_id.lock());
                    FakeAction::Respond(ok().with_body(body.into_bytes()))
                }
                RequestCode::QUERY_CONSUMER_OFFSET => FakeAction::Respond(
                    RemotingCommand::response(ResponseCode::QUERY_NOT_FOUND, None),
                ),
                RequestCode::PULL_MESSAGE => {
                    let offset: i64 = f.get("queueOffset").unwrap().parse().unwrap();
                    let _ = pulls.send(offset);
                    let mut r = RemotingCommand::response(ResponseCode::PULL_NOT_FOUND, None);
                    let h = r.ext_fields_mut();
                    h.put("nextBeginOffset", offset);
                    h.put("minOffset", 0);
                    h.put("maxOffset", 0);
                    h.put("suggestWhichBrokerId", 0);
                    FakeAction::RespondAfter(Duration::from_millis(50), r)
                }
                _ => FakeAction::Respond(ok()),
            }
        })
        .unwrap();
        addr.set(fake.addr()).unwrap();
        fake
    }

    #[test]
    fn a_queue_whose_pull_panicked_gets_one_new_pull_promptly() {
        let (tx, pulls) = crossbeam_channel::unbounded();
        let fake = fake(tx);
        let client = crate::client::ClientConfig {
            pull_time_delay_when_exception: Duration::from_millis(200),
            ..Default::default()
        };
        let c = crate::consumer::DefaultMQPushConsumer::builder("revive_group")
            .client_config(client)
            .namesrv_addr(fake.addr())
            .instance_name("revive-instance")
            .subscribe(TOPIC, "*")
            .consume_from_where(crate::consumer::ConsumeFromWhere::FirstOffset)
            .register_message_listener_concurrently(
                |_: &[MessageExt], _: &mut ConsumeConcurrentlyContext| {
                    ConsumeConcurrentlyStatus::ConsumeSuccess
                },
            )
            .build()
            .unwrap();
        c.start().unwrap();
        let wait = Duration::from_secs(30);
        pulls.recv_timeout(wait).expect("the queue is pulled");

        PANIC_NEXT_PULL.lock().push("revive_group".to_owned());
        let deadline = Instant::now() + wait;
        while !PANIC_NEXT_PULL.lock().is_empty() {
            assert!(Instant::now() < deadline, "no pull ran after the injection");
            std::thread::yield_now();
        }
        let panicked_at = Instant::now();
        // Every pull the fake saw so far was sent before the panic.
        while pulls.try_recv().is_ok() {}
        // The watchdog would re-dispatch the queue 10 s after the consumer started at the
        // earliest; the revival comes after the 200 ms exception delay.
        pulls
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| {
                panic!(
                    "no new pull {:?} after the pull panicked",
                    panicked_at.elapsed()
                )
            });
        let states: Vec<Arc<ProcessQueue>> = c
            .inner
            .process_queue_table
            .read()
            .values()
            .cloned()
            .collect();
        assert_eq!(states.len(), 1);
        let st = &states[0];
        assert_eq!(
            st.live_pulls.load(Ordering::Acquire),
            1,
            "exactly one pull request lives for the queue"
        );
        // A revival while the queue has its pull is refused: never two.
        assert!(!c.inner.revive_pull(st, Duration::ZERO));
        assert_eq!(st.live_pulls.load(Ordering::Acquire), 1);
        c.shutdown(Duration::from_secs(5)).unwrap();
    }
}
