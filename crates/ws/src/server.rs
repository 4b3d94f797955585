//! Server side: accepting a connection (raw stream or hyper upgrade) after checking the request.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use switchboard_ws_proto::deflate::{Deflate, DeflateConfig};
use switchboard_ws_proto::handshake::server::{
    accept_response, error_response, reject_response, validate_request, OriginPolicy, UpgradeRequest,
};
use switchboard_ws_proto::handshake::{accept_key, parse_request, HeadScanner};
use switchboard_ws_proto::{Config, Extension, HandshakeError, Role};

use crate::error::Error;
use crate::socket::{Info, WebSocket};

/// The application's yes to an upgrade request: optionally a subprotocol (one the client
/// offered) and extra response headers.
#[derive(Debug, Default, Clone)]
pub struct Accept {
    protocol: Option<String>,
    headers: HeaderMap,
}

impl Accept {
    /// Accept with the default subprotocol choice.
    pub fn new() -> Self {
        Self::default()
    }

    /// Selects a subprotocol. It must be one the client offered, or the handshake fails
    /// with 500 (a server bug, never sent to the client as a protocol it did not ask for).
    #[must_use]
    pub fn protocol(mut self, p: impl Into<String>) -> Self {
        self.protocol = Some(p.into());
        self
    }

    /// Adds a response header (typed, so CR/LF cannot be injected).
    #[must_use]
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }
}

/// The application's no: a status, headers and a short body. The connection is then closed.
#[derive(Debug, Clone)]
pub struct Reject(Box<RejectInner>);

#[derive(Debug, Clone)]
struct RejectInner {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reject {
    /// Refuse with `status` (e.g. 401, 403, 404, 503).
    pub fn new(status: StatusCode) -> Self {
        Reject(Box::new(RejectInner { status, headers: HeaderMap::new(), body: String::new() }))
    }

    /// Sets the body text.
    #[must_use]
    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.0.body = body.into();
        self
    }

    /// Adds a response header.
    #[must_use]
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.0.headers.append(name, value);
        self
    }
}

/// Accepts WebSocket connections: limits, Origin policy and supported subprotocols.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use switchboard_ws::{Acceptor, Message};
/// use switchboard_ws::proto::handshake::server::OriginPolicy;
///
/// let acceptor = Acceptor::new()
///     .origins(OriginPolicy::allow_list(["https://app.example.com"]))
///     .protocols(["chat.v2", "chat.v1"]);
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
/// loop {
///     let (tcp, _) = listener.accept().await?;
///     let acceptor = acceptor.clone();
///     tokio::spawn(async move {
///         let Ok(mut ws) = acceptor.accept(tcp).await else { return };
///         while let Some(Ok(msg)) = ws.recv().await {
///             if msg.is_data() && ws.send(msg).await.is_err() {
///                 break;
///             }
///         }
///     });
/// }
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Acceptor {
    config: Arc<Config>,
    origins: OriginPolicy,
    protocols: Vec<String>,
    deflate: Option<DeflateConfig>,
    /// Handshakes in progress, shared by the clones of this acceptor.
    inflight: Arc<Inflight>,
}

/// Handshakes in progress, per IP and in total (security: H3, R5).
#[derive(Debug, Default)]
struct Inflight {
    per_ip: std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>,
    total: std::sync::atomic::AtomicUsize,
}

/// A handshake slot; released on drop, however the handshake ends.
struct Slot<'a> {
    inflight: &'a Inflight,
    ip: Option<IpAddr>,
}

impl Inflight {
    fn acquire(&self, ip: Option<IpAddr>, cfg: &Config) -> Option<Slot<'_>> {
        use std::sync::atomic::Ordering;
        if self.total.fetch_add(1, Ordering::AcqRel) >= cfg.max_handshakes_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        if let Some(ip) = ip {
            let mut m = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let n = m.entry(ip).or_insert(0);
            if *n >= cfg.max_handshakes_per_ip {
                if *n == 0 {
                    m.remove(&ip);
                }
                drop(m);
                self.total.fetch_sub(1, Ordering::AcqRel);
                return None;
            }
            *n += 1;
        }
        // Built once, here: its drop gives back exactly what was taken above.
        Some(Slot { inflight: self, ip })
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.inflight.total.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        if let Some(ip) = self.ip {
            let mut m = self.inflight.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = m.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&ip);
                }
            }
        }
    }
}

impl Acceptor {
    /// Default limits, any Origin, no subprotocols.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the limits and timers.
    #[must_use]
    pub fn config(mut self, config: Config) -> Self {
        self.config = Arc::new(config);
        self
    }

