//! GitHub tools: `get_repo_releases` and `check_node_updates`. The first lists a repository's
//! releases; the second compares each custom-node pack's local git checkout (read from its
//! `.git` without running git, see `crate::git`) with its GitHub repository and says honestly
//! whether it is up to date, behind, ahead or diverged. Nothing is updated: the command a user
//! could run is given as text.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ToolError;
use crate::git::{self, GitError, GitState};
use crate::install::InstallError;
use crate::install::nodes::{PackForm, PackList};
use crate::mcp::ToolContext;
use crate::registry::{Hints, ToolSpec, tool};
use crate::web::{Source, Web, WebError};

/// Packs checked at the same time.
const CONCURRENT_PACKS: usize = 4;
/// Release notes are cut to this many characters.
const BODY_PREVIEW_CHARS: usize = 300;
/// Without a token GitHub allows 60 requests an hour; past this many packs the result says a
/// token would help.
const TOKEN_HINT_PACKS: usize = 15;

pub fn tools() -> Vec<ToolSpec> {
    vec![
        tool(
            "check_node_updates",
            "Check custom node updates",
            "Compare every custom-node pack that is a git checkout of a GitHub repository with \
             GitHub: reports per pack whether it is up to date, behind (how many commits, and the \
             newest release), ahead (local commits), diverged, or why it couldn't be checked. \
             Reads each pack's .git folder (git need not be installed) and changes nothing; the \
             command to update a pack is given as text. GitHub allows 60 lookups an hour without \
             GITHUB_TOKEN.",
            Hints::LIVE_READ,
            check_node_updates,
        ),
        tool(
            "get_repo_releases",
            "Get repository releases",
            "List a GitHub repository's newest releases (tag, name, date, the start of the notes, \
             link). Give the repository as owner/name (e.g. comfyanonymous/ComfyUI) or its \
             github.com address. When it has no releases, its newest tags are named instead.",
            Hints::LIVE_READ,
            get_repo_releases,
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// get_repo_releases

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetRepoReleasesParams {
    /// The repository as `owner/name`, or its github.com address.
    #[schemars(length(min = 1, max = 300))]
    pub repo: String,
    /// How many releases to list, newest first (default 5, at most 20).
    #[schemars(range(min = 1, max = 20))]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ReleaseInfo {
    pub tag: String,
    pub name: String,
    /// Publication date (`YYYY-MM-DD`); null for drafts.
    pub published: Option<String>,
    /// The first 300 characters of the release notes.
    pub body_preview: String,
    pub url: String,
    pub prerelease: bool,
    pub draft: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct RepoReleases {
    /// The repository as `owner/name`.
    pub repo: String,
    pub releases: Vec<ReleaseInfo>,
    /// How many releases are listed.
    pub showing: usize,
    /// Set when there are no releases.
    pub message: Option<String>,
    /// The newest tags, when the repository has tags but no releases.
    pub tags: Vec<String>,
    /// Whether the answer came from the cache (GitHub wasn't asked again).
    pub cached: bool,
}

async fn get_repo_releases(
    cx: ToolContext,
    params: GetRepoReleasesParams,
) -> Result<RepoReleases, ToolError> {
    let repo = normalise_repo(&params.repo)?;
    let limit = params.limit.unwrap_or(5).clamp(1, 20);
    let web = cx.app.web();
    let path = format!("repos/{repo}/releases");
    let query = [("per_page", limit.to_string())];
    let answer = tokio::select! {
        answer = web.get_json(Source::GitHub, &path, &query) => answer,
        () = cx.cancelled.cancelled() => return Err(ToolError::Cancelled),
    };
    let answer = answer.map_err(|e| repo_error(&repo, e, web))?;
    let releases: Vec<ReleaseInfo> = answer
        .body
        .as_array()
        .ok_or_else(|| not_expected("a list of releases"))?
        .iter()
        .take(limit as usize)
        .filter_map(release_info)
        .collect();
    let mut tags = Vec::new();
    let mut message = None;
    if releases.is_empty() {
        let found = web
            .get_json(
                Source::GitHub,
                &format!("repos/{repo}/tags"),
                &[("per_page", "5".into())],
            )
            .await;
        if let Ok(found) = found
            && let Some(list) = found.body.as_array()
        {
            tags = list
                .iter()
                .filter_map(|t| t.get("name")?.as_str().map(str::to_string))
                .take(5)
                .collect();
        }
        message = Some(if tags.is_empty() {
            format!("{repo} has no releases on GitHub.")
        } else {
            format!(
                "{repo} has no releases on GitHub; its newest tags are {}.",
                tags.join(", ")
            )
        });
    }
    Ok(RepoReleases {
        repo,
        showing: releases.len(),
        releases,
        message,
        tags,
        cached: answer.cached,
    })
}

fn release_info(value: &Value) -> Option<ReleaseInfo> {
    let text = |key: &str| value.get(key).and_then(Value::as_str);
    let tag = text("tag_name")?.to_string();
    let name = text("name")
        .filter(|n| !n.trim().is_empty())
        .unwrap_or(&tag)
        .to_string();
    Some(ReleaseInfo {
        published: text("published_at").and_then(date_part),
        body_preview: preview(text("body").unwrap_or_default()),
        url: text("html_url").unwrap_or_default().to_string(),
        prerelease: value
            .get("prerelease")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        draft: value.get("draft").and_then(Value::as_bool).unwrap_or(false),
        tag,
        name,
    })
}

/// `2024-05-01` from `2024-05-01T12:00:00Z`.
fn date_part(stamp: &str) -> Option<String> {
    let date = stamp.get(..10)?;
    let ok = date.bytes().enumerate().all(|(i, b)| match i {
        4 | 7 => b == b'-',
        _ => b.is_ascii_digit(),
    });
    ok.then(|| date.to_string())
}

fn preview(body: &str) -> String {
    let body = body.trim();
    let mut chars = body.chars();
    let head: String = chars.by_ref().take(BODY_PREVIEW_CHARS).collect();
    if chars.next().is_some() {
        format!("{}…", head.trim_end())
    } else {
        head
    }
}

/// `owner/name` from what the user typed: `owner/name`, `https://github.com/owner/name…`,
/// `github.com/owner/name` or a git remote address.
pub fn normalise_repo(raw: &str) -> Result<String, ToolError> {
    let text = raw.trim();
    let direct = text.split_once('/').and_then(|(owner, name)| {
        let name = name.strip_suffix(".git").unwrap_or(name);
        (git::valid_owner(owner) && git::valid_repo_name(name)).then(|| format!("{owner}/{name}"))
    });
    let from_url = || {
        if let Some(repo) = git::github_repo(text) {
            return Some(repo);
        }
        // A page inside the repository: keep the first two path segments.
        let rest = text
            .strip_prefix("https://")
            .or_else(|| text.strip_prefix("http://"))
            .unwrap_or(text);
        let mut parts = rest.split(['/', '?', '#']);
        let host = parts.next()?;
        if !host.eq_ignore_ascii_case("github.com") && !host.eq_ignore_ascii_case("www.github.com")
        {
            return None;
        }
        let owner = parts.next()?;
        let name = parts.next()?;
        git::github_repo(&format!("https://github.com/{owner}/{name}"))
    };
    direct.or_else(from_url).ok_or_else(|| {
        let shown: String = text.chars().take(100).collect();
        ToolError::rejected(
            format!("Invalid repo format: {shown:?} isn't a GitHub repository name."),
            "Pass it as owner/name, e.g. comfyanonymous/ComfyUI, or as its github.com address.",
        )
    })
}

/// A web error about one repository, with a clearer word for "not found".
fn repo_error(repo: &str, error: WebError, web: &Web) -> ToolError {
    match error {
        WebError::NotFound { .. } => ToolError::rejected(
            format!("GitHub has no repository {repo} (or it's private)."),
            if web.has_key(Source::GitHub) {
                "Check the owner and name; for a private repository the token in GITHUB_TOKEN needs access to it."
            } else {
                "Check the owner and name; for a private repository set GITHUB_TOKEN to a token that can read it."
            },
        ),
        other => ToolError::Web(other),
    }
}

fn not_expected(what: &str) -> ToolError {
    ToolError::Web(WebError::Malformed {
        site: Source::GitHub,
        detail: format!("expected {what}"),
    })
}

// ---------------------------------------------------------------------------------------------
// check_node_updates

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckNodeUpdatesParams {
    /// Only packs whose folder name contains this text (case-insensitive).
    #[schemars(length(max = 200))]
    pub name_filter: Option<String>,
    /// List up-to-date packs too (default true); they are counted either way.
    pub include_up_to_date: Option<bool>,
}

/// Where a pack stands against its GitHub repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PackStatus {
    /// The checked-out commit is the head of the default branch.
    UpToDate,
    /// The default branch has commits the pack lacks.
    Behind,
    /// The pack has commits the default branch lacks, and nothing new upstream.
    Ahead,
    /// Both: local commits and newer upstream commits.
    Diverged,
    /// The folder isn't a git checkout (installed from a zip or the registry).
    NotAGitCheckout,
    /// Its origin remote isn't on GitHub (or there is none).
    NotOnGithub,
    /// It couldn't be checked; `reason` says why.
    Unknown,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct LatestRelease {
    pub tag: String,
    pub name: String,
    pub published: Option<String>,
    pub url: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct PackUpdate {
    /// The pack's folder name.
    pub name: String,
    pub path: String,
    pub status: PackStatus,
    /// The GitHub repository (`owner/name`).
    pub repo: Option<String>,
    /// The branch checked out; null when detached (e.g. at a tag).
    pub branch: Option<String>,
    /// The commit checked out.
    pub local_head: Option<String>,
    /// Tags naming the checked-out commit.
    pub tags_at_head: Vec<String>,
    /// The upstream branch's commit as last fetched into this checkout
    /// (`refs/remotes/origin/<branch>`); it differs from `local_head` when a fetch brought
    /// commits that weren't merged yet.
    pub last_fetched: Option<String>,
    /// The branch compared with (the repository's default branch).
    pub default_branch: Option<String>,
    /// Commits on the default branch the pack lacks.
    pub behind_by: Option<u64>,
    /// Local commits not on the default branch.
    pub ahead_by: Option<u64>,
    /// The repository's newest release, when looked up (only for packs that aren't up to date).
    pub latest_release: Option<LatestRelease>,
    /// Whether the checked-out commit carries the newest release's tag.
    pub at_latest_release: Option<bool>,
    /// What the status means for this pack, or why it couldn't be checked.
    pub message: String,
    /// A command the user could run to update (text only; nothing is run).
    pub update_command: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SkippedPack {
    pub name: String,
    pub path: String,
    /// `not_a_git_checkout` or `not_on_github`.
    pub status: PackStatus,
    pub reason: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SourceProblem {
    /// `github`.
    pub source: String,
    /// A stable name (`web_offline`, `web_rate_limited`, `web_timeout`, …).
    pub kind: String,
    pub message: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct NodeUpdates {
    /// Packs compared with GitHub successfully.
    pub checked: usize,
    pub up_to_date: usize,
    /// Packs with newer commits upstream (behind or diverged).
    pub has_updates: usize,
    /// Git checkouts on GitHub whose status couldn't be found.
    pub unknown: usize,
    /// Git checkouts on GitHub, each with its status (up-to-date ones only when asked).
    pub packs: Vec<PackUpdate>,
    /// Packs that can't be checked: not git checkouts, or not on GitHub.
    pub skipped: Vec<SkippedPack>,
    /// Problems reaching GitHub (each kind once); the packs they hit are `unknown`.
    pub errors: Vec<SourceProblem>,
    /// Advice: a token, the rate limit, offline mode.
    pub notes: Vec<String>,
    pub message: String,
}

/// One folder inside a custom_nodes folder.
#[derive(Debug, Clone)]
struct PackFolder {
    name: String,
    path: PathBuf,
}

/// The folder packs of every custom_nodes folder (the install's and any an
/// extra_model_paths.yaml adds), as the install index lists them; single-file packs have no
/// checkout to compare. A disabled pack keeps its on-disk name (`X.disabled`).
fn pack_folders(list: PackList) -> Vec<PackFolder> {
    list.packs
        .into_iter()
        .filter(|pack| pack.form == PackForm::Folder)
        .map(|pack| PackFolder {
            name: if pack.enabled {
                pack.name
            } else {
                pack.entry_name
            },
            path: pack.path,
        })
        .collect()
}

/// What one pack's check produced.
enum Outcome {
    Checked(Box<PackUpdate>),
    Skipped(SkippedPack),
}

/// Shared by the concurrent checks of one call.
struct Run {
    web_stop: AtomicBool,
    problems: std::sync::Mutex<Vec<WebError>>,
    base_dir: PathBuf,
}

impl Run {
    fn record(&self, error: &WebError) {
        if let WebError::RateLimited { ours: false, .. } = error {
            self.web_stop.store(true, Ordering::SeqCst);
        }
        let mut problems = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        if !problems.iter().any(|p| p.kind() == error.kind()) {
            problems.push(error.clone());
        }
    }
}

async fn check_node_updates(
    cx: ToolContext,
    params: CheckNodeUpdatesParams,
) -> Result<NodeUpdates, ToolError> {
    let install = cx.app.install().cloned().ok_or_else(|| {
        ToolError::rejected(
            "The ComfyUI folder on this machine isn't known, so its custom nodes can't be found.",
            "Set COMFYUI_DIR to your ComfyUI folder (the one holding custom_nodes).",
        )
    })?;
    let filter = params
        .name_filter
        .as_deref()
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(str::to_lowercase);
    let include_up_to_date = params.include_up_to_date.unwrap_or(true);
    let app = cx.app.clone();
    let packs = tokio::task::spawn_blocking(move || app.install_index().custom_nodes())
        .await
        .map_err(|e| ToolError::Internal(format!("listing custom nodes: {e}")))?;
    let packs = match packs {
        Ok(list) => pack_folders(list),
        Err(InstallError::NoCustomNodes { .. }) => Vec::new(),
        Err(error) => return Err(error.into()),
    };
    let packs: Vec<PackFolder> = packs
        .into_iter()
        .filter(|p| {
            filter
                .as_deref()
                .is_none_or(|f| p.name.to_lowercase().contains(f))
        })
        .collect();

    let run = Arc::new(Run {
        web_stop: AtomicBool::new(false),
        problems: std::sync::Mutex::new(Vec::new()),
        base_dir: install.base_dir.clone(),
    });
    let web = cx.app.web();
    let work = futures::stream::iter(packs.iter().cloned())
        .map(|pack| check_pack(web, Arc::clone(&run), pack))
        .buffer_unordered(CONCURRENT_PACKS)
        .collect::<Vec<Outcome>>();
    let outcomes = tokio::select! {
        outcomes = work => outcomes,
        () = cx.cancelled.cancelled() => return Err(ToolError::Cancelled),
    };

    let mut checked_packs = Vec::new();
    let mut skipped = Vec::new();
    for outcome in outcomes {
        match outcome {
            Outcome::Checked(pack) => checked_packs.push(*pack),
            Outcome::Skipped(pack) => skipped.push(pack),
        }
    }
    checked_packs.sort_by_key(|p| p.name.to_lowercase());
    skipped.sort_by_key(|p| p.name.to_lowercase());
    let count = |f: fn(PackStatus) -> bool| checked_packs.iter().filter(|p| f(p.status)).count();
    let up_to_date = count(|s| s == PackStatus::UpToDate);
    let has_updates = count(|s| matches!(s, PackStatus::Behind | PackStatus::Diverged));
    let unknown = count(|s| s == PackStatus::Unknown);
    let checked = checked_packs.len() - unknown;

    let problems = run
        .problems
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut notes = Vec::new();
    let rate_limited = problems
        .iter()
        .any(|p| matches!(p, WebError::RateLimited { .. }));
    if !web.has_key(Source::GitHub) && (rate_limited || checked_packs.len() > TOKEN_HINT_PACKS) {
        notes.push(
            "GitHub allows 60 lookups an hour without a token (each pack takes one to three). \
             Set GITHUB_TOKEN to a personal access token (no scopes needed for public \
             repositories) to raise that to 5,000."
                .into(),
        );
    }
    if run.web_stop.load(Ordering::SeqCst) {
        notes.push(
            "GitHub's rate limit was reached, so the remaining packs weren't asked; they are \
             listed as unknown. Try again later."
                .into(),
        );
    }
    if web.offline() {
        notes.push(format!(
            "This server works offline ({} is set), so GitHub wasn't asked; only local \
             information is shown.",
            crate::config::ENV_OFFLINE
        ));
    }
    let errors = problems
        .iter()
        .map(|p| SourceProblem {
            source: p.site().key().into(),
            kind: p.kind().into(),
            message: p.user_message(),
        })
        .collect();
    let message = summary(
        packs.len(),
        checked,
        up_to_date,
        has_updates,
        unknown,
        skipped.len(),
    );
    if !include_up_to_date {
        checked_packs.retain(|p| p.status != PackStatus::UpToDate);
    }
    Ok(NodeUpdates {
        checked,
        up_to_date,
        has_updates,
        unknown,
        packs: checked_packs,
        skipped,
        errors,
        notes,
        message,
    })
}

fn summary(
    total: usize,
    checked: usize,
    up_to_date: usize,
    has_updates: usize,
    unknown: usize,
    skipped: usize,
) -> String {
    if total == 0 {
        return "No custom-node packs were found.".into();
    }
    let mut text = format!(
        "{checked} of {total} pack(s) compared with GitHub: {has_updates} with updates, \
         {up_to_date} up to date."
    );
    if unknown > 0 {
        text.push_str(&format!(
            " {unknown} couldn't be checked (see each pack's message)."
        ));
    }
    if skipped > 0 {
        text.push_str(&format!(
            " {skipped} skipped (not git checkouts of GitHub repositories)."
        ));
    }
    text
}

async fn check_pack(web: &Web, run: Arc<Run>, pack: PackFolder) -> Outcome {
    let path_text = pack.path.display().to_string();
    let read_path = pack.path.clone();
    let base = run.base_dir.clone();
    let state = tokio::task::spawn_blocking(move || git::read_state(&read_path, Some(&base)))
        .await
        .unwrap_or_else(|e| Err(GitError::Unreadable(e.to_string())));
    let mut report = PackUpdate {
        name: pack.name.clone(),
        path: path_text.clone(),
        status: PackStatus::Unknown,
        repo: None,
        branch: None,
        local_head: None,
        tags_at_head: Vec::new(),
        last_fetched: None,
        default_branch: None,
        behind_by: None,
        ahead_by: None,
        latest_release: None,
        at_latest_release: None,
        message: String::new(),
        update_command: None,
    };
    let state = match state {
        Ok(state) => state,
        Err(GitError::NotACheckout) => {
            return Outcome::Skipped(SkippedPack {
                name: pack.name,
                path: path_text,
                status: PackStatus::NotAGitCheckout,
                reason: "It isn't a git checkout (installed from a zip or the registry), so its \
                         version can't be compared here."
                    .into(),
            });
        }
        Err(error) => {
            report.message = format!("It couldn't be checked: {error}.");
            return Outcome::Checked(Box::new(report));
        }
    };
    let Some(url) = state.origin_url.clone() else {
        return Outcome::Skipped(SkippedPack {
            name: pack.name,
            path: path_text,
            status: PackStatus::NotOnGithub,
            reason: "Its git checkout has no origin remote, so there is nothing to compare with."
                .into(),
        });
    };
    let Some(repo) = git::github_repo(&url) else {
        return Outcome::Skipped(SkippedPack {
            name: pack.name,
            path: path_text,
            status: PackStatus::NotOnGithub,
            reason: format!(
                "Its origin ({url}) isn't a GitHub repository, so it can't be checked here."
            ),
        });
    };
    report.repo = Some(repo.clone());
    report.branch = state.branch.clone();
    report.local_head = state.head.clone();
    report.tags_at_head = state.tags_at_head.clone();
    report.last_fetched = state.upstream.as_ref().map(|(_, sha)| sha.clone());
    let Some(head) = state.head.clone() else {
        report.message = "No commit is checked out (the branch has no commits), so there is \
                          nothing to compare."
            .into();
        return Outcome::Checked(Box::new(report));
    };
    if run.web_stop.load(Ordering::SeqCst) {
        report.message = "Not asked: GitHub's rate limit was reached earlier in this check.".into();
        return Outcome::Checked(Box::new(report));
    }
    match compare_with_github(web, &run, &repo, &head, &state, &mut report).await {
        Ok(()) => {}
        Err(error) => {
            run.record(&error);
            report.status = PackStatus::Unknown;
            report.message = match &error {
                WebError::NotFound { .. } => format!(
                    "GitHub has no repository {repo} (renamed, deleted or private; for a private \
                     one set GITHUB_TOKEN)."
                ),
                other => format!("It couldn't be checked: {other}."),
            };
        }
    }
    Outcome::Checked(Box::new(report))
}

/// The GitHub side: default branch, comparison, and (when not up to date) the newest release.
async fn compare_with_github(
    web: &Web,
    run: &Run,
    repo: &str,
    head: &str,
    state: &GitState,
    report: &mut PackUpdate,
) -> Result<(), WebError> {
    let mut asked_repo = false;
    let mut branch = match state.origin_default_branch.clone() {
        Some(branch) if valid_branch(&branch) => branch,
        _ => {
            asked_repo = true;
            default_branch(web, repo).await?
        }
    };
    let compare = match compare(web, repo, head, &branch).await {
        Err(WebError::NotFound { .. }) if !asked_repo => {
            // The locally recorded default branch may be stale, or the repository gone.
            let current = default_branch(web, repo).await?;
            if current == branch {
                None
            } else {
                branch = current;
                match compare(web, repo, head, &branch).await {
                    Err(WebError::NotFound { .. }) => None,
                    other => Some(other?),
                }
            }
        }
        Err(WebError::NotFound { .. }) => None,
        other => Some(other?),
    };
    report.default_branch = Some(branch.clone());
    let Some(compare) = compare else {
        report.status = PackStatus::Unknown;
        report.message = format!(
            "GitHub doesn't know the checked-out commit {} of {repo} (local commits that were \
             never pushed, or a fork's history), so it can't say how far apart they are.",
            short_sha(head)
        );
        return Ok(());
    };
    let status = compare.get("status").and_then(Value::as_str).unwrap_or("");
    let remote_ahead = compare.get("ahead_by").and_then(Value::as_u64);
    let remote_behind = compare.get("behind_by").and_then(Value::as_u64);
    let (status, behind_by, ahead_by) = match status {
        "identical" => (PackStatus::UpToDate, Some(0), Some(0)),
        "ahead" => (PackStatus::Behind, remote_ahead, Some(0)),
        "behind" => (PackStatus::Ahead, Some(0), remote_behind),
        "diverged" => (PackStatus::Diverged, remote_ahead, remote_behind),
        _ => {
            return Err(WebError::Malformed {
                site: Source::GitHub,
                detail: "the comparison has no known status".into(),
            });
        }
    };
    report.status = status;
    report.behind_by = behind_by;
    report.ahead_by = ahead_by;
    if status != PackStatus::UpToDate && !run.web_stop.load(Ordering::SeqCst) {
        match latest_release(web, repo).await {
            Ok(release) => {
                report.at_latest_release = release
                    .as_ref()
                    .map(|r| state.tags_at_head.contains(&r.tag));
                report.latest_release = release;
            }
            // The comparison stands; only the release is missing.
            Err(error) => run.record(&error),
        }
    }
    report.message = status_message(report, &branch);
    report.update_command = update_command(report, &branch);
    Ok(())
}

async fn default_branch(web: &Web, repo: &str) -> Result<String, WebError> {
    let answer = web
        .get_json(Source::GitHub, &format!("repos/{repo}"), &[])
        .await?;
    answer
        .body
        .get("default_branch")
        .and_then(Value::as_str)
        .filter(|b| valid_branch(b))
        .map(str::to_string)
        .ok_or_else(|| WebError::Malformed {
            site: Source::GitHub,
            detail: "the repository has no default_branch".into(),
        })
}

async fn compare(web: &Web, repo: &str, head: &str, branch: &str) -> Result<Value, WebError> {
    let answer = web
        .get_json(
            Source::GitHub,
            &format!("repos/{repo}/compare/{head}...{branch}"),
            &[("per_page", "1".into())],
        )
        .await?;
    if !answer.body.is_object() {
        return Err(WebError::Malformed {
            site: Source::GitHub,
            detail: "the comparison isn't an object".into(),
        });
    }
    Ok((*answer.body).clone())
}

async fn latest_release(web: &Web, repo: &str) -> Result<Option<LatestRelease>, WebError> {
    let answer = match web
        .get_json(
            Source::GitHub,
            &format!("repos/{repo}/releases/latest"),
            &[],
        )
        .await
    {
        Ok(answer) => answer,
        Err(WebError::NotFound { .. }) => return Ok(None),
        Err(other) => return Err(other),
    };
    Ok(release_info(&answer.body).map(|r| LatestRelease {
        tag: r.tag,
        name: r.name,
        published: r.published,
        url: r.url,
    }))
}

/// A branch name safe in a request path.
fn valid_branch(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 250
        && name.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'+'))
        })
}

fn short_sha(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

fn status_message(report: &PackUpdate, branch: &str) -> String {
    let on = match &report.branch {
        Some(local) if local != branch => format!(" (the pack is on branch {local})"),
        Some(_) => String::new(),
        None => match report.tags_at_head.first() {
            Some(tag) => format!(" (the pack is at tag {tag}, not on a branch)"),
            None => " (the pack is on a detached commit)".into(),
        },
    };
    let release = match (&report.latest_release, report.at_latest_release) {
        (Some(r), Some(true)) => format!(" It is at the newest release, {}.", r.tag),
        (Some(r), _) => format!(" The newest release is {}.", r.tag),
        (None, _) => String::new(),
    };
    let n = |v: Option<u64>| v.map_or_else(|| "some".to_string(), |n| n.to_string());
    match report.status {
        PackStatus::UpToDate => format!("Up to date with {branch}{on}."),
        PackStatus::Behind => format!(
            "{} new commit(s) on {branch} since the checked-out one{on}.{release}",
            n(report.behind_by)
        ),
        PackStatus::Ahead => format!(
            "{} local commit(s) not on {branch}, and nothing new there{on}.{release}",
            n(report.ahead_by)
        ),
        PackStatus::Diverged => format!(
            "{} new commit(s) on {branch} and {} local commit(s) not on it{on}: updating needs a \
             merge or rebase.{release}",
            n(report.behind_by),
            n(report.ahead_by)
        ),
        _ => String::new(),
    }
}

/// The command a user could run to update: `git pull` on the default branch, or a checkout of
/// the newest release for a pack pinned at an older tag. Only for packs that are behind.
fn update_command(report: &PackUpdate, branch: &str) -> Option<String> {
    if report.status != PackStatus::Behind {
        return None;
    }
    let dir = shell_quote(&report.path);
    match (&report.branch, &report.latest_release) {
        (Some(local), _) if local == branch => Some(format!("git -C {dir} pull")),
        (None, Some(release))
            if !report.tags_at_head.is_empty() && report.at_latest_release == Some(false) =>
        {
            Some(format!(
                "git -C {dir} fetch --tags && git -C {dir} checkout {}",
                shell_quote(&format!("tags/{}", release.tag))
            ))
        }
        _ => Some(format!(
            "git -C {dir} checkout {} && git -C {dir} pull",
            shell_quote(branch)
        )),
    }
}

/// `text` as one POSIX shell word.
fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'-' | b'_' | b':'));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_names_are_normalised_or_refused() {
        for (raw, want) in [
            ("comfyanonymous/ComfyUI", "comfyanonymous/ComfyUI"),
            (" ltdrdata/ComfyUI-Manager.git ", "ltdrdata/ComfyUI-Manager"),
            (
                "https://github.com/ltdrdata/ComfyUI-Manager",
                "ltdrdata/ComfyUI-Manager",
            ),
            (
                "https://github.com/ltdrdata/ComfyUI-Manager/releases/tag/v1",
                "ltdrdata/ComfyUI-Manager",
            ),
            ("github.com/a/b", "a/b"),
            ("git@github.com:a/b.git", "a/b"),
        ] {
            assert_eq!(normalise_repo(raw).expect(raw), want);
        }
        for raw in [
            "",
            "ComfyUI",
            "a/b/c",
            "../x",
            "a/..",
            "a b/c",
            "https://gitlab.com/a/b",
            "a/b?x=1",
            "owner/name%2F..",
        ] {
            let error = normalise_repo(raw).expect_err(raw);
            assert!(error.user_message().contains("owner/name"), "{raw}");
        }
    }

    #[test]
    fn releases_are_summarised() {
        let long = "x".repeat(400);
        let release = release_info(&serde_json::json!({
            "tag_name": "v1.2", "name": "", "published_at": "2024-05-01T12:00:00Z",
            "body": long, "html_url": "https://github.com/a/b/releases/tag/v1.2",
            "prerelease": true, "draft": false
        }))
        .expect("release");
        assert_eq!(release.name, "v1.2");
        assert_eq!(release.published.as_deref(), Some("2024-05-01"));
        assert_eq!(release.body_preview.chars().count(), 301);
        assert!(release.body_preview.ends_with('…'));
        assert!(release.prerelease);
        assert!(release_info(&serde_json::json!({"name": "no tag"})).is_none());
        assert_eq!(date_part("garbage-date"), None);
        assert_eq!(preview("short"), "short");
    }

    #[test]
    fn shell_words_are_quoted() {
        assert_eq!(shell_quote("/a/b-c"), "/a/b-c");
        assert_eq!(shell_quote("/a b/it's"), "'/a b/it'\\''s'");
        assert_eq!(shell_quote("$(rm -rf ~)"), "'$(rm -rf ~)'");
    }

    #[test]
    fn branch_names_for_paths() {
        assert!(valid_branch("main"));
        assert!(valid_branch("release/1.x"));
        assert!(!valid_branch("../x"));
        assert!(!valid_branch("a?b"));
        assert!(!valid_branch(""));
    }

    #[test]
    fn update_checks_cover_folder_packs_enabled_or_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in [
            "b_pack",
            "A_pack",
            "c_pack.disabled",
            ".hidden",
            "__pycache__",
        ] {
            std::fs::create_dir_all(dir.path().join(name)).expect("mkdir");
            std::fs::write(dir.path().join(name).join("__init__.py"), "").expect("write");
        }
        std::fs::write(dir.path().join("single.py"), "").expect("write");
        let list = crate::install::nodes::list_packs(&[dir.path().to_path_buf()]);
        let names: Vec<String> = pack_folders(list).into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["A_pack", "b_pack", "c_pack.disabled"]);
    }
}
