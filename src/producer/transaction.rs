//! `TransactionMQProducer`: half messages, the local transaction, `END_TRANSACTION`, and the
//! broker's transaction checks (Java `TransactionMQProducer` and the transaction parts of
//! `DefaultMQProducerImpl`).
//!
//! A transactional send is three steps: the message goes to the broker as a half message
//! (`TRAN_MSG=true`, `PGROUP=<group>`), invisible to consumers; the listener's
//! [`execute_local_transaction`](TransactionListener::execute_local_transaction) runs on the
//! caller's thread; its answer goes to the broker in a one-way `END_TRANSACTION` (commit makes
//! the message visible, rollback discards it, unknown leaves it to the check). The broker asks
//! about half messages left unknown with `CHECK_TRANSACTION_STATE`, sent to any live producer of
//! the group: those requests run [`check_local_transaction`](TransactionListener::check_local_transaction)
//! on the producer's bounded check pool (Java's `checkExecutor`) and are answered with another
//! one-way `END_TRANSACTION`.

use std::any::Any;
use std::fmt;
use std::ops::Deref;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::client::instance::{MQClientInstance, AUTO_CREATE_TOPIC_KEY_TOPIC};
use crate::common::decoder::MessageSysFlag;
use crate::common::{Message, MessageClientIDSetter, MessageConst, MessageDecoder, MessageExt};
use crate::error::{ClientErrorCode, Error, Result};
use crate::executor::panic_message;
use crate::executor::{Rejected, ThreadPoolExecutor};
use crate::producer::{DefaultMQProducer, DefaultMQProducerBuilder, SendResult, SendStatus};
use crate::remoting::protocol::header::{
    CheckTransactionStateRequestHeader, EndTransactionRequestHeader,
};
use crate::remoting::protocol::{RemotingCommand, RequestCode};
use crate::service_state::ServiceState;

/// How long the one-way `END_TRANSACTION` answering a check may wait for the connection (Java
/// passes 3000 ms).
const CHECK_END_TRANSACTION_TIMEOUT: Duration = Duration::from_millis(3000);

/// The outcome of a local transaction (Java `LocalTransactionState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LocalTransactionState {
    /// Make the half message visible to consumers (`COMMIT_MESSAGE`).
    CommitMessage,
    /// Discard the half message (`ROLLBACK_MESSAGE`).
    RollbackMessage,
    /// Not decided yet: the broker asks again later with a transaction check (`UNKNOW`, Java's
    /// spelling).
    Unknow,
}

impl LocalTransactionState {
    /// Java's enum name (`COMMIT_MESSAGE`, `ROLLBACK_MESSAGE`, `UNKNOW`).
    pub fn as_java_str(self) -> &'static str {
        match self {
            LocalTransactionState::CommitMessage => "COMMIT_MESSAGE",
            LocalTransactionState::RollbackMessage => "ROLLBACK_MESSAGE",
            LocalTransactionState::Unknow => "UNKNOW",
        }
    }

    /// The `commitOrRollback` value of `END_TRANSACTION` (the `MessageSysFlag` transaction
    /// types).
    fn commit_or_rollback(self) -> i32 {
        match self {
            LocalTransactionState::CommitMessage => MessageSysFlag::TRANSACTION_COMMIT_TYPE,
            LocalTransactionState::RollbackMessage => MessageSysFlag::TRANSACTION_ROLLBACK_TYPE,
            LocalTransactionState::Unknow => MessageSysFlag::TRANSACTION_NOT_TYPE,
        }
    }
}

impl fmt::Display for LocalTransactionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_java_str())
    }
}

/// The application's side of a transaction (Java `TransactionListener`).
///
/// A panic in either method is caught and logged, and counts as
/// [`LocalTransactionState::Unknow`]: the broker checks the message again later.
///
/// Two closures make a listener with [`FnTransactionListener::new`].
pub trait TransactionListener: Send + Sync + 'static {
    /// Runs the local transaction for the half message `msg` just stored by the broker, on the
    /// thread that called [`TransactionMQProducer::send_message_in_transaction`]; `arg` is the
    /// argument given there. `msg` carries its `UNIQ_KEY` (the transaction id, see
    /// [`Message::property`]).
    fn execute_local_transaction(&self, msg: &Message, arg: &dyn Any) -> LocalTransactionState;

    /// Answers the broker's question about a half message whose outcome it does not know yet
    /// (it was [`Unknow`](LocalTransactionState::Unknow), or its `END_TRANSACTION` was lost).
    /// Runs on the producer's check pool; the message is the stored half message with its
    /// original topic and queue.
    fn check_local_transaction(&self, msg: &MessageExt) -> LocalTransactionState;
}

