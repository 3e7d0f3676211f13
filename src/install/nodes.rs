//! Custom node packs: what ComfyUI would load from each custom_nodes folder, and what
//! ComfyUI-Manager has disabled. Reads listings and a few small text files per pack; never
//! runs git or Python.

use std::io::Read;
use std::path::{Path, PathBuf};

/// The longest `__init__.py` (or single-file pack) read to see whether it registers nodes.
const MAX_INIT_BYTES: u64 = 1024 * 1024;
/// The longest `pyproject.toml` or `.git/config` read.
const MAX_META_BYTES: u64 = 256 * 1024;

/// ComfyUI-Manager's folder for disabled packs, inside custom_nodes.
const DISABLED_FOLDER: &str = ".disabled";
const DISABLED_SUFFIX: &str = ".disabled";

/// How a pack is laid out on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PackForm {
    /// A folder with Python files (the usual form).
    Folder,
    /// One `.py` file directly in custom_nodes.
    SingleFile,
}

/// One custom node pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePack {
    /// The name ComfyUI knows it by: the folder (or file stem), without `.disabled`.
    pub name: String,
    /// The folder or file name on disk, as it is.
    pub entry_name: String,
    /// Where it is (the link, for a linked pack).
    pub path: PathBuf,
    /// The custom_nodes folder it is in.
    pub custom_nodes_dir: PathBuf,
    pub form: PackForm,
    /// False when ComfyUI-Manager disabled it (`<name>.disabled`, or moved into `.disabled/`).
    pub enabled: bool,
    /// The pack is a link to a folder or file elsewhere.
    pub linked: bool,
    pub has_readme: bool,
    pub has_requirements: bool,
    /// `NODE_CLASS_MAPPINGS` (classic API) or `comfy_entrypoint`/`ComfyExtension` (v3 API)
    /// appears in its `__init__.py` (or its single file).
    pub registers_nodes: bool,
    /// `[project] version` from its `pyproject.toml`.
    pub version: Option<String>,
    /// The git remote it was cloned from (`origin`, else the first), credentials removed.
    pub repository: Option<String>,
}

/// Every pack in every custom_nodes folder, sorted by name (case-insensitively).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackList {
    /// The custom_nodes folders read, the install's first.
    pub directories: Vec<PathBuf>,
    pub packs: Vec<NodePack>,
}

impl PackList {
    /// The pack named `name`: exactly, else ignoring case; an enabled pack before a disabled
    /// one of the same name. The on-disk name (`X.disabled`) is accepted too.
    pub fn by_name(&self, name: &str) -> Option<&NodePack> {
        let exact = |pack: &&NodePack| pack.name == name || pack.entry_name == name;
        let loose = |pack: &&NodePack| {
            pack.name.eq_ignore_ascii_case(name) || pack.entry_name.eq_ignore_ascii_case(name)
        };
        let enabled_first = |matches: &dyn Fn(&&NodePack) -> bool| {
            self.packs
                .iter()
                .filter(|p| matches(p))
                .max_by_key(|p| p.enabled)
        };
        enabled_first(&exact).or_else(|| enabled_first(&loose))
    }

    /// The packs cloned from `url` (https, ssh and `git@host:owner/repo` forms, with or
    /// without `.git`, compared without case).
    pub fn by_repository<'a>(&'a self, url: &str) -> impl Iterator<Item = &'a NodePack> {
        let wanted = repository_key(url);
        self.packs.iter().filter(move |pack| {
            pack.repository
                .as_deref()
                .is_some_and(|repo| repository_key(repo) == wanted)
        })
    }

    /// Up to `limit` pack names close to `query`, for "did you mean".
    pub fn similar(&self, query: &str, limit: usize) -> Vec<&str> {
        let query = query.trim().to_lowercase();
        if query.is_empty() {
            return Vec::new();
        }
        let allowed = (query.chars().count() / 3).clamp(2, 4);
        let mut scored: Vec<(usize, &str)> = self
            .packs
            .iter()
            .filter_map(|pack| {
                let lower = pack.name.to_lowercase();
                let score = if lower.contains(&query) {
                    lower.len() - query.len()
                } else if query.contains(&lower) && lower.len() >= 4 {
                    100 + query.len() - lower.len()
                } else {
                    200 + crate::comfy::nodes::bounded_distance(&query, &lower, allowed)?
                };
                Some((score, pack.name.as_str()))
            })
            .collect();
        scored.sort();
        scored.dedup_by(|a, b| a.1 == b.1);
        scored
            .into_iter()
            .take(limit)
            .map(|(_, name)| name)
            .collect()
    }
}