    /// Sets the Origin policy (403 for the rest) (security: H9).
    #[must_use]
    pub fn origins(mut self, origins: OriginPolicy) -> Self {
        self.origins = origins;
        self
    }

    /// The subprotocols this server speaks, most preferred first. By default the first of
    /// them that the client offered is selected.
    #[must_use]
    pub fn protocols<I: IntoIterator<Item = P>, P: Into<String>>(mut self, protocols: I) -> Self {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Turns on permessage-deflate (RFC 7692) with these settings; off by default. Offers
    /// with unknown, duplicate or invalid parameters are declined one by one (security: D5).
    /// Memory: see the `deflate` module of the core crate (security: D7).
    #[must_use]
    pub fn deflate(mut self, cfg: DeflateConfig) -> Self {
        self.deflate = Some(cfg);
        self
    }

    fn negotiate(&self, up: &UpgradeRequest) -> Option<(String, Box<dyn Extension>)> {
        let cfg = self.deflate.as_ref()?;
        let agreed = cfg.negotiate_server(&up.extensions)?;
        Some((agreed.response_header(), Box::new(Deflate::new(agreed, true, cfg))))
    }

    /// The limits in use.
    pub fn get_config(&self) -> &Config {
        &self.config
    }

    /// Runs the server handshake on `io` and returns the open connection.
    pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(&self, io: S) -> Result<WebSocket<S>, Error> {
        self.accept_with(io, |_| Ok(Accept::new())).await
    }

    /// Runs the server handshake, letting `decide` see the request (path, query, headers,
    /// Origin) and accept it or reject it with a status.
    ///
    /// The whole handshake must finish within `Config::handshake_timeout` (slowloris
    /// defence (security: H3)); on timeout the connection is dropped. Malformed requests get the status
    /// of their [`HandshakeError`]; every refusal carries `Connection: close` and the
    /// connection is closed without reading further (security: H10).
    pub async fn accept_with<S, F>(&self, io: S, decide: F) -> Result<WebSocket<S>, Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
        F: FnOnce(&Request<()>) -> Result<Accept, Reject>,
    {
        self.accept_from(io, None, decide).await
    }

    /// [`accept_with`](Self::accept_with) for a connection from `peer`: the handshakes in
    /// progress are capped per IP address (`Config::max_handshakes_per_ip`) and in total
    /// (`Config::max_handshakes_total`). Over a cap the answer is 503 at once, without reading
    /// the request, so a flood of slow handshakes cannot pile up (security: H3, R5). Without a
    /// `peer` only the total cap applies.
    pub async fn accept_from<S, F>(&self, mut io: S, peer: Option<IpAddr>, decide: F) -> Result<WebSocket<S>, Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
        F: FnOnce(&Request<()>) -> Result<Accept, Reject>,
    {
        let Some(_slot) = self.inflight.acquire(peer, &self.config) else {
            let bytes = reject_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &HeaderMap::new(),
                "too many handshakes in progress\n",
            );
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), io.write_all(&bytes)).await;
            let _ = io.shutdown().await;
            return Err(Error::Handshake(HandshakeError::Rejected(503)));
        };
        // Boxed with its timer: the handshake's buffers, parsed request and deadline are freed
        // as soon as it is done, instead of staying in the state of every connection's task.
        match Box::pin(tokio::time::timeout(self.config.handshake_timeout, self.handshake(io, decide))).await {
            Ok(r) => r,
            Err(_) => Err(Error::HandshakeTimeout),
        }
    }

    async fn handshake<S, F>(&self, mut io: S, decide: F) -> Result<WebSocket<S>, Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
        F: FnOnce(&Request<()>) -> Result<Accept, Reject>,
    {
        let cfg = &self.config;
        let mut buf = BytesMut::with_capacity(1024);
        let mut scanner = HeadScanner::new();
        let head_len = loop {
            match scanner.scan(&buf, cfg) {
                Ok(Some(n)) => break n,
                Ok(None) => {}
                Err(e) => return refuse(io, error_response(&e), e).await,
            }
            if buf.capacity() - buf.len() < 512 {
                buf.reserve(4096);
            }
            if io.read_buf(&mut buf).await? == 0 {
                return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        };
        let req = match parse_request(&buf[..head_len], cfg) {
            Ok(r) => r,
            Err(e) => return refuse(io, error_response(&e), e).await,
        };
        let upgrade = match validate_request(&req, &self.origins) {
            Ok(u) => u,
            Err(e) => return refuse(io, error_response(&e), e).await,
        };
        let accept = match decide(&req) {
            Ok(a) => a,
            Err(r) => {
                let bytes = reject_response(r.0.status, &r.0.headers, &r.0.body);
                return refuse(io, bytes, HandshakeError::Rejected(r.0.status.as_u16())).await;
            }
        };
        let protocol = match self.choose_protocol(&upgrade, accept.protocol) {
            Ok(p) => p,
            Err(e) => {
                return refuse(io, reject_response(StatusCode::INTERNAL_SERVER_ERROR, &HeaderMap::new(), ""), e).await
            }
        };
        let (ext_header, ext) = self.negotiate(&upgrade).unzip();
        let resp = accept_response(&upgrade, protocol.as_deref(), ext_header.as_deref(), &accept.headers);
        io.write_all(&resp).await?;
        io.flush().await?;
        // Copy what followed the head (usually nothing) so the handshake buffer is freed.
        let rest = BytesMut::from(&buf[head_len..]);
        let info = Info { url: Some(req.uri().to_string()), protocol, extensions: ext_header };
        Ok(WebSocket::from_parts(io, Role::Server, self.config.clone(), rest, info, ext))
    }

    fn choose_protocol(&self, up: &UpgradeRequest, chosen: Option<String>) -> Result<Option<String>, HandshakeError> {
        match chosen {
            Some(p) if up.protocols.contains(&p) => Ok(Some(p)),
            Some(_) => Err(HandshakeError::Rejected(500)),
            None => Ok(self.protocols.iter().find(|p| up.protocols.contains(p)).cloned()),
        }
    }

    /// Validates a hyper request for an upgrade and returns the `101` response to send back,
    /// with a future that resolves to the WebSocket once hyper hands over the connection.
    ///
    /// Bytes the client sent right after its request (hyper may have read them already) are
    /// delivered to the WebSocket. On `Err`, answer with [`HandshakeError::status`].
    pub fn upgrade<B, RB: Default>(
        &self,
        req: &mut Request<B>,
    ) -> Result<(http::Response<RB>, UpgradeFut), HandshakeError> {
        let up = validate_request(req, &self.origins)?;
        let protocol = self.choose_protocol(&up, None)?;
        let mut resp = http::Response::new(RB::default());
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(http::header::CONNECTION, HeaderValue::from_static("Upgrade"));
        let accept = HeaderValue::from_str(&accept_key(up.key.as_bytes())).map_err(|_| HandshakeError::BadKey)?;
        h.insert(http::header::SEC_WEBSOCKET_ACCEPT, accept);
        if let Some(p) = &protocol {
            let v = HeaderValue::from_str(p).map_err(|_| HandshakeError::BadSubprotocol)?;
            h.insert(http::header::SEC_WEBSOCKET_PROTOCOL, v);
        }
        let (ext_header, ext) = self.negotiate(&up).unzip();
        if let Some(e) = &ext_header {
            let v = HeaderValue::from_str(e).map_err(|_| HandshakeError::Malformed("extension response"))?;
            h.insert(http::header::SEC_WEBSOCKET_EXTENSIONS, v);
        }
        let info = Info { url: Some(req.uri().to_string()), protocol, extensions: ext_header };
        let fut = UpgradeFut { on: hyper::upgrade::on(req), config: Some(self.config.clone()), info: Some(info), ext };
        Ok((resp, fut))
    }
}

