//! Requests the broker sends to consumers (Java `ClientRemotingProcessor`): they run on the
//! callback pool, never on the io thread.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};

use crate::client::instance::MQClientInstance;
use crate::common::{MessageDecoder, MessageQueue};
use crate::consumer::stats::RunningInfo;
use crate::error::CodecError;
use crate::remoting::protocol::body::{FjValue, ResetOffsetBody};
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

fn running_info(w: &Weak<MQClientInstance>, req: &RemotingCommand) -> Option<RemotingCommand> {
    let instance = w.upgrade()?;
    let h: GetConsumerRunningInfoRequestHeader = match req.decode_header() {
        Ok(h) => h,
        Err(e) => return error_response(req, ResponseCode::SYSTEM_ERROR, e.to_string()),
    };
    let Some(c) = instance.consumer(&h.consumer_group) else {
        return error_response(
            req,
            ResponseCode::SYSTEM_ERROR,
            format!(
                "The Consumer Group <{}> not exist in this consumer",
                h.consumer_group
            ),
        );
    };
    let info = c.running_info();
    let body = encode_running_info(&info, &instance.remoting().namesrv_addr_list());
    match body {
        Ok(b) => Some(
            RemotingCommand::response_to(req, ResponseCode::SUCCESS, None)
                .with_body(b.into_bytes()),
        ),
        Err(e) => error_response(req, ResponseCode::SYSTEM_ERROR, e.to_string()),
    }
}

