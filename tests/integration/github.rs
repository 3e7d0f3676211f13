//! `check_node_updates` and `get_repo_releases` through the real binary, against a fake GitHub
//! API and a temporary ComfyUI folder whose custom_nodes hold synthetic git checkouts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::fake_github::{FakeGitHub, FakeRepo, GhFault};
use crate::support::{RawStdio, Scratch, failed, ok};

const TOKEN: &str = "ghp_fake_token_7f3a9c";

const S_UP: &str = "1111111111111111111111111111111111111111";
const S_BEHIND: &str = "2222222222222222222222222222222222222222";
const S_AHEAD: &str = "3333333333333333333333333333333333333333";
const S_TAG: &str = "4444444444444444444444444444444444444444";
const S_TAG_OBJECT: &str = "5555555555555555555555555555555555555555";
const S_LINKED: &str = "6666666666666666666666666666666666666666";
const S_BROKEN: &str = "7777777777777777777777777777777777777777";
const S_SECRET: &str = "8888888888888888888888888888888888888888";
const S_FETCHED: &str = "9999999999999999999999999999999999999999";

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// A `.git` folder in `tree`: `branch` (or detached when None) at `sha`, origin `url`.
fn checkout(tree: &Path, branch: Option<&str>, sha: &str, url: &str, origin_head: bool) {
    let git = tree.join(".git");
    match branch {
        Some(branch) => {
            write(&git.join("HEAD"), &format!("ref: refs/heads/{branch}\n"));
            write(
                &git.join(format!("refs/heads/{branch}")),
                &format!("{sha}\n"),
            );
        }
        None => write(&git.join("HEAD"), &format!("{sha}\n")),
    }
    write(
        &git.join("config"),
        &format!(
            "[core]\n\trepositoryformatversion = 0\n[remote \"origin\"]\n\turl = {url}\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n[branch \"main\"]\n\tremote = origin\n\tmerge = refs/heads/main\n"
        ),
    );
    if origin_head {
        write(
            &git.join("refs/remotes/origin/HEAD"),
            "ref: refs/remotes/origin/main\n",
        );
    }
    std::fs::create_dir_all(git.join("objects")).expect("mkdir");
    write(&tree.join("__init__.py"), "NODE_CLASS_MAPPINGS = {}\n");
}

/// A ComfyUI folder with one pack of every kind; returns (base dir, the outside folder).
fn install(root: &Path) -> (PathBuf, PathBuf) {
    let base = root.join("ComfyUI");
    let nodes = base.join("custom_nodes");
    write(&base.join("main.py"), "");
    std::fs::create_dir_all(base.join("models/checkpoints")).expect("mkdir");
    let outside = root.join("outside");

    checkout(
        &nodes.join("pack-uptodate"),
        Some("main"),
        S_UP,
        "https://github.com/fake/uptodate.git",
        true,
    );
    checkout(
        &nodes.join("pack behind"),
        Some("main"),
        S_BEHIND,
        "git@github.com:fake/behind.git",
        false,
    );
    // Fetched but not merged: origin/main is ahead of the local branch.
    write(
        &nodes.join("pack behind/.git/refs/remotes/origin/main"),
        &format!("{S_FETCHED}\n"),
    );
    checkout(
        &nodes.join("pack-ahead"),
        Some("main"),
        S_AHEAD,
        "https://user:remote-secret@github.com/fake/ahead",
        true,
    );
    // Pinned at an annotated release tag (packed, peeled), detached.
    let tagged = nodes.join("pack-tagged");
    checkout(
        &tagged,
        None,
        S_TAG,
        "ssh://git@github.com/fake/tagged.git",
        true,
    );
    write(
        &tagged.join(".git/packed-refs"),
        &format!(
            "# pack-refs with: peeled fully-peeled sorted \n{S_TAG_OBJECT} refs/tags/v1.0\n^{S_TAG}\n"
        ),
    );
    checkout(
        &nodes.join("pack-gitlab"),
        Some("main"),
        S_UP,
        "https://gitlab.com/someone/pack.git",
        false,
    );
    write(&nodes.join("pack-zip/__init__.py"), "");
    checkout(
        &nodes.join("pack-broken"),
        Some("main"),
        S_BROKEN,
        "https://github.com/fake/broken",
        true,
    );
    // A repository outside the ComfyUI folder, naming a repository we must never ask about.
    checkout(
        &outside.join("secret"),
        Some("main"),
        S_SECRET,
        "https://github.com/fake/secret",
        true,
    );
    // A .git file whose gitdir climbs out of the ComfyUI folder.
    write(
        &nodes.join("pack-gitdir/.git"),
        "gitdir: ../../../outside/secret/.git\n",
    );
    write(&nodes.join("pack-gitdir/__init__.py"), "");
    // A symlinked pack (ComfyUI loads those): read where it really lives.
    let linked_target = outside.join("linked");
    checkout(
        &linked_target,
        Some("main"),
        S_LINKED,
        "https://github.com/fake/linked",
        true,
    );
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&linked_target, nodes.join("pack-linked")).expect("symlink");
        // A pack whose .git/config is a symlink out of the pack: not read.
        let sneaky = nodes.join("pack-sneaky");
        checkout(&sneaky, Some("main"), S_UP, "unused", false);
        std::fs::remove_file(sneaky.join(".git/config")).expect("rm");
        std::os::unix::fs::symlink(
            outside.join("secret/.git/config"),
            sneaky.join(".git/config"),
        )
        .expect("symlink");
    }
    (base, outside)
}

