//! The search space: parameters with their types and scales, and the map between a parameter's
//! value and a coordinate in [0, 1] that the search algorithms work in.

/// How a numeric parameter is spread over [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Uniform in the value.
    Linear,
    /// Uniform in log(value) (positive bounds only).
    Log,
    /// Dense near the maximum: uniform in log(max + min - value) (positive bounds only).
    ReverseLog,
}

/// One parameter's domain.
#[derive(Debug, Clone, PartialEq)]
pub enum Domain {
    /// Real in [min, max].
    Double {
        /// Lower bound.
        min: f64,
        /// Upper bound.
        max: f64,
        /// Scale.
        scale: Scale,
    },
    /// Integer in [min, max].
    Integer {
        /// Lower bound.
        min: i64,
        /// Upper bound.
        max: i64,
        /// Scale.
        scale: Scale,
    },
    /// One of these strings.
    Categorical(Vec<String>),
    /// One of these numbers, ascending.
    Discrete(Vec<f64>),
}

/// A named parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// Name (`--<name>=<value>` for the trainer).
    pub name: String,
    /// Domain.
    pub domain: Domain,
}

/// A value of one parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// DOUBLE or DISCRETE.
    Number(f64),
    /// INTEGER.
    Int(i64),
    /// CATEGORICAL.
    Text(String),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Number(v) => write!(f, "{v}"),
            Value::Int(v) => write!(f, "{v}"),
            Value::Text(v) => f.write_str(v),
        }
    }
}

/// A point of the space: one value per parameter, in parameter order.
pub type Point = Vec<Value>;

fn to_unit_real(v: f64, min: f64, max: f64, scale: Scale) -> f64 {
    if max <= min {
        return 0.5;
    }
    let u = match scale {
        Scale::Linear => (v - min) / (max - min),
        Scale::Log => (v.ln() - min.ln()) / (max.ln() - min.ln()),
        Scale::ReverseLog => 1.0 - ((max + min - v).ln() - min.ln()) / (max.ln() - min.ln()),
    };
    u.clamp(0.0, 1.0)
}

fn from_unit_real(u: f64, min: f64, max: f64, scale: Scale) -> f64 {
    let u = u.clamp(0.0, 1.0);
    let v = match scale {
        Scale::Linear => min + u * (max - min),
        Scale::Log => (min.ln() + u * (max.ln() - min.ln())).exp(),
        Scale::ReverseLog => max + min - (min.ln() + (1.0 - u) * (max.ln() - min.ln())).exp(),
    };
    v.clamp(min, max)
}

impl Domain {
    /// Coordinates this parameter takes in the unit cube (one per category for categoricals).
    pub fn width(&self) -> usize {
        match self {
            Domain::Categorical(c) => c.len(),
            _ => 1,
        }
    }

    /// Writes the unit-cube coordinates of `v` into `out` (one-hot for categoricals).
    pub fn encode(&self, v: &Value, out: &mut Vec<f64>) {
        match (self, v) {
            (Domain::Double { min, max, scale }, Value::Number(x)) => {
                out.push(to_unit_real(*x, *min, *max, *scale))
            }
            (Domain::Integer { min, max, scale }, Value::Int(x)) => {
                out.push(to_unit_real(*x as f64, *min as f64, *max as f64, *scale))
            }
            (Domain::Discrete(vals), Value::Number(x)) => {
                let i = vals.iter().position(|v| v == x).unwrap_or(0);
                out.push(if vals.len() > 1 {
                    i as f64 / (vals.len() - 1) as f64
                } else {
                    0.5
                });
            }
            (Domain::Categorical(cats), Value::Text(t)) => {
                out.extend(cats.iter().map(|c| if c == t { 1.0 } else { 0.0 }))
            }
            (d, _) => out.extend(std::iter::repeat_n(0.5, d.width())),
        }
    }

