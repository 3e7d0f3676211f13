//! ComfyUI-Manager's JSON databases: the pack list (`custom-node-list.json`), the map from
//! node class to pack (`extension-node-map.json`) and the model list (`model-list.json`).
//!
//! Current Manager versions keep fresh copies in a cache under the user folder
//! (`user/__manager/cache/` or `user/default/ComfyUI-Manager/cache/`), named by a hash of the
//! URL they came from plus the file name (`1514988643_custom-node-list.json`); the copies
//! shipped in `custom_nodes/ComfyUI-Manager/` are the fallback. The newest file of each kind
//! wins.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::Value;

use crate::comfy::discovery::Install;
use crate::install::nodes::repository_key;

/// Manager files larger than this are not read (the real ones are a few MiB).
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The three databases, by the key results use for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManagerFile {
    CustomNodeList,
    ExtensionNodeMap,
    ModelList,
}

impl ManagerFile {
    pub const ALL: [ManagerFile; 3] = [
        ManagerFile::CustomNodeList,
        ManagerFile::ExtensionNodeMap,
        ManagerFile::ModelList,
    ];

    pub fn file_name(self) -> &'static str {
        match self {
            Self::CustomNodeList => "custom-node-list.json",
            Self::ExtensionNodeMap => "extension-node-map.json",
            Self::ModelList => "model-list.json",
        }
    }

    /// The key in `check_registry_freshness`'s `registries`.
    pub fn key(self) -> &'static str {
        match self {
            Self::CustomNodeList => "custom_node_list",
            Self::ExtensionNodeMap => "extension_node_map",
            Self::ModelList => "model_list",
        }
    }
}

/// The Manager's own folder inside `custom_nodes`, when it is installed.
pub fn manager_dir(install: &Install) -> Option<PathBuf> {
    let custom_nodes = install.custom_nodes_dir();
    let entries = std::fs::read_dir(&custom_nodes).ok()?;
    entries
        .flatten()
        .filter(|entry| entry.path().is_dir())
        .find(|entry| {
            entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.eq_ignore_ascii_case("ComfyUI-Manager"))
        })
        .map(|entry| entry.path())
}

/// Where the Manager keeps its downloaded copies, newest layout first.
fn cache_dirs(install: &Install) -> Vec<PathBuf> {
    let user = install.user_dir();
    vec![
        user.join("__manager").join("cache"),
        user.join("default").join("ComfyUI-Manager").join("cache"),
    ]
}

/// One file found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub path: PathBuf,
    pub modified: SystemTime,
}

/// The newest copy of `file` in the Manager's cache folders or its own folder.
pub fn locate(install: &Install, file: ManagerFile) -> Option<Located> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    let suffix = format!("_{}", file.file_name());
    for dir in cache_dirs(install) {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        candidates.extend(entries.flatten().map(|e| e.path()).filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n == file.file_name() || n.ends_with(&suffix))
        }));
    }
    if let Some(dir) = manager_dir(install) {
        candidates.push(dir.join(file.file_name()));
    }
    candidates
        .into_iter()
        .filter_map(|path| {
            let meta = std::fs::metadata(&path).ok()?;
            if !meta.is_file() {
                return None;
            }
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            Some(Located { path, modified })
        })
        .max_by_key(|found| found.modified)
}

/// A node pack as the Manager lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagerPack {
    pub title: String,
    /// The repository URL (`reference`, or the first of `files`).
    pub url: String,
    pub author: Option<String>,
    pub description: Option<String>,
    /// The Comfy registry id, when the Manager knows it.
    pub id: Option<String>,
    /// `git-clone`, `copy`, `unzip`, `cnr`, …
    pub install_type: Option<String>,
}

/// A model as the Manager lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagerModel {
    pub name: String,
    /// The Manager's type (`checkpoint`, `lora`, `VAE`, `upscale`, …).
    pub model_type: String,
    pub base: Option<String>,
    /// `default` (the folder of its type) or a folder under `models/`.
    pub save_path: String,
    pub filename: String,
    pub url: String,
    pub description: Option<String>,
    pub reference: Option<String>,
}

impl ManagerModel {
    /// The folder under `models/` this model belongs in.
    pub fn folder(&self) -> String {
        if self.save_path.is_empty() || self.save_path == "default" {
            folder_for_type(&self.model_type).to_string()
        } else {
            self.save_path.trim_matches('/').to_string()
        }
    }
}

