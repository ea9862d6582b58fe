//! In-process tests of the HTTP app (`app()` driven with `tower::ServiceExt::oneshot`, no
//! socket, no scheduler loop): routing, auth and validation, beside the binary tests in
//! `mle-cli/tests`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use mle_server::{AppState, Config, app};
use serde_json::{Value, json};
use tower::ServiceExt;

const TOKEN: &str = "t0ken";

struct App {
    router: axum::Router,
    state: Arc<AppState>,
    _dir: tempfile::TempDir,
}

async fn new_app(allow_root: bool) -> App {
    let dir = tempfile::tempdir().unwrap();
    let store = mle_store::Store::open_dir(dir.path()).await.unwrap();
    let cfg = Config {
        runtimes: mle_exec::Runtimes {
            default: "python3".into(),
            listed: vec![mle_exec::Runtime::parse("2.11/3.11=python3").unwrap()],
        },
        allow_root: allow_root.then(|| dir.path().canonicalize().unwrap()),
        // The jobs these tests submit run `true` (they never start: no scheduler loop).
        jobs: mle_server::JobPolicy {
            allow_commands: vec!["true".into()],
            ..Default::default()
        },
        ..Config::local(dir.path().to_path_buf(), "/bin/false".into())
    };
    let state = AppState::new(store, cfg);
    App {
        router: app(state.clone(), TOKEN.into()),
        state,
        _dir: dir,
    }
}

impl App {
    async fn send(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Body,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        req = req.header("Content-Type", "application/json");
        let resp = self
            .router
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, v)
    }

    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        self.send(method, uri, Some(TOKEN), body).await
    }
}

