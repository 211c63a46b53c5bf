//! The JSON bodies a peer sends, including fastjson's non-standard object keys.
//!
//! The same input goes to every parser:
//! * `FjValue` (fastjson text with object keys): a parsed value prints, in compact and in pretty
//!   form, text that parses back to the same value;
//! * `ResetOffsetBody` (`RESET_CONSUMER_CLIENT_OFFSET`, a `MessageQueue`-keyed offset table):
//!   decode → encode → decode is the identity;
//! * `TopicRouteData` (`GET_ROUTEINFO_BY_TOPIC`, with fastjson's bare integer keys): decode →
//!   serialize → decode is the identity, and the producer's and consumer's queue lists build.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rocketmq_sync::codec::{topic_publish_queues, topic_subscribe_queues, TopicRouteData};
use rocketmq_sync::remoting::protocol::body::{FjValue, ResetOffsetBody};

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = FjValue::parse_bytes(data) {
        let compact = v.to_compact_string();
        assert_eq!(FjValue::parse(&compact).expect("compact form parses"), v);
        let pretty = v.to_pretty_string();
        assert_eq!(FjValue::parse(&pretty).expect("pretty form parses"), v);
        if let Ok(json) = v.to_json() {
            let _ = json.to_string();
        }
    }

    if let Ok(body) = ResetOffsetBody::decode(data) {
        let text = body.encode().expect("a decoded body encodes");
        assert_eq!(
            ResetOffsetBody::decode(text.as_bytes()).expect("an encoded body decodes"),
            body
        );
    }

    if let Ok(route) = TopicRouteData::decode(data) {
        let text = serde_json::to_vec(&route).expect("a decoded route serializes");
        assert_eq!(
            TopicRouteData::decode(&text).expect("a serialized route decodes"),
            route
        );
        let _ = topic_publish_queues("T", &route);
        let _ = topic_subscribe_queues("T", &route);
    }
});
