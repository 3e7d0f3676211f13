//! What is installed in the user's ComfyUI, read from disk (ComfyUI need not run): the model
//! inventory (cached, revalidated by statting folders), the custom node packs, and a pack's
//! source. Other tools ask here whether a model or a pack is installed, through
//! [`crate::AppState::install_index`].
//!
//! Everything here does blocking file I/O: call it from `spawn_blocking`.

pub mod models;
pub mod nodes;
pub mod source;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::comfy::discovery::{Host, Install, ModelFolders, model_folders};
use crate::error::ToolError;
use crate::paths::PathPolicy;
use models::{FolderScan, ModelInventory};
use nodes::PackList;
use source::NodeSource;

/// How recent a folder change must be for a cached scan of it not to be trusted: some file
/// systems (FAT, exFAT, network shares) keep times to the second or two, so a change right
/// after a scan could carry the same time as the scan saw.
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

/// Why an install question could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(
        "The ComfyUI folder on this machine isn't known, so its models and custom nodes can't be read."
    )]
    NoInstall,
    #[error("{given:?} is not a model folder name: {problem}.")]
    BadKindName {
        given: String,
        problem: &'static str,
    },
    #[error("There is no model folder of kind {given:?} in this ComfyUI.")]
    UnknownKind {
        given: String,
        available: Vec<String>,
    },
    #[error("{given:?} is not a custom node pack name: {problem}.")]
    BadPackName {
        given: String,
        problem: &'static str,
    },
    #[error("No custom node pack named {given:?} is installed.")]
    NoSuchPack { given: String, similar: Vec<String> },
    #[error("The pack {pack} has no __init__.py.")]
    NoInitPy {
        pack: String,
        python_files: Vec<String>,
    },
    #[error("The pack {pack} has no file {file}.")]
    NoSuchFile {
        pack: String,
        file: String,
        python_files: Vec<String>,
    },
    #[error("{file:?} can't be read as source: {problem}.")]
    BadSourceFile { file: String, problem: String },
    #[error("Refused to read from the pack {pack}: {what}.")]
    OutsidePack { pack: String, what: String },
    #[error("The pack {pack} is a link to {}, outside the custom_nodes folders, so its source isn't read.", target.display())]
    LinkedOutside { pack: String, target: PathBuf },
    #[error("{} could not be read: {problem}", path.display())]
    Unreadable { path: PathBuf, problem: String },
    #[error("No custom_nodes folder was found in {}.", base.display())]
    NoCustomNodes { base: PathBuf },
}

impl InstallError {
    /// The next step for the artist.
    pub fn hint(&self) -> String {
        match self {
            Self::NoInstall => "Set COMFYUI_DIR (or --comfyui-dir) to your ComfyUI folder, the one holding models and custom_nodes, and restart the server.".into(),
            Self::BadKindName { .. } => "Give a folder kind such as checkpoints, loras or vae; get_models_summary lists them.".into(),
            Self::UnknownKind { available, .. } if available.is_empty() => {
                "This ComfyUI has no model folders yet; check that COMFYUI_DIR points at the right folder.".into()
            }
            Self::UnknownKind { available, .. } => {
                format!("Available kinds: {}.", available.join(", "))
            }
            Self::BadPackName { .. } => {
                "Give the pack's name exactly as list_custom_nodes shows it.".into()
            }
            Self::NoSuchPack { similar, .. } if similar.is_empty() => {
                "list_custom_nodes shows the installed packs.".into()
            }
            Self::NoSuchPack { similar, .. } => format!("Similar packs: {}.", similar.join(", ")),
            Self::NoInitPy { python_files, .. } | Self::NoSuchFile { python_files, .. }
                if python_files.is_empty() =>
            {
                "The pack has no Python files at its top level; pass a file inside it as `file`.".into()
            }
            Self::NoInitPy { python_files, .. } | Self::NoSuchFile { python_files, .. } => format!(
                "Its Python files: {}. Pass one as `file`.",
                python_files.join(", ")
            ),
            Self::BadSourceFile { .. } => "Give a text file inside the pack, relative to its folder, e.g. nodes.py.".into(),
            Self::OutsidePack { .. } => "Only files inside the pack's own folder are read.".into(),
            Self::LinkedOutside { .. } => "To allow it, add that folder to COMFYUI_AGENT_ALLOWED_ROOTS and restart the server.".into(),
            Self::Unreadable { .. } => "Check the file's permissions and try again.".into(),
            Self::NoCustomNodes { .. } => "Check that COMFYUI_DIR points at your ComfyUI folder (the one holding custom_nodes).".into(),
        }
    }
}

