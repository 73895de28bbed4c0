//! Built-in TLS (rustls, ring provider): `tls_cert_file` and `tls_key_file` make the broker serve
//! `https://` and `wss://` itself. A reverse proxy that terminates TLS works as well (README,
//! "Security"); built-in TLS is for single-binary deployments.

use std::io::BufReader;
use std::sync::Arc;

use anyhow::Context;

/// The server configuration for a PEM certificate chain and private key.
pub fn server_config(cert_file: &str, key_file: &str) -> anyhow::Result<rustls::ServerConfig> {
    let certs = {
        let f = std::fs::File::open(cert_file).with_context(|| format!("opening tls_cert_file {cert_file}"))?;
        rustls_pemfile::certs(&mut BufReader::new(f))
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("reading certificates from {cert_file}"))?
    };
    anyhow::ensure!(!certs.is_empty(), "tls_cert_file {cert_file} holds no PEM certificate");
    let key = {
        let f = std::fs::File::open(key_file).with_context(|| format!("opening tls_key_file {key_file}"))?;
        rustls_pemfile::private_key(&mut BufReader::new(f))
            .with_context(|| format!("reading the private key from {key_file}"))?
            .with_context(|| format!("tls_key_file {key_file} holds no PEM private key"))?
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not form a valid pair")?;
    Ok(config)
}
