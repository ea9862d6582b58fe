//! The environment of a job's processes — replicas, a batch prediction, pip — is not the
//! server's: it holds the [`INHERITED`] variables of the process that starts them (the
//! supervisor, a Slurm task, the server for pip) and the variables their plan lists (the job's
//! own: `TF_CONFIG`, `CLOUD_ML_*`, `PYTHONPATH`, and any the operator passes with
//! `mle server --pass-env NAME`). Nothing else of the server's environment reaches a trainer.

/// What a job's processes inherit.
pub const INHERITED: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"];

/// The [`INHERITED`] variables this process has, to set on a cleared command.
pub fn inherited() -> Vec<(String, String)> {
    INHERITED
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_listed_variables_are_inherited() {
        let names: Vec<String> = super::inherited().into_iter().map(|(k, _)| k).collect();
        assert!(names.iter().all(|k| super::INHERITED.contains(&k.as_str())));
        assert!(names.contains(&"PATH".to_string()));
    }
}