fn github() -> Vec<(&'static str, FakeRepo)> {
    vec![
        (
            "fake/uptodate",
            FakeRepo::new("main").compare(S_UP, "identical", 0, 0),
        ),
        (
            "fake/behind",
            FakeRepo::new("main")
                .release("v2.0", "Faster sampling.")
                .compare(S_BEHIND, "ahead", 3, 0),
        ),
        (
            "fake/ahead",
            FakeRepo::new("main").compare(S_AHEAD, "behind", 0, 2),
        ),
        (
            "fake/tagged",
            FakeRepo::new("main")
                .release("v1.0", "First.")
                .compare(S_TAG, "ahead", 5, 0),
        ),
        (
            "fake/linked",
            FakeRepo::new("main").compare(S_LINKED, "identical", 0, 0),
        ),
        (
            "fake/broken",
            FakeRepo::new("main").compare(S_BROKEN, "identical", 0, 0),
        ),
        (
            "fake/secret",
            FakeRepo::new("main").compare(S_SECRET, "identical", 0, 0),
        ),
    ]
}

async fn fake() -> FakeGitHub {
    let fake = FakeGitHub::start().await;
    for (name, repo) in github() {
        fake.add(name, repo);
    }
    fake
}

async fn agent(scratch: &Scratch, base: Option<&Path>, env: &[(&str, &str)]) -> RawStdio {
    let base_text = base.map(|b| b.display().to_string());
    let mut all: Vec<(&str, &str)> = env.to_vec();
    if let Some(base) = base_text.as_deref() {
        all.push(("COMFYUI_DIR", base));
    }
    let mut agent = RawStdio::spawn_with(scratch, &all);
    agent.initialize().await;
    agent
}

fn pack<'a>(result: &'a Value, name: &str) -> &'a Value {
    result["packs"]
        .as_array()
        .expect("packs")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no pack {name} in {result:#}"))
}

fn skipped<'a>(result: &'a Value, name: &str) -> &'a Value {
    result["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no skipped {name} in {result:#}"))
}

