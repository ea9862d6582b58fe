//! The dense layer's kernels for the native engine, forward and backward, on row-major
//! slices. There are two paths. Narrow layers (up to 16 units, the tabular nets
//! this system trains most) run loops whose width is a constant, so the compiler unrolls and
//! vectorises them without remainders or bounds checks. Layers with enough work for it
//! ([`GEMM_MIN_MACS`] multiply-adds) go through ndarray's general matrix multiply, which runs
//! matrixmultiply's blocked, runtime-dispatched (AVX2/FMA) and threaded kernels. Both
//! are safe Rust.

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};

/// Work (rows × inputs × units) from which a layer goes through the GEMM.
pub const GEMM_MIN_MACS: usize = 1 << 16;

fn gemm_pays(rows: usize, inputs: usize, units: usize) -> bool {
    rows * inputs * units >= GEMM_MIN_MACS
}

fn view(v: &[f32], rows: usize, cols: usize) -> ArrayView2<'_, f32> {
    ArrayView2::from_shape((rows, cols), v).expect("the engine sizes its buffers")
}

fn view_mut(v: &mut [f32], rows: usize, cols: usize) -> ArrayViewMut2<'_, f32> {
    ArrayViewMut2::from_shape((rows, cols), v).expect("the engine sizes its buffers")
}

/// Calls `$f::<U>` for the layer's width when it is at most 16, else `$wide`.
macro_rules! by_width {
    ($units:expr, $f:ident ($($arg:expr),*), $wide:expr) => {
        match $units {
            1 => $f::<1>($($arg),*),
            2 => $f::<2>($($arg),*),
            3 => $f::<3>($($arg),*),
            4 => $f::<4>($($arg),*),
            5 => $f::<5>($($arg),*),
            6 => $f::<6>($($arg),*),
            7 => $f::<7>($($arg),*),
            8 => $f::<8>($($arg),*),
            9 => $f::<9>($($arg),*),
            10 => $f::<10>($($arg),*),
            11 => $f::<11>($($arg),*),
            12 => $f::<12>($($arg),*),
            13 => $f::<13>($($arg),*),
            14 => $f::<14>($($arg),*),
            15 => $f::<15>($($arg),*),
            16 => $f::<16>($($arg),*),
            _ => $wide,
        }
    };
}

/// `out = x · kernel (+ bias)`: `x` is `rows × inputs`, `kernel` `inputs × units`.
pub fn forward(x: &[f32], kernel: &[f32], bias: Option<&[f32]>, units: usize, out: &mut [f32]) {
    let inputs = kernel.len() / units;
    let rows = out.len() / units;
    if gemm_pays(rows, inputs, units) {
        let mut o = view_mut(out, rows, units);
        general_mat_mul(
            1.0,
            &view(x, rows, inputs),
            &view(kernel, inputs, units),
            0.0,
            &mut o,
        );
        if let Some(b) = bias {
            out.chunks_exact_mut(units)
                .for_each(|r| r.iter_mut().zip(b).for_each(|(o, b)| *o += b));
        }
        return;
    }
    by_width!(
        units,
        forward_n(x, kernel, bias, out),
        forward_any(x, kernel, bias, units, out)
    )
}

fn forward_n<const U: usize>(x: &[f32], kernel: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
    let inputs = kernel.len() / U;
    let mut b = [0.0f32; U];
    if let Some(bias) = bias {
        b.copy_from_slice(bias);
    }
    for (row, o) in x.chunks_exact(inputs).zip(out.chunks_exact_mut(U)) {
        let mut acc = b;
        for (xv, w) in row.iter().zip(kernel.chunks_exact(U)) {
            for j in 0..U {
                acc[j] += xv * w[j];
            }
        }
        o.copy_from_slice(&acc);
    }
}

fn forward_any(x: &[f32], kernel: &[f32], bias: Option<&[f32]>, units: usize, out: &mut [f32]) {
    let inputs = kernel.len() / units;
    for (row, o) in x.chunks_exact(inputs).zip(out.chunks_exact_mut(units)) {
        match bias {
            Some(b) => o.copy_from_slice(b),
            None => o.fill(0.0),
        }
        for (xv, w) in row.iter().zip(kernel.chunks_exact(units)) {
            o.iter_mut().zip(w).for_each(|(oj, wj)| *oj += xv * wj);
        }
    }
}

