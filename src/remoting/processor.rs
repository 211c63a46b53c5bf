//! Processors for requests the broker sends to the client.

use std::sync::{Arc, Weak};

use super::event_loop::{ConnHandle, Shared};
use crate::remoting::protocol::{RemotingCommand, ResponseCode, SerializeType};

/// Where a broker-initiated request came from.
#[derive(Debug, Clone)]
pub struct RequestContext {
    peer_addr: String,
    /// What a response to the request needs, for one sent after the processor returned.
    reply_to: ReplyTo,
}

/// The connection and request a response goes back to.
#[derive(Debug, Clone)]
struct ReplyTo {
    shared: Weak<Shared>,
    conn: Arc<ConnHandle>,
    opaque: i32,
    serialize_type: SerializeType,
    oneway: bool,
    code: i32,
}

impl RequestContext {
    /// The context of `request`, which arrived on the connection `conn`.
    pub(crate) fn new(
        shared: &Arc<Shared>,
        conn: &Arc<ConnHandle>,
        request: &RemotingCommand,
    ) -> Self {
        RequestContext {
            peer_addr: conn.addr.to_string(),
            reply_to: ReplyTo {
                shared: Arc::downgrade(shared),
                conn: Arc::clone(conn),
                opaque: request.opaque(),
                serialize_type: request.serialize_type(),
                oneway: request.is_oneway(),
                code: request.code(),
            },
        }
    }

    /// The address of the peer that sent the request, as the client knows it (`host:port`).
    pub fn peer_addr(&self) -> &str {
        &self.peer_addr
    }

    /// Takes the answer to this request out of the processor's hands: the processor returns
    /// `None` at once and answers later, from any thread, through the [`Responder`], so that
    /// work that may take long (a user's listener) does not hold a callback thread.
    pub(crate) fn defer_response(&self) -> Responder {
        Responder {
            reply_to: Some(self.reply_to.clone()),
        }
    }
}

/// Sends the response to one broker-initiated request after its processor returned (see
/// [`RequestContext::defer_response`]). Dropped without [`send`](Self::send), it answers
/// `SYSTEM_ERROR`, so the broker never waits for an answer that will not come.
#[derive(Debug)]
pub(crate) struct Responder {
    reply_to: Option<ReplyTo>,
}

impl Responder {
    /// Sends `response` on the connection the request came on (nothing for a one-way
    /// request). The opaque, serialize type and response flag are set here.
    pub(crate) fn send(mut self, response: RemotingCommand) {
        if let Some(to) = self.reply_to.take() {
            to.send(response);
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Some(to) = self.reply_to.take() {
            log::warn!(
                "the response to request code {} was dropped unanswered",
                to.code
            );
            to.send(RemotingCommand::response(
                ResponseCode::SYSTEM_ERROR,
                Some("the client dropped the request before answering it".to_owned()),
            ));
        }
    }
}

impl ReplyTo {
    fn send(self, response: RemotingCommand) {
        if self.oneway {
            return;
        }
        let Some(shared) = self.shared.upgrade() else {
            log::debug!(
                "dropping the response to request code {}: client shut down",
                self.code
            );
            return;
        };
        shared.send_reply(
            &self.conn,
            self.code,
            self.opaque,
            self.serialize_type,
            response,
        );
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
