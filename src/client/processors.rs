//! Requests the broker sends to consumers (Java `ClientRemotingProcessor`): they run on the
//! callback pool, never on the io thread.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use crate::client::instance::{MQClientInstance, MQConsumerInner};
use crate::common::{MessageDecoder, MessageQueue};
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
        Arc::new(move |_: &RequestContext, req: RemotingCommand| consume_directly(&w, &req)),
    );
    let w = Arc::downgrade(instance);
    remoting.register_processor(
        RequestCode::GET_CONSUMER_STATUS_FROM_CLIENT,
        Arc::new(move |_: &RequestContext, req: RemotingCommand| consumer_status(&w, &req)),
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
    props.insert(
        ConsumerRunningInfo::PROP_CONSUME_TYPE.to_owned(),
        "CONSUME_PASSIVELY".to_owned(),
    );
    props.insert(
        ConsumerRunningInfo::PROP_CLIENT_VERSION.to_owned(),
        CLIENT_VERSION_DESC.to_owned(),
    );
}

fn consume_directly(w: &Weak<MQClientInstance>, req: &RemotingCommand) -> Option<RemotingCommand> {
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
    let msg = match MessageDecoder::decode(body, true, true) {
        Ok(m) => m,
        Err(e) => return error_response(req, ResponseCode::SYSTEM_ERROR, e.to_string()),
    };
    let c = match consumer_of(&instance, req, &h.consumer_group) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let broker = h.broker_name.unwrap_or_default();
    let (result, remark, spent) = c.consume_message_directly(msg, &broker);
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
    Some(RemotingCommand::response_to(req, ResponseCode::SUCCESS, None).with_body(json))
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
    use super::*;

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
}
