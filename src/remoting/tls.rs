//! [`TlsConfig`]: the TLS settings of a client's connections, and the rustls client
//! configuration built from them once per [`RemotingClient`](super::RemotingClient).
//!
//! Java keeps these settings in `TlsSystemConfig`: system properties (`tls.client.*`) overridden
//! by the properties file `tls.config.file`. [`TlsConfig::from_env`] reads the same keys, with
//! environment variables standing in for system properties (see there). The one deliberate
//! difference: Java verifies nothing unless `tls.test.mode.enable=false` and
//! `tls.client.authServer=true` are both set; here the server's certificate is verified unless
//! one of them says otherwise explicitly.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::{Error, Result};

/// Java's `tls.config.file` default.
const DEFAULT_CONFIG_FILE: &str = "/etc/rocketmq/tls.properties";

/// The environment variables [`TlsConfig::from_env`] and `ClientConfig` read, with the Java
/// system property each one stands for.
pub(crate) mod env {
    /// `tls.enable`: whether clients use TLS (read by `ClientConfig`).
    pub(crate) const ENABLE: &str = "TLS_ENABLE";
    /// `tls.config.file`: a properties file whose `tls.*` keys override the variables below.
    pub(crate) const CONFIG_FILE: &str = "TLS_CONFIG_FILE";
    /// `tls.test.mode.enable`: `true` skips verifying the server.
    pub(crate) const TEST_MODE_ENABLE: &str = "TLS_TEST_MODE_ENABLE";
    /// `tls.client.authServer`: `false` skips verifying the server.
    pub(crate) const CLIENT_AUTHSERVER: &str = "TLS_CLIENT_AUTHSERVER";
    /// `tls.client.trustCertPath`: the CA bundle (PEM).
    pub(crate) const CLIENT_TRUSTCERTPATH: &str = "TLS_CLIENT_TRUSTCERTPATH";
    /// `tls.client.certPath`: the client certificate chain (PEM), for mutual TLS.
    pub(crate) const CLIENT_CERTPATH: &str = "TLS_CLIENT_CERTPATH";
    /// `tls.client.keyPath`: the client's private key (PEM), for mutual TLS.
    pub(crate) const CLIENT_KEYPATH: &str = "TLS_CLIENT_KEYPATH";
    /// `tls.client.keyPassword`: encrypted keys are not supported; setting it is an error.
    pub(crate) const CLIENT_KEYPASSWORD: &str = "TLS_CLIENT_KEYPASSWORD";
}

/// The TLS settings of a client (Java `TlsSystemConfig`, client side).
///
/// TLS itself is switched on per client: `ClientConfigBuilder::use_tls` (Java `useTLS`), or
/// [`RemotingClientConfig::tls`](super::RemotingClientConfig::tls) for a bare
/// [`RemotingClient`](super::RemotingClient). When on, every connection of the client (name
/// servers and brokers) is TLS, as in Java.
///
/// By default the server's certificate chain is verified against Mozilla's root certificates
/// (the `webpki-roots` crate) and its name against the host of the address connected to (an IP
/// address must then be in the certificate's subject alternative names). The files are read when
/// the client starts; a missing or malformed file fails the start with
/// [`Error::Config`](crate::Error::Config).
///
/// ```
/// use rocketmq_sync::remoting::TlsConfig;
///
/// let tls = TlsConfig::new()
///     .trust_cert_path("/etc/rocketmq/ca.pem")
///     .client_cert("/etc/rocketmq/client.pem", "/etc/rocketmq/client.key")
///     .server_name("broker.example.com");
/// assert!(tls.verifies_server());
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsConfig {
    trust_cert_path: Option<PathBuf>,
    cert_path: Option<PathBuf>,
    key_path: Option<PathBuf>,
    server_name: Option<String>,
    verify_server: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig::new()
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Paths only: no key material is ever held here.
        f.debug_struct("TlsConfig")
            .field("trust_cert_path", &self.trust_cert_path)
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("server_name", &self.server_name)
            .field("verify_server", &self.verify_server)
            .finish()
    }
}

impl TlsConfig {
    /// Verification on, Mozilla's roots, no client certificate, the server name taken from each
    /// address. Reads nothing from the environment (see [`from_env`](Self::from_env)).
    pub fn new() -> Self {
        TlsConfig {
            trust_cert_path: None,
            cert_path: None,
            key_path: None,
            server_name: None,
            verify_server: true,
        }
    }

