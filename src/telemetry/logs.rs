//! Log lines: text or JSON, to stderr or a size-rotated file, never to stdout (in stdio mode
//! stdout is the protocol).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing_subscriber::Registry;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::Layer;

use crate::config::Env;
use crate::error::ConfigError;
use crate::paths::expand_home;

pub const ENV_LOG_FORMAT: &str = "COMFYUI_AGENT_LOG_FORMAT";
pub const ENV_LOG_FILE: &str = "COMFYUI_AGENT_LOG_FILE";
pub const ENV_RUST_LOG: &str = "RUST_LOG";

/// A log file grows to this size before it is rotated.
pub const LOG_FILE_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Rotated files kept besides the current one (`agent.log.1` … `agent.log.4`).
pub const LOG_FILES_KEPT: u32 = 4;

/// How each log line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One readable line per event (the default).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Where logs go, in what shape, and which ones.
#[derive(Debug, Clone, Default)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A file instead of stderr.
    pub file: Option<PathBuf>,
    /// `RUST_LOG`'s directives; the built-in filter when unset.
    pub directives: Option<String>,
}

impl LogSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let format = match env.get(ENV_LOG_FORMAT) {
            None => LogFormat::Text,
            Some(raw) if raw.eq_ignore_ascii_case("text") => LogFormat::Text,
            Some(raw) if raw.eq_ignore_ascii_case("json") => LogFormat::Json,
            Some(raw) => {
                return Err(ConfigError::new(
                    ENV_LOG_FORMAT,
                    raw,
                    "which is not a log format",
                    "Use text (readable lines, the default) or json (one JSON object per line).",
                ));
            }
        };
        let file = env.get(ENV_LOG_FILE).map(|raw| expand_home(Path::new(raw)));
        if let Some(path) = &file {
            check_log_path(path)?;
        }
        Ok(Self {
            format,
            file,
            directives: env.get(ENV_RUST_LOG).map(str::to_string),
        })
    }
}

fn check_log_path(path: &Path) -> Result<(), ConfigError> {
    let shown = path.display().to_string();
    if path.is_dir() {
        return Err(ConfigError::new(
            ENV_LOG_FILE,
            shown,
            "which is a folder",
            "Name a file inside it, like logs/comfyui-agent.log.",
        ));
    }
    let parent = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(ConfigError::new(
            ENV_LOG_FILE,
            shown,
            format!("but the folder {} does not exist", parent.display()),
            "Create the folder first, or pick a file in an existing one.",
        ));
    }
    Ok(())
}

/// The log layer for `settings`, with its own filter (so the trace layer can see spans the
/// logs leave out). Without `RUST_LOG` the filter is a fixed table: parsing `RUST_LOG`'s full
/// syntax costs start-up time.
pub fn layer(
    settings: &LogSettings,
) -> Result<Box<dyn Layer<Registry> + Send + Sync>, ConfigError> {
    let (writer, terminal) = match &settings.file {
        Some(path) => (BoxMakeWriter::new(Mutex::new(open(path)?)), false),
        None => {
            use std::io::IsTerminal;
            (
                BoxMakeWriter::new(std::io::stderr),
                std::io::stderr().is_terminal(),
            )
        }
    };
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
    let fmt: Box<dyn Layer<Registry> + Send + Sync> = match settings.format {
        LogFormat::Text => fmt.with_ansi(terminal).boxed(),
        LogFormat::Json => fmt
            .json()
            .with_span_list(false)
            .with_current_span(true)
            .boxed(),
    };
    let directives = settings.directives.as_deref().map(str::trim);
    Ok(match directives.filter(|d| !d.is_empty()) {
        Some(directives) => {
            let filter = tracing_subscriber::EnvFilter::try_new(directives).unwrap_or_else(|error| {
                eprintln!(
                    "comfyui-agent: RUST_LOG={directives:?} is not a log filter ({error}); using info. Use levels like info or debug, or targets like comfyui_agent=debug."
                );
                tracing_subscriber::EnvFilter::new("info,rmcp=warn")
            });
            fmt.with_filter(filter).boxed()
        }
        // Without RUST_LOG the log layer takes events only: recording every request's span
        // (formatting its fields) would cost a small call about a fifth of its time. With no
        // exporter either, request spans are then never built.
        None => fmt
            .with_filter(default_filter())
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                !meta.is_span()
            }))
            .boxed(),
    })
}

