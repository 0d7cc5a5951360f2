//! TLS with rustls (ring provider): the certificate chain and key from PEM files, optional
//! client certificates checked against `--ca-certs`, TLS 1.2 and 1.3 only, and ALPN offering
//! `h2` and/or `http/1.1` as `--http` allows. Never touches Python.

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::{HttpVersions, TlsSettings};

fn err(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, what)
}

/// Loads the files once per worker; any problem is an error naming the file.
pub fn acceptor(s: &TlsSettings, http: HttpVersions) -> std::io::Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&s.certfile)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| err(format!("certfile {:?}: {e}", s.certfile)))?;
    if certs.is_empty() {
        return Err(err(format!("certfile {:?}: no certificate found", s.certfile)));
    }
    let keyfile = if s.keyfile.is_empty() { &s.certfile } else { &s.keyfile };
    let key = PrivateKeyDer::from_pem_file(keyfile).map_err(|e| err(format!("keyfile {keyfile:?}: {e}")))?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| err(format!("TLS setup: {e}")))?;
    let builder = if s.cert_reqs > 0 && !s.ca_certs.is_empty() {
        let mut roots = RootCertStore::empty();
        for cert in
            CertificateDer::pem_file_iter(&s.ca_certs).map_err(|e| err(format!("ca_certs {:?}: {e}", s.ca_certs)))?
        {
            let cert = cert.map_err(|e| err(format!("ca_certs {:?}: {e}", s.ca_certs)))?;
            roots.add(cert).map_err(|e| err(format!("ca_certs {:?}: {e}", s.ca_certs)))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        let verifier = if s.cert_reqs == 1 { verifier.allow_unauthenticated() } else { verifier };
        builder.with_client_cert_verifier(verifier.build().map_err(|e| err(format!("ca_certs {:?}: {e}", s.ca_certs)))?)
    } else {
        builder.with_no_client_auth()
    };
    let mut config =
        builder.with_single_cert(certs, key).map_err(|e| err(format!("certfile/keyfile do not fit together: {e}")))?;
    // The server picks the cipher suite by its own order (the provider's: AES-256-GCM, then
    // AES-128-GCM, then ChaCha20 — all AEAD with forward secrecy), not the first one the client
    // lists. rustls follows the client by default, which testssl.sh rates HIGH ("no cipher
    // order"): a client, or a middlebox rewriting its hello, could steer the choice.
    config.ignore_client_order = true;
    config.alpn_protocols = match http {
        HttpVersions::Http1 => vec![b"http/1.1".to_vec()],
        HttpVersions::Http2 => vec![b"h2".to_vec()],
        HttpVersions::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    };
    Ok(TlsAcceptor::from(Arc::new(config)))
}
