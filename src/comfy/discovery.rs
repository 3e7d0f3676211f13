//! Finding the user's ComfyUI on disk when they did not say where it is, and the folders its
//! models live in (`models/<kind>` plus every `extra_model_paths.yaml`).
//!
//! Everything here reads the disk and never fails: what cannot be used becomes a
//! [`DiscoveryNote`] with the file, the problem and what to do, and the rest still works. Facts
//! about the machine (home folder, app-data folders, operating system) come in through
//! [`Host`], so every layout can be tested on any machine with fake homes.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

/// The operating system family: it decides where other apps keep their settings, and how the
/// paths written in their config files read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostOs {
    Windows,
    MacOs,
    Linux,
}

/// The machine facts discovery depends on. [`Host::current`] reads the running process; tests
/// build one by hand around a temporary home.
#[derive(Debug, Clone)]
pub struct Host {
    pub os: HostOs,
    pub home: Option<PathBuf>,
    /// `%APPDATA%` (Windows): the Desktop app's settings live under it.
    pub appdata: Option<PathBuf>,
    /// `%LOCALAPPDATA%` (Windows): comfy-cli's settings and the Desktop app's code live under it.
    pub local_appdata: Option<PathBuf>,
    /// `$XDG_CONFIG_HOME` (Linux): Electron apps such as the Desktop app honour it.
    pub xdg_config_home: Option<PathBuf>,
}

impl Host {
    /// The machine this process runs on.
    pub fn current() -> Self {
        let os = if cfg!(windows) {
            HostOs::Windows
        } else if cfg!(target_os = "macos") {
            HostOs::MacOs
        } else {
            HostOs::Linux
        };
        let var = |key: &str| {
            std::env::var_os(key)
                .filter(|value| !value.is_empty())
                .map(PathBuf::from)
                .filter(|path| path.is_absolute())
        };
        Self {
            os,
            home: dirs::home_dir(),
            appdata: var("APPDATA"),
            local_appdata: var("LOCALAPPDATA"),
            xdg_config_home: var("XDG_CONFIG_HOME"),
        }
    }

    fn home_join(&self, parts: &[&str]) -> Option<PathBuf> {
        self.home.as_ref().map(|home| {
            parts
                .iter()
                .fold(home.clone(), |path, part| path.join(part))
        })
    }

    /// comfy-cli's settings folder (it hard-codes `~/.config` on Linux, ignoring XDG).
    pub fn comfy_cli_dir(&self) -> Option<PathBuf> {
        let base = match self.os {
            HostOs::Windows => self
                .local_appdata
                .clone()
                .or_else(|| self.home_join(&["AppData", "Local"])),
            HostOs::MacOs => self.home_join(&["Library", "Application Support"]),
            HostOs::Linux => self.home_join(&[".config"]),
        };
        base.map(|base| base.join("comfy-cli"))
    }

    /// The ComfyUI Desktop app's settings folder (Electron's per-user app-data folder).
    pub fn desktop_dir(&self) -> Option<PathBuf> {
        let base = match self.os {
            HostOs::Windows => self
                .appdata
                .clone()
                .or_else(|| self.home_join(&["AppData", "Roaming"])),
            HostOs::MacOs => self.home_join(&["Library", "Application Support"]),
            HostOs::Linux => self
                .xdg_config_home
                .clone()
                .or_else(|| self.home_join(&[".config"])),
        };
        base.map(|base| base.join("ComfyUI"))
    }

    /// Where the Desktop app's installer puts the ComfyUI code (not the user's files).
    fn desktop_code_dirs(&self) -> Vec<PathBuf> {
        match self.os {
            HostOs::Windows => self
                .local_appdata
                .clone()
                .or_else(|| self.home_join(&["AppData", "Local"]))
                .map(|base| {
                    base.join("Programs")
                        .join("@comfyorgcomfyui-electron")
                        .join("resources")
                        .join("ComfyUI")
                })
                .into_iter()
                .collect(),
            HostOs::MacOs => {
                let bundle = Path::new("ComfyUI.app/Contents/Resources/ComfyUI");
                let mut dirs: Vec<PathBuf> = self
                    .home_join(&["Applications"])
                    .map(|apps| apps.join(bundle))
                    .into_iter()
                    .collect();
                dirs.push(Path::new("/Applications").join(bundle));
                dirs
            }
            // The Linux build is an AppImage: its code is unpacked somewhere new each run.
            HostOs::Linux => Vec::new(),
        }
    }

    /// The folders people usually put ComfyUI in, most likely first.
    fn usual_roots(&self) -> Vec<PathBuf> {
        let Some(home) = &self.home else {
            return Vec::new();
        };
        [
            vec![],
            vec!["Documents"],
            vec!["comfy"],
            vec!["Documents", "comfy"],
            vec!["Desktop"],
        ]
        .iter()
        .map(|parts| {
            parts
                .iter()
                .fold(home.clone(), |path, part| path.join(part))
        })
        .collect()
    }

    /// A path as written in another program's config file, as this host reads it: surrounding
    /// quotes and spaces dropped, `~` expanded, `\\?\` removed where that is safe, and on
    /// Windows forward slashes turned into backslashes.
    pub fn config_path(&self, raw: &str) -> PathBuf {
        let raw = raw.trim().trim_matches('"').trim();
        let expanded = self.expand_home(raw);
        match self.os {
            HostOs::Windows => PathBuf::from(windows_normalise(&expanded)),
            HostOs::MacOs | HostOs::Linux => lexical_normalise(Path::new(&expanded)),
        }
    }

    /// Whether `raw` (already `~`-expanded) names a path on its own, by this host's rules:
    /// on Windows a drive letter or a `\\server` share, elsewhere a leading `/`.
    fn is_absolute(&self, raw: &str) -> bool {
        match self.os {
            HostOs::Windows => {
                let bytes = raw.as_bytes();
                let drive = bytes.len() >= 3
                    && bytes[0].is_ascii_alphabetic()
                    && bytes[1] == b':'
                    && matches!(bytes[2], b'\\' | b'/');
                drive || raw.starts_with("\\\\") || raw.starts_with("//")
            }
            HostOs::MacOs | HostOs::Linux => raw.starts_with('/'),
        }
    }

    /// `raw` from a config file, resolved against `base` when it is relative.
    pub fn resolve(&self, base: &Path, raw: &str) -> PathBuf {
        let raw = raw.trim().trim_matches('"').trim();
        let expanded = self.expand_home(raw);
        if self.is_absolute(&expanded) {
            return self.config_path(&expanded);
        }
        match self.os {
            HostOs::Windows => {
                let base = base.to_string_lossy();
                // `\models` means the root of the base folder's drive, as in Python's join.
                let joined = match (expanded.starts_with(['\\', '/']), base.get(..2)) {
                    (true, Some(drive)) if drive.ends_with(':') => format!("{drive}{expanded}"),
                    (true, _) => expanded,
                    (false, _) => format!("{base}\\{expanded}"),
                };
                PathBuf::from(windows_normalise(&joined))
            }
            HostOs::MacOs | HostOs::Linux => lexical_normalise(&base.join(&expanded)),
        }
    }

    fn expand_home(&self, raw: &str) -> String {
        let rest = if raw == "~" {
            Some("")
        } else {
            raw.strip_prefix("~/").or_else(|| raw.strip_prefix("~\\"))
        };
        match (rest, &self.home) {
            (Some(rest), Some(home)) => {
                let home = home.to_string_lossy();
                if rest.is_empty() {
                    home.into_owned()
                } else {
                    let separator = if self.os == HostOs::Windows {
                        '\\'
                    } else {
                        '/'
                    };
                    format!("{}{separator}{rest}", home.trim_end_matches(['/', '\\']))
                }
            }
            _ => raw.to_string(),
        }
    }
}

