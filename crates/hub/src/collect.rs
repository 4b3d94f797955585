//! Data collection: records go through a bounded queue to one writer task that appends JSON
//! lines to a file and rotates it by size.
//!
//! Durability policy: a record is acknowledged to the client once it is queued. The writer
//! writes each batch with one `write`, then `fsync`s when `collect.fsync` is on; without it, a
//! crash of the machine (not of the process) may lose the last seconds. When the queue is
//! full the client gets an error (back-pressure) instead of the hub buffering without bound.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc;

use crate::config;

/// The sending side of the sink.
#[derive(Debug, Clone)]
pub struct Collector {
    tx: mpsc::Sender<Value>,
    /// Records written so far.
    pub written: Arc<AtomicU64>,
}

impl Collector {
    /// Starts the writer task.
    pub fn start(cfg: &config::Collect) -> Collector {
        let (tx, rx) = mpsc::channel(cfg.queue);
        let written = Arc::new(AtomicU64::new(0));
        tokio::spawn(writer(cfg.clone(), rx, written.clone()));
        Collector { tx, written }
    }

    /// Queues a record; fails when the queue is full.
    pub fn push(&self, record: Value) -> Result<(), &'static str> {
        self.tx.try_send(record).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => "collector busy, retry later",
            mpsc::error::TrySendError::Closed(_) => "collector stopped",
        })
    }
}

fn rotate(path: &PathBuf, keep: usize) {
    for i in (1..keep).rev() {
        let _ = std::fs::rename(format!("{}.{i}", path.display()), format!("{}.{}", path.display(), i + 1));
    }
    if keep > 0 {
        let _ = std::fs::rename(path, format!("{}.1", path.display()));
    } else {
        let _ = std::fs::remove_file(path);
    }
}

async fn writer(cfg: config::Collect, mut rx: mpsc::Receiver<Value>, written: Arc<AtomicU64>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 256).await > 0 {
        let mut buf = Vec::new();
        for r in batch.drain(..) {
            let _ = serde_json::to_writer(&mut buf, &r);
            buf.push(b'\n');
        }
        let cfg2 = cfg.clone();
        let n = buf.iter().filter(|&&b| b == b'\n').count() as u64;
        let res = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let size = std::fs::metadata(&cfg2.file).map(|m| m.len()).unwrap_or(0);
            if size > 0 && size + buf.len() as u64 > cfg2.max_file_bytes {
                rotate(&cfg2.file, cfg2.keep_files);
            }
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&cfg2.file)?;
            f.write_all(&buf)?;
            if cfg2.fsync {
                f.sync_data()?;
            }
            Ok(())
        })
        .await;
        match res {
            Ok(Ok(())) => {
                written.fetch_add(n, Ordering::Relaxed);
            }
            Ok(Err(e)) => tracing::error!(file = %cfg.file.display(), error = %e, "collect: write failed"),
            Err(e) => tracing::error!(error = %e, "collect: writer task failed"),
        }
    }
}
