//! `CHECK_TRANSACTION_STATE` (39), which a broker sends to a producer of the group that left a
//! half message undecided (Java `ClientRemotingProcessor.checkTransactionState`). The request
//! has no answer: the producer answers later with a one-way `END_TRANSACTION` from its check
//! pool, so nothing here runs user code or waits.

use std::sync::Weak;

use crate::client::instance::MQClientInstance;
use crate::common::{MessageConst, MessageDecoder};
use crate::remoting::protocol::header::CheckTransactionStateRequestHeader;
use crate::remoting::protocol::RemotingCommand;
use crate::remoting::RequestContext;

/// Decodes the check and hands it to the producer of the message's `PGROUP`; every problem is
/// logged (the broker asks again at its next check round).
pub(crate) fn check_transaction_state(
    w: &Weak<MQClientInstance>,
    ctx: &RequestContext,
    req: &RemotingCommand,
) -> Option<RemotingCommand> {
    let instance = w.upgrade()?;
    let header: CheckTransactionStateRequestHeader = match req.decode_header() {
        Ok(h) => h,
        Err(e) => {
            log::warn!("bad CHECK_TRANSACTION_STATE from {}: {e}", ctx.peer_addr());
            return None;
        }
    };
    let msg = match req.body().map(|b| MessageDecoder::decode(b, true, true)) {
        Some(Ok(msg)) => msg,
        Some(Err(e)) => {
            log::warn!(
                "checkTransactionState, decode message failed ({} from {}): {e}",
                header.commit_log_offset,
                ctx.peer_addr()
            );
            return None;
        }
        None => {
            log::warn!(
                "checkTransactionState without a message from {}",
                ctx.peer_addr()
            );
            return None;
        }
    };
    let Some(group) = msg
        .property(MessageConst::PROPERTY_PRODUCER_GROUP)
        .map(str::to_owned)
    else {
        log::warn!(
            "checkTransactionState, pick producer group failed: {} has no PGROUP",
            msg.msg_id()
        );
        return None;
    };
    match instance.producer(&group) {
        Some(producer) => producer.check_transaction_state(&instance, ctx.peer_addr(), msg, header),
        None => log::debug!(
            "checkTransactionState, pick producer by group[{group}] failed: not in this client"
        ),
    }
    None
}
