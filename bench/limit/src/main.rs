//! The limit `bench/train.sh` measures `mle train` against: the abalone net (7 → Dense 10 relu
//! → Dense 10 relu → 1, MSE, SGD 0.001, Glorot-uniform init) trained by a plain f32 loop
//! written for this one net. Layer at a time over the batch, buffers allocated once, no
//! dependencies, no SIMD but what the compiler makes of the loops (SSE2 on x86-64). Not part
//! of the product.
//!
//! `mle-bench-limit TRAIN.csv TEST.csv EPOCHS BATCH` prints
//! `rmse R examples_per_sec N` (training only: data loading and evaluation excluded).

use std::time::Instant;

const IN: usize = 7;
const H: usize = 10;

fn read(path: &str) -> (Vec<f32>, Vec<f32>) {
    let text = std::fs::read_to_string(path).expect("read the CSV");
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Vec<f32> = line
            .split(',')
            .map(|c| c.trim().parse().expect("a number"))
            .collect();
        x.extend_from_slice(&v[..IN]);
        y.push(v[IN]);
    }
    (x, y)
}

/// xorshift64*: a small seeded generator (for init and shuffling).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

struct Net {
    w1: Vec<f32>, // IN × H
    b1: Vec<f32>,
    w2: Vec<f32>, // H × H
    b2: Vec<f32>,
    w3: Vec<f32>, // H
    b3: f32,
}

fn glorot(rng: &mut Rng, fan_in: usize, fan_out: usize) -> Vec<f32> {
    let limit = (6.0 / (fan_in + fan_out) as f32).sqrt();
    (0..fan_in * fan_out)
        .map(|_| (rng.uniform() * 2.0 - 1.0) * limit)
        .collect()
}

/// `out[r] = act(x[r] · w + b)` for `rows` rows of width `n_in`, `n_out` outputs.
fn layer(x: &[f32], w: &[f32], b: &[f32], n_in: usize, n_out: usize, out: &mut [f32], relu: bool) {
    for (xr, o) in x.chunks_exact(n_in).zip(out.chunks_exact_mut(n_out)) {
        o.copy_from_slice(b);
        for (xv, wr) in xr.iter().zip(w.chunks_exact(n_out)) {
            for (oj, wj) in o.iter_mut().zip(wr) {
                *oj += xv * wj;
            }
        }
        if relu {
            o.iter_mut().for_each(|v| *v = v.max(0.0));
        }
    }
}

