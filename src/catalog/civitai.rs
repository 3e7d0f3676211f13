//! CivitAI's public model API (`/api/v1/models`): search, trending and one model, with the
//! original project's type and base-model maps.

use serde_json::Value;

use crate::web::{Source, Web, WebError};

/// Search results per request: CivitAI's own page limit is higher; 20 keeps answers small.
pub const MAX_LIMIT: usize = 20;

/// Our short model types and CivitAI's names for them.
pub const TYPES: [(&str, &str); 8] = [
    ("checkpoint", "Checkpoint"),
    ("lora", "LORA"),
    ("controlnet", "Controlnet"),
    ("embedding", "TextualInversion"),
    ("vae", "VAE"),
    ("hypernetwork", "Hypernetwork"),
    ("upscaler", "Upscaler"),
    ("poses", "Poses"),
];

/// Short base-model names and CivitAI's; anything else is passed through as written.
pub const BASE_MODELS: [(&str, &str); 11] = [
    ("sd15", "SD 1.5"),
    ("sd1.5", "SD 1.5"),
    ("sdxl", "SDXL 1.0"),
    ("sdxl_turbo", "SDXL Turbo"),
    ("flux", "Flux.1 D"),
    ("flux_dev", "Flux.1 D"),
    ("flux_schnell", "Flux.1 S"),
    ("sd3", "SD 3"),
    ("sd3.5", "SD 3.5"),
    ("pony", "Pony"),
    ("cascade", "Stable Cascade"),
];

/// CivitAI's type for one of ours (any case); unknown values are passed through.
pub fn civitai_type(model_type: &str) -> String {
    let lower = model_type.trim().to_lowercase();
    TYPES
        .iter()
        .find(|(ours, theirs)| *ours == lower || theirs.to_lowercase() == lower)
        .map_or_else(|| model_type.trim().to_string(), |(_, t)| t.to_string())
}

/// CivitAI's base model for one of ours (any case); unknown values are passed through.
pub fn civitai_base_model(base: &str) -> String {
    let lower = base.trim().to_lowercase();
    BASE_MODELS
        .iter()
        .find(|(ours, _)| *ours == lower)
        .map_or_else(|| base.trim().to_string(), |(_, t)| t.to_string())
}

/// The `models/` folder a CivitAI type is saved into; `None` for types no loader reads.
pub fn folder_for_type(civitai_type: &str) -> Option<&'static str> {
    Some(match civitai_type.to_lowercase().as_str() {
        "checkpoint" => "checkpoints",
        "lora" | "locon" | "dora" | "lycoris" => "loras",
        "controlnet" => "controlnet",
        "textualinversion" => "embeddings",
        "vae" => "vae",
        "hypernetwork" => "hypernetworks",
        "upscaler" => "upscale_models",
        "motionmodule" => "animatediff_models",
        _ => return None,
    })
}

/// Sort orders CivitAI accepts.
pub fn civitai_sort(sort: &str) -> &'static str {
    match sort {
        "highest_rated" => "Highest Rated",
        "newest" => "Newest",
        _ => "Most Downloaded",
    }
}

/// One search or trending hit.
#[derive(Debug, Clone, PartialEq)]
pub struct CivitaiSummary {
    pub id: u64,
    pub name: String,
    pub model_type: Option<String>,
    pub creator: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub nsfw: bool,
    pub downloads: u64,
    pub favorites: u64,
    pub rating: Option<f64>,
    pub rating_count: u64,
    pub versions: Vec<CivitaiVersion>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CivitaiVersion {
    pub id: u64,
    pub name: String,
    pub base_model: Option<String>,
    /// `YYYY-MM-DD`.
    pub created_at: Option<String>,
    pub download_url: Option<String>,
    pub files: Vec<CivitaiFile>,
    pub images: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CivitaiFile {
    pub name: String,
    pub size_kb: Option<f64>,
    pub format: Option<String>,
    pub download_url: Option<String>,
    pub primary: bool,
}

impl CivitaiSummary {
    /// The web page of the model.
    pub fn page_url(&self) -> String {
        format!("https://civitai.com/models/{}", self.id)
    }
}

fn text(value: &Value, key: &str) -> Option<String> {
    value
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn count(value: Option<&Value>, key: &str) -> u64 {
    value
        .and_then(|v| v.get(key))
        .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f.max(0.0) as u64)))
        .unwrap_or(0)
}

