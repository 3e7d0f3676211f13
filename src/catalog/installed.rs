//! Is this pack or model already on disk? Answered from the install index (`src/install/`):
//! the custom node pack listing and the cached model inventory.

use std::collections::HashSet;
use std::sync::Arc;

use crate::install::InstallIndex;
use crate::install::models::ModelInventory;
use crate::install::nodes::{PackList, repository_key};

use super::manager::repo_name;

/// The enabled custom node packs of an install, by lower-cased name and by repository.
#[derive(Debug, Default)]
pub struct InstalledPacks {
    names: HashSet<String>,
    repositories: HashSet<String>,
}

impl InstalledPacks {
    /// The install's packs; none when the install or its custom_nodes folder isn't known.
    pub fn of(index: &InstallIndex) -> Self {
        index
            .custom_nodes()
            .map(|list| Self::from_list(&list))
            .unwrap_or_default()
    }

    pub fn from_list(list: &PackList) -> Self {
        let enabled = list.packs.iter().filter(|pack| pack.enabled);
        let mut names = HashSet::new();
        let mut repositories = HashSet::new();
        for pack in enabled {
            names.insert(pack.name.to_lowercase());
            if let Some(repository) = &pack.repository {
                repositories.insert(repository_key(repository));
            }
        }
        Self {
            names,
            repositories,
        }
    }

    /// Whether a pack cloned from this repository URL, or with a folder named after it, its
    /// title or its registry id, is installed and enabled.
    pub fn contains(&self, url: Option<&str>, title: Option<&str>, id: Option<&str>) -> bool {
        if url.is_some_and(|url| self.repositories.contains(&repository_key(url))) {
            return true;
        }
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

/// The model files of an install (the cached inventory, every kind).
#[derive(Debug, Default)]
pub struct InstalledModels {
    inventory: Option<Arc<ModelInventory>>,
}

impl InstalledModels {
    /// The install's models; none when the install isn't known.
    pub fn of(index: &InstallIndex) -> Self {
        match index.models() {
            Ok(view) => Self {
                inventory: Some(view.inventory),
            },
            Err(_) => Self::default(),
        }
    }

    /// Whether a file with this name is in any model folder (any sub-folder, any case).
    pub fn contains(&self, file_name: &str) -> bool {
        let base = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
        let Some(inventory) = &self.inventory else {
            return false;
        };
        !base.is_empty()
            && inventory
                .kinds
                .values()
                .flat_map(|kind| &kind.files)
                .any(|file| {
                    file.name
                        .rsplit('/')
                        .next()
                        .is_some_and(|name| name.eq_ignore_ascii_case(base))
                })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::comfy::discovery::{Host, Install, InstallSource, Layout};

    fn index(dir: &Path) -> InstallIndex {
        let install = Install {
            base_dir: dir.to_path_buf(),
            code_dir: Some(dir.to_path_buf()),
            layout: Layout::Standard,
            found_by: InstallSource::Configured,
            extra_model_paths: Vec::new(),
        };
        InstallIndex::new(Some(install), Host::current())
    }

    #[test]
    fn packs_match_by_repository_folder_title_or_id_in_any_case() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nodes = dir.path().join("custom_nodes");
        for pack in [
            "ComfyUI-Impact-Pack",
            "comfyui-kjnodes",
            "Old.disabled",
            "renamed",
        ] {
            std::fs::create_dir_all(nodes.join(pack)).expect("mkdir");
            std::fs::write(nodes.join(pack).join("__init__.py"), "").expect("write");
        }
        std::fs::create_dir_all(nodes.join("renamed/.git")).expect("mkdir");
        std::fs::write(
            nodes.join("renamed/.git/config"),
            "[remote \"origin\"]\n\turl = https://github.com/someone/Cool-Nodes.git\n",
        )
        .expect("write");
        let packs = InstalledPacks::of(&index(dir.path()));
        assert!(packs.contains(
            Some("https://github.com/ltdrdata/ComfyUI-Impact-Pack.git"),
            None,
            None
        ));
        assert!(packs.contains(None, None, Some("ComfyUI-KJNodes")));
        assert!(packs.contains(Some("git@github.com:someone/cool-nodes"), None, None));
        assert!(!packs.contains(Some("https://github.com/x/Old"), Some("Old"), None));
        assert!(!packs.contains(None, Some(""), None));
        assert_eq!(packs.len(), 3);
    }

    #[test]
    fn models_are_found_in_sub_folders() {
        let dir = tempfile::tempdir().expect("tempdir");
        let loras = dir.path().join("models/loras/flux");
        std::fs::create_dir_all(&loras).expect("mkdir");
        std::fs::write(loras.join("Detail.safetensors"), b"x").expect("write");
        let models = InstalledModels::of(&index(dir.path()));
        assert!(models.contains("detail.safetensors"));
        assert!(models.contains("loras/Detail.safetensors"));
        assert!(!models.contains("other.safetensors"));
        let nothing = InstallIndex::new(None, Host::current());
        assert!(!InstalledModels::of(&nothing).contains("detail.safetensors"));
    }
}
