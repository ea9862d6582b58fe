//! Prediction instances in the forms CMLE accepts: a list of numbers in signature order, an
//! object of named features, or a CSV text line.

use serde_json::Value;

use crate::{ServeError, Signature};

fn finite(v: f64, what: &dyn Fn() -> String) -> Result<f32, String> {
    let x = v as f32;
    if x.is_finite() {
        Ok(x)
    } else {
        Err(format!("{} is not a finite number", what()))
    }
}

/// One CSV text line as a row of `width` numbers.
pub fn parse_csv_line(line: &str, width: usize) -> Result<Vec<f32>, String> {
    let fields: Vec<&str> = line.trim().split(',').map(str::trim).collect();
    if fields.len() != width {
        return Err(format!(
            "has {} comma-separated values, the model reads {width}",
            fields.len()
        ));
    }
    fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let v: f64 = f
                .parse()
                .map_err(|_| format!("value {} ('{f}') is not a number", i + 1))?;
            finite(v, &|| format!("value {}", i + 1))
        })
        .collect()
}

/// One JSON instance as a row, for a model reading the features `names`.
pub fn parse_instance(v: &Value, names: &[String]) -> Result<Vec<f32>, String> {
    let width = names.len();
    match v {
        Value::Array(items) => {
            if items.len() != width {
                return Err(format!(
                    "has {} values, the model reads {width} ({})",
                    items.len(),
                    names.join(", ")
                ));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, x)| match x.as_f64() {
                    Some(f) => finite(f, &|| format!("value {}", i + 1)),
                    None => Err(format!("value {} is not a number: {x}", i + 1)),
                })
                .collect()
        }
        Value::Object(map) => {
            if let Some(extra) = map.keys().find(|k| !names.contains(k)) {
                return Err(format!(
                    "unknown feature '{extra}' (the model reads: {})",
                    names.join(", ")
                ));
            }
            names
                .iter()
                .map(|n| {
                    let x = map
                        .get(n)
                        .ok_or_else(|| format!("feature '{n}' is missing"))?;
                    match x.as_f64() {
                        Some(f) => finite(f, &|| format!("feature '{n}'")),
                        None => Err(format!("feature '{n}' is not a number: {x}")),
                    }
                })
                .collect()
        }
        Value::String(line) => parse_csv_line(line, width),
        other => Err(format!(
            "an instance is a list of numbers, an object of features or a CSV line, got {other}"
        )),
    }
}

/// Every instance of a request's `instances` array, flattened row-major.
pub fn parse_instances(instances: &Value, sig: &Signature) -> Result<Vec<f32>, ServeError> {
    let items = instances
        .as_array()
        .ok_or_else(|| ServeError::BadInput("'instances' must be a list".into()))?;
    if items.is_empty() {
        return Err(ServeError::BadInput("'instances' is empty".into()));
    }
    let mut rows = Vec::with_capacity(items.len() * sig.inputs.len());
    for (i, item) in items.iter().enumerate() {
        let row = parse_instance(item, &sig.inputs)
            .map_err(|e| ServeError::BadInput(format!("instance {i}: {e}")))?;
        rows.extend(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names() -> Vec<String> {
        ["a", "b"].map(String::from).to_vec()
    }

    #[test]
    fn the_three_instance_forms_parse_alike() {
        let n = names();
        assert_eq!(parse_instance(&json!([1, 2.5]), &n), Ok(vec![1.0, 2.5]));
        assert_eq!(
            parse_instance(&json!({"b": 2.5, "a": 1}), &n),
            Ok(vec![1.0, 2.5])
        );
        assert_eq!(parse_instance(&json!(" 1, 2.5 "), &n), Ok(vec![1.0, 2.5]));
    }

    #[test]
    fn bad_instances_say_what_is_wrong() {
        let n = names();
        let err = |v: Value| parse_instance(&v, &n).unwrap_err();
        assert!(err(json!([1])).contains("has 1 values, the model reads 2 (a, b)"));
        assert!(err(json!([1, "x"])).contains("value 2 is not a number"));
        assert!(err(json!({"a": 1})).contains("feature 'b' is missing"));
        assert!(err(json!({"a": 1, "b": 2, "c": 3})).contains("unknown feature 'c'"));
        assert!(err(json!("1,NaN")).contains("value 2 is not a finite number"));
        assert!(err(json!("1,x")).contains("value 2 ('x') is not a number"));
        assert!(err(json!([1, 1e300])).contains("not a finite number"));
        assert!(err(json!(true)).contains("an instance is"));
    }
}
