//! `WebSocket<S>`: the sans-IO [`Connection`] driven over any `AsyncRead + AsyncWrite`.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll, Wake, Waker};
use std::time::Instant;

use bytes::BytesMut;
use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Sleep;

use switchboard_ws_proto::{
    CloseCode, CloseFrame, Config, Connection, Extension, Message, OpCode, PreparedFrame, ReadyState, Role,
};

use crate::error::Error;
use crate::wqueue::{WriteQueue, ZERO_COPY_MIN};

/// Size of the per-thread blocks that reads land in (see [`Inner::poll_fill`]).
const SCRATCH_BLOCK: usize = 64 << 10;

thread_local! {
    /// The block reads go into when a connection has nothing pending. Filled bytes are split
    /// off to the connection (and frozen into messages without copying); the block's unused
    /// capacity serves the next read on this thread. An idle connection therefore holds no read
    /// buffer at all.
    static SCRATCH: std::cell::RefCell<BytesMut> = std::cell::RefCell::new(BytesMut::new());
}

/// What the handshake settled, kept for the application.
#[derive(Debug, Default, Clone)]
pub(crate) struct Info {
    pub(crate) url: Option<String>,
    pub(crate) protocol: Option<String>,
    pub(crate) extensions: Option<String>,
}

/// Wakes both halves of a split socket when the transport becomes writable: both may write
/// (the reader flushes owed pongs), and a transport keeps only the latest write waker.
#[derive(Default)]
struct WriteWakers {
    slots: Mutex<[Option<Waker>; 2]>,
}

impl Wake for WriteWakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        let taken = {
            let mut g = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            [g[0].take(), g[1].take()]
        };
        for w in taken.into_iter().flatten() {
            w.wake();
        }
    }
}

#[derive(Clone, Copy)]
enum Side {
    Reader = 0,
    Writer = 1,
}