    /// The settings Java would take from its `tls.*` system properties and `tls.config.file`,
    /// here read from environment variables named after the properties:
    ///
    /// | variable | Java property | meaning |
    /// |---|---|---|
    /// | `TLS_CLIENT_TRUSTCERTPATH` | `tls.client.trustCertPath` | [`trust_cert_path`](Self::trust_cert_path) |
    /// | `TLS_CLIENT_CERTPATH` | `tls.client.certPath` | certificate of [`client_cert`](Self::client_cert) |
    /// | `TLS_CLIENT_KEYPATH` | `tls.client.keyPath` | key of [`client_cert`](Self::client_cert) |
    /// | `TLS_CLIENT_AUTHSERVER` | `tls.client.authServer` | `false`: [`verify_server(false)`](Self::verify_server) |
    /// | `TLS_TEST_MODE_ENABLE` | `tls.test.mode.enable` | `true`: [`verify_server(false)`](Self::verify_server) |
    /// | `TLS_CLIENT_KEYPASSWORD` | `tls.client.keyPassword` | not supported: an error if set |
    /// | `TLS_CONFIG_FILE` | `tls.config.file` | a Java properties file, default `/etc/rocketmq/tls.properties` |
    ///
    /// The file's `tls.*` keys (the Java property names) override the variables, as in Java; a
    /// missing file is skipped unless `TLS_CONFIG_FILE` names it. Unlike Java, an unset
    /// `tls.client.authServer` or `tls.test.mode.enable` leaves verification on. Booleans are
    /// `true` or `false` (any case); anything else is an [`Error::Config`] naming the variable.
    pub fn from_env() -> Result<TlsConfig> {
        let mut settings = JavaSettings::default();
        for (var, key) in [
            (env::TEST_MODE_ENABLE, "tls.test.mode.enable"),
            (env::CLIENT_AUTHSERVER, "tls.client.authServer"),
            (env::CLIENT_TRUSTCERTPATH, "tls.client.trustCertPath"),
            (env::CLIENT_CERTPATH, "tls.client.certPath"),
            (env::CLIENT_KEYPATH, "tls.client.keyPath"),
            (env::CLIENT_KEYPASSWORD, "tls.client.keyPassword"),
        ] {
            if let Some(value) = env_var(var)? {
                settings.apply(key, &value, &format!("environment variable {var}"))?;
            }
        }
        let (file, named) = match env_var(env::CONFIG_FILE)? {
            Some(f) if !f.trim().is_empty() => (PathBuf::from(f.trim()), true),
            _ => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
        };
        match std::fs::read_to_string(&file) {
            Ok(text) => settings.apply_properties(&text, &file)?,
            Err(e) if !named && e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::config(format!(
                    "cannot read the TLS properties file {} ({}): {e}",
                    file.display(),
                    env::CONFIG_FILE
                )))
            }
        }
        settings.into_config()
    }

    /// The CA certificates (a PEM bundle) that server certificates must chain to, instead of
    /// Mozilla's roots. Java `tls.client.trustCertPath`.
    pub fn trust_cert_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.trust_cert_path = Some(path.into());
        self
    }

    /// The certificate chain and private key (PEM files; the key PKCS#8, PKCS#1 or SEC1,
    /// unencrypted) this client presents to servers that ask for one (mutual TLS). Java
    /// `tls.client.certPath` and `tls.client.keyPath`.
    pub fn client_cert(
        mut self,
        cert_path: impl Into<PathBuf>,
        key_path: impl Into<PathBuf>,
    ) -> Self {
        self.cert_path = Some(cert_path.into());
        self.key_path = Some(key_path.into());
        self
    }

    /// The name sent as SNI and checked against every server's certificate, instead of the host
    /// of the address connected to. For clusters whose brokers, registered by IP address, share
    /// one certificate issued for a DNS name. An IP address is accepted too.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Whether to verify the server's certificate (default `true`). `false` accepts any
    /// certificate, as Java does by default (`tls.test.mode.enable`): the connection is
    /// encrypted but the peer is not authenticated, so anyone on the path can intercept it. Only
    /// for test setups with self-signed certificates.
    pub fn verify_server(mut self, verify: bool) -> Self {
        self.verify_server = verify;
        self
    }

    /// The CA bundle, if one is set.
    pub fn trust_cert_file(&self) -> Option<&Path> {
        self.trust_cert_path.as_deref()
    }

    /// The client certificate chain file, if one is set.
    pub fn client_cert_file(&self) -> Option<&Path> {
        self.cert_path.as_deref()
    }

    /// The client private key file, if one is set.
    pub fn client_key_file(&self) -> Option<&Path> {
        self.key_path.as_deref()
    }

    /// The server name override, if one is set.
    pub fn server_name_override(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// Whether server certificates are verified.
    pub fn verifies_server(&self) -> bool {
        self.verify_server
    }

    /// Loads the files and builds the rustls configuration.
    pub(crate) fn connector(&self) -> Result<TlsConnector> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::config(format!("TLS: {e}")))?;
        let builder = if self.verify_server {
            let mut roots = RootCertStore::empty();
            match &self.trust_cert_path {
                Some(path) => {
                    for cert in load_certs(path, "trust_cert_path (tls.client.trustCertPath)")? {
                        roots.add(cert).map_err(|e| {
                            Error::config(format!(
                                "TLS trust_cert_path {}: unusable CA certificate: {e}",
                                path.display()
                            ))
                        })?;
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            builder.with_root_certificates(roots)
        } else {
            log::warn!(
                "TLS server certificates are NOT verified (verify_server(false), \
                 tls.client.authServer=false or tls.test.mode.enable=true): the peer is not \
                 authenticated"
            );
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert(provider)))
        };
        let config = match (&self.cert_path, &self.key_path) {
            (Some(cert_path), Some(key_path)) => {
                let chain = load_certs(cert_path, "client certificate (tls.client.certPath)")?;
                let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
                    Error::config(format!(
                        "TLS client key (tls.client.keyPath) {}: {e}",
                        key_path.display()
                    ))
                })?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    Error::config(format!(
                        "TLS client certificate {} and key {} do not make a usable pair: {e}",
                        cert_path.display(),
                        key_path.display()
                    ))
                })?
            }
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) | (None, Some(_)) => {
                return Err(Error::config(
                    "TLS: a client certificate needs both its certificate and key files \
                     (tls.client.certPath and tls.client.keyPath)",
                ))
            }
        };
        let server_name = match &self.server_name {
            Some(name) => Some(parse_server_name(name).map_err(|e| {
                Error::config(format!(
                    "TLS server_name {name:?} is not a DNS name or IP address: {e}"
                ))
            })?),
            None => None,
        };
        Ok(TlsConnector {
            config: Arc::new(config),
            server_name,
        })
    }
}