/// How the install is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// A plain checkout or comfy-cli workspace: code and user files in one folder.
    Standard,
    /// The Windows portable build: `ComfyUI_windows_portable/ComfyUI` next to `python_embeded`.
    Portable,
    /// The Desktop app: the user's files under its `basePath`, the code inside the app.
    Desktop,
}

/// Where the install folder came from, for telling the user how it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallSource {
    /// `--comfyui-dir`, `COMFYUI_DIR` or `COMFYUI_DATABASE`.
    Configured,
    /// comfy-cli's `config.ini` (`default_workspace` or `recent_workspace`).
    ComfyCli { config: PathBuf, key: &'static str },
    /// The Desktop app's `config.json` (`basePath`).
    Desktop { config: PathBuf },
    /// One of the usual folders.
    UsualLocation,
}

impl fmt::Display for InstallSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Configured => f.write_str("the configured ComfyUI folder"),
            Self::ComfyCli { config, key } => {
                write!(f, "comfy-cli's {key} in {}", config.display())
            }
            Self::Desktop { config } => {
                write!(f, "the ComfyUI Desktop settings in {}", config.display())
            }
            Self::UsualLocation => f.write_str("a usual ComfyUI location"),
        }
    }
}

/// A ComfyUI install on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Install {
    /// The folder holding the user's files: `models`, `custom_nodes`, `input`, `output`, `user`.
    pub base_dir: PathBuf,
    /// The folder holding `main.py`, when known. For a standard or portable install it is
    /// `base_dir`; the Desktop app keeps it inside the application, and a configured data
    /// folder may have none.
    pub code_dir: Option<PathBuf>,
    pub layout: Layout,
    pub found_by: InstallSource,
    /// The `extra_model_paths.yaml` files this install reads, whether or not they exist yet.
    pub extra_model_paths: Vec<PathBuf>,
}

impl Install {
    pub fn models_dir(&self) -> PathBuf {
        self.base_dir.join("models")
    }

    /// The custom node packs folder. The original project hard-coded `Custom_Nodes`; a stock
    /// install says `custom_nodes`, so the exact name wins and any other spelling is found
    /// by a case-insensitive look at the folder.
    pub fn custom_nodes_dir(&self) -> PathBuf {
        child_any_case(&self.base_dir, "custom_nodes")
    }

    pub fn input_dir(&self) -> PathBuf {
        self.base_dir.join("input")
    }

    pub fn output_dir(&self) -> PathBuf {
        self.base_dir.join("output")
    }

    pub fn user_dir(&self) -> PathBuf {
        self.base_dir.join("user")
    }
}

/// Something discovery could not use, with the file it concerns and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryNote {
    /// A settings file points at a folder that is not there (a moved or deleted install).
    #[error("{origin} points at {}, which does not exist", path.display())]
    MissingFolder {
        origin: InstallSource,
        path: PathBuf,
    },
    /// A settings file points at a folder that is not a ComfyUI install.
    #[error("{origin} points at {}, which has no main.py", path.display())]
    NotComfyUi {
        origin: InstallSource,
        path: PathBuf,
    },
    /// A settings file exists but cannot be read or understood.
    #[error("{} could not be read: {problem}", file.display())]
    Unreadable { file: PathBuf, problem: String },
    /// A model paths file is not valid YAML, or has an entry of the wrong shape.
    #[error("{}{}: {problem}", file.display(), line.map(|l| format!(", line {l}")).unwrap_or_default())]
    BadModelPaths {
        file: PathBuf,
        line: Option<usize>,
        problem: String,
    },
}

impl DiscoveryNote {
    /// The next step for the artist.
    pub fn hint(&self) -> &'static str {
        match self {
            Self::MissingFolder { .. } | Self::NotComfyUi { .. } => {
                "If ComfyUI moved, set COMFYUI_DIR to its folder (the one holding main.py)."
            }
            Self::Unreadable { .. } => {
                "Check the file's permissions, or set COMFYUI_DIR to your ComfyUI folder."
            }
            Self::BadModelPaths { .. } => {
                "Fix that entry (ComfyUI cannot read it either); models in the other folders are still listed."
            }
        }
    }

    /// The full sentence an artist reads: the problem, then the next step.
    pub fn user_message(&self) -> String {
        format!("{self}. {}", self.hint())
    }
}

/// What install discovery found, and what it passed over on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    pub install: Option<Install>,
    pub notes: Vec<DiscoveryNote>,
    /// Every folder looked at, in order, for a "looked in …" message when nothing was found.
    pub searched: Vec<PathBuf>,
}

impl Discovery {
    /// A message for when nothing was found, naming where discovery looked and the fix.
    pub fn not_found_message(&self) -> String {
        let mut text = String::from("No ComfyUI folder was found. Looked in:");
        for path in &self.searched {
            text.push_str("\n- ");
            text.push_str(&path.display().to_string());
        }
        for note in &self.notes {
            text.push('\n');
            text.push_str(&note.to_string());
        }
        text.push_str(
            "\nSet COMFYUI_DIR (or --comfyui-dir) to your ComfyUI folder, the one holding main.py, models and custom_nodes.",
        );
        text
    }
}

/// Finds the ComfyUI install: the configured folder, then comfy-cli's workspace, then the
/// Desktop app's `basePath`, then the usual folders. The first usable one wins; sources that
/// point somewhere unusable leave a note and discovery goes on.
pub fn discover_install(host: &Host, configured: Option<&Path>) -> Discovery {
    let mut discovery = Discovery {
        install: None,
        notes: Vec::new(),
        searched: Vec::new(),
    };
    if let Some(dir) = configured {
        // Only to recognise a Desktop basePath; its problems are not the user's concern here.
        let desktop = read_desktop_config(host, &mut Vec::new());
        discovery.searched.push(dir.to_path_buf());
        let install = match comfy_folder(dir) {
            Some((code, layout)) => standard_install(code, layout, InstallSource::Configured),
            // The user named it: use it even without main.py (a data folder, or an install
            // whose code lives elsewhere).
            None => Install {
                base_dir: canonical(dir),
                code_dir: None,
                layout: Layout::Standard,
                found_by: InstallSource::Configured,
                extra_model_paths: Vec::new(),
            },
        };
        discovery.install = Some(match &desktop {
            Some(desktop) if same_folder(&install.base_dir, &desktop.base_path) => {
                desktop_install(host, desktop, InstallSource::Configured)
            }
            _ => install,
        });
        return discovery;
    }

    if let Some(install) = from_comfy_cli(host, &mut discovery) {
        discovery.install = Some(install);
        return discovery;
    }

    let desktop = read_desktop_config(host, &mut discovery.notes);
    if let Some(desktop) = &desktop {
        let source = InstallSource::Desktop {
            config: desktop.config.clone(),
        };
        discovery.searched.push(desktop.base_path.clone());
        if desktop.base_path.is_dir() {
            discovery.install = Some(desktop_install(host, desktop, source));
            return discovery;
        }
        discovery.notes.push(DiscoveryNote::MissingFolder {
            origin: source,
            path: desktop.base_path.clone(),
        });
    }

    for root in host.usual_roots() {
        for candidate in [
            root.join("ComfyUI"),
            root.join("ComfyUI_windows_portable").join("ComfyUI"),
        ] {
            discovery.searched.push(candidate.clone());
            if let Some((code, layout)) = comfy_folder(&candidate) {
                discovery.install =
                    Some(standard_install(code, layout, InstallSource::UsualLocation));
                return discovery;
            }
        }
    }
    discovery
}

