//! `mle-bench-serve bare ADDR`: a bare axum route (`POST /predict` answers a constant), the
//! limit of this machine for an HTTP service.
//! `mle-bench-serve load URL BODY_FILE TOKEN CONNECTIONS SECONDS`: a closed-loop load
//! generator: CONNECTIONS keep-alive HTTP/1.1 connections, each sending the next request as
//! soon as the previous answer is read; prints `{"rps", "p50_ms", "p99_ms", "errors"}`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn bare(addr: &str) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let app = axum::Router::new().route(
            "/predict",
            axum::routing::post(|| async { axum::Json(serde_json_like()) }),
        );
        let l = tokio::net::TcpListener::bind(addr).await.expect("bind");
        println!("listening on http://{}", l.local_addr().expect("addr"));
        axum::serve(l, app).await.expect("serve");
    });
}

/// The constant answer (the shape of a one-instance regression prediction).
fn serde_json_like() -> &'static str {
    r#"{"predictions":[9.5]}"#
}

/// One connection's loop; returns latencies in microseconds and the error count.
fn client(host: &str, path: &str, body: &[u8], token: &str, until: Instant) -> (Vec<u32>, u64) {
    let mut lat = Vec::new();
    let mut errors = 0;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut req = head.into_bytes();
    req.extend_from_slice(body);
    'outer: while Instant::now() < until {
        let Ok(stream) = TcpStream::connect(host) else {
            errors += 1;
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let mut w = stream.try_clone().expect("clone");
        let mut r = BufReader::new(stream);
        while Instant::now() < until {
            let t = Instant::now();
            if w.write_all(&req).is_err() {
                errors += 1;
                continue 'outer;
            }
            let mut line = String::new();
            if r.read_line(&mut line).is_err() || line.is_empty() {
                errors += 1;
                continue 'outer;
            }
            let ok = line.split(' ').nth(1) == Some("200");
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).is_err() || h.is_empty() {
                    errors += 1;
                    continue 'outer;
                }
                if h == "\r\n" {
                    break;
                }
                let lower = h.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut buf = vec![0; len];
            if r.read_exact(&mut buf).is_err() {
                errors += 1;
                continue 'outer;
            }
            if ok {
                lat.push(t.elapsed().as_micros() as u32);
            } else {
                errors += 1;
            }
        }
        break;
    }
    (lat, errors)
}

fn load(url: &str, body_file: &str, token: &str, conns: usize, secs: f64) {
    let rest = url.strip_prefix("http://").expect("http:// URL");
    let (host, path) = rest.split_at(rest.find('/').expect("a path"));
    let body = std::fs::read(body_file).expect("body file");
    // Warm up (connections, caches, the model's first call).
    let _ = client(
        host,
        path,
        &body,
        token,
        Instant::now() + Duration::from_millis(300),
    );
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let handles: Vec<_> = (0..conns)
        .map(|_| {
            let (host, path, body, token) = (
                host.to_string(),
                path.to_string(),
                body.clone(),
                token.to_string(),
            );
            std::thread::spawn(move || client(&host, &path, &body, &token, until))
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for h in handles {
        let (l, e) = h.join().expect("client thread");
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        if all.is_empty() {
            0.0
        } else {
            all[((all.len() - 1) as f64 * p) as usize] as f64 / 1000.0
        }
    };
    println!(
        r#"{{"rps": {:.1}, "p50_ms": {:.3}, "p99_ms": {:.3}, "errors": {errors}, "requests": {}}}"#,
        all.len() as f64 / elapsed,
        pct(0.5),
        pct(0.99),
        all.len()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("bare") => bare(args.get(2).map_or("127.0.0.1:0", String::as_str)),
        Some("load") if args.len() == 7 => load(
            &args[2],
            &args[3],
            &args[4],
            args[5].parse().expect("connections"),
            args[6].parse().expect("seconds"),
        ),
        _ => {
            eprintln!(
                "usage: mle-bench-serve bare ADDR | load URL BODY_FILE TOKEN CONNECTIONS SECONDS"
            );
            std::process::exit(2);
        }
    }
}
