//! The job state machine: the one place that decides which state transitions are legal and
//! what each one does to the job's times and queue position. Every state change of a job goes
//! through [`transition`] inside a [`crate::db::Db::update_job`]; an illegal transition is an
//! error (nothing is written), not a write.
//!
//! QUEUED → PREPARING → RUNNING → SUCCEEDED | FAILED | CANCELLED, with CANCELLING on the way to
//! CANCELLED, PREPARING → QUEUED when a restart interrupted the preparation, and a job that
//! ran and ended between two looks going straight from PREPARING to its end.

use mle_api::{Job, JobState, now_rfc3339};

/// Whether a job may go from `from` to `to`.
pub fn allowed(from: JobState, to: JobState) -> bool {
    use JobState::*;
    match from {
        StateUnspecified => matches!(to, Queued | Cancelled),
        Queued => matches!(to, Preparing | Cancelled),
        Preparing => matches!(
            to,
            Queued | Running | Cancelling | Succeeded | Failed | Cancelled
        ),
        Running => matches!(to, Cancelling | Succeeded | Failed | Cancelled),
        Cancelling => matches!(to, Succeeded | Failed | Cancelled),
        Succeeded | Failed | Cancelled => false,
    }
}

/// Moves `job` to `to` (staying in the same state is a no-op): leaving the queue clears the
/// position, RUNNING stamps the start time, an end stamps the end time.
pub fn transition(job: &mut Job, to: JobState) -> Result<(), String> {
    if job.state == to {
        return Ok(());
    }
    if !allowed(job.state, to) {
        return Err(format!(
            "job '{}' cannot go from {:?} to {to:?}",
            job.job_id, job.state
        ));
    }
    if job.state == JobState::Queued {
        job.job_position = None;
    }
    job.state = to;
    if to == JobState::Running {
        job.start_time = now_rfc3339();
    }
    if to.is_final() {
        job.end_time = now_rfc3339();
        job.job_position = None;
    }
    Ok(())
}

/// Ends `job` in `state` with `message` unless it has already ended.
pub fn finish(job: &mut Job, state: JobState, message: &str) -> Result<(), String> {
    if job.state.is_final() {
        return Ok(());
    }
    transition(job, state)?;
    job.error_message = message.to_string();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legal_transitions_stamp_times_and_illegal_ones_are_refused() {
        let mut j = Job {
            job_id: "j".into(),
            state: JobState::Queued,
            job_position: Some(mle_api::Int64(3)),
            ..Job::default()
        };
        transition(&mut j, JobState::Preparing).unwrap();
        assert_eq!(j.job_position, None);
        transition(&mut j, JobState::Running).unwrap();
        assert!(!j.start_time.is_empty());
        assert!(j.end_time.is_empty());
        let e = transition(&mut j, JobState::Queued).unwrap_err();
        assert!(e.contains("Running") && e.contains("Queued"), "{e}");
        finish(&mut j, JobState::Failed, "boom").unwrap();
        assert_eq!(
            (j.state, j.error_message.as_str()),
            (JobState::Failed, "boom")
        );
        assert!(!j.end_time.is_empty());
        // An ended job stays as it ended.
        finish(&mut j, JobState::Succeeded, "").unwrap();
        assert_eq!(j.state, JobState::Failed);
        assert!(transition(&mut j, JobState::Running).is_err());
    }

    #[test]
    fn every_final_state_is_a_dead_end() {
        use JobState::*;
        let all = [
            StateUnspecified,
            Queued,
            Preparing,
            Running,
            Succeeded,
            Failed,
            Cancelling,
            Cancelled,
        ];
        for from in all {
            for to in all {
                if from.is_final() {
                    assert!(!allowed(from, to), "{from:?} -> {to:?}");
                }
            }
            assert!(!allowed(from, Queued) || matches!(from, Preparing | StateUnspecified));
        }
    }
}
