//! Remoting: the protocol and the client.
pub mod protocol;