/// The connection state, owned by one `WebSocket` or shared by its two halves.
pub(crate) struct Inner<S> {
    io: S,
    proto: Connection,
    rbuf: BytesMut,
    wbuf: WriteQueue,
    sleep: Option<Pin<Box<Sleep>>>,
    sleep_at: Option<Instant>,
    read_eof: bool,
    finished: bool,
    /// Time of the last poll of the read side: `try_recv` reuses it (deadlines only need
    /// poll-level precision) instead of reading the clock per message.
    now: Instant,
    info: Info,
    wakers: Option<Arc<WriteWakers>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Inner<S> {
    /// Runs `f` with a context whose waker also reaches the other half when split.
    fn with_write_cx<R>(
        &mut self,
        cx: &mut Context<'_>,
        side: Side,
        f: impl FnOnce(&mut Self, &mut Context<'_>) -> R,
    ) -> R {
        match self.wakers.clone() {
            None => f(self, cx),
            Some(w) => {
                {
                    let mut g = w.slots.lock().unwrap_or_else(|p| p.into_inner());
                    g[side as usize] = Some(cx.waker().clone());
                }
                let waker = Waker::from(w);
                let mut cx2 = Context::from_waker(&waker);
                f(self, &mut cx2)
            }
        }
    }

    /// Writes out the whole write buffer and flushes the transport.
    fn poll_flush_wbuf(&mut self, cx: &mut Context<'_>, side: Side) -> Poll<io::Result<()>> {
        self.with_write_cx(cx, side, |this, cx| this.wbuf.poll_write(&mut this.io, cx))
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>, side: Side) -> Poll<io::Result<()>> {
        self.with_write_cx(cx, side, |this, cx| Pin::new(&mut this.io).poll_shutdown(cx))
    }

    fn poll_next_msg(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        let mut now = Instant::now();
        self.now = now;
        loop {
            match self.proto.read(&mut self.rbuf, now) {
                Ok(Some(m)) => {
                    if self.wbuf.append(|out| self.proto.poll_transmit(out)) {
                        // Owed replies go out now if the transport takes them; if not, the
                        // next poll (read or write) finishes the job.
                        if let Poll::Ready(Err(e)) = self.poll_flush_wbuf(cx, Side::Reader) {
                            self.finished = true;
                            return Poll::Ready(Some(Err(e.into())));
                        }
                    }
                    return Poll::Ready(Some(Ok(m)));
                }
                Ok(None) => {
                    if self.rbuf.is_empty() {
                        // Drop our view of the read block (or a grown buffer) while idle.
                        self.rbuf = BytesMut::new();
                    }
                }
                Err(e) => {
                    self.wbuf.append(|out| self.proto.poll_transmit(out));
                    let _ = self.poll_flush_wbuf(cx, Side::Reader);
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
            self.wbuf.append(|out| self.proto.poll_transmit(out));
            let flushed = match self.poll_flush_wbuf(cx, Side::Reader) {
                Poll::Ready(Ok(())) => true,
                Poll::Ready(Err(e)) => {
                    self.finished = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
                Poll::Pending => false,
            };
            if self.proto.should_close_transport() {
                if !flushed {
                    return Poll::Pending;
                }
                // Best effort: the peer may already be gone.
                let _ = ready!(self.poll_shutdown(cx, Side::Reader));
                self.finished = true;
                return Poll::Ready(None);
            }
            if let Some(at) = self.proto.poll_timeout() {
                if at <= now {
                    if let Err(e) = self.proto.handle_timeout(now) {
                        self.wbuf.append(|out| self.proto.poll_transmit(out));
                        let _ = self.poll_flush_wbuf(cx, Side::Reader);
                        return Poll::Ready(Some(Err(e.into())));
                    }
                    continue;
                }
                let deadline = tokio::time::Instant::from_std(at);
                match (&mut self.sleep, self.sleep_at == Some(at)) {
                    (Some(_), true) => {}
                    (Some(s), false) => s.as_mut().reset(deadline),
                    (None, _) => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
                }
                self.sleep_at = Some(at);
                if let Some(s) = self.sleep.as_mut() {
                    if s.as_mut().poll(cx).is_ready() {
                        // The deadline passed: look at the clock again, or it never looks due.
                        now = Instant::now();
                        self.now = now;
                        continue;
                    }
                }
            }
            if self.read_eof {
                return Poll::Pending;
            }
            match self.poll_fill(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    self.read_eof = true;
                    self.finished = true;
                    if self.proto.ready_state() == ReadyState::Closed {
                        let _ = self.poll_shutdown(cx, Side::Reader);
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Err(Error::AbnormalClosure)));
                }
                Poll::Ready(Ok(_)) => {
                    now = Instant::now();
                    self.now = now;
                }
                Poll::Ready(Err(e)) => {
                    self.finished = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }

    /// Reads from the transport. With nothing pending, the read lands in the thread's scratch
    /// block and the filled part is split off into `rbuf` (no copy); with a partial frame
    /// pending, it appends to `rbuf`, which grows by at most `read_chunk_size` beyond what is
    /// buffered (never by a declared frame length).
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if !self.rbuf.is_empty() {
            if self.rbuf.capacity() - self.rbuf.len() < 1024 {
                self.rbuf.reserve(self.proto.config().read_chunk_size);
            }
            return tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.rbuf);
        }
        SCRATCH.with(|cell| {
            let mut block = cell.borrow_mut();
            if block.capacity() - block.len() < 4096 {
                *block = BytesMut::with_capacity(SCRATCH_BLOCK);
            }
            let r = tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut *block);
            if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
                self.rbuf = block.split();
            }
            r
        })
    }

    /// The next message if one is already buffered; never touches the transport.
    fn try_next_msg(&mut self) -> Option<Result<Message, Error>> {
        if self.finished {
            return None;
        }
        let r = self.proto.read(&mut self.rbuf, self.now);
        if self.rbuf.is_empty() {
            self.rbuf = BytesMut::new();
        }
        self.wbuf.append(|out| self.proto.poll_transmit(out));
        match r {
            Ok(Some(m)) => Some(Ok(m)),
            Ok(None) => None,
            Err(e) => Some(Err(e.into())),
        }
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.wbuf.len() < self.proto.config().max_write_buffer {
            return Poll::Ready(Ok(()));
        }
        ready!(self.poll_flush_wbuf(cx, Side::Writer))?;
        Poll::Ready(Ok(()))
    }

    fn encode(&mut self, msg: Message) -> Result<(), Error> {
        let (op, payload) = match msg {
            Message::Text(t) => (OpCode::Text, t.into_bytes()),
            Message::Binary(b) => (OpCode::Binary, b),
            Message::Ping(p) => return Ok(self.wbuf.append(|out| self.proto.ping(&p, out))?),
            Message::Pong(p) => return Ok(self.wbuf.append(|out| self.proto.pong(&p, out))?),
            Message::Close(f) => {
                self.proto.close(f, Instant::now())?;
                self.wbuf.append(|out| self.proto.poll_transmit(out));
                return Ok(());
            }
        };
        if payload.len() >= ZERO_COPY_MIN {
            if let Some((header, n)) = self.proto.data_frame_header(op, payload.len())? {
                self.wbuf.append(|out| out.extend_from_slice(&header[..n]));
                self.wbuf.push_bytes(payload);
                return Ok(());
            }
        }
        Ok(self.wbuf.append(|out| self.proto.send(op, &payload, out))?)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.wbuf.append(|out| self.proto.poll_transmit(out));
        ready!(self.poll_flush_wbuf(cx, Side::Writer))?;
        Poll::Ready(Ok(()))
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.proto.ready_state() == ReadyState::Open {
            self.proto
                .close(Some(CloseFrame { code: CloseCode::NORMAL, reason: Default::default() }), Instant::now())?;
        }
        self.poll_flush(cx)
    }

    fn try_send(&mut self, msg: Message) -> Result<(), Error> {
        if self.wbuf.len() >= self.proto.config().max_write_buffer {
            return Err(Error::WriteBufferFull(Box::new(msg)));
        }
        self.encode(msg)
    }

    fn try_send_prepared(&mut self, f: &PreparedFrame) -> Result<(), Error> {
        if self.wbuf.len() >= self.proto.config().max_write_buffer {
            return Err(Error::WriteBufferFull(Box::new(f.to_message())));
        }
        if !self.proto.prepared_ok()? {
            return self.encode(f.to_message());
        }
        let bytes = f.frame_bytes();
        if bytes.len() >= ZERO_COPY_MIN {
            self.wbuf.push_bytes(bytes.clone());
        } else {
            self.wbuf.append(|out| out.extend_from_slice(bytes));
        }
        Ok(())
    }
}

/// A WebSocket connection over a transport `S` (TCP, TLS, a hyper upgrade, an in-memory pipe).
///
/// Receive with [`recv`](Self::recv) or as a [`Stream`] of [`Message`]s; send with
/// [`send`](Self::send) or as a [`Sink`]. Pings are answered automatically, keepalive pings
/// go out every `Config::ping_interval`, and the closing handshake runs by itself.
///
/// # Reading drives the connection
/// Incoming pings, the peer's Close and the keepalive timers are handled while the connection
/// is being read. Keep a task reading (every real application does, to notice the peer going
/// away); a connection that is only written to answers nothing.
///
/// # Cancel safety
/// [`recv`](Self::recv) (and `StreamExt::next`) is cancel-safe: every partial frame or message
/// lives in the connection, not in the future, so dropping the future loses nothing and the
/// next call resumes where it stopped. `send` is cancel-safe in the same way once
/// it has returned `Pending` only while waiting for buffer space: the message is encoded into
/// the write buffer in one step, never half-way.
///
/// # Back-pressure
/// Sent messages are encoded into a write buffer. Above `Config::max_write_buffer` bytes,
/// [`send`](Self::send) waits for the transport to drain, and [`try_send`](Self::try_send)
/// returns the message in [`Error::WriteBufferFull`]. Nothing is ever dropped silently.
/// [`buffered_amount`](Self::buffered_amount) tells how much is waiting.
pub struct WebSocket<S> {
    /// Boxed: the handle is one pointer, so moving it into tasks and async functions (which
    /// may store their arguments twice) costs nothing per idle connection.
    inner: Box<Inner<S>>,
}

impl<S> std::fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("role", &self.inner.proto.role())
            .field("ready_state", &self.inner.proto.ready_state())
            .field("buffered_amount", &self.inner.wbuf.len())
            .finish()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Wraps a transport on which the opening handshake is already done. `read_buf` holds
    /// bytes read past the handshake (the first frames), if any.
    pub fn from_raw(io: S, role: Role, config: Config, read_buf: BytesMut) -> Self {
        Self::from_parts(io, role, config, read_buf, Info::default(), None)
    }

    pub(crate) fn from_parts(
        io: S,
        role: Role,
        config: impl Into<Arc<Config>>,
        read_buf: BytesMut,
        info: Info,
        ext: Option<Box<dyn Extension>>,
    ) -> Self {
        let mut proto = Connection::new(role, config, Instant::now());
        if let Some(ext) = ext {
            proto = proto.with_extension(ext);
        }
        WebSocket {
            inner: Box::new(Inner {
                io,
                proto,
                rbuf: read_buf,
                wbuf: WriteQueue::default(),
                sleep: None,
                sleep_at: None,
                read_eof: false,
                finished: false,
                now: Instant::now(),
                info,
                wakers: None,
            }),
        }
    }

    /// Receives the next message; `None` once the connection is closed.
    ///
    /// A [`Message::Close`] is delivered when the peer closes (our reply is sent
    /// automatically), then `None`.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        poll_fn(|cx| self.inner.poll_next_msg(cx)).await
    }

