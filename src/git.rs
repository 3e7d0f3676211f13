//! Read-only git metadata from a working tree's `.git`, without running git and without a git
//! library: `HEAD`, loose refs and `packed-refs` (with peeled annotated tags), the `origin`
//! remote from `config`, the tags at HEAD and the upstream tracking ref.
//!
//! Everything read is confined. The allowed roots are the pack's own (real) folder and the
//! ComfyUI folder: a `.git` *file* (`gitdir: …`, as worktrees and submodules write) may point
//! into either (a submodule's git dir lives in the parent repository's `.git/modules/`), never
//! elsewhere. Every file is resolved (symlinks included) and checked against those roots
//! before it is opened, must be a regular file, and is read up to a small size bound. Ref
//! names are validated before they become paths. Garbage yields `None`, never a panic.
//!
//! Not covered: loose annotated tags can't be peeled without reading (compressed) objects, so
//! a loose tag counts as "at HEAD" only when it names the HEAD commit itself; packed tags are
//! peeled through their `^` lines. Reftable repositories are reported as unreadable.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Small files (`HEAD`, a loose ref, `commondir`, a `.git` file).
const MAX_SMALL_FILE: u64 = 4 * 1024;
/// `config`.
const MAX_CONFIG: u64 = 256 * 1024;
/// `packed-refs` (large repositories with many tags stay well under this).
const MAX_PACKED_REFS: u64 = 8 * 1024 * 1024;
/// Loose tags looked at in `refs/tags` (a folder with more is only partly read).
const MAX_LOOSE_TAGS: usize = 2_000;
/// Symbolic refs followed before giving up (`ref: …` pointing at `ref: …`).
const MAX_SYMREF_DEPTH: usize = 5;

/// What the `.git` of one working tree says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitState {
    /// The commit checked out (40 or 64 hex digits), `None` for an unborn branch.
    pub head: Option<String>,
    /// The branch checked out (`main`), `None` when detached.
    pub branch: Option<String>,
    /// Tags naming the HEAD commit (annotated ones peeled), sorted.
    pub tags_at_head: Vec<String>,
    /// The `origin` remote's URL (credentials removed), if configured.
    pub origin_url: Option<String>,
    /// The remote's default branch as last fetched (`refs/remotes/origin/HEAD`).
    pub origin_default_branch: Option<String>,
    /// The upstream tracking ref of the branch (`refs/remotes/origin/<branch>`) and its commit.
    pub upstream: Option<(String, String)>,
}

/// Why a working tree's git state couldn't be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitError {
    #[error("it has no .git folder")]
    NotACheckout,
    #[error("its .git points outside the pack and the ComfyUI folder, so it wasn't read")]
    OutsideRoots,
    #[error("its .git can't be read: {0}")]
    Unreadable(String),
}

/// Reads the git state of the working tree at `worktree`. `extra_root` is a further folder a
/// `gitdir:` may point into (the ComfyUI folder). Blocking: call it on a blocking thread.
pub fn read_state(worktree: &Path, extra_root: Option<&Path>) -> Result<GitState, GitError> {
    let pack_root = std::fs::canonicalize(worktree)
        .map_err(|e| GitError::Unreadable(format!("the folder can't be opened ({e})")))?;
    let mut roots = vec![pack_root.clone()];
    if let Some(extra) = extra_root.and_then(|p| std::fs::canonicalize(p).ok()) {
        roots.push(extra);
    }
    let reader = Reader { roots };
    let dot_git = pack_root.join(".git");
    let meta = std::fs::symlink_metadata(&dot_git).map_err(|_| GitError::NotACheckout)?;
    let git_dir = if meta.is_dir() {
        dot_git
    } else if meta.is_file() {
        let text = reader.read_text(&dot_git, MAX_SMALL_FILE)?;
        let target = text
            .lines()
            .find_map(|l| l.strip_prefix("gitdir:"))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| GitError::Unreadable("its .git file has no gitdir line".into()))?;
        let target = pack_root.join(target);
        reader.confined_dir(&target)?
    } else {
        // A symlinked `.git` is followed only if it stays inside the roots.
        reader.confined_dir(&dot_git)?
    };
    let repo = Repo::open(reader, git_dir)?;
    Ok(repo.state())
}

/// Reads files only inside its roots.
struct Reader {
    roots: Vec<PathBuf>,
}

impl Reader {
    fn inside(&self, path: &Path) -> bool {
        self.roots.iter().any(|root| path.starts_with(root))
    }

