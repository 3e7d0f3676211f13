//! File writes that survive crashes and power loss (DESIGN rule 7): the new content goes to a
//! temporary file beside the target, is flushed to disk, renamed over the target, and the
//! folder is flushed so the rename itself is durable. Readers see the old file or the new
//! one, never a mix.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// The suffix of the temporary files [`write_atomic`] creates (and removes). Folders that
/// list their own files skip names ending with it.
pub const TEMP_SUFFIX: &str = ".tmp";

/// Replaces `path` with `bytes` atomically and durably. On any error the target is left as
/// it was and the temporary file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |file| file.write_all(bytes))
}

/// Like [`write_atomic`], with the content written by `fill` (so a caller can stream it). If
/// `fill` fails, nothing is renamed and the target keeps its old content.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let file_name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} does not name a file", path.display()),
        )
    })?;
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    // A random part keeps concurrent writers (threads or processes) off each other's temp
    // file; the leading dot and the suffix keep it out of folder listings.
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(file_name);
    temp_name.push(format!(".{}{TEMP_SUFFIX}", uuid::Uuid::new_v4().simple()));
    let temp = dir.join(temp_name);

    let result = write_and_rename(&temp, path, fill);
    if result.is_err() {
        // Best effort: the temp file may not exist (creation failed) or be gone (renamed).
        let _ = fs::remove_file(&temp);
    }
    result?;
    sync_dir(dir)
}

fn write_and_rename(
    temp: &Path,
    target: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(temp)?;
    fill(&mut file)?;
    file.flush()?;
    file.sync_all()?;
    drop(file);
    fs::rename(temp, target)
}

/// Flushes a folder's entries (the rename) to disk. Windows cannot open a folder as a file;
/// there NTFS journals the rename itself.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftovers(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .expect("readable dir")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|name| name.ends_with(TEMP_SUFFIX))
            .collect()
    }

    #[test]
    fn writes_a_new_file_and_replaces_an_old_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.json");
        write_atomic(&path, b"first").expect("write");
        assert_eq!(fs::read(&path).expect("read"), b"first");
        write_atomic(&path, b"second, longer").expect("rewrite");
        assert_eq!(fs::read(&path).expect("read"), b"second, longer");
        write_atomic(&path, b"").expect("empty");
        assert_eq!(fs::read(&path).expect("read"), b"");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.json");
        write_atomic(&path, b"old content").expect("write");
        let error = write_atomic_with(&path, |file| {
            file.write_all(b"half of the new")?;
            Err(io::Error::other("disk full"))
        })
        .expect_err("fill failed");
        assert_eq!(error.to_string(), "disk full");
        assert_eq!(fs::read(&path).expect("read"), b"old content");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn a_failed_rename_keeps_the_target_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A non-empty folder where the file should go: the rename must fail.
        let path = dir.path().join("taken");
        fs::create_dir(&path).expect("mkdir");
        fs::write(path.join("inside"), b"keep").expect("write");
        write_atomic(&path, b"new").expect_err("cannot replace a folder");
        assert_eq!(fs::read(path.join("inside")).expect("read"), b"keep");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn a_missing_folder_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let error = write_atomic(&dir.path().join("no/such/a.json"), b"x").expect_err("no dir");
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        assert!(write_atomic(Path::new("/"), b"x").is_err());
    }

    #[test]
    fn concurrent_writers_never_tear_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("shared.bin");
        let contents: Vec<Vec<u8>> = (0..8u8).map(|i| vec![b'a' + i; 64 * 1024]).collect();
        std::thread::scope(|scope| {
            for content in &contents {
                let path = &path;
                scope.spawn(move || {
                    for _ in 0..10 {
                        write_atomic(path, content).expect("write");
                    }
                });
            }
            scope.spawn(|| {
                for _ in 0..200 {
                    if let Ok(read) = fs::read(&path) {
                        assert!(
                            contents.contains(&read),
                            "torn read of {} bytes",
                            read.len()
                        );
                    }
                }
            });
        });
        let last = fs::read(&path).expect("read");
        assert!(contents.contains(&last));
        assert!(leftovers(dir.path()).is_empty());
    }
}
