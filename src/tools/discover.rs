//! Discovery tools: `discover`, `find_missing_nodes`, `get_install_instructions` and
//! `check_registry_freshness` (§1.6 of the catalogue). Sources: ComfyUI-Manager's lists when
//! present, the Comfy registry for node packs, CivitAI and Hugging Face for models. A source
//! that fails (or is skipped offline) is named in `errors`; the others' findings still count.
//! Instructions are text only: nothing is ever installed or run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::civitai::{self, CivitaiSummary};
use crate::catalog::huggingface;
use crate::catalog::installed::{InstalledModels, InstalledPacks};
use crate::catalog::manager::{ManagerData, ManagerFile, folder_for_type, repo_name};
use crate::catalog::nodes::node_classes;
use crate::catalog::rank::{self, Hit};
use crate::catalog::registry::{self, RegistryPack};
use crate::catalog::shell::{is_plain_id, python_command, safe_url, shell_path, shell_word};
use crate::comfy::discovery::{Host, Install, model_folders};
use crate::error::ToolError;
use crate::mcp::ToolContext;
use crate::registry::{Hints, ToolSpec, tool};
use crate::web::{Source, WebError};

/// Workflow files larger than this are refused rather than read.
const MAX_WORKFLOW_BYTES: u64 = 32 * 1024 * 1024;
/// Registry look-ups one `find_missing_nodes` call may make (the rest are listed as unchecked).
/// Twelve fit the registry's rate limit (burst 5, then 2 a second) without waiting long.
const MAX_CLASS_LOOKUPS: usize = 12;
/// Descriptions in results are cut to this many characters.
const DESCRIPTION_CHARS: usize = 200;
/// Manager files older than this are `stale`, and older than the second `very_stale`.
const STALE_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);
const VERY_STALE_AFTER: Duration = Duration::from_secs(30 * 24 * 3600);

pub fn tools() -> Vec<ToolSpec> {
    vec![
        tool(
            "discover",
            "Discover nodes and models",
            "Search for custom node packs and models in one call: ComfyUI-Manager's lists, the \
             Comfy registry, CivitAI and Hugging Face. Results are de-duplicated (the best score \
             wins; other sources are listed in also_found_on) and ranked: installed first, then \
             core, partner and community packs, then relevance. A source that fails or is \
             skipped is named in `errors`; the others' results still come back.",
            Hints::LIVE_READ,
            discover,
        ),
        tool(
            "find_missing_nodes",
            "Find missing nodes",
            "List the node types a workflow (API or UI format: a file, inline JSON, or the loaded \
             workflow) uses that this ComfyUI doesn't have, and the pack that provides each, \
             grouped into packs_to_install. When ComfyUI is down it still says which packs the \
             workflow needs and which of those have a folder, and says that installed nodes \
             couldn't be checked.",
            Hints::LIVE_READ,
            find_missing_nodes,
        ),
        tool(
            "get_install_instructions",
            "Install instructions",
            "Step-by-step instructions to install a node pack (by node type, pack name, registry \
             id or repository) or a model (CivitAI id or name, Hugging Face repo): the commands \
             to type, the exact folder to save into, and the ComfyUI-Manager and comfy-cli ways. \
             Text only: nothing is installed or run.",
            Hints::LIVE_READ,
            get_install_instructions,
        ),
        tool(
            "check_registry_freshness",
            "Check registry freshness",
            "How old ComfyUI-Manager's node and model lists are (fresh, stale after 7 days, very \
             stale after 30), which web sources are set up (address, key set or not, offline), \
             what is cached, and a count of model files by folder. refresh=true forgets every \
             cached list and web answer so the next search reads them again.",
            Hints::LOCAL_READ,
            check_registry_freshness,
        ),
    ]
}

/// A source that failed or was skipped, with the reason in plain words.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SourceProblem {
    /// `comfy_registry`, `civitai`, `huggingface`, `registry_nodes`, `comfyui`, …
    pub source: String,
    /// A stable name for the failure (`web_offline`, `web_timeout`, `web_rate_limited`, …).
    pub kind: String,
    pub message: String,
}

impl From<&WebError> for SourceProblem {
    fn from(error: &WebError) -> Self {
        Self {
            source: error.site().key().to_string(),
            kind: error.kind().to_string(),
            message: error.user_message(),
        }
    }
}

async fn blocking<T: Send + 'static>(
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ToolError> {
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|e| ToolError::Internal(format!("a background look at the disk failed: {e}")))
}

fn install_owned(cx: &ToolContext) -> Option<Install> {
    cx.app.install().cloned()
}

// ---------------------------------------------------------------------------------------------
// discover

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Nodes,
    Models,
    #[default]
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SourceName {
    /// ComfyUI-Manager's lists and the Comfy registry.
    Registry,
    Civitai,
    Huggingface,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    #[default]
    MostDownloaded,
    HighestRated,
    Newest,
}

