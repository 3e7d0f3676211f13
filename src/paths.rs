//! The path policy: every file path a client names is resolved here, symlinks followed, and
//! checked against the allowed roots (by path components, never by string prefix) before
//! anything reads or writes it.

use std::path::{Component, Path, PathBuf};

use crate::comfy::discovery::Install;
use crate::config::Config;
use crate::error::PathError;

/// The folders clients may name, canonicalised once at start-up.
#[derive(Debug, Clone)]
pub struct PathPolicy {
    roots: Vec<PathBuf>,
}

impl PathPolicy {
    /// The ComfyUI folder first (relative paths resolve against it), then any extra roots
    /// from `COMFYUI_AGENT_ALLOWED_ROOTS`. The ComfyUI folder is the install's (configured or
    /// found on this machine), else the configured one. The data folder is not a root: it
    /// holds every session's state, which no client may read through a path.
    pub fn from_config(config: &Config, install: Option<&Install>) -> Self {
        let comfyui = install
            .map(|install| &install.base_dir)
            .or(config.comfyui_dir.as_ref());
        let roots = comfyui
            .into_iter()
            .chain(&config.extra_roots)
            .map(|root| canonical_or_normalised(root))
            .collect();
        Self::new(roots)
    }

    pub fn new(roots: Vec<PathBuf>) -> Self {
        let mut unique: Vec<PathBuf> = Vec::with_capacity(roots.len());
        for root in roots {
            if !unique.contains(&root) {
                unique.push(root);
            }
        }
        Self { roots: unique }
    }

    /// Resolves `raw` to an existing file inside the roots, ready to read.
    pub fn existing_file(&self, raw: &str) -> Result<PathBuf, PathError> {
        let resolved = self.existing_path(raw)?;
        if !resolved.is_file() {
            return Err(PathError::NotAFile { path: raw.into() });
        }
        Ok(resolved)
    }

    /// Resolves `raw` to an existing file or folder inside the roots (symlinks followed).
    pub fn existing_path(&self, raw: &str) -> Result<PathBuf, PathError> {
        let candidate = self.absolute(raw)?;
        let resolved = match candidate.canonicalize() {
            Ok(resolved) => resolved,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                // Say "outside" before "missing", so probing reveals nothing about other folders.
                self.check_inside(&normalise(&candidate), raw)?;
                return Err(PathError::NotFound { path: raw.into() });
            }
            Err(source) => {
                return Err(PathError::Io {
                    path: raw.into(),
                    source,
                });
            }
        };
        self.check_inside(&resolved, raw)?;
        Ok(resolved)
    }

    /// Resolves `raw` to a file that may be written: its folder must exist inside the roots
    /// (after resolving symlinks), and an existing file there must itself resolve inside them
    /// (a symlink can't redirect the write elsewhere). The file need not exist yet.
    pub fn writable_file(&self, raw: &str) -> Result<PathBuf, PathError> {
        let candidate = self.absolute(raw)?;
        let Some(name) = candidate.file_name().filter(|n| !n.is_empty()) else {
            return Err(PathError::NotAFile { path: raw.into() });
        };
        let name = name.to_os_string();
        let parent = candidate
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .ok_or_else(|| self.outside(raw))?;
        let folder = match parent.canonicalize() {
            Ok(folder) => folder,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                self.check_inside(&normalise(parent), raw)?;
                return Err(PathError::NoFolder {
                    path: raw.into(),
                    folder: parent.display().to_string(),
                });
            }
            Err(source) => {
                return Err(PathError::Io {
                    path: raw.into(),
                    source,
                });
            }
        };
        self.check_inside(&folder, raw)?;
        let target = folder.join(&name);
        match target.canonicalize() {
            Ok(existing) => {
                self.check_inside(&existing, raw)?;
                if existing.is_dir() {
                    return Err(PathError::NotAFile { path: raw.into() });
                }
                Ok(existing)
            }
            // A dangling symlink would be followed by the write: refuse it.
            Err(_) if target.symlink_metadata().is_ok() => Err(self.outside(raw)),
            Err(_) => Ok(target),
        }
    }

    /// Reads a file inside the roots, refusing ones larger than `limit` bytes. The limit is
    /// enforced on the bytes actually read, so a file growing meanwhile can't slip past it.
    pub async fn read_capped(&self, raw: &str, limit: u64) -> Result<Vec<u8>, PathError> {
        use tokio::io::AsyncReadExt;
        let path = self.existing_file(raw)?;
        let io = |source| PathError::Io {
            path: raw.into(),
            source,
        };
        let file = tokio::fs::File::open(&path).await.map_err(io)?;
        let size = file.metadata().await.map_err(io)?.len();
        if size > limit {
            return Err(PathError::TooLarge {
                path: raw.into(),
                size,
                limit,
            });
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .await
            .map_err(io)?;
        if bytes.len() as u64 > limit {
            return Err(PathError::TooLarge {
                path: raw.into(),
                size: bytes.len() as u64,
                limit,
            });
        }
        Ok(bytes)
    }

    fn absolute(&self, raw: &str) -> Result<PathBuf, PathError> {
        let raw_trimmed = raw.trim();
        if raw_trimmed.is_empty() {
            return Err(PathError::Empty);
        }
        let path = expand_home(Path::new(raw_trimmed));
        if path.is_absolute() {
            return Ok(path);
        }
        match self.roots.first() {
            Some(base) => Ok(base.join(path)),
            None => Err(self.outside(raw)),
        }
    }

    fn check_inside(&self, resolved: &Path, raw: &str) -> Result<(), PathError> {
        if self.roots.iter().any(|root| resolved.starts_with(root)) {
            Ok(())
        } else {
            Err(self.outside(raw))
        }
    }

    fn outside(&self, raw: &str) -> PathError {
        let roots = if self.roots.is_empty() {
            "none are configured".to_string()
        } else {
            self.roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        PathError::OutsideRoots {
            path: raw.into(),
            roots,
        }
    }
}

/// `~/x` becomes `$HOME/x`; other paths are returned as they are.
pub fn expand_home(path: &Path) -> PathBuf {
    match path.strip_prefix("~") {
        Ok(rest) => dirs::home_dir().map_or_else(|| path.to_path_buf(), |home| home.join(rest)),
        Err(_) => path.to_path_buf(),
    }
}

fn canonical_or_normalised(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| normalise(path))
}

