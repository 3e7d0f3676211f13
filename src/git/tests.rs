use super::*;

const A: &str = "1111111111111111111111111111111111111111";
const B: &str = "2222222222222222222222222222222222222222";
const C: &str = "3333333333333333333333333333333333333333";
const T: &str = "4444444444444444444444444444444444444444";

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// A working tree with a `.git` folder: branch `main` at A, origin at B.
fn repo(dir: &Path) -> PathBuf {
    let git = dir.join(".git");
    write(&git.join("HEAD"), "ref: refs/heads/main\n");
    write(&git.join("refs/heads/main"), &format!("{A}\n"));
    write(
        &git.join("config"),
        "[core]\n\tbare = false\n[remote \"origin\"]\n\turl = https://github.com/Owner/Pack.git\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n[branch \"main\"]\n\tremote = origin\n\tmerge = refs/heads/main\n",
    );
    write(
        &git.join("refs/remotes/origin/HEAD"),
        "ref: refs/remotes/origin/main\n",
    );
    write(
        &git.join("packed-refs"),
        &format!(
            "# pack-refs with: peeled fully-peeled sorted \n{B} refs/remotes/origin/main\n{T} refs/tags/v1.0\n^{A}\n{C} refs/tags/v0.9\n"
        ),
    );
    git
}

#[test]
fn reads_branch_head_origin_upstream_and_peeled_tags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pack = dir.path().join("pack");
    repo(&pack);
    write(&pack.join(".git/refs/tags/light"), &format!("{A}\n"));
    write(&pack.join(".git/refs/tags/other"), &format!("{C}\n"));
    let state = read_state(&pack, None).expect("state");
    assert_eq!(state.head.as_deref(), Some(A));
    assert_eq!(state.branch.as_deref(), Some("main"));
    assert_eq!(state.tags_at_head, vec!["light".to_string(), "v1.0".into()]);
    assert_eq!(
        state.origin_url.as_deref(),
        Some("https://github.com/Owner/Pack.git")
    );
    assert_eq!(state.origin_default_branch.as_deref(), Some("main"));
    assert_eq!(
        state.upstream,
        Some(("refs/remotes/origin/main".to_string(), B.to_string()))
    );
}

#[test]
fn detached_head_and_packed_branch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pack = dir.path().join("pack");
    let git = repo(&pack);
    write(&git.join("HEAD"), &format!("{C}\n"));
    let state = read_state(&pack, None).expect("state");
    assert_eq!(state.head.as_deref(), Some(C));
    assert_eq!(state.branch, None);
    assert_eq!(state.tags_at_head, vec!["v0.9".to_string()]);
    assert_eq!(state.upstream, None);

    // A branch only in packed-refs.
    write(&git.join("HEAD"), "ref: refs/heads/dev\n");
    let packed = std::fs::read_to_string(git.join("packed-refs")).expect("read");
    write(
        &git.join("packed-refs"),
        &format!("{packed}{C} refs/heads/dev\n"),
    );
    let state = read_state(&pack, None).expect("state");
    assert_eq!(state.branch.as_deref(), Some("dev"));
    assert_eq!(state.head.as_deref(), Some(C));
}

#[test]
fn unborn_branch_and_missing_git() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pack = dir.path().join("pack");
    let git = repo(&pack);
    std::fs::remove_file(git.join("refs/heads/main")).expect("rm");
    let state = read_state(&pack, None).expect("state");
    assert_eq!(state.head, None);
    assert_eq!(state.branch.as_deref(), Some("main"));

    let plain = dir.path().join("plain");
    std::fs::create_dir_all(&plain).expect("mkdir");
    assert_eq!(read_state(&plain, None), Err(GitError::NotACheckout));
}

