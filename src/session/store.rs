//! Named sessions on disk: `<data_dir>/sessions/<name>.json`.
//!
//! Names are checked before they touch the filesystem ([`SessionName`]). Files carry a
//! `format_version`; the original project's files (`schema_version: 1`, or no version at all)
//! are read and upgraded in memory, and rewritten in the current format on the next save.
//! Every write is atomic ([`crate::fsutil::write_atomic`]), so a reader or a crash never sees
//! half a file. A file that can't be read is moved aside and reported, never overwritten.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::fsutil::{TEMP_SUFFIX, write_atomic};

/// The version written in the `format_version` field of every file this store writes.
pub const FORMAT_VERSION: u64 = 2;
/// The largest session file read or written.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// The most notes one session keeps.
pub const MAX_NOTES: usize = 1000;
/// The longest note, in characters.
pub const MAX_NOTE_CHARS: usize = 4000;
/// The longest session name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

const EXTENSION: &str = ".json";
/// Set-aside files are `<name>.json.corrupt-<UTC timestamp>`.
const CORRUPT_MARK: &str = ".json.corrupt-";
/// Temp files older than this are left over from a crash.
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);
/// Other per-session files share the folder (the planner's and the memory's); a session named
/// like them would be confused with them.
const RESERVED_ENDINGS: [&str; 2] = ["_goals", "_outcomes"];

/// A session name that is safe as a file name on every platform: 1 to 64 ASCII letters,
/// digits, spaces, `-`, `_` and `.`, with no `..`, no leading dot or space, no trailing dot or
/// space, and not a Windows device name (`CON`, `nul.txt`, `COM1`, …).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionName(String);

impl SessionName {
    pub fn parse(raw: &str) -> Result<Self, StoreError> {
        let invalid = |reason: &str| StoreError::InvalidName {
            name: shorten(raw),
            reason: reason.to_string(),
        };
        if raw.is_empty() {
            return Err(invalid("it is empty"));
        }
        if raw.chars().count() > MAX_NAME_CHARS {
            return Err(invalid(&format!(
                "it is longer than {MAX_NAME_CHARS} characters"
            )));
        }
        if let Some(bad) = raw
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.')))
        {
            return Err(invalid(&match bad {
                '/' | '\\' => "it contains a folder separator ('/' or '\\')".to_string(),
                c if c.is_control() => "it contains a control character".to_string(),
                c => format!(
                    "it contains {c:?}; only the letters A-Z and a-z, digits, spaces, '-', '_' and '.' are allowed"
                ),
            }));
        }
        if raw.starts_with('.') {
            return Err(invalid("it starts with a dot"));
        }
        if raw.contains("..") {
            return Err(invalid("it contains '..'"));
        }
        if raw.starts_with(' ') {
            return Err(invalid("it starts with a space"));
        }
        if raw.ends_with(['.', ' ']) {
            return Err(invalid(
                "it ends with a dot or a space, which Windows drops",
            ));
        }
        let stem = raw.split('.').next().unwrap_or(raw).trim_end();
        if is_windows_device(stem) {
            return Err(invalid(
                "it is a device name on Windows (CON, PRN, AUX, NUL, COM0-9, LPT0-9)",
            ));
        }
        let lower = raw.to_ascii_lowercase();
        if RESERVED_ENDINGS.iter().any(|end| lower.ends_with(end)) {
            return Err(invalid(
                "names ending in _goals or _outcomes are kept for the planner's and memory's files",
            ));
        }
        Ok(Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// [`super::DEFAULT_NAME`], the scope of stdio and stateless calls.
    pub fn default_name() -> Self {
        Self(super::DEFAULT_NAME.to_string())
    }

    fn file_name(&self) -> String {
        format!("{}{EXTENSION}", self.0)
    }
}

impl std::fmt::Display for SessionName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_windows_device(stem: &str) -> bool {
    let upper = stem.to_ascii_uppercase();
    match upper.as_str() {
        "CON" | "PRN" | "AUX" | "NUL" => true,
        _ => {
            let bytes = upper.as_bytes();
            bytes.len() == 4
                && (upper.starts_with("COM") || upper.starts_with("LPT"))
                && bytes[3].is_ascii_digit()
        }
    }
}

/// Names echoed in errors are cut short so a huge argument can't flood the reply.
fn shorten(raw: &str) -> String {
    const KEEP: usize = 80;
    if raw.chars().count() <= KEEP {
        raw.to_string()
    } else {
        let mut cut: String = raw.chars().take(KEEP).collect();
        cut.push('…');
        cut
    }
}

/// A saved session, as held in memory. On disk the same fields follow `format_version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionFile {
    pub name: String,
    /// When the session was last saved, RFC 3339 in UTC (`2025-01-02T03:04:05Z`). Files from
    /// the original project keep their local-time stamp (`2025-01-02T03:04:05`, no zone)
    /// until they are saved again.
    pub saved_at: String,
    /// The loaded workflow, or `None` when none was loaded.
    #[serde(default)]
    pub workflow: Option<WorkflowState>,
    #[serde(default)]
    pub notes: Vec<Note>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

impl SessionFile {
    /// An empty session stamped now.
    pub fn new(name: &SessionName) -> Self {
        Self {
            name: name.as_str().to_string(),
            saved_at: rfc3339_utc(SystemTime::now()),
            workflow: None,
            notes: Vec::new(),
            metadata: Map::new(),
        }
    }
}

/// The workflow part of a session. Undo history itself is not saved, only its depth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowState {
    /// The file the workflow was loaded from, as the client named it; `None` for inline
    /// workflows and templates.
    #[serde(default)]
    pub loaded_path: Option<String>,
    /// The format it was loaded in (`api`, `ui`, …).
    #[serde(default)]
    pub format: Option<String>,
    /// The API-format workflow as loaded.
    pub base: Value,
    /// The API-format workflow with the session's edits.
    pub current: Value,
    #[serde(default)]
    pub undo_depth: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Note {
    pub text: String,
    /// RFC 3339 UTC for notes added here; the original project's notes keep their local time.
    pub added_at: String,
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedSession {
    pub path: PathBuf,
    pub size_bytes: u64,
    pub saved_at: String,
    pub notes_count: usize,
    /// Where an unreadable file that was in the way was moved, when there was one.
    pub set_aside: Option<PathBuf>,
}

/// One line of [`SessionStore::list`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct SessionSummary {
    pub name: String,
    /// `None` when the file could not be read.
    pub saved_at: Option<String>,
    pub notes_count: usize,
    pub has_workflow: bool,
    pub size_bytes: u64,
    /// The file is damaged; loading it moves it aside.
    pub corrupt: bool,
    /// Why the file could not be read, when it could not.
    pub problem: Option<String>,
}

/// Why a session could not be saved, loaded or listed. The text is what an artist reads;
/// [`StoreError::hint`] says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{name:?} can't be used as a session name: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("There is no saved session named '{name}'. {}", available_sentence(.available))]
    NotFound {
        name: String,
        available: Vec<String>,
    },
    #[error("The saved session '{name}' is damaged ({reason}). {}", set_aside_sentence(.set_aside.as_deref()))]
    Corrupt {
        name: String,
        reason: String,
        set_aside: Option<PathBuf>,
    },
    #[error(
        "The saved session '{name}' was written by a newer comfyui-agent ({version}), which this one can't read"
    )]
    NewerFormat { name: String, version: String },
    #[error("The session '{name}' is {size} bytes, more than the {limit}-byte limit")]
    TooLarge { name: String, size: u64, limit: u64 },
    #[error("The session '{name}' already has {limit} notes, the most one session keeps")]
    TooManyNotes { name: String, limit: usize },
    #[error("The note is {chars} characters long, more than the {limit} a note may have")]
    NoteTooLong { chars: usize, limit: usize },
    #[error("The note is empty")]
    EmptyNote,
    #[error("The session '{name}' could not be {action}: {source}")]
    Io {
        name: String,
        action: &'static str,
        source: io::Error,
    },
}

