//! Requests the broker sends to consumers (Java `ClientRemotingProcessor`): they run on the
//! callback pool, never on the io thread, and none of them runs user code there (a listener
//! called for `CONSUME_MESSAGE_DIRECTLY` runs on the consumer's pool).

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use crate::client::instance::{DirectConsumeOutcome, MQClientInstance, MQConsumerInner};
use crate::common::MessageQueue;
use crate::error::CodecError;
use crate::remoting::protocol::body::{ConsumerRunningInfo, FjValue, ResetOffsetBody};
use crate::remoting::protocol::header::{
    ConsumeMessageDirectlyResultRequestHeader, GetConsumerRunningInfoRequestHeader,
    GetConsumerStatusRequestHeader, NotifyConsumerIdsChangedRequestHeader,
    ResetOffsetRequestHeader,
};
use crate::remoting::protocol::{RemotingCommand, RequestCode, ResponseCode};
use crate::remoting::RequestContext;

/// Java's `MQVersion.getVersionDesc(CURRENT_VERSION)`.
const CLIENT_VERSION_DESC: &str = "V4_9_8";

/// Registers the consumer processors on `instance`'s remoting client. They hold the instance
/// weakly, so they never keep it alive.
pub(crate) fn register(instance: &Arc<MQClientInstance>) {
    let remoting = instance.remoting();
    let w = Arc::downgrade(instance);
    remoting.register_processor(
        RequestCode::NOTIFY_CONSUMER_IDS_CHANGED,
        Arc::new(move |ctx: &RequestContext, req: RemotingCommand| {
            notify_consumer_ids_changed(&w, ctx, &req)
        }),
    );
    let w = Arc::downgrade(instance);
    remoting.register_processor(
        RequestCode::RESET_CONSUMER_CLIENT_OFFSET,
        Arc::new(move |_: &RequestContext, req: RemotingCommand| reset_offset(&w, &req)),
    );
    let w = Arc::downgrade(instance);
    remoting.register_processor(
        RequestCode::GET_CONSUMER_RUNNING_INFO,
        Arc::new(move |_: &RequestContext, req: RemotingCommand| running_info(&w, &req)),
    );
    let w = Arc::downgrade(instance);
    remoting.register_processor(
        RequestCode::CONSUME_MESSAGE_DIRECTLY,
        Arc::new(move |ctx: &RequestContext, req: RemotingCommand| consume_directly(&w, ctx, &req)),
    );
    let w = Arc::downgrade(instance);
    remoting.register_processor(
        RequestCode::GET_CONSUMER_STATUS_FROM_CLIENT,
        Arc::new(move |_: &RequestContext, req: RemotingCommand| consumer_status(&w, &req)),
    );
    crate::client::reply::register(instance);
    let w = Arc::downgrade(instance);
    remoting.register_processor(
        RequestCode::CHECK_TRANSACTION_STATE,
        Arc::new(move |ctx: &RequestContext, req: RemotingCommand| {
            crate::client::transaction_check::check_transaction_state(&w, ctx, &req)
        }),
    );
}

fn error_response(
    req: &RemotingCommand,
    code: ResponseCode,
    remark: String,
) -> Option<RemotingCommand> {
    log::warn!("{} failed: {remark}", req.request_code());
    Some(RemotingCommand::response_to(req, code, Some(remark)))
}

fn notify_consumer_ids_changed(
    w: &Weak<MQClientInstance>,
    ctx: &RequestContext,
    req: &RemotingCommand,
) -> Option<RemotingCommand> {
    let instance = w.upgrade()?;
    match req.decode_header::<NotifyConsumerIdsChangedRequestHeader>() {
        Ok(h) => log::info!(
            "receive broker's notification[{}], the consumer group: {} changed, rebalance immediately",
            ctx.peer_addr(),
            h.consumer_group
        ),
        Err(e) => log::warn!("bad NOTIFY_CONSUMER_IDS_CHANGED from {}: {e}", ctx.peer_addr()),
    }
    instance.rebalance_immediately();
    None
}

fn reset_offset(w: &Weak<MQClientInstance>, req: &RemotingCommand) -> Option<RemotingCommand> {
    let instance = w.upgrade()?;
    let result = (|| -> Result<(), CodecError> {
        let h: ResetOffsetRequestHeader = req.decode_header()?;
        let body = ResetOffsetBody::decode(req.body().map(|b| &b[..]).unwrap_or(b"{}"))?;
        let table: HashMap<MessageQueue, i64> = body.offset_table.into_iter().collect();
        log::info!(
            "invoke reset offset operation from broker. group={}, topic={}, timestamp={}, queues={}",
            h.group,
            h.topic,
            h.timestamp,
            table.len()
        );
        if let Some(c) = instance.consumer(&h.group) {
            c.reset_offset(&h.topic, &table);
        }
        Ok(())
    })();
    if let Err(e) = result {
        log::warn!("RESET_CONSUMER_CLIENT_OFFSET rejected: {e}");
    }
    None
}