impl From<InstallError> for ToolError {
    fn from(error: InstallError) -> Self {
        let hint = error.hint();
        Self::rejected(error.to_string(), hint)
    }
}

/// A model folder kind as a client gives it: checked against a strict character set before
/// it is looked up among known kinds (it is never joined onto a path).
pub fn check_kind_name(raw: &str) -> Result<&str, InstallError> {
    let kind = raw.trim();
    let bad = |problem| InstallError::BadKindName {
        given: raw.chars().take(80).collect(),
        problem,
    };
    if kind.is_empty() {
        return Err(bad("it is empty"));
    }
    if kind.len() > 64 {
        return Err(bad("it is longer than any folder kind"));
    }
    if kind.contains(['/', '\\']) || kind.contains("..") {
        return Err(bad("it looks like a path; give only the kind, e.g. loras"));
    }
    if kind.starts_with('.')
        || !kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b' '))
    {
        return Err(bad("only letters, digits, _ - . and spaces are allowed"));
    }
    Ok(kind)
}

/// A view of the model inventory, with whether it came from the cache.
#[derive(Debug, Clone)]
pub struct ModelsView {
    pub inventory: Arc<ModelInventory>,
    /// Served from the cache: no folder changed since the last scan.
    pub cached: bool,
}

/// The install questions' shared state: the install, and the model scan cache. One per
/// [`crate::AppState`].
#[derive(Debug)]
pub struct InstallIndex {
    install: Option<Install>,
    host: Host,
    racy_window: Duration,
    /// Held while checking and (re)scanning, so two calls at once scan once.
    models: Mutex<Option<ModelCache>>,
}

/// What the last scan saw.
#[derive(Debug)]
struct ModelCache {
    /// Times of the files and folders `model_folders` reads, to notice a new kind folder or
    /// an edited `extra_model_paths.yaml`.
    layout_stamps: Vec<(PathBuf, Option<(SystemTime, u64)>)>,
    layout_racy: bool,
    folders: ModelFolders,
    scans: HashMap<PathBuf, Arc<FolderScan>>,
    inventory: Arc<ModelInventory>,
}

impl InstallIndex {
    pub fn new(install: Option<Install>, host: Host) -> Self {
        Self {
            install,
            host,
            racy_window: RACY_WINDOW,
            models: Mutex::new(None),
        }
    }

    /// Sets how recent a change makes a folder's cached scan untrusted (tests use zero to
    /// see the cache at work on folders they just made).
    pub fn with_racy_window(mut self, window: Duration) -> Self {
        self.racy_window = window;
        self
    }

    /// The install, or the error telling the artist to set `COMFYUI_DIR`.
    pub fn install(&self) -> Result<&Install, InstallError> {
        self.install.as_ref().ok_or(InstallError::NoInstall)
    }

    /// Every model folder of every kind, as `model_folders` reads them now (uncached).
    pub fn folders(&self) -> Result<ModelFolders, InstallError> {
        Ok(model_folders(self.install()?, &self.host))
    }

    /// The model inventory: from the cache when no folder changed since the last scan (a
    /// `stat` per folder), else rescanning only the folders that changed.
    pub fn models(&self) -> Result<ModelsView, InstallError> {
        let install = self.install()?;
        let mut guard = self
            .models
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let previous = guard.take();
        let layout_valid = previous.as_ref().is_some_and(|cache| {
            !cache.layout_racy && cache.layout_stamps == layout_stamps(install)
        });
        let (stamps, folders, old_scans, old_inventory) = match previous {
            Some(cache) if layout_valid => (
                cache.layout_stamps,
                cache.folders,
                cache.scans,
                Some(cache.inventory),
            ),
            Some(cache) => {
                let stamps = layout_stamps(install);
                let folders = model_folders(install, &self.host);
                // A changed folder time (ComfyUI saving into output/) that left every model
                // folder as it was keeps the inventory.
                let same = folders == cache.folders;
                (
                    stamps,
                    folders,
                    cache.scans,
                    same.then_some(cache.inventory),
                )
            }
            None => (
                layout_stamps(install),
                model_folders(install, &self.host),
                HashMap::new(),
                None,
            ),
        };
        let layout_racy = layout_is_racy(&stamps, self.racy_window);
        let mut scans = HashMap::with_capacity(old_scans.len());
        let mut rescanned = false;
        let visible = folders
            .kinds
            .iter()
            .filter(|(kind, _)| !kind.starts_with('.'))
            .flat_map(|(_, list)| list);
        for folder in visible {
            if scans.contains_key(&folder.path) {
                continue;
            }
            let scan = match old_scans.get(&folder.path) {
                Some(scan) if scan.still_valid() => Arc::clone(scan),
                _ => {
                    rescanned = true;
                    Arc::new(FolderScan::scan(&folder.path, self.racy_window))
                }
            };
            scans.insert(folder.path.clone(), scan);
        }
        let (inventory, cached) = match old_inventory {
            Some(inventory) if !rescanned => (inventory, true),
            _ => {
                let kinds: BTreeMap<String, Vec<PathBuf>> = folders
                    .kinds
                    .iter()
                    .map(|(kind, list)| {
                        (kind.clone(), list.iter().map(|f| f.path.clone()).collect())
                    })
                    .collect();
                let notes = folders
                    .notes
                    .iter()
                    .map(|note| note.user_message())
                    .collect();
                (
                    Arc::new(ModelInventory::assemble(
                        install.models_dir(),
                        &kinds,
                        &scans,
                        notes,
                    )),
                    false,
                )
            }
        };
        *guard = Some(ModelCache {
            layout_stamps: stamps,
            layout_racy,
            folders,
            scans,
            inventory: Arc::clone(&inventory),
        });
        Ok(ModelsView { inventory, cached })
    }