/// A built rustls client configuration plus the server name override; shared by every
/// connection of one client.
#[derive(Debug, Clone)]
pub(crate) struct TlsConnector {
    pub(crate) config: Arc<rustls::ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl TlsConnector {
    /// The name to send and verify for a connection to `addr` (`host:port`, `[v6]:port`).
    pub(crate) fn server_name_for(&self, addr: &str) -> io::Result<ServerName<'static>> {
        if let Some(name) = &self.server_name {
            return Ok(name.clone());
        }
        let host = match addr.rsplit_once(':') {
            Some((host, port)) if port.parse::<u16>().is_ok() => host,
            _ => addr,
        };
        parse_server_name(host).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the host {host:?} is not a valid TLS server name ({e}); set TlsConfig::server_name"),
            )
        })
    }
}

fn parse_server_name(host: &str) -> std::result::Result<ServerName<'static>, String> {
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())
}

fn load_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let bad = |e: &dyn fmt::Display| Error::config(format!("TLS {what} {}: {e}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(&e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    if certs.is_empty() {
        return Err(bad(&"no PEM certificate in the file"));
    }
    Ok(certs)
}

fn env_var(name: &str) -> Result<Option<String>> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::config(format!(
            "the environment variable {name} is not valid UTF-8"
        ))),
    }
}

/// `true`/`false` in any case, else a clear error naming where the value came from.
pub(crate) fn parse_bool(value: &str, source: &str) -> Result<bool> {
    match value.trim() {
        v if v.eq_ignore_ascii_case("true") => Ok(true),
        v if v.eq_ignore_ascii_case("false") => Ok(false),
        v => Err(Error::config(format!(
            "{source} must be true or false, not {v:?}"
        ))),
    }
}

/// Java's client-side `TlsSystemConfig` keys, collected before they become a [`TlsConfig`].
#[derive(Default)]
struct JavaSettings {
    test_mode: Option<bool>,
    auth_server: Option<bool>,
    trust_cert_path: Option<String>,
    cert_path: Option<String>,
    key_path: Option<String>,
    key_password: Option<String>,
}

impl JavaSettings {
    /// One Java key; empty values count as unset, as Java's `isNullOrEmpty`. Server-side keys
    /// and unknown keys are ignored.
    fn apply(&mut self, key: &str, value: &str, source: &str) -> Result<()> {
        let value = value.trim();
        let text = || (!value.is_empty()).then(|| value.to_owned());
        match key {
            "tls.test.mode.enable" if !value.is_empty() => {
                self.test_mode = Some(parse_bool(value, source)?)
            }
            "tls.client.authServer" if !value.is_empty() => {
                self.auth_server = Some(parse_bool(value, source)?)
            }
            "tls.client.trustCertPath" => self.trust_cert_path = text(),
            "tls.client.certPath" => self.cert_path = text(),
            "tls.client.keyPath" => self.key_path = text(),
            "tls.client.keyPassword" => self.key_password = text(),
            _ => {}
        }
        Ok(())
    }