    /// The value at unit-cube coordinates `u` (`width()` of them): integers and discrete values
    /// round to the nearest allowed one, categoricals take the largest coordinate.
    pub fn decode(&self, u: &[f64]) -> Value {
        match self {
            Domain::Double { min, max, scale } => {
                Value::Number(from_unit_real(u[0], *min, *max, *scale))
            }
            Domain::Integer { min, max, scale } => {
                let x = from_unit_real(u[0], *min as f64, *max as f64, *scale).round() as i64;
                Value::Int(x.clamp(*min, *max))
            }
            Domain::Discrete(vals) => {
                let i = (u[0].clamp(0.0, 1.0) * (vals.len().max(1) - 1) as f64).round() as usize;
                Value::Number(vals[i.min(vals.len() - 1)])
            }
            Domain::Categorical(cats) => {
                let i = (0..cats.len())
                    .max_by(|&a, &b| u[a].total_cmp(&u[b]))
                    .unwrap_or(0);
                Value::Text(cats[i].clone())
            }
        }
    }

    /// Whether `v` lies in the domain.
    pub fn contains(&self, v: &Value) -> bool {
        match (self, v) {
            (Domain::Double { min, max, .. }, Value::Number(x)) => {
                x.is_finite() && *x >= *min && *x <= *max
            }
            (Domain::Integer { min, max, .. }, Value::Int(x)) => x >= min && x <= max,
            (Domain::Discrete(vals), Value::Number(x)) => vals.contains(x),
            (Domain::Categorical(cats), Value::Text(t)) => cats.contains(t),
            _ => false,
        }
    }
}

/// The whole space.
#[derive(Debug, Clone, PartialEq)]
pub struct Space {
    /// Parameters in order.
    pub params: Vec<Param>,
}

impl Space {
    /// Total unit-cube dimensions.
    pub fn dims(&self) -> usize {
        self.params.iter().map(|p| p.domain.width()).sum()
    }

    /// Per unit-cube coordinate, whether it is ordered (a number's position) rather than one
    /// of a categorical's one-hot coordinates.
    pub fn ordered(&self) -> Vec<bool> {
        self.params
            .iter()
            .flat_map(|p| {
                let ordered = !matches!(p.domain, Domain::Categorical(_));
                std::iter::repeat_n(ordered, p.domain.width())
            })
            .collect()
    }

    /// Unit-cube coordinates of a point.
    pub fn encode(&self, point: &Point) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.dims());
        for (p, v) in self.params.iter().zip(point) {
            p.domain.encode(v, &mut out);
        }
        out
    }

    /// The point at unit-cube coordinates.
    pub fn decode(&self, u: &[f64]) -> Point {
        let mut at = 0;
        self.params
            .iter()
            .map(|p| {
                let w = p.domain.width();
                let v = p.domain.decode(&u[at..at + w]);
                at += w;
                v
            })
            .collect()
    }

    /// Whether every value lies in its domain.
    pub fn contains(&self, point: &Point) -> bool {
        point.len() == self.params.len()
            && self
                .params
                .iter()
                .zip(point)
                .all(|(p, v)| p.domain.contains(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_round_trip_and_spread_as_documented() {
        for scale in [Scale::Linear, Scale::Log, Scale::ReverseLog] {
            for u in [0.0, 0.25, 0.5, 0.9, 1.0] {
                let v = from_unit_real(u, 1e-4, 1e-1, scale);
                assert!(
                    (to_unit_real(v, 1e-4, 1e-1, scale) - u).abs() < 1e-9,
                    "{scale:?} {u}"
                );
            }
        }
        // Log: the midpoint is the geometric mean; reverse log: close to the maximum.
        assert!((from_unit_real(0.5, 1e-4, 1e-2, Scale::Log) - 1e-3).abs() < 1e-12);
        assert!(from_unit_real(0.5, 1.0, 100.0, Scale::ReverseLog) > 80.0);
    }
}
