//! Finding a named model file on disk and reading what its header says.
//!
//! [`find_model_file`] asks each of the install's model folders (`model_folders`, extra model
//! paths included) for the name directly, one `stat` per folder, so it needs no inventory scan
//! and sees a file the moment it lands.

use std::path::{Component as PathPart, Path, PathBuf};

use crate::comfy::discovery::{Host, Install, ModelFolders, canonical_kind, model_folders};
use crate::error::PathError;
use crate::models::detect::{self, Verdict};
use crate::models::family;
use crate::models::header;
use crate::paths::PathPolicy;

/// At most this many headers are read per call; further names are judged by name.
pub const MAX_HEADER_READS: usize = 200;

/// Model kinds tried first for a bare file name, in the order people most often mean.
const KIND_ORDER: &[&str] = &[
    "checkpoints",
    "diffusion_models",
    "loras",
    "vae",
    "text_encoders",
    "controlnet",
];

/// Where a named model is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Located {
    Found(PathBuf),
    Missing,
    /// A path the policy doesn't allow, or a name that climbs out of the model folders.
    Refused(String),
}

/// Finds `name` (`x.safetensors`, `sub/x.safetensors`, `loras/sub/x.safetensors`, or an
/// absolute path, which must pass the path policy) in the install's model folders.
pub fn find_model_file(name: &str, folders: &ModelFolders, policy: &PathPolicy) -> Located {
    let name = name.trim();
    if Path::new(name).is_absolute() {
        return match policy.existing_file(name) {
            Ok(path) => Located::Found(path),
            Err(PathError::NotFound { .. }) => Located::Missing,
            Err(error) => Located::Refused(error.to_string()),
        };
    }
    let relative = name.replace('\\', "/");
    let relative = Path::new(&relative);
    if relative
        .components()
        .any(|part| !matches!(part, PathPart::Normal(_) | PathPart::CurDir))
    {
        return Located::Refused(format!(
            "{name:?} climbs out of the model folders; name a file inside them"
        ));
    }
    let is_file = |path: &Path| std::fs::metadata(path).is_ok_and(|m| m.is_file());
    // `loras/sub/x.safetensors`: the first part names the kind.
    let mut parts = relative.components();
    if let (Some(PathPart::Normal(first)), rest) = (parts.next(), parts.as_path()) {
        let kind = canonical_kind(&first.to_string_lossy()).to_string();
        if !rest.as_os_str().is_empty() {
            for folder in folders.folders(&kind) {
                let candidate = folder.path.join(rest);
                if is_file(&candidate) {
                    return Located::Found(candidate);
                }
            }
        }
    }
    let ordered = KIND_ORDER.iter().copied().chain(
        folders
            .kinds
            .keys()
            .map(String::as_str)
            .filter(|kind| !KIND_ORDER.contains(kind)),
    );
    for kind in ordered {
        for folder in folders.folders(kind) {
            let candidate = folder.path.join(relative);
            if is_file(&candidate) {
                return Located::Found(candidate);
            }
        }
    }
    // `models/loras/x.safetensors`, relative to the ComfyUI folder.
    match policy.existing_file(name) {
        Ok(path) => Located::Found(path),
        Err(_) => Located::Missing,
    }
}

/// One model name, judged.
#[derive(Debug, Clone)]
pub struct Inspected {
    pub name: String,
    /// The file whose header was read.
    pub file: Option<PathBuf>,
    pub verdict: Verdict,
}

