//! Where each named parameter tensor lives in the flat parameter vector.

/// One named tensor in a flat `f32` vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamInfo {
    /// Name, e.g. `dense_0.kernel`.
    pub name: String,
    /// Shape (row-major).
    pub shape: Vec<usize>,
    /// Offset of the first element.
    pub offset: usize,
}

impl ParamInfo {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element range inside the flat vector.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// An ordered list of named tensors packed back to back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamLayout {
    params: Vec<ParamInfo>,
    total: usize,
}

impl ParamLayout {
    /// Appends a tensor and returns its index.
    pub fn push(&mut self, name: impl Into<String>, shape: &[usize]) -> usize {
        let info = ParamInfo {
            name: name.into(),
            shape: shape.to_vec(),
            offset: self.total,
        };
        self.total += info.len();
        self.params.push(info);
        self.params.len() - 1
    }

    /// The tensors in order.
    pub fn params(&self) -> &[ParamInfo] {
        &self.params
    }

    /// Total number of elements.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Looks a tensor up by name.
    pub fn get(&self, name: &str) -> Option<&ParamInfo> {
        self.params.iter().find(|p| p.name == name)
    }
}
