//! Hyperparameter tuning jobs end to end: the real server drives studies whose trials are real
//! trainer processes (the built-in trainer, and an unmodified Python trainer that reports with
//! Google's `cloudml-hypertune` package from the test venv).

mod util;

use std::path::Path;

use serde_json::{Value, json};
use util::*;

fn trials(job: &Value) -> Vec<Value> {
    job["trainingOutput"]["trials"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn objective(t: &Value) -> f64 {
    t["finalMetric"]["objectiveValue"].as_f64().unwrap()
}

/// Equal but for one ulp of serde_json's default float parsing.
fn same(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-15 * a.abs().max(b.abs())
}

fn hp(t: &Value, name: &str) -> String {
    t["hyperparameters"][name].as_str().unwrap().to_string()
}

/// Submits the Python test trainer (tests/fixtures/hp_trainer) with a tuning config.
fn submit_python(s: &Server, job: &str, job_dir: &Path, config: &Value, args: &[&str]) {
    let cfg = job_dir.with_extension("yaml");
    std::fs::write(&cfg, serde_json::to_string(config).unwrap()).unwrap();
    run_expect(
        s.cli()
            .current_dir(examples().join("../tests/fixtures/hp_trainer"))
            .args(["jobs", "--project", "p", "submit", "training", job])
            .arg("--config")
            .arg(&cfg)
            .args(["--package-path", "trainer", "--module-name", "trainer.task"])
            .arg("--job-dir")
            .arg(job_dir)
            .arg("--")
            .args(args),
        0,
    );
}

fn python_server(data: &Path, slots: usize) -> Server {
    let py = test_python();
    start_server(data, &[("MLE_PYTHON", py.to_str().unwrap())], slots)
}

fn reported(job_dir: &Path, trial: &str) -> Value {
    let path = job_dir.join(trial).join("reported.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn the_books_hyper_tune_script_runs_four_trials_best_first_by_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_server(&dir.path().join("data"), &[], 4);
    let job_dir = dir.path().join("iris_hp");
    let out = hyper_tune_script(&s, &job_dir).output().unwrap();
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let logs = stdout(&out) + &stderr(&out);
    assert!(logs.contains("state: SUCCEEDED"), "{logs}");
    assert!(logs.contains("master-replica-0 trial 1"), "{logs}");
    let (code, job) = s.request("GET", "/v1/projects/default/jobs/iris_hp", None);
    assert_eq!(
        (code, job["state"].as_str()),
        (200, Some("SUCCEEDED")),
        "{job}"
    );
    let out_fields = &job["trainingOutput"];
    assert_eq!(out_fields["isHyperparameterTuningJob"], true);
    assert_eq!(out_fields["hyperparameterMetricTag"], "accuracy");
    assert_eq!(out_fields["completedTrialCount"], "4");
    let t = trials(&job);
    assert_eq!(t.len(), 4, "{job}");
    let mut ids: Vec<String> = t
        .iter()
        .map(|t| t["trialId"].as_str().unwrap().into())
        .collect();
    for w in t.windows(2) {
        assert!(
            objective(&w[0]) >= objective(&w[1]),
            "not best-first: {job}"
        );
    }
    for trial in &t {
        assert_eq!(trial["state"], "SUCCEEDED", "{trial}");
        let id = trial["trialId"].as_str().unwrap();
        let lr: f64 = hp(trial, "learning-rate").parse().unwrap();
        assert!((0.0001..=0.1).contains(&lr), "{trial}");
        let first: i64 = hp(trial, "first-layer-size").parse().unwrap();
        assert!((50..=500).contains(&first), "{trial}");
        let layers: i64 = hp(trial, "num-layers").parse().unwrap();
        assert!((1..=15).contains(&layers), "{trial}");
        let scale: f64 = hp(trial, "scale-factor").parse().unwrap();
        assert!((0.1..=1.0).contains(&scale), "{trial}");
        // Each trial's own output; the ones that ran to the end exported a model.
        if trial["isTrialStoppedEarly"] == false {
            assert!(
                mle_nn::export::latest(&job_dir.join(id).join("export/iris")).is_some(),
                "trial {id} has no export"
            );
            assert_eq!(trial["finalMetric"]["trainingStep"], "2000", "{trial}");
        }
    }
    ids.sort();
    assert_eq!(ids, ["1", "2", "3", "4"]);
    let out = run_expect(
        s.cli().args(["jobs", "describe", "iris_hp", "--summarize"]),
        0,
    );
    let table = stdout(&out);
    assert!(table.contains("OBJECTIVE"), "{table}");
    assert_eq!(
        table.lines().filter(|l| l.contains("SUCCEEDED")).count(),
        5,
        "the job line and four trials:\n{table}"
    );
}

#[test]
fn a_python_trainer_using_cloudml_hypertune_is_tuned_within_its_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let s = python_server(&dir.path().join("data"), 4);
    let job_dir = dir.path().join("py_hp");
    let config = json!({"trainingInput": {"hyperparameters": {
        "goal": "MINIMIZE", "hyperparameterMetricTag": "loss", "maxTrials": 6, "maxParallelTrials": 2,
        "params": [
            {"parameterName": "lr", "type": "DOUBLE", "minValue": 0.0001, "maxValue": 0.1, "scaleType": "UNIT_LOG_SCALE"},
            {"parameterName": "layers", "type": "INTEGER", "minValue": 1, "maxValue": 8, "scaleType": "UNIT_LINEAR_SCALE"},
            {"parameterName": "opt", "type": "CATEGORICAL", "categoricalValues": ["adam", "sgd", "rmsprop"]}]}}});
    submit_python(&s, "py_hp", &job_dir, &config, &[]);
    let job = s.wait_state("py_hp", &["SUCCEEDED", "FAILED"], 180);
    assert_eq!(job["state"], "SUCCEEDED", "{job}");
    let t = trials(&job);
    assert_eq!(t.len(), 6, "{job}");
    assert!(t.iter().all(|t| t["state"] == "SUCCEEDED"), "{job}");
    for w in t.windows(2) {
        assert!(
            objective(&w[0]) <= objective(&w[1]),
            "not best-first: {job}"
        );
    }
    for trial in &t {
        let id = trial["trialId"].as_str().unwrap();
        let r = reported(&job_dir, id);
        // The trainer got the trial's values, its trial id, the tag and its own output dir.
        assert_eq!(r["args"]["job_dir"], job_dir.join(id).to_str().unwrap());
        assert_eq!(r["trial_env"], id);
        assert_eq!(r["tf_config"]["task"]["trial"], id);
        assert_eq!(r["tag"], "loss");
        let lr = r["args"]["lr"].as_f64().unwrap();
        // The same value (serde_json's default float parsing may be one ulp off).
        let given: f64 = hp(trial, "lr").parse().unwrap();
        assert!((lr - given).abs() <= 1e-15 * given.abs(), "{lr} vs {given}");
        assert!((0.0001..=0.1).contains(&lr), "{trial}");
        let layers = r["args"]["layers"].as_i64().unwrap();
        assert_eq!(layers.to_string(), hp(trial, "layers"));
        assert!((1..=8).contains(&layers), "{trial}");
        let opt = r["args"]["opt"].as_str().unwrap();
        assert_eq!(opt, hp(trial, "opt"));
        assert!(["adam", "sgd", "rmsprop"].contains(&opt), "{trial}");
        // finalMetric is the last value reported, at its step.
        let last = r["reported"].as_array().unwrap().last().unwrap().clone();
        assert!(same(objective(trial), last[1].as_f64().unwrap()), "{trial}");
        assert_eq!(trial["finalMetric"]["trainingStep"], "30");
        assert_eq!(trial["allMetrics"].as_array().unwrap().len(), 3);
    }
    // A log scale spreads proposals over the decades rather than bunching them near 0.1.
    let decades: std::collections::BTreeSet<i32> = t
        .iter()
        .map(|t| hp(t, "lr").parse::<f64>().unwrap().log10().floor() as i32)
        .collect();
    assert!(decades.len() >= 2, "{decades:?}");
}

#[test]
fn early_stopping_stops_poor_trials_and_keeps_the_best_result() {
    let dir = tempfile::tempdir().unwrap();
    let s = python_server(&dir.path().join("data"), 4);
    let spec = |early: bool| {
        json!({"trainingInput": {"hyperparameters": {
            "goal": "MAXIMIZE", "hyperparameterMetricTag": "score", "maxTrials": 5, "maxParallelTrials": 1,
            "algorithm": "GRID_SEARCH", "enableTrialEarlyStopping": early,
            "params": [{"parameterName": "noise", "type": "INTEGER", "minValue": 1, "maxValue": 5}]}}})
    };
    let (with_dir, without_dir) = (dir.path().join("with"), dir.path().join("without"));
    submit_python(
        &s,
        "stop_on",
        &with_dir,
        &spec(true),
        &["--interval", "0.3"],
    );
    submit_python(
        &s,
        "stop_off",
        &without_dir,
        &spec(false),
        &["--interval", "0.3"],
    );
    let on = s.wait_state("stop_on", &["SUCCEEDED", "FAILED"], 180);
    let off = s.wait_state("stop_off", &["SUCCEEDED", "FAILED"], 180);
    assert_eq!(on["state"], "SUCCEEDED", "{on}");
    assert_eq!(off["state"], "SUCCEEDED", "{off}");
    let (t_on, t_off) = (trials(&on), trials(&off));
    assert_eq!((t_on.len(), t_off.len()), (5, 5));
    assert!(t_off.iter().all(|t| t["isTrialStoppedEarly"] == false));
    let stopped: Vec<&Value> = t_on
        .iter()
        .filter(|t| t["isTrialStoppedEarly"] == true)
        .collect();
    assert!(!stopped.is_empty(), "nothing stopped early: {on}");
    for t in &stopped {
        let id = t["trialId"].as_str().unwrap();
        // Stopped before its tenth report, and its process is gone.
        let r = reported(&with_dir, id);
        assert!(r["reported"].as_array().unwrap().len() < 10, "{t}");
        let pid = std::fs::read_to_string(with_dir.join(id).join("pid")).unwrap();
        assert!(
            !Path::new(&format!("/proc/{}", pid.trim())).exists()
                || std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).is_ok_and(|s| s
                    .rsplit(')')
                    .next()
                    .unwrap()
                    .trim_start()
                    .starts_with('Z')),
            "trial {id}'s process {pid} still runs"
        );
        assert_eq!(t["state"], "SUCCEEDED");
        let last = r["reported"].as_array().unwrap().last().unwrap()[1]
            .as_f64()
            .unwrap();
        assert!(same(objective(t), last), "{t}");
    }
    // The best trial is the same with and without stopping.
    assert_eq!(t_on[0]["hyperparameters"], t_off[0]["hyperparameters"]);
    assert_eq!(objective(&t_on[0]), objective(&t_off[0]));
    assert_eq!(hp(&t_on[0], "noise"), "1");
    assert_eq!(objective(&t_on[0]), 5.0);
    let out = run_expect(
        s.cli()
            .args(["jobs", "--project", "p", "stream-logs", "stop_on"]),
        0,
    );
    let logs = stdout(&out);
    assert!(logs.contains("early"), "{logs}");
}

#[test]
fn a_trial_that_never_reports_fails_and_so_does_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let s = python_server(&dir.path().join("data"), 2);
    let job_dir = dir.path().join("silent");
    let config = json!({"trainingInput": {"hyperparameters": {
        "hyperparameterMetricTag": "loss", "maxTrials": 2, "maxParallelTrials": 1, "maxFailedTrials": 1,
        "params": [{"parameterName": "lr", "type": "DOUBLE", "minValue": 0.01, "maxValue": 0.1}]}}});
    submit_python(&s, "silent", &job_dir, &config, &["--silent"]);
    let job = s.wait_state("silent", &["SUCCEEDED", "FAILED"], 120);
    assert_eq!(job["state"], "FAILED", "{job}");
    let t = trials(&job);
    assert_eq!(t.len(), 1, "maxFailedTrials 1 stops the study: {job}");
    assert_eq!(t[0]["state"], "FAILED");
    let why = t[0]["errorMessage"].as_str().unwrap();
    assert!(why.contains("never reported the metric 'loss'"), "{why}");
    assert!(
        job["errorMessage"]
            .as_str()
            .unwrap()
            .contains("never reported"),
        "{job}"
    );
}