    /// The next message if it is already buffered, without waiting or touching the transport.
    ///
    /// With [`try_send`](Self::try_send) and [`flush`](Self::flush) it lets a loop answer a
    /// burst of messages with one write.
    ///
    /// After a protocol error (from `recv` or `try_recv`) the Close it calls for is queued
    /// behind whatever was sent before; keep calling [`recv`](Self::recv): it writes them out,
    /// closes the connection and returns `None`. Returning at the first error instead drops
    /// what is still buffered, replies to earlier messages included.
    ///
    /// ```no_run
    /// # async fn echo(mut ws: switchboard_ws::WebSocket<tokio::net::TcpStream>) -> Result<(), switchboard_ws::Error> {
    /// let mut failed = None;
    /// while let Some(msg) = ws.recv().await {
    ///     let mut next = Some(msg);
    ///     while let Some(m) = next.take() {
    ///         match m {
    ///             Ok(m) if m.is_data() => {
    ///                 if let Err(switchboard_ws::Error::WriteBufferFull(m)) = ws.try_send(m) {
    ///                     ws.send(*m).await?;
    ///                 }
    ///             }
    ///             Ok(_) => {}
    ///             Err(e) => {
    ///                 failed.get_or_insert(e);
    ///                 break;
    ///             }
    ///         }
    ///         next = ws.try_recv();
    ///     }
    ///     ws.flush().await?;
    /// }
    /// failed.map_or(Ok(()), Err)
    /// # }
    /// ```
    pub fn try_recv(&mut self) -> Option<Result<Message, Error>> {
        self.inner.try_next_msg()
    }

