//! The outcome database: SQLite in WAL mode with full synchronous commits, so a record that
//! was acknowledged survives a crash or power loss, and several server processes (two
//! Claude Desktop windows, a CLI) can write at once. Reads go through a compact in-memory
//! copy that catches up with new rows (from this process or another) by id before each
//! query, so statistics over 100,000 outcomes take milliseconds.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde_json::{Map, Value};

use super::{Feedback, Outcome, combo_key};
use crate::session::store::compact_utc;

/// The schema this build writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;
const FILE_NAME: &str = "outcomes.sqlite3";

/// How much the memory keeps before the oldest outcomes are dropped.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub per_session: usize,
    pub total: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_session: 100_000,
            total: 250_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutcomeError {
    #[error("The outcome memory at {path} can't be opened: {reason}")]
    Open { path: String, reason: String },
    #[error(
        "The outcome memory at {path} was written by a newer comfyui-agent (schema {version}), which this one can't read"
    )]
    NewerFormat { path: String, version: i64 },
    #[error("The outcome memory could not be {action}: {reason}")]
    Database {
        action: &'static str,
        reason: String,
    },
}

impl OutcomeError {
    pub fn hint(&self) -> &'static str {
        match self {
            Self::Open { .. } => {
                "Check that the data folder (COMFYUI_AGENT_DATA_DIR) exists, is writable and has free space."
            }
            Self::NewerFormat { .. } => "Update comfyui-agent; the file was left untouched.",
            Self::Database { .. } => {
                "Try again; if it keeps failing, check the data folder's free space and permissions (COMFYUI_AGENT_DATA_DIR)."
            }
        }
    }
}

impl From<OutcomeError> for crate::error::ToolError {
    fn from(error: OutcomeError) -> Self {
        Self::rejected(error.to_string(), error.hint())
    }
}

fn db(action: &'static str) -> impl Fn(rusqlite::Error) -> OutcomeError {
    move |error| OutcomeError::Database {
        action,
        reason: error.to_string(),
    }
}

/// A scalar parameter, as the statistics compare them.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Num(f64),
    Text(Arc<str>),
}

/// One outcome as the statistics see it: compact, strings shared.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: i64,
    pub session: Arc<str>,
    pub ts: f64,
    /// The model combination's key (`a + b`), empty when none was given.
    pub combo: Arc<str>,
    pub hash: Arc<str>,
    pub quality: Option<f64>,
    pub render_time: Option<f64>,
    pub feedback: Feedback,
    pub params: Vec<(Arc<str>, Param)>,
    pub summary: Option<Arc<str>>,
}

/// What a record reports back.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub id: i64,
    pub session_total: usize,
    pub total: usize,
    /// A damaged database found on the way, moved aside under this name.
    pub set_aside: Option<String>,
}

#[derive(Debug, Default)]
struct Interner(HashMap<Arc<str>, ()>);

impl Interner {
    fn get(&mut self, text: &str) -> Arc<str> {
        if let Some((key, ())) = self.0.get_key_value(text) {
            return Arc::clone(key);
        }
        let key: Arc<str> = Arc::from(text);
        self.0.insert(Arc::clone(&key), ());
        key
    }
}

#[derive(Debug, Default)]
struct Cache {
    rows: Vec<Row>,
    last_id: i64,
    prune_generation: i64,
    per_session: HashMap<Arc<str>, usize>,
    strings: Interner,
}

#[derive(Debug)]
struct Open {
    conn: Connection,
    cache: Cache,
    set_aside: Option<String>,
}

/// The database and its in-memory copy. One per server (on `AppState`).
#[derive(Debug)]
pub struct OutcomeStore {
    path: PathBuf,
    limits: Limits,
    inner: Mutex<Option<Open>>,
}

