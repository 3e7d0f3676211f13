//! Import of the original project's memory: `<session>_outcomes.jsonl` files (and their
//! rotated `.1` … `.5` copies), one JSON record per line. Bad lines are counted and skipped;
//! each line is imported once, however often the file is imported (the line's hash is its
//! key).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{Feedback, MAX_LIST, MAX_TEXT_CHARS, Outcome, workflow_hash};
use crate::session::store::SessionName;

/// Files larger than this are refused (the original rotated at 10 MB).
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// Most files one import reads from a folder.
pub const MAX_FILES: usize = 200;
const MAX_LINE_BYTES: u64 = 1024 * 1024;

/// The outcome files in `path`: the file itself, or the folder's `*_outcomes.jsonl[.N]`.
pub fn outcome_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
        .map(|entry| entry.path())
        .filter(|file| session_of_file(file).is_some())
        .collect();
    files.sort();
    files.truncate(MAX_FILES);
    Ok(files)
}

/// `portrait` for `portrait_outcomes.jsonl` or `portrait_outcomes.jsonl.3`.
pub fn session_of_file(file: &Path) -> Option<String> {
    let name = file.file_name()?.to_str()?;
    let stem = match name.rsplit_once(".jsonl") {
        Some((stem, "")) => stem,
        Some((stem, rotated))
            if rotated.len() == 2
                && rotated.starts_with('.')
                && rotated[1..].chars().all(|c| c.is_ascii_digit()) =>
        {
            stem
        }
        _ => return None,
    };
    stem.strip_suffix("_outcomes")
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// What reading one file found.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Each outcome with its line's key.
    pub outcomes: Vec<(Outcome, String)>,
    pub malformed: usize,
    /// The first few problems, for the report.
    pub problems: Vec<String>,
}

/// Reads one outcome file. `fallback_session` is used for records without a usable one.
pub fn parse_file(file: &Path, fallback_session: &str) -> std::io::Result<Parsed> {
    let size = std::fs::metadata(file)?.len();
    if size > MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "it is {size} bytes, more than the {MAX_FILE_BYTES}-byte limit for one file"
        )));
    }
    let mut parsed = Parsed::default();
    let mut reader = BufReader::new(std::fs::File::open(file)?);
    let mut line = Vec::new();
    let mut number = 0usize;
    loop {
        line.clear();
        let read = (&mut reader)
            .take(MAX_LINE_BYTES)
            .read_until(b'\n', &mut line)?;
        if read == 0 {
            break;
        }
        number += 1;
        let mut problem = |reason: String| {
            parsed.malformed += 1;
            if parsed.problems.len() < 10 {
                parsed.problems.push(format!("line {number}: {reason}"));
            }
        };
        if line.last() != Some(&b'\n') && read as u64 >= MAX_LINE_BYTES {
            problem("longer than 1 MiB".into());
            // Skip the rest of the overlong line.
            let mut rest = Vec::new();
            reader.read_until(b'\n', &mut rest)?;
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        match record(text, fallback_session) {
            Ok(outcome) => {
                let key: String = Sha256::digest(text.as_bytes())
                    .iter()
                    .take(16)
                    .map(|b| format!("{b:02x}"))
                    .collect();
                parsed.outcomes.push((outcome, key));
            }
            Err(reason) => problem(reason),
        }
    }
    Ok(parsed)
}

fn text(map: &Map<String, Value>, key: &str) -> Option<String> {
    map.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.chars().take(MAX_TEXT_CHARS).collect())
}

fn strings(map: &Map<String, Value>, key: &str) -> Vec<String> {
    map.get(key)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .take(MAX_LIST)
                .map(|s| s.chars().take(MAX_TEXT_CHARS).collect())
                .collect()
        })
        .unwrap_or_default()
}

/// One record of the original's format (v1, or v0 without `schema_version`).
fn record(line: &str, fallback_session: &str) -> Result<Outcome, String> {
    let value: Value = serde_json::from_str(line).map_err(|error| format!("not JSON ({error})"))?;
    let Value::Object(map) = value else {
        return Err("not a JSON object".into());
    };
    if let Some(version) = map.get("schema_version").and_then(Value::as_u64)
        && version > 1
    {
        return Err(format!(
            "schema_version {version} is newer than this importer knows"
        ));
    }
    let ts = match map.get("timestamp") {
        Some(Value::Number(n)) => n.as_f64().ok_or("the timestamp is not a number")?,
        Some(Value::String(s)) => {
            parse_time(s).ok_or_else(|| format!("the timestamp {s:?} is not a date and time"))?
        }
        _ => return Err("no timestamp".into()),
    };
    let key_params = match map.get("key_params") {
        Some(Value::Object(params)) => params.clone(),
        None | Some(Value::Null) => Map::new(),
        Some(_) => return Err("key_params is not an object".into()),
    };
    let session = text(&map, "session")
        .filter(|s| SessionName::parse(s).is_ok())
        .unwrap_or_else(|| fallback_session.to_string());
    let number = |key: &str| {
        map.get(key)
            .and_then(Value::as_f64)
            .filter(|v| v.is_finite())
    };
    Ok(Outcome {
        session,
        ts,
        workflow_summary: text(&map, "workflow_summary"),
        workflow_hash: workflow_hash(&key_params),
        key_params,
        model_combo: strings(&map, "model_combo"),
        render_time_s: number("render_time_s").filter(|t| *t >= 0.0),
        quality_score: number("quality_score").map(|q| q.clamp(0.0, 1.0)),
        vision_notes: strings(&map, "vision_notes"),
        user_feedback: map
            .get("user_feedback")
            .and_then(Value::as_str)
            .and_then(Feedback::parse)
            .unwrap_or(Feedback::Neutral),
        goal_id: text(&map, "goal_id"),
    })
}