/// The GET_CONSUMER_RUNNING_INFO body (Java `ConsumerRunningInfo`) of a consumer, fastjson's
/// compact form.
fn encode_running_info(info: &RunningInfo, namesrv_addrs: &[String]) -> Result<String, CodecError> {
    let mut properties: BTreeMap<&str, String> = BTreeMap::new();
    properties.insert(
        "PROP_NAMESERVER_ADDR",
        namesrv_addrs.iter().map(|a| format!("{a};")).collect(),
    );
    properties.insert("PROP_CONSUME_TYPE", "CONSUME_PASSIVELY".to_owned());
    properties.insert("PROP_CLIENT_VERSION", CLIENT_VERSION_DESC.to_owned());
    properties.insert("PROP_CONSUME_ORDERLY", "false".to_owned());
    properties.insert("PROP_THREADPOOL_CORE_SIZE", info.thread_core.to_string());
    properties.insert("PROP_CONSUMER_START_TIMESTAMP", info.start_time.to_string());
    let mut queues = info.queues.clone();
    queues.sort_by(|a, b| a.0.cmp(&b.0));
    let status: BTreeMap<&String, _> = info.status.iter().collect();
    let root = FjValue::Object(vec![
        (
            FjValue::String("mqTable".into()),
            FjValue::object_key_map(queues.iter().map(|(k, v)| (k, v)))?,
        ),
        (
            FjValue::String("properties".into()),
            FjValue::from_serialize(&properties)?,
        ),
        (
            FjValue::String("statusTable".into()),
            FjValue::from_serialize(&status)?,
        ),
        (
            FjValue::String("subscriptionSet".into()),
            FjValue::from_serialize(&info.subscriptions)?,
        ),
    ]);
    Ok(root.to_compact_string())
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
    let Some(c) = instance.consumer(&h.consumer_group) else {
        return error_response(
            req,
            ResponseCode::SYSTEM_ERROR,
            format!(
                "The Consumer Group <{}> not exist in this consumer",
                h.consumer_group
            ),
        );
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
    use std::collections::{BTreeSet, HashMap};

    use super::*;
    use crate::consumer::process_queue::ProcessQueueInfo;
    use crate::consumer::ConsumeStatus;
    use crate::remoting::protocol::heartbeat::SubscriptionData;

    /// The whole GET_CONSUMER_RUNNING_INFO body, byte for byte: members and map keys in
    /// fastjson's order, queues as object keys sorted by queue, whatever order they came in.
    #[test]
    fn running_info_body_matches_golden() {
        let q = |topic: &str, id: i32, commit: i64| {
            (
                MessageQueue::new(topic, "broker-a", id),
                ProcessQueueInfo {
                    commit_offset: commit,
                    cached_msg_count: id,
                    ..ProcessQueueInfo::default()
                },
            )
        };
        let status = ConsumeStatus {
            pull_rt: 1.5,
            pull_tps: 64.0,
            consume_rt: 2.25,
            consume_ok_tps: 60.0,
            consume_failed_tps: 0.0,
            consume_failed_msgs: 3,
            undecodable_msgs: 1,
        };
        let info = RunningInfo {
            queues: vec![q("T", 1, 7), q("%RETRY%cg", 0, -1), q("T", 0, 42)],
            status: HashMap::from([
                ("T".to_owned(), status.clone()),
                ("%RETRY%cg".to_owned(), ConsumeStatus::default()),
            ]),
            subscriptions: vec![SubscriptionData {
                code_set: BTreeSet::from([2598919]),
                expression_type: "TAG".into(),
                sub_string: "TagA".into(),
                sub_version: 1700000000000,
                tags_set: BTreeSet::from(["TagA".to_owned()]),
                topic: "T".into(),
                ..SubscriptionData::default()
            }],
            thread_core: 20,
            start_time: 1700000000123,
        };
        let body = encode_running_info(
            &info,
            &["127.0.0.1:9876".to_owned(), "127.0.0.2:9876".to_owned()],
        )
        .unwrap();
        let golden = r#"{"mqTable":{{"brokerName":"broker-a","queueId":0,"topic":"%RETRY%cg"}:{"cachedMsgCount":0,"cachedMsgMaxOffset":0,"cachedMsgMinOffset":0,"cachedMsgSizeInMiB":0,"commitOffset":-1,"droped":false,"lastConsumeTimestamp":0,"lastLockTimestamp":0,"lastPullTimestamp":0,"locked":false,"transactionMsgCount":0,"transactionMsgMaxOffset":0,"transactionMsgMinOffset":0,"tryUnlockTimes":0},{"brokerName":"broker-a","queueId":0,"topic":"T"}:{"cachedMsgCount":0,"cachedMsgMaxOffset":0,"cachedMsgMinOffset":0,"cachedMsgSizeInMiB":0,"commitOffset":42,"droped":false,"lastConsumeTimestamp":0,"lastLockTimestamp":0,"lastPullTimestamp":0,"locked":false,"transactionMsgCount":0,"transactionMsgMaxOffset":0,"transactionMsgMinOffset":0,"tryUnlockTimes":0},{"brokerName":"broker-a","queueId":1,"topic":"T"}:{"cachedMsgCount":1,"cachedMsgMaxOffset":0,"cachedMsgMinOffset":0,"cachedMsgSizeInMiB":0,"commitOffset":7,"droped":false,"lastConsumeTimestamp":0,"lastLockTimestamp":0,"lastPullTimestamp":0,"locked":false,"transactionMsgCount":0,"transactionMsgMaxOffset":0,"transactionMsgMinOffset":0,"tryUnlockTimes":0}},"properties":{"PROP_CLIENT_VERSION":"V4_9_8","PROP_CONSUMER_START_TIMESTAMP":"1700000000123","PROP_CONSUME_ORDERLY":"false","PROP_CONSUME_TYPE":"CONSUME_PASSIVELY","PROP_NAMESERVER_ADDR":"127.0.0.1:9876;127.0.0.2:9876;","PROP_THREADPOOL_CORE_SIZE":"20"},"statusTable":{"%RETRY%cg":{"consumeFailedMsgs":0,"consumeFailedTPS":0.0,"consumeOKTPS":0.0,"consumeRT":0.0,"pullRT":0.0,"pullTPS":0.0,"undecodableMsgs":0},"T":{"consumeFailedMsgs":3,"consumeFailedTPS":0.0,"consumeOKTPS":60.0,"consumeRT":2.25,"pullRT":1.5,"pullTPS":64.0,"undecodableMsgs":1}},"subscriptionSet":[{"classFilterMode":false,"codeSet":[2598919],"expressionType":"TAG","subString":"TagA","subVersion":1700000000000,"tagsSet":["TagA"],"topic":"T"}]}"#;
        assert_eq!(body, golden);
    }
}
