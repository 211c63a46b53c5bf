//! A throwaway PKI for the TLS tests, generated with rcgen: a CA, a server certificate for
//! `localhost` and `127.0.0.1` signed by it, and a client certificate, written as PEM files.
//!
//! Also compiled into the crate's unit tests (`#[path]`), so it uses only rcgen and std.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// The files of one generated PKI.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA certificate (the trust bundle clients need).
    pub ca: PathBuf,
    /// Server certificate (valid for `localhost` and `127.0.0.1`) and its key.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// Client certificate (for mutual TLS) and its key.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TestPki {
    /// Generates a CA called `name` and its certificates into `dir` (created if needed), files
    /// prefixed with `name`.
    pub fn generate(dir: &Path, name: &str) -> TestPki {
        std::fs::create_dir_all(dir).expect("create the PKI directory");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
            .expect("self-signed CA");

        let leaf = |cn: &str, sans: Vec<String>, usage: ExtendedKeyUsagePurpose| {
            let mut params = CertificateParams::new(sans).expect("leaf params");
            params.distinguished_name.push(DnType::CommonName, cn);
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            params.extended_key_usages = vec![usage];
            let key = KeyPair::generate().expect("leaf key");
            let cert = params.signed_by(&key, &ca).expect("signed leaf");
            (cert.pem(), key.serialize_pem())
        };
        let (server_pem, server_key_pem) = leaf(
            "localhost",
            vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_pem, client_key_pem) = leaf(
            "rocketmq-sync test client",
            vec!["client.test".to_owned()],
            ExtendedKeyUsagePurpose::ClientAuth,
        );

        let write = |file: &str, text: &str| {
            let path = dir.join(format!("{name}-{file}"));
            std::fs::write(&path, text)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            path
        };
        TestPki {
            ca: write("ca.pem", &ca.pem()),
            server_cert: write("server.pem", &server_pem),
            server_key: write("server.key", &server_key_pem),
            client_cert: write("client.pem", &client_pem),
            client_key: write("client.key", &client_key_pem),
        }
    }
}
