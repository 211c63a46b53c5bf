//! The consumer's side of message trace (Java `ConsumeMessageTraceHookImpl`): a
//! [`ConsumeMessageHook`] that records a `SubBefore` before each listener call and a `SubAfter`
//! after it, into the consumer's [`AsyncTraceDispatcher`].

use std::cell::RefCell;
use std::sync::Arc;

use crate::common::util::now_millis;
use crate::common::{MessageClientIDSetter, MessageConst, MessageExt};
use crate::consumer::listener::{ConsumeMessageContext, ConsumeMessageHook};
use crate::producer::trace::{
    AsyncTraceDispatcher, TraceBean, TraceContext, TraceType, DEFAULT_REGION,
};

/// Java `ConsumeReturnType.SUCCESS` and `FAILED`.
const CONSUME_SUCCESS: i32 = 0;
const CONSUME_FAILED: i32 = 4;

thread_local! {
    /// The `SubBefore` of the listener call running on this thread: the before and after hooks
    /// of one call run on the same consume thread, one call at a time.
    static BEFORE: RefCell<Option<(i64, String, Vec<TraceBean>)>> = const { RefCell::new(None) };
}

/// Records each listener call of a consumer into its trace dispatcher.
#[derive(Debug)]
pub(crate) struct ConsumeMessageTraceHook {
    pub(crate) dispatcher: Arc<AsyncTraceDispatcher>,
}

/// Whether a message asks not to be traced (`TRACE_ON=false`).
fn traced(m: &MessageExt) -> bool {
    m.property(MessageConst::PROPERTY_TRACE_SWITCH) != Some("false")
}

impl ConsumeMessageHook for ConsumeMessageTraceHook {
    fn hook_name(&self) -> &str {
        "ConsumeMessageTraceHook"
    }

    fn consume_message_before(&self, ctx: &ConsumeMessageContext<'_>) {
        let beans: Vec<TraceBean> = ctx
            .msgs
            .iter()
            .filter(|m| traced(m))
            .map(|m| TraceBean {
                topic: m.topic().to_owned(),
                msg_id: m.msg_id().into_owned(),
                tags: m.tags().unwrap_or_default().to_owned(),
                keys: m.keys().unwrap_or_default().to_owned(),
                body_length: m.body().len() as i32,
                retry_times: m.reconsume_times(),
                ..TraceBean::default()
            })
            .collect();
        if beans.is_empty() {
            BEFORE.with(|b| *b.borrow_mut() = None);
            return;
        }
        let now = now_millis();
        let region = ctx
            .msgs
            .first()
            .and_then(|m| m.property(MessageConst::PROPERTY_MSG_REGION))
            .unwrap_or(DEFAULT_REGION)
            .to_owned();
        let request_id = MessageClientIDSetter::create_uniq_id();
        let mut record = TraceContext::new(TraceType::SubBefore);
        record.time_stamp = now;
        record.region_id = region;
        record.group_name = self.dispatcher.group.clone();
        record.request_id = request_id.clone();
        record.trace_beans = beans.clone();
        self.dispatcher.append(record);
        BEFORE.with(|b| *b.borrow_mut() = Some((now, request_id, beans)));
    }

    fn consume_message_after(&self, ctx: &ConsumeMessageContext<'_>) {
        let Some((began, request_id, beans)) = BEFORE.with(|b| b.borrow_mut().take()) else {
            return;
        };
        let now = now_millis();
        let mut record = TraceContext::new(TraceType::SubAfter);
        record.time_stamp = now;
        record.request_id = request_id;
        record.group_name = self.dispatcher.group.clone();
        // Java divides the call's time over its messages.
        record.cost_time = (now - began) / beans.len().max(1) as i64;
        record.success = ctx.success;
        record.context_code = if ctx.success {
            CONSUME_SUCCESS
        } else {
            CONSUME_FAILED
        };
        record.trace_beans = beans;
        self.dispatcher.append(record);
    }
}