/// A repository address reduced to `host/owner/repo` in lower case (without `www.`), so the forms git
/// accepts for one repository compare equal.
pub fn repository_key(url: &str) -> String {
    let mut rest = url.trim();
    if let Some((_, after)) = rest.split_once("://") {
        rest = after;
    } else if let Some((user_host, path)) = rest.split_once(':')
        && !user_host.contains('/')
    {
        // scp-like `git@github.com:owner/repo`.
        return repository_key(&format!("ssh://{user_host}/{path}"));
    }
    let rest = rest
        .rsplit_once('@')
        .filter(|(userinfo, _)| !userinfo.contains('/'))
        .map_or(rest, |(_, host)| host);
    let rest = rest.trim_end_matches('/');
    let rest = rest.strip_suffix(".git").unwrap_or(rest);
    let rest = rest.to_lowercase();
    match rest.strip_prefix("www.") {
        Some(host) => host.to_string(),
        None => rest,
    }
}

/// Lists the packs in `directories` (custom_nodes folders), as ComfyUI would load them, plus
/// the ones ComfyUI-Manager disabled.
pub fn list_packs(directories: &[PathBuf]) -> PackList {
    let mut list = PackList {
        directories: directories.to_vec(),
        packs: Vec::new(),
    };
    for dir in directories {
        read_folder(dir, dir, true, &mut list.packs);
        read_folder(&dir.join(DISABLED_FOLDER), dir, false, &mut list.packs);
    }
    list.packs.sort_by(|a, b| {
        a.name
            .to_lowercase()
            .cmp(&b.name.to_lowercase())
            .then_with(|| b.enabled.cmp(&a.enabled))
            .then_with(|| a.entry_name.cmp(&b.entry_name))
    });
    list
}

/// Reads one folder of packs: custom_nodes itself (`enabled` unless renamed `.disabled`), or
/// Manager's `.disabled/` folder (all disabled).
fn read_folder(folder: &Path, custom_nodes_dir: &Path, enabled: bool, packs: &mut Vec<NodePack>) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(entry_name) = entry.file_name().into_string() else {
            continue;
        };
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        let linked = file_type.is_symlink();
        let path = entry.path();
        // A link counts as what it points at (ComfyUI allows linked packs).
        let Ok(target) = std::fs::metadata(&path) else {
            continue;
        };
        let (stem, renamed_off) = match entry_name.strip_suffix(DISABLED_SUFFIX) {
            Some(stem) => (stem, true),
            None => (entry_name.as_str(), false),
        };
        if stem.is_empty()
            || stem.starts_with('.')
            || stem.starts_with("__")
            || stem.starts_with("tmp")
        {
            continue;
        }
        // Manager names disabled registry packs `<name>@<version>`.
        let name = if enabled {
            stem
        } else {
            stem.split_once('@').map_or(stem, |(name, _)| name)
        };
        let pack = if target.is_dir() {
            if !has_top_level_python(&path) {
                continue;
            }
            folder_pack(&path, name, &entry_name)
        } else if target.is_file() {
            let Some(name) = name.strip_suffix(".py").filter(|n| !n.is_empty()) else {
                continue;
            };
            NodePack {
                name: name.to_string(),
                entry_name: entry_name.clone(),
                path: path.clone(),
                custom_nodes_dir: PathBuf::new(),
                form: PackForm::SingleFile,
                enabled: true,
                linked: false,
                has_readme: false,
                has_requirements: false,
                registers_nodes: registers_nodes(&path),
                version: None,
                repository: None,
            }
        } else {
            continue;
        };
        packs.push(NodePack {
            custom_nodes_dir: custom_nodes_dir.to_path_buf(),
            enabled: enabled && !renamed_off,
            linked,
            ..pack
        });
    }
}

