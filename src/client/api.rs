//! `MQClientAPI`: typed calls to name servers and brokers over the remoting client.
//!
//! Java splits this into `MQClientAPIImpl`; here it is one small type over [`RemotingClient`]
//! that builds requests from typed headers and turns responses into typed results or errors.

use std::time::Duration;

use bytes::Bytes;

use crate::common::TopicRouteData;
use crate::error::{Error, Result};
use crate::remoting::protocol::header::{
    GetRouteInfoRequestHeader, SendMessageRequestHeader, SendMessageRequestHeaderV2,
    UnregisterClientRequestHeader,
};
use crate::remoting::protocol::heartbeat::HeartbeatData;
use crate::remoting::protocol::{RemotingCommand, RequestCode, ResponseCode, SerializeType};
use crate::remoting::RemotingClient;

/// Typed RPCs. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct MQClientAPI {
    remoting: RemotingClient,
    serialize_type: SerializeType,
}

/// Returns the response if its code is SUCCESS, else a [`Error::Broker`] with its remark.
pub(crate) fn expect_success(response: RemotingCommand, addr: &str) -> Result<RemotingCommand> {
    if response.response_code() == ResponseCode::SUCCESS {
        Ok(response)
    } else {
        Err(broker_error(&response, addr))
    }
}

/// The [`Error::Broker`] a non-success response stands for.
pub(crate) fn broker_error(response: &RemotingCommand, addr: &str) -> Error {
    Error::Broker {
        code: response.response_code(),
        remark: response.remark().unwrap_or("").to_owned(),
        addr: addr.to_owned(),
    }
}

impl MQClientAPI {
    pub(crate) fn new(remoting: RemotingClient, serialize_type: SerializeType) -> Self {
        MQClientAPI {
            remoting,
            serialize_type,
        }
    }

    pub(crate) fn remoting(&self) -> &RemotingClient {
        &self.remoting
    }

    /// A request in this client's serialize type.
    pub(crate) fn request(&self, mut cmd: RemotingCommand) -> RemotingCommand {
        cmd.set_serialize_type(self.serialize_type);
        cmd
    }

    /// GET_ROUTEINFO_BY_TOPIC. `TOPIC_NOT_EXIST` becomes [`Error::Client`] with code 17, as Java's
    /// `MQClientException`. A route whose queue counts are nonsense (negative, or more than
    /// [`MAX_ROUTE_QUEUES`](crate::common::route::MAX_ROUTE_QUEUES) queues) is an
    /// [`Error::Codec`] that names the topic, broker and value.
    pub(crate) fn get_topic_route_info_from_name_server(
        &self,
        topic: &str,
        timeout: Duration,
    ) -> Result<TopicRouteData> {
        let header = GetRouteInfoRequestHeader {
            topic: topic.to_owned(),
            accept_standard_json_only: None,
        };
        let req = self.request(RemotingCommand::request_with_header(
            RequestCode::GET_ROUTEINFO_BY_TOPIC,
            &header,
        ));
        let resp = self.remoting.invoke_namesrv_sync(req, timeout)?;
        match resp.response_code() {
            ResponseCode::SUCCESS => {
                let body = resp.body().ok_or_else(|| {
                    Error::client(
                        ResponseCode::SYSTEM_ERROR.0,
                        format!("empty route body for topic {topic}"),
                    )
                })?;
                let route = TopicRouteData::decode(body)?;
                // Before anyone builds queues from it: a count of i32::MAX would be 2^31 queues.
                route.check_queue_counts(topic)?;
                Ok(route)
            }
            ResponseCode::TOPIC_NOT_EXIST => Err(Error::client(
                ResponseCode::TOPIC_NOT_EXIST.0,
                format!(
                    "No topic route info in name server for the topic: {topic}{}",
                    resp.remark().map(|r| format!(" ({r})")).unwrap_or_default()
                ),
            )),
            code => Err(Error::client(
                code.0,
                resp.remark().unwrap_or("route query failed").to_owned(),
            )),
        }
    }

    /// Builds a SEND_MESSAGE_V2 (or SEND_BATCH_MESSAGE) request; a reply of request-reply
    /// (property `MSG_TYPE=reply`) goes as SEND_REPLY_MESSAGE_V2, which the broker pushes to
    /// the requesting client (Java `MQClientAPIImpl.sendMessage`).
    pub(crate) fn send_request(
        &self,
        header: &SendMessageRequestHeader,
        body: Bytes,
    ) -> RemotingCommand {
        let code = if header.batch {
            RequestCode::SEND_BATCH_MESSAGE
        } else if crate::client::reply::is_reply(&header.properties) {
            RequestCode::SEND_REPLY_MESSAGE_V2
        } else {
            RequestCode::SEND_MESSAGE_V2
        };
        let v2 = SendMessageRequestHeaderV2::from(header);
        self.request(RemotingCommand::request_with_header(code, &v2).with_body(body))
    }

    /// HEART_BEAT; returns the broker's version.
    pub(crate) fn send_heartbeat(
        &self,
        addr: &str,
        data: &HeartbeatData,
        timeout: Duration,
    ) -> Result<i32> {
        let req = self
            .request(RemotingCommand::request(RequestCode::HEART_BEAT).with_body(data.to_json()));
        let resp = expect_success(self.remoting.invoke_sync(addr, req, timeout)?, addr)?;
        Ok(resp.version())
    }

    /// UNREGISTER_CLIENT for a producer or consumer group.
    pub(crate) fn unregister_client(
        &self,
        addr: &str,
        client_id: &str,
        producer_group: Option<&str>,
        consumer_group: Option<&str>,
        timeout: Duration,
    ) -> Result<()> {
        let header = UnregisterClientRequestHeader {
            client_id: client_id.to_owned(),
            producer_group: producer_group.map(str::to_owned),
            consumer_group: consumer_group.map(str::to_owned),
        };
        let req = self.request(RemotingCommand::request_with_header(
            RequestCode::UNREGISTER_CLIENT,
            &header,
        ));
        expect_success(self.remoting.invoke_sync(addr, req, timeout)?, addr).map(|_| ())
    }
}