/// Writes a refusal, closes the connection and reports `e`.
async fn refuse<S: AsyncWrite + Unpin, T>(mut io: S, bytes: Vec<u8>, e: HandshakeError) -> Result<T, Error> {
    let _ = io.write_all(&bytes).await;
    let _ = io.flush().await;
    let _ = io.shutdown().await;
    Err(Error::Handshake(e))
}

/// Runs the server handshake with default settings (see [`Acceptor`]).
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(io: S) -> Result<WebSocket<S>, Error> {
    Acceptor::new().accept(io).await
}

/// The connection a hyper upgrade turns into, as a WebSocket.
pub type UpgradedSocket = WebSocket<TokioIo<hyper::upgrade::Upgraded>>;

/// Resolves to the WebSocket once hyper has sent the 101 and handed over the connection.
#[derive(Debug)]
pub struct UpgradeFut {
    on: hyper::upgrade::OnUpgrade,
    config: Option<Arc<Config>>,
    info: Option<Info>,
    ext: Option<Box<dyn Extension>>,
}

impl Future for UpgradeFut {
    type Output = Result<UpgradedSocket, Error>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let upgraded = match Pin::new(&mut self.on).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::Io(std::io::Error::other(e)))),
            Poll::Ready(Ok(u)) => u,
        };
        let config = self.config.take().unwrap_or_default();
        let info = self.info.take().unwrap_or_default();
        let ext = self.ext.take();
        Poll::Ready(Ok(WebSocket::from_parts(TokioIo::new(upgraded), Role::Server, config, BytesMut::new(), info, ext)))
    }
}
