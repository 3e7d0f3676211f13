//! The model inventory: every model file in every folder of every kind, as ComfyUI lists
//! them, scanned without reading a byte of any model and kept per folder so that a change in
//! one folder rescans only that folder.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::comfy::discovery::canonical_kind;

/// The file extensions ComfyUI's model loaders accept, compared without regard to case.
pub const MODEL_EXTENSIONS: [&str; 9] = [
    "safetensors",
    "sft",
    "ckpt",
    "pt",
    "pt2",
    "pth",
    "bin",
    "gguf",
    "onnx",
];

/// How deep a model folder is walked; deeper trees are almost certainly a link loop the cycle
/// guard could not see (a bind mount), not models.
const MAX_DEPTH: usize = 32;

/// Whether `name` ends with a model extension (any case).
pub fn is_model_file(name: &str) -> bool {
    name.rsplit_once('.').is_some_and(|(stem, ext)| {
        !stem.is_empty() && MODEL_EXTENSIONS.iter().any(|m| ext.eq_ignore_ascii_case(m))
    })
}

/// One model file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFile {
    /// The name ComfyUI shows: relative to its folder, with forward slashes.
    pub name: String,
    /// Size in bytes (of the link's target, for a linked file).
    pub size: u64,
    /// Index into the kind's `folders`: the folder it lives in.
    pub folder: usize,
}

/// The models of one kind: its folders in ComfyUI's search order, and the files in them
/// sorted by name. A name found in two folders is listed once, from the first folder, which
/// is the one ComfyUI loads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindModels {
    pub folders: Vec<PathBuf>,
    pub files: Vec<ModelFile>,
    pub bytes: u64,
}

impl KindModels {
    /// The file named `name` (either slash accepted), if installed.
    pub fn find(&self, name: &str) -> Option<&ModelFile> {
        let wanted = name.replace('\\', "/");
        self.files
            .binary_search_by(|file| file.name.as_str().cmp(&wanted))
            .ok()
            .map(|at| &self.files[at])
    }

    pub fn folder_of(&self, file: &ModelFile) -> &Path {
        self.folders
            .get(file.folder)
            .map_or(Path::new(""), PathBuf::as_path)
    }
}

/// Every model kind the install knows (its folders exist or are declared), with its files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelInventory {
    /// The install's own `models` folder.
    pub models_dir: PathBuf,
    pub kinds: BTreeMap<String, KindModels>,
    /// Model paths files, or parts of them, that could not be used, as sentences.
    pub notes: Vec<String>,
    pub total_files: usize,
    pub total_bytes: u64,
}

impl ModelInventory {
    /// The kind named `kind`: exactly, by its legacy name (`unet`, `clip`), or ignoring case.
    /// Returns the canonical kind name with its models.
    pub fn kind(&self, kind: &str) -> Option<(&str, &KindModels)> {
        let canonical = canonical_kind(kind);
        self.kinds
            .get_key_value(canonical)
            .or_else(|| {
                self.kinds.iter().find(|(name, _)| {
                    name.eq_ignore_ascii_case(canonical_kind(&kind.to_lowercase()))
                })
            })
            .map(|(name, models)| (name.as_str(), models))
    }

    /// Whether `name` is installed as a model of `kind` (legacy kind names accepted).
    pub fn find(&self, kind: &str, name: &str) -> Option<&ModelFile> {
        self.kind(kind).and_then(|(_, models)| models.find(name))
    }

    /// Every kind holding a file whose name, or whose last path part, is `name`; for "where
    /// is this model" questions when the kind is not known.
    pub fn locate<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (&'a str, &'a ModelFile)> {
        let wanted = name.replace('\\', "/");
        self.kinds.iter().flat_map(move |(kind, models)| {
            let wanted = wanted.clone();
            models
                .files
                .iter()
                .filter(move |file| {
                    file.name == wanted || file.name.rsplit('/').next() == Some(wanted.as_str())
                })
                .map(move |file| (kind.as_str(), file))
        })
    }

    /// Builds the inventory from scanned folders; `kinds` gives each kind's folders in
    /// search order, `scans` the scan of each folder.
    pub(crate) fn assemble(
        models_dir: PathBuf,
        kinds: &BTreeMap<String, Vec<PathBuf>>,
        scans: &std::collections::HashMap<PathBuf, Arc<FolderScan>>,
        notes: Vec<String>,
    ) -> Self {
        let mut inventory = Self {
            models_dir,
            notes,
            ..Self::default()
        };
        // A hidden folder in `models/` (an editor's or a notebook's) is no kind.
        for (kind, folders) in kinds.iter().filter(|(kind, _)| !kind.starts_with('.')) {
            let mut seen: HashSet<&str> = HashSet::new();
            let mut files = Vec::new();
            let mut bytes = 0;
            for (index, folder) in folders.iter().enumerate() {
                let Some(scan) = scans.get(folder) else {
                    continue;
                };
                for (name, size) in &scan.files {
                    if seen.insert(name.as_str()) {
                        bytes += size;
                        files.push(ModelFile {
                            name: name.clone(),
                            size: *size,
                            folder: index,
                        });
                    }
                }
            }
            files.sort_unstable_by(|a, b| a.name.cmp(&b.name));
            inventory.total_files += files.len();
            inventory.total_bytes += bytes;
            inventory.kinds.insert(
                kind.clone(),
                KindModels {
                    folders: folders.clone(),
                    files,
                    bytes,
                },
            );
        }
        inventory
    }
}