    /// The `key=value` / `key: value` lines of a Java properties file (`#` and `!` comments).
    /// Line continuations and escapes are not interpreted: paths rarely need them.
    fn apply_properties(&mut self, text: &str, file: &Path) -> Result<()> {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let Some(at) = line.find(['=', ':']) else {
                continue;
            };
            let (key, value) = (line[..at].trim(), &line[at + 1..]);
            let source = format!("{} line {} ({key})", file.display(), n + 1);
            self.apply(key, value, &source)?;
        }
        Ok(())
    }

    fn into_config(self) -> Result<TlsConfig> {
        if self.key_password.is_some() {
            return Err(Error::config(
                "tls.client.keyPassword is set, but encrypted private keys are not supported: \
                 give an unencrypted PKCS#8 key file (openssl pkcs8 -topk8 -nocrypt)",
            ));
        }
        let mut config = TlsConfig::new();
        config.trust_cert_path = self.trust_cert_path.map(PathBuf::from);
        config.cert_path = self.cert_path.map(PathBuf::from);
        config.key_path = self.key_path.map(PathBuf::from);
        config.verify_server = self.auth_server != Some(false) && self.test_mode != Some(true);
        Ok(config)
    }
}

/// `verify_server(false)`: any certificate is accepted, but the handshake signatures are still
/// checked, so the session keys belong to whoever holds the presented certificate's key.
#[derive(Debug)]
struct AcceptAnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_from_addresses() {
        let c = TlsConfig::new().connector().unwrap();
        assert_eq!(
            c.server_name_for("127.0.0.1:10911").unwrap(),
            ServerName::IpAddress("127.0.0.1".parse::<IpAddr>().unwrap().into())
        );
        assert_eq!(
            c.server_name_for("[::1]:10911").unwrap(),
            ServerName::IpAddress("::1".parse::<IpAddr>().unwrap().into())
        );
        assert_eq!(
            c.server_name_for("broker-a.example:10911").unwrap(),
            ServerName::try_from("broker-a.example").unwrap()
        );
        assert!(c.server_name_for("bad host:1").is_err());
        let o = TlsConfig::new()
            .server_name("b.example")
            .connector()
            .unwrap();
        assert_eq!(
            o.server_name_for("10.0.0.1:1").unwrap(),
            ServerName::try_from("b.example").unwrap()
        );
        let err = TlsConfig::new()
            .server_name("not a name")
            .connector()
            .unwrap_err();
        assert!(err.to_string().contains("server_name"), "{err}");
    }

    #[test]
    fn java_settings_precedence_and_verification() {
        let mut s = JavaSettings::default();
        s.apply("tls.client.trustCertPath", "/env/ca.pem", "env")
            .unwrap();
        s.apply_properties(
            "# comment\n! other\ntls.client.trustCertPath = /file/ca.pem\n\
             tls.server.keyPath=/ignored\ntls.client.certPath: /c.pem\ntls.client.keyPath=/k.pem\n",
            Path::new("/x/tls.properties"),
        )
        .unwrap();
        let c = s.into_config().unwrap();
        assert_eq!(c.trust_cert_file(), Some(Path::new("/file/ca.pem")));
        assert_eq!(c.client_cert_file(), Some(Path::new("/c.pem")));
        assert_eq!(c.client_key_file(), Some(Path::new("/k.pem")));
        assert!(c.verifies_server(), "unset Java keys leave verification on");

        let mut s = JavaSettings::default();
        s.apply("tls.client.authServer", "FALSE", "env").unwrap();
        assert!(!s.into_config().unwrap().verifies_server());
        let mut s = JavaSettings::default();
        s.apply("tls.test.mode.enable", "true", "env").unwrap();
        assert!(!s.into_config().unwrap().verifies_server());
        let mut s = JavaSettings::default();
        s.apply("tls.test.mode.enable", "false", "env").unwrap();
        s.apply("tls.client.authServer", "true", "env").unwrap();
        assert!(s.into_config().unwrap().verifies_server());

        let mut s = JavaSettings::default();
        let err = s
            .apply_properties(
                "tls.client.authServer=yes\n",
                Path::new("/x/tls.properties"),
            )
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("/x/tls.properties line 1") && msg.contains("\"yes\""),
            "{msg}"
        );

        let mut s = JavaSettings::default();
        s.apply("tls.client.keyPassword", "secret", "env").unwrap();
        let msg = s.into_config().unwrap_err().to_string();
        assert!(
            msg.contains("encrypted private keys are not supported"),
            "{msg}"
        );
        assert!(
            !msg.contains("secret"),
            "the password must not be echoed: {msg}"
        );
    }

    #[test]
    fn missing_files_are_clear_config_errors() {
        let err = TlsConfig::new()
            .trust_cert_path("/nonexistent/ca.pem")
            .connector()
            .unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");

        let mut half = TlsConfig::new();
        half.cert_path = Some("/c.pem".into());
        let err = half.connector().unwrap_err();
        assert!(err.to_string().contains("both"), "{err}");
    }
}
