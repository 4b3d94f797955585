//! Client side: `connect("ws://…" | "wss://…")`, over rustls for `wss`.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use http::Uri;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use switchboard_ws_proto::deflate::{Deflate, DeflateConfig};
use switchboard_ws_proto::handshake::client::ClientRequest;
use switchboard_ws_proto::handshake::{parse_response, HeadScanner};
use switchboard_ws_proto::{Config, Extension, HandshakeError, Role};

use crate::error::Error;
use crate::socket::{Info, WebSocket};
use crate::stream::MaybeTlsStream;

/// A parsed `ws://` or `wss://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) tls: bool,
    /// Host to connect to (IPv6 without brackets).
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `Host` header value.
    pub(crate) authority: String,
    /// Path and query.
    pub(crate) path: String,
}

pub(crate) fn parse_url(url: &str) -> Result<Target, Error> {
    let uri: Uri = url.parse().map_err(|e| Error::Url(format!("{url}: {e}")))?;
    let tls = match uri.scheme_str() {
        Some("ws" | "http") => false,
        Some("wss" | "https") => true,
        _ => return Err(Error::Url(format!("{url}: the scheme must be ws or wss"))),
    };
    let authority = uri.authority().ok_or_else(|| Error::Url(format!("{url}: no host")))?;
    if authority.as_str().contains('@') {
        return Err(Error::Url(format!("{url}: credentials in the URL are not supported; use a header")));
    }
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
    if host.is_empty() {
        return Err(Error::Url(format!("{url}: no host")));
    }
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    if url.contains('#') {
        return Err(Error::Url(format!("{url}: fragments are not allowed in WebSocket URLs")));
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let path = if path.is_empty() { "/" } else { path };
    Ok(Target { tls, host, port, authority: authority.as_str().to_owned(), path: path.to_owned() })
}

/// Builds a client connection: subprotocols, headers, Origin, TLS roots, timeouts.
///
/// ```no_run
/// # async fn run() -> Result<(), switchboard_ws::Error> {
/// let mut ws = switchboard_ws::ClientBuilder::new("wss://example.com/feed")
///     .protocol("feed.v1")
///     .header("Authorization", "Bearer abc")
///     .connect()
///     .await?;
/// ws.send("hello").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    url: String,
    config: Config,
    protocols: Vec<String>,
    headers: Vec<(String, String)>,
    origin: Option<String>,
    roots: Vec<CertificateDer<'static>>,
    tls: Option<Arc<rustls::ClientConfig>>,
    connect_timeout: Duration,
    deflate: Option<DeflateConfig>,
    local: Option<std::net::IpAddr>,
}

impl ClientBuilder {
    /// A client for `url` (`ws://` or `wss://`).
    pub fn new(url: impl Into<String>) -> Self {
        ClientBuilder {
            url: url.into(),
            config: Config::default(),
            protocols: Vec::new(),
            headers: Vec::new(),
            origin: None,
            roots: Vec::new(),
            tls: None,
            connect_timeout: Duration::from_secs(10),
            deflate: None,
            local: None,
        }
    }

    /// Binds the connection to this local address before connecting (a multi-homed host, or
    /// a load generator spreading connections over several loopback addresses).
    #[must_use]
    pub fn local_address(mut self, ip: std::net::IpAddr) -> Self {
        self.local = Some(ip);
        self
    }

    async fn tcp_connect(&self, target: &Target) -> Result<TcpStream, Error> {
        let Some(local) = self.local else {
            return Ok(TcpStream::connect((target.host.as_str(), target.port)).await?);
        };
        let mut last = None;
        for addr in tokio::net::lookup_host((target.host.as_str(), target.port)).await? {
            if addr.is_ipv4() != local.is_ipv4() {
                continue;
            }
            let socket =
                if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
            socket.bind(std::net::SocketAddr::new(local, 0))?;
            match socket.connect(addr).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.map_or_else(
            || Error::Url(format!("{}: no address of the local address's family", target.host)),
            Error::Io,
        ))
    }

