//! Ring all-reduce among the trainers (Patarasuk & Yuan, "Bandwidth optimal all-reduce
//! algorithms for clusters of workstations", JPDC 2009): the buffer is cut into `world` chunks;
//! `world - 1` reduce-scatter steps leave each rank with one fully summed chunk, and `world - 1`
//! all-gather steps circulate the sums. Each step sends to the next rank while receiving from
//! the previous one, so every link carries `2·(world-1)/world` of the buffer in total.

use std::ops::Range;

use crate::cluster::{Cluster, shard_ranges};

/// Values received per piece during reduce-scatter (256 KiB, about an L2 cache).
const PIECE: usize = 64 * 1024;
use crate::wire::{self, Conn, Kind};
use crate::{DistError, Options};

/// This trainer's place in the ring and its two connections.
pub struct Ring {
    rank: usize,
    world: usize,
    links: Option<(Conn, Conn)>,
    scratch: Vec<f32>,
}

impl Ring {
    /// Joins the ring: listens on this trainer's address, connects to the next rank and
    /// accepts the previous one (both with retry while peers start).
    pub fn join(cluster: &Cluster, opts: &Options) -> Result<Self, DistError> {
        let rank = cluster
            .rank()
            .ok_or_else(|| DistError::Cluster(format!("{} is not a trainer", cluster.me)))?;
        let world = cluster.trainers.len();
        if world == 1 {
            return Ok(Self {
                rank,
                world,
                links: None,
                scratch: Vec::new(),
            });
        }
        let listener = wire::listen(&cluster.me.addr)?;
        let next = &cluster.trainers[(rank + 1) % world];
        let prev = &cluster.trainers[(rank + world - 1) % world];
        let me = (cluster.me.role.as_str(), cluster.me.index);
        let accepted = std::thread::scope(|s| {
            let acceptor = s.spawn(|| wire::accept(&listener, me, opts));
            let out = wire::connect(&next.addr, &next.to_string(), me, opts);
            (out, acceptor.join().expect("accept thread"))
        });
        let next_conn = accepted.0?;
        let (mut prev_conn, role, index) = accepted.1?;
        if role != prev.role || index != prev.index {
            return Err(DistError::Cluster(format!(
                "expected {prev} to connect, got {role} {index}"
            )));
        }
        prev_conn = rename(prev_conn, prev.to_string());
        Ok(Self {
            rank,
            world,
            links: Some((next_conn, prev_conn)),
            scratch: Vec::new(),
        })
    }

    /// This trainer's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Trainers in the ring.
    pub fn world(&self) -> usize {
        self.world
    }

    /// Replaces `buf` on every rank by the element-wise mean over ranks.
    pub fn allreduce_mean(&mut self, buf: &mut [f32]) -> Result<(), DistError> {
        self.allreduce_sum(buf)?;
        let inv = 1.0 / self.world as f32;
        buf.iter_mut().for_each(|v| *v *= inv);
        Ok(())
    }

    /// Replaces `buf` on every rank by the element-wise sum over ranks.
    pub fn allreduce_sum(&mut self, buf: &mut [f32]) -> Result<(), DistError> {
        let Some((next, prev)) = self.links.as_mut() else {
            return Ok(());
        };
        let (rank, world) = (self.rank, self.world);
        let chunks = shard_ranges(buf.len(), world);
        self.scratch.resize(PIECE, 0.0);
        let at = |i: usize| chunks[i % world].clone();
        // Reduce-scatter: at step s send chunk (rank - s), receive and add chunk (rank - s - 1),
        // adding each received piece while it is in cache.
        for s in 0..world - 1 {
            let (send, recv) = (at(rank + world - s), at(rank + world - s - 1));
            let (out, into) = disjoint(buf, send, recv);
            let scratch = &mut self.scratch;
            std::thread::scope(|sc| {
                let sender = sc.spawn(|| next.send_f32(out));
                let received = prev.recv_f32_pieces(into.len(), scratch, |off, piece| {
                    for (b, x) in into[off..off + piece.len()].iter_mut().zip(piece) {
                        *b += x;
                    }
                });
                let sent = sender.join().expect("send thread");
                received.and(sent)
            })?;
        }
        // All-gather: rank now owns the sum of chunk (rank + 1); pass sums around.
        for s in 0..world - 1 {
            let (send, recv) = (at(rank + 1 + world - s), at(rank + world - s));
            let (out, into) = disjoint(buf, send, recv);
            exchange(next, prev, out, into)?;
        }
        Ok(())
    }

    /// Sends `data` from rank 0 to every rank around the ring; returns it on every rank.
    pub fn broadcast(&mut self, data: Vec<u8>) -> Result<Vec<u8>, DistError> {
        let Some((next, prev)) = self.links.as_mut() else {
            return Ok(data);
        };
        let data = if self.rank == 0 {
            data
        } else {
            prev.expect(Kind::Blob)?
        };
        if self.rank + 1 < self.world {
            next.send(Kind::Blob, &data)?;
        }
        Ok(data)
    }
}

fn rename(mut c: Conn, name: String) -> Conn {
    c.set_peer(name);
    c
}

/// Sends `out` to the next rank while receiving `into` from the previous one.
fn exchange(next: &Conn, prev: &mut Conn, out: &[f32], into: &mut [f32]) -> Result<(), DistError> {
    std::thread::scope(|s| {
        let sender = s.spawn(|| next.send_f32(out));
        let received = prev.recv_f32_into(into);
        let sent = sender.join().expect("send thread");
        received.and(sent)
    })
}

/// Two non-overlapping ranges of one buffer, the first shared and the second mutable (either
/// may be empty: buffers shorter than the ring have empty chunks).
fn disjoint(buf: &mut [f32], a: Range<usize>, b: Range<usize>) -> (&[f32], &mut [f32]) {
    if a.is_empty() {
        return (&[], &mut buf[b]);
    }
    if a.end <= b.start {
        let (lo, hi) = buf.split_at_mut(b.start);
        (&lo[a], &mut hi[..b.len()])
    } else {
        let (lo, hi) = buf.split_at_mut(a.start);
        (&hi[..a.len()], &mut lo[b])
    }
}