impl OutcomeStore {
    /// The store at `<data_dir>/memory/outcomes.sqlite3`, opened on first use.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self::at(data_dir.join("memory").join(FILE_NAME), Limits::default())
    }

    pub fn at(path: PathBuf, limits: Limits) -> Self {
        Self {
            path,
            limits,
            inner: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the open store, opening it first if needed.
    fn with<R>(
        &self,
        f: impl FnOnce(&mut Open) -> Result<R, OutcomeError>,
    ) -> Result<R, OutcomeError> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(open(&self.path)?);
        }
        match guard.as_mut() {
            Some(open) => f(open),
            None => Err(OutcomeError::Open {
                path: self.path.display().to_string(),
                reason: "it could not be opened".into(),
            }),
        }
    }

    /// Records one outcome durably (committed and synced before this returns), then drops
    /// the oldest outcomes past the limits.
    pub fn record(&self, outcome: &Outcome) -> Result<Recorded, OutcomeError> {
        self.with(|open| {
            let id = insert(&open.conn, outcome, "tool", None)?.unwrap_or_default();
            refresh(open)?;
            prune(open, &self.limits, &outcome.session)?;
            let session_total = open
                .cache
                .per_session
                .get(outcome.session.as_str())
                .copied()
                .unwrap_or_default();
            Ok(Recorded {
                id,
                session_total,
                total: open.cache.rows.len(),
                set_aside: open.set_aside.take(),
            })
        })
    }

    /// Records many outcomes in one transaction, skipping those whose `dedupe` key is
    /// already stored. Returns how many were added.
    pub fn import(
        &self,
        outcomes: &[(Outcome, String)],
        source: &str,
    ) -> Result<usize, OutcomeError> {
        self.with(|open| {
            let tx = open.conn.transaction().map_err(db("imported"))?;
            let mut added = 0;
            for (outcome, dedupe) in outcomes {
                if insert(&tx, outcome, source, Some(dedupe))?.is_some() {
                    added += 1;
                }
            }
            tx.commit().map_err(db("imported"))?;
            refresh(open)?;
            Ok(added)
        })
    }

    /// Runs `f` over every stored outcome (all sessions, oldest id first), brought up to
    /// date with what any process has committed.
    pub fn read<R>(&self, f: impl FnOnce(&[Row]) -> R) -> Result<R, OutcomeError> {
        self.with(|open| {
            refresh(open)?;
            Ok(f(&open.cache.rows))
        })
    }

    /// A damaged database moved aside when the store was opened, if any (reported once).
    pub fn take_set_aside(&self) -> Option<String> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_mut().and_then(|open| open.set_aside.take())
    }
}

fn open(path: &Path) -> Result<Open, OutcomeError> {
    let failed = |reason: String| OutcomeError::Open {
        path: path.display().to_string(),
        reason,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|error| failed(error.to_string()))?;
    }
    match connect(path) {
        Ok(conn) => Ok(Open {
            conn,
            cache: Cache::default(),
            set_aside: None,
        }),
        Err(Connect::Newer(version)) => Err(OutcomeError::NewerFormat {
            path: path.display().to_string(),
            version,
        }),
        Err(Connect::Failed(reason)) => Err(failed(reason)),
        Err(Connect::Damaged(reason)) => {
            let moved = set_aside(path)
                .map_err(|error| failed(format!("{reason}; moving it aside failed: {error}")))?;
            tracing::warn!(path = %path.display(), %reason, set_aside = %moved, "the outcome memory was damaged and was moved aside");
            let conn = connect(path).map_err(|error| match error {
                Connect::Newer(version) => OutcomeError::NewerFormat {
                    path: path.display().to_string(),
                    version,
                },
                Connect::Failed(reason) | Connect::Damaged(reason) => failed(reason),
            })?;
            Ok(Open {
                conn,
                cache: Cache::default(),
                set_aside: Some(moved),
            })
        }
    }
}

enum Connect {
    Newer(i64),
    Damaged(String),
    Failed(String),
}

fn is_damage(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
    )
}

