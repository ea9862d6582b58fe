//! The transport: framed messages over TCP.
//!
//! Frame = 16-byte header (`b"MLEF"`, `u16` protocol version, `u8` kind, `u8` reserved, `u64`
//! payload length, all little-endian) + payload. A connection starts with `Hello` both ways
//! (role and index), so each side can name the other in errors. A background thread sends a
//! `Heartbeat` frame every [`Options::heartbeat`]; a reader that receives nothing for
//! [`Options::peer_timeout`] declares the peer dead, and a closed socket is noticed at once.

use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{DistError, Options};

#[cfg(not(target_endian = "little"))]
compile_error!("the mle wire format sends f32 arrays as little-endian bytes");

/// Protocol version; peers with another version are refused.
pub const VERSION: u16 = 1;
const MAGIC: &[u8; 4] = b"MLEF";
const HEADER: usize = 16;
/// Largest payload accepted (1 GiB), so a corrupt length cannot exhaust memory.
const MAX_PAYLOAD: u64 = 1 << 30;

/// Message kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Role and index, both ways, first.
    Hello = 1,
    /// Keep-alive, never surfaced to callers.
    Heartbeat = 2,
    /// An array of f32 (all-reduce chunks).
    Chunk = 3,
    /// Raw bytes (broadcast of the start state).
    Blob = 4,
    /// Parameter server: set the shard.
    Init = 10,
    /// Parameter server: ask for the shard.
    Pull = 11,
    /// Parameter server: the shard and the global step.
    Params = 12,
    /// Parameter server: gradients for the shard.
    Push = 13,
    /// Parameter server: the global step after a push.
    Ack = 14,
    /// Parameter server: ask for the shard and optimizer state.
    Snapshot = 15,
    /// Parameter server: the shard and optimizer state.
    State = 16,
    /// Parameter server: stop after this.
    Shutdown = 17,
    /// Parameter server: training is over.
    Done = 18,
    /// Parameter server: not initialised yet, retry.
    NotReady = 19,
    /// An error message.
    Error = 20,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Self> {
        use Kind::*;
        [
            Hello, Heartbeat, Chunk, Blob, Init, Pull, Params, Push, Ack, Snapshot, State,
            Shutdown, Done, NotReady, Error,
        ]
        .into_iter()
        .find(|k| *k as u8 == b)
    }
}

fn header(kind: Kind, len: usize) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..4].copy_from_slice(MAGIC);
    h[4..6].copy_from_slice(&VERSION.to_le_bytes());
    h[6] = kind as u8;
    h[8..].copy_from_slice(&(len as u64).to_le_bytes());
    h
}

/// One framed connection to a named peer.
pub struct Conn {
    peer: String,
    reader: BufReader<TcpStream>,
    writer: Arc<Mutex<BufWriter<TcpStream>>>,
    alive: Arc<AtomicBool>,
    stream: TcpStream,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::Relaxed);
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

