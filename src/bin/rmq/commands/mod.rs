//! One module per command; what several commands share is here.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rocketmq_sync::{DefaultMQAdminExt, MessageExt};
use serde_json::{json, Value};

use crate::{Failure, Global};

pub(crate) mod cluster;
pub(crate) mod consume;
pub(crate) mod message;
pub(crate) mod progress;
pub(crate) mod send;
pub(crate) mod topic;

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A client instance name of its own for this run, so that two `rmq` runs (or `rmq` next to
/// an application in one process tree) never share a client id on the broker.
pub(crate) fn instance_name() -> String {
    format!("rmq-cli-{}-{}", std::process::id(), now_ms())
}

/// A started admin client; the caller shuts it down through [`Admin`]'s drop.
pub(crate) struct Admin(pub(crate) DefaultMQAdminExt);

impl Admin {
    pub(crate) fn start(g: &Global) -> Result<Admin, Failure> {
        let admin = DefaultMQAdminExt::builder()
            .namesrv_addr(g.namesrv()?)
            .instance_name(instance_name())
            .timeout(Duration::from_secs(g.timeout))
            .build()
            .map_err(|e| Failure::from_error("admin client", &e))?;
        admin
            .start()
            .map_err(|e| Failure::from_error("admin client start", &e))?;
        Ok(Admin(admin))
    }
}

impl std::ops::Deref for Admin {
    type Target = DefaultMQAdminExt;
    fn deref(&self) -> &DefaultMQAdminExt {
        &self.0
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

/// A received message for scripts: every field mqadmin shows, the body as text when it is
/// UTF-8 (`body`) and else as base64 (`body_base64`).
pub(crate) fn message_json(msg: &MessageExt) -> Value {
    let props: serde_json::Map<String, Value> = msg
        .properties()
        .iter()
        .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
        .collect();
    let mut v = json!({
        "topic": msg.topic(),
        "msg_id": msg.msg_id(),
        "offset_msg_id": msg.offset_msg_id(),
        "broker_name": msg.broker_name(),
        "queue_id": msg.queue_id(),
        "queue_offset": msg.queue_offset(),
        "commit_log_offset": msg.commit_log_offset(),
        "tags": msg.tags(),
        "keys": msg.keys(),
        "reconsume_times": msg.reconsume_times(),
        "born_timestamp": msg.born_timestamp(),
        "store_timestamp": msg.store_timestamp(),
        "born_host": msg.born_host().to_string(),
        "store_host": msg.store_host().to_string(),
        "sys_flag": msg.sys_flag(),
        "properties": props,
    });
    match std::str::from_utf8(msg.body()) {
        Ok(text) => v["body"] = Value::String(text.to_owned()),
        Err(_) => {
            v["body_base64"] =
                Value::String(base64::engine::general_purpose::STANDARD.encode(msg.body()))
        }
    }
    v
}

/// `Properties:` as mqadmin shows them, `{K=V, K=V}` in the stored order.
pub(crate) fn properties_text(msg: &MessageExt) -> String {
    let props = msg.properties();
    let pairs: Vec<String> = props.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", pairs.join(", "))
}
