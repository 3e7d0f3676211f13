//! Is this pack or model already on disk? Small, bounded looks at the install's folders.
//!
//! NOTE for the lead: this is the one place the discovery tools ask "is it installed"; swap
//! these helpers for the install inventory (`src/install/`) once it lands.

use std::collections::HashSet;
use std::path::Path;

use crate::comfy::discovery::{Host, Install, model_folders};

use super::manager::repo_name;

/// How deep and how wide a model folder walk may go.
const MAX_DEPTH: usize = 4;
const MAX_ENTRIES: usize = 50_000;

/// The custom node pack folders of an install (lower-cased names; disabled packs left out).
#[derive(Debug, Default)]
pub struct InstalledPacks {
    names: HashSet<String>,
}

impl InstalledPacks {
    pub fn scan(install: Option<&Install>) -> Self {
        let mut names = HashSet::new();
        if let Some(install) = install {
            let entries = std::fs::read_dir(install.custom_nodes_dir());
            for entry in entries.into_iter().flatten().flatten() {
                let path = entry.path();
                let Some(name) = entry.file_name().to_str().map(str::to_lowercase) else {
                    continue;
                };
                // The Manager disables a pack by renaming it or moving it to `.disabled`.
                if name.starts_with('.') || name.ends_with(".disabled") || name == "__pycache__" {
                    continue;
                }
                if path.is_dir() || name.ends_with(".py") {
                    names.insert(name.trim_end_matches(".py").to_string());
                }
            }
        }
        Self { names }
    }

    /// Whether a pack with this repository URL, title or registry id has a folder.
    pub fn contains(&self, url: Option<&str>, title: Option<&str>, id: Option<&str>) -> bool {
        let candidates = [url.map(repo_name), title, id];
        candidates
            .into_iter()
            .flatten()
            .map(|name| name.trim().to_lowercase())
            .filter(|name| !name.is_empty())
            .any(|name| self.names.contains(&name))
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// The model files of an install, by lower-cased file name.
#[derive(Debug, Default)]
pub struct InstalledModels {
    names: HashSet<String>,
}

impl InstalledModels {
    pub fn scan(install: Option<&Install>) -> Self {
        let mut names = HashSet::new();
        if let Some(install) = install {
            let folders = model_folders(install, &Host::current());
            let mut budget = MAX_ENTRIES;
            for folder in folders.kinds.values().flatten() {
                walk(&folder.path, 0, &mut budget, &mut names);
            }
        }
        Self { names }
    }

    /// Whether a file with this name is in any model folder (any sub-folder, any case).
    pub fn contains(&self, file_name: &str) -> bool {
        let base = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
        !base.is_empty() && self.names.contains(&base.to_lowercase())
    }
}

fn walk(dir: &Path, depth: usize, budget: &mut usize, names: &mut HashSet<String>) {
    if depth > MAX_DEPTH || *budget == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            walk(&entry.path(), depth + 1, budget, names);
        } else if let Some(name) = entry.file_name().to_str() {
            names.insert(name.to_lowercase());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comfy::discovery::{InstallSource, Layout};

    fn install(dir: &Path) -> Install {
        Install {
            base_dir: dir.to_path_buf(),
            code_dir: Some(dir.to_path_buf()),
            layout: Layout::Standard,
            found_by: InstallSource::Configured,
            extra_model_paths: Vec::new(),
        }
    }

    #[test]
    fn packs_match_by_repo_name_title_or_id_in_any_case() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nodes = dir.path().join("custom_nodes");
        std::fs::create_dir_all(nodes.join("ComfyUI-Impact-Pack")).expect("mkdir");
        std::fs::create_dir_all(nodes.join("comfyui-kjnodes")).expect("mkdir");
        std::fs::create_dir_all(nodes.join("Old.disabled")).expect("mkdir");
        let packs = InstalledPacks::scan(Some(&install(dir.path())));
        assert!(packs.contains(
            Some("https://github.com/ltdrdata/ComfyUI-Impact-Pack.git"),
            None,
            None
        ));
        assert!(packs.contains(None, None, Some("ComfyUI-KJNodes")));
        assert!(!packs.contains(Some("https://github.com/x/Old"), Some("Old"), None));
        assert!(!packs.contains(None, Some(""), None));
    }

    #[test]
    fn models_are_found_in_sub_folders() {
        let dir = tempfile::tempdir().expect("tempdir");
        let loras = dir.path().join("models/loras/flux");
        std::fs::create_dir_all(&loras).expect("mkdir");
        std::fs::write(loras.join("Detail.safetensors"), b"x").expect("write");
        let models = InstalledModels::scan(Some(&install(dir.path())));
        assert!(models.contains("detail.safetensors"));
        assert!(models.contains("loras/Detail.safetensors"));
        assert!(!models.contains("other.safetensors"));
        assert!(!InstalledModels::scan(None).contains("detail.safetensors"));
    }
}
