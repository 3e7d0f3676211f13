//! Small per-session documents: the plan, the captured intent, the iteration log, the guided
//! demo, the pipeline. Each lives in `<data_dir>/memory/<kind>/<session>.json` with the same
//! guarantees as named sessions: a format version, atomic durable writes, damaged files moved
//! aside (never deleted, never silently overwritten), a size bound, and age-based clean-up.
//!
//! A document is any serde type; this module only frames it:
//! `{"format_version": 1, "kind": "plans", "session": "…", "updated_at": "…", "data": …}`.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::store::{SessionName, compact_utc, rfc3339_utc};
use crate::error::ToolError;
use crate::fsutil::{TEMP_SUFFIX, write_atomic};

/// The version this build writes; files with a higher one are left alone.
pub const DOC_FORMAT_VERSION: u64 = 1;
/// The largest document kept per session and kind. Tools bound their own lists well below it.
pub const MAX_DOC_BYTES: u64 = 4 * 1024 * 1024;
const CORRUPT_MARK: &str = ".json.corrupt-";
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum DocError {
    #[error(
        "The saved {kind} for session '{session}' is damaged ({reason}); it was moved aside as {set_aside} so nothing is lost"
    )]
    Corrupt {
        kind: &'static str,
        session: String,
        reason: String,
        set_aside: String,
    },
    #[error(
        "The saved {kind} for session '{session}' was written by a newer comfyui-agent (format {version}), which this one can't read"
    )]
    NewerFormat {
        kind: &'static str,
        session: String,
        version: u64,
    },
    #[error(
        "The {kind} for session '{session}' would be {size} bytes, more than the {limit}-byte limit"
    )]
    TooLarge {
        kind: &'static str,
        session: String,
        size: u64,
        limit: u64,
    },
    #[error("The {kind} for session '{session}' could not be {action}: {source}")]
    Io {
        kind: &'static str,
        session: String,
        action: &'static str,
        source: io::Error,
    },
}

impl DocError {
    pub fn hint(&self) -> &'static str {
        match self {
            Self::Corrupt { .. } => {
                "Call the tool again to start afresh; the damaged file stays beside the new one for inspection."
            }
            Self::NewerFormat { .. } => {
                "Update comfyui-agent, or pass another session name; the file was left untouched."
            }
            Self::TooLarge { .. } => {
                "Start a new session (pass another session name) or finish the current one first."
            }
            Self::Io { .. } => {
                "Check that the data folder (COMFYUI_AGENT_DATA_DIR) exists, is writable and has free space."
            }
        }
    }
}

impl From<DocError> for ToolError {
    fn from(error: DocError) -> Self {
        Self::rejected(error.to_string(), error.hint())
    }
}

/// What loading found besides the document: a damaged file moved aside on the way.
#[derive(Debug, Default)]
pub struct Loaded<T> {
    pub doc: Option<T>,
    /// The file name a damaged document was moved to; the document then counts as absent.
    pub set_aside: Option<String>,
}

/// The documents of every session, one folder per kind.
#[derive(Debug)]
pub struct SessionDocs {
    root: PathBuf,
    /// Serialises read-modify-write within this process; across processes each write is
    /// still atomic (the last writer wins, no file is ever torn).
    write_lock: Mutex<()>,
}