/// Judges each name: by its file's header when the file is found in the install's model
/// folders (or at an allowed absolute path), by its name otherwise. Blocking: file system
/// walks and header reads; call it from a blocking thread.
pub fn inspect_models(
    install: Option<&Install>,
    policy: &PathPolicy,
    names: &[String],
) -> Vec<Inspected> {
    let folders = install
        .map(|install| model_folders(install, &Host::current()))
        .unwrap_or_default();
    names
        .iter()
        .enumerate()
        .map(|(at, name)| {
            let by_name = family::identify(name);
            if at >= MAX_HEADER_READS {
                return Inspected {
                    name: name.clone(),
                    file: None,
                    verdict: detect::decide(&by_name, None),
                };
            }
            match find_model_file(name, &folders, policy) {
                Located::Found(path) => {
                    let read = header::read_header(&path)
                        .map(|header| detect::detect(&header))
                        .map_err(|error| error.to_string());
                    Inspected {
                        name: name.clone(),
                        verdict: detect::decide(&by_name, Some(read)),
                        file: Some(path),
                    }
                }
                Located::Missing => Inspected {
                    name: name.clone(),
                    file: None,
                    verdict: detect::decide(&by_name, None),
                },
                Located::Refused(reason) => {
                    let mut verdict = detect::decide(&by_name, None);
                    verdict.note = Some(format!(
                        "The file wasn't opened: {reason}. The name decided instead."
                    ));
                    Inspected {
                        name: name.clone(),
                        file: None,
                        verdict,
                    }
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comfy::discovery::{FolderOrigin, ModelFolder};

    fn folders(pairs: &[(&str, &Path)]) -> ModelFolders {
        let mut folders = ModelFolders::default();
        for (kind, path) in pairs {
            folders
                .kinds
                .entry((*kind).to_string())
                .or_default()
                .push(ModelFolder {
                    path: path.to_path_buf(),
                    origin: FolderOrigin::Install,
                    exists: true,
                });
        }
        folders
    }

    #[test]
    fn names_are_found_by_kind_subfolder_and_absolute_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        let loras = root.join("models/loras");
        let extra = root.join("elsewhere/checkpoints");
        std::fs::create_dir_all(loras.join("sub")).expect("mkdir");
        std::fs::create_dir_all(&extra).expect("mkdir");
        std::fs::write(loras.join("sub/a.safetensors"), b"x").expect("write");
        std::fs::write(extra.join("b.safetensors"), b"x").expect("write");
        let folders = folders(&[("loras", &loras), ("checkpoints", &extra)]);
        let policy = PathPolicy::new(vec![root.join("models")]);
        let found = |name: &str| find_model_file(name, &folders, &policy);
        assert_eq!(
            found("sub/a.safetensors"),
            Located::Found(loras.join("sub/a.safetensors"))
        );
        assert_eq!(
            found("loras/sub/a.safetensors"),
            Located::Found(loras.join("sub/a.safetensors"))
        );
        assert_eq!(
            found("sub\\a.safetensors"),
            Located::Found(loras.join("sub/a.safetensors"))
        );
        assert_eq!(
            found("b.safetensors"),
            Located::Found(extra.join("b.safetensors"))
        );
        assert_eq!(found("nope.safetensors"), Located::Missing);
        assert!(matches!(
            found("../elsewhere/checkpoints/b.safetensors"),
            Located::Refused(_)
        ));
        let inside = loras.join("sub/a.safetensors").display().to_string();
        assert!(matches!(found(&inside), Located::Found(_)));
        // Absolute paths go through the path policy: the extra folder is not an allowed root.
        let outside = extra.join("b.safetensors").display().to_string();
        assert!(
            matches!(found(&outside), Located::Refused(_)),
            "{:?}",
            found(&outside)
        );
        assert_eq!(
            found(&root.join("models/none.safetensors").display().to_string()),
            Located::Missing
        );
    }

    #[test]
    fn unfound_names_fall_back_to_the_name_rule() {
        let policy = PathPolicy::new(Vec::new());
        let judged = inspect_models(None, &policy, &["sdxl_base.safetensors".to_string()]);
        assert_eq!(judged[0].verdict.family.map(|f| f.key), Some("sdxl"));
        assert_eq!(judged[0].verdict.decided_by, detect::DecidedBy::FileName);
        assert!(judged[0].file.is_none());
    }
}