fn violation_field(v: &Value) -> String {
    v["error"]["details"][0]["fieldViolations"][0]["field"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn health_checks_are_open_and_everything_else_needs_the_token() {
    let a = new_app(false).await;
    let (code, v) = a.send("GET", "/healthz", None, Body::empty()).await;
    assert_eq!((code, v), (StatusCode::OK, json!("ok")));
    let (code, v) = a.send("GET", "/v2/health/live", None, Body::empty()).await;
    assert_eq!((code, v["live"].clone()), (StatusCode::OK, json!(true)));
    for token in [None, Some("wrong"), Some("t0kenX")] {
        let (code, v) = a
            .send("GET", "/v1/projects/p/jobs", token, Body::empty())
            .await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(v["error"]["status"], "UNAUTHENTICATED");
    }
    let (code, v) = a.send("GET", "/v1/models/m", None, Body::empty()).await;
    assert_eq!(
        (code, v["error"]["status"].clone()),
        (StatusCode::UNAUTHORIZED, json!("UNAUTHENTICATED"))
    );
    let (code, v) = a.call("GET", "/v1/projects/p/jobs", None).await;
    assert_eq!((code, v), (StatusCode::OK, json!({"jobs": []})));
    let (code, v) = a.call("GET", "/no/such/route", None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["message"], "no such route");
}

#[tokio::test]
async fn bad_job_requests_are_400s_naming_the_field_and_nothing_is_stored() {
    let a = new_app(true).await;
    let jobs = "/v1/projects/p/jobs";
    let (code, v) = a
        .send("POST", jobs, Some(TOKEN), Body::from("{\"jobId\": "))
        .await;
    assert_eq!(
        (code, violation_field(&v)),
        (StatusCode::BAD_REQUEST, "body".into())
    );
    let (code, v) = a.call("POST", jobs, Some(json!({"jobId": 7}))).await;
    assert_eq!(
        (code, violation_field(&v)),
        (StatusCode::BAD_REQUEST, "job".into())
    );
    let shell = |id: &str, job_dir: &str| json!({"jobId": id, "trainingInput": {"masterConfig": {"containerCommand": ["true"]}, "jobDir": job_dir}});
    for (dir, why) in [
        ("relative/dir", "absolute"),
        // A server confined to a directory is not open to every bucket.
        ("gs://bucket/dir", "--allow-bucket bucket"),
        ("gs://Bad_Bucket/dir", "is not a bucket name"),
        ("s3://bucket/a/../b", "'..'"),
        ("ftp://host/dir", "not a scheme"),
        ("/etc/outside", "outside the directory"),
    ] {
        let (code, v) = a.call("POST", jobs, Some(shell("j1", dir))).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{dir}: {v}");
        assert_eq!(violation_field(&v), "job.training_input.job_dir");
        assert!(
            v["error"]["message"].to_string().contains(why) || v.to_string().contains(why),
            "{dir}: {v}"
        );
    }
    let (code, v) = a
        .call(
            "POST",
            "/v1/projects/bad%20name/jobs",
            Some(shell("j1", "")),
        )
        .await;
    assert_eq!(
        (code, violation_field(&v)),
        (StatusCode::BAD_REQUEST, "parent".into())
    );
    let (code, v) = a.call("GET", &format!("{jobs}?pageSize=-1"), None).await;
    assert_eq!(
        (code, violation_field(&v)),
        (StatusCode::BAD_REQUEST, "page_size".into())
    );
    let (code, v) = a
        .call("GET", &format!("{jobs}?filter=owner:me"), None)
        .await;
    assert_eq!(
        (code, violation_field(&v)),
        (StatusCode::BAD_REQUEST, "filter".into())
    );
    // Counts whose sum wraps around in unchecked arithmetic (2 × (2^63 − 1) + 1 + 1 = 2^64).
    let huge = json!({"jobId": "huge", "trainingInput": {"scaleTier": "CUSTOM", "masterType": "standard",
        "workerType": "standard", "parameterServerType": "standard", "evaluatorType": "standard",
        "workerCount": "9223372036854775807", "parameterServerCount": "9223372036854775807",
        "evaluatorCount": "1", "masterConfig": {"containerCommand": ["true"]}}});
    let (code, v) = a.call("POST", jobs, Some(huge)).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{v}");
    assert!(violation_field(&v).ends_with("_count"), "{v}");
    // A runtime this server does not have: the answer lists those it has.
    for (rv, pv) in [("2.3", ""), ("2.11", "3.7"), ("2.11\u{0}", "")] {
        let job = json!({"jobId": "rt", "trainingInput": {"pythonModule": "t.task",
            "runtimeVersion": rv, "pythonVersion": pv}});
        let (code, v) = a.call("POST", jobs, Some(job)).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{rv}: {v}");
        let fields = v["error"]["details"][0]["fieldViolations"]
            .as_array()
            .unwrap();
        assert!(
            fields
                .iter()
                .any(|f| f["field"] == "job.training_input.runtime_version"),
            "{v}"
        );
        assert!(v.to_string().contains("it has 2.11/3.11 (python3)"), "{v}");
    }
    let (_, list) = a.call("GET", jobs, None).await;
    assert_eq!(list, json!({"jobs": []}), "nothing half-created");
}

#[tokio::test]
async fn cancel_follows_the_state_machine() {
    let a = new_app(false).await;
    let job =
        json!({"jobId": "c1", "trainingInput": {"masterConfig": {"containerCommand": ["true"]}}});
    let (code, v) = a.call("POST", "/v1/projects/p/jobs", Some(job)).await;
    assert_eq!(
        (code, v["state"].clone()),
        (StatusCode::OK, json!("QUEUED"))
    );
    let (code, _) = a
        .call("POST", "/v1/projects/p/jobs/c1:cancel", Some(json!({})))
        .await;
    assert_eq!(code, StatusCode::OK);
    let (_, v) = a.call("GET", "/v1/projects/p/jobs/c1", None).await;
    assert_eq!(v["state"], "CANCELLED");
    assert!(v["endTime"].as_str().is_some_and(|t| !t.is_empty()));
    // An ended job cannot be cancelled again; nothing about it changes.
    let (code, again) = a
        .call("POST", "/v1/projects/p/jobs/c1:cancel", Some(json!({})))
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(again["error"]["status"], "FAILED_PRECONDITION");
    let (_, after) = a.call("GET", "/v1/projects/p/jobs/c1", None).await;
    assert_eq!(after, v);
    let (code, _) = a
        .call("POST", "/v1/projects/p/jobs/nope:cancel", Some(json!({})))
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, _) = a
        .call("POST", "/v1/projects/p/jobs/c1:explode", Some(json!({})))
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(a.state.cfg.slots, 4);
}

#[tokio::test]
async fn serving_routes_refuse_bad_input_without_a_500() {
    let a = new_app(true).await;
    let (code, v) = a
        .call(
            "POST",
            "/v1/projects/p/models",
            Some(json!({"name": "1bad"})),
        )
        .await;
    assert_eq!(
        (code, violation_field(&v)),
        (StatusCode::BAD_REQUEST, "model.name".into())
    );
    let (code, _) = a
        .call("POST", "/v1/projects/p/models", Some(json!({"name": "m"})))
        .await;
    assert_eq!(code, StatusCode::OK);
    let (code, v) = a
        .call(
            "POST",
            "/v1/projects/p/models/m/versions",
            Some(json!({"name": "v1", "deploymentUri": "/etc"})),
        )
        .await;
    assert_eq!(
        (code, violation_field(&v)),
        (StatusCode::BAD_REQUEST, "version.deployment_uri".into())
    );
    let (code, v) = a
        .call(
            "PATCH",
            "/v1/projects/p/models/m?updateMask=name",
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (code, violation_field(&v)),
        (StatusCode::BAD_REQUEST, "update_mask".into())
    );
    // No default version yet: a 400 saying so, in prediction's own shape.
    let (code, v) = a
        .call(
            "POST",
            "/v1/projects/p/models/m:predict",
            Some(json!({"instances": [[1, 2]]})),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(
        v["error"].as_str().unwrap().contains("no default version"),
        "{v}"
    );
    let (code, _) = a
        .call("POST", "/v2/models/nope/infer", Some(json!({"inputs": [{"datatype": "FP32", "shape": [1099511627776u64, 4], "data": [1]}]})))
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let huge = Body::from(vec![b' '; 2 * 1024 * 1024]);
    let (code, _) = a
        .send("POST", "/v1/projects/p/models/m:predict", Some(TOKEN), huge)
        .await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
    let (code, v) = a
        .send(
            "POST",
            "/v1/models/m:predict",
            Some(TOKEN),
            Body::from("not json"),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(
        v["error"].as_str().unwrap().contains("malformed JSON"),
        "{v}"
    );
}

#[tokio::test]
async fn requests_axum_rejects_get_the_error_envelope_too() {
    let a = new_app(false).await;
    for (method, uri, code) in [
        ("GET", "/v1/projects/%ff%fe/jobs", StatusCode::BAD_REQUEST),
        (
            "GET",
            "/v1/projects/p/jobs?pageSize=%ff",
            StatusCode::BAD_REQUEST,
        ),
        ("PUT", "/v1/projects/p/jobs", StatusCode::METHOD_NOT_ALLOWED),
    ] {
        let (got, v) = a.call(method, uri, None).await;
        assert_eq!(got, code, "{method} {uri}: {v}");
        assert_eq!(v["error"]["code"], code.as_u16(), "{method} {uri}: {v}");
        assert!(v["error"]["status"].is_string(), "{method} {uri}: {v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty(), "{v}");
    }
}

/// Every operation of `/openapi.json` (so a new route is covered as soon as it is documented)
/// without a token or with a wrong one: 401 with the envelope, and nothing about the resource.
#[tokio::test]
async fn every_documented_operation_needs_the_token() {
    let a = new_app(false).await;
    let open = ["/healthz", "/v2/health/live", "/v2/health/ready"];
    let doc = mle_server::openapi::spec();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if open.contains(&path.as_str()) {
            continue;
        }
        let concrete = path
            .replace("{project}", "p")
            .replace("{job}", "j")
            .replace("{model}", "m")
            .replace("{version}", "v")
            .replace("{operation}", "o");
        for method in ["get", "post", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            for token in [None, Some("not-the-token")] {
                let body = Body::from("{}");
                let (code, v) = a.send(&method.to_uppercase(), &concrete, token, body).await;
                assert_eq!(
                    code,
                    StatusCode::UNAUTHORIZED,
                    "{method} {path} {token:?}: {v}"
                );
                assert_eq!(v["error"]["status"], "UNAUTHENTICATED", "{method} {path}");
                assert_eq!(
                    v["error"]["message"], "missing or invalid bearer token",
                    "nothing else is said: {method} {path}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 30, "only {checked} operations checked");
}

/// Who may call what: every operation of `/openapi.json` × {no token, revoked, viewer,
/// modelUser, developer, admin, admin of another project, server admin}. The roles hold
/// project `default` (the project KServe and V2 address too), the other admin `other`.
/// Letters: v viewer, u modelUser, d developer, a admin, o the other project's admin (the
/// server admin may do everything; no token and a revoked one always get 401). README's
/// access table is this one.
const MATRIX: &[(&str, &str, &str)] = &[
    ("GET", "/metrics", ""),
    ("GET", "/openapi.json", "vudao"),
    ("GET", "/v1/tokens", ""),
    ("POST", "/v1/tokens", ""),
    ("DELETE", "/v1/tokens/{name}", ""),
    ("POST", "/v1/projects/{project}/jobs", "da"),
    ("GET", "/v1/projects/{project}/jobs", "vda"),
    ("GET", "/v1/projects/{project}/jobs/{job}", "vda"),
    ("POST", "/v1/projects/{project}/jobs/{job}:cancel", "da"),
    (
        "POST",
        "/v1/projects/{project}/jobs/{job}:testIamPermissions",
        "vudao",
    ),
    ("PATCH", "/v1/projects/{project}/jobs/{job}", "da"),
    ("GET", "/v1/projects/{project}/jobs/{job}/logs", "vda"),
    (
        "GET",
        "/v1/projects/{project}/jobs/{job}/logs/stream",
        "vda",
    ),
    ("GET", "/v1/projects/{project}/jobs/{job}/metrics", "vda"),
    ("GET", "/v1/principal", "vudao"),
    ("POST", "/v1/projects/{project}/models", "da"),
    ("GET", "/v1/projects/{project}/models", "vuda"),
    ("GET", "/v1/projects/{project}/models/{model}", "vuda"),
    ("DELETE", "/v1/projects/{project}/models/{model}", "a"),
    ("PATCH", "/v1/projects/{project}/models/{model}", "da"),
    (
        "POST",
        "/v1/projects/{project}/models/{model}:predict",
        "uda",
    ),
    (
        "POST",
        "/v1/projects/{project}/models/{model}:testIamPermissions",
        "vudao",
    ),
    (
        "POST",
        "/v1/projects/{project}/models/{model}/versions",
        "da",
    ),
    (
        "GET",
        "/v1/projects/{project}/models/{model}/versions",
        "vuda",
    ),
    (
        "GET",
        "/v1/projects/{project}/models/{model}/versions/{version}",
        "vuda",
    ),
    (
        "DELETE",
        "/v1/projects/{project}/models/{model}/versions/{version}",
        "a",
    ),
    (
        "PATCH",
        "/v1/projects/{project}/models/{model}/versions/{version}",
        "da",
    ),
    (
        "POST",
        "/v1/projects/{project}/models/{model}/versions/{version}:predict",
        "uda",
    ),
    (
        "POST",
        "/v1/projects/{project}/models/{model}/versions/{version}:setDefault",
        "a",
    ),
    ("GET", "/v1/projects/{project}/operations", "vda"),
    (
        "GET",
        "/v1/projects/{project}/operations/{operation}",
        "vda",
    ),
    ("GET", "/v1/models/{model}", "vuda"),
    ("POST", "/v1/models/{model}:predict", "uda"),
    ("GET", "/v2/models/{model}", "vuda"),
    ("GET", "/v2/models/{model}/ready", "vuda"),
    ("POST", "/v2/models/{model}/infer", "uda"),
    ("POST", "/v2/models/{model}/versions/{version}/infer", "uda"),
];

#[tokio::test]
async fn every_operation_answers_each_role_as_the_access_table_says() {
    let a = new_app(false).await;
    // The documented operations are exactly the table's (an action is a row of its own).
    let doc = mle_server::openapi::spec();
    let open = ["/healthz", "/v2/health/live", "/v2/health/ready"];
    let mut documented = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in ["get", "post", "patch", "delete"] {
            if item.get(m).is_some() && !open.contains(&path.as_str()) {
                documented.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    let tabled: std::collections::BTreeSet<(String, String)> = MATRIX
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.split(':').next().unwrap().to_string()))
        .collect();
    assert_eq!(documented, tabled, "every documented operation has a row");
    // The principals, made over REST by the server admin.
    let mut tokens = std::collections::BTreeMap::new();
    for (letter, role, project) in [
        ('v', "viewer", "default"),
        ('u', "modelUser", "default"),
        ('d', "developer", "default"),
        ('a', "admin", "default"),
        ('o', "admin", "other"),
        ('r', "admin", "default"),
    ] {
        let body = json!({"name": format!("t_{letter}"), "role": role, "projects": [project]});
        let (code, v) = a.call("POST", "/v1/tokens", Some(body)).await;
        assert_eq!(code, StatusCode::OK, "{v}");
        assert_eq!(v["role"], role);
        tokens.insert(letter, v["token"].as_str().unwrap().to_string());
    }
    let (code, _) = a.call("DELETE", "/v1/tokens/t_r", None).await;
    assert_eq!(code, StatusCode::OK);
    let revoked = tokens.remove(&'r').unwrap();
    let mut denied = 0;
    for (method, template, allowed) in MATRIX {
        let uri = template
            .replace("{project}", "default")
            .replace("{job}", "j")
            .replace("{model}", "m")
            .replace("{version}", "v")
            .replace("{operation}", "o")
            .replace("{name}", "t_zz");
        let body = || Body::from("{}");
        for t in [None, Some(revoked.as_str())] {
            let (code, v) = a.send(method, &uri, t, body()).await;
            assert_eq!(code, StatusCode::UNAUTHORIZED, "{method} {uri} {t:?}: {v}");
        }
        for (letter, token) in &tokens {
            let (code, v) = a.send(method, &uri, Some(token), body()).await;
            if allowed.contains(*letter) {
                assert!(
                    code != StatusCode::FORBIDDEN && code != StatusCode::UNAUTHORIZED,
                    "{letter} may {method} {uri}: {code} {v}"
                );
            } else {
                assert_eq!(
                    code,
                    StatusCode::FORBIDDEN,
                    "{letter} may not {method} {uri}: {v}"
                );
                assert_eq!(v["error"]["status"], "PERMISSION_DENIED", "{v}");
                // Nothing about the resource: the same answer whether it exists or not.
                let msg = v["error"]["message"].as_str().unwrap();
                assert!(!msg.contains("not found") && !msg.contains("'m'"), "{msg}");
                denied += 1;
            }
        }
        let (code, v) = a.call(method, &uri, Some(json!({}))).await;
        assert!(
            code != StatusCode::FORBIDDEN && code != StatusCode::UNAUTHORIZED,
            "the server admin may {method} {uri}: {code} {v}"
        );
    }
    assert!(denied > 60, "{denied} denials checked");
}

#[tokio::test]
async fn test_iam_permissions_answers_what_the_caller_holds_and_revoking_is_immediate() {
    let a = new_app(false).await;
    let (_, v) = a
        .call(
            "POST",
            "/v1/tokens",
            Some(json!({"name": "dev", "role": "developer", "projects": ["p"]})),
        )
        .await;
    let dev = v["token"].as_str().unwrap().to_string();
    let ask = json!({"permissions": ["ml.jobs.create", "ml.models.delete", "ml.models.predict",
                                     "ml.versions.setDefault", "no.such.permission"]})
    .to_string();
    let (code, v) = a
        .send(
            "POST",
            "/v1/projects/p/models/m:testIamPermissions",
            Some(&dev),
            Body::from(ask.clone()),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(
        v["permissions"],
        json!(["ml.jobs.create", "ml.models.predict"])
    );
    // In a project it does not hold: nothing.
    let (_, v) = a
        .send(
            "POST",
            "/v1/projects/q/jobs/j:testIamPermissions",
            Some(&dev),
            Body::from(ask),
        )
        .await;
    assert_eq!(v["permissions"], json!([]));
    // Bad token requests are 400s naming the field; a taken name is a 409.
    for (body, field) in [
        (
            json!({"name": "9x", "role": "admin", "projects": ["p"]}),
            "name",
        ),
        (
            json!({"name": "x", "role": "root", "projects": ["p"]}),
            "role",
        ),
        (
            json!({"name": "x", "role": "admin", "projects": []}),
            "projects",
        ),
        (
            json!({"name": "x", "role": "admin", "projects": ["a/b"]}),
            "projects",
        ),
    ] {
        let (code, v) = a.call("POST", "/v1/tokens", Some(body)).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(violation_field(&v), field, "{v}");
    }
    let (code, _) = a
        .call(
            "POST",
            "/v1/tokens",
            Some(json!({"name": "dev", "role": "viewer", "projects": ["p"]})),
        )
        .await;
    assert_eq!(code, StatusCode::CONFLICT);
    // The list shows names and roles, never a token or its hash.
    let (_, list) = a.call("GET", "/v1/tokens", None).await;
    assert_eq!(list["tokens"][0]["name"], "dev");
    assert!(!list.to_string().contains(&dev));
    let (code, _) = a
        .send("GET", "/v1/projects/p/jobs", Some(&dev), Body::empty())
        .await;
    assert_eq!(code, StatusCode::OK);
    a.call("DELETE", "/v1/tokens/dev", None).await;
    let (code, _) = a
        .send("GET", "/v1/projects/p/jobs", Some(&dev), Body::empty())
        .await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let (code, _) = a.call("DELETE", "/v1/tokens/dev", None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_requests_that_race_or_overflow_are_refused_cleanly() {
    let a = std::sync::Arc::new(new_app(false).await);
    // Twelve creates of one name at once: one token, eleven 409s.
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let a = a.clone();
            tokio::spawn(async move {
                let body = json!({"name": "same", "role": "viewer", "projects": ["p"]});
                a.call("POST", "/v1/tokens", Some(body)).await.0
            })
        })
        .collect();
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    assert_eq!(
        codes.iter().filter(|c| **c == StatusCode::OK).count(),
        1,
        "{codes:?}"
    );
    assert!(
        codes
            .iter()
            .all(|c| *c == StatusCode::OK || *c == StatusCode::CONFLICT)
    );
    let (_, list) = a.call("GET", "/v1/tokens", None).await;
    assert_eq!(list["tokens"].as_array().unwrap().len(), 1);
    // A body past the limit, a name far too long, a body that is not UTF-8, wrong types.
    let huge = json!({"name": "x".repeat(3 << 20), "role": "viewer", "projects": ["p"]});
    let (code, _) = a.call("POST", "/v1/tokens", Some(huge)).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let long = json!({"name": "x".repeat(200), "role": "viewer", "projects": ["p"]});
    let (code, v) = a.call("POST", "/v1/tokens", Some(long)).await;
    assert_eq!(
        (code, violation_field(&v)),
        (StatusCode::BAD_REQUEST, "name".into())
    );
    let (code, _) = a
        .send(
            "POST",
            "/v1/tokens",
            Some(TOKEN),
            Body::from(vec![0xff, 0xfe, b'{']),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let (code, _) = a
        .call(
            "POST",
            "/v1/tokens",
            Some(json!({"name": "t", "role": 7, "projects": "p"})),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    // A token in the Authorization header that is not even text is a 401, not a crash.
    let req = Request::builder()
        .uri("/v1/projects/p/jobs")
        .header(
            "Authorization",
            axum::http::HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap(),
        )
        .body(Body::empty())
        .unwrap();
    let resp = a.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_console_is_served_without_a_token_under_a_strict_policy() {
    let a = new_app(false).await;
    let get = |uri: &str| Request::builder().uri(uri).body(Body::empty()).unwrap();
    let r = a.router.clone().oneshot(get("/")).await.unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    assert_eq!(r.headers()["location"], "/console/");
    let r = a.router.clone().oneshot(get("/console/")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let r = a
        .router
        .clone()
        .oneshot(get("/console/js/main.js"))
        .await
        .unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    for bad in [
        "/console/../token",
        "/console/%2e%2e/token",
        "/console/js/nope.js",
    ] {
        let r = a.router.clone().oneshot(get(bad)).await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{bad}");
    }
}

#[tokio::test]
async fn the_console_api_answers_who_is_asking_and_refuses_bad_parameters() {
    let a = new_app(false).await;
    let (_, v) = a
        .call(
            "POST",
            "/v1/tokens",
            Some(json!({"name": "viewer", "role": "viewer", "projects": ["p", "q"]})),
        )
        .await;
    let viewer = v["token"].as_str().unwrap().to_string();
    let (code, me) = a
        .send("GET", "/v1/principal", Some(&viewer), Body::empty())
        .await;
    assert_eq!(code, StatusCode::OK, "{me}");
    assert_eq!(me["name"], "viewer");
    assert_eq!(me["role"], "viewer");
    assert_eq!(me["projects"][1]["projectId"], "q");
    let held = me["projects"][0]["permissions"].as_array().unwrap();
    assert!(held.contains(&json!("ml.jobs.get")) && !held.contains(&json!("ml.jobs.create")));
    // Jobs, newest first and oldest first, paged.
    for id in ["j1", "j2", "j3"] {
        let job =
            json!({"jobId": id, "trainingInput": {"masterConfig": {"containerCommand": ["true"]}}});
        let (code, v) = a.call("POST", "/v1/projects/p/jobs", Some(job)).await;
        assert_eq!(code, StatusCode::OK, "{v}");
    }
    let ids = |v: &Value| -> Vec<String> {
        v["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["jobId"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, v) = a
        .call(
            "GET",
            "/v1/projects/p/jobs?orderBy=createTime%20desc&pageSize=2",
            None,
        )
        .await;
    assert_eq!(ids(&v), ["j3", "j2"]);
    let next = v["nextPageToken"].as_str().unwrap();
    let (_, v) = a
        .call(
            "GET",
            &format!("/v1/projects/p/jobs?orderBy=createTime%20desc&pageSize=2&pageToken={next}"),
            None,
        )
        .await;
    assert_eq!(ids(&v), ["j1"]);
    let (_, v) = a
        .call("GET", "/v1/projects/p/jobs?orderBy=createTime", None)
        .await;
    assert_eq!(ids(&v), ["j1", "j2", "j3"]);
    // The server admin sees every project with a job.
    let (_, me) = a.call("GET", "/v1/principal", None).await;
    assert_eq!(me["role"], "serverAdmin");
    assert_eq!(me["projects"][0]["projectId"], "p");
    // Bad parameters are 400s naming the field; a job that is not there is a 404.
    for (uri, field) in [
        ("/v1/projects/p/jobs?orderBy=name", "order_by"),
        ("/v1/projects/p/jobs?orderBy=createTime%20up", "order_by"),
        ("/v1/projects/p/jobs/j1/metrics?trial=..%2F..", "trial"),
        ("/v1/projects/p/jobs/j1/metrics?trial=12345678901", "trial"),
        ("/v1/projects/p/jobs/j1/metrics?maxPoints=2", "max_points"),
        (
            "/v1/projects/p/jobs/j1/metrics?maxPoints=99999999999999999999",
            "max_points",
        ),
        ("/v1/projects/p/jobs/j1/metrics?maxPoints=NaN", "max_points"),
        ("/v1/projects/p/jobs/j1/logs?trial=a", "trial"),
        ("/v1/projects/p/jobs/j1/logs?trial=", "trial"),
        ("/v1/projects/p/jobs/j1/logs/stream?trial=-1", "trial"),
        (
            "/v1/projects/p/jobs/j1/logs/stream?pageToken=zz",
            "page_token",
        ),
    ] {
        let (code, v) = a.call("GET", uri, None).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{uri}: {v}");
        assert_eq!(
            v["error"]["details"][0]["fieldViolations"][0]["field"], field,
            "{uri}: {v}"
        );
    }
    let (code, _) = a
        .call("GET", "/v1/projects/p/jobs/nope/metrics", None)
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, _) = a
        .call("GET", "/v1/projects/p/jobs/nope/logs/stream", None)
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    // A job without a job dir has no series.
    let (code, v) = a.call("GET", "/v1/projects/p/jobs/j1/metrics", None).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(v["series"], json!([]));
}

#[tokio::test]
async fn log_streams_are_capped_and_a_closed_one_frees_its_place() {
    let a = new_app(false).await;
    let job =
        json!({"jobId": "q1", "trainingInput": {"masterConfig": {"containerCommand": ["true"]}}});
    let (code, v) = a.call("POST", "/v1/projects/p/jobs", Some(job)).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    let open = || {
        let req = Request::builder()
            .uri("/v1/projects/p/jobs/q1/logs/stream")
            .header("Authorization", format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap();
        a.router.clone().oneshot(req)
    };
    // The job stays QUEUED (no scheduler here), so every stream stays open while held.
    let mut held = Vec::new();
    for _ in 0..mle_server::MAX_STREAMS {
        let r = open().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        held.push(r);
    }
    let r = open().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // A client that goes away gives its place back (once its stream notices).
    drop(held.pop());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = open().await.unwrap();
        if r.status() == StatusCode::OK {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the place was never freed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
