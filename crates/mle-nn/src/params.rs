//! Moving flat parameters in and out of burn tensors: the plumbing a [`crate::Model`]
//! implementation needs, public so that SDK users' own burn models can use it too.

use burn::tensor::{Device, Gradients, Tensor, TensorData};

use crate::{NnError, ParamLayout};

/// One rank-2 tensor per layout entry (rank-1 shapes become `[1, n]`), on `device`; with
/// `require_grad` they are autodiff leaves whose gradients [`write_grads`] collects.
pub fn param_tensors(
    layout: &ParamLayout,
    params: &[f32],
    device: &Device,
    require_grad: bool,
) -> Vec<Tensor<2>> {
    layout
        .params()
        .iter()
        .map(|p| {
            let shape = match p.shape.as_slice() {
                [r, c] => [*r, *c],
                [n] => [1, *n],
                other => [1, other.iter().product()],
            };
            let t =
                Tensor::<2>::from_data(TensorData::new(params[p.range()].to_vec(), shape), device);
            if require_grad { t.require_grad() } else { t }
        })
        .collect()
}

/// Copies the gradient of each tensor from [`param_tensors`] into its slice of `out` (zeros for
/// tensors the loss does not depend on).
pub fn write_grads(
    layout: &ParamLayout,
    tensors: &[Tensor<2>],
    grads: &Gradients,
    out: &mut [f32],
) -> Result<(), NnError> {
    for (info, t) in layout.params().iter().zip(tensors) {
        let slot = &mut out[info.range()];
        match t.grad(grads) {
            Some(g) => slot.copy_from_slice(&to_vec(g)?),
            None => slot.fill(0.0),
        }
    }
    Ok(())
}

/// A tensor's values (autodiff association dropped).
pub fn to_vec<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, NnError> {
    t.inner()
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| NnError::Shape(format!("{e:?}")))
}

/// A `[rows, cols]` tensor from row-major values.
pub fn matrix(values: &[f32], rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values.to_vec(), [rows, cols]), device)
}
