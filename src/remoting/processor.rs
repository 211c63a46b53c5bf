//! Processors for requests the broker sends to the client.

use crate::remoting::protocol::RemotingCommand;

/// Where a broker-initiated request came from.
#[derive(Debug, Clone)]
pub struct RequestContext {
    peer_addr: String,
}

impl RequestContext {
    pub(crate) fn new(peer_addr: String) -> Self {
        RequestContext { peer_addr }
    }

    /// The address of the peer that sent the request, as the client knows it (`host:port`).
    pub fn peer_addr(&self) -> &str {
        &self.peer_addr
    }
}

/// Handles one request code sent by a broker, such as `NOTIFY_CONSUMER_IDS_CHANGED` or
/// `CHECK_TRANSACTION_STATE` (Java `NettyRequestProcessor`).
///
/// Processors run on the client's `rmq-cb` callback pool, never on the io thread, so they may
/// block (briefly). At most `max_pending_broker_requests` requests wait for or run on the pool;
/// beyond that the peer is answered `SYSTEM_BUSY` without the processor being called. The returned command is sent back as the response: the client sets the
/// request's opaque and serialize type and the response flag. `None` sends nothing, and nothing
/// is sent for a one-way request. A panic becomes a `SYSTEM_ERROR` response.
///
/// Closures implement this trait:
///
/// ```
/// use rocketmq_sync::remoting::{RequestContext, RequestProcessor};
/// use rocketmq_sync::remoting::protocol::{RemotingCommand, ResponseCode};
///
/// let p = |_ctx: &RequestContext, req: RemotingCommand| {
///     Some(RemotingCommand::response_to(&req, ResponseCode::SUCCESS, None))
/// };
/// fn is_processor(_: &impl RequestProcessor) {}
/// is_processor(&p);
/// ```
///
/// A processor that holds a clone of the `RemotingClient` it is registered with keeps that
/// client alive: call `shutdown()` explicitly in that case.
pub trait RequestProcessor: Send + Sync {
    /// Handles `request`; returns the response to send, if any.
    fn process_request(
        &self,
        ctx: &RequestContext,
        request: RemotingCommand,
    ) -> Option<RemotingCommand>;
}

impl<F> RequestProcessor for F
where
    F: Fn(&RequestContext, RemotingCommand) -> Option<RemotingCommand> + Send + Sync,
{
    fn process_request(
        &self,
        ctx: &RequestContext,
        request: RemotingCommand,
    ) -> Option<RemotingCommand> {
        self(ctx, request)
    }
}