/// The consumer of `group` in this instance, or the SYSTEM_ERROR answer Java gives when the
/// group has none here.
fn consumer_of(
    instance: &MQClientInstance,
    req: &RemotingCommand,
    group: &str,
) -> std::result::Result<Arc<dyn MQConsumerInner>, Option<RemotingCommand>> {
    instance.consumer(group).ok_or_else(|| {
        error_response(
            req,
            ResponseCode::SYSTEM_ERROR,
            format!("The Consumer Group <{group}> not exist in this consumer"),
        )
    })
}

fn running_info(w: &Weak<MQClientInstance>, req: &RemotingCommand) -> Option<RemotingCommand> {
    let instance = w.upgrade()?;
    let h: GetConsumerRunningInfoRequestHeader = match req.decode_header() {
        Ok(h) => h,
        Err(e) => return error_response(req, ResponseCode::SYSTEM_ERROR, e.to_string()),
    };
    let c = match consumer_of(&instance, req, &h.consumer_group) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let mut info = c.running_info();
    add_instance_properties(&mut info, &instance.remoting().namesrv_addr_list());
    let body = info.encode();
    match body {
        Ok(b) => Some(
            RemotingCommand::response_to(req, ResponseCode::SUCCESS, None)
                .with_body(b.into_bytes()),
        ),
        Err(e) => error_response(req, ResponseCode::SYSTEM_ERROR, e.to_string()),
    }
}

/// Adds what the instance knows to a consumer's running info (Java
/// `MQClientInstance.consumerRunningInfo`): the name servers, the consume type and the client
/// version.
fn add_instance_properties(info: &mut ConsumerRunningInfo, namesrv_addrs: &[String]) {
    let props = &mut info.properties;
    props.insert(
        ConsumerRunningInfo::PROP_NAMESERVER_ADDR.to_owned(),
        namesrv_addrs.iter().map(|a| format!("{a};")).collect(),
    );
    // The consumer says which it is (a lite pull consumer consumes actively).
    props
        .entry(ConsumerRunningInfo::PROP_CONSUME_TYPE.to_owned())
        .or_insert_with(|| "CONSUME_PASSIVELY".to_owned());
    props.insert(
        ConsumerRunningInfo::PROP_CLIENT_VERSION.to_owned(),
        CLIENT_VERSION_DESC.to_owned(),
    );
}

/// `CONSUME_MESSAGE_DIRECTLY` (an admin asking, through the broker, for one stored message to
/// be consumed now). The listener may take long, so it does not run here on the callback pool:
/// the consumer runs it on its own consume pool, and the answer is sent when it returns. The
/// callback thread is free at once for other requests and pull callbacks.
fn consume_directly(
    w: &Weak<MQClientInstance>,
    ctx: &RequestContext,
    req: &RemotingCommand,
) -> Option<RemotingCommand> {
    let instance = w.upgrade()?;
    let h: ConsumeMessageDirectlyResultRequestHeader = match req.decode_header() {
        Ok(h) => h,
        Err(e) => return error_response(req, ResponseCode::SYSTEM_ERROR, e.to_string()),
    };
    let Some(body) = req.body() else {
        return error_response(
            req,
            ResponseCode::SYSTEM_ERROR,
            "no message in the request".into(),
        );
    };
    let c = match consumer_of(&instance, req, &h.consumer_group) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let broker = h.broker_name.unwrap_or_default();
    let responder = ctx.defer_response();
    c.consume_message_directly(
        body,
        &broker,
        Box::new(move |outcome| responder.send(direct_response(outcome))),
    );
    None
}

/// The answer to `CONSUME_MESSAGE_DIRECTLY`: Java's `ConsumeMessageDirectlyResult` as JSON, or
/// the refusal.
fn direct_response(outcome: DirectConsumeOutcome) -> RemotingCommand {
    let (result, remark, spent) = match outcome {
        DirectConsumeOutcome::Consumed {
            result,
            remark,
            spent_ms,
        } => (result, remark, spent_ms),
        DirectConsumeOutcome::Refused(code, remark) => {
            log::warn!("CONSUME_MESSAGE_DIRECTLY refused ({code}): {remark}");
            return RemotingCommand::response(code, Some(remark));
        }
    };
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Result<'a> {
        auto_commit: bool,
        consume_result: &'a str,
        order: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        remark: Option<String>,
        spent_time_mills: u64,
    }
    let json = serde_json::to_vec(&Result {
        auto_commit: true,
        consume_result: result,
        order: false,
        remark,
        spent_time_mills: spent,
    })
    .expect("plain struct serialises");
    RemotingCommand::response(ResponseCode::SUCCESS, None).with_body(json)
}

