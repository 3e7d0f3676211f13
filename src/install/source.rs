//! Reading a custom node pack's source for the assistant: the pack is named, never pathed;
//! the file stays inside the pack after links are resolved; only text is returned.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::InstallError;
use super::nodes::{NodePack, PackForm, PackList};
use crate::paths::PathPolicy;

/// The most bytes of one file read (the rest is reported as cut off).
pub const MAX_SOURCE_BYTES: u64 = 256 * 1024;
/// How many close names a "no such pack" answer offers.
const SIMILAR: usize = 10;
/// How many Python files a "no `__init__.py`" answer lists.
const PYTHON_FILES: usize = 20;

/// Part of a pack's source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSource {
    /// The pack's name.
    pub pack: String,
    /// The file, relative to the pack, with forward slashes.
    pub file: String,
    /// Where the file is on disk (its real path).
    pub path: PathBuf,
    pub size_bytes: u64,
    /// Lines in what was read (the whole file unless `byte_limited`).
    pub total_lines: usize,
    /// Fewer lines are returned than were read, or the file was longer than the byte cap.
    pub truncated: bool,
    /// The file is longer than [`MAX_SOURCE_BYTES`]; only its start was read.
    pub byte_limited: bool,
    pub source: String,
    pub enabled: bool,
}

/// A pack name as a client gives it: one plain name, nothing that could be read as a path.
pub fn check_pack_name(raw: &str) -> Result<&str, InstallError> {
    let name = raw.trim();
    let problem = if name.is_empty() {
        Some("it is empty")
    } else if name.contains(['/', '\\']) {
        Some("it contains a path separator")
    } else if name == "." || name == ".." || name.contains("..") {
        Some("it contains `..`")
    } else if name.contains([':', '\0']) || name.chars().any(char::is_control) {
        Some("it contains characters a folder name can't have")
    } else if name.len() > 255 {
        Some("it is longer than a folder name can be")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(InstallError::BadPackName {
            given: raw.chars().take(120).collect(),
            problem,
        }),
        None => Ok(name),
    }
}

/// A file inside a pack as a client gives it: relative parts, none of them `..`.
fn relative_parts(raw: &str) -> Result<Vec<&str>, InstallError> {
    let bad = |problem: &'static str| InstallError::BadSourceFile {
        file: raw.chars().take(200).collect(),
        problem: problem.to_string(),
    };
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(bad("it is empty"));
    }
    if trimmed.starts_with(['/', '\\']) || Path::new(trimmed).is_absolute() || trimmed.contains(':')
    {
        return Err(bad(
            "it is an absolute path; give it relative to the pack's folder",
        ));
    }
    if trimmed.contains('\0') || trimmed.chars().any(char::is_control) {
        return Err(bad("it contains control characters"));
    }
    let parts: Vec<&str> = trimmed
        .split(['/', '\\'])
        .filter(|part| !part.is_empty() && *part != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(bad(
            "it contains `..`; only files inside the pack can be read",
        ));
    }
    if parts.is_empty() {
        return Err(bad("it names the pack's folder, not a file"));
    }
    Ok(parts)
}

/// Reads `file` (default `__init__.py`) of the pack named `node_pack`, at most `max_lines`
/// lines. A pack that is a link to a folder outside every custom_nodes folder is read only
/// when the path policy allows its folder (the ComfyUI folder or an allowed root); a link
/// inside the pack that leads out of it is never followed.
pub fn read_node_source(
    packs: &PackList,
    policy: &PathPolicy,
    node_pack: &str,
    file: Option<&str>,
    max_lines: usize,
) -> Result<NodeSource, InstallError> {
    let name = check_pack_name(node_pack)?;
    let Some(pack) = packs.by_name(name) else {
        return Err(InstallError::NoSuchPack {
            given: name.to_string(),
            similar: packs
                .similar(name, SIMILAR)
                .into_iter()
                .map(String::from)
                .collect(),
        });
    };
    let outside = |what: String| InstallError::OutsidePack {
        pack: pack.name.clone(),
        what,
    };
    let real_pack = pack
        .path
        .canonicalize()
        .map_err(|error| InstallError::Unreadable {
            path: pack.path.clone(),
            problem: error.to_string(),
        })?;
    let custom_nodes: Vec<PathBuf> = packs
        .directories
        .iter()
        .filter_map(|dir| dir.canonicalize().ok())
        .collect();
    let in_custom_nodes = custom_nodes.iter().any(|dir| real_pack.starts_with(dir));

    let (relative, target) = match pack.form {
        PackForm::SingleFile => {
            if let Some(file) = file
                && relative_parts(file)? != [pack.entry_name.as_str()]
            {
                return Err(InstallError::BadSourceFile {
                    file: file.to_string(),
                    problem: format!(
                        "{} is a single-file pack ({}); it has no other files",
                        pack.name, pack.entry_name
                    ),
                });
            }
            (pack.entry_name.clone(), real_pack.clone())
        }
        PackForm::Folder => {
            let parts = match file {
                Some(file) => relative_parts(file)?,
                None => vec!["__init__.py"],
            };
            let joined = parts
                .iter()
                .fold(pack.path.clone(), |path, part| path.join(part));
            let target = match joined.canonicalize() {
                Ok(target) => target,
                Err(_) if file.is_none() => {
                    return Err(InstallError::NoInitPy {
                        pack: pack.name.clone(),
                        python_files: python_files(&pack.path),
                    });
                }
                Err(_) if joined.symlink_metadata().is_ok() => {
                    return Err(outside(format!("{} is a broken link", parts.join("/"))));
                }
                Err(_) => {
                    return Err(InstallError::NoSuchFile {
                        pack: pack.name.clone(),
                        file: parts.join("/"),
                        python_files: python_files(&pack.path),
                    });
                }
            };
            if !target.starts_with(&real_pack) {
                return Err(outside(format!(
                    "{} is a link that leads out of the pack",
                    parts.join("/")
                )));
            }
            (parts.join("/"), target)
        }
    };
    if !in_custom_nodes && policy.existing_file(&target.to_string_lossy()).is_err() {
        return Err(InstallError::LinkedOutside {
            pack: pack.name.clone(),
            target: real_pack,
        });
    }
    read_text(pack, relative, target, max_lines)
}

