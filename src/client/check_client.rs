//! `CHECK_CLIENT_CONFIG` (46): asks the brokers of a topic whether they accept a subscription
//! that is not by tag (Java `MQClientInstance.checkClientInBroker`). A broker without property
//! filtering (`enablePropertyFilter = false`) refuses SQL92; a broker that cannot compile the
//! expression says why. Without the check such a consumer starts and then never receives
//! anything, every pull refused.

use serde::Serialize;

use crate::client::api::expect_success;
use crate::client::instance::MQClientInstance;
use crate::error::{ClientErrorCode, Error, Result};
use crate::remoting::protocol::heartbeat::SubscriptionData;
use crate::remoting::protocol::{RemotingCommand, RequestCode};

/// Java `CheckClientRequestBody`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CheckClientRequestBody<'a> {
    client_id: &'a str,
    group: &'a str,
    subscription_data: &'a SubscriptionData,
}

/// Checks `sd` of `group` with every broker of its topic's route (updated first). A tag
/// subscription needs no check. The error names the broker and carries its code and remark.
pub(crate) fn check_client_in_broker(
    instance: &MQClientInstance,
    group: &str,
    sd: &SubscriptionData,
) -> Result<()> {
    if sd.expression_type == "TAG" {
        return Ok(());
    }
    instance.update_topic_route_info_from_name_server(&sd.topic);
    let body = serde_json::to_vec(&CheckClientRequestBody {
        client_id: instance.client_id(),
        group,
        subscription_data: sd,
    })
    .map_err(|e| {
        Error::config(format!(
            "the subscription of {} does not encode: {e}",
            sd.topic
        ))
    })?;
    let timeout = instance.config().mq_client_api_timeout;
    // Java asks one broker; each broker filters its own queues, so each must accept.
    for addr in instance.topic_broker_addrs(&sd.topic) {
        let request = instance.api().request(
            RemotingCommand::request(RequestCode::CHECK_CLIENT_CONFIG).with_body(body.clone()),
        );
        let outcome = instance
            .remoting()
            .invoke_sync(&addr, request, timeout)
            .and_then(|response| expect_success(response, &addr));
        if let Err(e) = outcome {
            let code = e
                .response_code()
                .map_or(ClientErrorCode::NO_CODE, ClientErrorCode::from);
            return Err(Error::client_caused_by(
                code,
                format!(
                    "the broker {addr} refused the {} subscription of group {group} to {} ({:?}): {e}",
                    sd.expression_type, sd.topic, sd.sub_string
                ),
                e,
            ));
        }
    }
    Ok(())
}