#[test]
fn gitdir_file_is_followed_inside_the_roots_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().join("ComfyUI");
    // A submodule: its git dir lives in the parent repository's .git/modules.
    repo(&base.join(".git/modules/custom_nodes/sub"));
    let moved = base.join(".git/modules/custom_nodes/sub/.git");
    let target = base.join(".git/modules/custom_nodes/sub_git");
    std::fs::rename(&moved, &target).expect("mv");
    let pack = base.join("custom_nodes/sub");
    write(
        &pack.join(".git"),
        "gitdir: ../../.git/modules/custom_nodes/sub_git\n",
    );
    let state = read_state(&pack, Some(&base)).expect("state");
    assert_eq!(state.head.as_deref(), Some(A));
    // Without the ComfyUI folder as a root the same file is refused.
    assert_eq!(read_state(&pack, None), Err(GitError::OutsideRoots));

    // A gitdir pointing anywhere else is refused.
    let outside = dir.path().join("elsewhere");
    repo(&outside);
    write(
        &pack.join(".git"),
        &format!("gitdir: {}\n", outside.join(".git").display()),
    );
    assert_eq!(read_state(&pack, Some(&base)), Err(GitError::OutsideRoots));
    write(&pack.join(".git"), "gitdir: ../../../elsewhere/.git\n");
    assert_eq!(read_state(&pack, Some(&base)), Err(GitError::OutsideRoots));
    write(&pack.join(".git"), "nonsense\n");
    assert!(matches!(
        read_state(&pack, Some(&base)),
        Err(GitError::Unreadable(_))
    ));
}

#[cfg(unix)]
#[test]
fn symlinks_out_of_the_pack_are_not_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = dir.path().join("outside");
    let outside_git = repo(&outside);
    let pack = dir.path().join("nodes/pack");
    std::fs::create_dir_all(&pack).expect("mkdir");
    // A symlinked .git pointing out of the pack.
    std::os::unix::fs::symlink(&outside_git, pack.join(".git")).expect("symlink");
    assert_eq!(read_state(&pack, None), Err(GitError::OutsideRoots));

    // A real .git whose HEAD and config are symlinks out of the pack: not read.
    std::fs::remove_file(pack.join(".git")).expect("rm");
    let git = pack.join(".git");
    std::fs::create_dir_all(git.join("refs/heads")).expect("mkdir");
    std::os::unix::fs::symlink(outside_git.join("HEAD"), git.join("HEAD")).expect("symlink");
    std::os::unix::fs::symlink(outside_git.join("config"), git.join("config")).expect("symlink");
    let state = read_state(&pack, None).expect("state");
    assert_eq!(state.head, None);
    assert_eq!(state.origin_url, None);

    // A symlinked pack (ComfyUI loads those) is read where it really lives.
    let linked = dir.path().join("nodes/linked");
    std::os::unix::fs::symlink(&outside, &linked).expect("symlink");
    let state = read_state(&linked, None).expect("state");
    assert_eq!(state.head.as_deref(), Some(A));
}

#[test]
fn hostile_refs_never_leave_the_git_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pack = dir.path().join("pack");
    let git = repo(&pack);
    write(&dir.path().join("secret"), &format!("{B}\n"));
    write(&git.join("HEAD"), "ref: refs/../../../secret\n");
    let state = read_state(&pack, None).expect("state");
    assert_eq!(state.head, None);
    assert_eq!(state.branch, None);
    write(&git.join("HEAD"), "ref: ../secret\n");
    assert_eq!(read_state(&pack, None).expect("state").head, None);
    // Garbage everywhere: no panic.
    write(&git.join("HEAD"), "\u{0}\u{1}garbage");
    write(&git.join("packed-refs"), "^\n^zz\nxyz\n \n{A}");
    write(&git.join("config"), "[remote \"origin\"\nurl\n[\n=\n");
    let state = read_state(&pack, None).expect("state");
    assert_eq!(state.head, None);
    // Oversized files are refused, not read.
    write(&git.join("HEAD"), &"x".repeat(10_000));
    assert_eq!(read_state(&pack, None).expect("state").head, None);
}

#[test]
fn symbolic_ref_loops_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pack = dir.path().join("pack");
    let git = repo(&pack);
    write(&git.join("refs/heads/main"), "ref: refs/heads/loop\n");
    write(&git.join("refs/heads/loop"), "ref: refs/heads/main\n");
    assert_eq!(read_state(&pack, None).expect("state").head, None);
}