/// A [`TransactionListener`] made of two closures.
///
/// ```
/// use rocketmq_sync::{FnTransactionListener, LocalTransactionState};
///
/// let listener = FnTransactionListener::new(
///     |_msg, _arg| LocalTransactionState::CommitMessage,
///     |_msg| LocalTransactionState::RollbackMessage,
/// );
/// # let _ = listener;
/// ```
pub struct FnTransactionListener<E, C> {
    execute: E,
    check: C,
}

impl<E, C> FnTransactionListener<E, C>
where
    E: Fn(&Message, &dyn Any) -> LocalTransactionState + Send + Sync + 'static,
    C: Fn(&MessageExt) -> LocalTransactionState + Send + Sync + 'static,
{
    /// `execute` is [`TransactionListener::execute_local_transaction`], `check` is
    /// [`TransactionListener::check_local_transaction`].
    pub fn new(execute: E, check: C) -> Self {
        FnTransactionListener { execute, check }
    }
}

impl<E, C> TransactionListener for FnTransactionListener<E, C>
where
    E: Fn(&Message, &dyn Any) -> LocalTransactionState + Send + Sync + 'static,
    C: Fn(&MessageExt) -> LocalTransactionState + Send + Sync + 'static,
{
    fn execute_local_transaction(&self, msg: &Message, arg: &dyn Any) -> LocalTransactionState {
        (self.execute)(msg, arg)
    }

    fn check_local_transaction(&self, msg: &MessageExt) -> LocalTransactionState {
        (self.check)(msg)
    }
}

impl<E, C> fmt::Debug for FnTransactionListener<E, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnTransactionListener")
    }
}

/// The result of [`TransactionMQProducer::send_message_in_transaction`] (Java
/// `TransactionSendResult`): the half message's [`SendResult`] (through `Deref`) and the state
/// the local transaction ended in.
#[derive(Debug, Clone)]
pub struct TransactionSendResult {
    send_result: SendResult,
    local_transaction_state: LocalTransactionState,
}

impl TransactionSendResult {
    /// What the local transaction returned (`ROLLBACK_MESSAGE` without running it when the
    /// broker stored the half message but reported a flush or slave problem; `UNKNOW` when it
    /// panicked).
    pub fn local_transaction_state(&self) -> LocalTransactionState {
        self.local_transaction_state
    }

    /// The half message's send result.
    pub fn send_result(&self) -> &SendResult {
        &self.send_result
    }
}

impl Deref for TransactionSendResult {
    type Target = SendResult;

    fn deref(&self) -> &SendResult {
        &self.send_result
    }
}

/// What the producer needs from the transaction side when the broker asks about a half
/// message: implemented by the check pool of a [`TransactionMQProducer`].
pub(crate) trait TransactionCheckHandler: Send + Sync {
    /// Queues the check of `msg` (from `broker_addr`) on the check pool.
    fn check_transaction_state(
        &self,
        instance: &Arc<MQClientInstance>,
        broker_addr: &str,
        msg: MessageExt,
        header: CheckTransactionStateRequestHeader,
    );
}

/// Builds a [`TransactionMQProducer`]. The producer settings are those of
/// [`DefaultMQProducerBuilder`] (the common ones are repeated here; the others through
/// [`producer`](Self::producer)); a [`TransactionListener`] is required.
pub struct TransactionMQProducerBuilder {
    producer: DefaultMQProducerBuilder,
    listener: Option<Arc<dyn TransactionListener>>,
    check_thread_pool_min_size: usize,
    check_thread_pool_max_size: usize,
    check_request_hold_max: usize,
}