impl StoreError {
    /// The next step for the artist.
    pub fn hint(&self) -> &'static str {
        match self {
            Self::InvalidName { .. } => {
                "Use a short name of letters, digits, spaces, '-', '_' or '.', like portrait-v2."
            }
            Self::NotFound { .. } => {
                "Check the name with list_sessions, or save the session first."
            }
            Self::Corrupt { .. } => {
                "Save the session again to start it afresh; the damaged file stays in the sessions folder for inspection."
            }
            Self::NewerFormat { .. } => {
                "Update comfyui-agent, or use another session name; the file was left untouched."
            }
            Self::TooLarge { .. } => {
                "Remove notes or metadata, or save a smaller workflow under a new name."
            }
            Self::TooManyNotes { .. } => "Start a new session for further notes.",
            Self::NoteTooLong { .. } => "Shorten the note or split it into several.",
            Self::EmptyNote => "Write the note's text.",
            Self::Io { .. } => {
                "Check that the data folder (COMFYUI_AGENT_DATA_DIR) exists, is writable and has free space."
            }
        }
    }

    /// A short, stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidName { .. } => "invalid_session_name",
            Self::NotFound { .. } => "not_found",
            Self::Corrupt { .. } => "session_corrupt",
            Self::NewerFormat { .. } => "session_newer_format",
            Self::TooLarge { .. } => "session_too_large",
            Self::TooManyNotes { .. } | Self::NoteTooLong { .. } | Self::EmptyNote => {
                "invalid_note"
            }
            Self::Io { .. } => "io_error",
        }
    }
}

fn available_sentence(available: &[String]) -> String {
    if available.is_empty() {
        "No sessions have been saved yet.".to_string()
    } else {
        format!("Saved sessions: {}.", available.join(", "))
    }
}

fn set_aside_sentence(set_aside: Option<&Path>) -> String {
    match set_aside.and_then(Path::file_name) {
        Some(file) => format!(
            "The file was moved aside as {} so nothing is lost.",
            file.to_string_lossy()
        ),
        None => "The file was left where it is.".to_string(),
    }
}

/// The folder of named sessions. Writes within one store are serialised, so concurrent
/// `add_note` calls in one process never lose a note; across processes each write is still
/// atomic (the last writer wins, no file is ever torn).
#[derive(Debug)]
pub struct SessionStore {
    dir: PathBuf,
    write_lock: Mutex<()>,
}

