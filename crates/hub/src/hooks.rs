//! Backend hooks: client events, connects and subscriptions POSTed as JSON to the backend's
//! URLs; the answers become the client's ack and may carry actions (security: every call has a
//! timeout, a concurrency cap and a size cap on the answer).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::config::Hooks as HooksConfig;

/// An `http://host:port/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookUrl {
    authority: String,
    path: String,
}

impl HookUrl {
    /// Parses a plain-HTTP URL (hooks run beside the hub, on a private network).
    pub fn parse(url: &str) -> Option<HookUrl> {
        let rest = url.strip_prefix("http://")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains(['@', ' ']) || path.contains([' ', '\r', '\n']) {
            return None;
        }
        let authority = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Some(HookUrl { authority, path: path.to_owned() })
    }
}

/// Why a hook gave no answer; the client gets `{ok:false, error, code}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookError {
    /// No answer within `hooks.timeout_ms`.
    Timeout,
    /// `hooks.max_concurrency` calls already in flight.
    Busy,
    /// The backend could not be reached, answered non-2xx, or not with JSON.
    Failed,
}

impl HookError {
    /// `hook_timeout`, `hook_busy`, `hook_failed`.
    pub fn code(self) -> &'static str {
        match self {
            HookError::Timeout => "hook_timeout",
            HookError::Busy => "hook_busy",
            HookError::Failed => "hook_failed",
        }
    }

    /// The client's reply.
    pub fn reply(self) -> Value {
        let error = match self {
            HookError::Timeout => "the backend did not answer in time",
            HookError::Busy => "the backend is busy, retry later",
            HookError::Failed => "the backend failed",
        };
        json!({"ok": false, "error": error, "code": self.code()})
    }
}

/// One configured hook: its URL and its in-flight cap.
#[derive(Debug)]
struct Hook {
    name: String,
    url: HookUrl,
    permits: Arc<Semaphore>,
}

