//! CivitAI tools: `get_civitai_model` and `get_trending_models` (§1.9 of the catalogue).
//! Safe-for-work results only; an API key (`CIVITAI_API_KEY`) raises the rate limit and is
//! never shown.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::catalog::civitai::{self, CivitaiSummary};
use crate::catalog::installed::InstalledModels;
use crate::error::ToolError;
use crate::mcp::ToolContext;
use crate::registry::{Hints, ToolSpec, tool};
use crate::web::WebError;

/// Characters of a model's description kept.
const DESCRIPTION_CHARS: usize = 500;
const MAX_VERSIONS: usize = 5;
const MAX_IMAGES: usize = 3;

pub fn tools() -> Vec<ToolSpec> {
    vec![
        tool(
            "get_civitai_model",
            "CivitAI model details",
            "Details of one CivitAI model by its id (the number in civitai.com/models/<id>): \
             type, creator, description, tags, stats, and up to 5 versions with base model, \
             files, download address, example images and whether the file is already in your \
             model folders.",
            Hints::LIVE_READ,
            get_civitai_model,
        ),
        tool(
            "get_trending_models",
            "Trending CivitAI models",
            "The most downloaded CivitAI models of the day, week (default) or month, optionally \
             of one type (checkpoint, lora, controlnet, embedding, vae, upscaler) and base model \
             (sdxl, flux, sd15, pony, …). Safe-for-work only; at most 20.",
            Hints::LIVE_READ,
            get_trending_models,
        ),
    ]
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CivitaiModelParams {
    /// The model's id on CivitAI.
    #[schemars(range(min = 1))]
    pub model_id: u64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CivitaiStats {
    pub downloads: u64,
    pub favorites: u64,
    pub rating: Option<f64>,
    pub rating_count: u64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CivitaiFileInfo {
    pub name: String,
    pub size_kb: Option<f64>,
    pub format: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CivitaiVersionInfo {
    pub id: u64,
    pub name: String,
    pub base_model: Option<String>,
    /// `YYYY-MM-DD`.
    pub created_at: Option<String>,
    pub download_url: Option<String>,
    pub files: Vec<CivitaiFileInfo>,
    /// Up to 3 safe-for-work example image addresses.
    pub example_images: Vec<String>,
    /// Whether one of the version's files is already in a model folder.
    pub installed: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CivitaiModelReport {
    pub id: u64,
    pub name: String,
    #[serde(rename = "type")]
    pub model_type: Option<String>,
    pub creator: Option<String>,
    /// Plain text, at most 500 characters.
    pub description: String,
    /// Sorted, at most 10.
    pub tags: Vec<String>,
    pub nsfw: bool,
    pub stats: CivitaiStats,
    pub versions: Vec<CivitaiVersionInfo>,
    pub url: String,
    /// The `models/` folder files of this type go into, when the type has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub save_folder: Option<String>,
}

async fn installed_models(cx: &ToolContext) -> Result<InstalledModels, ToolError> {
    let app = cx.app.clone();
    tokio::task::spawn_blocking(move || InstalledModels::of(app.install_index()))
        .await
        .map_err(|e| ToolError::Internal(format!("a background look at the disk failed: {e}")))
}

async fn get_civitai_model(
    cx: ToolContext,
    params: CivitaiModelParams,
) -> Result<CivitaiModelReport, ToolError> {
    let id = params.model_id;
    let model = civitai::model(cx.app.web(), id)
        .await
        .map_err(|error| match error {
            WebError::NotFound { .. } => ToolError::rejected(
                format!("Model {id} not found on CivitAI."),
                "Check the id: it is the number in the model's address, civitai.com/models/<id>. \
                 Use discover or get_trending_models to find one.",
            ),
            other => ToolError::Web(other),
        })?;
    let installed = installed_models(&cx).await?;
    Ok(model_report(model, &installed))
}

fn model_report(model: CivitaiSummary, installed: &InstalledModels) -> CivitaiModelReport {
    let mut tags = model.tags.clone();
    tags.sort();
    tags.dedup();
    tags.truncate(10);
    let versions = model
        .versions
        .iter()
        .take(MAX_VERSIONS)
        .map(|v| CivitaiVersionInfo {
            id: v.id,
            name: v.name.clone(),
            base_model: v.base_model.clone(),
            created_at: v.created_at.clone(),
            download_url: v.download_url.clone(),
            installed: v.files.iter().any(|f| installed.contains(&f.name)),
            files: v
                .files
                .iter()
                .map(|f| CivitaiFileInfo {
                    name: f.name.clone(),
                    size_kb: f.size_kb.map(|s| (s * 10.0).round() / 10.0),
                    format: f.format.clone(),
                })
                .collect(),
            example_images: v.images.iter().take(MAX_IMAGES).cloned().collect(),
        })
        .collect();
    CivitaiModelReport {
        id: model.id,
        url: model.page_url(),
        name: model.name.clone(),
        save_folder: model
            .model_type
            .as_deref()
            .and_then(civitai::folder_for_type)
            .map(str::to_string),
        model_type: model.model_type.clone(),
        creator: model.creator.clone(),
        description: model
            .description
            .as_deref()
            .map(|d| civitai::strip_html(d, DESCRIPTION_CHARS))
            .unwrap_or_default(),
        tags,
        nsfw: model.nsfw,
        stats: CivitaiStats {
            downloads: model.downloads,
            favorites: model.favorites,
            rating: model.rating,
            rating_count: model.rating_count,
        },
        versions,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TrendingType {
    Checkpoint,
    Lora,
    Controlnet,
    Embedding,
    Vae,
    Upscaler,
}

impl TrendingType {
    fn key(self) -> &'static str {
        match self {
            Self::Checkpoint => "checkpoint",
            Self::Lora => "lora",
            Self::Controlnet => "controlnet",
            Self::Embedding => "embedding",
            Self::Vae => "vae",
            Self::Upscaler => "upscaler",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Day,
    #[default]
    Week,
    Month,
}

impl Period {
    fn civitai(self) -> &'static str {
        match self {
            Self::Day => "Day",
            Self::Week => "Week",
            Self::Month => "Month",
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrendingParams {
    /// Only this type of model.
    #[serde(default)]
    pub model_type: Option<TrendingType>,
    /// Only this base model: `sdxl`, `sd15`, `flux`, `flux_schnell`, `pony`, `sd3.5`, … or
    /// CivitAI's own name (`Illustrious`).
    #[serde(default)]
    #[schemars(length(max = 50))]
    pub base_model: Option<String>,
    /// `day`, `week` (default) or `month`.
    #[serde(default)]
    pub period: Option<Period>,
    /// How many (default 10, at most 20).
    #[serde(default)]
    #[schemars(range(min = 1, max = 100))]
    pub max_results: Option<u32>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TrendingModel {
    pub id: u64,
    pub name: String,
    #[serde(rename = "type")]
    pub model_type: Option<String>,
    pub creator: Option<String>,
    pub rating: Option<f64>,
    pub downloads: u64,
    pub favorites: u64,
    /// At most 8.
    pub tags: Vec<String>,
    pub base_model: Option<String>,
    pub latest_version: Option<String>,
    pub nsfw: bool,
    pub url: String,
    pub installed: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TrendingReport {
    /// Always `civitai_trending`.
    pub source: String,
    pub period: Period,
    pub type_filter: Option<TrendingType>,
    /// The base model as CivitAI names it.
    pub base_model_filter: Option<String>,
    pub results: Vec<TrendingModel>,
    pub showing: usize,
}

async fn get_trending_models(
    cx: ToolContext,
    params: TrendingParams,
) -> Result<TrendingReport, ToolError> {
    let period = params.period.unwrap_or_default();
    let limit = params
        .max_results
        .unwrap_or(10)
        .clamp(1, civitai::MAX_LIMIT as u32) as usize;
    let base = params
        .base_model
        .as_deref()
        .map(str::trim)
        .filter(|b| !b.is_empty());
    let request = civitai::SearchRequest {
        query: None,
        model_type: params.model_type.map(|t| t.key().to_string()),
        base_model: base.map(str::to_string),
        sort: "most_downloaded".into(),
        period: period.civitai().into(),
        limit,
    };
    let found = civitai::search(cx.app.web(), &request).await?;
    let installed = installed_models(&cx).await?;
    let results: Vec<TrendingModel> = found
        .into_iter()
        .map(|model| {
            let latest = model.versions.first();
            TrendingModel {
                installed: latest
                    .is_some_and(|v| v.files.iter().any(|f| installed.contains(&f.name))),
                base_model: latest.and_then(|v| v.base_model.clone()),
                latest_version: latest.map(|v| v.name.clone()),
                url: model.page_url(),
                tags: model.tags.iter().take(8).cloned().collect(),
                id: model.id,
                name: model.name,
                model_type: model.model_type,
                creator: model.creator,
                rating: model.rating,
                downloads: model.downloads,
                favorites: model.favorites,
                nsfw: model.nsfw,
            }
        })
        .collect();
    Ok(TrendingReport {
        source: "civitai_trending".into(),
        period,
        type_filter: params.model_type,
        base_model_filter: base.map(civitai::civitai_base_model),
        showing: results.len(),
        results,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_cap_versions_images_tags_and_description() {
        let versions: Vec<_> = (0..7)
            .map(|i| {
                json!({"id": i, "name": format!("v{i}"), "files": [{"name": format!("f{i}.safetensors")}],
                       "images": [{"url": "a"}, {"url": "b"}, {"url": "c"}, {"url": "d"}]})
            })
            .collect();
        let tags: Vec<String> = (0..15).map(|i| format!("t{i:02}")).collect();
        let model = civitai::parse_model(&json!({
            "id": 1, "name": "M", "type": "LORA", "description": format!("<p>{}</p>", "x".repeat(900)),
            "tags": tags, "modelVersions": versions
        }))
        .expect("model");
        let report = model_report(model, &InstalledModels::default());
        assert_eq!(report.versions.len(), 5);
        assert_eq!(report.versions[0].example_images.len(), 3);
        assert_eq!(report.tags.len(), 10);
        assert_eq!(report.description.chars().count(), 500);
        assert_eq!(report.save_folder.as_deref(), Some("loras"));
    }
}