    /// The real path of a folder inside the roots.
    fn confined_dir(&self, path: &Path) -> Result<PathBuf, GitError> {
        let real = std::fs::canonicalize(path).map_err(|_| GitError::NotACheckout)?;
        if !self.inside(&real) {
            return Err(GitError::OutsideRoots);
        }
        if !real.is_dir() {
            return Err(GitError::Unreadable("its git folder isn't a folder".into()));
        }
        Ok(real)
    }

    /// The file's text if it exists inside the roots, is a regular file and is at most
    /// `limit` bytes.
    fn read_text(&self, path: &Path, limit: u64) -> Result<String, GitError> {
        let real = std::fs::canonicalize(path)
            .map_err(|_| GitError::Unreadable(format!("{} is missing", short(path))))?;
        if !self.inside(&real) {
            return Err(GitError::OutsideRoots);
        }
        let meta = std::fs::metadata(&real)
            .map_err(|e| GitError::Unreadable(format!("{} ({e})", short(path))))?;
        if !meta.is_file() {
            return Err(GitError::Unreadable(format!(
                "{} isn't a file",
                short(path)
            )));
        }
        if meta.len() > limit {
            return Err(GitError::Unreadable(format!(
                "{} is larger than {limit} bytes",
                short(path)
            )));
        }
        let file = std::fs::File::open(&real)
            .map_err(|e| GitError::Unreadable(format!("{} ({e})", short(path))))?;
        let mut bytes = Vec::new();
        file.take(limit)
            .read_to_end(&mut bytes)
            .map_err(|e| GitError::Unreadable(format!("{} ({e})", short(path))))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Like [`Self::read_text`], `None` for any problem (an optional file).
    fn optional(&self, path: &Path, limit: u64) -> Option<String> {
        self.read_text(path, limit).ok()
    }
}

/// The last two components of a path, for messages (never the full path of a user's folder).
fn short(path: &Path) -> String {
    let mut parts: Vec<_> = path
        .components()
        .rev()
        .take(2)
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.reverse();
    parts.join("/")
}

struct Repo {
    reader: Reader,
    /// The per-worktree git dir (HEAD lives here).
    git_dir: PathBuf,
    /// The shared git dir (refs, packed-refs, config): `commondir` for worktrees.
    common_dir: PathBuf,
    packed: Vec<PackedRef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PackedRef {
    name: String,
    sha: String,
    /// The commit an annotated tag points at (`^` line).
    peeled: Option<String>,
}

impl Repo {
    fn open(reader: Reader, git_dir: PathBuf) -> Result<Self, GitError> {
        if !git_dir.join("HEAD").exists() {
            return Err(GitError::Unreadable("its git folder has no HEAD".into()));
        }
        let common_dir = match reader.optional(&git_dir.join("commondir"), MAX_SMALL_FILE) {
            Some(text) if !text.trim().is_empty() => {
                reader.confined_dir(&git_dir.join(text.trim()))?
            }
            _ => git_dir.clone(),
        };
        let packed = reader
            .optional(&common_dir.join("packed-refs"), MAX_PACKED_REFS)
            .map(|text| parse_packed_refs(&text))
            .unwrap_or_default();
        Ok(Self {
            reader,
            git_dir,
            common_dir,
            packed,
        })
    }

    fn state(&self) -> GitState {
        let head_text = self
            .reader
            .optional(&self.git_dir.join("HEAD"), MAX_SMALL_FILE)
            .unwrap_or_default();
        let (branch, head) = match parse_ref_file(&head_text) {
            Some(RefValue::Symbolic(target)) => {
                let branch = target.strip_prefix("refs/heads/").map(str::to_string);
                (branch, self.resolve(&target, 0))
            }
            Some(RefValue::Sha(sha)) => (None, Some(sha)),
            None => (None, None),
        };
        let config = self
            .reader
            .optional(&self.common_dir.join("config"), MAX_CONFIG)
            .unwrap_or_default();
        let config = parse_config(&config);
        let origin_url = config
            .get("remote", Some("origin"), "url")
            .map(|u| strip_credentials(&u));
        let origin_default_branch = match self.read_ref("refs/remotes/origin/HEAD") {
            Some(RefValue::Symbolic(target)) => target
                .strip_prefix("refs/remotes/origin/")
                .map(str::to_string),
            _ => None,
        };
        let upstream = branch.as_deref().and_then(|b| {
            let merge = config
                .get("branch", Some(b), "merge")
                .and_then(|m| m.strip_prefix("refs/heads/").map(str::to_string))
                .unwrap_or_else(|| b.to_string());
            let name = format!("refs/remotes/origin/{merge}");
            self.resolve(&name, 0).map(|sha| (name, sha))
        });
        let tags_at_head = head.as_deref().map(|h| self.tags_at(h)).unwrap_or_default();
        GitState {
            head,
            branch,
            tags_at_head,
            origin_url,
            origin_default_branch,
            upstream,
        }
    }

