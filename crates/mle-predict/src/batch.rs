//! Micro-batching by flat combining: concurrent requests for one servable queue up, and whichever
//! caller finds no batch running becomes the leader: it takes queued requests (up to
//! `max_batch` rows), runs them as one model call on its own thread, hands every caller its
//! rows, and repeats until the queue is empty. There is no dispatcher thread, so a lone request
//! pays no thread hand-off, and under load many small requests share one call.
//!
//! Batching pays when a model call has a fixed cost larger than waking another thread (a few
//! microseconds). Models cheaper than `min_call_cost` per single-row call (measured when the
//! batcher is made; an mle MLP on the built-in interpreter takes about 1 µs) run inline on each
//! request's own thread instead, in parallel on every core, with no wake-ups at all.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::{Servable, ServeError};

/// Clears the leader flag when dropped (also when a batch unwinds).
struct Leading<'a>(&'a AtomicBool);

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Micro-batching limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    /// Most rows in one model call.
    pub max_batch: usize,
    /// How long a leader waits for more requests when its batch is not full (zero: only
    /// requests already queued join).
    pub max_wait: Duration,
    /// Models whose single-row call is cheaper than this are not batched.
    pub min_call_cost: Duration,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            max_batch: 256,
            max_wait: Duration::ZERO,
            min_call_cost: Duration::from_micros(5),
        }
    }
}

struct Request {
    rows: Vec<f32>,
    n: usize,
    reply: oneshot::Sender<Result<Vec<f32>, ServeError>>,
}

/// A servable with its request queue; cheap to share (`Arc`).
pub struct Batcher {
    /// The model.
    pub servable: Arc<Servable>,
    opts: BatchOptions,
    queue: Mutex<VecDeque<Request>>,
    leading: AtomicBool,
    batching: bool,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("servable", &self.servable)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Batcher {
    /// A batcher for `servable` (times a few single-row calls to decide whether to batch).
    pub fn new(servable: Servable, opts: BatchOptions) -> Self {
        let zeros = vec![0.0f32; servable.signature.inputs.len()];
        let cost = (0..20)
            .map(|_| {
                let t = std::time::Instant::now();
                let _ = servable.predict(&zeros, 1);
                t.elapsed()
            })
            .min()
            .unwrap_or_default();
        Self {
            servable: Arc::new(servable),
            opts,
            queue: Mutex::new(VecDeque::new()),
            leading: AtomicBool::new(false),
            batching: cost >= opts.min_call_cost,
        }
    }

    /// Whether concurrent requests are combined (else each runs inline).
    pub fn batching(&self) -> bool {
        self.batching
    }

    /// Takes queued requests holding up to `max_batch` rows (at least one request).
    fn take(&self) -> Vec<Request> {
        let Ok(mut q) = self.queue.lock() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut rows = 0;
        while let Some(front) = q.front() {
            if !out.is_empty() && rows + front.n > self.opts.max_batch {
                break;
            }
            rows += front.n;
            out.extend(q.pop_front());
        }
        out
    }

    /// Runs a batch where it cannot hold up the async runtime's other tasks (a batched model
    /// is one whose call costs more than a wake-up), and where a panic of the model cannot
    /// take the leader with it: the batch's callers then get an error (their reply channels
    /// are dropped) and the next request leads again.
    fn run_guarded(&self, batch: Vec<Request>) {
        let call = || {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run(batch)));
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(call)
            }
            _ => call(),
        }
    }

    fn run(&self, batch: Vec<Request>) {
        let s = &self.servable;
        if batch.len() == 1 {
            for r in batch {
                let _ = r.reply.send(s.predict(&r.rows, r.n));
            }
            return;
        }
        let rows: usize = batch.iter().map(|r| r.n).sum();
        let mut all = Vec::with_capacity(rows * s.signature.inputs.len());
        for r in &batch {
            all.extend_from_slice(&r.rows);
        }
        let w = s.signature.width;
        match s.predict(&all, rows) {
            Ok(out) => {
                let mut at = 0;
                for r in batch {
                    let part = out[at * w..(at + r.n) * w].to_vec();
                    at += r.n;
                    let _ = r.reply.send(Ok(part));
                }
            }
            // Run each alone, so that one bad request cannot fail the others.
            Err(_) => {
                for r in batch {
                    let _ = r.reply.send(s.predict(&r.rows, r.n));
                }
            }
        }
    }

    /// Predicts `n` rows (already validated), batched with concurrent callers.
    pub async fn predict(&self, rows: Vec<f32>, n: usize) -> Result<Vec<f32>, ServeError> {
        if !self.batching {
            return self.servable.predict(&rows, n);
        }
        let (reply, wait) = oneshot::channel();
        self.queue
            .lock()
            .map_err(|_| ServeError::Run("the request queue is poisoned".into()))?
            .push_back(Request { rows, n, reply });
        while !self.leading.swap(true, Ordering::Acquire) {
            // Whatever happens below, this caller stops leading when it leaves.
            let _leading = Leading(&self.leading);
            if !self.opts.max_wait.is_zero() {
                let queued: usize = self
                    .queue
                    .lock()
                    .map(|q| q.iter().map(|r| r.n).sum())
                    .unwrap_or(0);
                if queued < self.opts.max_batch {
                    tokio::time::sleep(self.opts.max_wait).await;
                }
            }
            loop {
                let batch = self.take();
                if batch.is_empty() {
                    break;
                }
                self.run_guarded(batch);
            }
            drop(_leading);
            // A request queued after the last take but before the flag was cleared would wait
            // for a leader that has gone: look again.
            let empty = self.queue.lock().map(|q| q.is_empty()).unwrap_or(true);
            if empty {
                break;
            }
        }
        wait.await
            .map_err(|_| ServeError::Run("the batch leader stopped".into()))?
    }
}