fn consumer_status(w: &Weak<MQClientInstance>, req: &RemotingCommand) -> Option<RemotingCommand> {
    let instance = w.upgrade()?;
    let h: GetConsumerStatusRequestHeader = match req.decode_header() {
        Ok(h) => h,
        Err(e) => return error_response(req, ResponseCode::SYSTEM_ERROR, e.to_string()),
    };
    let table = instance
        .consumer(&h.group)
        .map(|c| c.offsets_of_topic(&h.topic))
        .unwrap_or_default();
    let mut entries: Vec<(&MessageQueue, &i64)> = table.iter().collect();
    entries.sort();
    let body = FjValue::object_key_map(entries).map(|m| {
        FjValue::Object(vec![
            (
                FjValue::String("consumerTable".into()),
                FjValue::Object(Vec::new()),
            ),
            (FjValue::String("messageQueueTable".into()), m),
        ])
        .to_compact_string()
    });
    match body {
        Ok(b) => Some(
            RemotingCommand::response_to(req, ResponseCode::SUCCESS, None)
                .with_body(b.into_bytes()),
        ),
        Err(e) => error_response(req, ResponseCode::SYSTEM_ERROR, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::remoting::protocol::RequestCode;
    use crate::remoting::{RemotingClient, RemotingClientConfig};
    use crate::testing::FakeBroker;

    #[test]
    fn the_instance_adds_name_servers_consume_type_and_version() {
        let mut info = ConsumerRunningInfo::default();
        info.properties.insert(
            ConsumerRunningInfo::PROP_CONSUME_ORDERLY.to_owned(),
            "false".to_owned(),
        );
        add_instance_properties(
            &mut info,
            &["127.0.0.1:9876".to_owned(), "127.0.0.2:9876".to_owned()],
        );
        let props: Vec<(&str, &str)> = info
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            props,
            [
                ("PROP_CLIENT_VERSION", "V4_9_8"),
                ("PROP_CONSUME_ORDERLY", "false"),
                ("PROP_CONSUME_TYPE", "CONSUME_PASSIVELY"),
                ("PROP_NAMESERVER_ADDR", "127.0.0.1:9876;127.0.0.2:9876;"),
            ]
        );
    }

    /// The remoting side of `consume_directly`: a processor hands its answer to a responder
    /// and returns; the responder answers later from any thread, or `SYSTEM_ERROR` if dropped.
    #[test]
    fn a_deferred_response_is_sent_when_ready_and_a_dropped_one_answers_system_error() {
        const DEFERS: RequestCode = RequestCode(9200);
        let broker = FakeBroker::echo().unwrap();
        let client = RemotingClient::start(RemotingClientConfig {
            callback_threads: 1,
            ..RemotingClientConfig::default()
        })
        .unwrap();
        let (tx, responders) = crossbeam_channel::unbounded();
        client.register_processor(
            DEFERS,
            Arc::new(move |ctx: &RequestContext, _: RemotingCommand| {
                tx.send(ctx.defer_response()).unwrap();
                None
            }),
        );
        // Connects the client, so the broker can push to it.
        client
            .invoke_sync(
                &broker.addr(),
                RemotingCommand::request(RequestCode(9201)),
                Duration::from_secs(3),
            )
            .unwrap();
        let answered = RemotingCommand::request(DEFERS);
        let dropped = RemotingCommand::request(DEFERS);
        assert_eq!(broker.push_request(&answered), 1);
        assert_eq!(broker.push_request(&dropped), 1);
        let first = responders.recv_timeout(Duration::from_secs(3)).unwrap();
        let second = responders.recv_timeout(Duration::from_secs(3)).unwrap();

        // Answered from another thread, after the processor returned.
        std::thread::Builder::new()
            .name("answers-later".to_owned())
            .spawn(move || {
                first.send(RemotingCommand::response(
                    ResponseCode::SUCCESS,
                    Some("later".to_owned()),
                ))
            })
            .unwrap()
            .join()
            .unwrap();
        let r = broker.recv_response(Duration::from_secs(3)).unwrap();
        assert!(r.is_response());
        assert_eq!(
            (r.opaque(), r.response_code(), r.remark()),
            (answered.opaque(), ResponseCode::SUCCESS, Some("later"))
        );

        // Dropped unanswered: the broker still gets an answer.
        drop(second);
        let r = broker.recv_response(Duration::from_secs(3)).unwrap();
        assert_eq!(
            (r.opaque(), r.response_code()),
            (dropped.opaque(), ResponseCode::SYSTEM_ERROR)
        );
        client.shutdown();
    }
}
