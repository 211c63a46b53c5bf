//! Subscriptions (Java `FilterAPI`, `SubscriptionData`) and the consumer's settings enums.

use crate::common::util::{java_string_hash, now_millis};
use crate::error::{Error, Result};
use crate::remoting::protocol::heartbeat::SubscriptionData;

/// Subscribe to every tag.
pub const SUB_ALL: &str = "*";

/// Clustering or broadcasting (Java `MessageModel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MessageModel {
    /// Each message goes to one consumer of the group.
    #[default]
    Clustering,
    /// Each message goes to every consumer of the group.
    Broadcasting,
}

impl MessageModel {
    /// The Java enum name.
    pub fn as_java_str(self) -> &'static str {
        match self {
            MessageModel::Clustering => "CLUSTERING",
            MessageModel::Broadcasting => "BROADCASTING",
        }
    }
}

/// Where a consumer group starts on a queue it has no offset for (Java `ConsumeFromWhere`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ConsumeFromWhere {
    /// The queue's end: only new messages.
    #[default]
    LastOffset,
    /// The queue's beginning.
    FirstOffset,
    /// The first message stored at or after the consumer's `consume_timestamp`.
    Timestamp,
}

impl ConsumeFromWhere {
    /// The Java enum name.
    pub fn as_java_str(self) -> &'static str {
        match self {
            ConsumeFromWhere::LastOffset => "CONSUME_FROM_LAST_OFFSET",
            ConsumeFromWhere::FirstOffset => "CONSUME_FROM_FIRST_OFFSET",
            ConsumeFromWhere::Timestamp => "CONSUME_FROM_TIMESTAMP",
        }
    }
}

/// The kind of a subscription expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ExpressionType {
    /// `"*"` or `"TagA || TagB"`.
    #[default]
    Tag,
    /// An SQL92 filter over message properties, evaluated by the broker.
    Sql92,
}

impl ExpressionType {
    /// The wire name.
    pub fn as_java_str(self) -> &'static str {
        match self {
            ExpressionType::Tag => "TAG",
            ExpressionType::Sql92 => "SQL92",
        }
    }
}

/// Builds the subscription of `topic` to `expr` (Java `FilterAPI.buildSubscriptionData`).
pub(crate) fn build_subscription_data(
    topic: &str,
    expr: &str,
    kind: ExpressionType,
) -> Result<SubscriptionData> {
    let mut sd = SubscriptionData {
        class_filter_mode: false,
        expression_type: kind.as_java_str().to_owned(),
        sub_version: now_millis(),
        topic: topic.to_owned(),
        ..SubscriptionData::default()
    };
    match kind {
        ExpressionType::Sql92 => {
            if expr.trim().is_empty() {
                return Err(Error::config(format!(
                    "the SQL92 expression of topic {topic} is empty"
                )));
            }
            sd.sub_string = expr.to_owned();
        }
        ExpressionType::Tag => {
            let expr = expr.trim();
            if expr.is_empty() || expr == SUB_ALL {
                sd.sub_string = SUB_ALL.to_owned();
            } else {
                sd.sub_string = expr.to_owned();
                for tag in expr.split("||").map(str::trim).filter(|t| !t.is_empty()) {
                    sd.tags_set.insert(tag.to_owned());
                    sd.code_set.insert(java_string_hash(tag));
                }
                if sd.tags_set.is_empty() {
                    return Err(Error::config(format!(
                        "subscription expression {expr:?} of topic {topic} has no tag"
                    )));
                }
            }
        }
    }
    Ok(sd)
}

/// Client-side tag filter: `true` when `tags` passes `sd` (Java re-filters only TAG
/// subscriptions with a non-empty tag set, by exact string match).
pub(crate) fn tag_matches(sd: &SubscriptionData, tags: Option<&str>) -> bool {
    if sd.tags_set.is_empty() || sd.class_filter_mode || sd.expression_type != "TAG" {
        return true;
    }
    tags.is_some_and(|t| sd.tags_set.contains(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_all_and_tags_like_java() {
        let all = build_subscription_data("T", "*", ExpressionType::Tag).unwrap();
        assert_eq!(all.sub_string, "*");
        assert!(all.tags_set.is_empty() && all.code_set.is_empty());
        let two = build_subscription_data("T", "TagA || TagB ||", ExpressionType::Tag).unwrap();
        assert_eq!(two.tags_set.len(), 2);
        assert!(two.code_set.contains(&2598919) && two.code_set.contains(&2598920));
        assert!(tag_matches(&two, Some("TagA")));
        assert!(!tag_matches(&two, Some("TagC")));
        assert!(!tag_matches(&two, None));
        assert!(tag_matches(&all, None));
        assert!(build_subscription_data("T", "||", ExpressionType::Tag).is_err());
        let sql = build_subscription_data("T", "a > 1", ExpressionType::Sql92).unwrap();
        assert_eq!(sql.expression_type, "SQL92");
        assert!(tag_matches(&sql, None));
    }
}