impl fmt::Debug for TransactionMQProducerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransactionMQProducerBuilder")
            .field("producer", &self.producer)
            .field("listener", &self.listener.is_some())
            .field(
                "check_thread_pool_min_size",
                &self.check_thread_pool_min_size,
            )
            .field(
                "check_thread_pool_max_size",
                &self.check_thread_pool_max_size,
            )
            .field("check_request_hold_max", &self.check_request_hold_max)
            .finish()
    }
}

/// Setters handed through to the [`DefaultMQProducerBuilder`].
macro_rules! producer_setters {
    ($( $(#[$doc:meta])* $name:ident($arg:ident: $ty:ty); )*) => {
        $(
            $(#[$doc])*
            pub fn $name(self, $arg: $ty) -> Self {
                TransactionMQProducerBuilder {
                    producer: self.producer.$name($arg),
                    ..self
                }
            }
        )*
    };
}

impl TransactionMQProducerBuilder {
    producer_setters! {
        /// See [`DefaultMQProducerBuilder::namesrv_addr`].
        namesrv_addr(addr: impl Into<String>);
        /// See [`DefaultMQProducerBuilder::instance_name`].
        instance_name(name: impl Into<String>);
        /// See [`DefaultMQProducerBuilder::client_config`].
        client_config(client: crate::ClientConfig);
        /// See [`DefaultMQProducerBuilder::rpc_hook`].
        rpc_hook(hook: Arc<dyn crate::RPCHook>);
        /// See [`DefaultMQProducerBuilder::send_msg_timeout`]; also the time budget of the
        /// one-way `END_TRANSACTION` after a send.
        send_msg_timeout(timeout: Duration);
        /// See [`DefaultMQProducerBuilder::retry_times_when_send_failed`].
        retry_times_when_send_failed(times: u32);
    }

    /// Any other producer setting: `f` gets the inner [`DefaultMQProducerBuilder`].
    pub fn producer(
        self,
        f: impl FnOnce(DefaultMQProducerBuilder) -> DefaultMQProducerBuilder,
    ) -> Self {
        TransactionMQProducerBuilder {
            producer: f(self.producer),
            ..self
        }
    }

    /// The listener that runs and checks local transactions. Required.
    #[doc(alias = "setTransactionListener")]
    pub fn transaction_listener(mut self, listener: impl TransactionListener) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// The listener as two closures (see [`FnTransactionListener`]).
    pub fn transaction_listener_fn<E, C>(self, execute: E, check: C) -> Self
    where
        E: Fn(&Message, &dyn Any) -> LocalTransactionState + Send + Sync + 'static,
        C: Fn(&MessageExt) -> LocalTransactionState + Send + Sync + 'static,
    {
        self.transaction_listener(FnTransactionListener::new(execute, check))
    }

    /// Threads the check pool keeps. Java default: 1.
    #[doc(alias = "setCheckThreadPoolMinSize")]
    pub fn check_thread_pool_min_size(mut self, n: usize) -> Self {
        self.check_thread_pool_min_size = n;
        self
    }

    /// Most threads of the check pool. Java default: 1.
    #[doc(alias = "setCheckThreadPoolMaxSize")]
    pub fn check_thread_pool_max_size(mut self, n: usize) -> Self {
        self.check_thread_pool_max_size = n;
        self
    }

    /// Checks queued at most; further checks are refused (logged) until the queue drains, and
    /// the broker asks again at its next check round. Java default: 2000.
    #[doc(alias = "setCheckRequestHoldMax")]
    pub fn check_request_hold_max(mut self, n: usize) -> Self {
        self.check_request_hold_max = n;
        self
    }

    /// Validates the settings and builds the producer (not yet started).
    pub fn build(self) -> Result<TransactionMQProducer> {
        let listener = self.listener.ok_or_else(|| {
            Error::config("TransactionListener is null: set transaction_listener")
        })?;
        if self.check_thread_pool_min_size == 0
            || self.check_thread_pool_max_size < self.check_thread_pool_min_size
        {
            return Err(Error::config(format!(
                "check pool sizes must be 1 <= min <= max, got min {} max {}",
                self.check_thread_pool_min_size, self.check_thread_pool_max_size
            )));
        }
        if self.check_request_hold_max == 0 {
            return Err(Error::config("check_request_hold_max must be positive"));
        }
        let producer = self.producer.build()?;
        let checker = Arc::new(CheckService {
            group: producer.producer_group().to_owned(),
            listener: listener.clone(),
            min_threads: self.check_thread_pool_min_size,
            max_threads: self.check_thread_pool_max_size,
            queue_capacity: self.check_request_hold_max,
            pool: Mutex::new(None),
        });
        producer.set_transaction_check_handler(checker.clone());
        Ok(TransactionMQProducer {
            producer,
            listener,
            checker,
        })
    }
}

/// Sends messages in transactions (Java `TransactionMQProducer`).
///
/// ```no_run
/// use rocketmq_sync::{LocalTransactionState, TransactionMQProducer};
/// use rocketmq_sync::Message;
///
/// let producer = TransactionMQProducer::builder("my_tx_group")
///     .namesrv_addr("127.0.0.1:9876")
///     .transaction_listener_fn(
///         |_msg, _arg| LocalTransactionState::CommitMessage,
///         |_msg| LocalTransactionState::CommitMessage,
///     )
///     .build()?;
/// producer.start()?;
/// let result = producer.send_message_in_transaction(&Message::new("TopicTest", "hello"), &())?;
/// println!("{} -> {}", result.msg_id(), result.local_transaction_state());
/// producer.shutdown(std::time::Duration::from_secs(5))?;
/// # Ok::<(), rocketmq_sync::Error>(())
/// ```
///
/// The handle is cheap to clone and `Send + Sync`. Ordinary sends go through
/// [`producer`](Self::producer).
#[derive(Clone)]
pub struct TransactionMQProducer {
    producer: DefaultMQProducer,
    listener: Arc<dyn TransactionListener>,
    checker: Arc<CheckService>,
}

impl fmt::Debug for TransactionMQProducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransactionMQProducer")
            .field("producer", &self.producer)
            .finish()
    }
}

impl TransactionMQProducer {
    /// A builder for a transaction producer of `group`.
    pub fn builder(group: impl Into<String>) -> TransactionMQProducerBuilder {
        TransactionMQProducerBuilder {
            producer: DefaultMQProducer::builder(group),
            listener: None,
            check_thread_pool_min_size: 1,
            check_thread_pool_max_size: 1,
            check_request_hold_max: 2000,
        }
    }

    /// The underlying producer, for ordinary sends.
    pub fn producer(&self) -> &DefaultMQProducer {
        &self.producer
    }

    /// The producer group.
    pub fn producer_group(&self) -> &str {
        self.producer.producer_group()
    }

    /// Starts the check pool, then the producer (Java `start` with `initTransactionEnv`).
    pub fn start(&self) -> Result<()> {
        if self.producer.service_state() != ServiceState::CreateJust {
            // The producer's own error names the state.
            return self.producer.start();
        }
        self.checker.start()?;
        if let Err(e) = self.producer.start() {
            self.checker.shutdown(Duration::ZERO);
            return Err(e);
        }
        // The broker sends its checks only to producers that heartbeat to it, and the client
        // heartbeats only to brokers it has a route to. A producer that has sent nothing yet
        // (say, the one restarted after a crash) must still get the checks of its group: learn
        // the brokers from the route of the auto-create topic, as Java does by putting it in
        // the producer's publish table at start, and heartbeat to them now.
        let instance = self.producer.running_instance()?;
        if instance.update_topic_route_info_from_name_server(AUTO_CREATE_TOPIC_KEY_TOPIC) {
            instance.send_heartbeat_to_all_broker_with_lock();
        } else {
            log::warn!(
                "transaction producer {}: no route to {AUTO_CREATE_TOPIC_KEY_TOPIC}; brokers will \
                 send it checks only after its first send",
                self.producer_group()
            );
        }
        Ok(())
    }

    /// Shuts the producer down, then the check pool, waiting up to `timeout` for a check that
    /// is running (Java `shutdown` with `destroyTransactionEnv`). Checks still queued are
    /// dropped: the broker asks again. Idempotent.
    pub fn shutdown(&self, timeout: Duration) -> Result<()> {
        let result = self.producer.shutdown(timeout);
        self.checker.shutdown(timeout);
        result
    }

    /// Sends `msg` as a half message, runs the local transaction with `arg`, and tells the broker
    /// its outcome (Java `sendMessageInTransaction(msg, arg)`).
    ///
    /// A delay level on `msg` is dropped, as Java does: a transactional message is not delayed.
    /// The call fails only when the half message could not be sent (then the listener does not
    /// run); a failed `END_TRANSACTION` is logged, and the broker's check settles the
    /// transaction later.
    pub fn send_message_in_transaction<A: Any>(
        &self,
        msg: &Message,
        arg: &A,
    ) -> Result<TransactionSendResult> {
        let mut msg = msg.clone();
        msg.clear_property(MessageConst::PROPERTY_DELAY_TIME_LEVEL);
        msg.put_property(MessageConst::PROPERTY_TRANSACTION_PREPARED, "true");
        msg.put_property(MessageConst::PROPERTY_PRODUCER_GROUP, self.producer_group());
        // Set here rather than by the send, so the listener sees the transaction's id.
        if msg
            .property(MessageConst::PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX)
            .is_none_or(str::is_empty)
        {
            msg.put_property(
                MessageConst::PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX,
                MessageClientIDSetter::create_uniq_id(),
            );
        }
        let send_result = self.producer.send(&msg).map_err(|e| {
            Error::client_caused_by(ClientErrorCode::NO_CODE, "send message Exception", e)
        })?;
        let mut local_error = None;
        let state = match send_result.send_status() {
            SendStatus::SendOk => {
                if let Some(id) = send_result.transaction_id() {
                    msg.put_property(MessageConst::PROPERTY_TRANSACTION_ID, id);
                }
                match catch_unwind(AssertUnwindSafe(|| {
                    self.listener.execute_local_transaction(&msg, arg)
                })) {
                    Ok(state) => {
                        if state != LocalTransactionState::CommitMessage {
                            log::info!(
                                "executeLocalTransactionBranch return {state}, msgId {}",
                                send_result.msg_id()
                            );
                        }
                        state
                    }
                    Err(payload) => {
                        let text = panic_message(&*payload);
                        log::error!(
                            "executeLocalTransactionBranch panicked, msgId {}: {text}",
                            send_result.msg_id()
                        );
                        local_error = Some(text);
                        LocalTransactionState::Unknow
                    }
                }
            }
            SendStatus::FlushDiskTimeout
            | SendStatus::FlushSlaveTimeout
            | SendStatus::SlaveNotAvailable => LocalTransactionState::RollbackMessage,
        };
        if let Err(e) = self.end_transaction(&send_result, state, local_error) {
            log::warn!(
                "local transaction {} executed as {state}, but END_TRANSACTION to the broker failed: {e}",
                send_result.msg_id()
            );
        }
        Ok(TransactionSendResult {
            send_result,
            local_transaction_state: state,
        })
    }

    /// Java `endTransaction`: the one-way END_TRANSACTION after a send.
    fn end_transaction(
        &self,
        send_result: &SendResult,
        state: LocalTransactionState,
        local_error: Option<String>,
    ) -> Result<()> {
        let instance = self.producer.running_instance()?;
        let id = if send_result.offset_msg_id().is_empty() {
            send_result.msg_id()
        } else {
            send_result.offset_msg_id()
        };
        let (_, commit_log_offset) = MessageDecoder::decode_message_id(id)?;
        let broker = &send_result.message_queue().broker_name;
        let addr = instance
            .find_broker_address_in_publish(broker)
            .ok_or_else(|| {
                Error::client(
                    ClientErrorCode::NO_CODE,
                    format!("the broker[{broker}] not exist"),
                )
            })?;
        let header = EndTransactionRequestHeader {
            producer_group: self.producer_group().to_owned(),
            tran_state_table_offset: send_result.queue_offset(),
            commit_log_offset,
            commit_or_rollback: state.commit_or_rollback(),
            from_transaction_check: false,
            msg_id: send_result.msg_id().to_owned(),
            transaction_id: send_result.transaction_id().map(str::to_owned),
            bname: Some(broker.clone()),
        };
        let remark = local_error.map(|e| format!("executeLocalTransactionBranch exception: {e}"));
        end_transaction_oneway(
            &instance,
            &addr,
            &header,
            remark,
            self.producer.send_msg_timeout(),
        )
    }
}

fn end_transaction_oneway(
    instance: &MQClientInstance,
    addr: &str,
    header: &EndTransactionRequestHeader,
    remark: Option<String>,
    timeout: Duration,
) -> Result<()> {
    let mut request = instance.api().request(RemotingCommand::request_with_header(
        RequestCode::END_TRANSACTION,
        header,
    ));
    request.set_remark(remark);
    instance.remoting().invoke_oneway(addr, request, timeout)
}

/// The check pool (Java `checkExecutor`) and what a check needs.
struct CheckService {
    group: String,
    listener: Arc<dyn TransactionListener>,
    min_threads: usize,
    max_threads: usize,
    queue_capacity: usize,
    pool: Mutex<Option<Arc<ThreadPoolExecutor>>>,
}

impl CheckService {
    fn start(&self) -> Result<()> {
        let pool = ThreadPoolExecutor::builder()
            .name(format!("TransactionCheck_{}", self.group))
            .core_threads(self.min_threads)
            .max_threads(self.max_threads)
            .queue_capacity(Some(self.queue_capacity))
            .thread_name(|i| format!("rmq-txchk-{i}"))
            .build()
            .map_err(|e| Error::config(format!("transaction check pool: {e}")))?;
        *self.pool.lock() = Some(Arc::new(pool));
        Ok(())
    }

    fn shutdown(&self, timeout: Duration) {
        let pool = self.pool.lock().take();
        if let Some(pool) = pool {
            if let Err(e) = pool.shutdown(timeout) {
                log::warn!("transaction check pool of {}: {e}", self.group);
            }
        }
    }
}

impl TransactionCheckHandler for CheckService {
    fn check_transaction_state(
        &self,
        instance: &Arc<MQClientInstance>,
        broker_addr: &str,
        msg: MessageExt,
        header: CheckTransactionStateRequestHeader,
    ) {
        let Some(pool) = self.pool.lock().clone() else {
            log::warn!(
                "transaction check for {} of group {} ignored: the producer is not running",
                msg.msg_id(),
                self.group
            );
            return;
        };
        let task = {
            let instance = instance.clone();
            let addr = broker_addr.to_owned();
            let listener = self.listener.clone();
            let group = self.group.clone();
            move || run_check(&instance, &addr, &group, &*listener, &msg, header)
        };
        match pool.execute(task) {
            Ok(()) => {}
            Err(Rejected::Full(_)) => log::warn!(
                "transaction check from {broker_addr} refused: {} checks already queued for group {}",
                self.queue_capacity,
                self.group
            ),
            Err(Rejected::Shutdown(_)) => log::warn!(
                "transaction check from {broker_addr} ignored: the check pool of {} is shut down",
                self.group
            ),
        }
    }
}

/// One check on the check pool: ask the listener, answer the broker.
fn run_check(
    instance: &MQClientInstance,
    broker_addr: &str,
    group: &str,
    listener: &dyn TransactionListener,
    msg: &MessageExt,
    check: CheckTransactionStateRequestHeader,
) {
    let mut remark = None;
    let state = match catch_unwind(AssertUnwindSafe(|| listener.check_local_transaction(msg))) {
        Ok(state) => state,
        Err(payload) => {
            let text = panic_message(&*payload);
            log::error!(
                "checkLocalTransaction panicked for {} of group {group}: {text}",
                msg.msg_id()
            );
            remark = Some(format!("checkLocalTransactionState Exception: {text}"));
            LocalTransactionState::Unknow
        }
    };
    let msg_id = msg
        .property(MessageConst::PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX)
        .map(str::to_owned)
        .or(check.msg_id)
        .unwrap_or_else(|| msg.offset_msg_id());
    let header = EndTransactionRequestHeader {
        producer_group: group.to_owned(),
        tran_state_table_offset: check.tran_state_table_offset,
        commit_log_offset: msg.commit_log_offset(),
        commit_or_rollback: state.commit_or_rollback(),
        from_transaction_check: true,
        msg_id,
        transaction_id: check.transaction_id,
        bname: check.bname,
    };
    if let Err(e) = end_transaction_oneway(
        instance,
        broker_addr,
        &header,
        remark,
        CHECK_END_TRANSACTION_TIMEOUT,
    ) {
        log::warn!(
            "END_TRANSACTION ({state}) for the check of {} to {broker_addr} failed: {e}",
            header.msg_id
        );
    }
}