/// Seconds since 1970 for `2025-01-02T03:04:05`, with optional fraction and `Z` or `±hh:mm`
/// (no offset: taken as UTC).
pub fn parse_time(text: &str) -> Option<f64> {
    let text = text.trim();
    let (date, rest) = text.split_once(['T', ' '])?;
    let mut parts = date.splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let (clock, offset) = match rest.find(['Z', 'z', '+']).or_else(|| rest.rfind('-')) {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, ""),
    };
    let mut hms = clock.splitn(3, ':');
    let hour: f64 = hms.next()?.parse().ok()?;
    let minute: f64 = hms.next()?.parse().ok()?;
    let second: f64 = hms.next().map_or(Some(0.0), |s| s.parse().ok())?;
    let offset_s = match offset {
        "" | "Z" | "z" => 0.0,
        signed => {
            let sign = if signed.starts_with('-') { -1.0 } else { 1.0 };
            let (h, m) = signed[1..].split_once(':').unwrap_or((&signed[1..], "0"));
            sign * (h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0)
        }
    };
    // Days from the civil date (proleptic Gregorian).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + hour * 3600.0 + minute * 60.0 + second - offset_s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_with_and_without_zones() {
        assert_eq!(parse_time("1970-01-01T00:00:00"), Some(0.0));
        assert_eq!(parse_time("2025-01-02T03:04:05Z"), Some(1_735_787_045.0));
        assert_eq!(
            parse_time("2025-01-02T04:04:05+01:00"),
            Some(1_735_787_045.0)
        );
        assert_eq!(parse_time("2025-01-02 03:04:05.5"), Some(1_735_787_045.5));
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_time("2025-13-02T03:04:05"), None);
    }

    #[test]
    fn files_name_their_session() {
        assert_eq!(
            session_of_file(Path::new("a/portrait_outcomes.jsonl")).as_deref(),
            Some("portrait")
        );
        assert_eq!(
            session_of_file(Path::new("default_outcomes.jsonl.3")).as_deref(),
            Some("default")
        );
        assert_eq!(session_of_file(Path::new("portrait_goals.json")), None);
        assert_eq!(session_of_file(Path::new("_outcomes.jsonl")), None);
    }

    #[test]
    fn records_are_read_and_bad_lines_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("studio_outcomes.jsonl");
        std::fs::write(
            &file,
            concat!(
                r#"{"schema_version": 1, "timestamp": 1735787045.0, "session": "studio", "key_params": {"cfg": 7}, "model_combo": ["sdxl.safetensors"], "quality_score": 0.8, "user_feedback": "positive", "workflow_hash": "ignored"}"#, "\n",
                r#"{"timestamp": "2025-01-02T03:04:05", "key_params": {"steps": 20}, "render_time_s": 9.5}"#, "\n",
                "not json\n",
                r#"{"key_params": {}}"#, "\n",
                "\n",
                r#"{"schema_version": 1, "timestamp": 5, "session": "../x", "quality_score": 7}"#, "\n",
            ),
        )
        .expect("write");
        let parsed = parse_file(&file, "studio").expect("parsed");
        assert_eq!(parsed.outcomes.len(), 3);
        assert_eq!(parsed.malformed, 2);
        assert!(
            parsed.problems[0].starts_with("line 3"),
            "{:?}",
            parsed.problems
        );
        let first = &parsed.outcomes[0].0;
        assert_eq!(first.user_feedback, Feedback::Positive);
        assert_ne!(first.workflow_hash, "ignored");
        assert_eq!(parsed.outcomes[1].0.ts, 1_735_787_045.0);
        // An unusable session name falls back to the file's; scores are clamped.
        assert_eq!(parsed.outcomes[2].0.session, "studio");
        assert_eq!(parsed.outcomes[2].0.quality_score, Some(1.0));
        // Each line has its own key, and the same line the same key.
        let again = parse_file(&file, "studio").expect("parsed");
        assert_eq!(parsed.outcomes[0].1, again.outcomes[0].1);
        assert_ne!(parsed.outcomes[0].1, parsed.outcomes[1].1);
    }
}