fn connect(path: &Path) -> Result<Connection, Connect> {
    let classify = |error: rusqlite::Error| {
        if is_damage(&error) {
            Connect::Damaged(error.to_string())
        } else {
            Connect::Failed(error.to_string())
        }
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(classify)?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(classify)?;
    // WAL lets readers and one writer work at once across processes; FULL syncs the log on
    // every commit, so an acknowledged record survives power loss.
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
        .map_err(classify)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(classify)?;
    if version > SCHEMA_VERSION {
        return Err(Connect::Newer(version));
    }
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |row| row.get(0))
        .map_err(classify)?;
    if check != "ok" {
        return Err(Connect::Damaged(check));
    }
    if version < SCHEMA_VERSION {
        conn.execute_batch(
            "BEGIN IMMEDIATE;
             CREATE TABLE IF NOT EXISTS outcomes (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 session TEXT NOT NULL,
                 ts REAL NOT NULL,
                 workflow_summary TEXT,
                 workflow_hash TEXT NOT NULL,
                 key_params TEXT NOT NULL,
                 model_combo TEXT NOT NULL,
                 render_time_s REAL,
                 quality_score REAL,
                 vision_notes TEXT NOT NULL,
                 user_feedback TEXT NOT NULL,
                 goal_id TEXT,
                 source TEXT NOT NULL,
                 dedupe TEXT UNIQUE
             );
             CREATE INDEX IF NOT EXISTS outcomes_by_session ON outcomes (session, ts);
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
             INSERT OR IGNORE INTO meta (key, value) VALUES ('prune_generation', 0);
             PRAGMA user_version = 1;
             COMMIT;",
        )
        .map_err(classify)?;
    }
    Ok(conn)
}

/// Moves the database (and its WAL and shared-memory files) to `<name>.corrupt-<time>`.
fn set_aside(path: &Path) -> std::io::Result<String> {
    let stamp = compact_utc(SystemTime::now());
    let name = format!("{FILE_NAME}.corrupt-{stamp}");
    let target = path.with_file_name(&name);
    std::fs::rename(path, &target)?;
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", path.display()));
        if side.exists() {
            let _ = std::fs::rename(
                &side,
                PathBuf::from(format!("{}{suffix}", target.display())),
            );
        }
    }
    Ok(name)
}

/// Inserts one outcome; `None` when its dedupe key was already stored.
fn insert(
    conn: &Connection,
    outcome: &Outcome,
    source: &str,
    dedupe: Option<&str>,
) -> Result<Option<i64>, OutcomeError> {
    let mut statement = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO outcomes (session, ts, workflow_summary, workflow_hash,
                 key_params, model_combo, render_time_s, quality_score, vision_notes,
                 user_feedback, goal_id, source, dedupe)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )
        .map_err(db("recorded"))?;
    let changed = statement
        .execute(params![
            outcome.session,
            outcome.ts,
            outcome.workflow_summary,
            outcome.workflow_hash,
            Value::Object(outcome.key_params.clone()).to_string(),
            Value::from(outcome.model_combo.clone()).to_string(),
            outcome.render_time_s,
            outcome.quality_score,
            Value::from(outcome.vision_notes.clone()).to_string(),
            outcome.user_feedback.as_str(),
            outcome.goal_id,
            source,
            dedupe,
        ])
        .map_err(db("recorded"))?;
    Ok((changed > 0).then(|| conn.last_insert_rowid()))
}

