//! Micro-batching: concurrent requests for one servable are queued to a worker thread that
//! runs them as one model call (up to `max_batch` rows, waiting at most `max_wait` for more),
//! so many small requests share the cost of a call.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::{Servable, ServeError};

/// Micro-batching limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    /// Most rows in one model call.
    pub max_batch: usize,
    /// Longest a request waits for others to join its batch (zero: only requests already
    /// queued join).
    pub max_wait: Duration,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            max_batch: 256,
            max_wait: Duration::ZERO,
        }
    }
}

struct Request {
    rows: Vec<f32>,
    n: usize,
    reply: oneshot::Sender<Result<Vec<f32>, ServeError>>,
}

/// A servable with its batching worker; cheap to share (`Arc`).
pub struct Batcher {
    /// The model.
    pub servable: Arc<Servable>,
    tx: Sender<Request>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("servable", &self.servable)
            .finish_non_exhaustive()
    }
}

fn worker(servable: Arc<Servable>, rx: Receiver<Request>, opts: BatchOptions) {
    let w = servable.signature.inputs.len();
    let out_w = servable.signature.width;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        let mut rows = batch[0].n;
        let deadline = Instant::now() + opts.max_wait;
        while rows < opts.max_batch {
            let next = match rx.try_recv() {
                Ok(r) => Some(r),
                Err(_) if opts.max_wait.is_zero() => None,
                Err(_) => rx
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    .ok(),
            };
            match next {
                Some(r) => {
                    rows += r.n;
                    batch.push(r);
                }
                None => break,
            }
        }
        if batch.len() == 1 {
            let r = batch.pop().expect("one request");
            let _ = r.reply.send(servable.predict(&r.rows, r.n));
            continue;
        }
        let mut all = Vec::with_capacity(rows * w);
        for r in &batch {
            all.extend_from_slice(&r.rows);
        }
        match servable.predict(&all, rows) {
            Ok(out) => {
                let mut at = 0;
                for r in batch {
                    let part = out[at * out_w..(at + r.n) * out_w].to_vec();
                    at += r.n;
                    let _ = r.reply.send(Ok(part));
                }
            }
            // Run each alone, so one bad request cannot fail the others.
            Err(_) => {
                for r in batch {
                    let _ = r.reply.send(servable.predict(&r.rows, r.n));
                }
            }
        }
    }
}

impl Batcher {
    /// Starts the worker thread for `servable` (it ends when the batcher is dropped).
    pub fn new(servable: Servable, opts: BatchOptions) -> Self {
        let servable = Arc::new(servable);
        let (tx, rx) = channel();
        let s = servable.clone();
        std::thread::Builder::new()
            .name("mle-batcher".into())
            .spawn(move || worker(s, rx, opts))
            .expect("spawn the batching thread");
        Self { servable, tx }
    }

    /// Predicts `n` rows (already validated), batched with concurrent callers.
    pub async fn predict(&self, rows: Vec<f32>, n: usize) -> Result<Vec<f32>, ServeError> {
        let (reply, wait) = oneshot::channel();
        self.tx
            .send(Request { rows, n, reply })
            .map_err(|_| ServeError::Run("the batcher is gone".into()))?;
        wait.await
            .map_err(|_| ServeError::Run("the batcher stopped".into()))?
    }
}
