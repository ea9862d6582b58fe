//! Machine types → resources. The legacy ML Engine names map to their Compute Engine
//! equivalents (CMLE docs, "machine types" table); Compute Engine `n1-standard-N`,
//! `n1-highmem-N` and `n1-highcpu-N` are also accepted (3.75, 6.5 and 0.9 GB per vCPU).

/// What one replica of a machine type gets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Machine {
    /// vCPUs.
    pub cpus: u32,
    /// Memory in GB.
    pub memory_gb: f64,
    /// GPUs.
    pub gpus: u32,
}

const LEGACY: &[(&str, u32, f64, u32)] = &[
    ("standard", 4, 15.0, 0),
    ("large_model", 8, 52.0, 0),
    ("complex_model_s", 8, 7.2, 0),
    ("complex_model_m", 16, 14.4, 0),
    ("complex_model_l", 32, 28.8, 0),
    ("standard_gpu", 4, 15.0, 1),
    ("complex_model_m_gpu", 16, 14.4, 4),
    ("complex_model_l_gpu", 32, 28.8, 8),
    ("standard_p100", 4, 15.0, 1),
    ("complex_model_m_p100", 16, 14.4, 4),
    ("standard_v100", 4, 15.0, 1),
    ("large_model_v100", 8, 52.0, 1),
    ("complex_model_m_v100", 16, 14.4, 4),
    ("complex_model_l_v100", 32, 28.8, 8),
];

/// The resources of a machine type, if it is known.
pub fn machine(name: &str) -> Option<Machine> {
    if let Some(&(_, cpus, memory_gb, gpus)) = LEGACY.iter().find(|(n, ..)| *n == name) {
        return Some(Machine {
            cpus,
            memory_gb,
            gpus,
        });
    }
    for (family, gb) in [
        ("n1-standard-", 3.75),
        ("n1-highmem-", 6.5),
        ("n1-highcpu-", 0.9),
    ] {
        if let Some(n) = name
            .strip_prefix(family)
            .and_then(|n| n.parse::<u32>().ok())
            && [1, 2, 4, 8, 16, 32, 64, 96].contains(&n)
        {
            return Some(Machine {
                cpus: n,
                memory_gb: gb * n as f64,
                gpus: 0,
            });
        }
    }
    None
}

/// The names accepted, for error messages.
pub fn machine_names() -> String {
    let mut names: Vec<&str> = LEGACY.iter().map(|(n, ..)| *n).collect();
    names.push("n1-standard-N");
    names.push("n1-highmem-N");
    names.push("n1-highcpu-N");
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_and_compute_engine_names() {
        assert_eq!(
            machine("complex_model_m_gpu"),
            Some(Machine {
                cpus: 16,
                memory_gb: 14.4,
                gpus: 4
            })
        );
        assert_eq!(
            machine("n1-highmem-8"),
            Some(Machine {
                cpus: 8,
                memory_gb: 52.0,
                gpus: 0
            })
        );
        assert_eq!(machine("n1-standard-3"), None);
        assert_eq!(machine("huge"), None);
        assert!(machine_names().starts_with("standard, large_model"));
    }
}
