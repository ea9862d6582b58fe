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
        data_dir: dir.path().to_path_buf(),
        slots: 4,
        mle_exe: "/bin/false".into(),
        python: "python3".into(),
        allow_root: allow_root.then(|| dir.path().canonicalize().unwrap()),
        backend: mle_exec::Backend::Local {
            mle_exe: "/bin/false".into(),
        },
        limits: Default::default(),
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
        ("gs://bucket/dir", "file://"),
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