fn read_text(
    pack: &NodePack,
    relative: String,
    path: PathBuf,
    max_lines: usize,
) -> Result<NodeSource, InstallError> {
    let unreadable = |problem: String| InstallError::Unreadable {
        path: path.clone(),
        problem,
    };
    let handle = std::fs::File::open(&path).map_err(|e| unreadable(e.to_string()))?;
    let metadata = handle.metadata().map_err(|e| unreadable(e.to_string()))?;
    if !metadata.is_file() {
        return Err(InstallError::BadSourceFile {
            file: relative,
            problem: "it is a folder, not a file".into(),
        });
    }
    let mut bytes = Vec::with_capacity(metadata.len().min(MAX_SOURCE_BYTES) as usize);
    handle
        .take(MAX_SOURCE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| unreadable(e.to_string()))?;
    let byte_limited = bytes.len() as u64 > MAX_SOURCE_BYTES;
    bytes.truncate(MAX_SOURCE_BYTES as usize);
    let not_text = |problem: &str| InstallError::BadSourceFile {
        file: relative.clone(),
        problem: problem.to_string(),
    };
    if bytes.contains(&0) {
        return Err(not_text("it is a binary file, not source code"));
    }
    let text = match std::str::from_utf8(&bytes) {
        Ok(text) => text,
        // The cap cut a character in two: drop the partial character.
        Err(error) if byte_limited && error.error_len().is_none() => {
            std::str::from_utf8(&bytes[..error.valid_up_to()])
                .map_err(|_| not_text("it is not UTF-8 text"))?
        }
        Err(_) => return Err(not_text("it is not UTF-8 text")),
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let total_lines = text.lines().count();
    let end = text
        .match_indices('\n')
        .nth(max_lines.saturating_sub(1))
        .map_or(text.len(), |(at, _)| at + 1);
    let end = if max_lines == 0 { 0 } else { end };
    Ok(NodeSource {
        pack: pack.name.clone(),
        file: relative,
        size_bytes: metadata.len(),
        total_lines,
        truncated: byte_limited || total_lines > max_lines,
        byte_limited,
        source: text[..end].to_string(),
        enabled: pack.enabled,
        path,
    })
}

/// The pack's top-level Python files, sorted, at most [`PYTHON_FILES`].
fn python_files(pack: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(pack)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.ends_with(".py"))
        .collect();
    files.sort();
    files.truncate(PYTHON_FILES);
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::install::nodes::list_packs;

    fn write(path: &Path, bytes: &[u8]) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, bytes).expect("write");
    }

    struct Fixture {
        dir: tempfile::TempDir,
        packs: PackList,
        policy: PathPolicy,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().join("ComfyUI");
        let cn = base.join("custom_nodes");
        write(
            &cn.join("good/__init__.py"),
            b"\xef\xbb\xbfline1\nline2\nline3\n",
        );
        write(&cn.join("good/nodes/sampler.py"), b"class S: pass\n");
        write(&cn.join("good/blob.bin.py"), b"abc\0def");
        write(&cn.join("good/latin.py"), b"caf\xe9\n");
        write(&cn.join("noinit/a.py"), b"");
        write(&cn.join("noinit/b.py"), b"");
        write(&cn.join("single.py"), b"NODE_CLASS_MAPPINGS = {}\n");
        write(&dir.path().join("secret/id_rsa"), b"PRIVATE");
        write(&dir.path().join("secret/__init__.py"), b"import os\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::symlink;
            symlink(dir.path().join("secret"), cn.join("evil")).expect("link");
            symlink(dir.path().join("secret/id_rsa"), cn.join("good/key.py")).expect("link");
            symlink(dir.path().join("secret"), cn.join("good/up")).expect("link");
        }
        let packs = list_packs(&[cn]);
        let policy = PathPolicy::new(vec![base.canonicalize().expect("canonical")]);
        Fixture { dir, packs, policy }
    }

    fn read(f: &Fixture, pack: &str, file: Option<&str>) -> Result<NodeSource, InstallError> {
        read_node_source(&f.packs, &f.policy, pack, file, 200)
    }

    #[test]
    fn the_init_file_is_read_with_its_line_count_and_a_line_cap() {
        let f = fixture();
        let source = read(&f, "good", None).expect("reads");
        assert_eq!(source.file, "__init__.py");
        assert_eq!(source.total_lines, 3);
        assert_eq!(source.source, "line1\nline2\nline3\n");
        assert!(!source.truncated);
        let cut = read_node_source(&f.packs, &f.policy, "GOOD", None, 2).expect("reads");
        assert_eq!(cut.source, "line1\nline2\n");
        assert!(cut.truncated);
        let other = read(&f, "good", Some("nodes\\sampler.py")).expect("reads");
        assert_eq!(other.file, "nodes/sampler.py");
        assert_eq!(other.source, "class S: pass\n");
    }

    #[test]
    fn pack_names_that_look_like_paths_are_refused() {
        let f = fixture();
        for bad in [
            "../secret",
            "..",
            "/etc",
            "good/../..",
            "..\\x",
            "C:\\x",
            "",
            "a\0b",
        ] {
            let error = read(&f, bad, None).expect_err(bad);
            assert!(
                matches!(error, InstallError::BadPackName { .. }),
                "{bad}: {error:?}"
            );
        }
    }

    #[test]
    fn files_that_leave_the_pack_are_refused() {
        let f = fixture();
        for bad in [
            "../single.py",
            "/etc/passwd",
            "nodes/../../single.py",
            "C:/x.py",
            "..\\x",
        ] {
            let error = read(&f, "good", Some(bad)).expect_err(bad);
            assert!(
                matches!(error, InstallError::BadSourceFile { .. }),
                "{bad}: {error:?}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn links_out_of_the_pack_or_custom_nodes_are_refused() {
        let f = fixture();
        let error = read(&f, "good", Some("key.py")).expect_err("link out");
        assert!(
            matches!(error, InstallError::OutsidePack { .. }),
            "{error:?}"
        );
        let error = read(&f, "good", Some("up/id_rsa")).expect_err("folder link out");
        assert!(
            matches!(error, InstallError::OutsidePack { .. }),
            "{error:?}"
        );
        let error = read(&f, "evil", None).expect_err("linked pack outside");
        assert!(
            matches!(error, InstallError::LinkedOutside { .. }),
            "{error:?}"
        );
        // Allowed once its folder is an allowed root.
        let policy = PathPolicy::new(vec![
            f.dir
                .path()
                .join("secret")
                .canonicalize()
                .expect("canonical"),
        ]);
        let source = read_node_source(&f.packs, &policy, "evil", None, 10).expect("allowed");
        assert_eq!(source.source, "import os\n");
    }

    #[test]
    fn binary_and_non_utf8_files_are_refused() {
        let f = fixture();
        let error = read(&f, "good", Some("blob.bin.py")).expect_err("binary");
        assert!(error.to_string().contains("binary"), "{error}");
        let error = read(&f, "good", Some("latin.py")).expect_err("latin-1");
        assert!(error.to_string().contains("UTF-8"), "{error}");
    }

    #[test]
    fn a_long_file_is_cut_at_the_byte_cap_without_splitting_a_character() {
        let f = fixture();
        let mut text = "é".repeat(MAX_SOURCE_BYTES as usize / 2);
        text.insert(0, 'x');
        write(
            &f.packs.directories[0].join("good/long.py"),
            text.as_bytes(),
        );
        let source =
            read_node_source(&f.packs, &f.policy, "good", Some("long.py"), 5).expect("reads");
        assert!(source.byte_limited && source.truncated);
        assert_eq!(source.source.len(), MAX_SOURCE_BYTES as usize - 1);
    }

    #[test]
    fn missing_packs_and_files_say_what_exists() {
        let f = fixture();
        match read(&f, "goood", None) {
            Err(InstallError::NoSuchPack { similar, .. }) => assert_eq!(similar, vec!["good"]),
            other => panic!("{other:?}"),
        }
        match read(&f, "noinit", None) {
            Err(InstallError::NoInitPy { python_files, .. }) => {
                assert_eq!(python_files, vec!["a.py", "b.py"]);
            }
            other => panic!("{other:?}"),
        }
        let error = read(&f, "good", Some("nope.py")).expect_err("missing");
        assert!(
            matches!(error, InstallError::NoSuchFile { .. }),
            "{error:?}"
        );
        let error = read(&f, "good", Some("nodes")).expect_err("folder");
        assert!(error.to_string().contains("folder"), "{error}");
    }

    #[test]
    fn a_single_file_pack_reads_its_file() {
        let f = fixture();
        let source = read(&f, "single", None).expect("reads");
        assert_eq!(source.file, "single.py");
        assert!(read(&f, "single", Some("single.py")).is_ok());
        assert!(read(&f, "single", Some("other.py")).is_err());
    }
}
