//! Ring all-reduce on real loopback sockets: every rank ends with the exact element-wise sum,
//! for world sizes and buffer lengths that do and do not divide evenly (including buffers
//! shorter than the ring).

use std::sync::atomic::{AtomicU16, Ordering};

use mle_dist::TfConfig;
use mle_dist::ring::Ring;
use mle_dist::{Cluster, Options};

fn port_block(n: u16) -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Below Linux's ephemeral range (32768+), where outgoing connections take their ports.
    20000 + (std::process::id() % 50) as u16 * 200 + NEXT.fetch_add(n, Ordering::SeqCst)
}

fn cluster(world: usize, rank: usize, base: u16) -> Cluster {
    let addrs: Vec<String> = (0..world)
        .map(|i| format!("\"localhost:{}\"", base + i as u16))
        .collect();
    let (role, index) = if rank == 0 {
        ("chief", 0)
    } else {
        ("worker", rank - 1)
    };
    let json = format!(
        r#"{{"cluster": {{"chief": [{}], "worker": [{}]}}, "task": {{"type": "{role}", "index": {index}}}}}"#,
        addrs[0],
        addrs[1..].join(", ")
    );
    Cluster::from_tf_config(&TfConfig::parse(&json).unwrap()).unwrap()
}

fn check(world: usize, len: usize) {
    let base = port_block(world as u16);
    let results: Vec<Vec<f32>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..world)
            .map(|rank| {
                s.spawn(move || {
                    let mut ring =
                        Ring::join(&cluster(world, rank, base), &Options::default()).unwrap();
                    // Integers keep sums exact in f32, whatever the order of additions.
                    let mut buf: Vec<f32> = (0..len).map(|i| (i * (rank + 1)) as f32).collect();
                    ring.allreduce_sum(&mut buf).unwrap();
                    let blob = ring
                        .broadcast(if rank == 0 { vec![7, 8, 9] } else { vec![] })
                        .unwrap();
                    assert_eq!(blob, vec![7, 8, 9]);
                    buf
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let factor: usize = (1..=world).sum();
    let want: Vec<f32> = (0..len).map(|i| (i * factor) as f32).collect();
    for (rank, got) in results.iter().enumerate() {
        assert_eq!(got, &want, "world {world}, len {len}, rank {rank}");
    }
}

#[test]
fn all_reduce_sums_exactly_on_every_rank() {
    for (world, len) in [(2, 10), (3, 1000), (4, 4099), (3, 2), (4, 1), (2, 0)] {
        check(world, len);
    }
}
