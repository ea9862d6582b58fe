//! Distributed-training micro-benchmarks, driven by `bench/dist.sh`:
//!
//! - `loopback MB`: raw TCP throughput of one loopback stream moving MB of distinct memory (one
//!   write of a full-size source, reads into a full-size destination, both touched beforehand);
//! - `allreduce WORLD MB ITERS PORT`: spawns WORLD processes of itself that join a ring and
//!   all-reduce MB megabytes ITERS times; rank 0 prints the median time and the bus bandwidth
//!   (NCCL's definition: size/time × 2(world-1)/world);
//! - `ringlink WORLD MB ITERS PORT`: WORLD processes stream raw TCP to their ring neighbour all
//!   at once (full-size distinct buffers, no reduction): the per-link limit of a ring here.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::Instant;

use mle_dist::ring::Ring;
use mle_dist::{Cluster, Options};
use mle_tfconfig::TfConfig;

fn loopback(mb: usize) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let total = mb << 20;
    // Distinct source and destination memory of the full size, as a gradient exchange moves.
    let reader = std::thread::spawn(move || {
        let mut buf = vec![1u8; total]; // written once: no page faults while timed
        let (mut s, _) = listener.accept().expect("accept");
        let mut got = 0;
        while got < total {
            let n = s.read(&mut buf[got..]).expect("read");
            assert!(n > 0, "sender closed early");
            got += n;
        }
        buf
    });
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let data = vec![1u8; total];
    std::thread::sleep(std::time::Duration::from_millis(200)); // the reader has touched its buffer
    let t = Instant::now();
    s.write_all(&data).expect("write");
    reader.join().expect("reader");
    let secs = t.elapsed().as_secs_f64();
    println!("loopback_mb_s {:.1}", mb as f64 / secs);
}

/// Raw-TCP ring: every rank streams `mb` MiB to the next rank while receiving as much from the
/// previous one, with no reduction: the most a ring of `world` processes can move per link here.
fn ring_link(world: usize, rank: usize, mb: usize, iters: usize, port: u16) {
    let listener = TcpListener::bind(("127.0.0.1", port + rank as u16)).expect("bind");
    let next = port + ((rank + 1) % world) as u16;
    let out = loop {
        match TcpStream::connect(("127.0.0.1", next)) {
            Ok(s) => break s,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    };
    let (mut inc, _) = listener.accept().expect("accept");
    // Distinct source and destination memory of the full size, as an all-reduce moves.
    let src = vec![1u8; mb << 20];
    let mut dst = vec![1u8; mb << 20]; // written once: no page faults while timed
    let mut times = Vec::new();
    for _ in 0..iters + 1 {
        let t = Instant::now();
        std::thread::scope(|s| {
            let mut o = &out;
            let src = &src;
            s.spawn(move || o.write_all(src).expect("write"));
            let total = mb << 20;
            let mut got = 0;
            while got < total {
                let n = inc.read(&mut dst[got..]).expect("read");
                assert!(n > 0, "ring neighbour closed early");
                got += n;
            }
        });
        times.push(t.elapsed().as_secs_f64());
    }
    times.remove(0);
    times.sort_by(f64::total_cmp);
    if rank == 0 {
        println!(
            "ring_link world {world} mb {mb} link_mb_s {:.1}",
            mb as f64 / times[times.len() / 2]
        );
    }
}

fn replica(world: usize, rank: usize, mb: usize, iters: usize, port: u16) {
    let addrs: Vec<String> = (0..world)
        .map(|i| format!("\"localhost:{}\"", port as usize + i))
        .collect();
    let (role, index) = if rank == 0 {
        ("chief", 0)
    } else {
        ("worker", rank - 1)
    };
    let workers = addrs[1..].join(", ");
    let json = format!(
        r#"{{"cluster": {{"chief": [{}], "worker": [{workers}]}}, "task": {{"type": "{role}", "index": {index}}}}}"#,
        addrs[0]
    );
    let cluster =
        Cluster::from_tf_config(&TfConfig::parse(&json).expect("tf config")).expect("cluster");
    let mut ring = Ring::join(&cluster, &Options::default()).expect("join");
    let mut buf = vec![1.0f32; (mb << 20) / 4];
    ring.allreduce_sum(&mut buf).expect("warm-up");
    let mut times = Vec::new();
    for _ in 0..iters {
        let t = Instant::now();
        ring.allreduce_sum(&mut buf).expect("allreduce");
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    if rank == 0 {
        let t = times[times.len() / 2];
        let algbw = mb as f64 / t;
        let busbw = algbw * 2.0 * (world - 1) as f64 / world as f64;
        println!("allreduce world {world} mb {mb} median_s {t:.5} busbw_mb_s {busbw:.1}");
    }
}

type RankFn = fn(usize, usize, usize, usize, u16);

/// Runs rank 0 of `body` here and ranks 1.. as child processes (`mode` selects `body` there).
fn run_ring(mode: &str, body: RankFn, world: usize, mb: usize, iters: usize, port: usize) {
    let exe = std::env::current_exe().expect("exe");
    let children: Vec<_> = (1..world)
        .map(|r| {
            let args = [world, r, mb, iters, port].map(|v| v.to_string());
            Command::new(&exe)
                .arg(mode)
                .args(args)
                .spawn()
                .expect("spawn")
        })
        .collect();
    body(world, 0, mb, iters, port as u16);
    for mut c in children {
        c.wait().expect("wait");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let num = |i: usize| {
        args.get(i)
            .and_then(|v| v.parse::<usize>().ok())
            .expect("numeric argument")
    };
    match args.get(1).map(String::as_str) {
        Some("loopback") => loopback(num(2)),
        Some("allreduce") => run_ring("replica", replica, num(2), num(3), num(4), num(5)),
        Some("replica") => replica(num(2), num(3), num(4), num(5), num(6) as u16),
        Some("ringlink") => run_ring("ringlink-rank", ring_link, num(2), num(3), num(4), num(5)),
        Some("ringlink-rank") => ring_link(num(2), num(3), num(4), num(5), num(6) as u16),
        _ => {
            eprintln!(
                "usage: mle-bench-dist loopback MB | allreduce WORLD MB ITERS PORT | ringlink WORLD MB ITERS PORT"
            );
            std::process::exit(2);
        }
    }
}