#[test]
fn invalid_tuning_specs_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_server(&dir.path().join("data"), &[], 4);
    let job = |hp: Value| {
        json!({"jobId": "bad", "trainingInput": {"masterConfig": {"containerCommand": ["true"]}, "hyperparameters": hp}})
            .to_string()
    };
    for (hp, field) in [
        (
            json!({"algorithm": "GRID_SEARCH", "params": [{"parameterName": "a", "type": "DOUBLE", "minValue": 0, "maxValue": 1}]}),
            "job.training_input.hyperparameters.params[0].type",
        ),
        (
            json!({"params": [{"parameterName": "a", "type": "DOUBLE", "minValue": 0, "maxValue": 1, "scaleType": "UNIT_LOG_SCALE"}]}),
            "job.training_input.hyperparameters.params[0].min_value",
        ),
        (
            json!({"params": [{"parameterName": "a", "type": "INTEGER", "minValue": 9, "maxValue": 1}]}),
            "job.training_input.hyperparameters.params[0].min_value",
        ),
        (
            json!({"params": [{"parameterName": "a", "type": "CATEGORICAL", "categoricalValues": ["x"]},
                              {"parameterName": "a", "type": "CATEGORICAL", "categoricalValues": ["y"]}]}),
            "job.training_input.hyperparameters.params[1].parameter_name",
        ),
        (
            json!({"params": [{"parameterName": "c", "type": "CATEGORICAL", "categoricalValues": []}]}),
            "job.training_input.hyperparameters.params[0].categorical_values",
        ),
        (
            json!({"maxParallelTrials": 8, "maxTrials": 8, "params": [{"parameterName": "c", "type": "DISCRETE", "discreteValues": [1, 2]}]}),
            "job.training_input.hyperparameters.max_parallel_trials",
        ),
        (
            json!({"resumePreviousJobId": "nope", "params": [{"parameterName": "c", "type": "DISCRETE", "discreteValues": [1, 2]}]}),
            "job.training_input.hyperparameters.resume_previous_job_id",
        ),
    ] {
        let (code, body) = s.request("POST", "/v1/projects/p/jobs", Some(&job(hp.clone())));
        assert_eq!(code, 400, "{hp} → {body}");
        let fields: Vec<&str> = body["error"]["details"][0]["fieldViolations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["field"].as_str().unwrap())
            .collect();
        assert!(fields.contains(&field), "{hp}: {fields:?}");
    }
    let (code, body) = s.request("GET", "/v1/projects/p/jobs", None);
    assert_eq!(code, 200);
    assert!(
        body["jobs"].as_array().is_none_or(|j| j.is_empty()),
        "{body}"
    );
}

