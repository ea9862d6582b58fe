//! Serving an mle export through tract gives the trainer's own predictions (an independent
//! path: burn's forward pass vs the exported ONNX graph run by tract).

use mle_nn::export::{Bundle, Normalization};
use mle_nn::{Activation, Loss, Model, Sequential};
use mle_predict::{BatchOptions, Batcher, Format, Output, Servable, parse_instances};
use serde_json::json;

fn export(dir: &std::path::Path, classify: bool) -> Bundle {
    let b = Sequential::builder("m", 3)
        .dense(8, Activation::Relu)
        .dense(
            if classify { 3 } else { 1 },
            if classify {
                Activation::Softmax
            } else {
                Activation::Linear
            },
        );
    let model = if classify {
        b.classification(Loss::SparseCategoricalCrossentropy, &["a", "b", "c"])
    } else {
        b.regression(Loss::Mse)
    }
    .unwrap();
    let params = model.init_params(7);
    let names: Vec<String> = ["f1", "f2", "f3"].map(String::from).to_vec();
    let norm = Normalization {
        mean: vec![1.0, -2.0, 0.5],
        std: vec![2.0, 0.5, 1.5],
    };
    mle_nn::export::write(dir, &model, &params, &names, Some(norm), 10).unwrap();
    Bundle::load(dir).unwrap()
}

#[test]
fn mle_bundles_serve_the_trainers_predictions() {
    for classify in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("export");
        let bundle = export(&dir, classify);
        let s = Servable::load(&dir).unwrap();
        assert_eq!(s.signature.format, Format::Mle);
        assert_eq!(s.signature.inputs, ["f1", "f2", "f3"]);
        let rows = vec![
            vec![0.3f32, -1.0, 2.0],
            vec![4.0, 0.0, -3.5],
            vec![-2.0, 1.5, 0.25],
        ];
        let want = bundle.predict(&rows).unwrap();
        let flat: Vec<f32> = rows.concat();
        // Three independent paths agree: burn's forward pass, the MLP interpreter on the
        // exported graph, and tract on the same graph.
        assert_eq!(s.engine(), "mlp");
        let got = s.predict(&flat, 3).unwrap();
        let tract = s.predict_with_tract(&flat, 3).unwrap();
        assert_eq!(got.len(), want.concat().len());
        for ((w, g), t) in want.concat().iter().zip(&got).zip(&tract) {
            assert!((w - g).abs() < 1e-5, "{w} vs {g}");
            assert!((t - g).abs() < 1e-5, "{t} vs {g}");
        }
        // The directly written response is the same document as the per-row values.
        let doc: serde_json::Value =
            serde_json::from_str(&s.signature.predictions_json(&got)).unwrap();
        let rows: Vec<serde_json::Value> = got
            .chunks(s.signature.width)
            .map(|r| s.signature.format(r))
            .collect();
        assert_eq!(doc, json!({"predictions": rows}));
        let first = s.signature.format(&got[..s.signature.width]);
        if classify {
            assert_eq!(
                s.signature.output,
                Output::Classification {
                    classes: vec!["a".into(), "b".into(), "c".into()]
                }
            );
            assert_eq!(first["classes"], json!(["a", "b", "c"]));
            let total: f64 = first["scores"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .sum();
            assert!((total - 1.0).abs() < 1e-5);
        } else {
            assert!(first.is_number());
        }
        // Named features, lists and CSV lines give the same rows.
        let parsed = parse_instances(
            &json!([[0.3, -1.0, 2.0], {"f1": 4.0, "f2": 0.0, "f3": -3.5}, "-2,1.5,0.25"]),
            &s.signature,
        )
        .unwrap();
        assert_eq!(parsed, flat);
    }
}

#[test]
fn directories_without_a_model_are_refused_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let err = Servable::load(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("neither an mle export"), "{err}");
    std::fs::write(tmp.path().join("model.onnx"), b"not a model").unwrap();
    let err = Servable::load(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("cannot parse model.onnx"), "{err}");
}

#[tokio::test]
async fn concurrent_requests_are_batched_without_mixing_results() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("export");
    let bundle = export(&dir, false);
    let b = std::sync::Arc::new(Batcher::new(
        Servable::load(&dir).unwrap(),
        BatchOptions {
            max_batch: 64,
            max_wait: std::time::Duration::from_millis(2),
            min_call_cost: std::time::Duration::ZERO,
        },
    ));
    assert!(b.batching());
    let mut tasks = Vec::new();
    for i in 0..40 {
        let b = b.clone();
        tasks.push(tokio::spawn(async move {
            let row = vec![i as f32 * 0.1, -(i as f32), 1.0];
            (row.clone(), b.predict(row, 1).await.unwrap())
        }));
    }
    for t in tasks {
        let (row, got) = t.await.unwrap();
        let want = bundle.predict(&[row]).unwrap();
        assert!((want[0][0] - got[0]).abs() < 1e-5);
    }
    // With the default threshold this 1 µs model runs inline.
    let inline = Batcher::new(Servable::load(&dir).unwrap(), BatchOptions::default());
    assert!(!inline.batching());
}