impl SessionStore {
    /// A store in `dir` (usually `<data_dir>/sessions`); the folder is created on first write.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            write_lock: Mutex::new(()),
        }
    }

    /// The store under a data folder: `<data_dir>/sessions`.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self::new(data_dir.join("sessions"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path_of(&self, name: &SessionName) -> PathBuf {
        self.dir.join(name.file_name())
    }

    /// Replaces the session with `file` (its `name` and `saved_at` are set here). An
    /// unreadable file in the way is moved aside first and reported in the result.
    pub fn save(&self, name: &SessionName, file: &SessionFile) -> Result<SavedSession, StoreError> {
        self.update(name, |_| {
            let mut file = file.clone();
            file.saved_at = rfc3339_utc(SystemTime::now());
            Ok(file)
        })
    }

    /// Saves `workflow` into the session, keeping its notes and metadata (what `save_session`
    /// does).
    pub fn save_workflow(
        &self,
        name: &SessionName,
        workflow: Option<WorkflowState>,
    ) -> Result<SavedSession, StoreError> {
        self.update(name, |existing| {
            let mut file = existing.unwrap_or_else(|| SessionFile::new(name));
            file.workflow = workflow;
            file.saved_at = rfc3339_utc(SystemTime::now());
            Ok(file)
        })
    }

    /// Appends a note, creating the session when it does not exist. The rest of the session
    /// (including `saved_at`) is kept.
    pub fn add_note(&self, name: &SessionName, text: &str) -> Result<SavedSession, StoreError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(StoreError::EmptyNote);
        }
        let chars = text.chars().count();
        if chars > MAX_NOTE_CHARS {
            return Err(StoreError::NoteTooLong {
                chars,
                limit: MAX_NOTE_CHARS,
            });
        }
        self.update(name, |existing| {
            let mut file = existing.unwrap_or_else(|| SessionFile::new(name));
            if file.notes.len() >= MAX_NOTES {
                return Err(StoreError::TooManyNotes {
                    name: name.to_string(),
                    limit: MAX_NOTES,
                });
            }
            file.notes.push(Note {
                text: text.to_string(),
                added_at: rfc3339_utc(SystemTime::now()),
            });
            Ok(file)
        })
    }

    /// Reads a session, upgrading older formats in memory. A damaged file is moved aside and
    /// reported as [`StoreError::Corrupt`].
    pub fn load(&self, name: &SessionName) -> Result<SessionFile, StoreError> {
        let path = self.path_of(name);
        let (bytes, modified) = match self.read(name, &path)? {
            Some(read) => read,
            None => {
                return Err(StoreError::NotFound {
                    name: name.to_string(),
                    available: self.names(),
                });
            }
        };
        match decode(name, &bytes, modified) {
            Ok(file) => Ok(file),
            Err(Undecodable::Newer(version)) => Err(StoreError::NewerFormat {
                name: name.to_string(),
                version,
            }),
            Err(Undecodable::Corrupt(reason)) => {
                let _guard = self.lock();
                // A writer may have replaced the file since it was read: only move aside the
                // bytes that were found damaged.
                match self.read(name, &path)? {
                    Some((again, modified)) if again != bytes => {
                        drop(_guard);
                        decode(name, &again, modified).map_err(|error| match error {
                            Undecodable::Newer(version) => StoreError::NewerFormat {
                                name: name.to_string(),
                                version,
                            },
                            Undecodable::Corrupt(reason) => StoreError::Corrupt {
                                name: name.to_string(),
                                reason,
                                set_aside: None,
                            },
                        })
                    }
                    Some(_) => Err(StoreError::Corrupt {
                        name: name.to_string(),
                        reason,
                        set_aside: Some(self.set_aside(name, &path)?),
                    }),
                    None => Err(StoreError::Corrupt {
                        name: name.to_string(),
                        reason,
                        set_aside: None,
                    }),
                }
            }
        }
    }

    /// Every saved session, sorted by name. Only session files are listed: not the planner's
    /// `*_goals.json`, the memory's `*_outcomes.jsonl`, temp files or set-aside files.
    pub fn list(&self) -> Result<Vec<SessionSummary>, StoreError> {
        let mut sessions = Vec::new();
        for (name, path) in self.session_files()? {
            let summary = match self.read(&name, &path) {
                Ok(None) => continue, // removed meanwhile
                Ok(Some((bytes, modified))) => {
                    let size_bytes = bytes.len() as u64;
                    match decode(&name, &bytes, modified) {
                        Ok(file) => SessionSummary {
                            name: name.to_string(),
                            saved_at: Some(file.saved_at),
                            notes_count: file.notes.len(),
                            has_workflow: file.workflow.is_some(),
                            size_bytes,
                            corrupt: false,
                            problem: None,
                        },
                        Err(error) => {
                            let (corrupt, problem) = match error {
                                Undecodable::Corrupt(reason) => (true, reason),
                                Undecodable::Newer(version) => (
                                    false,
                                    format!("written by a newer comfyui-agent ({version})"),
                                ),
                            };
                            SessionSummary {
                                name: name.to_string(),
                                saved_at: None,
                                notes_count: 0,
                                has_workflow: false,
                                size_bytes,
                                corrupt,
                                problem: Some(problem),
                            }
                        }
                    }
                }
                Err(error) => SessionSummary {
                    name: name.to_string(),
                    saved_at: None,
                    notes_count: 0,
                    has_workflow: false,
                    size_bytes: 0,
                    corrupt: false,
                    problem: Some(error.to_string()),
                },
            };
            sessions.push(summary);
        }
        Ok(sessions)
    }

    /// Removes sessions (and set-aside files) not written for `max_age`, and temp files left
    /// by a crash. Returns the names of the sessions removed.
    pub fn collect_garbage(&self, max_age: Duration) -> Result<Vec<String>, StoreError> {
        let _guard = self.lock();
        let now = SystemTime::now();
        let older_than = |path: &Path, age: Duration| {
            fs::metadata(path)
                .and_then(|meta| meta.modified())
                .ok()
                .and_then(|modified| now.duration_since(modified).ok())
                .is_some_and(|elapsed| elapsed > age)
        };
        let mut removed = Vec::new();
        for (name, path) in self.session_files()? {
            if older_than(&path, max_age) && fs::remove_file(&path).is_ok() {
                removed.push(name.to_string());
            }
        }
        for entry in self.entries()? {
            let Some(file) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let path = entry.path();
            let leftover = if file.starts_with('.') && file.ends_with(TEMP_SUFFIX) {
                older_than(&path, STALE_TEMP_AGE)
            } else {
                file.contains(CORRUPT_MARK) && older_than(&path, max_age)
            };
            if leftover && path.is_file() {
                let _ = fs::remove_file(&path);
            }
        }
        Ok(removed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the existing session (if any), builds the new one and writes it atomically, all
    /// under the store's lock.
    fn update(
        &self,
        name: &SessionName,
        build: impl FnOnce(Option<SessionFile>) -> Result<SessionFile, StoreError>,
    ) -> Result<SavedSession, StoreError> {
        let _guard = self.lock();
        let path = self.path_of(name);
        let mut set_aside = None;
        let existing = match self.read(name, &path)? {
            None => None,
            Some((bytes, modified)) => match decode(name, &bytes, modified) {
                Ok(file) => Some(file),
                Err(Undecodable::Newer(version)) => {
                    return Err(StoreError::NewerFormat {
                        name: name.to_string(),
                        version,
                    });
                }
                Err(Undecodable::Corrupt(_)) => {
                    set_aside = Some(self.set_aside(name, &path)?);
                    None
                }
            },
        };
        let mut file = build(existing)?;
        file.name = name.as_str().to_string();
        if file.notes.len() > MAX_NOTES {
            return Err(StoreError::TooManyNotes {
                name: name.to_string(),
                limit: MAX_NOTES,
            });
        }
        let bytes = encode(&file).map_err(|source| StoreError::Io {
            name: name.to_string(),
            action: "saved",
            source: source.into(),
        })?;
        let size_bytes = bytes.len() as u64;
        if size_bytes > MAX_FILE_BYTES {
            return Err(StoreError::TooLarge {
                name: name.to_string(),
                size: size_bytes,
                limit: MAX_FILE_BYTES,
            });
        }
        let io = |source| StoreError::Io {
            name: name.to_string(),
            action: "saved",
            source,
        };
        fs::create_dir_all(&self.dir).map_err(io)?;
        write_atomic(&path, &bytes).map_err(io)?;
        Ok(SavedSession {
            path,
            size_bytes,
            saved_at: file.saved_at,
            notes_count: file.notes.len(),
            set_aside,
        })
    }

    /// The file's bytes and modification time, `None` when it does not exist.
    fn read(
        &self,
        name: &SessionName,
        path: &Path,
    ) -> Result<Option<(Vec<u8>, SystemTime)>, StoreError> {
        let io = |source| StoreError::Io {
            name: name.to_string(),
            action: "read",
            source,
        };
        let file = match File::open(path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io(error)),
        };
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(io(io::Error::other("it is not a file")));
        }
        let too_large = |size| StoreError::TooLarge {
            name: name.to_string(),
            size,
            limit: MAX_FILE_BYTES,
        };
        if meta.len() > MAX_FILE_BYTES {
            return Err(too_large(meta.len()));
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(too_large(bytes.len() as u64));
        }
        let modified = meta.modified().unwrap_or_else(|_| SystemTime::now());
        Ok(Some((bytes, modified)))
    }

    /// Moves a damaged file to `<name>.json.corrupt-<UTC time>` (with a counter if taken).
    fn set_aside(&self, name: &SessionName, path: &Path) -> Result<PathBuf, StoreError> {
        let stamp = compact_utc(SystemTime::now());
        for attempt in 0..100u32 {
            let mut file = format!("{}{CORRUPT_MARK}{stamp}", name.as_str());
            if attempt > 0 {
                file.push_str(&format!("-{attempt}"));
            }
            let target = self.dir.join(file);
            if target.exists() {
                continue;
            }
            fs::rename(path, &target).map_err(|source| StoreError::Io {
                name: name.to_string(),
                action: "moved aside",
                source,
            })?;
            return Ok(target);
        }
        Err(StoreError::Io {
            name: name.to_string(),
            action: "moved aside",
            source: io::Error::other("too many damaged copies already set aside"),
        })
    }

    fn entries(&self) -> Result<Vec<fs::DirEntry>, StoreError> {
        let io = |source| StoreError::Io {
            name: String::new(),
            action: "listed",
            source,
        };
        match fs::read_dir(&self.dir) {
            Ok(entries) => entries.collect::<Result<_, _>>().map_err(io),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(error) => Err(io(error)),
        }
    }

    /// Session files, sorted by name: `<valid name>.json`, regular files only.
    fn session_files(&self) -> Result<Vec<(SessionName, PathBuf)>, StoreError> {
        let mut files: Vec<_> = self
            .entries()?
            .into_iter()
            .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
            .filter_map(|entry| {
                let file = entry.file_name();
                let stem = file.to_str()?.strip_suffix(EXTENSION)?;
                let name = SessionName::parse(stem).ok()?;
                Some((name, entry.path()))
            })
            .collect();
        files.sort();
        Ok(files)
    }

    fn names(&self) -> Vec<String> {
        self.session_files()
            .map(|files| files.into_iter().map(|(name, _)| name.0).collect())
            .unwrap_or_default()
    }
}