impl SessionDocs {
    /// Documents under `<data_dir>/memory`; folders are created on first write.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self {
            root: data_dir.join("memory"),
            write_lock: Mutex::new(()),
        }
    }

    pub fn dir(&self, kind: &'static str) -> PathBuf {
        self.root.join(kind)
    }

    pub fn path_of(&self, kind: &'static str, session: &SessionName) -> PathBuf {
        self.dir(kind).join(format!("{}.json", session.as_str()))
    }

    /// The session's document of this kind, if it has one. A damaged file is moved aside and
    /// reported in [`Loaded::set_aside`]; a newer format is an error (and left untouched).
    pub fn load<T: DeserializeOwned>(
        &self,
        kind: &'static str,
        session: &SessionName,
    ) -> Result<Loaded<T>, DocError> {
        let _guard = self.lock();
        self.load_locked(kind, session)
    }

    /// Reads the document, lets `change` build the new one (or refuse), and writes it
    /// atomically, all under one lock. `change` returns the new document (`None` removes the
    /// file) and a value for the caller.
    pub fn update<T, R, E>(
        &self,
        kind: &'static str,
        session: &SessionName,
        change: impl FnOnce(Loaded<T>) -> Result<(Option<T>, R), E>,
    ) -> Result<R, E>
    where
        T: Serialize + DeserializeOwned,
        E: From<DocError>,
    {
        let _guard = self.lock();
        let loaded = self.load_locked(kind, session)?;
        let (doc, result) = change(loaded)?;
        let path = self.path_of(kind, session);
        match doc {
            Some(doc) => self.write(kind, session, &path, &doc)?,
            None => match fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(io_error(kind, session, "removed", source).into()),
            },
        }
        Ok(result)
    }

    /// Removes documents (of every kind) not written for `max_age`, set-aside copies as old,
    /// and temp files left by a crash. Returns how many documents were removed.
    pub fn collect_garbage(&self, max_age: Duration) -> usize {
        let _guard = self.lock();
        let Ok(kinds) = fs::read_dir(&self.root) else {
            return 0;
        };
        let now = SystemTime::now();
        let age = |path: &Path| {
            fs::metadata(path)
                .and_then(|meta| meta.modified())
                .ok()
                .and_then(|modified| now.duration_since(modified).ok())
                .unwrap_or_default()
        };
        let mut removed = 0;
        let folders = kinds
            .flatten()
            .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()));
        for folder in folders {
            let Ok(entries) = fs::read_dir(folder.path()) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if !entry.file_type().is_ok_and(|kind| kind.is_file()) {
                    continue;
                }
                let doomed = if name.starts_with('.') && name.ends_with(TEMP_SUFFIX) {
                    age(&path) > STALE_TEMP_AGE
                } else {
                    (name.ends_with(".json") || name.contains(CORRUPT_MARK))
                        && age(&path) >= max_age
                };
                if doomed && fs::remove_file(&path).is_ok() && name.ends_with(".json") {
                    removed += 1;
                }
            }
        }
        removed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn load_locked<T: DeserializeOwned>(
        &self,
        kind: &'static str,
        session: &SessionName,
    ) -> Result<Loaded<T>, DocError> {
        let path = self.path_of(kind, session);
        let Some(bytes) = read_capped(kind, session, &path)? else {
            return Ok(Loaded {
                doc: None,
                set_aside: None,
            });
        };
        match decode::<T>(&bytes) {
            Ok(doc) => Ok(Loaded {
                doc: Some(doc),
                set_aside: None,
            }),
            Err(Undecodable::Newer(version)) => Err(DocError::NewerFormat {
                kind,
                session: session.to_string(),
                version,
            }),
            Err(Undecodable::Corrupt(reason)) => {
                let moved = self.set_aside(kind, session, &path)?;
                tracing::warn!(kind, session = %session, %reason, set_aside = %moved, "a damaged session document was moved aside");
                Ok(Loaded {
                    doc: None,
                    set_aside: Some(moved),
                })
            }
        }
    }

    fn write<T: Serialize>(
        &self,
        kind: &'static str,
        session: &SessionName,
        path: &Path,
        doc: &T,
    ) -> Result<(), DocError> {
        let framed = serde_json::json!({
            "format_version": DOC_FORMAT_VERSION,
            "kind": kind,
            "session": session.as_str(),
            "updated_at": rfc3339_utc(SystemTime::now()),
            "data": doc,
        });
        let mut bytes = serde_json::to_vec_pretty(&framed)
            .map_err(|error| io_error(kind, session, "saved", error.into()))?;
        bytes.push(b'\n');
        if bytes.len() as u64 > MAX_DOC_BYTES {
            return Err(DocError::TooLarge {
                kind,
                session: session.to_string(),
                size: bytes.len() as u64,
                limit: MAX_DOC_BYTES,
            });
        }
        let dir = self.dir(kind);
        fs::create_dir_all(&dir).map_err(|source| io_error(kind, session, "saved", source))?;
        write_atomic(path, &bytes).map_err(|source| io_error(kind, session, "saved", source))
    }

    /// Moves a damaged file to `<session>.json.corrupt-<UTC time>` and returns that name.
    fn set_aside(
        &self,
        kind: &'static str,
        session: &SessionName,
        path: &Path,
    ) -> Result<String, DocError> {
        let stamp = compact_utc(SystemTime::now());
        for attempt in 0..100u32 {
            let mut name = format!("{}{CORRUPT_MARK}{stamp}", session.as_str());
            if attempt > 0 {
                name.push_str(&format!("-{attempt}"));
            }
            let target = self.dir(kind).join(&name);
            if target.exists() {
                continue;
            }
            fs::rename(path, &target)
                .map_err(|source| io_error(kind, session, "moved aside", source))?;
            return Ok(name);
        }
        Err(io_error(
            kind,
            session,
            "moved aside",
            io::Error::other("too many damaged copies already set aside"),
        ))
    }
}

fn io_error(
    kind: &'static str,
    session: &SessionName,
    action: &'static str,
    source: io::Error,
) -> DocError {
    DocError::Io {
        kind,
        session: session.to_string(),
        action,
        source,
    }
}

/// The file's bytes, `None` when there is no file. Larger files than the bound count as
/// damaged (they are never written by this program).
fn read_capped(
    kind: &'static str,
    session: &SessionName,
    path: &Path,
) -> Result<Option<Vec<u8>>, DocError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(io_error(kind, session, "read", source)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_DOC_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| io_error(kind, session, "read", source))?;
    Ok(Some(bytes))
}