/// The `models/` sub-folder for one of the Manager's model types.
pub fn folder_for_type(model_type: &str) -> &str {
    match model_type.to_ascii_lowercase().as_str() {
        "checkpoint" | "checkpoints" => "checkpoints",
        "lora" | "loras" => "loras",
        "vae" => "vae",
        "vae_approx" | "taesd" => "vae_approx",
        "upscale" | "upscaler" => "upscale_models",
        "controlnet" | "t2i-adapter" | "t2i-style" => "controlnet",
        "clip" | "text_encoders" => "text_encoders",
        "clip_vision" => "clip_vision",
        "unet" | "diffusion_model" | "diffusion_models" => "diffusion_models",
        "embeddings" | "embedding" | "textualinversion" => "embeddings",
        "gligen" => "gligen",
        "hypernetwork" | "hypernetworks" => "hypernetworks",
        "style_models" | "style_model" => "style_models",
        "photomaker" => "photomaker",
        _ => "checkpoints",
    }
}

/// Which pack provides a node class, per the extension map.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedPack {
    pub url: String,
    pub title: String,
}

/// Everything read from the Manager's files. Missing or broken files leave their part empty
/// and add a note.
#[derive(Debug, Default)]
pub struct ManagerData {
    pub packs: Vec<ManagerPack>,
    /// Node class → the pack providing it.
    pub node_map: HashMap<String, MappedPack>,
    /// The same map keyed by lower-cased class, for case-insensitive lookups.
    lower_map: HashMap<String, String>,
    pub models: Vec<ManagerModel>,
    /// What was found where, for freshness reports and the cache's invalidation.
    pub files: Vec<(ManagerFile, Option<Located>)>,
    /// Files that exist but could not be read.
    pub notes: Vec<String>,
}

impl ManagerData {
    /// Reads the three files of `install` (nothing, when there is no install).
    pub fn load(install: Option<&Install>) -> Self {
        let mut data = Self::default();
        let Some(install) = install else {
            return data;
        };
        for file in ManagerFile::ALL {
            let located = locate(install, file);
            if let Some(found) = &located {
                match read_json(&found.path) {
                    Ok(doc) => data.absorb(file, &doc),
                    Err(problem) => data.notes.push(format!(
                        "{} could not be read: {problem}",
                        found.path.display()
                    )),
                }
            }
            data.files.push((file, located));
        }
        data
    }

    /// Whether any of the three files exists.
    pub fn any_file(&self) -> bool {
        self.files.iter().any(|(_, found)| found.is_some())
    }

    /// The stamp the cache compares: each file's path and modification time.
    pub fn stamp(&self) -> Vec<Option<Located>> {
        self.files.iter().map(|(_, found)| found.clone()).collect()
    }

    /// The pack that provides `class`, exact name first, then any case.
    pub fn pack_for_class(&self, class: &str) -> Option<&MappedPack> {
        self.node_map.get(class).or_else(|| {
            self.lower_map
                .get(&class.to_lowercase())
                .and_then(|exact| self.node_map.get(exact))
        })
    }

    /// The Manager's pack entry for a repository URL.
    pub fn pack_by_url(&self, url: &str) -> Option<&ManagerPack> {
        let key = repository_key(url);
        self.packs.iter().find(|p| repository_key(&p.url) == key)
    }

    pub(crate) fn absorb(&mut self, file: ManagerFile, doc: &Value) {
        match file {
            ManagerFile::CustomNodeList => {
                let list = doc.get("custom_nodes").and_then(Value::as_array);
                self.packs = list.into_iter().flatten().filter_map(parse_pack).collect();
            }
            ManagerFile::ExtensionNodeMap => {
                let Some(map) = doc.as_object() else { return };
                for (url, entry) in map {
                    let classes = entry.get(0).and_then(Value::as_array);
                    let title = entry
                        .get(1)
                        .and_then(|meta| meta.get("title_aux"))
                        .and_then(Value::as_str)
                        .map_or_else(|| repo_name(url).to_string(), str::to_string);
                    for class in classes.into_iter().flatten().filter_map(Value::as_str) {
                        // The first pack listed for a class keeps it; forks come later.
                        self.node_map
                            .entry(class.to_string())
                            .or_insert_with(|| MappedPack {
                                url: url.clone(),
                                title: title.clone(),
                            });
                        self.lower_map
                            .entry(class.to_lowercase())
                            .or_insert_with(|| class.to_string());
                    }
                }
            }
            ManagerFile::ModelList => {
                let list = doc.get("models").and_then(Value::as_array);
                self.models = list.into_iter().flatten().filter_map(parse_model).collect();
            }
        }
    }
}