/// Parses one model object of CivitAI's API.
pub fn parse_model(item: &Value) -> Option<CivitaiSummary> {
    let id = item.get("id").and_then(Value::as_u64)?;
    let stats = item.get("stats");
    let tags = item
        .get("tags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().or_else(|| t.get("name").and_then(Value::as_str)))
        .map(str::to_string)
        .collect();
    let versions = item
        .get("modelVersions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(parse_version)
        .collect();
    Some(CivitaiSummary {
        id,
        name: text(item, "name").unwrap_or_else(|| format!("model {id}")),
        model_type: text(item, "type"),
        creator: item.get("creator").and_then(|c| text(c, "username")),
        description: text(item, "description"),
        tags,
        nsfw: item.get("nsfw").and_then(Value::as_bool).unwrap_or(false),
        downloads: count(stats, "downloadCount"),
        favorites: count(stats, "favoriteCount").max(count(stats, "thumbsUpCount")),
        rating: stats
            .and_then(|s| s.get("rating"))
            .and_then(Value::as_f64)
            .filter(|r| *r > 0.0),
        rating_count: count(stats, "ratingCount"),
        versions,
    })
}

fn parse_version(version: &Value) -> Option<CivitaiVersion> {
    let id = version.get("id").and_then(Value::as_u64)?;
    let files = version
        .get("files")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|file| {
            Some(CivitaiFile {
                name: text(file, "name")?,
                size_kb: file.get("sizeKB").and_then(Value::as_f64),
                format: file.get("metadata").and_then(|m| text(m, "format")),
                download_url: text(file, "downloadUrl"),
                primary: file
                    .get("primary")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            })
        })
        .collect();
    let images = version
        .get("images")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|image| !image.get("nsfw").is_some_and(is_nsfw_flag))
        .filter_map(|image| text(image, "url"))
        .collect();
    Some(CivitaiVersion {
        id,
        name: text(version, "name").unwrap_or_default(),
        base_model: text(version, "baseModel"),
        created_at: text(version, "createdAt").map(|d| d.chars().take(10).collect()),
        download_url: text(version, "downloadUrl"),
        files,
        images,
    })
}

/// CivitAI marks images with a boolean or with a level (`None`, `Soft`, `Mature`, `X`).
fn is_nsfw_flag(flag: &Value) -> bool {
    match flag {
        Value::Bool(b) => *b,
        Value::String(level) => !level.eq_ignore_ascii_case("none"),
        _ => false,
    }
}

/// What to ask `GET models` for.
#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    pub query: Option<String>,
    pub model_type: Option<String>,
    pub base_model: Option<String>,
    /// Our sort key (`most_downloaded`, `highest_rated`, `newest`).
    pub sort: String,
    /// CivitAI's period (`AllTime`, `Day`, `Week`, `Month`).
    pub period: String,
    pub limit: usize,
}