fn has_top_level_python(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| {
            entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.ends_with(".py"))
                && entry.path().is_file()
        })
}

fn folder_pack(path: &Path, name: &str, entry_name: &str) -> NodePack {
    let mut has_readme = false;
    let mut has_requirements = false;
    for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
        let Some(file) = entry.file_name().to_str().map(str::to_lowercase) else {
            continue;
        };
        has_readme |= file.starts_with("readme");
        has_requirements |= file == "requirements.txt";
    }
    NodePack {
        name: name.to_string(),
        entry_name: entry_name.to_string(),
        path: path.to_path_buf(),
        custom_nodes_dir: PathBuf::new(),
        form: PackForm::Folder,
        enabled: true,
        linked: false,
        has_readme,
        has_requirements,
        registers_nodes: registers_nodes(&path.join("__init__.py")),
        version: read_small(&path.join("pyproject.toml"), MAX_META_BYTES)
            .and_then(|text| project_version(&text)),
        repository: git_remote(path),
    }
}

/// The start of a small text file, or `None` when it is absent or unreadable.
fn read_small(path: &Path, limit: u64) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    file.take(limit).read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

fn registers_nodes(init: &Path) -> bool {
    read_small(init, MAX_INIT_BYTES).is_some_and(|text| {
        ["NODE_CLASS_MAPPINGS", "comfy_entrypoint", "ComfyExtension"]
            .iter()
            .any(|marker| text.contains(marker))
    })
}

/// `version` in the `[project]` table of a `pyproject.toml` (a plain string value).
pub fn project_version(text: &str) -> Option<String> {
    let mut in_project = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_project = line.split('#').next().map(str::trim) == Some("[project]");
            continue;
        }
        if !in_project {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim() != "version" {
            continue;
        }
        let value = value.trim();
        let quote = value.chars().next().filter(|c| *c == '"' || *c == '\'')?;
        let inner = &value[1..];
        let end = inner.find(quote)?;
        let version = inner[..end].trim();
        return (!version.is_empty() && version.len() <= 64).then(|| version.to_string());
    }
    None
}