/// The on-disk shape: the version first, then the session's fields.
#[derive(Serialize)]
struct OnDisk<'a> {
    format_version: u64,
    #[serde(flatten)]
    file: &'a SessionFile,
}

fn encode(file: &SessionFile) -> serde_json::Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(&OnDisk {
        format_version: FORMAT_VERSION,
        file,
    })?;
    bytes.push(b'\n');
    Ok(bytes)
}

enum Undecodable {
    Corrupt(String),
    Newer(String),
}

/// Reads any known format. `modified` stands in for a missing `saved_at` in old files.
fn decode(
    name: &SessionName,
    bytes: &[u8],
    modified: SystemTime,
) -> Result<SessionFile, Undecodable> {
    let corrupt = |reason: String| Undecodable::Corrupt(reason);
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|error| corrupt(format!("it is not valid JSON: {error}")))?;
    let Value::Object(mut object) = value else {
        return Err(corrupt("it is not a JSON object".to_string()));
    };
    let mut file = if let Some(version) = object.remove("format_version") {
        match version.as_u64() {
            Some(FORMAT_VERSION) => serde_json::from_value::<SessionFile>(Value::Object(object))
                .map_err(|error| corrupt(format!("a field is wrong: {error}")))?,
            Some(newer) if newer > FORMAT_VERSION => {
                return Err(Undecodable::Newer(format!("format_version {newer}")));
            }
            _ => return Err(corrupt(format!("unknown format_version {version}"))),
        }
    } else {
        match object.get("schema_version") {
            None => {}
            Some(version) => match version.as_u64() {
                Some(1) => {}
                Some(newer) if newer > 1 => {
                    return Err(Undecodable::Newer(format!("schema_version {newer}")));
                }
                _ => return Err(corrupt(format!("unknown schema_version {version}"))),
            },
        }
        serde_json::from_value::<Original>(Value::Object(object))
            .map_err(|error| corrupt(format!("a field is wrong: {error}")))?
            .upgrade(modified)
    };
    // The file name is the session's identity, whatever the file says inside.
    file.name = name.as_str().to_string();
    Ok(file)
}