impl Conn {
    fn new(stream: TcpStream, peer: String, opts: &Options) -> std::io::Result<Self> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(opts.peer_timeout))?;
        let writer = Arc::new(Mutex::new(BufWriter::with_capacity(
            1 << 20,
            stream.try_clone()?,
        )));
        let alive = Arc::new(AtomicBool::new(true));
        let (w, a, period) = (writer.clone(), alive.clone(), opts.heartbeat);
        std::thread::spawn(move || {
            while a.load(Ordering::Relaxed) {
                std::thread::sleep(period);
                let Ok(mut w) = w.lock() else { break };
                if w.write_all(&header(Kind::Heartbeat, 0))
                    .and_then(|_| w.flush())
                    .is_err()
                {
                    break;
                }
            }
        });
        Ok(Self {
            peer,
            // A small buffer: headers go through it, large payload reads bypass it (no extra copy).
            reader: BufReader::with_capacity(16 << 10, stream.try_clone()?),
            writer,
            alive,
            stream,
        })
    }

    /// The peer's name, e.g. `worker 1 at localhost:27185`.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Renames the peer (once its role in the cluster is known).
    pub fn set_peer(&mut self, name: String) {
        self.peer = name;
    }

    fn dead(&self, e: std::io::Error) -> DistError {
        let why = match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => format!(
                "nothing received for {:.0} s",
                self.reader
                    .get_ref()
                    .read_timeout()
                    .ok()
                    .flatten()
                    .map_or(0.0, |d| d.as_secs_f64())
            ),
            std::io::ErrorKind::UnexpectedEof => "connection closed".into(),
            _ => e.to_string(),
        };
        DistError::PeerDead {
            peer: self.peer.clone(),
            why,
        }
    }

    /// Sends one frame.
    pub fn send(&self, kind: Kind, payload: &[u8]) -> Result<(), DistError> {
        self.send_parts(kind, &[payload])
    }

    /// Sends one frame whose payload is the concatenation of `parts`.
    pub fn send_parts(&self, kind: Kind, parts: &[&[u8]]) -> Result<(), DistError> {
        let len = parts.iter().map(|p| p.len()).sum();
        let mut w = self.writer.lock().map_err(|_| DistError::Protocol {
            peer: self.peer.clone(),
            why: "writer poisoned".into(),
        })?;
        let r = w
            .write_all(&header(kind, len))
            .and_then(|_| parts.iter().try_for_each(|p| w.write_all(p)))
            .and_then(|_| w.flush());
        drop(w);
        r.map_err(|e| self.dead(e))
    }

    /// Sends an f32 array as a `Chunk` frame.
    pub fn send_f32(&self, values: &[f32]) -> Result<(), DistError> {
        self.send(Kind::Chunk, bytemuck::cast_slice(values))
    }

    fn read_header(&mut self) -> Result<(Kind, usize), DistError> {
        loop {
            let mut h = [0u8; HEADER];
            self.reader.read_exact(&mut h).map_err(|e| self.dead(e))?;
            if &h[..4] != MAGIC {
                return Err(DistError::Protocol {
                    peer: self.peer.clone(),
                    why: "not an mle replica (bad frame magic)".into(),
                });
            }
            let version = u16::from_le_bytes([h[4], h[5]]);
            if version != VERSION {
                return Err(DistError::Protocol {
                    peer: self.peer.clone(),
                    why: format!("speaks protocol version {version}, this replica {VERSION}"),
                });
            }
            let kind = Kind::from_u8(h[6]).ok_or_else(|| DistError::Protocol {
                peer: self.peer.clone(),
                why: format!("unknown frame kind {}", h[6]),
            })?;
            let len = u64::from_le_bytes(h[8..].try_into().expect("8 bytes"));
            if len > MAX_PAYLOAD {
                return Err(DistError::Protocol {
                    peer: self.peer.clone(),
                    why: format!("frame of {len} bytes is too large"),
                });
            }
            if kind != Kind::Heartbeat {
                return Ok((kind, len as usize));
            }
        }
    }

    /// Receives the next frame that is not a heartbeat; an `Error` frame becomes an error.
    pub fn recv(&mut self) -> Result<(Kind, Vec<u8>), DistError> {
        let (kind, len) = self.read_header()?;
        let mut payload = vec![0u8; len];
        self.reader
            .read_exact(&mut payload)
            .map_err(|e| self.dead(e))?;
        if kind == Kind::Error {
            return Err(DistError::Protocol {
                peer: self.peer.clone(),
                why: String::from_utf8_lossy(&payload).into_owned(),
            });
        }
        Ok((kind, payload))
    }

    /// Receives a `Chunk` of exactly `out.len()` values straight into `out`.
    pub fn recv_f32_into(&mut self, out: &mut [f32]) -> Result<(), DistError> {
        let (kind, len) = self.read_header()?;
        if kind != Kind::Chunk || len != out.len() * 4 {
            return Err(DistError::Protocol {
                peer: self.peer.clone(),
                why: format!(
                    "expected a chunk of {} values, got {kind:?} of {len} bytes",
                    out.len()
                ),
            });
        }
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(out);
        self.reader.read_exact(bytes).map_err(|e| self.dead(e))
    }

    /// Receives a `Chunk` of `len` values in pieces of at most `piece.len()`, calling
    /// `f(offset, values)` for each piece while it is still in cache.
    pub fn recv_f32_pieces(
        &mut self,
        len: usize,
        piece: &mut [f32],
        mut f: impl FnMut(usize, &[f32]),
    ) -> Result<(), DistError> {
        let (kind, bytes) = self.read_header()?;
        if kind != Kind::Chunk || bytes != len * 4 {
            return Err(DistError::Protocol {
                peer: self.peer.clone(),
                why: format!("expected a chunk of {len} values, got {kind:?} of {bytes} bytes"),
            });
        }
        let mut at = 0;
        while at < len {
            let n = piece.len().min(len - at);
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut piece[..n]);
            self.reader.read_exact(bytes).map_err(|e| self.dead(e))?;
            f(at, &piece[..n]);
            at += n;
        }
        Ok(())
    }

    /// Receives a frame and checks its kind.
    pub fn expect(&mut self, want: Kind) -> Result<Vec<u8>, DistError> {
        let (kind, payload) = self.recv()?;
        if kind != want {
            return Err(DistError::Protocol {
                peer: self.peer.clone(),
                why: format!("expected {want:?}, got {kind:?}"),
            });
        }
        Ok(payload)
    }
}