fn standard_install(code: PathBuf, layout: Layout, found_by: InstallSource) -> Install {
    Install {
        base_dir: code.clone(),
        extra_model_paths: vec![code.join("extra_model_paths.yaml")],
        code_dir: Some(code),
        layout,
        found_by,
    }
}

/// The Desktop app's settings, as far as discovery needs them.
#[derive(Debug, Clone)]
struct DesktopConfig {
    config: PathBuf,
    base_path: PathBuf,
    /// The model paths file the app writes and passes to ComfyUI.
    models_yaml: PathBuf,
}

fn read_desktop_config(host: &Host, notes: &mut Vec<DiscoveryNote>) -> Option<DesktopConfig> {
    let dir = host.desktop_dir()?;
    let config = dir.join("config.json");
    let text = read_optional(&config, notes)?;
    let value: serde_json::Value = match serde_json::from_str(&text) {
        Ok(value) => value,
        Err(error) => {
            notes.push(DiscoveryNote::Unreadable {
                file: config,
                problem: format!("it is not valid JSON ({error})"),
            });
            return None;
        }
    };
    // A config without basePath belongs to a Desktop app that never finished installing.
    let raw = value.get("basePath")?.as_str()?;
    if raw.trim().is_empty() {
        return None;
    }
    Some(DesktopConfig {
        base_path: canonical(&host.config_path(raw)),
        models_yaml: dir.join("extra_models_config.yaml"),
        config,
    })
}

fn desktop_install(host: &Host, desktop: &DesktopConfig, found_by: InstallSource) -> Install {
    let code_dir = host
        .desktop_code_dirs()
        .into_iter()
        .find(|dir| dir.join("main.py").is_file())
        .map(|dir| canonical(&dir));
    let mut extra_model_paths = vec![desktop.models_yaml.clone()];
    extra_model_paths.extend(
        code_dir
            .iter()
            .map(|dir| dir.join("extra_model_paths.yaml")),
    );
    Install {
        base_dir: desktop.base_path.clone(),
        code_dir,
        layout: Layout::Desktop,
        found_by,
        extra_model_paths,
    }
}

fn from_comfy_cli(host: &Host, discovery: &mut Discovery) -> Option<Install> {
    let config = host.comfy_cli_dir()?.join("config.ini");
    let text = read_optional(&config, &mut discovery.notes)?;
    for key in ["default_workspace", "recent_workspace"] {
        let Some(raw) = ini_value(&text, key) else {
            continue;
        };
        let path = host.config_path(raw);
        let source = InstallSource::ComfyCli {
            config: config.clone(),
            key,
        };
        discovery.searched.push(path.clone());
        if let Some((code, layout)) = comfy_folder(&path) {
            return Some(standard_install(code, layout, source));
        }
        discovery.notes.push(if path.is_dir() {
            DiscoveryNote::NotComfyUi {
                origin: source,
                path,
            }
        } else {
            DiscoveryNote::MissingFolder {
                origin: source,
                path,
            }
        });
    }
    None
}

/// The file's text, or `None` when it is absent (the usual case) or unreadable (noted).
fn read_optional(path: &Path, notes: &mut Vec<DiscoveryNote>) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => {
            notes.push(DiscoveryNote::Unreadable {
                file: path.to_path_buf(),
                problem: error.to_string(),
            });
            None
        }
    }
}

/// A value from an INI file as Python's configparser writes it (`key = value` or
/// `key: value`, keys case-insensitive, `#` and `;` comment lines). Values are taken verbatim,
/// so Windows backslashes survive.
fn ini_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .rev()
        .map(str::trim)
        .filter(|line| !line.starts_with(['#', ';', '[']))
        .find_map(|line| {
            let at = line.find(['=', ':'])?;
            let (name, value) = (line[..at].trim(), line[at + 1..].trim());
            (name.eq_ignore_ascii_case(key) && !value.is_empty()).then_some(value)
        })
}

/// The ComfyUI code folder at `dir`, or inside it (a portable build's outer folder, or a
/// parent holding `ComfyUI/`), with its layout.
fn comfy_folder(dir: &Path) -> Option<(PathBuf, Layout)> {
    let code = if dir.join("main.py").is_file() {
        dir.to_path_buf()
    } else if dir.join("ComfyUI").join("main.py").is_file() {
        dir.join("ComfyUI")
    } else {
        return None;
    };
    let code = canonical(&code);
    let portable = code
        .parent()
        .is_some_and(|outer| outer.join("python_embeded").is_dir());
    let layout = if portable {
        Layout::Portable
    } else {
        Layout::Standard
    };
    Some((code, layout))
}

fn same_folder(a: &Path, b: &Path) -> bool {
    a == b || canonical(a) == canonical(b)
}

/// The real path when it exists, without Windows' `\\?\` prefix where dropping it is safe;
/// the path unchanged otherwise.
fn canonical(path: &Path) -> PathBuf {
    match path.canonicalize() {
        Ok(real) => strip_verbatim_path(real),
        Err(_) => path.to_path_buf(),
    }
}

fn strip_verbatim_path(path: PathBuf) -> PathBuf {
    match path.to_str().and_then(strip_verbatim) {
        Some(plain) => PathBuf::from(plain),
        None => path,
    }
}