fn noise_study(trials: usize, parallel: usize, values: &[f64], resume: Option<&str>) -> Value {
    let mut hp = json!({
        "goal": "MAXIMIZE", "hyperparameterMetricTag": "score", "maxTrials": trials,
        "maxParallelTrials": parallel, "algorithm": "GRID_SEARCH",
        "params": [{"parameterName": "noise", "type": "DISCRETE", "discreteValues": values}]});
    if let Some(r) = resume {
        hp["resumePreviousJobId"] = json!(r);
    }
    json!({"trainingInput": {"hyperparameters": hp}})
}

#[test]
fn a_study_survives_kill_9_of_the_server_and_warm_starts_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut s = python_server(&data, 2);
    let job_dir = dir.path().join("first");
    submit_python(
        &s,
        "first",
        &job_dir,
        &noise_study(2, 1, &[1.0, 2.0, 3.0], None),
        &["--interval", "0.3"],
    );
    // Kill the server while trial 1 runs; its supervisor carries on alone.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !job_dir.join("1/reported.json").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "trial 1 never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(1));
    s = python_server(&data, 2);
    let first = s.wait_state("first", &["SUCCEEDED", "FAILED"], 120);
    assert_eq!(first["state"], "SUCCEEDED", "{first}");
    let t = trials(&first);
    assert_eq!(t.len(), 2, "{first}");
    assert!(t.iter().all(|t| t["state"] == "SUCCEEDED"), "{first}");
    assert_eq!(
        (hp(&t[0], "noise"), hp(&t[1], "noise")),
        ("1".into(), "2".into())
    );
    // Warm start: grid points the first study ran are not run again.
    let second_dir = dir.path().join("second");
    submit_python(
        &s,
        "second",
        &second_dir,
        &noise_study(1, 1, &[1.0, 2.0, 3.0], Some("first")),
        &["--interval", "0.01"],
    );
    let second = s.wait_state("second", &["SUCCEEDED", "FAILED"], 120);
    assert_eq!(second["state"], "SUCCEEDED", "{second}");
    assert_eq!(hp(&trials(&second)[0], "noise"), "3", "{second}");
}

