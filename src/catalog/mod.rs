//! What can be installed and where it comes from: ComfyUI-Manager's local lists, the Comfy
//! registry, CivitAI and Hugging Face. The tools in `tools/discover.rs` and
//! `tools/civitai.rs` combine them; nothing here installs anything.

pub mod civitai;
pub mod huggingface;
pub mod installed;
pub mod manager;
pub mod nodes;
pub mod rank;
pub mod registry;
pub mod shell;

use std::sync::{Arc, Mutex};

use crate::comfy::discovery::Install;

use manager::{Located, ManagerData, ManagerFile, locate};

/// The parsed Manager files, shared by all sessions (it hangs off `AppState`). Re-read when a
/// file's path or modification time changes, or after [`Catalog::invalidate`].
#[derive(Debug, Default)]
pub struct Catalog {
    manager: Mutex<Option<Arc<ManagerData>>>,
}

impl Catalog {
    /// The Manager's data for `install`, from memory while its files are unchanged.
    pub fn manager(&self, install: Option<&Install>) -> Arc<ManagerData> {
        let stamp: Vec<Option<Located>> = match install {
            Some(install) => ManagerFile::ALL
                .iter()
                .map(|&file| locate(install, file))
                .collect(),
            None => Vec::new(),
        };
        let mut slot = self.manager.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(data) = slot.as_ref()
            && data.stamp() == stamp
        {
            return Arc::clone(data);
        }
        let data = Arc::new(ManagerData::load(install));
        *slot = Some(Arc::clone(&data));
        data
    }

    /// Whether the Manager's data is in memory now.
    pub fn is_cached(&self) -> bool {
        self.manager
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Forgets the parsed files (`check_registry_freshness` with `refresh: true`).
    pub fn invalidate(&self) {
        *self.manager.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comfy::discovery::{InstallSource, Layout};

    #[test]
    fn manager_data_is_reread_when_a_file_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let manager = dir.path().join("custom_nodes/ComfyUI-Manager");
        std::fs::create_dir_all(&manager).expect("mkdir");
        let map = manager.join("extension-node-map.json");
        std::fs::write(
            &map,
            r#"{"https://github.com/a/A": [["One"], {"title_aux": "A"}]}"#,
        )
        .expect("write");
        let install = Install {
            base_dir: dir.path().to_path_buf(),
            code_dir: None,
            layout: Layout::Standard,
            found_by: InstallSource::Configured,
            extra_model_paths: Vec::new(),
        };
        let catalog = Catalog::default();
        let first = catalog.manager(Some(&install));
        assert!(first.pack_for_class("One").is_some());
        assert!(Arc::ptr_eq(&first, &catalog.manager(Some(&install))));

        // A newer copy in the Manager's cache folder takes over.
        let cache = dir.path().join("user/__manager/cache");
        std::fs::create_dir_all(&cache).expect("mkdir");
        let newer = cache.join("123_extension-node-map.json");
        std::fs::write(
            &newer,
            r#"{"https://github.com/b/B": [["Two"], {"title_aux": "B"}]}"#,
        )
        .expect("write");
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&newer)
            .and_then(|f| f.set_modified(later))
            .expect("touch");
        let second = catalog.manager(Some(&install));
        assert!(second.pack_for_class("Two").is_some());
        assert!(second.pack_for_class("One").is_none());

        catalog.invalidate();
        assert!(!catalog.is_cached());
    }
}