#[test]
fn worktree_commondir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let main = dir.path().join("main");
    let git = repo(&main);
    let wt_git = git.join("worktrees/feature");
    write(&wt_git.join("HEAD"), "ref: refs/heads/feature\n");
    write(&wt_git.join("commondir"), "../..\n");
    write(&git.join("refs/heads/feature"), &format!("{C}\n"));
    let tree = main.join("feature-tree");
    write(&tree.join(".git"), "gitdir: ../.git/worktrees/feature\n");
    // The tree lives inside `main`, whose folder is the extra root here.
    let state = read_state(&tree, Some(&main)).expect("state");
    assert_eq!(state.branch.as_deref(), Some("feature"));
    assert_eq!(state.head.as_deref(), Some(C));
    assert_eq!(
        state.origin_url.as_deref(),
        Some("https://github.com/Owner/Pack.git")
    );
}

#[test]
fn config_parsing() {
    let config = parse_config(
        "# comment\n[Remote \"origin\"]\n  URL = \"git@github.com:a/b.git\" ; note\n[branch.main]\nmerge = refs/heads/x\n[remote \"origin\"]\nurl = https://github.com/c/d\n",
    );
    assert_eq!(
        config.get("remote", Some("origin"), "url").as_deref(),
        Some("https://github.com/c/d")
    );
    assert_eq!(
        config.get("branch", Some("main"), "merge").as_deref(),
        Some("refs/heads/x")
    );
}

#[test]
fn github_urls() {
    for url in [
        "https://github.com/comfyanonymous/ComfyUI",
        "https://github.com/comfyanonymous/ComfyUI.git",
        "https://github.com/comfyanonymous/ComfyUI/",
        "http://www.github.com/comfyanonymous/ComfyUI.git/",
        "https://user:tok@github.com/comfyanonymous/ComfyUI.git",
        "git@github.com:comfyanonymous/ComfyUI.git",
        "github.com:comfyanonymous/ComfyUI",
        "ssh://git@github.com/comfyanonymous/ComfyUI.git",
        "ssh://git@github.com:22/comfyanonymous/ComfyUI",
        "git://github.com/comfyanonymous/ComfyUI.git",
    ] {
        assert_eq!(
            github_repo(url).as_deref(),
            Some("comfyanonymous/ComfyUI"),
            "{url}"
        );
    }
    for url in [
        "https://gitlab.com/a/b.git",
        "https://github.com.evil.example/a/b",
        "https://github.com/a",
        "https://github.com/a/b/c",
        "https://github.com/a/../b",
        "file:///home/me/repo",
        "/home/me/repo",
        "git@gitlab.com:a/b.git",
        "",
        "https://github.com/-a/b",
    ] {
        assert_eq!(github_repo(url), None, "{url}");
    }
}

#[test]
fn credentials_are_stripped() {
    assert_eq!(
        strip_credentials("https://x:ghp_secret@github.com/a/b.git"),
        "https://github.com/a/b.git"
    );
    assert_eq!(
        strip_credentials("git@github.com:a/b.git"),
        "git@github.com:a/b.git"
    );
}

#[test]
fn a_config_names_origin_first_then_any_remote_without_credentials() {
    let both = "[remote \"fork\"]\n\turl = https://github.com/me/x\n[remote \"origin\"]\n\turl = https://u:tok@github.com/o/x.git\n";
    assert_eq!(
        remote_url(both).as_deref(),
        Some("https://github.com/o/x.git")
    );
    assert_eq!(
        remote_url("[remote \"fork\"]\nurl = a\n").as_deref(),
        Some("a")
    );
    assert_eq!(remote_url("[core]\nurl = x\n"), None);
    assert_eq!(remote_url("[remote \"origin\"]\nurl =\n"), None);
}

#[cfg(unix)]
#[test]
fn special_files_are_not_opened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pack = dir.path().join("pack");
    let git = repo(&pack);
    std::fs::remove_file(git.join("HEAD")).expect("rm");
    // A FIFO as HEAD would block a plain read forever; it must be refused unopened.
    let made = std::process::Command::new("mkfifo")
        .arg(git.join("HEAD"))
        .status();
    if !made.is_ok_and(|s| s.success()) {
        return;
    }
    let state = read_state(&pack, None).expect("state");
    assert_eq!(state.head, None);
    assert_eq!(
        state.origin_url.as_deref(),
        Some("https://github.com/Owner/Pack.git")
    );
}