/// One folder's scan: its model files and every directory walked with the modification time
/// seen, so the scan can be checked for staleness by statting directories only.
#[derive(Debug, Clone, Default)]
pub(crate) struct FolderScan {
    /// (name relative to the folder with forward slashes, size).
    pub(crate) files: Vec<(String, u64)>,
    /// Every directory walked, with its modification time (`None`: missing or unknown).
    dirs: Vec<(PathBuf, Option<SystemTime>)>,
    /// A directory changed so recently that a later change could carry the same time (file
    /// systems with coarse timestamps): the scan is rechecked by rescanning.
    racy: bool,
}

impl FolderScan {
    /// Walks `root` (following links to folders and files, as ComfyUI does, with a guard
    /// against link loops). Reads directory listings and file sizes only.
    pub(crate) fn scan(root: &Path, racy_window: Duration) -> Self {
        let started = SystemTime::now();
        let mut scan = Self::default();
        let Ok(real_root) = root.canonicalize() else {
            scan.dirs.push((root.to_path_buf(), None));
            return scan;
        };
        // Targets of followed folder links, and the root: each is walked once.
        let mut walked: HashSet<PathBuf> = HashSet::new();
        walked.insert(real_root.clone());
        let mut stack = vec![(root.to_path_buf(), real_root, String::new(), 0_usize)];
        while let Some((dir, real, prefix, depth)) = stack.pop() {
            // The time is read before the listing, so a change during the listing shows as a
            // newer time next time.
            let modified = std::fs::metadata(&dir).and_then(|m| m.modified()).ok();
            let recent = modified
                .is_none_or(|time| time.checked_add(racy_window).is_none_or(|t| t >= started));
            scan.racy |= recent;
            scan.dirs.push((dir.clone(), modified));
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let file_name = entry.file_name();
                let Some(name) = file_name.to_str() else {
                    continue;
                };
                if name.starts_with('.') {
                    continue;
                }
                let Ok(file_type) = entry.file_type() else {
                    continue;
                };
                let linked = file_type.is_symlink();
                let target = if linked {
                    // A dangling link lists nothing.
                    match std::fs::metadata(entry.path()) {
                        Ok(target) => Some(target),
                        Err(_) => continue,
                    }
                } else {
                    None
                };
                let is_dir = target.as_ref().map_or(file_type.is_dir(), |m| m.is_dir());
                if is_dir {
                    if depth + 1 > MAX_DEPTH {
                        continue;
                    }
                    let child_real = if linked {
                        let Ok(child_real) = entry.path().canonicalize() else {
                            continue;
                        };
                        // A link to a folder above this one, or one walked already: a loop.
                        if real.starts_with(&child_real) || !walked.insert(child_real.clone()) {
                            continue;
                        }
                        child_real
                    } else {
                        real.join(name)
                    };
                    stack.push((
                        entry.path(),
                        child_real,
                        format!("{prefix}{name}/"),
                        depth + 1,
                    ));
                } else if is_model_file(name) {
                    let size = match target {
                        Some(target) if target.is_file() => target.len(),
                        Some(_) => continue,
                        None if file_type.is_file() => entry.metadata().map_or(0, |m| m.len()),
                        None => continue,
                    };
                    scan.files.push((format!("{prefix}{name}"), size));
                }
            }
        }
        scan
    }

    /// Whether a rescan would find the same files: no walked directory changed (or appeared,
    /// or went away). Costs one `stat` per directory.
    pub(crate) fn still_valid(&self) -> bool {
        !self.racy
            && self
                .dirs
                .iter()
                .all(|(dir, seen)| std::fs::metadata(dir).and_then(|m| m.modified()).ok() == *seen)
    }
}

