//! The memory of outcomes: what was rendered, with which models and parameters, how long it
//! took and how it was judged. Recorded only when a caller asks (`record_outcome`), kept in
//! one SQLite database shared by every session and process, and read back as time-decayed
//! statistics (7-day half-life) for a session or for everyone.

pub mod import;
pub mod stats;
pub mod store;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Half-life of an outcome's weight in the statistics.
pub const HALF_LIFE_DAYS: f64 = 7.0;
/// No outcome weighs less than this, however old.
pub const MIN_WEIGHT: f64 = 0.01;
/// Longest summary, note or goal id, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;
/// Most models in a combination, and most vision notes.
pub const MAX_LIST: usize = 32;
/// Largest `key_params`, as JSON.
pub const MAX_PARAMS_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Feedback {
    Positive,
    Negative,
    Neutral,
}

impl Feedback {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Positive => "positive",
            Self::Negative => "negative",
            Self::Neutral => "neutral",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "positive" => Some(Self::Positive),
            "negative" => Some(Self::Negative),
            "neutral" => Some(Self::Neutral),
            _ => None,
        }
    }
}

/// One outcome, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub session: String,
    /// Seconds since 1970 (UTC).
    pub ts: f64,
    pub workflow_summary: Option<String>,
    pub workflow_hash: String,
    pub key_params: Map<String, Value>,
    pub model_combo: Vec<String>,
    pub render_time_s: Option<f64>,
    pub quality_score: Option<f64>,
    pub vision_notes: Vec<String>,
    pub user_feedback: Feedback,
    pub goal_id: Option<String>,
}

/// The first 16 hex digits of the SHA-256 of `key_params` written as Python's
/// `json.dumps(key_params, sort_keys=True)` writes it, so a hash matches the one the original
/// project recorded for the same parameters, whatever their order.
pub fn workflow_hash(key_params: &Map<String, Value>) -> String {
    let mut text = String::new();
    python_json(&Value::Object(key_params.clone()), &mut text);
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Python's default JSON: sorted keys, `", "` and `": "` between items, non-ASCII escaped
/// as UTF-16 `\uXXXX`.
fn python_json(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_string(key, out);
                out.push_str(": ");
                python_json(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_json(item, out);
            }
            out.push(']');
        }
        Value::String(text) => python_string(text, out),
        other => out.push_str(&other.to_string()),
    }
}

fn python_string(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// The weight of an outcome `age_s` seconds old: 1 when new, ½ at the half-life, never
/// below [`MIN_WEIGHT`]. Outcomes from the future (clock changes) weigh 1.
pub fn decay_weight(age_s: f64) -> f64 {
    let days = (age_s / 86_400.0).max(0.0);
    (0.5f64).powf(days / HALF_LIFE_DAYS).max(MIN_WEIGHT)
}

/// The models of a combination as one key: sorted, joined with ` + `.
pub fn combo_key(models: &[String]) -> String {
    let mut models: Vec<&str> = models
        .iter()
        .map(|m| m.trim())
        .filter(|m| !m.is_empty())
        .collect();
    models.sort_unstable();
    models.dedup();
    models.join(" + ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_hash_is_the_original_projects() {
        // Both computed with Python: sha256(json.dumps(v, sort_keys=True))[:16].
        let simple = json!({"steps": 20, "cfg": 7})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert_eq!(workflow_hash(&simple), "b3236c12d94a9501");
        let rich = json!({"prompt": "caf\u{e9} \u{1f305} \"q\"\n", "cfg": 6.5,
                          "nested": {"b": [1, 2.0, null, true], "a": "x"}, "steps": 20});
        let rich = rich.as_object().cloned().unwrap_or_default();
        let mut text = String::new();
        python_json(&Value::Object(rich.clone()), &mut text);
        assert_eq!(
            text,
            r#"{"cfg": 6.5, "nested": {"a": "x", "b": [1, 2.0, null, true]}, "prompt": "caf\u00e9 \ud83c\udf05 \"q\"\n", "steps": 20}"#
        );
        assert_eq!(workflow_hash(&rich), "730f32f05093908d");
    }

    #[test]
    fn the_hash_ignores_key_order_and_is_16_hex() {
        let a = json!({"cfg": 7, "steps": 30, "nested": {"b": 1, "a": 2}});
        let b = json!({"nested": {"a": 2, "b": 1}, "steps": 30, "cfg": 7});
        let (a, b) = (
            a.as_object().cloned().unwrap_or_default(),
            b.as_object().cloned().unwrap_or_default(),
        );
        assert_eq!(workflow_hash(&a), workflow_hash(&b));
        assert_eq!(workflow_hash(&a).len(), 16);
        let c = json!({"cfg": 8}).as_object().cloned().unwrap_or_default();
        assert_ne!(workflow_hash(&a), workflow_hash(&c));
    }

    #[test]
    fn decay_is_one_new_half_at_the_half_life_and_floored() {
        assert!((decay_weight(0.0) - 1.0).abs() < 1e-12);
        assert!((decay_weight(7.0 * 86_400.0) - 0.5).abs() < 1e-12);
        assert!((decay_weight(14.0 * 86_400.0) - 0.25).abs() < 1e-12);
        assert!((decay_weight(400.0 * 86_400.0) - MIN_WEIGHT).abs() < 1e-12);
        assert!((decay_weight(-50.0) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn combo_keys_are_order_free() {
        let a = combo_key(&["vae.safetensors".into(), "sdxl.safetensors".into()]);
        let b = combo_key(&[
            "sdxl.safetensors".into(),
            " vae.safetensors ".into(),
            "".into(),
        ]);
        assert_eq!(a, b);
        assert_eq!(a, "sdxl.safetensors + vae.safetensors");
    }
}