fn hello_payload(role: &str, index: usize) -> Vec<u8> {
    let mut e = Enc::default();
    e.str(role).u64(index as u64);
    e.0
}

/// Connects to `addr` (retrying with backoff while the peer starts) and exchanges hellos.
pub fn connect(
    addr: &str,
    peer: &str,
    me: (&str, usize),
    opts: &Options,
) -> Result<Conn, DistError> {
    let start = Instant::now();
    let mut wait = Duration::from_millis(20);
    let stream = loop {
        let err = match addr.to_socket_addrs() {
            Ok(mut addrs) => match addrs.next() {
                Some(a) => match TcpStream::connect_timeout(&a, Duration::from_secs(5)) {
                    // A connect to a local port that nobody listens on yet can be given that
                    // same port as its source and connect to itself (TCP simultaneous open);
                    // such a socket would answer our own hello. Drop it and try again.
                    Ok(s) if s.local_addr().ok() == s.peer_addr().ok() => {
                        "connected to itself".into()
                    }
                    Ok(s) => break s,
                    Err(e) => e.to_string(),
                },
                None => "no address".into(),
            },
            Err(e) => e.to_string(),
        };
        if start.elapsed() >= opts.connect_timeout {
            return Err(DistError::Unreachable {
                peer: peer.into(),
                secs: opts.connect_timeout.as_secs(),
                why: err,
            });
        }
        std::thread::sleep(wait);
        wait = (wait * 2).min(Duration::from_millis(500));
    };
    let mut conn = Conn::new(stream, peer.into(), opts).map_err(|e| DistError::Unreachable {
        peer: peer.into(),
        secs: 0,
        why: e.to_string(),
    })?;
    conn.send(Kind::Hello, &hello_payload(me.0, me.1))?;
    let reply = conn.expect(Kind::Hello)?;
    let mut d = Dec::new(&reply, peer);
    let (role, index) = (d.str()?, d.u64()? as usize);
    if role == me.0 && index == me.1 {
        return Err(DistError::Protocol {
            peer: peer.into(),
            why: "answered with this replica's own identity (is the address right?)".into(),
        });
    }
    Ok(conn)
}

/// Binds this replica's address: loopback names stay on loopback, others listen on all
/// interfaces at that port.
pub fn listen(addr: &str) -> Result<TcpListener, DistError> {
    let err = |source| DistError::Listen {
        addr: addr.into(),
        source,
    };
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| err(std::io::Error::other("expected host:port")))?;
    let bind = if matches!(host, "localhost" | "127.0.0.1" | "[::1]") {
        format!("127.0.0.1:{port}")
    } else {
        format!("0.0.0.0:{port}")
    };
    TcpListener::bind(bind).map_err(err)
}