#[tokio::test]
async fn check_node_updates_reports_each_pack_honestly() {
    let scratch = Scratch::new();
    let (base, _outside) = install(scratch.dir.path());
    let fake = fake().await;
    fake.fail_repo("fake/broken", GhFault::ServerError);
    let url = fake.url();
    let mut agent = agent(
        &scratch,
        Some(&base),
        &[("COMFYUI_AGENT_GITHUB_URL", &url), ("GITHUB_TOKEN", TOKEN)],
    )
    .await;
    let raw = agent.call_tool(1, "check_node_updates", json!({})).await;
    let text = raw.to_string();
    assert!(!text.contains(TOKEN), "the token leaked: {text}");
    assert!(!text.contains("remote-secret"), "remote credentials leaked");
    let result = ok(&raw).clone();

    let up = pack(&result, "pack-uptodate");
    assert_eq!(up["status"], "up_to_date", "{up:#}");
    assert_eq!(up["repo"], "fake/uptodate");
    assert_eq!(up["branch"], "main");
    assert_eq!(up["local_head"], S_UP);
    assert_eq!(up["update_command"], Value::Null);
    assert_eq!(up["last_fetched"], Value::Null);

    let behind = pack(&result, "pack behind");
    assert_eq!(behind["status"], "behind", "{behind:#}");
    assert_eq!(behind["behind_by"], 3);
    assert_eq!(behind["latest_release"]["tag"], "v2.0");
    assert_eq!(behind["at_latest_release"], false);
    assert_eq!(behind["default_branch"], "main");
    assert_eq!(behind["last_fetched"], S_FETCHED);
    let command = behind["update_command"].as_str().expect("command");
    assert!(command.starts_with("git -C '"), "{command}");
    assert!(command.ends_with("pack behind' pull"), "{command}");

    let ahead = pack(&result, "pack-ahead");
    assert_eq!(ahead["status"], "ahead", "{ahead:#}");
    assert_eq!(ahead["ahead_by"], 2);
    assert_eq!(ahead["update_command"], Value::Null);

    let tagged = pack(&result, "pack-tagged");
    assert_eq!(tagged["status"], "behind", "{tagged:#}");
    assert_eq!(tagged["branch"], Value::Null);
    assert_eq!(tagged["tags_at_head"], json!(["v1.0"]));
    assert_eq!(tagged["at_latest_release"], true);
    assert!(
        tagged["message"]
            .as_str()
            .expect("message")
            .contains("newest release, v1.0"),
        "{tagged:#}"
    );

    // At the newest release already: the newer code is on the branch.
    let command = tagged["update_command"].as_str().expect("command");
    assert!(command.contains("checkout main"), "{command}");

    let broken = pack(&result, "pack-broken");
    assert_eq!(broken["status"], "unknown", "{broken:#}");
    assert!(
        broken["message"]
            .as_str()
            .expect("message")
            .contains("HTTP 500")
    );

    let gitdir = pack(&result, "pack-gitdir");
    assert_eq!(gitdir["status"], "unknown", "{gitdir:#}");
    assert!(
        gitdir["message"]
            .as_str()
            .expect("message")
            .contains("outside")
    );

    assert_eq!(skipped(&result, "pack-gitlab")["status"], "not_on_github");
    assert_eq!(skipped(&result, "pack-zip")["status"], "not_a_git_checkout");

    #[cfg(unix)]
    {
        assert_eq!(pack(&result, "pack-linked")["status"], "up_to_date");
        assert_eq!(skipped(&result, "pack-sneaky")["status"], "not_on_github");
    }

    let linked = usize::from(cfg!(unix));
    assert_eq!(result["up_to_date"], 1 + linked);
    assert_eq!(result["has_updates"], 2);
    assert_eq!(result["checked"], 4 + linked);
    assert_eq!(result["unknown"], 2);
    assert_eq!(result["errors"][0]["kind"], "web_status", "{result:#}");

    let seen = fake.seen();
    assert!(!seen.is_empty());
    for request in &seen {
        assert_eq!(
            request.authorization.as_deref(),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert_eq!(
            request.accept.as_deref(),
            Some("application/vnd.github+json")
        );
        assert_eq!(request.api_version.as_deref(), Some("2022-11-28"));
        assert!(
            !request.path.contains("secret"),
            "asked about a repository outside the install: {}",
            request.path
        );
    }
    // The repository was looked up only where no origin/HEAD names the default branch.
    assert!(seen.iter().any(|r| r.path == "/repos/fake/behind"));
    assert!(!seen.iter().any(|r| r.path == "/repos/fake/uptodate"));
    assert!(
        seen.iter()
            .any(|r| r.path == format!("/repos/fake/behind/compare/{S_BEHIND}...main"))
    );

    // Filtered, without up-to-date packs: answered from the cache.
    let before = fake.seen().len();
    let raw = agent
        .call_tool(
            2,
            "check_node_updates",
            json!({"name_filter": "PACK-", "include_up_to_date": false}),
        )
        .await;
    let result = ok(&raw);
    let names: Vec<&str> = result["packs"]
        .as_array()
        .expect("packs")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(!names.contains(&"pack behind"), "{names:?}");
    assert!(!names.contains(&"pack-uptodate"), "{names:?}");
    assert!(names.contains(&"pack-ahead"), "{names:?}");
    assert_eq!(result["up_to_date"], 1 + linked);
    // Only failed lookups (errors and 404s aren't cached) went out again.
    let again: Vec<_> = fake.seen()[before..]
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert!(
        again.iter().all(
            |p| p.starts_with("/repos/fake/broken") || p == "/repos/fake/ahead/releases/latest"
        ),
        "{again:?}"
    );

    let text = failed(
        &agent
            .call_tool(3, "check_node_updates", json!({"bogus": true}))
            .await,
    );
    assert!(text.contains("bogus"), "{text}");
}

#[tokio::test]
async fn check_node_updates_offline_still_reads_local_state() {
    let scratch = Scratch::new();
    let (base, _outside) = install(scratch.dir.path());
    let fake = fake().await;
    let url = fake.url();
    let mut agent = agent(
        &scratch,
        Some(&base),
        &[
            ("COMFYUI_AGENT_GITHUB_URL", &url),
            ("COMFYUI_AGENT_OFFLINE", "1"),
        ],
    )
    .await;
    let raw = agent.call_tool(1, "check_node_updates", json!({})).await;
    let result = ok(&raw);
    assert_eq!(result["checked"], 0);
    let behind = pack(result, "pack behind");
    assert_eq!(behind["status"], "unknown");
    assert_eq!(behind["local_head"], S_BEHIND);
    assert!(
        behind["message"]
            .as_str()
            .expect("message")
            .contains("offline")
    );
    assert_eq!(result["errors"][0]["kind"], "web_offline");
    assert_eq!(result["errors"][0]["source"], "github");
    assert!(
        result["notes"]
            .to_string()
            .contains("COMFYUI_AGENT_OFFLINE")
    );
    assert_eq!(skipped(result, "pack-zip")["status"], "not_a_git_checkout");
    assert!(fake.seen().is_empty());
}

#[tokio::test]
async fn check_node_updates_stops_when_rate_limited() {
    let scratch = Scratch::new();
    let (base, _outside) = install(scratch.dir.path());
    let fake = fake().await;
    fake.always(GhFault::QuotaSpent);
    let url = fake.url();
    let mut agent = agent(&scratch, Some(&base), &[("COMFYUI_AGENT_GITHUB_URL", &url)]).await;
    let raw = agent.call_tool(1, "check_node_updates", json!({})).await;
    let result = ok(&raw);
    assert_eq!(result["checked"], 0);
    assert_eq!(result["has_updates"], 0);
    assert!(
        result["packs"]
            .as_array()
            .expect("packs")
            .iter()
            .all(|p| p["status"] == "unknown"),
        "{result:#}"
    );
    assert_eq!(result["errors"][0]["kind"], "web_rate_limited");
    let notes = result["notes"].to_string();
    assert!(notes.contains("GITHUB_TOKEN"), "{notes}");
    assert!(notes.contains("rate limit was reached"), "{notes}");
    // At most one request per pack in flight when the limit was met; no hammering.
    let packs = result["packs"].as_array().expect("packs").len();
    assert!(fake.seen().len() <= 4, "{} requests", fake.seen().len());
    assert!(packs >= 5);
    for request in fake.seen() {
        assert_eq!(request.authorization, None);
    }
}

#[tokio::test]
async fn check_node_updates_needs_an_install() {
    let scratch = Scratch::new();
    let mut agent = agent(&scratch, None, &[]).await;
    let text = failed(&agent.call_tool(1, "check_node_updates", json!({})).await);
    assert!(text.contains("COMFYUI_DIR"), "{text}");
}

#[tokio::test]
async fn get_repo_releases_lists_and_normalises() {
    let scratch = Scratch::new();
    let fake = FakeGitHub::start().await;
    let long = "Notes. ".repeat(100);
    let mut repo = FakeRepo::new("main");
    for i in (1..=8).rev() {
        repo = repo.release(&format!("v1.{i}"), &long);
    }
    fake.add("comfyanonymous/ComfyUI", repo);
    let mut bare = FakeRepo::new("main");
    bare.tags = vec!["v0.2".into(), "v0.1".into()];
    fake.add("someone/bare", bare);
    let url = fake.url();
    let mut agent = agent(
        &scratch,
        None,
        &[
            ("COMFYUI_AGENT_GITHUB_URL", &url),
            ("GITHUB_API_TOKEN", TOKEN),
        ],
    )
    .await;

    let raw = agent
        .call_tool(
            1,
            "get_repo_releases",
            json!({"repo": "https://github.com/comfyanonymous/ComfyUI/releases", "limit": 3}),
        )
        .await;
    assert!(!raw.to_string().contains(TOKEN));
    let result = ok(&raw);
    assert_eq!(result["repo"], "comfyanonymous/ComfyUI");
    assert_eq!(result["showing"], 3);
    let first = &result["releases"][0];
    assert_eq!(first["tag"], "v1.8");
    assert_eq!(first["name"], "Release v1.8");
    assert_eq!(first["published"], "2024-05-20");
    assert_eq!(first["prerelease"], false);
    assert_eq!(
        first["url"],
        "https://github.com/comfyanonymous/ComfyUI/releases/tag/v1.8"
    );
    let preview = first["body_preview"].as_str().expect("preview");
    assert!(preview.ends_with('…') && preview.chars().count() <= 301);
    let seen = fake.seen();
    assert_eq!(seen[0].path, "/repos/comfyanonymous/ComfyUI/releases");
    assert_eq!(seen[0].query.as_deref(), Some("per_page=3"));
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );

    let raw = agent
        .call_tool(2, "get_repo_releases", json!({"repo": "someone/bare"}))
        .await;
    let result = ok(&raw);
    assert_eq!(result["releases"], json!([]));
    assert_eq!(result["tags"], json!(["v0.2", "v0.1"]));
    assert!(
        result["message"]
            .as_str()
            .expect("message")
            .contains("no releases")
    );

    let text = failed(
        &agent
            .call_tool(3, "get_repo_releases", json!({"repo": "nobody/nothing"}))
            .await,
    );
    assert!(text.contains("no repository nobody/nothing"), "{text}");
    assert!(text.contains("GITHUB_TOKEN"), "{text}");

    for (id, bad) in [(4, "not a repo"), (5, "../../etc/passwd"), (6, "a/b/c")] {
        let text = failed(
            &agent
                .call_tool(id, "get_repo_releases", json!({"repo": bad}))
                .await,
        );
        assert!(text.contains("Invalid repo format"), "{text}");
    }
    let text = failed(
        &agent
            .call_tool(7, "get_repo_releases", json!({"repo": "a/b", "limit": 50}))
            .await,
    );
    assert!(text.contains("limit"), "{text}");
    // Bad names never reached GitHub.
    assert!(fake.seen().iter().all(|r| !r.path.contains("etc")));
}