    /// A loose ref's value, or the packed one.
    fn read_ref(&self, name: &str) -> Option<RefValue> {
        if !valid_ref_name(name) {
            return None;
        }
        let dir = if name.starts_with("refs/") {
            &self.common_dir
        } else {
            &self.git_dir
        };
        if let Some(text) = self.reader.optional(&dir.join(name), MAX_SMALL_FILE)
            && let Some(value) = parse_ref_file(&text)
        {
            return Some(value);
        }
        self.packed
            .iter()
            .find(|p| p.name == name)
            .map(|p| RefValue::Sha(p.sha.clone()))
    }

    /// The commit a ref names, following symbolic refs a few levels.
    fn resolve(&self, name: &str, depth: usize) -> Option<String> {
        if depth > MAX_SYMREF_DEPTH {
            return None;
        }
        match self.read_ref(name)? {
            RefValue::Sha(sha) => Some(sha),
            RefValue::Symbolic(target) => self.resolve(&target, depth + 1),
        }
    }

    fn tags_at(&self, head: &str) -> Vec<String> {
        let mut tags: Vec<String> = self
            .packed
            .iter()
            .filter_map(|p| {
                let tag = p.name.strip_prefix("refs/tags/")?;
                let commit = p.peeled.as_deref().unwrap_or(&p.sha);
                commit.eq_ignore_ascii_case(head).then(|| tag.to_string())
            })
            .collect();
        let mut seen = 0;
        self.loose_tags(
            &self.common_dir.join("refs/tags"),
            "",
            head,
            &mut tags,
            &mut seen,
        );
        tags.sort();
        tags.dedup();
        tags
    }

    fn loose_tags(
        &self,
        dir: &Path,
        prefix: &str,
        head: &str,
        out: &mut Vec<String>,
        seen: &mut usize,
    ) {
        let Ok(real) = self.reader.confined_dir(dir) else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(&real) else {
            return;
        };
        for entry in entries.flatten() {
            *seen += 1;
            if *seen > MAX_LOOSE_TAGS {
                return;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let full = format!("{prefix}{name}");
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if prefix.matches('/').count() < 4 {
                    self.loose_tags(&entry.path(), &format!("{full}/"), head, out, seen);
                }
            } else if let Some(RefValue::Sha(sha)) = self
                .reader
                .optional(&entry.path(), MAX_SMALL_FILE)
                .as_deref()
                .and_then(parse_ref_file)
                && sha.eq_ignore_ascii_case(head)
                && valid_ref_name(&format!("refs/tags/{full}"))
            {
                out.push(full);
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum RefValue {
    Sha(String),
    Symbolic(String),
}

fn is_sha(text: &str) -> bool {
    (text.len() == 40 || text.len() == 64) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `ref: refs/heads/main` or a bare object id.
fn parse_ref_file(text: &str) -> Option<RefValue> {
    let line = text.lines().next()?.trim();
    if let Some(target) = line.strip_prefix("ref:") {
        let target = target.trim();
        return valid_ref_name(target).then(|| RefValue::Symbolic(target.to_string()));
    }
    is_sha(line).then(|| RefValue::Sha(line.to_ascii_lowercase()))
}

/// A ref name safe to join onto the git dir: `HEAD`-like names or `refs/…` with ordinary
/// components (no `..`, no empty or dot-led parts, no backslashes or control characters).
fn valid_ref_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 1024 {
        return false;
    }
    if !name.starts_with("refs/") {
        return name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_');
    }
    name.split('/').all(|part| {
        !part.is_empty()
            && !part.starts_with('.')
            && !part.ends_with(".lock")
            && !part.contains("..")
            && !part.chars().any(|c| {
                c.is_control() || matches!(c, '\\' | ':' | '?' | '*' | '[' | ' ' | '~' | '^')
            })
    })
}

fn parse_packed_refs(text: &str) -> Vec<PackedRef> {
    let mut refs: Vec<PackedRef> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(peeled) = line.strip_prefix('^') {
            if is_sha(peeled)
                && let Some(last) = refs.last_mut()
            {
                last.peeled = Some(peeled.to_ascii_lowercase());
            }
            continue;
        }
        let Some((sha, name)) = line.split_once(' ') else {
            continue;
        };
        if is_sha(sha) && valid_ref_name(name) {
            refs.push(PackedRef {
                name: name.to_string(),
                sha: sha.to_ascii_lowercase(),
                peeled: None,
            });
        }
    }
    refs
}

/// A parsed git `config`: `(section, subsection, key, value)`, keys lower-cased.
struct Config {
    entries: Vec<(String, Option<String>, String, String)>,
}

impl Config {
    /// The last value of `key` in `[section "sub"]` (git's "last one wins").
    fn get(&self, section: &str, sub: Option<&str>, key: &str) -> Option<String> {
        self.entries
            .iter()
            .rev()
            .find(|(s, ss, k, _)| s == section && ss.as_deref() == sub && k == key)
            .map(|(_, _, _, v)| v.clone())
    }
}

fn parse_config(text: &str) -> Config {
    let mut entries = Vec::new();
    let mut section: Option<(String, Option<String>)> = None;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let Some(end) = rest.find(']') else {
                section = None;
                continue;
            };
            let header = &rest[..end];
            section = Some(match header.split_once(char::is_whitespace) {
                Some((name, sub)) => {
                    let sub = sub.trim().trim_matches('"').replace("\\\"", "\"");
                    (name.to_ascii_lowercase(), Some(sub))
                }
                None => match header.split_once('.') {
                    // The old `[branch.main]` form.
                    Some((name, sub)) => (name.to_ascii_lowercase(), Some(sub.to_string())),
                    None => (header.to_ascii_lowercase(), None),
                },
            });
            continue;
        }
        let Some((name, sub)) = section.clone() else {
            continue;
        };
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), config_value(v)),
            None => (line, "true".to_string()),
        };
        entries.push((name, sub, key.to_ascii_lowercase(), value));
    }
    Config { entries }
}