/// `\\?\C:\x` → `C:\x` and `\\?\UNC\server\share\x` → `\\server\share\x`, but only when the
/// plain form means the same file: short enough, and no part that Windows would read
/// differently without the prefix (`.`, `..`, reserved device names, trailing dots or
/// spaces, characters only verbatim paths allow). `None` when it must stay as it is.
pub fn strip_verbatim(path: &str) -> Option<String> {
    let rest = path.strip_prefix(r"\\?\")?;
    let plain = if let Some(unc) = rest.strip_prefix(r"UNC\") {
        format!(r"\\{unc}")
    } else {
        let bytes = rest.as_bytes();
        let drive = bytes.len() >= 3
            && bytes[0].is_ascii_alphabetic()
            && bytes[1] == b':'
            && bytes[2] == b'\\';
        if !drive {
            return None;
        }
        rest.to_string()
    };
    // Windows' classic limit, with room for the terminating NUL.
    if plain.encode_utf16().count() >= 260 {
        return None;
    }
    let parts = if let Some(unc) = plain.strip_prefix(r"\\") {
        unc
    } else {
        &plain[3..]
    };
    let mut parts: Vec<&str> = parts.split('\\').collect();
    // A single trailing separator is harmless; anything else empty is not.
    if parts.len() > 1 && parts.last() == Some(&"") {
        parts.pop();
    }
    let safe = parts.iter().all(|part| {
        (!part.is_empty() || parts.len() == 1)
            && *part != "."
            && *part != ".."
            && !part.ends_with(['.', ' '])
            && !part
                .chars()
                .any(|c| c.is_control() || "<>:\"/|?*".contains(c))
            && !reserved_device_name(part)
    });
    safe.then_some(plain)
}

fn reserved_device_name(part: &str) -> bool {
    let stem = part.split('.').next().unwrap_or(part).trim_end();
    let upper = stem.to_ascii_uppercase();
    matches!(
        upper.as_str(),
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$"
    ) || ((upper.starts_with("COM") || upper.starts_with("LPT"))
        && upper.len() == 4
        && upper.as_bytes()[3].is_ascii_digit())
}

/// A Windows path string with one kind of separator and `.`/`..` folded, as Python's
/// `os.path.normpath` does, so paths read on any machine compare and display alike.
fn windows_normalise(raw: &str) -> String {
    let raw = strip_verbatim(raw).unwrap_or_else(|| raw.to_string());
    let slashed = raw.replace('/', "\\");
    let (prefix, rest) = if let Some(unc) = slashed.strip_prefix(r"\\") {
        // \\server\share is the root of a UNC path.
        let mut pieces = unc.splitn(3, '\\');
        let server = pieces.next().unwrap_or_default();
        let share = pieces.next().unwrap_or_default();
        (
            format!(r"\\{server}\{share}\"),
            pieces.next().unwrap_or_default().to_string(),
        )
    } else if slashed.len() >= 2 && slashed.as_bytes()[1] == b':' {
        let drive = slashed[..2].to_ascii_uppercase();
        let rest = &slashed[2..];
        if rest.starts_with('\\') {
            (format!(r"{drive}\"), rest.to_string())
        } else {
            (drive, rest.to_string())
        }
    } else if slashed.starts_with('\\') {
        (String::from("\\"), slashed)
    } else {
        (String::new(), slashed)
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in rest.split('\\') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if prefix.is_empty() {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = format!("{prefix}{}", parts.join("\\"));
    if joined.is_empty() {
        ".".to_string()
    } else {
        joined
    }
}

/// Removes `.` and folds `..` by components, as ComfyUI's `os.path.normpath` does.
fn lexical_normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                let can_pop = matches!(out.components().next_back(), Some(Component::Normal(_)));
                if can_pop {
                    out.pop();
                } else if !out.has_root() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// `parent/name`, or the existing child whose name matches `name` in any case.
fn child_any_case(parent: &Path, name: &str) -> PathBuf {
    let exact = parent.join(name);
    if exact.is_dir() {
        return exact;
    }
    std::fs::read_dir(parent)
        .into_iter()
        .flatten()
        .flatten()
        .find(|entry| {
            entry
                .file_name()
                .to_str()
                .is_some_and(|found| found.eq_ignore_ascii_case(name))
                && entry.path().is_dir()
        })
        .map_or(exact, |entry| entry.path())
}

/// Old folder names ComfyUI still accepts, and the model kind each now stands for.
pub const LEGACY_KINDS: [(&str, &str); 2] =
    [("unet", "diffusion_models"), ("clip", "text_encoders")];

/// Sub-folders of `models/` that ComfyUI reads as another kind: the legacy names, and
/// `t2i_adapter`, which it lists under `controlnet`.
const MODELS_SUBFOLDER_KINDS: [(&str, &str); 3] = [
    ("unet", "diffusion_models"),
    ("clip", "text_encoders"),
    ("t2i_adapter", "controlnet"),
];

/// Model kinds ComfyUI also looks for under `output/`, where its save nodes write.
const OUTPUT_KINDS: [&str; 5] = ["checkpoints", "loras", "vae", "clip", "diffusion_models"];

/// The model kind a folder key names today (`unet` → `diffusion_models`); other keys,
/// including kinds added by custom node packs, are kept as written.
pub fn canonical_kind(key: &str) -> &str {
    LEGACY_KINDS
        .iter()
        .find(|(legacy, _)| *legacy == key)
        .map_or(key, |(_, kind)| kind)
}

/// Where a model folder was declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FolderOrigin {
    /// The install's own `models/` (or `output/`) folder.
    Install,
    /// A section of a model paths file.
    ModelPaths { file: PathBuf, section: String },
}

/// One folder ComfyUI looks for models of some kind in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFolder {
    pub path: PathBuf,
    pub origin: FolderOrigin,
    /// Whether the folder is there now (model paths files may name missing ones).
    pub exists: bool,
}

/// Every folder the install reads models from, by kind, in ComfyUI's search order (the first
/// folder of a kind is where downloads go).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelFolders {
    pub kinds: BTreeMap<String, Vec<ModelFolder>>,
    /// Custom node folders: the install's, then any a model paths file adds.
    pub custom_nodes: Vec<ModelFolder>,
    /// Model paths files, or parts of them, that could not be used.
    pub notes: Vec<DiscoveryNote>,
}

impl ModelFolders {
    /// The folders for `kind`, accepting legacy names (`unet`, `clip`).
    pub fn folders(&self, kind: &str) -> &[ModelFolder] {
        self.kinds
            .get(canonical_kind(kind))
            .map_or(&[], Vec::as_slice)
    }

    /// Adds `path` as ComfyUI does: appended, or moved to the front when it is a default;
    /// a folder already listed for the kind is not listed twice.
    fn add(&mut self, kind: &str, path: PathBuf, origin: FolderOrigin, is_default: bool) {
        let list = if kind == "custom_nodes" {
            &mut self.custom_nodes
        } else {
            self.kinds
                .entry(canonical_kind(kind).to_string())
                .or_default()
        };
        let existing = list.iter().position(|folder| folder.path == path);
        let folder = match existing {
            Some(at) if is_default => list.remove(at),
            Some(_) => return,
            None => ModelFolder {
                exists: path.is_dir(),
                path,
                origin,
            },
        };
        if is_default {
            list.insert(0, folder);
        } else {
            list.push(folder);
        }
    }
}

/// The install's model folders: `models/<kind>` (and the `output/` kinds), then every model
/// paths file the install reads. A broken file becomes a note; the rest still counts.
pub fn model_folders(install: &Install, host: &Host) -> ModelFolders {
    let mut folders = ModelFolders::default();
    let custom_nodes = install.custom_nodes_dir();
    if custom_nodes.is_dir() {
        folders.add("custom_nodes", custom_nodes, FolderOrigin::Install, false);
    }
    let mut subfolders: Vec<(String, PathBuf)> = std::fs::read_dir(install.models_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.path().is_dir())
        .filter_map(|entry| Some((entry.file_name().into_string().ok()?, entry.path())))
        .collect();
    let kind_of = |name: &str| {
        MODELS_SUBFOLDER_KINDS
            .iter()
            .find(|(folder, _)| *folder == name)
            .map_or(name.to_string(), |(_, kind)| kind.to_string())
    };
    // Current folder names before the old ones they stand for, as ComfyUI lists them.
    subfolders.sort_by_key(|(name, _)| (kind_of(name) != *name, name.clone()));
    for (name, path) in subfolders {
        folders.add(&kind_of(&name), path, FolderOrigin::Install, false);
    }
    for kind in OUTPUT_KINDS {
        let path = install.output_dir().join(kind);
        if path.is_dir() {
            folders.add(kind, path, FolderOrigin::Install, false);
        }
    }
    for file in &install.extra_model_paths {
        read_model_paths(file, host, &mut folders);
    }
    folders
}

/// Reads one model paths file into `folders`, the way ComfyUI's loader reads it.
fn read_model_paths(file: &Path, host: &Host, folders: &mut ModelFolders) {
    let Some(text) = read_optional(file, &mut folders.notes) else {
        return;
    };
    let bad = |line: Option<usize>, problem: String| DiscoveryNote::BadModelPaths {
        file: file.to_path_buf(),
        line,
        problem,
    };
    let documents = match YamlLoader::load_from_str(&text) {
        Ok(documents) => documents,
        Err(error) => {
            folders.notes.push(bad(
                Some(error.marker().line()),
                format!("this is not valid YAML ({})", error.info()),
            ));
            return;
        }
    };
    let Some(document) = documents.into_iter().next() else {
        return;
    };
    let sections = match document {
        Yaml::Hash(sections) => sections,
        Yaml::Null => return,
        _ => {
            folders.notes.push(bad(
                None,
                "the file should hold named sections of folders, like `comfyui:` with `base_path:` under it".into(),
            ));
            return;
        }
    };
    let yaml_dir = file.parent().unwrap_or(Path::new("."));
    for (name, section) in sections {
        let name = yaml_key(&name).unwrap_or_default();
        let entries = match section {
            Yaml::Hash(entries) => entries,
            // ComfyUI skips empty sections.
            Yaml::Null => continue,
            _ => {
                folders.notes.push(bad(
                    None,
                    format!("section {name:?} should hold folder entries, not a single value"),
                ));
                continue;
            }
        };
        let mut base_path = None;
        let mut is_default = false;
        let mut kinds = Vec::new();
        for (key, value) in entries {
            let Some(key) = yaml_key(&key) else {
                continue;
            };
            match key.as_str() {
                "base_path" => match yaml_scalar(&value) {
                    Some(raw) => base_path = Some(host.resolve(yaml_dir, &raw)),
                    None => folders.notes.push(bad(
                        None,
                        format!("base_path in section {name:?} should be a folder path"),
                    )),
                },
                "is_default" => is_default = yaml_truthy(&value),
                _ => kinds.push((key, value)),
            }
        }
        let origin = FolderOrigin::ModelPaths {
            file: file.to_path_buf(),
            section: name.clone(),
        };
        let base = base_path.as_deref().unwrap_or(yaml_dir);
        for (kind, value) in kinds {
            let Some(lines) = yaml_lines(&value) else {
                folders.notes.push(bad(
                    None,
                    format!(
                        "{kind} in section {name:?} should be a folder path, or several on separate lines after `|`"
                    ),
                ));
                continue;
            };
            for line in lines {
                let path = host.resolve(base, &line);
                folders.add(&kind, path, origin.clone(), is_default);
            }
        }
    }
}

fn yaml_key(key: &Yaml) -> Option<String> {
    yaml_scalar(key).map(|key| key.trim().to_string())
}

fn yaml_scalar(value: &Yaml) -> Option<String> {
    match value {
        Yaml::String(text) | Yaml::Real(text) => Some(text.clone()),
        Yaml::Integer(number) => Some(number.to_string()),
        Yaml::Boolean(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// Python truthiness, as ComfyUI applies to `is_default`.
fn yaml_truthy(value: &Yaml) -> bool {
    match value {
        Yaml::Boolean(flag) => *flag,
        Yaml::Integer(number) => *number != 0,
        Yaml::String(text) => !text.is_empty(),
        Yaml::Array(items) => !items.is_empty(),
        Yaml::Hash(map) => !map.is_empty(),
        _ => false,
    }
}

/// A folder entry's paths: one per non-blank line of a string (a `|` block holds several);
/// a list of strings is accepted too.
fn yaml_lines(value: &Yaml) -> Option<Vec<String>> {
    let split = |text: &str| {
        text.lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(String::from)
            .collect::<Vec<_>>()
    };
    match value {
        Yaml::Null => Some(Vec::new()),
        Yaml::Array(items) => items
            .iter()
            .map(|item| yaml_scalar(item).map(|text| split(&text)))
            .collect::<Option<Vec<_>>>()
            .map(|nested| nested.concat()),
        other => yaml_scalar(other).map(|text| split(&text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(os: HostOs, home: &Path) -> Host {
        Host {
            os,
            home: Some(home.to_path_buf()),
            appdata: None,
            local_appdata: None,
            xdg_config_home: None,
        }
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    /// A ComfyUI code folder at `dir`; returns its real path.
    fn comfy_at(dir: &Path) -> PathBuf {
        write(&dir.join("main.py"), "# ComfyUI\n");
        dir.canonicalize().expect("canonical")
    }

    fn mkdir(dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).expect("mkdir");
        dir.canonicalize().expect("canonical")
    }

    fn found(discovery: &Discovery) -> &Install {
        discovery
            .install
            .as_ref()
            .unwrap_or_else(|| panic!("nothing found: {}", discovery.not_found_message()))
    }

    #[test]
    fn the_configured_folder_wins_over_every_other_source() {
        let home = tempfile::tempdir().expect("tempdir");
        let home = home.path();
        let usual = comfy_at(&home.join("ComfyUI"));
        let cli = comfy_at(&home.join("cli/ComfyUI"));
        write(
            &home.join(".config/comfy-cli/config.ini"),
            &format!("[DEFAULT]\ndefault_workspace = {}\n", cli.display()),
        );
        let mine = comfy_at(&home.join("elsewhere/ComfyUI"));
        let discovery = discover_install(&host(HostOs::Linux, home), Some(&mine));
        let install = found(&discovery);
        assert_eq!(install.base_dir, mine);
        assert_eq!(install.code_dir.as_deref(), Some(mine.as_path()));
        assert_eq!(install.found_by, InstallSource::Configured);
        assert_eq!(install.layout, Layout::Standard);
        assert_ne!(install.base_dir, usual);
    }

    #[test]
    fn a_configured_data_folder_without_main_py_is_still_used() {
        let home = tempfile::tempdir().expect("tempdir");
        let data = mkdir(&home.path().join("COMFYUI_Database"));
        let discovery = discover_install(&host(HostOs::Linux, home.path()), Some(&data));
        let install = found(&discovery);
        assert_eq!(install.base_dir, data);
        assert_eq!(install.code_dir, None);
        assert!(install.extra_model_paths.is_empty());
    }

    #[test]
    fn comfy_cli_default_workspace_comes_before_the_recent_one() {
        let home = tempfile::tempdir().expect("tempdir");
        let home = home.path();
        let default = comfy_at(&home.join("work/ComfyUI"));
        let recent = comfy_at(&home.join("recent/ComfyUI"));
        let config = home.join(".config/comfy-cli/config.ini");
        write(
            &config,
            &format!(
                "[DEFAULT]\nrecent_workspace = {}\ndefault_workspace = {}\n",
                recent.display(),
                default.display()
            ),
        );
        comfy_at(&home.join("ComfyUI"));
        let discovery = discover_install(&host(HostOs::Linux, home), None);
        let install = found(&discovery);
        assert_eq!(install.base_dir, default);
        assert_eq!(
            install.found_by,
            InstallSource::ComfyCli {
                config,
                key: "default_workspace"
            }
        );
        assert!(discovery.notes.is_empty(), "{:?}", discovery.notes);
    }

    #[test]
    fn a_stale_comfy_cli_workspace_is_noted_and_the_recent_one_used() {
        let home = tempfile::tempdir().expect("tempdir");
        let home = home.path();
        let recent = comfy_at(&home.join("recent/ComfyUI"));
        let config = home.join("Library/Application Support/comfy-cli/config.ini");
        write(
            &config,
            &format!(
                "[DEFAULT]\ndefault_workspace = {}\nrecent_workspace: {}\n",
                home.join("gone").display(),
                recent.display()
            ),
        );
        let discovery = discover_install(&host(HostOs::MacOs, home), None);
        let install = found(&discovery);
        assert_eq!(install.base_dir, recent);
        assert!(matches!(
            &install.found_by,
            InstallSource::ComfyCli {
                key: "recent_workspace",
                ..
            }
        ));
        assert_eq!(
            discovery.notes,
            [DiscoveryNote::MissingFolder {
                origin: InstallSource::ComfyCli {
                    config,
                    key: "default_workspace"
                },
                path: home.join("gone"),
            }]
        );
    }

    #[test]
    fn comfy_cli_on_windows_is_read_from_local_app_data() {
        let home = tempfile::tempdir().expect("tempdir");
        let home = home.path();
        let local = home.join("AppData/Local");
        write(
            &local.join("comfy-cli/config.ini"),
            "[DEFAULT]\ndefault_workspace = C:\\Users\\Ann Lee\\Documents\\comfy\\ComfyUI\n",
        );
        let mut windows = host(HostOs::Windows, home);
        windows.local_appdata = Some(local);
        let discovery = discover_install(&windows, None);
        assert!(discovery.install.is_none());
        let [DiscoveryNote::MissingFolder { path, .. }] = discovery.notes.as_slice() else {
            panic!("expected one missing-folder note: {:?}", discovery.notes);
        };
        assert_eq!(
            path.to_str(),
            Some(r"C:\Users\Ann Lee\Documents\comfy\ComfyUI")
        );
        let message = discovery.not_found_message();
        assert!(message.contains(r"C:\Users\Ann Lee\Documents\comfy\ComfyUI"));
        assert!(message.contains("COMFYUI_DIR"));
    }

    #[test]
    fn the_desktop_app_base_path_holds_the_files_and_the_code_lives_in_the_app() {
        let home = tempfile::tempdir().expect("tempdir");
        let home = home.path();
        let base = mkdir(&home.join("Documents/ComfyUI"));
        mkdir(&base.join("models/checkpoints"));
        let settings = home.join("Library/Application Support/ComfyUI");
        write(
            &settings.join("config.json"),
            &format!(
                r#"{{"installState":"installed","basePath":{}}}"#,
                serde_json::to_string(&base).expect("json")
            ),
        );
        let code = comfy_at(&home.join("Applications/ComfyUI.app/Contents/Resources/ComfyUI"));
        let discovery = discover_install(&host(HostOs::MacOs, home), None);
        let install = found(&discovery);
        assert_eq!(install.layout, Layout::Desktop);
        assert_eq!(install.base_dir, base);
        assert_eq!(install.code_dir.as_deref(), Some(code.as_path()));
        assert_eq!(
            install.found_by,
            InstallSource::Desktop {
                config: settings.join("config.json")
            }
        );
        assert_eq!(
            install.extra_model_paths,
            [
                settings.join("extra_models_config.yaml"),
                code.join("extra_model_paths.yaml")
            ]
        );
        assert_eq!(install.models_dir(), base.join("models"));
        assert_eq!(install.output_dir(), base.join("output"));
        assert_eq!(install.user_dir(), base.join("user"));
        assert_eq!(install.input_dir(), base.join("input"));
    }

    #[test]
    fn the_desktop_app_on_linux_honours_xdg_config_home_and_has_no_known_code_folder() {
        let home = tempfile::tempdir().expect("tempdir");
        let home = home.path();
        let base = mkdir(&home.join("desktop-files"));
        let xdg = home.join("xdg");
        write(
            &xdg.join("ComfyUI/config.json"),
            &format!(r#"{{"basePath":"{}"}}"#, base.display()),
        );
        let mut linux = host(HostOs::Linux, home);
        linux.xdg_config_home = Some(xdg);
        let install = discover_install(&linux, None).install.expect("found");
        assert_eq!(install.layout, Layout::Desktop);
        assert_eq!(install.base_dir, base);
        assert_eq!(install.code_dir, None);
    }

    #[test]
    fn comfy_cli_comes_before_the_desktop_app_which_comes_before_usual_folders() {
        let home = tempfile::tempdir().expect("tempdir");
        let home = home.path();
        let usual = comfy_at(&home.join("ComfyUI"));
        let base = mkdir(&home.join("desktop"));
        write(
            &home.join(".config/ComfyUI/config.json"),
            &format!(r#"{{"basePath":"{}"}}"#, base.display()),
        );
        let linux = host(HostOs::Linux, home);
        assert_eq!(found(&discover_install(&linux, None)).base_dir, base);

        let cli = comfy_at(&home.join("cli/ComfyUI"));
        write(
            &home.join(".config/comfy-cli/config.ini"),
            &format!("[DEFAULT]\ndefault_workspace = {}\n", cli.display()),
        );
        assert_eq!(found(&discover_install(&linux, None)).base_dir, cli);

        std::fs::remove_dir_all(home.join(".config")).expect("rm");
        let install = discover_install(&linux, None).install.expect("found");
        assert_eq!(install.base_dir, usual);
        assert_eq!(install.found_by, InstallSource::UsualLocation);
        assert_eq!(
            install.extra_model_paths,
            [usual.join("extra_model_paths.yaml")]
        );
    }

    #[test]
    fn a_desktop_config_pointing_at_a_missing_folder_is_noted_and_discovery_goes_on() {
        let home = tempfile::tempdir().expect("tempdir");
        let home = home.path();
        let usual = comfy_at(&home.join("Documents/ComfyUI"));
        let config = home.join(".config/ComfyUI/config.json");
        let missing = home.join("moved-away");
        write(
            &config,
            &format!(r#"{{"basePath":"{}"}}"#, missing.display()),
        );
        let discovery = discover_install(&host(HostOs::Linux, home), None);
        assert_eq!(found(&discovery).base_dir, usual);
        assert_eq!(
            discovery.notes,
            [DiscoveryNote::MissingFolder {
                origin: InstallSource::Desktop { config },
                path: missing,
            }]
        );
        let message = discovery.notes[0].user_message();
        assert!(message.contains("does not exist"), "{message}");
        assert!(message.contains("COMFYUI_DIR"), "{message}");
    }

    #[test]
    fn a_broken_desktop_config_is_noted() {
        let home = tempfile::tempdir().expect("tempdir");
        let config = home.path().join(".config/ComfyUI/config.json");
        write(&config, "{ not json");
        let discovery = discover_install(&host(HostOs::Linux, home.path()), None);
        assert!(discovery.install.is_none());
        assert!(matches!(
            discovery.notes.as_slice(),
            [DiscoveryNote::Unreadable { file, .. }] if *file == config
        ));
    }

    #[test]
    fn nothing_found_says_where_it_looked_and_what_to_set() {
        let home = tempfile::tempdir().expect("tempdir");
        let home = home.path();
        // A folder named ComfyUI without main.py is not an install.
        mkdir(&home.join("ComfyUI/models"));
        let discovery = discover_install(&host(HostOs::Linux, home), None);
        assert_eq!(discovery.install, None);
        assert!(discovery.searched.contains(&home.join("ComfyUI")));
        assert!(
            discovery
                .searched
                .contains(&home.join("Desktop/ComfyUI_windows_portable/ComfyUI"))
        );
        let message = discovery.not_found_message();
        assert!(message.starts_with("No ComfyUI folder was found"));
        assert!(message.contains(&home.join("comfy/ComfyUI").display().to_string()));
        assert!(message.contains("COMFYUI_DIR"));

        let nobody = Host {
            home: None,
            ..host(HostOs::Linux, home)
        };
        assert_eq!(discover_install(&nobody, None).install, None);
    }

    #[test]
    fn the_windows_portable_layout_is_recognised_from_either_folder() {
        let home = tempfile::tempdir().expect("tempdir");
        let home = home.path();
        let outer = home.join("Desktop/ComfyUI_windows_portable");
        mkdir(&outer.join("python_embeded"));
        let code = comfy_at(&outer.join("ComfyUI"));
        let windows = host(HostOs::Windows, home);
        let install = discover_install(&windows, None).install.expect("found");
        assert_eq!(install.layout, Layout::Portable);
        assert_eq!(install.base_dir, code);
        assert_eq!(install.found_by, InstallSource::UsualLocation);

        // Pointing at the outer folder finds the ComfyUI inside it.
        let install = discover_install(&windows, Some(&outer))
            .install
            .expect("found");
        assert_eq!(install.base_dir, code);
        assert_eq!(install.layout, Layout::Portable);
    }

    #[test]
    fn configuring_the_desktop_base_path_keeps_the_desktop_layout() {
        let home = tempfile::tempdir().expect("tempdir");
        let home = home.path();
        let base = mkdir(&home.join("Documents/ComfyUI"));
        let settings = home.join(".config/ComfyUI");
        write(
            &settings.join("config.json"),
            &format!(r#"{{"basePath":"{}"}}"#, base.display()),
        );
        let install = discover_install(&host(HostOs::Linux, home), Some(&base))
            .install
            .expect("found");
        assert_eq!(install.layout, Layout::Desktop);
        assert_eq!(install.found_by, InstallSource::Configured);
        assert_eq!(
            install.extra_model_paths,
            [settings.join("extra_models_config.yaml")]
        );
    }

    #[test]
    fn windows_paths_in_config_files_read_as_windows_paths() {
        let home = tempfile::tempdir().expect("tempdir");
        let home = home.path();
        let roaming = home.join("AppData/Roaming");
        let mut windows = host(HostOs::Windows, home);
        windows.appdata = Some(roaming.clone());
        for (written, read) in [
            (
                r"C:\\Users\\Ann Lee\\Documents\\ComfyUI",
                r"C:\Users\Ann Lee\Documents\ComfyUI",
            ),
            ("c:/Users/Ann/ComfyUI/", r"C:\Users\Ann\ComfyUI"),
            (r"\\\\?\\D:\\AI\\ComfyUI", r"D:\AI\ComfyUI"),
            (r"\\\\nas\\share\\ComfyUI", r"\\nas\share\ComfyUI"),
        ] {
            write(
                &roaming.join("ComfyUI/config.json"),
                &format!(r#"{{"basePath":"{written}"}}"#),
            );
            let discovery = discover_install(&windows, None);
            let [DiscoveryNote::MissingFolder { path, .. }] = discovery.notes.as_slice() else {
                panic!("{written}: expected one note, got {:?}", discovery.notes);
            };
            assert_eq!(path.to_str(), Some(read), "{written}");
        }
    }

    #[test]
    fn verbatim_prefixes_are_dropped_only_when_safe() {
        assert_eq!(
            strip_verbatim(r"\\?\C:\Users\Ann\ComfyUI").as_deref(),
            Some(r"C:\Users\Ann\ComfyUI")
        );
        assert_eq!(strip_verbatim(r"\\?\C:\").as_deref(), Some(r"C:\"));
        assert_eq!(
            strip_verbatim(r"\\?\UNC\nas\share\models").as_deref(),
            Some(r"\\nas\share\models")
        );
        for unsafe_path in [
            r"C:\plain",
            r"\\?\Volume{0000}\x",
            r"\\?\C:\models\..\x",
            r"\\?\C:\models\.\x",
            r"\\?\C:\models\con.txt",
            r"\\?\C:\models\LPT1",
            r"\\?\C:\trailing.",
            r"\\?\C:\trailing \x",
            r"\\?\C:\a\\b",
            r"\\?\C:\a/b",
            r"\\?\C:\what?",
        ] {
            assert_eq!(strip_verbatim(unsafe_path), None, "{unsafe_path}");
        }
        let long = format!(r"\\?\C:\{}", "a".repeat(300));
        assert_eq!(strip_verbatim(&long), None);
        // "Console" is not the CON device.
        assert!(strip_verbatim(r"\\?\C:\Console\x").is_some());
    }

    #[test]
    fn windows_paths_are_normalised_like_normpath() {
        assert_eq!(windows_normalise("c:/a/./b/../c/"), r"C:\a\c");
        assert_eq!(windows_normalise(r"C:\..\x"), r"C:\x");
        assert_eq!(windows_normalise(r"\\nas\share\a\..\b"), r"\\nas\share\b");
        assert_eq!(windows_normalise(r"models\\loras"), r"models\loras");
        assert_eq!(windows_normalise(r"..\x"), r"..\x");
    }

    #[test]
    fn home_and_relative_paths_resolve_per_host() {
        let linux = host(HostOs::Linux, Path::new("/home/ann"));
        assert_eq!(
            linux.resolve(Path::new("/srv/comfy"), "~/models/../loras"),
            Path::new("/home/ann/loras")
        );
        assert_eq!(
            linux.resolve(Path::new("/srv/comfy"), "./models/x"),
            Path::new("/srv/comfy/models/x")
        );
        assert_eq!(
            linux.resolve(Path::new("/srv/comfy"), "/abs"),
            Path::new("/abs")
        );
        let windows = host(HostOs::Windows, Path::new(r"C:\Users\Ann"));
        assert_eq!(
            windows.resolve(Path::new(r"D:\AI"), "models/checkpoints"),
            Path::new(r"D:\AI\models\checkpoints")
        );
        assert_eq!(
            windows.resolve(Path::new(r"D:\AI"), "E:/loras"),
            Path::new(r"E:\loras")
        );
        assert_eq!(
            windows.resolve(Path::new(r"D:\AI"), r"\shared\vae"),
            Path::new(r"D:\shared\vae")
        );
        assert_eq!(
            windows.resolve(Path::new(r"D:\AI"), "~/models"),
            Path::new(r"C:\Users\Ann\models")
        );
    }

    #[test]
    fn ini_values_are_read_verbatim_with_any_case_and_separator() {
        let text = "[DEFAULT]\nDefault_Workspace = C:\\a b\\c\n# default_workspace = /commented\nrecent_workspace:/r\n; recent_workspace = /old\nempty =\n";
        assert_eq!(ini_value(text, "default_workspace"), Some(r"C:\a b\c"));
        assert_eq!(ini_value(text, "recent_workspace"), Some("/r"));
        assert_eq!(ini_value(text, "empty"), None);
        assert_eq!(ini_value(text, "absent"), None);
    }

    fn standard(base: &Path) -> Install {
        Install {
            base_dir: base.to_path_buf(),
            code_dir: Some(base.to_path_buf()),
            layout: Layout::Standard,
            found_by: InstallSource::Configured,
            extra_model_paths: vec![base.join("extra_model_paths.yaml")],
        }
    }

    fn paths(folders: &ModelFolders, kind: &str) -> Vec<PathBuf> {
        folders
            .folders(kind)
            .iter()
            .map(|folder| folder.path.clone())
            .collect()
    }

    #[test]
    fn install_model_folders_map_legacy_names_and_keep_unknown_kinds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = mkdir(&dir.path().join("ComfyUI"));
        for kind in [
            "checkpoints",
            "unet",
            "diffusion_models",
            "clip",
            "text_encoders",
            "t2i_adapter",
            "controlnet",
            "LLM",
        ] {
            mkdir(&base.join("models").join(kind));
        }
        write(&base.join("models/readme.txt"), "not a folder");
        mkdir(&base.join("output/checkpoints"));
        mkdir(&base.join("Custom_Nodes/SomePack"));
        let folders = model_folders(&standard(&base), &host(HostOs::Linux, dir.path()));
        let models = base.join("models");
        assert_eq!(
            paths(&folders, "diffusion_models"),
            [models.join("diffusion_models"), models.join("unet")]
        );
        assert_eq!(paths(&folders, "unet"), paths(&folders, "diffusion_models"));
        assert_eq!(
            paths(&folders, "text_encoders"),
            [models.join("text_encoders"), models.join("clip")]
        );
        assert_eq!(
            paths(&folders, "controlnet"),
            [models.join("controlnet"), models.join("t2i_adapter")]
        );
        assert_eq!(
            paths(&folders, "checkpoints"),
            [models.join("checkpoints"), base.join("output/checkpoints")]
        );
        assert_eq!(paths(&folders, "LLM"), [models.join("LLM")]);
        assert_eq!(
            folders.kinds.keys().map(String::as_str).collect::<Vec<_>>(),
            [
                "LLM",
                "checkpoints",
                "controlnet",
                "diffusion_models",
                "text_encoders"
            ]
        );
        assert_eq!(folders.custom_nodes.len(), 1);
        assert_eq!(folders.custom_nodes[0].path, base.join("Custom_Nodes"));
        assert!(folders.notes.is_empty());
    }

    #[test]
    fn extra_model_paths_follow_comfyui_rules() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        let base = mkdir(&root.join("ComfyUI"));
        mkdir(&base.join("models/checkpoints"));
        mkdir(&root.join("shared/loras"));
        write(
            &base.join("extra_model_paths.yaml"),
            r"
# shared models next to the install
shared:
    base_path: ../shared
    checkpoints: checkpoints/
    loras: |
        loras
        more_loras

        /mnt/big/loras
    clip: clip
    ipadapter: ipadapter
    custom_nodes: nodes
from_home:
    base_path: ~/ai
    is_default: true
    checkpoints: |
        first
        second
no_base:
    vae: relative/vae
    diffusion_models:
      - list/one
empty_section:
",
        );
        let folders = model_folders(&standard(&base), &host(HostOs::Linux, &root.join("home")));
        assert!(folders.notes.is_empty(), "{:?}", folders.notes);
        let shared = root.join("shared");
        let home_ai = root.join("home/ai");
        // is_default entries go first, the later one ahead of the earlier (as ComfyUI inserts).
        assert_eq!(
            paths(&folders, "checkpoints"),
            [
                home_ai.join("second"),
                home_ai.join("first"),
                base.join("models/checkpoints"),
                shared.join("checkpoints"),
            ]
        );
        assert_eq!(
            paths(&folders, "loras"),
            [
                shared.join("loras"),
                shared.join("more_loras"),
                PathBuf::from("/mnt/big/loras")
            ]
        );
        assert!(folders.folders("loras")[0].exists);
        assert!(!folders.folders("loras")[1].exists);
        assert_eq!(paths(&folders, "text_encoders"), [shared.join("clip")]);
        assert_eq!(paths(&folders, "ipadapter"), [shared.join("ipadapter")]);
        assert_eq!(paths(&folders, "vae"), [base.join("relative/vae")]);
        assert_eq!(paths(&folders, "diffusion_models"), [base.join("list/one")]);
        assert_eq!(folders.custom_nodes.len(), 1);
        assert_eq!(folders.custom_nodes[0].path, shared.join("nodes"));
        assert_eq!(
            folders.folders("ipadapter")[0].origin,
            FolderOrigin::ModelPaths {
                file: base.join("extra_model_paths.yaml"),
                section: "shared".into()
            }
        );
    }

    #[test]
    fn a_folder_listed_twice_is_kept_once_and_a_default_moves_it_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = mkdir(&dir.path().join("ComfyUI"));
        mkdir(&base.join("models/loras"));
        mkdir(&base.join("models/vae"));
        write(
            &base.join("extra_model_paths.yaml"),
            "again:\n    base_path: .\n    loras: models/loras\n    vae: other\nfirst:\n    base_path: .\n    is_default: true\n    vae: models/vae\n",
        );
        let folders = model_folders(&standard(&base), &host(HostOs::Linux, dir.path()));
        assert_eq!(paths(&folders, "loras"), [base.join("models/loras")]);
        assert_eq!(folders.folders("loras")[0].origin, FolderOrigin::Install);
        assert_eq!(
            paths(&folders, "vae"),
            [base.join("models/vae"), base.join("other")]
        );
    }

    #[test]
    fn windows_model_paths_files_resolve_against_drive_letters() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = mkdir(&dir.path().join("ComfyUI"));
        write(
            &base.join("extra_model_paths.yaml"),
            "comfyui:\n    base_path: X:/Diffusion/models\n    checkpoints: ./checkpoints\n    upscale_models: |\n        ESRGAN\n        C:\\Other\\upscale\n",
        );
        let folders = model_folders(&standard(&base), &host(HostOs::Windows, dir.path()));
        assert_eq!(
            paths(&folders, "checkpoints"),
            [PathBuf::from(r"X:\Diffusion\models\checkpoints")]
        );
        assert_eq!(
            paths(&folders, "upscale_models"),
            [
                PathBuf::from(r"X:\Diffusion\models\ESRGAN"),
                PathBuf::from(r"C:\Other\upscale")
            ]
        );
    }

    #[test]
    fn a_broken_model_paths_file_is_a_note_with_its_line_and_the_rest_still_works() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        let base = mkdir(&root.join("base"));
        mkdir(&base.join("models/checkpoints"));
        let broken = base.join("extra_model_paths.yaml");
        write(
            &broken,
            "comfyui:\n    base_path: /x\n    checkpoints: [unclosed\n    loras: y\n",
        );
        let desktop_yaml = root.join("desktop/extra_models_config.yaml");
        write(
            &desktop_yaml,
            "comfyui_desktop:\n    base_path: ../base\n    loras: models/loras\n    checkpoints: 42x: bad\n",
        );
        let odd = root.join("odd.yaml");
        write(&odd, "just a string\n");
        let shapes = root.join("shapes.yaml");
        write(
            &shapes,
            "scalar_section: 3\nok:\n    base_path: [1]\n    vae: {a: b}\n    loras: fine\n",
        );
        let install = Install {
            base_dir: base.clone(),
            code_dir: None,
            layout: Layout::Desktop,
            found_by: InstallSource::Configured,
            extra_model_paths: vec![
                broken.clone(),
                desktop_yaml.clone(),
                odd.clone(),
                shapes.clone(),
                root.join("absent.yaml"),
            ],
        };
        let folders = model_folders(&install, &host(HostOs::Linux, &root));
        assert_eq!(
            paths(&folders, "checkpoints"),
            [base.join("models/checkpoints")]
        );
        assert_eq!(paths(&folders, "loras"), [root.join("fine")]);
        let files: Vec<(&Path, Option<usize>)> = folders
            .notes
            .iter()
            .map(|note| match note {
                DiscoveryNote::BadModelPaths { file, line, .. } => (file.as_path(), *line),
                other => panic!("unexpected note {other:?}"),
            })
            .collect();
        assert_eq!(
            files,
            [
                (broken.as_path(), Some(4)),
                (desktop_yaml.as_path(), Some(4)),
                (odd.as_path(), None),
                (shapes.as_path(), None),
                (shapes.as_path(), None),
                (shapes.as_path(), None),
            ]
        );
        let message = folders.notes[0].user_message();
        assert!(message.contains("line 4"), "{message}");
        assert!(message.contains("not valid YAML"), "{message}");
        assert!(message.contains("still listed"), "{message}");
    }

    #[test]
    fn custom_nodes_prefers_the_stock_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = mkdir(&dir.path().join("ComfyUI"));
        let install = standard(&base);
        assert_eq!(install.custom_nodes_dir(), base.join("custom_nodes"));
        mkdir(&base.join("CUSTOM_NODES"));
        assert_eq!(install.custom_nodes_dir(), base.join("CUSTOM_NODES"));
        mkdir(&base.join("custom_nodes"));
        assert_eq!(install.custom_nodes_dir(), base.join("custom_nodes"));
    }
}