/// Brings the in-memory copy up to date: new rows by id, and a full reload when any process
/// has pruned since (pruning bumps `prune_generation`).
fn refresh(open: &mut Open) -> Result<(), OutcomeError> {
    let generation: i64 = open
        .conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'prune_generation'",
            [],
            |row| row.get(0),
        )
        .optional()
        .map_err(db("read"))?
        .unwrap_or_default();
    if generation != open.cache.prune_generation {
        let strings = std::mem::take(&mut open.cache.strings);
        open.cache = Cache {
            strings,
            prune_generation: generation,
            ..Cache::default()
        };
    }
    let mut statement = open
        .conn
        .prepare_cached(
            "SELECT id, session, ts, workflow_hash, key_params, model_combo, render_time_s,
                    quality_score, user_feedback, workflow_summary
             FROM outcomes WHERE id > ?1 ORDER BY id",
        )
        .map_err(db("read"))?;
    let cache = &mut open.cache;
    let mut rows = statement.query([cache.last_id]).map_err(db("read"))?;
    while let Some(row) = rows.next().map_err(db("read"))? {
        let id: i64 = row.get(0).map_err(db("read"))?;
        let session: String = row.get(1).map_err(db("read"))?;
        let params: String = row.get(4).map_err(db("read"))?;
        let combo: String = row.get(5).map_err(db("read"))?;
        let feedback: String = row.get(8).map_err(db("read"))?;
        let summary: Option<String> = row.get(9).map_err(db("read"))?;
        let hash: String = row.get(3).map_err(db("read"))?;
        let session = cache.strings.get(&session);
        let models: Vec<String> = serde_json::from_str(&combo).unwrap_or_default();
        let combo = cache.strings.get(&combo_key(&models));
        let params = scalar_params(&params, &mut cache.strings);
        *cache.per_session.entry(Arc::clone(&session)).or_default() += 1;
        cache.rows.push(Row {
            id,
            session,
            ts: row.get(2).map_err(db("read"))?,
            combo,
            hash: cache.strings.get(&hash),
            quality: row.get(7).map_err(db("read"))?,
            render_time: row.get(6).map_err(db("read"))?,
            feedback: Feedback::parse(&feedback).unwrap_or(Feedback::Neutral),
            params,
            summary: summary.map(Arc::from),
        });
        cache.last_id = id;
    }
    Ok(())
}

/// The scalar entries of a `key_params` object (numbers, strings, booleans as 0/1).
fn scalar_params(json: &str, strings: &mut Interner) -> Vec<(Arc<str>, Param)> {
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(json) else {
        return Vec::new();
    };
    scalars(&map, strings)
}