fn read_json(path: &Path) -> Result<Value, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!("it is larger than {MAX_FILE_BYTES} bytes"));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| format!("it is not valid JSON ({e})"))
}

fn text(entry: &Value, key: &str) -> Option<String> {
    entry
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn parse_pack(entry: &Value) -> Option<ManagerPack> {
    let url = text(entry, "reference").or_else(|| {
        entry
            .get("files")
            .and_then(Value::as_array)
            .and_then(|files| files.first())
            .and_then(Value::as_str)
            .map(str::to_string)
    })?;
    let title = text(entry, "title").unwrap_or_else(|| repo_name(&url).to_string());
    Some(ManagerPack {
        title,
        url,
        author: text(entry, "author"),
        description: text(entry, "description"),
        id: text(entry, "id"),
        install_type: text(entry, "install_type"),
    })
}

fn parse_model(entry: &Value) -> Option<ManagerModel> {
    Some(ManagerModel {
        name: text(entry, "name")?,
        model_type: text(entry, "type").unwrap_or_default(),
        base: text(entry, "base"),
        save_path: text(entry, "save_path").unwrap_or_else(|| "default".into()),
        filename: text(entry, "filename")?,
        url: text(entry, "url")?,
        description: text(entry, "description"),
        reference: text(entry, "reference"),
    })
}

/// The last path segment of a repository URL, without `.git`: the folder `git clone` makes.
pub fn repo_name(url: &str) -> &str {
    let trimmed = url.trim().trim_end_matches('/');
    let last = trimmed.rsplit('/').next().unwrap_or(trimmed);
    last.strip_suffix(".git").unwrap_or(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extension_map_first_pack_wins_and_lookups_ignore_case() {
        let mut data = ManagerData::default();
        data.absorb(
            ManagerFile::ExtensionNodeMap,
            &json!({
                "https://github.com/a/Impact": [["SAMLoader", "FaceDetailer"], {"title_aux": "Impact Pack"}],
                "https://github.com/fork/Impact": [["FaceDetailer"], {"title_aux": "Fork"}],
                "https://github.com/b/NoTitle.git": [["Thing"], {}]
            }),
        );
        assert_eq!(
            data.pack_for_class("FaceDetailer")
                .map(|p| p.title.as_str()),
            Some("Impact Pack")
        );
        assert_eq!(
            data.pack_for_class("facedetailer")
                .map(|p| p.title.as_str()),
            Some("Impact Pack")
        );
        assert_eq!(
            data.pack_for_class("Thing").map(|p| p.title.as_str()),
            Some("NoTitle")
        );
        assert!(data.pack_for_class("KSampler").is_none());
    }

    #[test]
    fn packs_and_models_parse_leniently() {
        let mut data = ManagerData::default();
        data.absorb(
            ManagerFile::CustomNodeList,
            &json!({"custom_nodes": [
                {"title": "A", "reference": "https://github.com/x/A", "author": "x"},
                {"files": ["https://github.com/y/B.git"]},
                {"title": "no url"}
            ]}),
        );
        assert_eq!(data.packs.len(), 2);
        assert_eq!(data.packs[1].title, "B");
        data.absorb(
            ManagerFile::ModelList,
            &json!({"models": [
                {"name": "x4", "type": "upscale", "save_path": "default", "filename": "4x.pth", "url": "https://h/4x.pth"},
                {"name": "sam", "type": "sam", "save_path": "sams", "filename": "sam.pth", "url": "https://h/sam.pth"},
                {"name": "no file"}
            ]}),
        );
        assert_eq!(data.models.len(), 2);
        assert_eq!(data.models[0].folder(), "upscale_models");
        assert_eq!(data.models[1].folder(), "sams");
    }

    #[test]
    fn urls_compare_without_scheme_case_or_suffix() {
        assert_eq!(
            repository_key("https://www.GitHub.com/ltdrdata/ComfyUI-Impact-Pack.git/"),
            repository_key("git@github.com:ltdrdata/comfyui-impact-pack")
        );
        assert_eq!(repo_name("https://github.com/a/Pack.git"), "Pack");
        assert_eq!(repo_name("https://github.com/a/Pack/"), "Pack");
    }
}