/// Accepts one connection and exchanges hellos; returns it with the peer's role and index.
pub fn accept(
    listener: &TcpListener,
    me: (&str, usize),
    opts: &Options,
) -> Result<(Conn, String, usize), DistError> {
    // Bounded wait: a peer that never connects must not hang this replica.
    let fail = |why: String| DistError::Protocol {
        peer: "listener".into(),
        why,
    };
    listener
        .set_nonblocking(true)
        .map_err(|e| fail(e.to_string()))?;
    let deadline = Instant::now() + opts.connect_timeout;
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(fail(format!(
                    "no replica connected within {} s",
                    opts.connect_timeout.as_secs()
                )));
            }
            Err(e) => return Err(fail(e.to_string())),
        }
    };
    stream
        .set_nonblocking(false)
        .map_err(|e| fail(e.to_string()))?;
    handshake(stream, me, opts)
}

/// The server side of the hello exchange on an accepted stream.
pub fn handshake(
    stream: TcpStream,
    me: (&str, usize),
    opts: &Options,
) -> Result<(Conn, String, usize), DistError> {
    let from = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    let mut conn =
        Conn::new(stream, format!("replica at {from}"), opts).map_err(|e| DistError::Protocol {
            peer: from.clone(),
            why: e.to_string(),
        })?;
    let payload = conn.expect(Kind::Hello)?;
    let mut d = Dec::new(&payload, conn.peer());
    let role = d.str()?;
    let index = d.u64()? as usize;
    conn.peer = format!("{role} {index} (from {from})");
    conn.send(Kind::Hello, &hello_payload(me.0, me.1))?;
    Ok((conn, role, index))
}

/// A little-endian payload builder.
#[derive(Default)]
pub struct Enc(pub Vec<u8>);

impl Enc {
    /// Appends a u64.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Appends an f64.
    pub fn f64(&mut self, v: f64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Appends a length-prefixed string.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    /// Appends a length-prefixed f32 array.
    pub fn f32s(&mut self, v: &[f32]) -> &mut Self {
        self.u64(v.len() as u64);
        self.0.extend_from_slice(bytemuck::cast_slice(v));
        self
    }
}

/// The matching reader; errors name the peer.
pub struct Dec<'a> {
    buf: &'a [u8],
    at: usize,
    peer: &'a str,
}

impl<'a> Dec<'a> {
    /// Reads `buf`, sent by `peer`.
    pub fn new(buf: &'a [u8], peer: &'a str) -> Self {
        Self { buf, at: 0, peer }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], DistError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or_else(|| DistError::Protocol {
            peer: self.peer.into(),
            why: "truncated message".into(),
        })?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }
    /// Reads a u64.
    pub fn u64(&mut self) -> Result<u64, DistError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    /// Reads an f64.
    pub fn f64(&mut self) -> Result<f64, DistError> {
        Ok(f64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    /// Reads a string.
    pub fn str(&mut self) -> Result<String, DistError> {
        let n = self.u64()? as usize;
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }
    /// Reads an f32 array.
    pub fn f32s(&mut self) -> Result<Vec<f32>, DistError> {
        let n = self.u64()? as usize;
        let bytes = self.take(n.checked_mul(4).ok_or_else(|| DistError::Protocol {
            peer: self.peer.into(),
            why: "bad length".into(),
        })?)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_answering_with_our_own_identity_is_refused() {
        // What a socket connected to itself does: it echoes every byte we send.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 || s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
        let opts = Options {
            connect_timeout: Duration::from_secs(5),
            ..Options::default()
        };
        let err = connect(&addr, "worker 1", ("worker", 0), &opts)
            .err()
            .expect("must be refused");
        assert!(err.to_string().contains("own identity"), "{err}");
    }

    #[test]
    fn accept_gives_up_when_nobody_connects() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let opts = Options {
            connect_timeout: Duration::from_millis(200),
            ..Options::default()
        };
        let err = accept(&listener, ("chief", 0), &opts)
            .err()
            .expect("must time out");
        assert!(err.to_string().contains("no replica connected"), "{err}");
    }
}
