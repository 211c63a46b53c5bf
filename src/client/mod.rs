//! MQClientInstance and the typed broker/name-server API.