    /// Every custom node pack in every custom_nodes folder (the install's, then any a model
    /// paths file adds), enabled or disabled.
    pub fn custom_nodes(&self) -> Result<PackList, InstallError> {
        let install = self.install()?;
        let folders = model_folders(install, &self.host);
        let directories: Vec<PathBuf> = folders
            .custom_nodes
            .iter()
            .filter(|folder| folder.exists)
            .map(|folder| folder.path.clone())
            .collect();
        if directories.is_empty() {
            return Err(InstallError::NoCustomNodes {
                base: install.base_dir.clone(),
            });
        }
        Ok(nodes::list_packs(&directories))
    }

    /// Part of a pack's source; see [`source::read_node_source`].
    pub fn read_node_source(
        &self,
        policy: &PathPolicy,
        node_pack: &str,
        file: Option<&str>,
        max_lines: usize,
    ) -> Result<NodeSource, InstallError> {
        source::check_pack_name(node_pack)?;
        let packs = self.custom_nodes()?;
        source::read_node_source(&packs, policy, node_pack, file, max_lines)
    }
}

/// Modification time and length of the folders and files `model_folders` reads.
fn layout_stamps(install: &Install) -> Vec<(PathBuf, Option<(SystemTime, u64)>)> {
    let mut paths: Vec<PathBuf> = vec![
        install.base_dir.clone(),
        install.models_dir(),
        install.output_dir(),
    ];
    paths.extend(install.extra_model_paths.iter().cloned());
    paths
        .into_iter()
        .map(|path| {
            let stamp = stamp(&path);
            (path, stamp)
        })
        .collect()
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

fn layout_is_racy(stamps: &[(PathBuf, Option<(SystemTime, u64)>)], window: Duration) -> bool {
    let now = SystemTime::now();
    stamps.iter().any(|(_, stamp)| {
        stamp.is_some_and(|(time, _)| time.checked_add(window).is_none_or(|t| t >= now))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comfy::discovery::{HostOs, Layout, discover_install};

    fn host(os: HostOs, home: &Path) -> Host {
        Host {
            os,
            home: Some(home.to_path_buf()),
            appdata: None,
            local_appdata: None,
            xdg_config_home: None,
        }
    }

    fn write(path: &Path, bytes: &[u8]) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, bytes).expect("write");
    }

    fn index_for(host: Host) -> InstallIndex {
        let install = discover_install(&host, None)
            .install
            .expect("install found");
        InstallIndex::new(Some(install), host).with_racy_window(Duration::ZERO)
    }

    fn counts(view: &ModelsView) -> Vec<(String, usize)> {
        view.inventory
            .kinds
            .iter()
            .filter(|(_, models)| !models.files.is_empty())
            .map(|(kind, models)| (kind.clone(), models.files.len()))
            .collect()
    }

    fn names(view: &ModelsView, kind: &str) -> Vec<String> {
        view.inventory
            .kind(kind)
            .map(|(_, models)| models.files.iter().map(|f| f.name.clone()).collect())
            .unwrap_or_default()
    }

    /// A Linux install with GGUF files under both `unet` and `diffusion_models`, a model in
    /// `output/checkpoints`, and an `extra_model_paths.yaml` adding a shared drive.
    #[test]
    fn an_install_lists_every_kind_with_legacy_folders_merged_and_extra_paths_added() {
        let home = tempfile::tempdir().expect("tempdir");
        let home = home.path();
        let base = home.join("ComfyUI");
        write(&base.join("main.py"), b"");
        write(&base.join("models/checkpoints/sd15.safetensors"), b"12345");
        write(&base.join("models/unet/flux1-dev-Q4_K_S.gguf"), b"123");
        write(&base.join("models/diffusion_models/wan/wan2.1.gguf"), b"1");
        write(&base.join("models/clip/t5xxl.safetensors"), b"1");
        write(&base.join("models/configs/v1-inference.yaml"), b"x");
        write(&base.join("models/.cache/x.safetensors"), b"x");
        write(&base.join("models/loras/put_loras_here"), b"");
        write(&base.join("output/checkpoints/merged.safetensors"), b"1");
        let shared = home.join("shared");
        write(&shared.join("lora/style.safetensors"), b"12");
        write(
            &shared.join("nodes/extra_pack/__init__.py"),
            b"NODE_CLASS_MAPPINGS = {}",
        );
        write(&base.join("custom_nodes/local_pack/__init__.py"), b"");
        write(
            &base.join("extra_model_paths.yaml"),
            format!(
                "shared:\n  base_path: {}\n  loras: lora\n  custom_nodes: nodes\n",
                shared.display()
            )
            .as_bytes(),
        );
        let index = index_for(host(Host::current().os, home));
        let view = index.models().expect("models");
        assert!(!view.cached);
        assert_eq!(
            counts(&view),
            vec![
                ("checkpoints".to_string(), 2),
                ("diffusion_models".to_string(), 2),
                ("loras".to_string(), 1),
                ("text_encoders".to_string(), 1),
            ]
        );
        assert_eq!(
            names(&view, "unet"),
            vec!["flux1-dev-Q4_K_S.gguf", "wan/wan2.1.gguf"]
        );
        let (_, loras) = view.inventory.kind("loras").expect("loras");
        assert_eq!(loras.folders.len(), 2);
        assert_eq!(
            loras.folder_of(&loras.files[0]),
            shared.join("lora").as_path()
        );
        assert!(
            view.inventory
                .find("checkpoints", "merged.safetensors")
                .is_some()
        );
        assert_eq!(view.inventory.total_bytes, 5 + 3 + 1 + 1 + 1 + 2);
        assert!(view.inventory.kinds.contains_key("configs"));
        assert!(!view.inventory.kinds.contains_key(".cache"));

        let packs = index.custom_nodes().expect("packs");
        assert_eq!(packs.directories.len(), 2);
        let names: Vec<&str> = packs.packs.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, vec!["extra_pack", "local_pack"]);
    }

    #[test]
    fn a_macos_install_in_documents_is_read() {
        let home = tempfile::tempdir().expect("tempdir");
        let base = home.path().join("Documents/ComfyUI");
        write(&base.join("main.py"), b"");
        write(&base.join("models/vae/ae.safetensors"), b"1");
        let index = index_for(host(HostOs::MacOs, home.path()));
        assert_eq!(
            names(&index.models().expect("models"), "vae"),
            vec!["ae.safetensors"]
        );
    }

    #[test]
    fn a_windows_portable_install_is_read_inside_its_outer_folder() {
        let home = tempfile::tempdir().expect("tempdir");
        let outer = home.path().join("Desktop/ComfyUI_windows_portable");
        std::fs::create_dir_all(outer.join("python_embeded")).expect("mkdir");
        let base = outer.join("ComfyUI");
        write(&base.join("main.py"), b"");
        write(&base.join("models/upscale_models/4x.pth"), b"1");
        write(&base.join("custom_nodes/ComfyUI-Manager/__init__.py"), b"");
        let index = index_for(host(HostOs::Windows, home.path()));
        assert_eq!(index.install().expect("install").layout, Layout::Portable);
        assert_eq!(
            names(&index.models().expect("models"), "upscale_models"),
            vec!["4x.pth"]
        );
        assert_eq!(index.custom_nodes().expect("packs").packs.len(), 1);
    }

    #[test]
    fn a_desktop_install_reads_the_apps_model_paths_file() {
        let home = tempfile::tempdir().expect("tempdir");
        let home = home.path();
        let base = home.join("Documents/ComfyUI");
        write(&base.join("models/checkpoints/a.safetensors"), b"1");
        // The host's own rules, so the paths written in the files read back on this machine.
        let this_host = host(Host::current().os, home);
        let settings = this_host.desktop_dir().expect("settings folder");
        write(
            &settings.join("config.json"),
            format!(
                r#"{{"basePath":{}}}"#,
                serde_json::to_string(&base).expect("json")
            )
            .as_bytes(),
        );
        let legacy = home.join("old/ComfyUI");
        write(&legacy.join("models/checkpoints/b.ckpt"), b"1");
        write(
            &settings.join("extra_models_config.yaml"),
            format!(
                "comfyui_desktop:\n  base_path: {}\n  checkpoints: models/checkpoints\n",
                legacy.display()
            )
            .as_bytes(),
        );
        let index = index_for(this_host);
        assert_eq!(index.install().expect("install").layout, Layout::Desktop);
        assert_eq!(
            names(&index.models().expect("models"), "checkpoints"),
            vec!["a.safetensors", "b.ckpt"]
        );
    }

    #[test]
    fn the_cache_answers_until_a_folder_or_the_paths_file_changes() {
        let home = tempfile::tempdir().expect("tempdir");
        let base = home.path().join("ComfyUI");
        write(&base.join("main.py"), b"");
        write(&base.join("models/loras/a.safetensors"), b"1");
        let index = index_for(host(Host::current().os, home.path()));
        assert!(!index.models().expect("first").cached);
        assert!(index.models().expect("second").cached);

        write(&base.join("models/loras/b.safetensors"), b"1");
        let view = index.models().expect("after a new file");
        assert!(!view.cached);
        assert_eq!(names(&view, "loras").len(), 2);

        write(&base.join("output/ComfyUI_00001_.png"), b"png");
        assert!(index.models().expect("after a new image").cached);

        write(&base.join("models/ipadapter/ip.bin"), b"1");
        let view = index.models().expect("after a new kind");
        assert_eq!(names(&view, "ipadapter"), vec!["ip.bin"]);

        let drive = home.path().join("drive");
        write(&drive.join("loras/c.safetensors"), b"1");
        write(
            &base.join("extra_model_paths.yaml"),
            format!("d:\n  base_path: {}\n  loras: loras\n", drive.display()).as_bytes(),
        );
        let view = index.models().expect("after a new paths file");
        assert_eq!(names(&view, "loras").len(), 3);

        write(&base.join("extra_model_paths.yaml"), b"d: [broken\n");
        let view = index.models().expect("after a broken paths file");
        assert_eq!(names(&view, "loras").len(), 2);
        assert_eq!(view.inventory.notes.len(), 1, "{:?}", view.inventory.notes);
        assert!(index.models().expect("again").cached);
    }

    #[test]
    fn two_calls_at_once_scan_once() {
        let home = tempfile::tempdir().expect("tempdir");
        let base = home.path().join("ComfyUI");
        write(&base.join("main.py"), b"");
        for n in 0..200 {
            write(&base.join(format!("models/loras/{n}.safetensors")), b"1");
        }
        let index = index_for(host(HostOs::Linux, home.path()));
        let cached: Vec<bool> = std::thread::scope(|scope| {
            let calls: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| index.models().expect("models").cached))
                .collect();
            calls
                .into_iter()
                .map(|c| c.join().expect("joins"))
                .collect()
        });
        assert_eq!(cached.iter().filter(|c| !**c).count(), 1, "{cached:?}");
    }

    #[test]
    fn without_an_install_every_question_says_to_set_comfyui_dir() {
        let index = InstallIndex::new(None, Host::current());
        for error in [
            index.models().err(),
            index.custom_nodes().err(),
            index.folders().err(),
        ] {
            let error = error.expect("refused");
            assert!(matches!(error, InstallError::NoInstall));
            assert!(error.hint().contains("COMFYUI_DIR"));
        }
    }

    #[test]
    fn an_install_without_custom_nodes_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let install = discover_install(&host(HostOs::Linux, dir.path()), Some(dir.path()))
            .install
            .expect("configured");
        let index = InstallIndex::new(Some(install), host(HostOs::Linux, dir.path()));
        assert!(matches!(
            index.custom_nodes(),
            Err(InstallError::NoCustomNodes { .. })
        ));
        assert!(index.models().expect("empty").inventory.kinds.is_empty());
    }

    #[test]
    fn kind_names_are_plain_names_never_paths() {
        for bad in [
            "../",
            "..",
            "/etc",
            "..\\",
            "checkpoints/../..",
            "checkpoints\\..\\..",
            "C:\\Windows",
            ".hidden",
            "",
            "a\0b",
            "loras;rm",
        ] {
            assert!(
                matches!(check_kind_name(bad), Err(InstallError::BadKindName { .. })),
                "{bad:?}"
            );
        }
        for good in [
            "checkpoints",
            "LLavacheckpoints",
            "ultralytics_bbox",
            "sams",
            "unet",
        ] {
            assert_eq!(check_kind_name(good).expect(good), good);
        }
    }
}