/// INFO for everything, WARN for rmcp (its INFO lines are per-request noise).
pub fn default_filter() -> Targets {
    Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("rmcp", LevelFilter::WARN)
}

fn open(path: &Path) -> Result<RotatingFile, ConfigError> {
    RotatingFile::open(path, LOG_FILE_MAX_BYTES, LOG_FILES_KEPT).map_err(|error| {
        ConfigError::new(
            ENV_LOG_FILE,
            path.display().to_string(),
            format!("which cannot be opened for writing ({error})"),
            "Pick a file this user may write, or unset it to log to stderr.",
        )
    })
}

/// A log file rotated by size: when a line would take it past `max_bytes`, `x.log` becomes
/// `x.log.1` (`x.log.1` becomes `x.log.2`, and so on, the oldest beyond `kept` is removed)
/// and a fresh `x.log` starts.
///
/// Size rather than daily rotation (tracing-appender's kind): a busy day can't fill the disk
/// of an artist's machine, a quiet week doesn't leave seven tiny files, and no extra crates
/// (tracing-appender brings `time` and a channel crate). Lines are written synchronously,
/// like stderr: a few lines per tool call don't need a background writer, and nothing is
/// lost when the process is killed.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    file: File,
    written: u64,
    max_bytes: u64,
    kept: u32,
}

impl RotatingFile {
    pub fn open(path: &Path, max_bytes: u64, kept: u32) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let written = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            written,
            max_bytes,
            kept,
        })
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        // Missing older files are fine: the shift just has fewer steps.
        let _ = std::fs::remove_file(self.rotated(self.kept));
        for n in (1..self.kept).rev() {
            let _ = std::fs::rename(self.rotated(n), self.rotated(n + 1));
        }
        if self.kept > 0 {
            std::fs::rename(&self.path, self.rotated(1))?;
        }
        self.file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.path)?;
        self.written = 0;
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.written > 0 && self.written + buf.len() as u64 > self.max_bytes {
            // A file that can't be rotated keeps growing rather than losing lines.
            if let Err(error) = self.rotate() {
                eprintln!(
                    "comfyui-agent: cannot rotate the log file {} ({error})",
                    self.path.display()
                );
                self.written = 0;
            }
        }
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_checked() {
        let json = LogSettings::from_env(&Env::from_map([(ENV_LOG_FORMAT, "JSON")])).expect("ok");
        assert_eq!(json.format, LogFormat::Json);
        let error = LogSettings::from_env(&Env::from_map([(ENV_LOG_FORMAT, "xml")]))
            .expect_err("xml is no format");
        let line = error.to_string();
        assert!(line.contains("COMFYUI_AGENT_LOG_FORMAT"), "{line}");
        assert!(line.contains("text") && line.contains("json"), "{line}");
        assert_eq!(
            LogSettings::from_env(&Env::default()).expect("ok").format,
            LogFormat::Text
        );
    }

    #[test]
    fn log_files_need_an_existing_folder() {
        let dir = tempfile::tempdir().expect("dir");
        let missing = dir.path().join("nope/agent.log");
        let error = LogSettings::from_env(&Env::from_map([(
            ENV_LOG_FILE,
            missing.display().to_string(),
        )]))
        .expect_err("missing folder");
        assert!(error.to_string().contains("does not exist"), "{error}");
        let error = LogSettings::from_env(&Env::from_map([(
            ENV_LOG_FILE,
            dir.path().display().to_string(),
        )]))
        .expect_err("a folder");
        assert!(error.to_string().contains("folder"), "{error}");
    }

    #[test]
    fn files_rotate_by_size_and_keep_a_few() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("agent.log");
        let mut file = RotatingFile::open(&path, 100, 2).expect("open");
        for n in 0..10 {
            writeln!(file, "{n:0>59}").expect("write");
        }
        let name = |suffix: &str| dir.path().join(format!("agent.log{suffix}"));
        assert!(name("").exists() && name(".1").exists() && name(".2").exists());
        assert!(!name(".3").exists(), "only two rotated files are kept");
        for suffix in ["", ".1", ".2"] {
            let len = std::fs::metadata(name(suffix)).expect("meta").len();
            assert!(len <= 100, "{suffix}: {len} bytes");
        }
        let last = std::fs::read_to_string(name("")).expect("read");
        assert!(last.ends_with(&format!("{:0>59}\n", 9)), "{last}");
    }
}