/// A config value: quotes removed, a trailing comment dropped, simple escapes undone.
fn config_value(raw: &str) -> String {
    let mut out = String::new();
    let mut quoted = false;
    let mut chars = raw.trim().chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '#' | ';' if !quoted => break,
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => {}
            },
            other => out.push(other),
        }
    }
    out.trim().to_string()
}

/// The URL of the `origin` remote in a git `config` file's text, else of the first remote that
/// has one, without any user name or token.
pub fn remote_url(config_text: &str) -> Option<String> {
    let config = parse_config(config_text);
    config
        .get("remote", Some("origin"), "url")
        .filter(|url| !url.is_empty())
        .or_else(|| {
            config
                .entries
                .iter()
                .find(|(section, sub, key, value)| {
                    section == "remote" && sub.is_some() && key == "url" && !value.is_empty()
                })
                .map(|(_, _, _, value)| value.clone())
        })
        .map(|url| strip_credentials(&url))
}

/// The URL without a `user:password@` part (remotes sometimes carry a token).
pub fn strip_credentials(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if let Some((_, host)) = authority.rsplit_once('@') {
            return format!("{scheme}://{host}{path}");
        }
    }
    url.to_string()
}

/// `owner/name` when `url` is a GitHub remote (https, http, git, ssh, or scp-like
/// `git@github.com:owner/name.git`), `None` otherwise.
pub fn github_repo(url: &str) -> Option<String> {
    let url = url.trim();
    let rest = if let Some((scheme, rest)) = url.split_once("://") {
        if !matches!(
            scheme.to_ascii_lowercase().as_str(),
            "https" | "http" | "ssh" | "git" | "git+ssh" | "ssh+git"
        ) {
            return None;
        }
        let (authority, path) = rest.split_once('/')?;
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = host.split(':').next().unwrap_or(host);
        if !is_github_host(host) {
            return None;
        }
        path
    } else {
        // scp-like: [user@]github.com:owner/name
        let (authority, path) = url.split_once(':')?;
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        if !is_github_host(host) || authority.contains('/') {
            return None;
        }
        path
    };
    let path = rest.split(['?', '#']).next().unwrap_or(rest);
    let mut parts = path.trim_matches('/').split('/');
    let owner = parts.next()?;
    let name = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    let name = name.strip_suffix(".git").unwrap_or(name);
    (valid_owner(owner) && valid_repo_name(name)).then(|| format!("{owner}/{name}"))
}

fn is_github_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("github.com") || host.eq_ignore_ascii_case("www.github.com")
}

/// A GitHub account name: letters, digits and single hyphens (underscores appear in some
/// enterprise accounts), at most 39 characters, not starting with a hyphen.
pub fn valid_owner(owner: &str) -> bool {
    !owner.is_empty()
        && owner.len() <= 39
        && !owner.starts_with('-')
        && owner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A GitHub repository name: letters, digits, `.`, `-` and `_`, at most 100 characters, not
/// `.` or `..`.
pub fn valid_repo_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

#[cfg(test)]
mod tests;