/// Calls per hook and outcome, for `/metrics`.
#[derive(Debug, Default)]
pub struct HookStats {
    counts: parking_lot::Mutex<HashMap<(String, &'static str), u64>>,
    micros: AtomicU64,
}

impl HookStats {
    fn record(&self, hook: &str, outcome: &'static str, took: Duration) {
        *self.counts.lock().entry((hook.to_owned(), outcome)).or_default() += 1;
        self.micros.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// Calls by (hook, outcome), sorted.
    pub fn counts(&self) -> Vec<((String, &'static str), u64)> {
        let mut rows: Vec<_> = self.counts.lock().iter().map(|(k, v)| (k.clone(), *v)).collect();
        rows.sort();
        rows
    }

    /// Time spent in hook calls.
    pub fn seconds(&self) -> f64 {
        self.micros.load(Ordering::Relaxed) as f64 / 1e6
    }
}

/// The configured hooks.
#[derive(Debug)]
pub struct Hooks {
    connect: Option<Hook>,
    subscribe: Option<Hook>,
    events: Vec<(String, Hook)>,
    timeout: Duration,
    retries: u32,
    max_response: usize,
    /// Outcomes, for `/metrics`.
    pub stats: HookStats,
}

impl Hooks {
    /// From `[hooks]` (already validated).
    pub fn new(cfg: &HooksConfig) -> Hooks {
        let hook = |name: String, url: &str| {
            HookUrl::parse(url).map(|url| Hook { name, url, permits: Arc::new(Semaphore::new(cfg.max_concurrency)) })
        };
        Hooks {
            connect: cfg.connect_url.as_deref().and_then(|u| hook("connect".into(), u)),
            subscribe: cfg.subscribe_url.as_deref().and_then(|u| hook("subscribe".into(), u)),
            events: cfg
                .events
                .iter()
                .filter_map(|e| hook(format!("event:{}", e.pattern), &e.url).map(|h| (e.pattern.clone(), h)))
                .collect(),
            timeout: Duration::from_millis(cfg.timeout_ms),
            retries: cfg.retries,
            max_response: cfg.max_response_bytes,
            stats: HookStats::default(),
        }
    }

    /// Whether a connect hook is configured.
    pub fn has_connect(&self) -> bool {
        self.connect.is_some()
    }

    /// Whether a subscribe hook is configured.
    pub fn has_subscribe(&self) -> bool {
        self.subscribe.is_some()
    }

    /// Whether a client event named `event` goes to the backend.
    pub fn handles_event(&self, event: &str) -> bool {
        self.event_hook(event).is_some()
    }

    fn event_hook(&self, event: &str) -> Option<&Hook> {
        self.events
            .iter()
            .find(|(p, _)| match p.strip_suffix('*') {
                Some(prefix) => event.starts_with(prefix),
                None => event == p,
            })
            .map(|(_, h)| h)
    }

    /// Asks the connect hook; `Ok(None)` when none is configured.
    pub async fn connect(&self, body: Value) -> Result<Option<Value>, HookError> {
        match &self.connect {
            Some(h) => self.call(h, body).await.map(Some),
            None => Ok(None),
        }
    }

    /// Asks the subscribe hook; `Ok(None)` when none is configured.
    pub async fn subscribe(&self, body: Value) -> Result<Option<Value>, HookError> {
        match &self.subscribe {
            Some(h) => self.call(h, body).await.map(Some),
            None => Ok(None),
        }
    }

    /// Sends a client event to its hook; `Ok(None)` when no hook takes it.
    pub async fn event(&self, event: &str, body: Value) -> Result<Option<Value>, HookError> {
        match self.event_hook(event) {
            Some(h) => self.call(h, body).await.map(Some),
            None => Ok(None),
        }
    }

    async fn call(&self, hook: &Hook, body: Value) -> Result<Value, HookError> {
        let t0 = Instant::now();
        let Ok(_permit) = hook.permits.clone().try_acquire_owned() else {
            self.stats.record(&hook.name, "busy", t0.elapsed());
            return Err(HookError::Busy);
        };
        let body = Bytes::from(body.to_string());
        let attempt = async {
            let mut tries = 0;
            loop {
                match post(&hook.url, body.clone(), self.max_response).await {
                    Ok(v) => return Ok(v),
                    Err(retryable) if retryable && tries < self.retries => tries += 1,
                    Err(_) => return Err(HookError::Failed),
                }
            }
        };
        let r = match tokio::time::timeout(self.timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(HookError::Timeout),
        };
        let outcome = match &r {
            Ok(_) => "ok",
            Err(e) => e.code(),
        };
        self.stats.record(&hook.name, outcome, t0.elapsed());
        if let Err(e) = &r {
            tracing::warn!(hook = hook.name, outcome = e.code(), "backend hook failed");
        }
        r
    }
}

/// One POST: the JSON answer, or `Err(retryable)`.
async fn post(url: &HookUrl, body: Bytes, max_response: usize) -> Result<Value, bool> {
    let tcp = TcpStream::connect(&url.authority).await.map_err(|_| true)?;
    let _ = tcp.set_nodelay(true);
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.map_err(|_| true)?;
    // The connection's task ends with the exchange; the deadline bounds it if the backend
    // stalls after the caller has given up.
    tokio::spawn(tokio::time::timeout(Duration::from_secs(60), conn));
    let req = http::Request::post(&url.path)
        .header(http::header::HOST, &url.authority)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::USER_AGENT, "switchboard-hook")
        .body(Full::new(body))
        .map_err(|_| false)?;
    let resp = send.send_request(req).await.map_err(|_| true)?;
    let status = resp.status();
    if status.is_server_error() {
        return Err(true);
    }
    if !status.is_success() {
        return Err(false);
    }
    let bytes = Limited::new(resp.into_body(), max_response).collect().await.map_err(|_| false)?.to_bytes();
    serde_json::from_slice(&bytes).map_err(|_| false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            HookUrl::parse("http://127.0.0.1:9000/ev"),
            Some(HookUrl { authority: "127.0.0.1:9000".into(), path: "/ev".into() })
        );
        assert_eq!(
            HookUrl::parse("http://backend").map(|u| (u.authority, u.path)),
            Some(("backend:80".into(), "/".into()))
        );
        for bad in ["https://x/", "ftp://x", "http://", "http://u@x/", "http://x/a b"] {
            assert_eq!(HookUrl::parse(bad), None, "{bad}");
        }
    }
}