#[test]
fn cancelling_a_study_stops_every_trial() {
    let dir = tempfile::tempdir().unwrap();
    let s = python_server(&dir.path().join("data"), 2);
    let job_dir = dir.path().join("long");
    submit_python(
        &s,
        "long",
        &job_dir,
        &noise_study(4, 2, &[1.0, 2.0, 3.0, 4.0], None),
        &["--interval", "30"],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !(job_dir.join("1/pid").exists() && job_dir.join("2/pid").exists()) {
        assert!(std::time::Instant::now() < deadline, "trials never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    run_expect(
        s.cli().args(["jobs", "--project", "p", "cancel", "long"]),
        0,
    );
    let job = s.wait_state("long", &["CANCELLED"], 60);
    let t = trials(&job);
    assert_eq!(t.len(), 2, "no trial starts after the cancel: {job}");
    for trial in &t {
        assert_eq!(trial["state"], "CANCELLED", "{trial}");
        let id = trial["trialId"].as_str().unwrap();
        let pid = std::fs::read_to_string(job_dir.join(id).join("pid")).unwrap();
        assert!(
            pids_with("trainer.task")
                .iter()
                .all(|p| p.to_string() != pid.trim()),
            "trial {id} still runs"
        );
    }
}

#[test]
fn metrics_come_from_event_files_when_a_trainer_writes_no_hypertune_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_server(&dir.path().join("data"), &[], 2);
    let ex = examples();
    let job_dir = dir.path().join("events_only");
    // The built-in trainer, with the hypertune file taken away: only its event files remain.
    let script = format!(
        "unset CLOUD_ML_HP_METRIC_FILE; exec '{}' train \"$@\"",
        env!("CARGO_BIN_EXE_mle")
    );
    let job = json!({"jobId": "events_only", "trainingInput": {
        "masterConfig": {"containerCommand": ["sh", "-c", script, "sh"]},
        "jobDir": job_dir,
        "args": ["--model", ex.join("iris/model.yaml"), "--train-files", ex.join("iris/data/train_data.csv"),
                 "--eval-files", ex.join("iris/data/test_data.csv"), "--train-steps", "400",
                 "--eval-every-steps", "200", "--no-progress"],
        "hyperparameters": {"goal": "MAXIMIZE", "hyperparameterMetricTag": "accuracy", "maxTrials": 2,
            "algorithm": "GRID_SEARCH",
            "params": [{"parameterName": "learning-rate", "type": "DISCRETE", "discreteValues": [0.0001, 0.01]}]}}});
    let (code, body) = s.request("POST", "/v1/projects/p/jobs", Some(&job.to_string()));
    assert_eq!(code, 200, "{body}");
    let done = s.wait_state("events_only", &["SUCCEEDED", "FAILED"], 120);
    assert_eq!(done["state"], "SUCCEEDED", "{done}");
    for t in trials(&done) {
        let id = t["trialId"].as_str().unwrap();
        let events: Vec<(u64, f64)> = mle_train::events::read_dir(&job_dir.join(id), "accuracy")
            .iter()
            .map(|r| (r.step, r.value))
            .collect();
        assert_eq!(events.len(), 2, "evaluations at 200 and 400: {events:?}");
        assert_eq!(t["finalMetric"]["trainingStep"], "400");
        assert!(same(objective(&t), events[1].1), "{t}");
        let metric_files = s
            .data
            .join("runs/p/events_only/trials")
            .join(id)
            .join("hypertune");
        assert!(
            std::fs::read_dir(&metric_files).map_or(true, |mut d| d.next().is_none()),
            "a hypertune file was written"
        );
    }
}

#[test]
fn a_non_finite_metric_fails_its_trial_and_the_job_record_survives() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_server(&dir.path().join("data"), &[], 2);
    // Trial 1 reports NaN (hypertune values are strings, and "nan" parses as a float), trial 2
    // a number.
    let script = r#"mkdir -p "$(dirname "$CLOUD_ML_HP_METRIC_FILE")"
if [ "$CLOUD_ML_TRIAL_ID" = 1 ]; then v=nan; else v=0.5; fi
echo "{\"loss\": \"$v\", \"global_step\": \"1\", \"timestamp\": \"1\"}" > "$CLOUD_ML_HP_METRIC_FILE""#;
    let job = json!({"jobId": "nan_hp", "labels": {"team": "a"}, "trainingInput": {
        "masterConfig": {"containerCommand": ["sh", "-c", script]},
        "hyperparameters": {"goal": "MINIMIZE", "hyperparameterMetricTag": "loss", "maxTrials": 2,
            "maxParallelTrials": 1, "algorithm": "GRID_SEARCH",
            "params": [{"parameterName": "x", "type": "INTEGER", "minValue": 1, "maxValue": 2}]}}});
    let (code, v) = s.request("POST", "/v1/projects/p/jobs", Some(&job.to_string()));
    assert_eq!(code, 200, "{v}");
    let job = s.wait_state("nan_hp", &["SUCCEEDED", "FAILED"], 60);
    assert_eq!(job["state"], "SUCCEEDED", "{job}");
    let t = trials(&job);
    let by_id = |id: &str| t.iter().find(|t| t["trialId"] == id).unwrap().clone();
    let nan = by_id("1");
    assert_eq!(nan["state"], "FAILED", "{job}");
    assert!(
        nan["errorMessage"].as_str().unwrap().contains("non-finite"),
        "{nan}"
    );
    assert_eq!(objective(&by_id("2")), 0.5);
    // Nothing of the record is lost: the input and labels are still there.
    assert_eq!(job["labels"]["team"], "a");
    assert_eq!(job["trainingInput"]["hyperparameters"]["maxTrials"], 2);
    let (code, list) = s.request("GET", "/v1/projects/p/jobs", None);
    assert_eq!(code, 200);
    assert_eq!(list["jobs"][0]["jobId"], "nan_hp");
}