enum Undecodable {
    Newer(u64),
    Corrupt(String),
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Undecodable> {
    if bytes.len() as u64 > MAX_DOC_BYTES {
        return Err(Undecodable::Corrupt(
            "it is larger than any document this program writes".into(),
        ));
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|error| Undecodable::Corrupt(format!("not JSON: {error}")))?;
    let version = value
        .get("format_version")
        .and_then(Value::as_u64)
        .ok_or_else(|| Undecodable::Corrupt("no format_version".into()))?;
    if version > DOC_FORMAT_VERSION {
        return Err(Undecodable::Newer(version));
    }
    let data = value
        .get("data")
        .cloned()
        .ok_or_else(|| Undecodable::Corrupt("no data".into()))?;
    serde_json::from_value(data).map_err(|error| Undecodable::Corrupt(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Plan {
        goal: String,
        steps: Vec<String>,
    }

    fn name(raw: &str) -> SessionName {
        SessionName::parse(raw).expect("valid name")
    }

    fn plan(goal: &str) -> Plan {
        Plan {
            goal: goal.into(),
            steps: vec!["one".into()],
        }
    }

    #[test]
    fn a_document_round_trips_and_sessions_stay_apart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let docs = SessionDocs::in_data_dir(dir.path());
        for (session, goal) in [("a", "portrait"), ("b", "landscape")] {
            docs.update::<Plan, (), DocError>("plans", &name(session), |loaded| {
                assert!(loaded.doc.is_none());
                Ok((Some(plan(goal)), ()))
            })
            .expect("saved");
        }
        let a = docs.load::<Plan>("plans", &name("a")).expect("loads");
        assert_eq!(a.doc, Some(plan("portrait")));
        let b = docs.load::<Plan>("plans", &name("b")).expect("loads");
        assert_eq!(b.doc, Some(plan("landscape")));
        assert!(
            docs.load::<Plan>("intents", &name("a"))
                .expect("loads")
                .doc
                .is_none()
        );
        let raw = fs::read_to_string(docs.path_of("plans", &name("a"))).expect("file");
        assert!(raw.contains("\"format_version\": 1"), "{raw}");
    }

    #[test]
    fn a_damaged_file_is_moved_aside_and_counts_as_absent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let docs = SessionDocs::in_data_dir(dir.path());
        let path = docs.path_of("plans", &name("a"));
        fs::create_dir_all(path.parent().expect("parent")).expect("dir");
        fs::write(&path, b"{\"format_version\":1,\"data\":{\"goal\":").expect("write");
        let loaded = docs.load::<Plan>("plans", &name("a")).expect("loads");
        assert!(loaded.doc.is_none());
        let moved = loaded.set_aside.expect("set aside");
        assert!(moved.starts_with("a.json.corrupt-"), "{moved}");
        assert!(docs.dir("plans").join(&moved).exists());
        assert!(!path.exists());
    }

    #[test]
    fn a_newer_format_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let docs = SessionDocs::in_data_dir(dir.path());
        let path = docs.path_of("plans", &name("a"));
        fs::create_dir_all(path.parent().expect("parent")).expect("dir");
        fs::write(&path, b"{\"format_version\":99,\"data\":{}}").expect("write");
        let error = docs.load::<Plan>("plans", &name("a")).expect_err("refused");
        assert!(matches!(error, DocError::NewerFormat { version: 99, .. }));
        let outcome =
            docs.update::<Plan, (), DocError>("plans", &name("a"), |_| Ok((Some(plan("x")), ())));
        assert!(outcome.is_err());
        assert_eq!(
            fs::read(&path).expect("file"),
            b"{\"format_version\":99,\"data\":{}}"
        );
    }

    #[test]
    fn an_oversized_document_is_refused_and_the_old_one_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let docs = SessionDocs::in_data_dir(dir.path());
        docs.update::<Plan, (), DocError>("plans", &name("a"), |_| Ok((Some(plan("small")), ())))
            .expect("saved");
        let huge = Plan {
            goal: "x".repeat(MAX_DOC_BYTES as usize),
            steps: Vec::new(),
        };
        let error = docs
            .update::<Plan, (), DocError>("plans", &name("a"), |_| Ok((Some(huge), ())))
            .expect_err("too large");
        assert!(matches!(error, DocError::TooLarge { .. }));
        assert_eq!(
            docs.load::<Plan>("plans", &name("a")).expect("loads").doc,
            Some(plan("small"))
        );
    }

    #[test]
    fn removing_and_garbage_collection() {
        let dir = tempfile::tempdir().expect("tempdir");
        let docs = SessionDocs::in_data_dir(dir.path());
        docs.update::<Plan, (), DocError>("plans", &name("a"), |_| Ok((Some(plan("x")), ())))
            .expect("saved");
        docs.update::<Plan, (), DocError>("plans", &name("b"), |_| Ok((Some(plan("y")), ())))
            .expect("saved");
        docs.update::<Plan, (), DocError>("plans", &name("a"), |_| Ok((None, ())))
            .expect("removed");
        assert!(!docs.path_of("plans", &name("a")).exists());
        docs.update::<Plan, (), DocError>("intents", &name("b"), |_| Ok((Some(plan("z")), ())))
            .expect("saved");
        assert_eq!(docs.collect_garbage(Duration::from_secs(3600)), 0);
        assert_eq!(docs.collect_garbage(Duration::ZERO), 2);
        assert!(!docs.path_of("plans", &name("b")).exists());
    }
}
