//! Parameter servers. Server `i` of `n` holds elements `shard_ranges(total, n)[i]` of the flat
//! parameter vector and the optimizer state for them; trainers pull parameters and push
//! gradients, and the server applies the optimizer (element-wise, so shards update exactly as
//! the whole vector would). Asynchronous by default, as in TensorFlow's between-graph
//! replication; with `sync` set to the number of trainers, each step averages one push from
//! every trainer before applying it.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::ops::Range;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use mle_nn::{Optimizer, OptimizerKind, OptimizerSpec};

use crate::cluster::{Cluster, shard_ranges};
use crate::wire::{self, Conn, Dec, Enc, Kind};
use crate::{DistError, Options};

#[derive(Default)]
struct Shard {
    opt: Option<Optimizer>,
    params: Vec<f32>,
    step: u64,
    max_steps: u64,
    sync: usize,
    pending: Vec<f32>,
    pushed_by: BTreeSet<String>,
    done: bool,
    error: Option<String>,
}

struct Server {
    shard: Mutex<Shard>,
    changed: Condvar,
    opts: Options,
}

fn encode_spec(e: &mut Enc, s: &OptimizerSpec) {
    e.u64(
        OptimizerKind::NAMES
            .iter()
            .position(|n| *n == s.kind.name())
            .unwrap_or(0) as u64,
    );
    for v in [
        s.learning_rate,
        s.momentum,
        f64::from(u8::from(s.nesterov)),
        s.beta_1,
        s.beta_2,
        s.rho,
        s.epsilon,
        s.weight_decay,
        s.initial_accumulator_value,
    ] {
        e.f64(v);
    }
}

fn decode_spec(d: &mut Dec<'_>) -> Result<OptimizerSpec, DistError> {
    let kind = OptimizerKind::NAMES
        .get(d.u64()? as usize)
        .and_then(|n| OptimizerKind::parse(n))
        .unwrap_or(OptimizerKind::Sgd);
    let mut s = OptimizerSpec::new(kind, d.f64()?);
    s.momentum = d.f64()?;
    s.nesterov = d.f64()? != 0.0;
    s.beta_1 = d.f64()?;
    s.beta_2 = d.f64()?;
    s.rho = d.f64()?;
    s.epsilon = d.f64()?;
    s.weight_decay = d.f64()?;
    s.initial_accumulator_value = d.f64()?;
    Ok(s)
}

/// Runs parameter server `cluster.me` until the primary sends `Shutdown` (and its trainers
/// have gone) or `Shutdown` grace expires.
pub fn serve(cluster: &Cluster, opts: &Options) -> Result<(), DistError> {
    let listener = wire::listen(&cluster.me.addr)?;
    serve_on(listener, (cluster.me.role.clone(), cluster.me.index), opts)
}

/// [`serve`] on an already bound listener.
pub fn serve_on(
    listener: TcpListener,
    me: (String, usize),
    opts: &Options,
) -> Result<(), DistError> {
    let server = Arc::new(Server {
        shard: Mutex::new(Shard::default()),
        changed: Condvar::new(),
        opts: *opts,
    });
    listener
        .set_nonblocking(true)
        .map_err(|e| DistError::Listen {
            addr: "ps".into(),
            source: e,
        })?;
    let mut done_at: Option<Instant> = None;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let server = server.clone();
                let me = me.clone();
                std::thread::spawn(move || {
                    if let Ok((conn, role, index)) =
                        wire::handshake(stream, (me.0.as_str(), me.1), &server.opts)
                    {
                        let _ = handle(&server, conn, format!("{role} {index}"));
                    }
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => {
                return Err(DistError::Listen {
                    addr: "ps".into(),
                    source: e,
                });
            }
        }
        let done = server.shard.lock().map(|s| s.done).unwrap_or(true);
        if done {
            // Give trainers still pushing a moment to hear that training is over.
            let t = *done_at.get_or_insert_with(Instant::now);
            if t.elapsed() > Duration::from_secs(2) {
                return Ok(());
            }
        }
    }
}

