//! Text for command lines built from names the web supplied: each word is passed as it is,
//! quoted, or refused, so a hostile pack name or address can't become a second command. Nothing
//! here runs anything.

use std::path::{Path, PathBuf};

use crate::comfy::discovery::{Install, Layout};

/// A registry id safe to show in `comfy node install <id>`.
pub fn is_plain_id(text: &str) -> bool {
    text.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && text.len() <= 100
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// Quotes `word` for a command line, or refuses it: plain words pass as they are, words with
/// spaces and similar are double-quoted, and anything a shell could expand (`$`, backquotes,
/// quotes, `%`, `!`, backslashes outside paths, control characters) is refused, as is a
/// leading `-` (it would read as an option).
pub fn shell_word(word: &str) -> Option<String> {
    if word.is_empty() || word.starts_with('-') || word.chars().any(char::is_control) {
        return None;
    }
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=@+,".contains(c);
    if word.chars().all(plain) {
        return Some(word.to_string());
    }
    if word.chars().any(|c| "\"'`$!%;&|<>(){}*?[]\n".contains(c)) {
        return None;
    }
    Some(format!("\"{word}\""))
}

/// A path for a command line; Windows separators are fine inside quotes.
pub fn shell_path(path: &Path) -> Option<String> {
    let text = path.display().to_string();
    if text.contains('\\') {
        if text
            .chars()
            .any(|c| "\"`$!%;&|<>\n".contains(c) || c.is_control())
        {
            return None;
        }
        return Some(format!("\"{text}\""));
    }
    shell_word(&text)
}

/// An https address safe to show in a command.
pub fn safe_url(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    if parsed.scheme() != "https" && parsed.scheme() != "http" {
        return None;
    }
    // No `%`: Windows' cmd expands `%NAME%` even inside quotes.
    let ok = url
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:=@+,~?&#".contains(c));
    ok.then(|| {
        if url.contains('&') || url.contains('?') || url.contains('#') {
            format!("\"{url}\"")
        } else {
            url.to_string()
        }
    })
}

/// The install's python, for `pip`: the portable build's embedded one, a venv in the folder,
/// or plain `python`.
pub fn python_command(install: Option<&Install>) -> String {
    let Some(install) = install else {
        return "python".into();
    };
    let mut candidates: Vec<PathBuf> = Vec::new();
    if install.layout == Layout::Portable
        && let Some(parent) = install.base_dir.parent()
    {
        return shell_path(&parent.join("python_embeded").join("python.exe"))
            .unwrap_or_else(|| "python".into());
    }
    for dir in std::iter::once(&install.base_dir).chain(install.code_dir.as_ref()) {
        for venv in [".venv", "venv"] {
            candidates.push(dir.join(venv).join("Scripts").join("python.exe"));
            candidates.push(dir.join(venv).join("bin").join("python"));
        }
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .and_then(|p| shell_path(&p))
        .unwrap_or_else(|| "python".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_are_quoted_or_refused() {
        assert_eq!(
            shell_word("ComfyUI-Impact-Pack").as_deref(),
            Some("ComfyUI-Impact-Pack")
        );
        assert_eq!(shell_word("My Pack").as_deref(), Some("\"My Pack\""));
        assert_eq!(shell_word("x; rm -rf /"), None);
        assert_eq!(shell_word("$(evil)"), None);
        assert_eq!(shell_word("a`b`"), None);
        assert_eq!(shell_word("line\nbreak"), None);
        assert_eq!(shell_word("-rf"), None);
        assert_eq!(shell_word("~user").as_deref(), Some("\"~user\""));
        assert!(!is_plain_id("-x"));
        assert_eq!(shell_word(""), None);
        assert_eq!(
            safe_url("https://github.com/a/b").as_deref(),
            Some("https://github.com/a/b")
        );
        assert_eq!(
            safe_url("https://x/api/download?type=Model&format=SafeTensor").as_deref(),
            Some("\"https://x/api/download?type=Model&format=SafeTensor\"")
        );
        assert_eq!(safe_url("https://github.com/a/b;rm"), None);
        assert_eq!(safe_url("file:///etc/passwd"), None);
    }

    #[test]
    fn portable_installs_use_the_embedded_python() {
        let install = Install {
            base_dir: PathBuf::from("/p/ComfyUI_windows_portable/ComfyUI"),
            code_dir: None,
            layout: Layout::Portable,
            found_by: crate::comfy::discovery::InstallSource::Configured,
            extra_model_paths: Vec::new(),
        };
        assert_eq!(
            python_command(Some(&install)),
            "/p/ComfyUI_windows_portable/python_embeded/python.exe"
        );
        assert_eq!(python_command(None), "python");
    }
}