impl Sort {
    fn key(self) -> &'static str {
        match self {
            Self::MostDownloaded => "most_downloaded",
            Self::HighestRated => "highest_rated",
            Self::Newest => "newest",
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscoverParams {
    /// What to look for: a pack, node type, model name or topic, e.g. `face detailer`.
    #[schemars(length(min = 1, max = 200))]
    pub query: String,
    /// `nodes`, `models` or `all` (default).
    #[serde(default)]
    pub category: Option<Category>,
    /// Which sources to ask. Default: `registry` always, plus `civitai` and `huggingface` for
    /// models.
    #[serde(default)]
    #[schemars(length(max = 3))]
    pub sources: Option<Vec<SourceName>>,
    /// Model type filter, e.g. `checkpoint`, `lora`, `controlnet`, `vae`, `upscaler`.
    #[serde(default)]
    #[schemars(length(max = 50))]
    pub model_type: Option<String>,
    /// Base model filter (CivitAI and the Manager's model list), e.g. `sdxl`, `flux`, `sd15`.
    #[serde(default)]
    #[schemars(length(max = 50))]
    pub base_model: Option<String>,
    /// CivitAI's order: `most_downloaded` (default), `highest_rated` or `newest`.
    #[serde(default)]
    pub sort: Option<Sort>,
    /// Results per source (default 5, at most 20).
    #[serde(default)]
    #[schemars(range(min = 1, max = 100))]
    pub max_results: Option<u32>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DiscoverReport {
    pub query: String,
    pub category: Category,
    pub results: Vec<Hit>,
    /// The sources that answered: `registry_nodes`, `registry_models` (ComfyUI-Manager's
    /// lists), `comfy_registry`, `civitai`, `huggingface`; sorted.
    pub sources_searched: Vec<String>,
    pub total: usize,
    /// Sources that failed or were skipped; the results above come from the others.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<SourceProblem>,
    /// What to know about these results (no Manager lists, nothing found, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

async fn discover(cx: ToolContext, params: DiscoverParams) -> Result<DiscoverReport, ToolError> {
    let query = params.query.trim().to_string();
    if query.is_empty() {
        return Err(ToolError::rejected(
            "The query is empty.",
            "Say what to look for, e.g. `face detailer` or `sdxl vae`.",
        ));
    }
    let category = params.category.unwrap_or_default();
    let wants_nodes = category != Category::Models;
    let wants_models = category != Category::Nodes;
    let limit = params.max_results.unwrap_or(5).clamp(1, 20) as usize;
    let chosen: Vec<SourceName> = params.sources.clone().unwrap_or_else(|| {
        let mut all = vec![SourceName::Registry];
        if wants_models {
            all.extend([SourceName::Civitai, SourceName::Huggingface]);
        }
        all
    });
    let use_registry = chosen.contains(&SourceName::Registry);
    let use_civitai = wants_models && chosen.contains(&SourceName::Civitai);
    let use_hf = wants_models && chosen.contains(&SourceName::Huggingface);

    let install = install_owned(&cx);
    let app = cx.app.clone();
    let (manager, packs, models) = {
        let install = install.clone();
        blocking(move || {
            let manager = app.catalog().manager(install.as_ref());
            let packs = InstalledPacks::of(app.install_index());
            let models = InstalledModels::of(app.install_index());
            (manager, packs, models)
        })
        .await?
    };

    let mut hits: Vec<Hit> = Vec::new();
    let mut searched: Vec<String> = Vec::new();
    let mut errors: Vec<SourceProblem> = Vec::new();
    let mut notes: Vec<String> = Vec::new();

    if use_registry {
        if manager.any_file() {
            if wants_nodes && (!manager.packs.is_empty() || !manager.node_map.is_empty()) {
                hits.extend(manager_pack_hits(&manager, &query, &packs, limit));
                searched.push("registry_nodes".into());
            }
            if wants_models && !manager.models.is_empty() {
                hits.extend(manager_model_hits(
                    &manager, &query, &params, &models, limit,
                ));
                searched.push("registry_models".into());
            }
            for note in &manager.notes {
                errors.push(SourceProblem {
                    source: "registry_nodes".into(),
                    kind: "manager_file_unreadable".into(),
                    message: note.clone(),
                });
            }
        } else {
            notes.push(
                "ComfyUI-Manager's lists were not found in this ComfyUI folder, so only online \
                 sources were searched. Install ComfyUI-Manager (or open it once) to search its \
                 lists offline."
                    .into(),
            );
        }
    }

    let web = cx.app.web();
    let registry_search = async {
        if use_registry && wants_nodes {
            Some(registry::search(web, &query, limit).await)
        } else {
            None
        }
    };
    let civitai_search = async {
        if use_civitai {
            let request = civitai::SearchRequest {
                query: Some(query.clone()),
                model_type: params.model_type.clone(),
                base_model: params.base_model.clone(),
                sort: params.sort.unwrap_or_default().key().to_string(),
                period: "AllTime".into(),
                limit,
            };
            Some(civitai::search(web, &request).await)
        } else {
            None
        }
    };
    let hf_search = async {
        if use_hf {
            let filter = params.model_type.as_deref().and_then(hf_filter);
            Some(huggingface::search(web, &query, limit, filter).await)
        } else {
            None
        }
    };
    let (from_registry, from_civitai, from_hf) =
        futures::join!(registry_search, civitai_search, hf_search);

    match from_registry {
        Some(Ok(found)) => {
            searched.push(Source::Registry.key().into());
            hits.extend(found.iter().map(|pack| registry_hit(pack, &query, &packs)));
        }
        Some(Err(error)) => errors.push((&error).into()),
        None => {}
    }
    match from_civitai {
        Some(Ok(found)) => {
            searched.push(Source::CivitAi.key().into());
            hits.extend(found.iter().map(|model| civitai_hit(model, &models)));
        }
        Some(Err(error)) => errors.push((&error).into()),
        None => {}
    }
    match from_hf {
        Some(Ok(found)) => {
            searched.push(Source::HuggingFace.key().into());
            hits.extend(found.iter().map(|model| Hit {
                name: model.id.clone(),
                kind: "model".into(),
                source: Source::HuggingFace.key().into(),
                source_tier: "community".into(),
                relevance_score: rank::download_score(model.downloads),
                installed: false,
                url: model.page_url(),
                id: Some(model.id.clone()),
                author: model.author.clone(),
                description: model.pipeline_tag.clone(),
                model_type: model.library.clone(),
                downloads: Some(model.downloads),
                ..Hit::default()
            }));
        }
        Some(Err(error)) => errors.push((&error).into()),
        None => {}
    }

    let results = rank::dedup_and_rank(hits);
    searched.sort();
    searched.dedup();
    if results.is_empty() {
        notes.push(if errors.is_empty() {
            "Nothing matched. Try fewer or other words, or another category.".into()
        } else {
            "Nothing matched in the sources that answered; see `errors` for the ones that \
             didn't."
                .into()
        });
    }
    Ok(DiscoverReport {
        query,
        category,
        total: results.len(),
        results,
        sources_searched: searched,
        errors,
        note: (!notes.is_empty()).then(|| notes.join(" ")),
    })
}

/// Hugging Face tags for the model types that have one.
fn hf_filter(model_type: &str) -> Option<&'static str> {
    match model_type.trim().to_lowercase().as_str() {
        "lora" => Some("lora"),
        "controlnet" => Some("controlnet"),
        _ => None,
    }
}

fn short(text: Option<&str>) -> Option<String> {
    text.map(|t| civitai::cap(t, DESCRIPTION_CHARS))
}

/// Manager packs matching the query by name, description, author, URL or one of their node
/// types (exact or partial).
fn manager_pack_hits(
    manager: &ManagerData,
    query: &str,
    installed: &InstalledPacks,
    limit: usize,
) -> Vec<Hit> {
    let lower = query.to_lowercase();
    let mut by_url: BTreeMap<String, (f64, String)> = BTreeMap::new();
    for (class, pack) in &manager.node_map {
        let class_lower = class.to_lowercase();
        let score = if class_lower == lower {
            1.0
        } else if class_lower.contains(&lower) {
            0.8
        } else {
            continue;
        };
        let entry = by_url
            .entry(pack.url.clone())
            .or_insert((0.0, pack.title.clone()));
        entry.0 = f64::max(entry.0, score);
    }
    for pack in &manager.packs {
        let others = [
            pack.description.as_deref().unwrap_or(""),
            pack.author.as_deref().unwrap_or(""),
            pack.url.as_str(),
            pack.id.as_deref().unwrap_or(""),
        ];
        let score = rank::text_score(query, &pack.title, &others);
        if score > 0.0 {
            let entry = by_url
                .entry(pack.url.clone())
                .or_insert((0.0, pack.title.clone()));
            entry.0 = f64::max(entry.0, score);
        }
    }
    let mut hits: Vec<Hit> = by_url
        .into_iter()
        .map(|(url, (score, mapped_title))| {
            let pack = manager.pack_by_url(&url);
            let name = pack.map_or(mapped_title, |p| p.title.clone());
            let id = pack.and_then(|p| p.id.clone());
            Hit {
                installed: installed.contains(Some(&url), Some(&name), id.as_deref()),
                source_tier: rank::tier(&url, &name).into(),
                kind: "node_pack".into(),
                source: "registry_nodes".into(),
                relevance_score: rank::round3(score),
                author: pack.and_then(|p| p.author.clone()),
                description: short(pack.and_then(|p| p.description.as_deref())),
                id,
                name,
                url,
                ..Hit::default()
            }
        })
        .collect();
    hits.sort_by(|a, b| b.relevance_score.total_cmp(&a.relevance_score));
    hits.truncate(limit);
    hits
}

fn manager_model_hits(
    manager: &ManagerData,
    query: &str,
    params: &DiscoverParams,
    installed: &InstalledModels,
    limit: usize,
) -> Vec<Hit> {
    let wanted_folder = params.model_type.as_deref().map(folder_for_type);
    let base = params
        .base_model
        .as_deref()
        .map(|b| b.trim().to_lowercase().replace(['.', ' ', '_'], ""));
    let mut hits: Vec<Hit> = manager
        .models
        .iter()
        .filter(|m| wanted_folder.is_none_or(|f| m.folder().starts_with(f)))
        .filter(|m| {
            base.as_deref().is_none_or(|b| {
                m.base
                    .as_deref()
                    .is_some_and(|mb| mb.to_lowercase().replace(['.', ' ', '_'], "").contains(b))
            })
        })
        .filter_map(|m| {
            let others = [
                m.filename.as_str(),
                m.description.as_deref().unwrap_or(""),
                m.base.as_deref().unwrap_or(""),
                m.model_type.as_str(),
            ];
            let score = rank::text_score(query, &m.name, &others);
            (score > 0.0).then(|| Hit {
                name: m.name.clone(),
                kind: "model".into(),
                source: "registry_models".into(),
                source_tier: "community".into(),
                relevance_score: score,
                installed: installed.contains(&m.filename),
                url: m.reference.clone().unwrap_or_else(|| m.url.clone()),
                description: short(m.description.as_deref()),
                base_model: m.base.clone(),
                model_type: Some(m.model_type.clone()),
                filename: Some(m.filename.clone()),
                ..Hit::default()
            })
        })
        .collect();
    hits.sort_by(|a, b| b.relevance_score.total_cmp(&a.relevance_score));
    hits.truncate(limit);
    hits
}

fn registry_hit(pack: &RegistryPack, query: &str, installed: &InstalledPacks) -> Hit {
    let others = [
        pack.description.as_deref().unwrap_or(""),
        pack.author.as_deref().unwrap_or(""),
        pack.id.as_str(),
    ];
    // The registry found it, so it matches somehow; keep it above zero.
    let score = rank::text_score(query, &pack.name, &others).max(0.1);
    let url = pack
        .repository
        .clone()
        .unwrap_or_else(|| format!("https://registry.comfy.org/nodes/{}", pack.id));
    Hit {
        installed: installed.contains(pack.repository.as_deref(), Some(&pack.name), Some(&pack.id)),
        source_tier: rank::tier(&url, &pack.name).into(),
        name: pack.name.clone(),
        kind: "node_pack".into(),
        source: Source::Registry.key().into(),
        relevance_score: score,
        url,
        id: Some(pack.id.clone()),
        author: pack.author.clone(),
        description: short(pack.description.as_deref()),
        downloads: pack.downloads,
        rating: pack.rating,
        ..Hit::default()
    }
}

fn civitai_hit(model: &CivitaiSummary, installed: &InstalledModels) -> Hit {
    let latest = model.versions.first();
    let file = latest.and_then(|v| v.files.iter().find(|f| f.primary).or(v.files.first()));
    Hit {
        name: model.name.clone(),
        kind: "model".into(),
        source: Source::CivitAi.key().into(),
        source_tier: "community".into(),
        relevance_score: rank::download_score(model.downloads),
        installed: file.is_some_and(|f| installed.contains(&f.name)),
        url: model.page_url(),
        id: Some(model.id.to_string()),
        author: model.creator.clone(),
        description: model
            .description
            .as_deref()
            .map(|d| civitai::strip_html(d, DESCRIPTION_CHARS)),
        base_model: latest.and_then(|v| v.base_model.clone()),
        model_type: model.model_type.clone(),
        downloads: Some(model.downloads),
        rating: model.rating,
        filename: file.map(|f| f.name.clone()),
        ..Hit::default()
    }
}

// ---------------------------------------------------------------------------------------------
// find_missing_nodes

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FindMissingNodesParams {
    /// A workflow file (API or UI format). Without it (and without `workflow`), the loaded
    /// workflow is checked.
    #[serde(default)]
    pub path: Option<String>,
    /// The workflow JSON itself, for clients that don't share the server's files.
    #[serde(default)]
    pub workflow: Option<Value>,
    /// A named session whose loaded workflow to check.
    #[serde(default)]
    pub session: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct MissingNode {
    pub node_type: String,
    /// The pack that provides it; null when no list knows it.
    pub pack_title: Option<String>,
    pub pack_url: Option<String>,
    /// The Comfy registry id of the pack, when known (`comfy node install <id>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pack_id: Option<String>,
    /// Whether the pack has a folder in custom_nodes (it may be failing to load).
    pub pack_installed: bool,
    /// Which list named the pack: `registry_nodes` (ComfyUI-Manager) or `comfy_registry`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found_in: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct PackToInstall {
    pub title: String,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub installed: bool,
    pub missing_nodes: Vec<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct MissingNodesReport {
    /// `all_installed`, `missing_nodes`, or `installed_state_unknown` (ComfyUI is down).
    pub status: String,
    pub comfyui_running: bool,
    pub total_node_types: usize,
    /// Null when ComfyUI couldn't be asked.
    pub installed_count: Option<usize>,
    pub missing_count: Option<usize>,
    /// Node types not installed (when ComfyUI is down: those a custom pack provides).
    pub missing_nodes: Vec<MissingNode>,
    pub packs_to_install: Vec<PackToInstall>,
    /// Types no list could place (built into ComfyUI when it is down, else truly unknown).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unresolved_node_types: Vec<String>,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub install_hint: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<SourceProblem>,
}

async fn find_missing_nodes(
    cx: ToolContext,
    params: FindMissingNodesParams,
) -> Result<MissingNodesReport, ToolError> {
    let classes = workflow_classes(&cx, &params).await?;
    if classes.is_empty() {
        return Err(ToolError::rejected(
            "No nodes found in workflow.",
            "Check that the file is a ComfyUI workflow (Save or Export (API)).",
        ));
    }
    let mut errors: Vec<SourceProblem> = Vec::new();
    let client = cx.app.comfy().client().await;
    let live = match client.nodes(false).await {
        Ok(index) => Some(index),
        Err(error) => {
            errors.push(SourceProblem {
                source: "comfyui".into(),
                kind: error.kind().to_string(),
                message: error.user_message(),
            });
            None
        }
    };
    let (to_place, installed_count): (Vec<String>, Option<usize>) = match &live {
        Some(index) => {
            let missing: Vec<String> = classes
                .iter()
                .filter(|c| index.get(c).is_none())
                .cloned()
                .collect();
            (missing.clone(), Some(classes.len() - missing.len()))
        }
        None => (classes.clone(), None),
    };
    if live.is_some() && to_place.is_empty() {
        return Ok(MissingNodesReport {
            status: "all_installed".into(),
            comfyui_running: true,
            total_node_types: classes.len(),
            installed_count,
            missing_count: Some(0),
            missing_nodes: Vec::new(),
            packs_to_install: Vec::new(),
            unresolved_node_types: Vec::new(),
            message: format!(
                "All {} node types this workflow uses are installed.",
                classes.len()
            ),
            install_hint: None,
            errors,
        });
    }

    let install = install_owned(&cx);
    let app = cx.app.clone();
    let (manager, packs) = {
        let install = install.clone();
        blocking(move || {
            (
                app.catalog().manager(install.as_ref()),
                InstalledPacks::of(app.install_index()),
            )
        })
        .await?
    };

    // Manager's map first, the registry for the rest (a bounded number of look-ups).
    let mut placed: Vec<(String, Option<Placement>)> = Vec::new();
    let mut ask_registry: Vec<String> = Vec::new();
    for class in &to_place {
        match manager.pack_for_class(class) {
            Some(pack) => placed.push((
                class.clone(),
                Some(Placement {
                    title: pack.title.clone(),
                    url: pack.url.clone(),
                    id: manager.pack_by_url(&pack.url).and_then(|p| p.id.clone()),
                    found_in: "registry_nodes",
                }),
            )),
            None => ask_registry.push(class.clone()),
        }
    }
    let mut unchecked: Vec<String> = Vec::new();
    if ask_registry.len() > MAX_CLASS_LOOKUPS {
        unchecked = ask_registry.split_off(MAX_CLASS_LOOKUPS);
    }
    let web = cx.app.web();
    let lookups = futures::future::join_all(
        ask_registry
            .iter()
            .map(|class| registry::pack_for_class(web, class)),
    )
    .await;
    let mut registry_failed = false;
    let mut not_looked_up: std::collections::HashSet<String> = std::collections::HashSet::new();
    for (class, answer) in ask_registry.into_iter().zip(lookups) {
        match answer {
            Ok(Some(pack)) if !is_core_pack(&pack) => placed.push((
                class,
                Some(Placement {
                    title: pack.name.clone(),
                    url: pack
                        .repository
                        .clone()
                        .unwrap_or_else(|| format!("https://registry.comfy.org/nodes/{}", pack.id)),
                    id: Some(pack.id.clone()),
                    found_in: "comfy_registry",
                }),
            )),
            Ok(_) => placed.push((class, None)),
            Err(error) => {
                if !registry_failed {
                    errors.push((&error).into());
                    registry_failed = true;
                }
                not_looked_up.insert(class.clone());
                placed.push((class, None));
            }
        }
    }

    let mut missing_nodes: Vec<MissingNode> = Vec::new();
    let mut groups: BTreeMap<String, PackToInstall> = BTreeMap::new();
    let mut unresolved: Vec<String> = Vec::new();
    for (class, placement) in placed {
        match placement {
            Some(p) => {
                let installed = packs.contains(Some(&p.url), Some(&p.title), p.id.as_deref());
                let group = groups
                    .entry(p.url.clone())
                    .or_insert_with(|| PackToInstall {
                        title: p.title.clone(),
                        url: p.url.clone(),
                        id: p.id.clone(),
                        installed,
                        missing_nodes: Vec::new(),
                    });
                group.missing_nodes.push(class.clone());
                let message = (installed && live.is_some()).then(|| {
                    "The pack has a folder but ComfyUI doesn't offer this node: it may have \
                     failed to load (check ComfyUI's console) or need an update."
                        .to_string()
                });
                missing_nodes.push(MissingNode {
                    node_type: class,
                    pack_title: Some(p.title),
                    pack_url: Some(p.url),
                    pack_id: p.id,
                    pack_installed: installed,
                    found_in: Some(p.found_in.to_string()),
                    message,
                });
            }
            None if live.is_some() => {
                let message = if not_looked_up.contains(&class) {
                    "The Comfy registry couldn't be asked about this node type (see errors); \
                     try again later, or search for it with discover."
                } else {
                    "No pack list knows this node type. Search for it with discover, or check \
                     where the workflow came from."
                };
                missing_nodes.push(MissingNode {
                    node_type: class.clone(),
                    pack_title: None,
                    pack_url: None,
                    pack_id: None,
                    pack_installed: false,
                    found_in: None,
                    message: Some(message.into()),
                });
                unresolved.push(class);
            }
            None => unresolved.push(class),
        }
    }
    for class in unchecked {
        if live.is_some() {
            missing_nodes.push(MissingNode {
                node_type: class.clone(),
                pack_title: None,
                pack_url: None,
                pack_id: None,
                pack_installed: false,
                found_in: None,
                message: Some(format!(
                    "Not looked up: only {MAX_CLASS_LOOKUPS} node types are looked up online per \
                     call. Use get_install_instructions with this name."
                )),
            });
        }
        unresolved.push(class);
    }
    let packs_to_install: Vec<PackToInstall> = groups.into_values().collect();
    let to_install = packs_to_install.iter().filter(|p| !p.installed).count();
    let install_hint = (!packs_to_install.is_empty()).then(|| {
        "Install the packs with ComfyUI-Manager (Install Missing Custom Nodes), or ask \
         get_install_instructions for each pack's url; then restart ComfyUI."
            .to_string()
    });
    let report = match &live {
        Some(_) => MissingNodesReport {
            status: "missing_nodes".into(),
            comfyui_running: true,
            total_node_types: classes.len(),
            installed_count,
            missing_count: Some(missing_nodes.len()),
            message: format!(
                "{} of {} node types are missing; {} pack(s) to install.",
                missing_nodes.len(),
                classes.len(),
                to_install
            ),
            missing_nodes,
            packs_to_install,
            unresolved_node_types: unresolved,
            install_hint,
            errors,
        },
        None => MissingNodesReport {
            status: "installed_state_unknown".into(),
            comfyui_running: false,
            total_node_types: classes.len(),
            installed_count: None,
            missing_count: None,
            message: format!(
                "ComfyUI isn't reachable, so which nodes are installed couldn't be checked. \
                 From the pack lists: the workflow needs {} custom pack(s), {} of them without \
                 a folder in custom_nodes. Types no list places are probably built into \
                 ComfyUI. Start ComfyUI and call again for a definite answer.",
                packs_to_install.len(),
                to_install
            ),
            missing_nodes,
            packs_to_install,
            unresolved_node_types: unresolved,
            install_hint,
            errors,
        },
    };
    Ok(report)
}

struct Placement {
    title: String,
    url: String,
    id: Option<String>,
    found_in: &'static str,
}

/// The registry lists ComfyUI's own nodes under a core entry; those are not installable packs.
fn is_core_pack(pack: &RegistryPack) -> bool {
    pack.id == "comfy-core"
        || pack
            .repository
            .as_deref()
            .is_some_and(|r| rank::tier(r, &pack.name) == "core")
}

/// The node types a workflow uses, sorted, without frontend-only nodes.
async fn workflow_classes(
    cx: &ToolContext,
    params: &FindMissingNodesParams,
) -> Result<Vec<String>, ToolError> {
    let doc: Value = if let Some(raw) = params.path.as_deref() {
        let bytes = cx.app.paths().read_capped(raw, MAX_WORKFLOW_BYTES).await?;
        serde_json::from_slice(&bytes).map_err(|e| ToolError::BadFile {
            path: raw.into(),
            reason: format!("it is not valid JSON ({e})"),
        })?
    } else if let Some(doc) = params.workflow.clone() {
        // The file's text is accepted as well as the object.
        match doc {
            Value::String(text) => serde_json::from_str(&text).map_err(|e| {
                ToolError::rejected(
                    format!("The inline workflow is not valid JSON ({e})."),
                    "Pass the workflow JSON as ComfyUI saves it (API or UI format).",
                )
            })?,
            other => other,
        }
    } else {
        let session = cx.workspace(params.session.as_deref());
        let state = session.workflow.lock().await;
        match state.as_ref() {
            Some(state) => state.current().clone(),
            None => {
                return Err(ToolError::rejected(
                    "No workflow is loaded and none was given.",
                    "Pass a workflow file in `path` (or the JSON in `workflow`), or load one \
                     first with load_workflow.",
                ));
            }
        }
    };
    node_classes(&doc).map_err(|reason| match params.path.as_deref() {
        Some(raw) => ToolError::BadFile {
            path: raw.into(),
            reason,
        },
        None => ToolError::rejected(
            format!("The workflow can't be read: {reason}."),
            "Pass the workflow JSON as ComfyUI saves it (API or UI format).",
        ),
    })
}

// ---------------------------------------------------------------------------------------------
// get_install_instructions

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InstructionSource {
    #[default]
    Registry,
    Civitai,
    Huggingface,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallInstructionsParams {
    /// A node type, pack name, registry id or repository URL (registry); a model id or name
    /// (civitai); a repository such as `stabilityai/sdxl-vae` (huggingface).
    #[schemars(length(min = 1, max = 300))]
    pub query: String,
    /// `registry` (default: node packs and ComfyUI-Manager's model list), `civitai` or
    /// `huggingface`.
    #[serde(default)]
    pub source: Option<InstructionSource>,
    /// For models: the kind of model (`checkpoint`, `lora`, `vae`, `controlnet`, `upscaler`,
    /// `embedding`, …), which decides the folder to save into when the source doesn't say.
    #[serde(default)]
    #[schemars(length(max = 50))]
    pub model_type: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct InstallInstructions {
    pub source: InstructionSource,
    /// `node_pack` or `model`.
    #[serde(rename = "type")]
    pub kind: String,
    pub query: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pack_title: Option<String>,
    /// The Comfy registry id (`comfy node install <id>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pack_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
    /// The repository or model page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The file to download, for models.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download_url: Option<String>,
    /// The folder to save a model into, or the custom_nodes folder for a pack.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub save_to: Option<String>,
    pub installed: bool,
    /// Commands to type, in order (empty when already installed or when a name is unsafe to
    /// put in a command). Nothing has been run.
    pub install_commands: Vec<String>,
    /// Other ways (ComfyUI-Manager, comfy-cli) and what to do afterwards.
    pub steps: Vec<String>,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<SourceProblem>,
}

async fn get_install_instructions(
    cx: ToolContext,
    params: InstallInstructionsParams,
) -> Result<InstallInstructions, ToolError> {
    let query = params.query.trim().to_string();
    if query.is_empty() {
        return Err(ToolError::rejected(
            "The query is empty.",
            "Name a node type, pack, model id or repository.",
        ));
    }
    let install = install_owned(&cx);
    match params.source.unwrap_or_default() {
        InstructionSource::Registry => registry_instructions(&cx, &query, install).await,
        InstructionSource::Civitai => civitai_instructions(&cx, &query, install, &params).await,
        InstructionSource::Huggingface => hf_instructions(&cx, &query, install, &params).await,
    }
}

async fn registry_instructions(
    cx: &ToolContext,
    query: &str,
    install: Option<Install>,
) -> Result<InstallInstructions, ToolError> {
    let app = cx.app.clone();
    let (manager, packs, models) = {
        let install = install.clone();
        blocking(move || {
            (
                app.catalog().manager(install.as_ref()),
                InstalledPacks::of(app.install_index()),
                InstalledModels::of(app.install_index()),
            )
        })
        .await?
    };
    let lower = query.to_lowercase();
    // 1. an exact node type in the Manager's map
    if let Some(mapped) = manager.pack_for_class(query) {
        let id = manager.pack_by_url(&mapped.url).and_then(|p| p.id.clone());
        return Ok(pack_instructions(
            query,
            &mapped.title,
            &mapped.url,
            id,
            &packs,
            install.as_ref(),
            Vec::new(),
        ));
    }
    // 2. a pack whose title, id or URL contains the query
    if let Some(pack) = manager.packs.iter().find(|p| {
        p.title.to_lowercase().contains(&lower)
            || p.url.to_lowercase().contains(&lower)
            || p.id.as_deref().is_some_and(|id| id.to_lowercase() == lower)
    }) {
        return Ok(pack_instructions(
            query,
            &pack.title,
            &pack.url,
            pack.id.clone(),
            &packs,
            install.as_ref(),
            Vec::new(),
        ));
    }
    // 3. a model whose name contains the query
    if let Some(model) = manager
        .models
        .iter()
        .find(|m| m.name.to_lowercase().contains(&lower) || m.filename.to_lowercase() == lower)
    {
        let folder = model.folder();
        return Ok(model_instructions(
            InstructionSource::Registry,
            query,
            &model.name,
            model.reference.as_deref().unwrap_or(&model.url),
            Some(&model.url),
            &model.filename,
            &folder,
            models.contains(&model.filename),
            install.as_ref(),
            Vec::new(),
        ));
    }
    // A repository address the lists don't know: instructions straight from it.
    if (query.starts_with("https://github.com/") || query.starts_with("https://gitlab.com/"))
        && safe_url(query).is_some_and(|u| !u.starts_with('"'))
    {
        let title = repo_name(query).to_string();
        return Ok(pack_instructions(
            query,
            &title,
            query,
            None,
            &packs,
            install.as_ref(),
            Vec::new(),
        ));
    }
    // 4. online: the pack providing a node type, a pack id, then a search
    let web = cx.app.web();
    let mut errors: Vec<SourceProblem> = Vec::new();
    let mut found: Option<RegistryPack> = None;
    match registry::pack_for_class(web, query).await {
        Ok(Some(pack)) if !is_core_pack(&pack) => found = Some(pack),
        Ok(Some(pack)) => {
            return Err(ToolError::rejected(
                format!(
                    "'{query}' is built into ComfyUI ({}); there is nothing to install.",
                    pack.name
                ),
                "If ComfyUI doesn't offer it, update ComfyUI itself.",
            ));
        }
        Ok(None) => {}
        Err(error) => errors.push((&error).into()),
    }
    if found.is_none() && errors.is_empty() && is_plain_id(query) {
        match registry::pack(web, query).await {
            Ok(pack) => found = pack,
            Err(error) => errors.push((&error).into()),
        }
    }
    if found.is_none() && errors.is_empty() {
        match registry::search(web, query, 1).await {
            Ok(list) => found = list.into_iter().next(),
            Err(error) => errors.push((&error).into()),
        }
    }
    match found {
        Some(pack) => {
            let url = pack
                .repository
                .clone()
                .unwrap_or_else(|| format!("https://registry.comfy.org/nodes/{}", pack.id));
            Ok(pack_instructions(
                query,
                &pack.name,
                &url,
                Some(pack.id.clone()),
                &packs,
                install.as_ref(),
                errors,
            ))
        }
        None => {
            let mut hint = "Try discover first to find the exact name.".to_string();
            for problem in &errors {
                hint.push('\n');
                hint.push_str(&problem.message);
            }
            Err(ToolError::rejected(
                format!("Could not find '{query}' in the registry."),
                hint,
            ))
        }
    }
}

fn pack_instructions(
    query: &str,
    title: &str,
    url: &str,
    id: Option<String>,
    packs: &InstalledPacks,
    install: Option<&Install>,
    errors: Vec<SourceProblem>,
) -> InstallInstructions {
    let installed = packs.contains(Some(url), Some(title), id.as_deref());
    let custom_nodes = install.map(Install::custom_nodes_dir);
    let folder = repo_name(url);
    let mut commands: Vec<String> = Vec::new();
    let mut message;
    let is_git = url.starts_with("https://github.com/")
        || url.starts_with("https://gitlab.com/")
        || url.ends_with(".git");
    let clone_parts = (
        safe_url(url),
        shell_word(folder).filter(|f| !f.starts_with('"') && !f.starts_with('.')),
        custom_nodes
            .as_deref()
            .map_or(Some("custom_nodes".to_string()), shell_path),
    );
    if installed {
        message = format!("{title} is already installed (its folder is in custom_nodes).");
    } else if let (true, (Some(url_word), Some(folder_word), Some(dir_word))) =
        (is_git, clone_parts)
    {
        // cmd needs /d to change drive as well as folder.
        let cd = if dir_word.contains(":\\") {
            "cd /d"
        } else {
            "cd"
        };
        commands.push(format!("{cd} {dir_word}"));
        commands.push(format!("git clone {url_word}"));
        commands.push(format!("cd {folder_word}"));
        commands.push(format!(
            "{} -m pip install -r requirements.txt",
            python_command(install)
        ));
        message = format!(
            "To install {title}: clone it into custom_nodes, install its Python requirements \
             with ComfyUI's own Python (skip that step if the pack has no requirements.txt), \
             then restart ComfyUI."
        );
    } else if is_git {
        message = format!(
            "{title}'s address or folder name has characters that aren't safe to put in a \
             command, so no commands are given; install it with ComfyUI-Manager instead."
        );
    } else {
        message = format!("{title} isn't a git repository; install it with ComfyUI-Manager.");
    }
    let mut steps = Vec::new();
    if !installed {
        steps.push(format!(
            "With ComfyUI-Manager: open Manager → Custom Nodes Manager, search for \"{}\", \
             click Install, then restart ComfyUI.",
            title.replace('"', "'")
        ));
        if let Some(id_word) = id.as_deref().filter(|i| is_plain_id(i)) {
            steps.push(format!("With comfy-cli: comfy node install {id_word}"));
        }
        steps.push("Restart ComfyUI, then reload the browser tab.".into());
        if install.is_none() {
            message.push_str(
                " The ComfyUI folder isn't known to this server (set COMFYUI_DIR), so run the \
                 commands from your ComfyUI folder.",
            );
        }
    }
    InstallInstructions {
        source: InstructionSource::Registry,
        kind: "node_pack".into(),
        query: query.to_string(),
        pack_title: Some(title.to_string()),
        pack_id: id,
        model_name: None,
        url: Some(url.to_string()),
        download_url: None,
        save_to: custom_nodes.map(|d| d.display().to_string()),
        installed,
        install_commands: if installed { Vec::new() } else { commands },
        steps,
        message,
        errors,
    }
}

/// The folder models of `kind` are saved into: the install's first folder for it, else
/// `models/<kind>`.
fn model_folder(install: Option<&Install>, kind: &str) -> PathBuf {
    match install {
        Some(install) => {
            let folders = model_folders(install, &Host::current());
            folders
                .folders(kind)
                .first()
                .map_or_else(|| install.models_dir().join(kind), |f| f.path.clone())
        }
        None => PathBuf::from("models").join(kind),
    }
}

#[allow(clippy::too_many_arguments)]
fn model_instructions(
    source: InstructionSource,
    query: &str,
    name: &str,
    page: &str,
    download: Option<&str>,
    filename: &str,
    folder: &str,
    installed: bool,
    install: Option<&Install>,
    errors: Vec<SourceProblem>,
) -> InstallInstructions {
    // The Manager's save paths may have sub-folders (`checkpoints/SDXL`).
    let mut parts = folder.split('/').filter(|p| !p.is_empty() && *p != "..");
    let kind = parts.next().unwrap_or("checkpoints");
    let mut dir = model_folder(install, kind);
    for part in parts {
        dir.push(part);
    }
    let safe_name = !filename.is_empty()
        && !filename.contains(['/', '\\'])
        && !filename.starts_with('.')
        && shell_word(filename).is_some();
    let target = dir.join(if safe_name { filename } else { "<file name>" });
    let mut commands = Vec::new();
    if !installed
        && safe_name
        && let (Some(url_word), Some(target_word)) =
            (download.and_then(safe_url), shell_path(&target))
    {
        commands.push(format!("curl -L -o {target_word} {url_word}"));
    }
    let mut steps = Vec::new();
    if !installed {
        if let Some(url) = download {
            steps.push(format!("Download: {url}"));
        } else {
            steps.push(format!("Open {page} and download the model file."));
        }
        steps.push(format!("Save to: {}", dir.display()));
        steps.push(
            "In ComfyUI, press R (or reload the page) so the loader lists the new file.".into(),
        );
    }
    let message = if installed {
        format!("{name} is already in your model folders.")
    } else {
        format!(
            "Download {name} and save it into {}. Nothing has been downloaded.",
            dir.display()
        )
    };
    InstallInstructions {
        source,
        kind: "model".into(),
        query: query.to_string(),
        pack_title: None,
        pack_id: None,
        model_name: Some(name.to_string()),
        url: Some(page.to_string()),
        download_url: download.map(str::to_string),
        save_to: Some(dir.display().to_string()),
        installed,
        install_commands: commands,
        steps,
        message,
        errors,
    }
}

async fn civitai_instructions(
    cx: &ToolContext,
    query: &str,
    install: Option<Install>,
    params: &InstallInstructionsParams,
) -> Result<InstallInstructions, ToolError> {
    let web = cx.app.web();
    let model = match query.parse::<u64>() {
        Ok(id) => civitai::model(web, id).await.map_err(|error| match error {
            WebError::NotFound { .. } => ToolError::rejected(
                format!("Model {id} not found on CivitAI."),
                "Check the id: it is the number in the model's address, civitai.com/models/<id>.",
            ),
            other => ToolError::Web(other),
        })?,
        Err(_) => {
            let request = civitai::SearchRequest {
                query: Some(query.to_string()),
                model_type: params.model_type.clone(),
                sort: "most_downloaded".into(),
                period: "AllTime".into(),
                limit: 1,
                ..Default::default()
            };
            civitai::search(web, &request)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| {
                    ToolError::rejected(
                        format!("Could not find '{query}' on CivitAI."),
                        "Try discover with source civitai, or pass the model's id.",
                    )
                })?
        }
    };
    let version = model.versions.first();
    let file = version.and_then(|v| v.files.iter().find(|f| f.primary).or(v.files.first()));
    let kind = model
        .model_type
        .as_deref()
        .and_then(civitai::folder_for_type)
        .or_else(|| {
            params.model_type.as_deref().map(|t| {
                civitai::folder_for_type(&civitai::civitai_type(t)).unwrap_or("checkpoints")
            })
        })
        .unwrap_or("checkpoints");
    let filename = file.map(|f| f.name.clone()).unwrap_or_default();
    let installed = {
        let app = cx.app.clone();
        let filename = filename.clone();
        blocking(move || InstalledModels::of(app.install_index()).contains(&filename)).await?
    };
    let download = file
        .and_then(|f| f.download_url.clone())
        .or_else(|| version.and_then(|v| v.download_url.clone()));
    let mut report = model_instructions(
        InstructionSource::Civitai,
        query,
        &model.name,
        &model.page_url(),
        download.as_deref(),
        &filename,
        kind,
        installed,
        install.as_ref(),
        Vec::new(),
    );
    if !installed {
        report.steps.push(
            "Some CivitAI downloads need you to be logged in: if the download is refused, \
             download it from the model page in your browser."
                .into(),
        );
    }
    Ok(report)
}

async fn hf_instructions(
    cx: &ToolContext,
    query: &str,
    install: Option<Install>,
    params: &InstallInstructionsParams,
) -> Result<InstallInstructions, ToolError> {
    let repo = if query.contains('/') && !query.contains(' ') {
        query
            .trim_start_matches("https://huggingface.co/")
            .to_string()
    } else {
        huggingface::search(cx.app.web(), query, 1, None)
            .await?
            .into_iter()
            .next()
            .map(|m| m.id)
            .ok_or_else(|| {
                ToolError::rejected(
                    format!("Could not find '{query}' on Hugging Face."),
                    "Pass the repository as author/name, e.g. stabilityai/sdxl-vae.",
                )
            })?
    };
    let kind = params
        .model_type
        .as_deref()
        .map_or("checkpoints", folder_for_type);
    let dir = model_folder(install.as_ref(), kind);
    let page = format!("https://huggingface.co/{repo}");
    let mut commands = Vec::new();
    if let (Some(repo_word), Some(dir_word)) = (
        shell_word(&repo).filter(|r| !r.starts_with('"')),
        shell_path(&dir),
    ) {
        commands.push(format!(
            "huggingface-cli download {repo_word} FILE_NAME --local-dir {dir_word}"
        ));
    }
    let mut steps = vec![
        format!(
            "Open {page}/tree/main and pick the file you need (usually a .safetensors); put its \
             name in place of FILE_NAME."
        ),
        format!("Save to: {}", dir.display()),
        "In ComfyUI, press R (or reload the page) so the loader lists the new file.".into(),
    ];
    if params.model_type.is_none() {
        steps.insert(
            2,
            "The folder above is for checkpoints; pass model_type (lora, vae, controlnet, \
             upscaler, …) for another kind."
                .into(),
        );
    }
    Ok(InstallInstructions {
        source: InstructionSource::Huggingface,
        kind: "model".into(),
        query: query.to_string(),
        pack_title: None,
        pack_id: None,
        model_name: Some(repo.clone()),
        url: Some(page),
        download_url: None,
        save_to: Some(dir.display().to_string()),
        installed: false,
        install_commands: commands,
        steps,
        message: format!(
            "Download the model file from {repo} on Hugging Face and save it into {}. Nothing \
             has been downloaded.",
            dir.display()
        ),
        errors: Vec::new(),
    })
}

// ---------------------------------------------------------------------------------------------
// check_registry_freshness

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FreshnessParams {
    /// Forget the cached Manager lists and web answers, so the next search reads them again.
    #[serde(default)]
    pub refresh: Option<bool>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct FileFreshness {
    pub exists: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_human: Option<String>,
    /// `fresh`, `stale` (over 7 days), `very_stale` (over 30 days) or `missing`.
    pub status: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CacheState {
    /// Whether the Manager's lists are parsed in memory.
    pub manager_lists_cached: bool,
    /// Web answers held, and their size in bytes.
    pub web_answers: usize,
    pub web_bytes: usize,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ModelsSummary {
    pub exists: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Model files per folder (top level of each folder of `models/`).
    pub types: BTreeMap<String, usize>,
    pub total_files: usize,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct WebSourceState {
    pub source: String,
    pub base_url: String,
    /// Whether a key is set (the key itself is never shown).
    pub key_configured: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct FreshnessReport {
    /// `custom_node_list`, `extension_node_map`, `model_list`.
    pub registries: BTreeMap<String, FileFreshness>,
    pub cache: CacheState,
    pub models: ModelsSummary,
    pub manager_installed: bool,
    pub web_sources: Vec<WebSourceState>,
    /// Whether web look-ups are turned off (`COMFYUI_AGENT_OFFLINE`).
    pub offline: bool,
    pub recommendations: Vec<String>,
    pub refreshed: bool,
}

async fn check_registry_freshness(
    cx: ToolContext,
    params: FreshnessParams,
) -> Result<FreshnessReport, ToolError> {
    let refreshed = params.refresh.unwrap_or(false);
    if refreshed {
        cx.app.web().clear_cache();
    }
    let install = install_owned(&cx);
    let app = cx.app.clone();
    // The Manager's lists may be being parsed under the catalogue's lock: off the async thread.
    let (manager_cached, files, manager_installed, models) = blocking(move || {
        if refreshed {
            app.catalog().invalidate();
        }
        let manager_cached = app.catalog().is_cached();
        let files: Vec<(ManagerFile, Option<crate::catalog::manager::Located>)> = match &install {
            Some(install) => ManagerFile::ALL
                .iter()
                .map(|&f| (f, crate::catalog::manager::locate(install, f)))
                .collect(),
            None => ManagerFile::ALL.iter().map(|&f| (f, None)).collect(),
        };
        let manager_installed = install
            .as_ref()
            .and_then(crate::catalog::manager::manager_dir)
            .is_some();
        (
            manager_cached,
            files,
            manager_installed,
            models_summary(install.as_ref()),
        )
    })
    .await?;
    let now = SystemTime::now();
    let mut registries = BTreeMap::new();
    let mut recommendations = Vec::new();
    for (file, found) in files {
        let entry = match found {
            Some(found) => {
                let age = now.duration_since(found.modified).unwrap_or_default();
                let status = freshness(age);
                if status != "fresh" {
                    recommendations.push(format!(
                        "{} is {} old: open ComfyUI-Manager (or restart ComfyUI with it) to \
                         download a current copy.",
                        file.file_name(),
                        human_age(age)
                    ));
                }
                FileFreshness {
                    exists: true,
                    path: Some(found.path.display().to_string()),
                    age_seconds: Some(age.as_secs()),
                    age_human: Some(human_age(age)),
                    status: status.into(),
                }
            }
            None => FileFreshness {
                exists: false,
                path: None,
                age_seconds: None,
                age_human: None,
                status: "missing".into(),
            },
        };
        registries.insert(file.key().to_string(), entry);
    }
    if !manager_installed {
        recommendations.push(
            "ComfyUI-Manager isn't installed: discover and find_missing_nodes then rely on the \
             online Comfy registry. Installing the Manager adds its offline lists."
                .into(),
        );
    }
    let web = cx.app.web();
    if web.offline() {
        recommendations.push(format!(
            "Web look-ups are off ({}); only local lists are searched.",
            crate::config::ENV_OFFLINE
        ));
    }
    if !web.has_key(Source::CivitAi) {
        recommendations.push(format!(
            "Set {} for higher CivitAI rate limits and models that need an account.",
            crate::config::ENV_CIVITAI_API_KEY
        ));
    }
    let (web_answers, web_bytes) = web.cache_usage();
    let web_sources = [Source::Registry, Source::CivitAi, Source::HuggingFace]
        .into_iter()
        .map(|source| WebSourceState {
            source: source.key().into(),
            base_url: web.base_url(source).to_string(),
            key_configured: web.has_key(source),
        })
        .collect();
    Ok(FreshnessReport {
        registries,
        cache: CacheState {
            manager_lists_cached: manager_cached,
            web_answers,
            web_bytes,
        },
        models,
        manager_installed,
        web_sources,
        offline: web.offline(),
        recommendations,
        refreshed,
    })
}

fn freshness(age: Duration) -> &'static str {
    if age > VERY_STALE_AFTER {
        "very_stale"
    } else if age > STALE_AFTER {
        "stale"
    } else {
        "fresh"
    }
}

fn human_age(age: Duration) -> String {
    let secs = age.as_secs();
    match secs {
        0..=59 => format!("{secs} seconds"),
        60..=3599 => format!("{} minutes", secs / 60),
        3600..=86_399 => format!("{} hours", secs / 3600),
        _ => format!("{} days", secs / 86_400),
    }
}

const MODEL_EXTENSIONS: [&str; 7] = ["safetensors", "ckpt", "pt", "pth", "bin", "gguf", "sft"];

fn models_summary(install: Option<&Install>) -> ModelsSummary {
    let Some(dir) = install.map(Install::models_dir).filter(|d| d.is_dir()) else {
        return ModelsSummary {
            exists: false,
            path: install.map(|i| i.models_dir().display().to_string()),
            types: BTreeMap::new(),
            total_files: 0,
        };
    };
    let mut types = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        if !entry.path().is_dir() {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let count = std::fs::read_dir(entry.path())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|f| {
                f.path().is_file()
                    && f.path()
                        .extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| MODEL_EXTENSIONS.contains(&e.to_lowercase().as_str()))
            })
            .count();
        types.insert(name, count);
    }
    ModelsSummary {
        exists: true,
        path: Some(dir.display().to_string()),
        total_files: types.values().sum(),
        types,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_follows_the_seven_and_thirty_day_marks() {
        let day = 24 * 3600;
        assert_eq!(freshness(Duration::from_secs(day)), "fresh");
        assert_eq!(freshness(Duration::from_secs(10 * day)), "stale");
        assert_eq!(freshness(Duration::from_secs(31 * day)), "very_stale");
        assert_eq!(human_age(Duration::from_secs(3 * day)), "3 days");
    }

    #[test]
    fn pack_instructions_give_commands_only_for_safe_names() {
        let packs = InstalledPacks::default();
        let good = pack_instructions(
            "FaceDetailer",
            "Impact Pack",
            "https://github.com/ltdrdata/ComfyUI-Impact-Pack",
            Some("comfyui-impact-pack".into()),
            &packs,
            None,
            Vec::new(),
        );
        assert_eq!(
            good.install_commands,
            [
                "cd custom_nodes",
                "git clone https://github.com/ltdrdata/ComfyUI-Impact-Pack",
                "cd ComfyUI-Impact-Pack",
                "python -m pip install -r requirements.txt"
            ]
        );
        assert!(
            good.steps
                .iter()
                .any(|s| s == "With comfy-cli: comfy node install comfyui-impact-pack")
        );
        let bad = pack_instructions(
            "x",
            "Evil",
            "https://github.com/a/$(touch x)",
            Some("$(id)".into()),
            &packs,
            None,
            Vec::new(),
        );
        assert!(bad.install_commands.is_empty());
        assert!(!bad.steps.iter().any(|s| s.contains("comfy node install")));
    }
}