fn handle(server: &Server, mut conn: Conn, who: String) -> Result<(), DistError> {
    loop {
        let (kind, payload) = conn.recv()?;
        let peer = conn.peer().to_string();
        let mut d = Dec::new(&payload, &peer);
        let mut shard = server.shard.lock().map_err(|_| DistError::Protocol {
            peer: peer.clone(),
            why: "state poisoned".into(),
        })?;
        match kind {
            Kind::Init => {
                let spec = decode_spec(&mut d)?;
                shard.step = d.u64()?;
                shard.max_steps = d.u64()?;
                shard.sync = d.u64()? as usize;
                let iterations = d.u64()?;
                shard.params = d.f32s()?;
                let mut opt = Optimizer::new(spec, shard.params.len());
                for (_, slot) in opt.slots.iter_mut() {
                    let v = d.f32s()?;
                    if v.len() == slot.len() {
                        slot.copy_from_slice(&v);
                    }
                }
                opt.iterations = iterations;
                shard.opt = Some(opt);
                shard.pending = vec![0.0; shard.params.len()];
                shard.pushed_by.clear();
                shard.done = false;
                shard.error = None;
                drop(shard);
                server.changed.notify_all();
                conn.send(Kind::Ack, &[])?;
            }
            Kind::Pull => {
                let reply = if shard.done {
                    (Kind::Done, Vec::new())
                } else if shard.opt.is_none() {
                    (Kind::NotReady, Vec::new())
                } else {
                    let mut e = Enc::default();
                    e.u64(shard.step).f32s(&shard.params);
                    (Kind::Params, e.0)
                };
                drop(shard);
                conn.send(reply.0, &reply.1)?;
            }
            Kind::Push => {
                let lr = d.f64()?;
                let grads = d.f32s()?;
                // Past the step budget a push is refused, so the global step ends exactly there.
                if shard.done || shard.step >= shard.max_steps {
                    drop(shard);
                    conn.send(Kind::Done, &[])?;
                    continue;
                }
                if grads.len() != shard.params.len() {
                    let why = format!(
                        "pushed {} gradients for a shard of {}",
                        grads.len(),
                        shard.params.len()
                    );
                    drop(shard);
                    conn.send(Kind::Error, why.as_bytes())?;
                    continue;
                }
                let step = if shard.sync <= 1 {
                    let Shard { opt, params, .. } = &mut *shard;
                    opt.as_mut()
                        .expect("initialised before pushes")
                        .step(params, &grads, lr);
                    shard.step += 1;
                    shard.step
                } else {
                    match sync_push(server, shard, &who, &grads, lr) {
                        Ok(step) => step,
                        Err(why) => {
                            conn.send(Kind::Error, why.as_bytes())?;
                            continue;
                        }
                    }
                };
                let mut e = Enc::default();
                e.u64(step);
                conn.send(Kind::Ack, &e.0)?;
            }
            Kind::Snapshot => {
                let mut e = Enc::default();
                let opt = shard.opt.as_ref();
                e.u64(shard.step)
                    .u64(opt.map_or(0, |o| o.iterations))
                    .f32s(&shard.params);
                for (_, slot) in opt.map(|o| o.slots.as_slice()).unwrap_or_default() {
                    e.f32s(slot);
                }
                drop(shard);
                conn.send(Kind::State, &e.0)?;
            }
            Kind::Shutdown => {
                shard.done = true;
                drop(shard);
                server.changed.notify_all();
                conn.send(Kind::Ack, &[])?;
            }
            other => {
                drop(shard);
                conn.send(Kind::Error, format!("unexpected {other:?}").as_bytes())?;
            }
        }
    }
}

/// Adds one trainer's gradients to the current synchronous step and waits until every trainer
/// has pushed (or the peer timeout passes, naming who is missing).
fn sync_push(
    server: &Server,
    mut shard: std::sync::MutexGuard<'_, Shard>,
    who: &str,
    grads: &[f32],
    lr: f64,
) -> Result<u64, String> {
    if let Some(e) = &shard.error {
        return Err(e.clone());
    }
    let my_step = shard.step;
    for (p, g) in shard.pending.iter_mut().zip(grads) {
        *p += g;
    }
    shard.pushed_by.insert(who.to_string());
    if shard.pushed_by.len() >= shard.sync {
        let n = shard.sync as f32;
        let Shard {
            opt,
            params,
            pending,
            ..
        } = &mut *shard;
        pending.iter_mut().for_each(|g| *g /= n);
        opt.as_mut().expect("initialised").step(params, pending, lr);
        pending.iter_mut().for_each(|g| *g = 0.0);
        shard.pushed_by.clear();
        shard.step += 1;
        let step = shard.step;
        drop(shard);
        server.changed.notify_all();
        return Ok(step);
    }
    let deadline = Instant::now() + server.opts.peer_timeout * 3;
    while shard.step == my_step && !shard.done && shard.error.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let got: Vec<&str> = shard.pushed_by.iter().map(String::as_str).collect();
            let why = format!(
                "synchronous step {my_step} waited {:.0} s for {} of {} trainers (pushed: {})",
                (server.opts.peer_timeout * 3).as_secs_f64(),
                shard.sync - shard.pushed_by.len(),
                shard.sync,
                got.join(", ")
            );
            shard.error = Some(why.clone());
            server.changed.notify_all();
            return Err(why);
        }
        shard = server
            .changed
            .wait_timeout(shard, left)
            .map_err(|_| "state poisoned".to_string())?
            .0;
    }
    match &shard.error {
        Some(e) => Err(e.clone()),
        None => Ok(shard.step),
    }
}