/// Removes `.` and folds `..` lexically, for paths that don't exist yet.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, PathPolicy) {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("ComfyUI");
        std::fs::create_dir_all(root.join("user")).expect("mkdir");
        std::fs::write(root.join("user/wf.json"), "{}").expect("write");
        std::fs::create_dir_all(dir.path().join("ComfyUI2")).expect("mkdir");
        std::fs::write(dir.path().join("ComfyUI2/secret.json"), "{}").expect("write");
        let policy = PathPolicy::new(vec![root.canonicalize().expect("canonical")]);
        (dir, policy)
    }

    #[test]
    fn files_inside_the_root_resolve_absolute_or_relative() {
        let (dir, policy) = setup();
        let absolute = dir.path().join("ComfyUI/user/wf.json");
        let resolved = policy
            .existing_file(absolute.to_str().expect("utf-8"))
            .expect("inside");
        assert!(resolved.ends_with("ComfyUI/user/wf.json"));
        assert_eq!(
            policy.existing_file("user/wf.json").expect("relative"),
            resolved
        );
    }

    #[test]
    fn a_sibling_with_the_same_prefix_is_outside() {
        let (dir, policy) = setup();
        let sibling = dir.path().join("ComfyUI2/secret.json");
        let error = policy
            .existing_file(sibling.to_str().expect("utf-8"))
            .expect_err("string-prefix sibling must be refused");
        assert!(matches!(error, PathError::OutsideRoots { .. }));
    }

    #[test]
    fn dot_dot_cannot_climb_out() {
        let (_dir, policy) = setup();
        let error = policy
            .existing_file("user/../../ComfyUI2/secret.json")
            .expect_err("climbing out");
        assert!(matches!(error, PathError::OutsideRoots { .. }));
        let error = policy
            .existing_file("../nope.json")
            .expect_err("missing and outside");
        assert!(matches!(error, PathError::OutsideRoots { .. }));
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_followed_before_the_check() {
        let (dir, policy) = setup();
        let link = dir.path().join("ComfyUI/user/link.json");
        std::os::unix::fs::symlink(dir.path().join("ComfyUI2/secret.json"), &link)
            .expect("symlink");
        let error = policy
            .existing_file("user/link.json")
            .expect_err("link leads outside");
        assert!(matches!(error, PathError::OutsideRoots { .. }));
    }

    #[test]
    fn missing_empty_and_folder_paths_get_their_own_errors() {
        let (_dir, policy) = setup();
        assert!(matches!(
            policy.existing_file("user/absent.json"),
            Err(PathError::NotFound { .. })
        ));
        assert!(matches!(policy.existing_file("  "), Err(PathError::Empty)));
        assert!(matches!(
            policy.existing_file("user"),
            Err(PathError::NotAFile { .. })
        ));
        let none = PathPolicy::new(Vec::new());
        assert!(matches!(
            none.existing_file("x.json"),
            Err(PathError::OutsideRoots { .. })
        ));
    }

    #[test]
    fn writable_files_stay_inside_and_need_their_folder() {
        let (dir, policy) = setup();
        let fresh = policy
            .writable_file("user/new.json")
            .expect("new file inside");
        assert!(fresh.ends_with("ComfyUI/user/new.json"));
        assert!(
            policy.writable_file("user/wf.json").is_ok(),
            "overwrite inside"
        );
        assert!(matches!(
            policy.writable_file("user/missing/new.json"),
            Err(PathError::NoFolder { .. })
        ));
        assert!(matches!(
            policy.writable_file("user"),
            Err(PathError::NotAFile { .. })
        ));
        let sibling = dir.path().join("ComfyUI2/out.json");
        assert!(matches!(
            policy.writable_file(sibling.to_str().expect("utf-8")),
            Err(PathError::OutsideRoots { .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn writes_do_not_follow_symlinks_out() {
        let (dir, policy) = setup();
        let outside = dir.path().join("ComfyUI2");
        std::os::unix::fs::symlink(&outside, dir.path().join("ComfyUI/user/escape"))
            .expect("dir link");
        std::os::unix::fs::symlink(
            outside.join("secret.json"),
            dir.path().join("ComfyUI/user/over.json"),
        )
        .expect("file link");
        std::os::unix::fs::symlink(
            outside.join("absent.json"),
            dir.path().join("ComfyUI/user/dangling.json"),
        )
        .expect("dangling link");
        for raw in ["user/escape/x.json", "user/over.json", "user/dangling.json"] {
            assert!(
                matches!(
                    policy.writable_file(raw),
                    Err(PathError::OutsideRoots { .. })
                ),
                "{raw}"
            );
        }
    }

    /// Every way of naming a place outside the root is refused, for reading and writing.
    #[test]
    fn the_traversal_corpus_never_escapes() {
        let (dir, policy) = setup();
        let outside = dir.path().join("ComfyUI2/secret.json");
        let outside = outside.to_str().expect("utf-8");
        let corpus = [
            "../ComfyUI2/secret.json",
            "user/../../ComfyUI2/secret.json",
            "./../ComfyUI2/secret.json",
            "user/./../../ComfyUI2/secret.json",
            "../../../../../../etc/passwd",
            "/etc/passwd",
            outside,
            "user/../../../ComfyUI2/secret.json",
            "..",
            "../",
            "~/../../etc/passwd",
        ];
        for raw in corpus {
            assert!(
                matches!(
                    policy.existing_file(raw),
                    Err(PathError::OutsideRoots { .. } | PathError::NotFound { .. })
                ),
                "read {raw}"
            );
            let written = policy.writable_file(raw);
            assert!(
                written.as_ref().map_or(true, |path| path
                    .starts_with(dir.path().join("ComfyUI").canonicalize().expect("root"))),
                "write {raw}: {written:?}"
            );
        }
        // Names that are strange but stay inside (Windows separators and encoded dots are
        // plain characters on Unix, so they name files inside the root).
        for raw in [
            "user\\..\\..\\ComfyUI2\\secret.json",
            "user/%2e%2e/%2e%2e/x.json",
            "user/..%2fx.json",
        ] {
            if let Ok(path) = policy.writable_file(raw) {
                assert!(
                    path.starts_with(dir.path().join("ComfyUI").canonicalize().expect("root")),
                    "{raw}"
                );
            }
            assert!(policy.existing_file(raw).is_err(), "{raw}");
        }
    }

    #[tokio::test]
    async fn reads_are_capped() {
        let (_dir, policy) = setup();
        assert_eq!(
            policy.read_capped("user/wf.json", 10).await.expect("small"),
            b"{}"
        );
        assert!(matches!(
            policy.read_capped("user/wf.json", 1).await,
            Err(PathError::TooLarge {
                size: 2,
                limit: 1,
                ..
            })
        ));
    }
}
