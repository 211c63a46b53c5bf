//! The HEART_BEAT body (Java `HeartbeatData`, `common.protocol.heartbeat`) and the subscription
//! data it carries. The instance sends it; the consumer builds the subscriptions.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// What a client tells every broker it talks to: who it is and which groups it serves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HeartbeatData {
    #[serde(rename = "clientID")]
    pub(crate) client_id: String,
    #[serde(rename = "consumerDataSet", default)]
    pub(crate) consumer_data_set: Vec<ConsumerData>,
    #[serde(rename = "producerDataSet", default)]
    pub(crate) producer_data_set: Vec<ProducerData>,
}

/// A producer group served by this client.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct ProducerData {
    #[serde(rename = "groupName")]
    pub(crate) group_name: String,
}

/// A consumer group served by this client and its subscriptions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConsumerData {
    pub(crate) consume_from_where: String,
    pub(crate) consume_type: String,
    pub(crate) group_name: String,
    pub(crate) message_model: String,
    pub(crate) subscription_data_set: Vec<SubscriptionData>,
    pub(crate) unit_mode: bool,
}

/// One subscription (Java `SubscriptionData`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SubscriptionData {
    pub(crate) class_filter_mode: bool,
    pub(crate) code_set: BTreeSet<i32>,
    pub(crate) expression_type: String,
    pub(crate) sub_string: String,
    pub(crate) sub_version: i64,
    pub(crate) tags_set: BTreeSet<String>,
    pub(crate) topic: String,
}

impl HeartbeatData {
    /// The JSON body, members in fastjson's alphabetical order.
    pub(crate) fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("heartbeat data always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_java_golden_heartbeat() {
        let golden = r#"{"clientID":"127.0.0.1@12345#1700000000000","consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","consumeType":"CONSUME_PASSIVELY","groupName":"cg","messageModel":"CLUSTERING","subscriptionDataSet":[{"classFilterMode":false,"codeSet":[2598919,2598920],"expressionType":"TAG","subString":"TagA || TagB","subVersion":1700000000000,"tagsSet":["TagA","TagB"],"topic":"T"},{"classFilterMode":false,"codeSet":[],"expressionType":"TAG","subString":"*","subVersion":1700000000001,"tagsSet":[],"topic":"%RETRY%cg"}],"unitMode":false}],"producerDataSet":[{"groupName":"pg"}]}"#;
        let hb = HeartbeatData {
            client_id: "127.0.0.1@12345#1700000000000".into(),
            consumer_data_set: vec![ConsumerData {
                consume_from_where: "CONSUME_FROM_LAST_OFFSET".into(),
                consume_type: "CONSUME_PASSIVELY".into(),
                group_name: "cg".into(),
                message_model: "CLUSTERING".into(),
                subscription_data_set: vec![
                    SubscriptionData {
                        class_filter_mode: false,
                        code_set: [2598919, 2598920].into_iter().collect(),
                        expression_type: "TAG".into(),
                        sub_string: "TagA || TagB".into(),
                        sub_version: 1700000000000,
                        tags_set: ["TagA".to_owned(), "TagB".to_owned()].into_iter().collect(),
                        topic: "T".into(),
                    },
                    SubscriptionData {
                        class_filter_mode: false,
                        code_set: BTreeSet::new(),
                        expression_type: "TAG".into(),
                        sub_string: "*".into(),
                        sub_version: 1700000000001,
                        tags_set: BTreeSet::new(),
                        topic: "%RETRY%cg".into(),
                    },
                ],
                unit_mode: false,
            }],
            producer_data_set: vec![ProducerData {
                group_name: "pg".into(),
            }],
        };
        assert_eq!(String::from_utf8(hb.to_json()).unwrap(), golden);
        let back: HeartbeatData = serde_json::from_str(golden).unwrap();
        assert_eq!(back, hb);
    }
}