/// The original project's format: `schema_version: 1`, or v0 (no version, every field
/// optional: what its `add_note` wrote for a new session).
#[derive(Deserialize)]
struct Original {
    #[serde(default)]
    saved_at: Option<String>,
    #[serde(default)]
    workflow: Option<OriginalWorkflow>,
    #[serde(default)]
    notes: Option<Vec<OriginalNote>>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
struct OriginalWorkflow {
    #[serde(default)]
    loaded_path: Option<String>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    base_workflow: Option<Value>,
    #[serde(default)]
    current_workflow: Option<Value>,
    #[serde(default)]
    history_depth: Option<usize>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OriginalNote {
    Full {
        text: String,
        #[serde(default)]
        added_at: Option<String>,
    },
    Bare(String),
}

impl Original {
    fn upgrade(self, modified: SystemTime) -> SessionFile {
        let fallback = rfc3339_utc(modified);
        // The original restores a workflow only when both halves are there; so does this.
        let workflow = self
            .workflow
            .and_then(|w| match (w.base_workflow, w.current_workflow) {
                (Some(base), Some(current)) if !base.is_null() && !current.is_null() => {
                    Some(WorkflowState {
                        loaded_path: w.loaded_path,
                        format: w.format,
                        base,
                        current,
                        undo_depth: w.history_depth.unwrap_or(0),
                    })
                }
                _ => None,
            });
        let notes = self
            .notes
            .unwrap_or_default()
            .into_iter()
            .map(|note| match note {
                OriginalNote::Full { text, added_at } => Note {
                    text,
                    added_at: added_at.unwrap_or_else(|| fallback.clone()),
                },
                OriginalNote::Bare(text) => Note {
                    text,
                    added_at: fallback.clone(),
                },
            })
            .collect();
        SessionFile {
            name: String::new(),
            saved_at: self.saved_at.unwrap_or_else(|| fallback.clone()),
            workflow,
            notes,
            metadata: self.metadata.unwrap_or_default(),
        }
    }
}

/// `2025-01-02T03:04:05Z`.
pub fn rfc3339_utc(time: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = utc_fields(time);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `20250102T030405Z`, for file names.
pub(crate) fn compact_utc(time: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = utc_fields(time);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// The UTC calendar date and time of `time` (times before 1970 read as 1970).
fn utc_fields(time: SystemTime) -> (i64, u32, u32, u32, u32, u32) {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs()) as i64;
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400) as u32;
    // Count from 0000-03-01 so the leap day ends each 4-, 100- and 400-year cycle.
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store() -> (tempfile::TempDir, SessionStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SessionStore::in_data_dir(dir.path());
        (dir, store)
    }

    fn name(raw: &str) -> SessionName {
        SessionName::parse(raw).expect("valid name")
    }

    fn workflow() -> WorkflowState {
        WorkflowState {
            loaded_path: Some("workflows/portrait.json".into()),
            format: Some("api".into()),
            base: json!({"3": {"class_type": "KSampler", "inputs": {"seed": 1}}}),
            current: json!({"3": {"class_type": "KSampler", "inputs": {"seed": 42}}}),
            undo_depth: 1,
        }
    }

    fn write_raw(store: &SessionStore, file: &str, content: &str) -> PathBuf {
        fs::create_dir_all(store.dir()).expect("mkdir");
        let path = store.dir().join(file);
        fs::write(&path, content).expect("write");
        path
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut files: Vec<String> = fs::read_dir(dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        files
    }

    #[test]
    fn session_names_are_sanitised() {
        let long = "a".repeat(65);
        let rejected: &[(&str, &str)] = &[
            ("", "empty"),
            ("../x", "separator"),
            ("..", "starts with a dot"),
            ("a..b", "'..'"),
            ("a/b", "separator"),
            ("a\\b", "separator"),
            ("/etc/passwd", "separator"),
            ("C:x", "':'"),
            ("CON", "device name"),
            ("con", "device name"),
            ("con.txt", "device name"),
            ("Nul", "device name"),
            ("COM1", "device name"),
            ("lpt9.json", "device name"),
            ("aux .x", "device name"),
            (".hidden", "starts with a dot"),
            ("trailing.", "ends with a dot"),
            ("trailing ", "ends with a dot or a space"),
            (" leading", "starts with a space"),
            (&long, "longer than 64"),
            ("café", "'é'"),
            ("名前", "'名'"),
            ("emoji🎨", "'🎨'"),
            ("tab\there", "control character"),
            ("nul\0byte", "control character"),
            ("a*b", "'*'"),
            ("what?", "'?'"),
            ("plan_goals", "_goals"),
            ("plan_GOALS", "_goals"),
            ("run_outcomes", "_outcomes"),
        ];
        for (raw, why) in rejected {
            let error = SessionName::parse(raw).expect_err(raw);
            let text = error.to_string();
            assert!(text.contains(why), "{raw:?}: {text}");
            assert_eq!(error.kind(), "invalid_session_name");
        }
        let accepted = [
            "portrait",
            "Portrait v2",
            "my-session_01",
            "a.b.c",
            "x",
            "CONSOLE",
            "COM10",
            "lpt",
            "nul-not",
            "goals",
            &"a".repeat(64),
        ];
        for raw in accepted {
            assert_eq!(SessionName::parse(raw).expect(raw).as_str(), raw);
        }
        let error = SessionName::parse(&"/".repeat(500)).expect_err("long");
        assert!(error.to_string().chars().count() < 200, "{error}");
    }

    #[test]
    fn save_then_load_round_trips_in_the_current_format() {
        let (_dir, store) = store();
        let name = name("portrait");
        let mut file = SessionFile::new(&name);
        file.workflow = Some(workflow());
        file.notes.push(Note {
            text: "cfg 7 looks best".into(),
            added_at: "2025-01-02T03:04:05Z".into(),
        });
        file.metadata.insert("model".into(), json!("sdxl"));
        let saved = store.save(&name, &file).expect("save");
        assert_eq!(saved.path, store.dir().join("portrait.json"));
        assert_eq!(saved.notes_count, 1);
        assert!(saved.set_aside.is_none());
        assert_eq!(
            saved.size_bytes,
            fs::metadata(&saved.path).expect("file").len()
        );

        let on_disk: Value =
            serde_json::from_slice(&fs::read(&saved.path).expect("read")).expect("json");
        assert_eq!(on_disk["format_version"], 2);
        assert_eq!(on_disk["name"], "portrait");
        assert_eq!(on_disk["workflow"]["current"]["3"]["inputs"]["seed"], 42);
        assert_eq!(on_disk["workflow"]["undo_depth"], 1);

        let loaded = store.load(&name).expect("load");
        assert_eq!(loaded.saved_at, saved.saved_at);
        file.saved_at = saved.saved_at;
        assert_eq!(loaded, file);
        assert_eq!(files_in(store.dir()), ["portrait.json"]);
    }

    #[test]
    fn save_workflow_keeps_notes_and_add_note_keeps_the_workflow() {
        let (_dir, store) = store();
        let name = name("keep");
        store.add_note(&name, "first").expect("note");
        let saved = store.save_workflow(&name, Some(workflow())).expect("save");
        assert_eq!(saved.notes_count, 1);
        let saved = store.add_note(&name, "  second  ").expect("note");
        assert_eq!(saved.notes_count, 2);
        let loaded = store.load(&name).expect("load");
        assert_eq!(loaded.workflow, Some(workflow()));
        let texts: Vec<_> = loaded.notes.iter().map(|n| n.text.as_str()).collect();
        assert_eq!(texts, ["first", "second"]);
        store.save_workflow(&name, None).expect("clear");
        let loaded = store.load(&name).expect("load");
        assert!(loaded.workflow.is_none());
        assert_eq!(loaded.notes.len(), 2);
    }

    #[test]
    fn add_note_creates_a_missing_session() {
        let (_dir, store) = store();
        let name = name("fresh");
        let saved = store.add_note(&name, "try euler").expect("note");
        assert_eq!(saved.notes_count, 1);
        let loaded = store.load(&name).expect("load");
        assert!(loaded.workflow.is_none());
        assert_eq!(loaded.notes[0].text, "try euler");
        assert!(loaded.notes[0].added_at.ends_with('Z'));
        assert!(matches!(
            store.add_note(&name, " \n "),
            Err(StoreError::EmptyNote)
        ));
        let error = store
            .add_note(&name, &"x".repeat(MAX_NOTE_CHARS + 1))
            .expect_err("too long");
        assert!(matches!(error, StoreError::NoteTooLong { .. }));
        assert_eq!(store.load(&name).expect("load").notes.len(), 1);
    }

    #[test]
    fn notes_are_capped() {
        let (_dir, store) = store();
        let name = name("full");
        let mut file = SessionFile::new(&name);
        file.notes = (0..MAX_NOTES)
            .map(|i| Note {
                text: i.to_string(),
                added_at: String::new(),
            })
            .collect();
        store.save(&name, &file).expect("save at the cap");
        let error = store.add_note(&name, "one more").expect_err("full");
        assert!(error.to_string().contains("1000 notes"), "{error}");
        file.notes.push(file.notes[0].clone());
        assert!(matches!(
            store.save(&name, &file),
            Err(StoreError::TooManyNotes { .. })
        ));
        assert_eq!(store.load(&name).expect("load").notes.len(), MAX_NOTES);
    }

    #[test]
    fn oversized_sessions_are_refused_and_the_old_file_is_kept() {
        let (_dir, store) = store();
        let name = name("big");
        store.add_note(&name, "small").expect("note");
        let before = fs::read(store.path_of(&name)).expect("read");
        let mut file = SessionFile::new(&name);
        let huge = "x".repeat(MAX_FILE_BYTES as usize);
        file.workflow = Some(WorkflowState {
            base: json!(huge),
            current: json!({}),
            loaded_path: None,
            format: None,
            undo_depth: 0,
        });
        let error = store.save(&name, &file).expect_err("too large");
        assert!(matches!(error, StoreError::TooLarge { .. }), "{error}");
        assert_eq!(fs::read(store.path_of(&name)).expect("read"), before);
        assert_eq!(files_in(store.dir()), ["big.json"]);

        // An oversized file on disk is refused, not read and not set aside.
        let path = write_raw(&store, "huge.json", "");
        fs::File::options()
            .write(true)
            .open(&path)
            .expect("open")
            .set_len(MAX_FILE_BYTES + 1)
            .expect("grow");
        let error = store.load(&SessionName::parse("huge").expect("name"));
        assert!(matches!(error, Err(StoreError::TooLarge { .. })));
        assert!(path.exists());
    }

    #[test]
    fn original_version_1_files_are_upgraded_on_read() {
        let (_dir, store) = store();
        // As the original project wrote it: sorted keys, indent 2, local time without a zone.
        write_raw(
            &store,
            "portrait.json",
            r#"{
  "metadata": {
    "checkpoint": "sd_xl_base_1.0.safetensors"
  },
  "name": "portrait",
  "notes": [
    {
      "added_at": "2025-03-01T14:22:10.123456",
      "text": "cfg 7 works"
    }
  ],
  "saved_at": "2025-03-01T14:20:00",
  "schema_version": 1,
  "workflow": {
    "base_workflow": {
      "3": {"class_type": "KSampler", "inputs": {"seed": 1}}
    },
    "current_workflow": {
      "3": {"class_type": "KSampler", "inputs": {"seed": 42}}
    },
    "format": "api",
    "history_depth": 1,
    "loaded_path": "workflows/portrait.json"
  }
}
"#,
        );
        let name = name("portrait");
        let loaded = store.load(&name).expect("v1 loads");
        assert_eq!(loaded.name, "portrait");
        assert_eq!(loaded.saved_at, "2025-03-01T14:20:00");
        assert_eq!(loaded.workflow, Some(workflow()));
        assert_eq!(
            loaded.notes,
            [Note {
                text: "cfg 7 works".into(),
                added_at: "2025-03-01T14:22:10.123456".into()
            }]
        );
        assert_eq!(loaded.metadata["checkpoint"], "sd_xl_base_1.0.safetensors");

        // Nothing is rewritten on read; the next write is in the current format.
        let raw: Value =
            serde_json::from_slice(&fs::read(store.path_of(&name)).expect("read")).expect("json");
        assert_eq!(raw["schema_version"], 1);
        store.add_note(&name, "upgraded").expect("note");
        let raw: Value =
            serde_json::from_slice(&fs::read(store.path_of(&name)).expect("read")).expect("json");
        assert_eq!(raw["format_version"], 2);
        assert!(raw.get("schema_version").is_none());
        let again = store.load(&name).expect("load");
        assert_eq!(again.workflow, Some(workflow()));
        assert_eq!(again.notes.len(), 2);
        assert_eq!(again.saved_at, "2025-03-01T14:20:00");
    }

    #[test]
    fn original_version_1_without_a_workflow_and_v0_files_are_upgraded() {
        let (_dir, store) = store();
        write_raw(
            &store,
            "empty.json",
            r#"{"metadata": {}, "name": "empty", "notes": [], "saved_at": "2025-03-01T09:00:00",
                "schema_version": 1, "workflow": {"format": null, "loaded_path": null}}"#,
        );
        let loaded = store.load(&name("empty")).expect("v1 without workflow");
        assert!(loaded.workflow.is_none());
        assert!(loaded.notes.is_empty());

        // v0: no schema_version; what the original add_note wrote for a new session.
        let path = write_raw(
            &store,
            "jotted.json",
            r#"{"name": "jotted", "notes": [{"text": "remember the seed", "added_at": "2025-02-01T08:00:00"}, "bare note"]}"#,
        );
        let modified = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        fs::File::options()
            .write(true)
            .open(&path)
            .expect("open")
            .set_modified(modified)
            .expect("mtime");
        let loaded = store.load(&name("jotted")).expect("v0 loads");
        assert_eq!(loaded.name, "jotted");
        assert_eq!(loaded.saved_at, "2023-11-14T22:13:20Z");
        assert!(loaded.workflow.is_none());
        assert_eq!(loaded.notes.len(), 2);
        assert_eq!(loaded.notes[0].added_at, "2025-02-01T08:00:00");
        assert_eq!(loaded.notes[1].text, "bare note");
        assert_eq!(loaded.notes[1].added_at, "2023-11-14T22:13:20Z");

        // A v0 file whose name field disagrees: the file name wins.
        write_raw(&store, "renamed.json", r#"{"name": "other", "notes": []}"#);
        assert_eq!(store.load(&name("renamed")).expect("load").name, "renamed");
    }

    #[test]
    fn a_damaged_file_is_set_aside_and_reported() {
        let (_dir, store) = store();
        let cases = [
            (
                "truncated",
                r#"{"format_version": 2, "name": "trunc"#,
                "not valid JSON",
            ),
            ("array", "[1, 2]", "not a JSON object"),
            (
                "wrongtype",
                r#"{"format_version": 2, "name": "w", "saved_at": 5}"#,
                "a field is wrong",
            ),
            (
                "badversion",
                r#"{"schema_version": "one"}"#,
                "unknown schema_version",
            ),
        ];
        for (raw, content, reason) in cases {
            write_raw(&store, &format!("{raw}.json"), content);
            let listed = store.list().expect("list");
            let summary = listed.iter().find(|s| s.name == raw).expect("listed");
            assert!(summary.corrupt, "{raw}");
            let error = store.load(&name(raw)).expect_err(raw);
            let text = error.to_string();
            assert!(text.contains(reason), "{raw}: {text}");
            assert!(text.contains("moved aside as"), "{text}");
            let StoreError::Corrupt {
                set_aside: Some(moved),
                ..
            } = &error
            else {
                panic!("{raw}: {error:?}");
            };
            assert!(!store.dir().join(format!("{raw}.json")).exists());
            assert_eq!(fs::read_to_string(moved).expect("kept"), content);
            let file_name = moved.file_name().expect("name").to_string_lossy();
            assert!(file_name.starts_with(&format!("{raw}.json.corrupt-")));
            // Now it is simply missing; saving starts afresh.
            assert!(matches!(
                store.load(&name(raw)),
                Err(StoreError::NotFound { .. })
            ));
        }
        // Set-aside files are not sessions.
        assert!(store.list().expect("list").is_empty());
    }

    #[test]
    fn writing_over_a_damaged_file_sets_it_aside_first() {
        let (_dir, store) = store();
        write_raw(&store, "oops.json", "{not json");
        let saved = store.add_note(&name("oops"), "hello").expect("note");
        let moved = saved.set_aside.expect("set aside");
        assert_eq!(fs::read_to_string(moved).expect("kept"), "{not json");
        assert_eq!(store.load(&name("oops")).expect("load").notes.len(), 1);
    }

    #[test]
    fn newer_formats_are_refused_and_never_overwritten() {
        let (_dir, store) = store();
        let content = r#"{"format_version": 3, "name": "future", "whatever": true}"#;
        let path = write_raw(&store, "future.json", content);
        let error = store.load(&name("future")).expect_err("newer");
        assert!(matches!(error, StoreError::NewerFormat { .. }), "{error}");
        assert!(matches!(
            store.add_note(&name("future"), "x"),
            Err(StoreError::NewerFormat { .. })
        ));
        assert!(matches!(
            store.save(&name("future"), &SessionFile::new(&name("future"))),
            Err(StoreError::NewerFormat { .. })
        ));
        assert_eq!(fs::read_to_string(&path).expect("read"), content);
        let listed = store.list().expect("list");
        assert!(!listed[0].corrupt);
        assert!(
            listed[0]
                .problem
                .as_deref()
                .is_some_and(|p| p.contains("newer"))
        );
    }

    #[test]
    fn not_found_names_the_saved_sessions() {
        let (_dir, store) = store();
        let error = store.load(&name("nope")).expect_err("missing");
        assert!(
            error
                .to_string()
                .contains("No sessions have been saved yet"),
            "{error}"
        );
        store.add_note(&name("b"), "x").expect("note");
        store.add_note(&name("a"), "x").expect("note");
        write_raw(&store, "plan_goals.json", "{}");
        let error = store.load(&name("nope")).expect_err("missing");
        let StoreError::NotFound { available, .. } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(available, &["a", "b"]);
        assert!(error.to_string().contains("Saved sessions: a, b."));
        assert_eq!(error.kind(), "not_found");
    }

    #[test]
    fn list_shows_session_files_only() {
        let (_dir, store) = store();
        assert!(store.list().expect("no folder yet").is_empty());
        store
            .save_workflow(&name("with-workflow"), Some(workflow()))
            .expect("save");
        store.add_note(&name("notes only"), "n").expect("note");
        write_raw(&store, "plan_goals.json", r#"{"goal_id": "g1"}"#);
        write_raw(&store, "plan_outcomes.jsonl", "{}\n");
        write_raw(&store, "plan_outcomes.jsonl.1", "{}\n");
        write_raw(&store, ".with-workflow.json.0123abcd.tmp", "{");
        write_raw(&store, "old.json.corrupt-20250101T000000Z", "{");
        write_raw(&store, ".hidden.json", "{}");
        write_raw(&store, "CON.json", "{}");
        write_raw(&store, "readme.txt", "hi");
        fs::create_dir_all(store.dir().join("folder.json")).expect("mkdir");
        let listed = store.list().expect("list");
        let names: Vec<_> = listed.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["notes only", "with-workflow"]);
        assert!(!listed[0].has_workflow);
        assert_eq!(listed[0].notes_count, 1);
        assert!(listed[1].has_workflow);
        assert!(listed.iter().all(|s| !s.corrupt && s.problem.is_none()));
        assert!(
            listed
                .iter()
                .all(|s| s.saved_at.as_deref().is_some_and(|t| t.ends_with('Z')))
        );
    }

    #[test]
    fn garbage_collection_removes_sessions_by_age() {
        let (_dir, store) = store();
        let now = SystemTime::now();
        let age = |path: &Path, days: u64| {
            fs::File::options()
                .write(true)
                .open(path)
                .expect("open")
                .set_modified(now - Duration::from_secs(days * 86_400))
                .expect("mtime");
        };
        for (session, days) in [("ancient", 200), ("stale", 91), ("recent", 10)] {
            let saved = store.add_note(&name(session), "x").expect("note");
            age(&saved.path, days);
        }
        store.add_note(&name("today"), "x").expect("note");
        let goals = write_raw(&store, "ancient_goals.json", "{}");
        age(&goals, 300);
        let set_aside = write_raw(&store, "gone.json.corrupt-20200101T000000Z", "{");
        age(&set_aside, 300);
        let fresh_aside = write_raw(&store, "new.json.corrupt-20990101T000000Z", "{");
        let old_temp = write_raw(&store, ".x.json.abc.tmp", "{");
        age(&old_temp, 1);
        let new_temp = write_raw(&store, ".y.json.abc.tmp", "{");

        let mut removed = store
            .collect_garbage(Duration::from_secs(90 * 86_400))
            .expect("gc");
        removed.sort();
        assert_eq!(removed, ["ancient", "stale"]);
        let names: Vec<_> = store
            .list()
            .expect("list")
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["recent", "today"]);
        assert!(goals.exists(), "other tools' files are not ours to remove");
        assert!(!set_aside.exists());
        assert!(fresh_aside.exists());
        assert!(!old_temp.exists());
        assert!(
            new_temp.exists(),
            "a temp file may belong to a write in progress"
        );
        assert!(
            store
                .collect_garbage(Duration::from_secs(90 * 86_400))
                .expect("gc")
                .is_empty()
        );
    }

