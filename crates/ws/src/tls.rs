//! TLS helpers for servers: a rustls configuration from PEM files, and accepting `wss`.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;

use crate::error::Error;
use crate::stream::MaybeTlsStream;

/// A server configuration from a PEM certificate chain (leaf first) and a PEM private key
/// (PKCS#8, PKCS#1 or SEC1), advertising ALPN `http/1.1`.
pub fn server_config_from_pem(cert_chain: &[u8], key: &[u8]) -> Result<Arc<rustls::ServerConfig>, Error> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_chain)
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Tls(format!("certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Tls("certificate chain: no certificate found".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| Error::Tls(format!("private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Runs the TLS handshake on an accepted TCP connection. Bound it with a timeout (the
/// WebSocket handshake deadline starts after it) (security: T1).
pub async fn accept_tls(acceptor: &tokio_rustls::TlsAcceptor, tcp: TcpStream) -> Result<MaybeTlsStream, Error> {
    let tls = acceptor.accept(tcp).await?;
    Ok(MaybeTlsStream::ServerTls(Box::new(tls)))
}