#[tokio::test]
async fn get_repo_releases_failures_are_explained() {
    let scratch = Scratch::new();
    let fake = FakeGitHub::start().await;
    for name in ["o/slow", "o/busy", "o/quota", "o/down", "o/garbled"] {
        fake.add(name, FakeRepo::new("main").release("v1", "x"));
    }
    fake.fail_repo("o/slow", GhFault::Delay(Duration::from_secs(4)));
    fake.fail_repo("o/busy", GhFault::TooMany(30));
    fake.fail_repo("o/quota", GhFault::QuotaSpent);
    fake.fail_repo("o/down", GhFault::ServerError);
    fake.fail_repo("o/garbled", GhFault::Malformed);
    let url = fake.url();
    let mut agent = agent(
        &scratch,
        None,
        &[
            ("COMFYUI_AGENT_GITHUB_URL", &url),
            ("COMFYUI_AGENT_WEB_TIMEOUT", "1"),
        ],
    )
    .await;
    let cases = [
        ("o/slow", "didn't answer within 1 seconds"),
        ("o/busy", "Wait about 30 seconds"),
        ("o/quota", "GITHUB_TOKEN"),
        ("o/down", "HTTP 500"),
        ("o/garbled", "isn't the JSON expected"),
    ];
    for (id, (repo, expected)) in cases.iter().enumerate() {
        let text = failed(
            &agent
                .call_tool(id as i64 + 1, "get_repo_releases", json!({"repo": repo}))
                .await,
        );
        assert!(text.contains(expected), "{repo}: {text}");
    }

    // Offline: nothing asked, and the message says so.
    let scratch = Scratch::new();
    let mut offline = agent_offline(&scratch, &url).await;
    let text = failed(
        &offline
            .call_tool(1, "get_repo_releases", json!({"repo": "o/down"}))
            .await,
    );
    assert!(text.contains("offline"), "{text}");
}