fn predict(net: &Net, x: &[f32], rows: usize) -> Vec<f32> {
    let (mut a1, mut a2) = (vec![0.0; rows * H], vec![0.0; rows * H]);
    layer(x, &net.w1, &net.b1, IN, H, &mut a1, true);
    layer(&a1, &net.w2, &net.b2, H, H, &mut a2, true);
    a2.chunks_exact(H)
        .map(|a| a.iter().zip(&net.w3).map(|(p, q)| p * q).sum::<f32>() + net.b3)
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, train, test, epochs, batch] = &args[..] else {
        eprintln!("usage: mle-bench-limit TRAIN.csv TEST.csv EPOCHS BATCH");
        std::process::exit(2);
    };
    let (epochs, b): (usize, usize) = (epochs.parse().unwrap(), batch.parse().unwrap());
    let (x, y) = read(train);
    let (tx, ty) = read(test);
    let n = y.len();
    let mut rng = Rng(42);
    let mut net = Net {
        w1: glorot(&mut rng, IN, H),
        b1: vec![0.0; H],
        w2: glorot(&mut rng, H, H),
        b2: vec![0.0; H],
        w3: glorot(&mut rng, H, 1),
        b3: 0.0,
    };
    let lr = 0.001f32;
    let mut order: Vec<usize> = (0..n).collect();
    // Buffers, once.
    let (mut xb, mut yb) = (vec![0.0; b * IN], vec![0.0; b]);
    let (mut a1, mut a2, mut out) = (vec![0.0; b * H], vec![0.0; b * H], vec![0.0; b]);
    let (mut d2, mut d1) = (vec![0.0; b * H], vec![0.0; b * H]);
    let (mut gw1, mut gw2, mut gw3) = (vec![0.0; IN * H], vec![0.0; H * H], vec![0.0; H]);
    let (mut gb1, mut gb2) = (vec![0.0; H], vec![0.0; H]);
    let steps_per_epoch = n.div_ceil(b);
    let started = Instant::now();
    let mut examples = 0usize;
    for _ in 0..epochs {
        for i in (1..n).rev() {
            order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
        }
        for s in 0..steps_per_epoch {
            let rows = b.min(n - s * b);
            for (r, &i) in order[s * b..s * b + rows].iter().enumerate() {
                xb[r * IN..(r + 1) * IN].copy_from_slice(&x[i * IN..(i + 1) * IN]);
                yb[r] = y[i];
            }
            let (xs, ys) = (&xb[..rows * IN], &yb[..rows]);
            layer(xs, &net.w1, &net.b1, IN, H, &mut a1[..rows * H], true);
            layer(
                &a1[..rows * H],
                &net.w2,
                &net.b2,
                H,
                H,
                &mut a2[..rows * H],
                true,
            );
            for (r, a) in a2[..rows * H].chunks_exact(H).enumerate() {
                out[r] = a.iter().zip(&net.w3).map(|(p, q)| p * q).sum::<f32>() + net.b3;
            }
            // Backward: d(mean squared error)/d(out) = 2 (out - y) / rows.
            gw1.fill(0.0);
            gw2.fill(0.0);
            gw3.fill(0.0);
            gb1.fill(0.0);
            gb2.fill(0.0);
            let mut gb3 = 0.0;
            for r in 0..rows {
                let d = 2.0 * (out[r] - ys[r]) / rows as f32;
                gb3 += d;
                let a = &a2[r * H..(r + 1) * H];
                let dr = &mut d2[r * H..(r + 1) * H];
                for j in 0..H {
                    gw3[j] += a[j] * d;
                    dr[j] = if a[j] > 0.0 { net.w3[j] * d } else { 0.0 };
                }
            }
            for r in 0..rows {
                let (a, dr) = (&a1[r * H..(r + 1) * H], &d2[r * H..(r + 1) * H]);
                for (k, ak) in a.iter().enumerate() {
                    for (g, dj) in gw2[k * H..(k + 1) * H].iter_mut().zip(dr) {
                        *g += ak * dj;
                    }
                }
                gb2.iter_mut().zip(dr).for_each(|(g, d)| *g += d);
                let d1r = &mut d1[r * H..(r + 1) * H];
                for (k, d1k) in d1r.iter_mut().enumerate() {
                    let s: f32 = net.w2[k * H..(k + 1) * H]
                        .iter()
                        .zip(dr)
                        .map(|(w, d)| w * d)
                        .sum();
                    *d1k = if a[k] > 0.0 { s } else { 0.0 };
                }
            }
            for r in 0..rows {
                let (xr, dr) = (&xs[r * IN..(r + 1) * IN], &d1[r * H..(r + 1) * H]);
                for (k, xk) in xr.iter().enumerate() {
                    for (g, dj) in gw1[k * H..(k + 1) * H].iter_mut().zip(dr) {
                        *g += xk * dj;
                    }
                }
                gb1.iter_mut().zip(dr).for_each(|(g, d)| *g += d);
            }
            // SGD.
            for (p, g) in net
                .w1
                .iter_mut()
                .zip(&gw1)
                .chain(net.w2.iter_mut().zip(&gw2))
                .chain(net.w3.iter_mut().zip(&gw3))
            {
                *p -= lr * g;
            }
            for (p, g) in net
                .b1
                .iter_mut()
                .zip(&gb1)
                .chain(net.b2.iter_mut().zip(&gb2))
            {
                *p -= lr * g;
            }
            net.b3 -= lr * gb3;
            examples += rows;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let pred = predict(&net, &tx, ty.len());
    let mse: f64 = pred
        .iter()
        .zip(&ty)
        .map(|(p, t)| f64::from(p - t).powi(2))
        .sum::<f64>()
        / ty.len() as f64;
    println!(
        "rmse {:.4} examples_per_sec {:.0}",
        mse.sqrt(),
        examples as f64 / secs
    );
}