/// What a pull returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pulled {
    /// Parameters at this global step.
    Step(u64),
    /// The servers are not initialised yet.
    NotReady,
    /// Training is over.
    Done,
}

/// A trainer's connections to every parameter server.
pub struct PsClient {
    conns: Vec<Conn>,
    ranges: Vec<Range<usize>>,
}

impl PsClient {
    /// Connects to every server (retrying while they start); `total` is the parameter count.
    pub fn connect(cluster: &Cluster, total: usize, opts: &Options) -> Result<Self, DistError> {
        let me = (cluster.me.role.as_str(), cluster.me.index);
        let conns = cluster
            .ps
            .iter()
            .map(|p| wire::connect(&p.addr, &p.to_string(), me, opts))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            ranges: shard_ranges(total, conns.len()),
            conns,
        })
    }

    /// Sets every shard (the primary, at start or after a restart).
    pub fn init(
        &mut self,
        step: u64,
        max_steps: u64,
        sync: usize,
        params: &[f32],
        opt: &Optimizer,
    ) -> Result<(), DistError> {
        for (c, r) in self.conns.iter().zip(&self.ranges) {
            let mut e = Enc::default();
            encode_spec(&mut e, &opt.spec);
            e.u64(step)
                .u64(max_steps)
                .u64(sync as u64)
                .u64(opt.iterations)
                .f32s(&params[r.clone()]);
            for (_, slot) in &opt.slots {
                e.f32s(&slot[r.clone()]);
            }
            c.send(Kind::Init, &e.0)?;
        }
        for c in &mut self.conns {
            c.expect(Kind::Ack)?;
        }
        Ok(())
    }

    /// Fetches every shard into `params`.
    pub fn pull(&mut self, params: &mut [f32]) -> Result<Pulled, DistError> {
        for c in &self.conns {
            c.send(Kind::Pull, &[])?;
        }
        let mut result = Pulled::Step(u64::MAX);
        for (c, r) in self.conns.iter_mut().zip(&self.ranges) {
            let (kind, payload) = c.recv()?;
            match kind {
                Kind::Params => {
                    let peer = c.peer().to_string();
                    let mut d = Dec::new(&payload, &peer);
                    let step = d.u64()?;
                    let shard = d.f32s()?;
                    if shard.len() != r.len() {
                        return Err(DistError::Protocol {
                            peer,
                            why: format!("sent {} parameters, expected {}", shard.len(), r.len()),
                        });
                    }
                    params[r.clone()].copy_from_slice(&shard);
                    if let Pulled::Step(s) = result {
                        result = Pulled::Step(s.min(step));
                    }
                }
                Kind::NotReady => result = Pulled::NotReady,
                Kind::Done => return Ok(Pulled::Done),
                other => {
                    return Err(DistError::Protocol {
                        peer: c.peer().into(),
                        why: format!("unexpected {other:?}"),
                    });
                }
            }
        }
        Ok(result)
    }

    /// Sends gradients; returns the global step after them, or `None` when training is over.
    pub fn push(&mut self, grads: &[f32], lr: f64) -> Result<Option<u64>, DistError> {
        for (c, r) in self.conns.iter().zip(&self.ranges) {
            let mut e = Enc::default();
            e.f64(lr).f32s(&grads[r.clone()]);
            c.send(Kind::Push, &e.0)?;
        }
        let mut step = 0;
        let mut done = false;
        for c in &mut self.conns {
            let (kind, payload) = c.recv()?;
            match kind {
                Kind::Ack => step = step.max(Dec::new(&payload, c.peer()).u64()?),
                Kind::Done => done = true,
                other => {
                    return Err(DistError::Protocol {
                        peer: c.peer().into(),
                        why: format!("unexpected {other:?}"),
                    });
                }
            }
        }
        Ok((!done).then_some(step))
    }

    /// The whole state: global step, parameters and optimizer slots.
    pub fn snapshot(&mut self, params: &mut [f32], opt: &mut Optimizer) -> Result<u64, DistError> {
        for c in &self.conns {
            c.send(Kind::Snapshot, &[])?;
        }
        let mut step = u64::MAX;
        for (c, r) in self.conns.iter_mut().zip(&self.ranges) {
            let payload = c.expect(Kind::State)?;
            let peer = c.peer().to_string();
            let mut d = Dec::new(&payload, &peer);
            step = step.min(d.u64()?);
            opt.iterations = d.u64()?;
            params[r.clone()].copy_from_slice(&d.f32s()?);
            for (_, slot) in opt.slots.iter_mut() {
                slot[r.clone()].copy_from_slice(&d.f32s()?);
            }
        }
        Ok(step)
    }

    /// Tells every server that training is over.
    pub fn shutdown(&mut self) -> Result<(), DistError> {
        for c in &self.conns {
            c.send(Kind::Shutdown, &[])?;
        }
        for c in &mut self.conns {
            c.expect(Kind::Ack)?;
        }
        Ok(())
    }
}
