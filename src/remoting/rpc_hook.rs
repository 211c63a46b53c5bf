//! [`RPCHook`]: code that sees every request before it is sent and every response after it
//! arrives (Java `RPCHook`).

use crate::remoting::protocol::RemotingCommand;

/// Runs around the calls of a [`RemotingClient`](super::RemotingClient) (Java `RPCHook`).
///
/// * [`do_before_request`](Self::do_before_request) runs on the calling thread before every
///   request is encoded and sent: sync, async and one-way calls, to brokers and name servers
///   alike, after the connection is made. What it changes goes on the wire; this is where
///   `AclClientRPCHook` signs requests.
/// * [`do_after_response`](Self::do_after_response) runs when a response arrives: on the
///   calling thread for a sync call, on the callback pool before the callback for an async
///   call. It does not run for one-way calls, timeouts or failed connections.
///
/// Hooks run in the order they were registered. They must be quick and must not block: they
/// run on every request. A hook that panics on the calling thread makes the call panic; a
/// `do_after_response` that panics on the callback pool is logged and skipped, and the
/// callback still runs.
///
/// A closure taking `(addr, &mut request)` is a hook that only acts before requests:
///
/// ```
/// use std::sync::Arc;
/// use rocketmq_sync::remoting::protocol::RemotingCommand;
/// use rocketmq_sync::RPCHook;
///
/// let tag_requests = |_addr: &str, request: &mut RemotingCommand| {
///     request.ext_fields_mut().insert("traceId", "t-1");
/// };
/// let hook: Arc<dyn RPCHook> = Arc::new(tag_requests);
/// # let _ = hook;
/// ```
///
/// Hooks are given to a producer or consumer with `rpc_hook(..)` on its builder, or to a
/// `ClientConfig`; a `RemotingClient` used directly takes them with
/// [`register_rpc_hook`](super::RemotingClient::register_rpc_hook).
pub trait RPCHook: Send + Sync {
    /// Called before `request` is sent to `addr` (`host:port`).
    #[doc(alias = "doBeforeRequest")]
    fn do_before_request(&self, addr: &str, request: &mut RemotingCommand);

    /// Called when `response` to `request` arrived from `addr`. Does nothing by default.
    #[doc(alias = "doAfterResponse")]
    fn do_after_response(
        &self,
        addr: &str,
        request: &RemotingCommand,
        response: &mut RemotingCommand,
    ) {
        let _ = (addr, request, response);
    }
}

impl<F> RPCHook for F
where
    F: Fn(&str, &mut RemotingCommand) + Send + Sync,
{
    fn do_before_request(&self, addr: &str, request: &mut RemotingCommand) {
        self(addr, request)
    }
}