/// The gradients of a dense layer from `dz` (`rows × units`): adds `xᵀ·dz` into `d_kernel`
/// and the column sums of `dz` into `d_bias`, and writes `dz · kernelᵀ` into `d_x` when asked.
pub fn backward(
    x: &[f32],
    kernel: &[f32],
    dz: &[f32],
    units: usize,
    d_kernel: &mut [f32],
    d_bias: Option<&mut [f32]>,
    d_x: Option<&mut [f32]>,
) {
    let inputs = kernel.len() / units;
    let rows = dz.len() / units;
    if let Some(db) = d_bias {
        for g in dz.chunks_exact(units) {
            db.iter_mut().zip(g).for_each(|(d, gj)| *d += gj);
        }
    }
    if gemm_pays(rows, inputs, units) {
        let (xv, dzv) = (view(x, rows, inputs), view(dz, rows, units));
        general_mat_mul(
            1.0,
            &xv.t(),
            &dzv,
            1.0,
            &mut view_mut(d_kernel, inputs, units),
        );
        if let Some(dx) = d_x {
            let k = view(kernel, inputs, units);
            general_mat_mul(1.0, &dzv, &k.t(), 0.0, &mut view_mut(dx, rows, inputs));
        }
        return;
    }
    by_width!(
        units,
        backward_n(x, kernel, dz, d_kernel, d_x),
        backward_any(x, kernel, dz, units, d_kernel, d_x)
    )
}

fn backward_n<const U: usize>(
    x: &[f32],
    kernel: &[f32],
    dz: &[f32],
    d_kernel: &mut [f32],
    d_x: Option<&mut [f32]>,
) {
    let inputs = kernel.len() / U;
    for (row, g) in x.chunks_exact(inputs).zip(dz.chunks_exact(U)) {
        for (xv, dk) in row.iter().zip(d_kernel.chunks_exact_mut(U)) {
            for j in 0..U {
                dk[j] += xv * g[j];
            }
        }
    }
    if let Some(dx) = d_x {
        for (dxr, g) in dx.chunks_exact_mut(inputs).zip(dz.chunks_exact(U)) {
            for (d, w) in dxr.iter_mut().zip(kernel.chunks_exact(U)) {
                let mut s = 0.0;
                for j in 0..U {
                    s += g[j] * w[j];
                }
                *d = s;
            }
        }
    }
}

fn backward_any(
    x: &[f32],
    kernel: &[f32],
    dz: &[f32],
    units: usize,
    d_kernel: &mut [f32],
    d_x: Option<&mut [f32]>,
) {
    let inputs = kernel.len() / units;
    for (row, g) in x.chunks_exact(inputs).zip(dz.chunks_exact(units)) {
        for (xv, dk) in row.iter().zip(d_kernel.chunks_exact_mut(units)) {
            dk.iter_mut().zip(g).for_each(|(d, gj)| *d += xv * gj);
        }
    }
    if let Some(dx) = d_x {
        for (dxr, g) in dx.chunks_exact_mut(inputs).zip(dz.chunks_exact(units)) {
            for (d, w) in dxr.iter_mut().zip(kernel.chunks_exact(units)) {
                *d = g.iter().zip(w).map(|(a, b)| a * b).sum();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The three paths (unrolled, any width, GEMM) against a plain f64 reference.
    #[test]
    fn every_path_computes_the_same_products() {
        let mut seed = 1u64;
        let mut next = || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        for (rows, inputs, units) in [(3, 5, 4), (7, 3, 16), (5, 4, 17), (64, 40, 30), (2, 9, 1)] {
            let x: Vec<f32> = (0..rows * inputs).map(|_| next()).collect();
            let k: Vec<f32> = (0..inputs * units).map(|_| next()).collect();
            let b: Vec<f32> = (0..units).map(|_| next()).collect();
            let dz: Vec<f32> = (0..rows * units).map(|_| next()).collect();
            let mut out = vec![0.0; rows * units];
            forward(&x, &k, Some(&b), units, &mut out);
            let (mut dk, mut db, mut dx) = (
                vec![0.0; inputs * units],
                vec![0.0; units],
                vec![0.0; rows * inputs],
            );
            backward(&x, &k, &dz, units, &mut dk, Some(&mut db), Some(&mut dx));
            let near = |a: f32, b: f64| (f64::from(a) - b).abs() < 1e-5 * (1.0 + b.abs());
            for r in 0..rows {
                for j in 0..units {
                    let want: f64 = f64::from(b[j])
                        + (0..inputs)
                            .map(|i| f64::from(x[r * inputs + i]) * f64::from(k[i * units + j]))
                            .sum::<f64>();
                    assert!(
                        near(out[r * units + j], want),
                        "{rows}×{inputs}×{units} out"
                    );
                }
                for i in 0..inputs {
                    let want: f64 = (0..units)
                        .map(|j| f64::from(dz[r * units + j]) * f64::from(k[i * units + j]))
                        .sum();
                    assert!(near(dx[r * inputs + i], want), "{rows}×{inputs}×{units} dx");
                }
            }
            for i in 0..inputs {
                for j in 0..units {
                    let want: f64 = (0..rows)
                        .map(|r| f64::from(x[r * inputs + i]) * f64::from(dz[r * units + j]))
                        .sum();
                    assert!(near(dk[i * units + j], want), "{rows}×{inputs}×{units} dk");
                }
            }
            for j in 0..units {
                let want: f64 = (0..rows).map(|r| f64::from(dz[r * units + j])).sum();
                assert!(near(db[j], want), "{rows}×{inputs}×{units} db");
            }
        }
    }
}
