//! ACL request signing: [`SessionCredentials`] and [`AclClientRPCHook`] (Java
//! `org.apache.rocketmq.acl.common`).
//!
//! A broker with ACL enabled checks, on every request, an `AccessKey`, an optional
//! `SecurityToken` and a `Signature` in the request's `extFields`. The signature is
//! `Base64(HmacSHA1(secretKey, content))`, where `content` is the values (not the keys) of all
//! `extFields` except `Signature`, in the order of their keys (Java `TreeMap` order), followed
//! by the request body. Brokers that check it: Java 4.x with `aclEnable=true`, Java 5.x with
//! `authenticationEnabled=true` (its v2 remoting authentication keeps this signature), and the
//! rocketmq-rust broker with `authenticationEnabled = true`.

use std::cmp::Ordering;
use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::remoting::protocol::RemotingCommand;
use crate::remoting::RPCHook;

/// `extFields` key of the access key.
pub(crate) const ACCESS_KEY: &str = "AccessKey";
/// `extFields` key of the security token.
pub(crate) const SECURITY_TOKEN: &str = "SecurityToken";
/// `extFields` key of the signature.
pub(crate) const SIGNATURE: &str = "Signature";

/// What `Debug` prints instead of a secret.
const REDACTED: &str = "<redacted>";

/// The credentials an [`AclClientRPCHook`] signs with (Java `SessionCredentials`).
///
/// `Debug` shows the access key only: the secret key and the security token print as
/// `<redacted>`, so a credential never reaches a log through `{:?}`.
///
/// ```
/// use rocketmq_sync::SessionCredentials;
///
/// let creds = SessionCredentials::new("RocketMQ", "12345678");
/// assert_eq!(creds.access_key(), "RocketMQ");
/// assert!(!format!("{creds:?}").contains("12345678"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SessionCredentials {
    access_key: String,
    secret_key: String,
    security_token: Option<String>,
}

impl SessionCredentials {
    /// Credentials of `access_key` with its `secret_key`, without a security token.
    pub fn new(access_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        SessionCredentials {
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            security_token: None,
        }
    }

    /// The same credentials with a security token, sent as `SecurityToken` and signed with the
    /// rest (Java `setSecurityToken`; for brokers that issue temporary credentials).
    #[doc(alias = "setSecurityToken")]
    pub fn with_security_token(mut self, token: impl Into<String>) -> Self {
        self.security_token = Some(token.into());
        self
    }

    /// The access key (sent in clear as `AccessKey`).
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// The security token, if any.
    pub fn security_token(&self) -> Option<&str> {
        self.security_token.as_deref()
    }
}

impl fmt::Debug for SessionCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionCredentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &REDACTED)
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| REDACTED),
            )
            .finish()
    }
}

/// Signs every request with [`SessionCredentials`] (Java `AclClientRPCHook`): sets `AccessKey`,
/// `SecurityToken` (when the credentials have one) and `Signature` in its `extFields`, as a
/// broker with ACL enabled requires.
///
/// Give it to the producer or consumer builder (`rpc_hook`), or to a
/// `ClientConfig`. The hook signs exactly what goes on the wire, so it
/// must be the last hook that changes a request. A broker that refuses the credentials answers
/// `NO_PERMISSION`: see [`Error::is_no_permission`](crate::Error::is_no_permission).
///
/// ```
/// use std::sync::Arc;
/// use rocketmq_sync::{AclClientRPCHook, DefaultMQProducer, SessionCredentials};
///
/// let hook = Arc::new(AclClientRPCHook::new(SessionCredentials::new("RocketMQ", "12345678")));
/// let producer = DefaultMQProducer::builder("pg")
///     .namesrv_addr("127.0.0.1:9876")
///     .rpc_hook(hook)
///     .build()?;
/// # Ok::<(), rocketmq_sync::Error>(())
/// ```
#[derive(Clone)]
pub struct AclClientRPCHook {
    credentials: SessionCredentials,
    /// HMAC state keyed with the secret key, cloned for every request (keying hashes the key).
    mac: Hmac<Sha1>,
}

impl AclClientRPCHook {
    /// A hook signing with `credentials`.
    pub fn new(credentials: SessionCredentials) -> Self {
        let mac = <Hmac<Sha1> as Mac>::new_from_slice(credentials.secret_key.as_bytes())
            .expect("HMAC accepts a key of any length");
        AclClientRPCHook { credentials, mac }
    }

    /// The credentials it signs with.
    #[doc(alias = "getSessionCredentials")]
    pub fn session_credentials(&self) -> &SessionCredentials {
        &self.credentials
    }

