//! Hugging Face's model search (`GET api/models`).

use serde_json::Value;

use crate::web::{Source, Web, WebError};

/// One model repository.
#[derive(Debug, Clone, PartialEq)]
pub struct HfModel {
    /// `author/name`.
    pub id: String,
    pub author: Option<String>,
    pub downloads: u64,
    pub likes: u64,
    pub pipeline_tag: Option<String>,
    pub library: Option<String>,
}

impl HfModel {
    pub fn page_url(&self) -> String {
        format!("https://huggingface.co/{}", self.id)
    }
}

/// Parses one entry of the search answer.
pub fn parse_model(entry: &Value) -> Option<HfModel> {
    let id = entry
        .get("id")
        .or_else(|| entry.get("modelId"))
        .and_then(Value::as_str)?
        .to_string();
    let author = entry
        .get("author")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| id.split_once('/').map(|(a, _)| a.to_string()));
    Some(HfModel {
        author,
        downloads: entry.get("downloads").and_then(Value::as_u64).unwrap_or(0),
        likes: entry.get("likes").and_then(Value::as_u64).unwrap_or(0),
        pipeline_tag: entry
            .get("pipeline_tag")
            .and_then(Value::as_str)
            .map(str::to_string),
        library: entry
            .get("library_name")
            .and_then(Value::as_str)
            .map(str::to_string),
        id,
    })
}

/// `GET api/models?search=…&sort=downloads&direction=-1&limit=…[&filter=…]`.
pub async fn search(
    web: &Web,
    query: &str,
    limit: usize,
    filter: Option<&str>,
) -> Result<Vec<HfModel>, WebError> {
    let mut params: Vec<(&str, String)> = vec![
        ("search", query.to_string()),
        ("sort", "downloads".to_string()),
        ("direction", "-1".to_string()),
        ("limit", limit.to_string()),
    ];
    if let Some(filter) = filter.map(str::trim).filter(|f| !f.is_empty()) {
        params.push(("filter", filter.to_string()));
    }
    let answer = web
        .get_json(Source::HuggingFace, "api/models", &params)
        .await?;
    let Some(entries) = answer.body.as_array() else {
        return Err(WebError::Malformed {
            site: Source::HuggingFace,
            detail: "the search answer is not a list".into(),
        });
    };
    Ok(entries.iter().filter_map(parse_model).take(limit).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entries_parse_with_author_from_the_id() {
        let model = parse_model(&json!({"id": "stabilityai/sdxl-vae", "downloads": 5, "likes": 1}))
            .expect("model");
        assert_eq!(model.author.as_deref(), Some("stabilityai"));
        assert_eq!(
            model.page_url(),
            "https://huggingface.co/stabilityai/sdxl-vae"
        );
        assert!(parse_model(&json!({"downloads": 5})).is_none());
    }
}