/// `GET models` with safe-for-work results only.
pub async fn search(web: &Web, request: &SearchRequest) -> Result<Vec<CivitaiSummary>, WebError> {
    let limit = request.limit.clamp(1, MAX_LIMIT);
    let mut query: Vec<(&str, String)> = vec![
        ("limit", limit.to_string()),
        ("sort", civitai_sort(&request.sort).to_string()),
        ("period", request.period.clone()),
        ("nsfw", "false".to_string()),
    ];
    if let Some(q) = request.query.as_deref().filter(|q| !q.trim().is_empty()) {
        query.push(("query", q.trim().to_string()));
    }
    if let Some(t) = request.model_type.as_deref() {
        query.push(("types", civitai_type(t)));
    }
    if let Some(b) = request.base_model.as_deref() {
        query.push(("baseModels", civitai_base_model(b)));
    }
    let answer = web.get_json(Source::CivitAi, "models", &query).await?;
    let Some(items) = answer.body.get("items").and_then(Value::as_array) else {
        return Err(WebError::Malformed {
            site: Source::CivitAi,
            detail: "the answer has no `items` list".into(),
        });
    };
    Ok(items
        .iter()
        .filter_map(parse_model)
        .filter(|m| !m.nsfw)
        .take(limit)
        .collect())
}

/// `GET models/{id}`.
pub async fn model(web: &Web, id: u64) -> Result<CivitaiSummary, WebError> {
    let answer = web
        .get_json(Source::CivitAi, &format!("models/{id}"), &[])
        .await?;
    parse_model(&answer.body).ok_or_else(|| WebError::Malformed {
        site: Source::CivitAi,
        detail: "the model has no numeric `id`".into(),
    })
}

/// Text of an HTML description: tags removed, the common entities decoded, whitespace
/// collapsed, at most `max` characters (an ellipsis marks a cut).
pub fn strip_html(html: &str, max: usize) -> String {
    let mut out = String::with_capacity(html.len().min(max * 2));
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    let decoded = out
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    let collapsed = decoded.split_whitespace().collect::<Vec<_>>().join(" ");
    cap(&collapsed, max)
}

/// At most `max` characters, with an ellipsis when cut.
pub fn cap(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn type_and_base_model_maps_follow_the_original() {
        assert_eq!(civitai_type("lora"), "LORA");
        assert_eq!(civitai_type("Embedding"), "TextualInversion");
        assert_eq!(civitai_type("LORA"), "LORA");
        assert_eq!(civitai_type("MotionModule"), "MotionModule");
        assert_eq!(civitai_base_model("sd1.5"), "SD 1.5");
        assert_eq!(civitai_base_model("FLUX_schnell"), "Flux.1 S");
        assert_eq!(civitai_base_model("Illustrious"), "Illustrious");
        assert_eq!(civitai_sort("newest"), "Newest");
        assert_eq!(civitai_sort("anything"), "Most Downloaded");
        assert_eq!(folder_for_type("LORA"), Some("loras"));
        assert_eq!(folder_for_type("Poses"), None);
    }

    #[test]
    fn html_is_stripped_decoded_and_capped() {
        assert_eq!(
            strip_html("<p>Fast &amp; <b>sharp</b></p>\n<p>model</p>", 100),
            "Fast & sharp model"
        );
        assert_eq!(strip_html("abcdef", 4), "abc…");
    }

    #[test]
    fn models_parse_and_skip_nsfw_images() {
        let model = parse_model(&json!({
            "id": 7, "name": "M", "type": "LORA", "nsfw": false, "tags": ["a", {"name": "b"}],
            "creator": {"username": "u"},
            "stats": {"downloadCount": 10, "favoriteCount": 2, "rating": 4.5, "ratingCount": 3},
            "modelVersions": [{"id": 70, "name": "v1", "baseModel": "SDXL 1.0",
                "createdAt": "2024-05-01T10:00:00.000Z", "downloadUrl": "https://d/70",
                "files": [{"name": "m.safetensors", "sizeKB": 1024.5, "metadata": {"format": "SafeTensor"}}],
                "images": [{"url": "https://i/1", "nsfw": "None"}, {"url": "https://i/2", "nsfw": "X"}]}]
        }))
        .expect("model");
        assert_eq!(model.tags, ["a", "b"]);
        assert_eq!(model.versions[0].created_at.as_deref(), Some("2024-05-01"));
        assert_eq!(model.versions[0].images, ["https://i/1"]);
        assert_eq!(model.page_url(), "https://civitai.com/models/7");
    }
}