fn scalars(map: &Map<String, Value>, strings: &mut Interner) -> Vec<(Arc<str>, Param)> {
    let mut out: Vec<(Arc<str>, Param)> = map
        .iter()
        .filter_map(|(key, value)| {
            let param = match value {
                Value::Number(n) => Param::Num(n.as_f64()?),
                Value::Bool(b) => Param::Num(f64::from(u8::from(*b))),
                Value::String(s) if s.len() <= 200 => Param::Text(strings.get(s)),
                _ => return None,
            };
            Some((strings.get(key), param))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Drops the oldest outcomes of `session` past the per-session limit, and the oldest overall
/// past the total, with some slack so pruning is rare.
fn prune(open: &mut Open, limits: &Limits, session: &str) -> Result<(), OutcomeError> {
    let slack = |limit: usize| limit + (limit / 100).max(1);
    let in_session = open
        .cache
        .per_session
        .get(session)
        .copied()
        .unwrap_or_default();
    let total = open.cache.rows.len();
    if in_session <= slack(limits.per_session) && total <= slack(limits.total) {
        return Ok(());
    }
    let tx = open.conn.transaction().map_err(db("trimmed"))?;
    if in_session > limits.per_session {
        tx.execute(
            "DELETE FROM outcomes WHERE id IN
                 (SELECT id FROM outcomes WHERE session = ?1 ORDER BY ts, id LIMIT ?2)",
            params![session, (in_session - limits.per_session) as i64],
        )
        .map_err(db("trimmed"))?;
    }
    let remaining: i64 = tx
        .query_row("SELECT COUNT(*) FROM outcomes", [], |row| row.get(0))
        .map_err(db("trimmed"))?;
    if remaining as usize > limits.total {
        tx.execute(
            "DELETE FROM outcomes WHERE id IN (SELECT id FROM outcomes ORDER BY ts, id LIMIT ?1)",
            params![remaining - limits.total as i64],
        )
        .map_err(db("trimmed"))?;
    }
    tx.execute(
        "UPDATE meta SET value = value + 1 WHERE key = 'prune_generation'",
        [],
    )
    .map_err(db("trimmed"))?;
    tx.commit().map_err(db("trimmed"))?;
    refresh(open)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn outcome(session: &str, ts: f64, quality: f64) -> Outcome {
        let key_params = json!({"cfg": 7, "sampler_name": "euler"})
            .as_object()
            .cloned()
            .unwrap_or_default();
        Outcome {
            session: session.into(),
            ts,
            workflow_summary: Some("portrait".into()),
            workflow_hash: super::super::workflow_hash(&key_params),
            key_params,
            model_combo: vec!["sdxl.safetensors".into()],
            render_time_s: Some(12.0),
            quality_score: Some(quality),
            vision_notes: Vec::new(),
            user_feedback: Feedback::Positive,
            goal_id: None,
        }
    }

    #[test]
    fn records_survive_reopening_and_two_stores_see_each_other() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("memory").join(FILE_NAME);
        let a = OutcomeStore::at(path.clone(), Limits::default());
        let b = OutcomeStore::at(path.clone(), Limits::default());
        a.record(&outcome("one", 1.0, 0.5)).expect("recorded");
        b.record(&outcome("two", 2.0, 0.9)).expect("recorded");
        let seen = a
            .read(|rows| {
                rows.iter()
                    .map(|r| r.session.to_string())
                    .collect::<Vec<_>>()
            })
            .expect("read");
        assert_eq!(seen, ["one", "two"]);
        drop((a, b));
        let again = OutcomeStore::at(path, Limits::default());
        let count = again.read(<[Row]>::len).expect("read");
        assert_eq!(count, 2);
    }

    #[test]
    fn the_oldest_are_dropped_past_the_limits_everywhere() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        let limits = Limits {
            per_session: 10,
            total: 15,
        };
        let a = OutcomeStore::at(path.clone(), limits);
        let b = OutcomeStore::at(path, limits);
        for i in 0..12 {
            a.record(&outcome("one", f64::from(i), 0.5))
                .expect("recorded");
        }
        let left = a
            .read(|rows| rows.iter().map(|r| r.ts).collect::<Vec<_>>())
            .expect("read");
        assert_eq!(left.len(), 10);
        assert_eq!(left[0], 2.0, "the oldest went first");
        for i in 0..7 {
            a.record(&outcome("two", 100.0 + f64::from(i), 0.5))
                .expect("recorded");
        }
        assert_eq!(a.read(<[Row]>::len).expect("read"), 15);
        // Another store on the same file sees the pruning, not stale rows.
        assert_eq!(b.read(<[Row]>::len).expect("read"), 15);
    }

    #[test]
    fn a_damaged_database_is_moved_aside_and_a_newer_one_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, vec![7u8; 8192]).expect("write");
        let store = OutcomeStore::at(path.clone(), Limits::default());
        let recorded = store.record(&outcome("one", 1.0, 0.5)).expect("recorded");
        let moved = recorded.set_aside.expect("set aside");
        assert!(moved.starts_with("outcomes.sqlite3.corrupt-"), "{moved}");
        assert_eq!(
            std::fs::read(dir.path().join(&moved)).expect("kept"),
            vec![7u8; 8192]
        );

        let newer = dir.path().join("newer.sqlite3");
        let conn = Connection::open(&newer).expect("open");
        conn.execute_batch("PRAGMA user_version = 9; CREATE TABLE t (x);")
            .expect("create");
        drop(conn);
        let store = OutcomeStore::at(newer, Limits::default());
        let error = store
            .record(&outcome("one", 1.0, 0.5))
            .expect_err("refused");
        assert!(
            matches!(error, OutcomeError::NewerFormat { version: 9, .. }),
            "{error}"
        );
    }

    #[test]
    fn imports_skip_what_is_already_there() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = OutcomeStore::at(dir.path().join(FILE_NAME), Limits::default());
        let batch = vec![
            (outcome("one", 1.0, 0.5), "k1".to_string()),
            (outcome("one", 2.0, 0.5), "k2".to_string()),
        ];
        assert_eq!(store.import(&batch, "import:test").expect("imported"), 2);
        assert_eq!(store.import(&batch, "import:test").expect("imported"), 0);
        assert_eq!(store.read(<[Row]>::len).expect("read"), 2);
    }
}