    /// The signature of `request` as it stands: `Base64(HmacSHA1(secretKey, values of the
    /// extFields but Signature, in key order, then the body))` (Java `AclUtils` and
    /// `AclSigner`). [`do_before_request`](RPCHook::do_before_request) sets the access key and
    /// token first, then this.
    #[doc(alias = "calSignature")]
    pub fn signature(&self, request: &RemotingCommand) -> String {
        let mut fields: Vec<(&str, &str)> = request
            .ext_fields()
            .iter()
            .filter(|(k, _)| *k != SIGNATURE)
            .collect();
        // Keys are unique in `ExtFields`.
        fields.sort_unstable_by(|a, b| java_string_order(a.0, b.0));
        let mut mac = self.mac.clone();
        for (_, value) in fields {
            mac.update(value.as_bytes());
        }
        if let Some(body) = request.body() {
            mac.update(body);
        }
        BASE64.encode(mac.finalize().into_bytes())
    }
}

impl RPCHook for AclClientRPCHook {
    fn do_before_request(&self, _addr: &str, request: &mut RemotingCommand) {
        let creds = &self.credentials;
        let fields = request.ext_fields_mut();
        fields.insert(ACCESS_KEY, creds.access_key.as_str());
        if let Some(token) = &creds.security_token {
            fields.insert(SECURITY_TOKEN, token.as_str());
        }
        let signature = self.signature(request);
        request.ext_fields_mut().insert(SIGNATURE, signature);
    }
}

impl fmt::Debug for AclClientRPCHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AclClientRPCHook")
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

/// Java's `String.compareTo`: lexicographic over UTF-16 code units. It differs from Rust's
/// byte order only for characters above U+FFFF against U+E000..U+FFFF; header keys are ASCII.
fn java_string_order(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        a.cmp(b)
    } else {
        a.encode_utf16().cmp(b.encode_utf16())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remoting::protocol::RequestCode;

    fn hook(token: Option<&str>) -> AclClientRPCHook {
        let mut creds = SessionCredentials::new("RocketMQ", "12345678");
        if let Some(t) = token {
            creds = creds.with_security_token(t);
        }
        AclClientRPCHook::new(creds)
    }

    #[test]
    fn signs_the_java_vector_without_body() {
        // FACTS.md §18: GET_CONSUMER_LIST_BY_GROUP with consumerGroup=cg, signed string
        // "RocketMQcg".
        let mut req = RemotingCommand::request(RequestCode::GET_CONSUMER_LIST_BY_GROUP);
        req.ext_fields_mut().insert("consumerGroup", "cg");
        hook(None).do_before_request("127.0.0.1:10911", &mut req);
        let f = req.ext_fields();
        assert_eq!(f.get(ACCESS_KEY), Some("RocketMQ"));
        assert_eq!(f.get(SIGNATURE), Some("1K5xuD+vrM8CQtMrDB7ztrLOKb8="));
        assert_eq!(f.get(SECURITY_TOKEN), None);
        assert_eq!(f.len(), 3);
    }

    #[test]
    fn resigning_replaces_the_signature_and_ignores_the_old_one() {
        let h = hook(Some("tok"));
        let mut req =
            RemotingCommand::request(RequestCode::GET_CONSUMER_LIST_BY_GROUP).with_body("hello");
        req.ext_fields_mut().insert("consumerGroup", "cg");
        h.do_before_request("a", &mut req);
        let first = req.ext_fields().get(SIGNATURE).unwrap().to_owned();
        h.do_before_request("a", &mut req);
        assert_eq!(req.ext_fields().get(SIGNATURE), Some(first.as_str()));
        assert_eq!(req.ext_fields().len(), 4);
        // The body and the token are signed.
        let mut no_body = req.clone();
        no_body.take_body();
        assert_ne!(h.signature(&no_body), first);
        let mut other_token = req.clone();
        other_token.ext_fields_mut().insert(SECURITY_TOKEN, "tok2");
        assert_ne!(h.signature(&other_token), first);
    }

    #[test]
    fn keys_sort_as_java_strings() {
        assert_eq!(java_string_order("AccessKey", "a"), Ordering::Less);
        assert_eq!(
            java_string_order("Signature", "SecurityToken"),
            Ordering::Greater
        );
        // U+FF5E (one UTF-16 unit) sorts after U+1F600 (a surrogate pair) in Java, before it
        // in UTF-8 byte order.
        assert_eq!(
            java_string_order("\u{ff5e}", "\u{1f600}"),
            Ordering::Greater
        );
        assert_eq!("\u{ff5e}".cmp("\u{1f600}"), Ordering::Less);
    }

    #[test]
    fn debug_never_shows_the_secret_or_the_token() {
        let h = hook(Some("token-value"));
        for text in [
            format!("{h:?}"),
            format!("{h:#?}"),
            format!("{:?}", h.session_credentials()),
        ] {
            assert!(text.contains("RocketMQ"), "{text}");
            assert!(!text.contains("12345678"), "{text}");
            assert!(!text.contains("token-value"), "{text}");
            assert!(text.contains(REDACTED), "{text}");
        }
    }
}
