//! Limits and timers. Every field has a safe default; each documents its unit and the attack it
//! prevents (the rows of the project's security table, docs/security.md, are named in brackets).

use std::time::Duration;

/// Configuration of one WebSocket connection, both for the handshake and for the frames after it.
///
/// Built with [`Config::default`] and the `with_*` setters (the struct is `#[non_exhaustive]`, so
/// new limits can be added without breaking callers):
///
/// ```
/// use switchboard_ws_proto::Config;
/// let cfg = Config::default().with_max_message_size(1 << 20).with_ping_interval(None);
/// assert_eq!(cfg.max_message_size, 1 << 20);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Largest frame payload accepted, in bytes. Default 16 MiB.
    /// Checked as soon as a frame header is read, before any payload is buffered, and the
    /// declared length is never pre-allocated: a peer cannot make us reserve memory it has not
    /// sent (security: F10, F11, F12). Exceeded → close 1009.
    pub max_frame_size: usize,
    /// Largest message accepted, in bytes, after reassembly and after decompression.
    /// Default 16 MiB. Checked against the running total as each frame header arrives
    /// (security: F13, D1, D2). Exceeded → close 1009.
    pub max_message_size: usize,
    /// Frames any message may be split into regardless of their size, empty continuations
    /// included. Default 1024. Beyond it, see [`min_fragment_average`](Self::min_fragment_average).
    pub max_fragments: usize,
    /// Beyond [`max_fragments`](Self::max_fragments), each further frame of a message must be
    /// paid for by this many payload bytes received for the message (as sent, before any
    /// decompression). Default 16; 0 allows no frames beyond `max_fragments`.
    ///
    /// The guard against tiny-fragment floods (security: F14, F15): a message of `b` bytes may
    /// have at most `max_fragments + b / min_fragment_average` frames, so the per-frame work
    /// stays proportional to the bytes received (an endless stream of empty or one-byte
    /// fragments is refused after about 1,090 frames), while a conformant message of any size
    /// up to [`max_message_size`](Self::max_message_size) in fragments of 16 bytes or more is
    /// always accepted (Autobahn 9.3/9.4 send 4 MiB in 65,536 fragments of 64 B).
    /// Exceeded → close 1008.
    pub min_fragment_average: usize,
    /// Longest time a fragmented message may stay open. Default 60 s; `None` disables it.
    /// Stops a peer from holding a partial message (and its memory) forever with a trickle of
    /// fragments (security: F15). Exceeded → close 1008.
    pub message_timeout: Option<Duration>,
    /// How long to wait for the peer's Close after sending ours (and, on the client, for the
    /// server to close TCP after the handshake). Default 5 s. Then the TCP connection is
    /// dropped (security: F18).
    pub close_timeout: Duration,
    /// Interval of keepalive pings. Default 30 s; `None` disables them.
    /// Detects half-open TCP connections that would otherwise hold resources forever (security: R3).
    pub ping_interval: Option<Duration>,
    /// How long to wait for a pong (or any frame) after a keepalive ping before failing the
    /// connection with 1011. Default 30 s.
    pub pong_timeout: Duration,
    /// Deadline for the opening handshake, from TCP accept (or connect) to the 101 response.
    /// Default 10 s. Enforced by the I/O layer; stops slowloris upgrades (security: H3, T1).
    pub handshake_timeout: Duration,
    /// Most handshakes in progress from one IP address. Default 64. Over it the server
    /// answers 503 at once without reading the request (security: H3, R5).
    pub max_handshakes_per_ip: usize,
    /// Most handshakes in progress in total. Default 4096. Over it: 503 at once (security: H3, R5).
    pub max_handshakes_total: usize,
    /// Longest HTTP request or status line, in bytes. Default 8 KiB. Exceeded → 414 (security: H1).
    pub max_request_line: usize,
    /// Longest HTTP header line, in bytes. Default 8 KiB. Exceeded → 431 (security: H1).
    pub max_header_line: usize,
    /// Largest HTTP head (request line plus headers), in bytes. Default 64 KiB.
    /// Exceeded → 431 (security: H1).
    pub max_header_bytes: usize,
    /// Most HTTP headers in the handshake. Default 100. Exceeded → 431 (security: H2).
    pub max_headers: usize,
    /// High-water mark of the outgoing buffer, in bytes. Default 16 MiB (plus one message).
    /// Sends wait (or `try_send` returns the message) while the buffered amount is above it;
    /// data is never dropped silently. Bounds the memory a peer that stops reading can cost
    /// (security: R1, F19).
    pub max_write_buffer: usize,
    /// Size of each read from the socket, in bytes. Default 8 KiB. The read buffer grows by at
    /// most this much beyond what is pending, so memory tracks bytes actually received (security: F11).
    pub read_chunk_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame_size: 16 << 20,
            max_message_size: 16 << 20,
            max_fragments: 1024,
            min_fragment_average: 16,
            message_timeout: Some(Duration::from_secs(60)),
            close_timeout: Duration::from_secs(5),
            ping_interval: Some(Duration::from_secs(30)),
            pong_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            max_handshakes_per_ip: 64,
            max_handshakes_total: 4096,
            max_request_line: 8 << 10,
            max_header_line: 8 << 10,
            max_header_bytes: 64 << 10,
            max_headers: 100,
            max_write_buffer: 16 << 20,
            read_chunk_size: 8 << 10,
        }
    }
}

macro_rules! setters {
    ($($(#[$m:meta])* $name:ident: $field:ident: $ty:ty;)*) => {
        impl Config {
            $(
                $(#[$m])*
                #[must_use]
                pub fn $name(mut self, v: $ty) -> Self {
                    self.$field = v;
                    self
                }
            )*
        }
    };
}

setters! {
    /// Sets [`Config::max_frame_size`].
    with_max_frame_size: max_frame_size: usize;
    /// Sets [`Config::max_message_size`].
    with_max_message_size: max_message_size: usize;
    /// Sets [`Config::max_fragments`].
    with_max_fragments: max_fragments: usize;
    /// Sets [`Config::min_fragment_average`].
    with_min_fragment_average: min_fragment_average: usize;
    /// Sets [`Config::message_timeout`].
    with_message_timeout: message_timeout: Option<Duration>;
    /// Sets [`Config::close_timeout`].
    with_close_timeout: close_timeout: Duration;
    /// Sets [`Config::ping_interval`].
    with_ping_interval: ping_interval: Option<Duration>;
    /// Sets [`Config::pong_timeout`].
    with_pong_timeout: pong_timeout: Duration;
    /// Sets [`Config::handshake_timeout`].
    with_handshake_timeout: handshake_timeout: Duration;
    /// Sets [`Config::max_handshakes_per_ip`].
    with_max_handshakes_per_ip: max_handshakes_per_ip: usize;
    /// Sets [`Config::max_handshakes_total`].
    with_max_handshakes_total: max_handshakes_total: usize;
    /// Sets [`Config::max_request_line`].
    with_max_request_line: max_request_line: usize;
    /// Sets [`Config::max_header_line`].
    with_max_header_line: max_header_line: usize;
    /// Sets [`Config::max_header_bytes`].
    with_max_header_bytes: max_header_bytes: usize;
    /// Sets [`Config::max_headers`].
    with_max_headers: max_headers: usize;
    /// Sets [`Config::max_write_buffer`].
    with_max_write_buffer: max_write_buffer: usize;
    /// Sets [`Config::read_chunk_size`].
    with_read_chunk_size: read_chunk_size: usize;
}