async fn agent_offline(scratch: &Scratch, url: &str) -> RawStdio {
    agent(
        scratch,
        None,
        &[
            ("COMFYUI_AGENT_GITHUB_URL", url),
            ("COMFYUI_AGENT_OFFLINE", "1"),
        ],
    )
    .await
}

#[tokio::test]
async fn one_slow_or_garbled_pack_does_not_sink_the_rest() {
    let scratch = Scratch::new();
    let (base, _outside) = install(scratch.dir.path());
    let fake = fake().await;
    fake.fail_repo("fake/behind", GhFault::Delay(Duration::from_secs(4)));
    fake.fail_repo("fake/ahead", GhFault::Malformed);
    let url = fake.url();
    let mut agent = agent(
        &scratch,
        Some(&base),
        &[
            ("COMFYUI_AGENT_GITHUB_URL", &url),
            ("COMFYUI_AGENT_WEB_TIMEOUT", "1"),
            ("GITHUB_TOKEN", TOKEN),
        ],
    )
    .await;
    let raw = agent.call_tool(1, "check_node_updates", json!({})).await;
    let result = ok(&raw);
    let message = |name: &str| {
        pack(result, name)["message"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(pack(result, "pack behind")["status"], "unknown");
    assert!(
        message("pack behind").contains("didn't answer"),
        "{result:#}"
    );
    assert_eq!(pack(result, "pack-ahead")["status"], "unknown");
    assert!(message("pack-ahead").contains("JSON"), "{result:#}");
    assert_eq!(pack(result, "pack-tagged")["status"], "behind");
    assert_eq!(pack(result, "pack-uptodate")["status"], "up_to_date");
    let kinds = result["errors"].to_string();
    assert!(
        kinds.contains("web_timeout") && kinds.contains("web_malformed"),
        "{kinds}"
    );
    // With a token set, the result doesn't ask for one.
    assert!(!result["notes"].to_string().contains("Set GITHUB_TOKEN"));
    assert!(!raw.to_string().contains(TOKEN));
}