/// A size as people read it: base 1024, one decimal, e.g. `6.5 GB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut size = bytes as f64;
    for unit in &UNITS[..UNITS.len() - 1] {
        if size < 1024.0 {
            return format!("{size:.1} {unit}");
        }
        size /= 1024.0;
    }
    format!("{size:.1} {}", UNITS[UNITS.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path, bytes: usize) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, vec![0_u8; bytes]).expect("write");
    }

    #[test]
    fn model_extensions_match_without_case_and_need_a_stem() {
        assert!(is_model_file("a.safetensors"));
        assert!(is_model_file("flux-Q4_K_M.GGUF"));
        assert!(is_model_file("x.sft"));
        assert!(is_model_file("x.pt2"));
        assert!(!is_model_file(".safetensors"));
        assert!(!is_model_file("notes.txt"));
        assert!(!is_model_file("model.safetensors.part"));
        assert!(!is_model_file("safetensors"));
    }

    #[test]
    fn human_sizes_are_base_1024_with_one_decimal() {
        assert_eq!(human_size(0), "0.0 B");
        assert_eq!(human_size(1023), "1023.0 B");
        assert_eq!(human_size(1536), "1.5 KB");
        assert_eq!(human_size(6_979_321_856), "6.5 GB");
        assert_eq!(human_size(5 * 1024_u64.pow(4)), "5.0 TB");
        assert_eq!(human_size(3 * 1024_u64.pow(5)), "3072.0 TB");
    }

    #[test]
    fn a_scan_lists_models_recursively_with_forward_slashes_and_skips_hidden_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        touch(&root.join("a.safetensors"), 3);
        touch(&root.join("sdxl/style/b.ckpt"), 5);
        touch(&root.join("readme.txt"), 1);
        touch(&root.join(".hidden/c.safetensors"), 1);
        touch(&root.join(".d.safetensors"), 1);
        let scan = FolderScan::scan(root, Duration::ZERO);
        let mut files = scan.files.clone();
        files.sort();
        assert_eq!(
            files,
            vec![
                ("a.safetensors".to_string(), 3),
                ("sdxl/style/b.ckpt".to_string(), 5)
            ]
        );
        assert!(scan.still_valid());
    }

    #[test]
    fn a_missing_folder_scans_empty_and_turns_stale_when_it_appears() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("loras");
        let scan = FolderScan::scan(&root, Duration::ZERO);
        assert!(scan.files.is_empty());
        assert!(scan.still_valid());
        std::fs::create_dir(&root).expect("mkdir");
        assert!(!scan.still_valid());
    }

    #[test]
    fn a_recently_changed_folder_is_never_trusted_from_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        touch(&dir.path().join("a.safetensors"), 1);
        let scan = FolderScan::scan(dir.path(), Duration::from_secs(3600));
        assert!(!scan.still_valid());
    }

    #[test]
    fn adding_a_file_in_a_subfolder_makes_the_scan_stale() {
        let dir = tempfile::tempdir().expect("tempdir");
        touch(&dir.path().join("sub/a.safetensors"), 1);
        let scan = FolderScan::scan(dir.path(), Duration::ZERO);
        assert!(scan.still_valid());
        // A different time than the scan saw, whatever the file system's granularity.
        let sub = dir.path().join("sub");
        let before = std::fs::metadata(&sub).and_then(|m| m.modified()).ok();
        for n in 0.. {
            touch(&sub.join(format!("b{n}.safetensors")), 1);
            if std::fs::metadata(&sub).and_then(|m| m.modified()).ok() != before {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!scan.still_valid());
    }

    #[cfg(unix)]
    #[test]
    fn linked_files_and_folders_are_listed_and_link_loops_are_walked_once() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().expect("tempdir");
        let shared = dir.path().join("shared");
        touch(&shared.join("big.safetensors"), 7);
        let root = dir.path().join("checkpoints");
        touch(&root.join("own.safetensors"), 2);
        symlink(
            shared.join("big.safetensors"),
            root.join("linked.safetensors"),
        )
        .expect("link");
        symlink(&shared, root.join("drive")).expect("link");
        symlink(&root, root.join("loop")).expect("link");
        symlink(&root, shared.join("back")).expect("link");
        symlink(
            dir.path().join("gone.safetensors"),
            root.join("dangling.safetensors"),
        )
        .expect("link");
        let scan = FolderScan::scan(&root, Duration::ZERO);
        let mut files = scan.files.clone();
        files.sort();
        assert_eq!(
            files,
            vec![
                ("drive/big.safetensors".to_string(), 7),
                ("linked.safetensors".to_string(), 7),
                ("own.safetensors".to_string(), 2),
            ]
        );
    }

    #[test]
    fn the_inventory_lists_a_name_in_two_folders_once_from_the_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = dir.path().join("one");
        let second = dir.path().join("two");
        touch(&first.join("x.safetensors"), 1);
        touch(&second.join("x.safetensors"), 9);
        touch(&second.join("y.gguf"), 4);
        let mut scans = std::collections::HashMap::new();
        for folder in [&first, &second] {
            scans.insert(
                folder.clone(),
                Arc::new(FolderScan::scan(folder, Duration::ZERO)),
            );
        }
        let kinds = BTreeMap::from([(
            "diffusion_models".to_string(),
            vec![first.clone(), second.clone()],
        )]);
        let inventory = ModelInventory::assemble(dir.path().into(), &kinds, &scans, Vec::new());
        let (name, models) = inventory.kind("unet").expect("legacy name");
        assert_eq!(name, "diffusion_models");
        assert_eq!(models.files.len(), 2);
        assert_eq!(models.bytes, 5);
        let x = models.find("x.safetensors").expect("x");
        assert_eq!(models.folder_of(x), first.as_path());
        assert_eq!(inventory.find("UNET", "y.gguf").map(|f| f.size), Some(4));
        assert_eq!(inventory.locate("y.gguf").count(), 1);
        assert_eq!(inventory.total_files, 2);
    }
}