    /// Sends a message, waiting while the write buffer is above its high-water mark, and
    /// flushes it.
    pub async fn send(&mut self, msg: impl Into<Message>) -> Result<(), Error> {
        poll_fn(|cx| self.inner.poll_ready(cx)).await?;
        self.inner.encode(msg.into())?;
        poll_fn(|cx| self.inner.poll_flush(cx)).await
    }

    /// Sends a data message that the negotiated compression must not touch: use it for a
    /// message that mixes a secret with data an attacker chooses (compression oracles).
    pub async fn send_uncompressed(&mut self, msg: impl Into<Message>) -> Result<(), Error> {
        let (op, payload) = match msg.into() {
            Message::Text(t) => (OpCode::Text, t.into_bytes()),
            Message::Binary(b) => (OpCode::Binary, b),
            other => return self.send(other).await,
        };
        poll_fn(|cx| self.inner.poll_ready(cx)).await?;
        let inner = &mut *self.inner;
        inner.wbuf.append(|out| inner.proto.send_uncompressed(op, &payload, out))?;
        poll_fn(|cx| self.inner.poll_flush(cx)).await
    }

    /// Sends a data message split into fragments (one frame per element).
    pub async fn send_fragmented(&mut self, opcode: OpCode, fragments: &[&[u8]]) -> Result<(), Error> {
        poll_fn(|cx| self.inner.poll_ready(cx)).await?;
        let inner = &mut *self.inner;
        inner.wbuf.append(|out| inner.proto.send_fragmented(opcode, fragments, out))?;
        poll_fn(|cx| self.inner.poll_flush(cx)).await
    }

    /// Queues a message without waiting; it is written by the next read, send or flush.
    /// Returns it in [`Error::WriteBufferFull`] when the buffer is above its high-water mark.
    pub fn try_send(&mut self, msg: impl Into<Message>) -> Result<(), Error> {
        self.inner.try_send(msg.into())
    }

    /// Queues a frame encoded once for many connections (see [`PreparedFrame`]) without
    /// waiting, like [`try_send`](Self::try_send). A client, or a connection with an
    /// extension, encodes its payload as a normal message instead.
    pub fn try_send_prepared(&mut self, frame: &PreparedFrame) -> Result<(), Error> {
        self.inner.try_send_prepared(frame)
    }

    /// Writes out everything buffered.
    pub async fn flush(&mut self) -> Result<(), Error> {
        poll_fn(|cx| self.inner.poll_flush(cx)).await
    }