    /// Offers permessage-deflate (RFC 7692) with these settings. A server answer the client
    /// cannot accept fails the connection (security: D5).
    #[must_use]
    pub fn deflate(mut self, cfg: DeflateConfig) -> Self {
        self.deflate = Some(cfg);
        self
    }

    /// Sets limits and timers (`handshake_timeout` covers TLS and the HTTP exchange).
    #[must_use]
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Offers a subprotocol (may be called several times, most preferred first).
    #[must_use]
    pub fn protocol(mut self, p: impl Into<String>) -> Self {
        self.protocols.push(p.into());
        self
    }

    /// Adds a request header (validated at connect: CR/LF and the like are refused (security: H13)).
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the `Origin` header.
    #[must_use]
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// Trusts an extra root certificate (DER), beside the bundled Web PKI roots.
    #[must_use]
    pub fn add_root_certificate(mut self, der: CertificateDer<'static>) -> Self {
        self.roots.push(der);
        self
    }

    /// Trusts the root certificates in a PEM document.
    pub fn add_root_certificates_pem(mut self, pem: &[u8]) -> Result<Self, Error> {
        use rustls::pki_types::pem::PemObject;
        for c in CertificateDer::pem_slice_iter(pem) {
            self.roots.push(c.map_err(|e| Error::Tls(format!("bad PEM certificate: {e}")))?);
        }
        Ok(self)
    }