    #[test]
    fn concurrent_notes_in_one_store_are_all_kept() {
        let (_dir, store) = store();
        let name = name("busy");
        std::thread::scope(|scope| {
            for thread in 0..8 {
                let (store, name) = (&store, &name);
                scope.spawn(move || {
                    for i in 0..10 {
                        store
                            .add_note(name, &format!("{thread}-{i}"))
                            .expect("note");
                    }
                });
            }
        });
        assert_eq!(store.load(&name).expect("load").notes.len(), 80);
    }

    #[test]
    fn concurrent_writers_never_tear_a_session() {
        // Two stores on one folder stand for two server processes: no shared lock, only the
        // atomic writes keep the file whole.
        let dir = tempfile::tempdir().expect("tempdir");
        let stores = [
            SessionStore::in_data_dir(dir.path()),
            SessionStore::in_data_dir(dir.path()),
        ];
        let name = name("contended");
        let big = |seed: u64| WorkflowState {
            loaded_path: None,
            format: Some("api".into()),
            base: json!({}),
            current: Value::Object(
                (0..500)
                    .map(|node| {
                        (
                            node.to_string(),
                            json!({"class_type": "X", "inputs": {"seed": seed}}),
                        )
                    })
                    .collect(),
            ),
            undo_depth: 0,
        };
        stores[0].save_workflow(&name, Some(big(0))).expect("first");
        std::thread::scope(|scope| {
            for (i, store) in stores.iter().enumerate() {
                let name = &name;
                let state = big(i as u64 + 1);
                scope.spawn(move || {
                    for _ in 0..15 {
                        store
                            .save_workflow(name, Some(state.clone()))
                            .expect("save");
                    }
                });
            }
            for store in &stores {
                let name = &name;
                scope.spawn(move || {
                    for _ in 0..30 {
                        let loaded = store.load(name).expect("never torn");
                        let current = loaded.workflow.expect("workflow").current;
                        assert_eq!(current.as_object().expect("object").len(), 500);
                    }
                });
            }
        });
        assert_eq!(files_in(&dir.path().join("sessions")), ["contended.json"]);
    }

    #[test]
    fn utc_timestamps_are_formatted_from_system_time() {
        let at = |secs: u64| rfc3339_utc(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(at(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(at(4_102_444_800), "2100-01-01T00:00:00Z");
        assert_eq!(
            compact_utc(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            "20231114T221320Z"
        );
    }
}