/// The pack's git remote from `.git/config` (`origin` first), without running git and with
/// any user name or token removed from the address.
fn git_remote(pack: &Path) -> Option<String> {
    let git = pack.join(".git");
    if !git.is_dir() {
        return None;
    }
    let text = read_small(&git.join("config"), MAX_META_BYTES)?;
    crate::git::remote_url(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    #[test]
    fn packs_are_folders_with_python_and_single_files_and_disabled_ones_are_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cn = dir.path().join("custom_nodes");
        write(
            &cn.join("ComfyUI-Impact/__init__.py"),
            "NODE_CLASS_MAPPINGS = {}\n",
        );
        write(&cn.join("ComfyUI-Impact/README.md"), "# hi");
        write(&cn.join("ComfyUI-Impact/requirements.txt"), "numpy");
        write(
            &cn.join("ComfyUI-Impact/pyproject.toml"),
            "[tool.x]\nversion = \"9\"\n[project]\nname = \"impact\"\nversion = \"8.1.2\"\n",
        );
        write(
            &cn.join("ComfyUI-Impact/.git/config"),
            "[core]\n\tbare = false\n[remote \"upstream\"]\n\turl = https://github.com/a/b\n[remote \"origin\"]\n\turl = https://me:ghp_secret@github.com/ltdrdata/ComfyUI-Impact-Pack.git\n",
        );
        write(
            &cn.join("v3pack/__init__.py"),
            "async def comfy_entrypoint():\n    pass\n",
        );
        write(&cn.join("helpers/util.py"), "x = 1\n");
        write(&cn.join("nopython/README.md"), "no code");
        write(&cn.join("__pycache__/x.py"), "");
        write(&cn.join(".hidden/__init__.py"), "");
        write(&cn.join("tmpabc/__init__.py"), "");
        write(&cn.join("example_node.py"), "NODE_CLASS_MAPPINGS = {}\n");
        write(&cn.join("example_node.py.example"), "");
        write(
            &cn.join("Old.disabled/__init__.py"),
            "NODE_CLASS_MAPPINGS = {}\n",
        );
        write(&cn.join(".disabled/managed@1_2_0/__init__.py"), "");
        let list = list_packs(std::slice::from_ref(&cn));
        let names: Vec<(&str, bool, PackForm)> = list
            .packs
            .iter()
            .map(|p| (p.name.as_str(), p.enabled, p.form))
            .collect();
        assert_eq!(
            names,
            vec![
                ("ComfyUI-Impact", true, PackForm::Folder),
                ("example_node", true, PackForm::SingleFile),
                ("helpers", true, PackForm::Folder),
                ("managed", false, PackForm::Folder),
                ("Old", false, PackForm::Folder),
                ("v3pack", true, PackForm::Folder),
            ]
        );
        let impact = list.by_name("comfyui-impact").expect("case-insensitive");
        assert!(impact.has_readme && impact.has_requirements && impact.registers_nodes);
        assert_eq!(impact.version.as_deref(), Some("8.1.2"));
        assert_eq!(
            impact.repository.as_deref(),
            Some("https://github.com/ltdrdata/ComfyUI-Impact-Pack.git")
        );
        assert_eq!(
            list.by_repository("git@github.com:LTDRDATA/comfyui-impact-pack")
                .count(),
            1
        );
        assert!(list.by_name("v3pack").expect("v3").registers_nodes);
        assert!(!list.by_name("helpers").expect("helpers").registers_nodes);
        assert!(
            list.by_name("example_node")
                .expect("single")
                .registers_nodes
        );
        assert_eq!(
            list.by_name("Old.disabled").map(|p| p.name.as_str()),
            Some("Old")
        );
        assert_eq!(list.similar("impact", 10), vec!["ComfyUI-Impact"]);
        assert_eq!(list.similar("v3pak", 10), vec!["v3pack"]);
    }

    #[test]
    fn an_enabled_pack_wins_over_a_disabled_copy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cn = dir.path().join("custom_nodes");
        write(&cn.join("x/__init__.py"), "");
        write(&cn.join("x.disabled/__init__.py"), "");
        let list = list_packs(&[cn]);
        assert_eq!(list.packs.len(), 2);
        assert!(list.by_name("x").expect("x").enabled);
    }

    #[test]
    fn repository_addresses_compare_in_every_form() {
        let key = repository_key("https://github.com/Owner/Repo.git");
        assert_eq!(key, "github.com/owner/repo");
        assert_eq!(repository_key("git@github.com:owner/repo"), key);
        assert_eq!(repository_key("ssh://git@github.com/owner/repo.git/"), key);
        assert_eq!(repository_key("https://tok@github.com/owner/repo"), key);
    }

    #[test]
    fn pyproject_versions_are_read_only_from_the_project_table() {
        assert_eq!(
            project_version("[project]\nversion = '1.0'\n").as_deref(),
            Some("1.0")
        );
        assert_eq!(project_version("[tool.poetry]\nversion = \"2\"\n"), None);
        assert_eq!(
            project_version("[project]\nname='x'\ndynamic=['version']\n"),
            None
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_linked_pack_folder_is_listed_as_linked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cn = dir.path().join("custom_nodes");
        write(&dir.path().join("dev/mypack/__init__.py"), "");
        std::fs::create_dir_all(&cn).expect("mkdir");
        std::os::unix::fs::symlink(dir.path().join("dev/mypack"), cn.join("mypack")).expect("link");
        let list = list_packs(&[cn]);
        assert!(list.by_name("mypack").expect("listed").linked);
    }
}