    /// Uses this rustls configuration as is (custom verification, client certificates).
    /// Hostname verification stays whatever that configuration does; the default one
    /// verifies.
    #[must_use]
    pub fn tls_config(mut self, tls: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Deadline for the TCP connection. Default 10 s.
    #[must_use]
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    fn request(&self, target: &Target) -> Result<ClientRequest, Error> {
        let mut req = ClientRequest::new(&target.authority, &target.path)?;
        for p in &self.protocols {
            req = req.protocol(p)?;
        }
        if let Some(o) = &self.origin {
            req = req.origin(o)?;
        }
        for (k, v) in &self.headers {
            req = req.header(k, v)?;
        }
        if let Some(d) = &self.deflate {
            req = req.extensions(&d.client_offer())?;
        }
        Ok(req)
    }

    fn tls_connector(&self) -> Result<tokio_rustls::TlsConnector, Error> {
        if let Some(c) = &self.tls {
            return Ok(tokio_rustls::TlsConnector::from(c.clone()));
        }
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for r in &self.roots {
            roots.add(r.clone()).map_err(|e| Error::Tls(format!("bad root certificate: {e}")))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
    }

    /// Connects (TCP, then TLS for `wss`, then the WebSocket handshake).
    pub async fn connect(self) -> Result<WebSocket<MaybeTlsStream>, Error> {
        let target = parse_url(&self.url)?;
        let req = self.request(&target)?;
        let tcp = tokio::time::timeout(self.connect_timeout, self.tcp_connect(&target))
            .await
            .map_err(|_| Error::ConnectTimeout)??;
        tcp.set_nodelay(true)?;
        let fut = async {
            let stream = if target.tls {
                let name = ServerName::try_from(target.host.clone())
                    .map_err(|e| Error::Tls(format!("invalid server name: {e}")))?;
                let tls = self.tls_connector()?.connect(name, tcp).await?;
                MaybeTlsStream::ClientTls(Box::new(tls))
            } else {
                MaybeTlsStream::Plain(tcp)
            };
            handshake_inner(stream, &req, self.config.clone(), Some(self.url.clone()), self.deflate.as_ref()).await
        };
        tokio::time::timeout(self.config.handshake_timeout, fut).await.map_err(|_| Error::HandshakeTimeout)?
    }
}

/// Connects to `url` with default settings.
pub async fn connect(url: &str) -> Result<WebSocket<MaybeTlsStream>, Error> {
    ClientBuilder::new(url).connect().await
}

/// Runs the client handshake over an already connected transport (a Unix socket, a proxy
/// tunnel, an in-memory pipe), within `Config::handshake_timeout`.
pub async fn client_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    req: &ClientRequest,
    config: Config,
) -> Result<WebSocket<S>, Error> {
    let t = config.handshake_timeout;
    tokio::time::timeout(t, handshake_inner(io, req, config, None, None)).await.map_err(|_| Error::HandshakeTimeout)?
}

async fn handshake_inner<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    req: &ClientRequest,
    config: Config,
    url: Option<String>,
    deflate: Option<&DeflateConfig>,
) -> Result<WebSocket<S>, Error> {
    io.write_all(&req.encode()).await?;
    io.flush().await?;
    let mut buf = BytesMut::with_capacity(1024);
    let mut scanner = HeadScanner::new();
    let head_len = loop {
        if let Some(n) = scanner.scan(&buf, &config)? {
            break n;
        }
        if buf.capacity() - buf.len() < 512 {
            buf.reserve(4096);
        }
        if io.read_buf(&mut buf).await? == 0 {
            return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    };
    let resp = parse_response(&buf[..head_len], &config)?;
    let negotiated = match req.validate_response(&resp) {
        Ok(n) => n,
        Err(HandshakeError::UnexpectedStatus { status, location, .. }) => {
            // The server's reason for refusing is in the body: read a little of it.
            let body = refusal_body(&mut io, &mut buf, head_len, &resp).await;
            return Err(HandshakeError::UnexpectedStatus { status, location, body }.into());
        }
        Err(e) => return Err(e.into()),
    };
    let ext: Option<Box<dyn Extension>> = match (negotiated.extensions.as_slice(), deflate) {
        ([], _) => None,
        ([one], Some(cfg)) => {
            let agreed = cfg.accept_response(one).map_err(HandshakeError::BadExtensionResponse)?;
            Some(Box::new(Deflate::new(agreed, false, cfg)))
        }
        _ => return Err(HandshakeError::BadExtensionResponse("more extensions than offered".into()).into()),
    };
    let extensions = resp
        .headers()
        .get(http::header::SEC_WEBSOCKET_EXTENSIONS)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .filter(|_| ext.is_some());
    // Copy what followed the head (usually nothing) so the handshake buffer is freed.
    let rest = BytesMut::from(&buf[head_len..]);
    let info = Info { url, protocol: negotiated.protocol, extensions };
    Ok(WebSocket::from_parts(io, Role::Client, config, rest, info, ext))
}

/// The start of a refusal's body: what follows the head, up to `Content-Length` (or what has
/// arrived without it), at most 512 characters, within 1 s; control characters dropped.
async fn refusal_body<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
    head_len: usize,
    resp: &http::Response<()>,
) -> Option<String> {
    const MAX: usize = 512;
    let want = resp
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map_or(0, |n| n.min(MAX));
    let read = async {
        while buf.len() - head_len < want {
            buf.reserve(MAX);
            match io.read_buf(buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), read).await;
    let end = buf.len().min(head_len + MAX);
    let text: String = String::from_utf8_lossy(&buf[head_len..end]).chars().filter(|c| !c.is_control()).collect();
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_url("ws://127.0.0.1:9001/chat?x=1").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.port, t.authority.as_str(), t.path.as_str()),
            (false, "127.0.0.1", 9001, "127.0.0.1:9001", "/chat?x=1")
        );
        let t = parse_url("wss://example.com").unwrap();
        assert_eq!((t.tls, t.port, t.path.as_str()), (true, 443, "/"));
        let t = parse_url("ws://[::1]:8080/").unwrap();
        assert_eq!((t.host.as_str(), t.authority.as_str()), ("::1", "[::1]:8080"));
        for bad in ["ftp://a/", "ws://user:pw@a/", "ws:///x", "nonsense", "ws://a/#frag"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