    /// Closes the connection: sends a Close with `code` and `reason` (validated: a sendable
    /// code and at most 123 bytes), then reads until the peer answers — discarding data
    /// messages that were already in flight — and the transport is closed, or until
    /// `Config::close_timeout`.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        let frame = CloseFrame::new(code, reason)?;
        if self.inner.proto.ready_state() == ReadyState::Open {
            self.inner.encode(Message::Close(Some(frame)))?;
        }
        poll_fn(|cx| self.inner.poll_flush(cx)).await?;
        while let Some(r) = self.recv().await {
            match r {
                Ok(_) => {}
                Err(Error::AbnormalClosure) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Splits into a read half and a write half that can live in different tasks.
    pub fn split(self) -> (WsReader<S>, WsWriter<S>) {
        let mut inner = *self.inner;
        inner.wakers = Some(Arc::new(WriteWakers::default()));
        let shared = Arc::new(Mutex::new(inner));
        (WsReader { inner: shared.clone() }, WsWriter { inner: shared })
    }

    /// Bytes queued but not yet written to the transport.
    pub fn buffered_amount(&self) -> usize {
        self.inner.wbuf.len()
    }

    /// The ready state: `Open`, `Closing` or `Closed`.
    pub fn ready_state(&self) -> ReadyState {
        if self.inner.finished {
            ReadyState::Closed
        } else {
            self.inner.proto.ready_state()
        }
    }

    /// The subprotocol the handshake settled on.
    pub fn protocol(&self) -> Option<&str> {
        self.inner.info.protocol.as_deref()
    }

    /// The negotiated extensions (the `Sec-WebSocket-Extensions` response value).
    pub fn extensions(&self) -> Option<&str> {
        self.inner.info.extensions.as_deref()
    }

    /// The URL connected to (clients) or the request target (servers).
    pub fn url(&self) -> Option<&str> {
        self.inner.info.url.as_deref()
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.inner.proto.role()
    }

    /// The transport.
    pub fn get_ref(&self) -> &S {
        &self.inner.io
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocket<S> {
    type Item = Result<Message, Error>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().inner.poll_next_msg(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocket<S> {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().inner.poll_ready(cx)
    }
    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        self.get_mut().inner.encode(item)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().inner.poll_flush(cx)
    }
    /// Sends a Close 1000 (if none was sent) and flushes. The closing handshake then finishes
    /// on the read side, which yields the peer's Close and ends.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().inner.poll_close(cx)
    }
}

type Shared<S> = Arc<Mutex<Inner<S>>>;

fn lock<S>(m: &Mutex<Inner<S>>) -> std::sync::MutexGuard<'_, Inner<S>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The read half of a split [`WebSocket`]: a [`Stream`] of messages. It also answers pings
/// and runs the keepalive and closing timers, so keep it polled.
pub struct WsReader<S> {
    inner: Shared<S>,
}

/// The write half of a split [`WebSocket`]: a [`Sink`] of messages, plus `send`, `close` and
/// `buffered_amount`.
pub struct WsWriter<S> {
    inner: Shared<S>,
}

impl<S> std::fmt::Debug for WsReader<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WsReader")
    }
}

impl<S> std::fmt::Debug for WsWriter<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WsWriter")
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsReader<S> {
    /// Receives the next message (cancel-safe, as [`WebSocket::recv`]).
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        poll_fn(|cx| lock(&self.inner).poll_next_msg(cx)).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WsReader<S> {
    type Item = Result<Message, Error>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        lock(&self.inner).poll_next_msg(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsWriter<S> {
    /// Sends a message (waits while the buffer is above its high-water mark) and flushes.
    pub async fn send(&mut self, msg: impl Into<Message>) -> Result<(), Error> {
        let msg = msg.into();
        poll_fn(|cx| lock(&self.inner).poll_ready(cx)).await?;
        lock(&self.inner).encode(msg)?;
        poll_fn(|cx| lock(&self.inner).poll_flush(cx)).await
    }

    /// Queues a message without waiting (see [`WebSocket::try_send`]).
    pub fn try_send(&mut self, msg: impl Into<Message>) -> Result<(), Error> {
        lock(&self.inner).try_send(msg.into())
    }

    /// Sends a Close with `code` and `reason` and flushes it. The read half then receives the
    /// peer's Close and ends.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        let frame = CloseFrame::new(code, reason)?;
        lock(&self.inner).encode(Message::Close(Some(frame)))?;
        poll_fn(|cx| lock(&self.inner).poll_flush(cx)).await
    }

    /// Bytes queued but not yet written.
    pub fn buffered_amount(&self) -> usize {
        lock(&self.inner).wbuf.len()
    }

    /// The ready state.
    pub fn ready_state(&self) -> ReadyState {
        let g = lock(&self.inner);
        if g.finished {
            ReadyState::Closed
        } else {
            g.proto.ready_state()
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WsWriter<S> {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        lock(&self.inner).poll_ready(cx)
    }
    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        lock(&self.inner).encode(item)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        lock(&self.inner).poll_flush(cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        lock(&self.inner).poll_close(cx)
    }
}
