//! The public Comfy registry of node packs (api.comfy.org): search, one pack by id, and the
//! pack that provides a node class. Answers are read leniently: a field missing or of another
//! type is left out, not an error.

use serde_json::Value;

use crate::comfy::client::encode_segment;
use crate::web::{Source, Web, WebError};

/// A node pack as the registry describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryPack {
    /// The registry id (`comfy node install <id>`).
    pub id: String,
    pub name: String,
    pub author: Option<String>,
    pub description: Option<String>,
    /// The source repository.
    pub repository: Option<String>,
    pub downloads: Option<u64>,
    pub rating: Option<f64>,
    pub latest_version: Option<String>,
}

/// Parses one `Node` object of the registry API.
pub fn parse_pack(node: &Value) -> Option<RegistryPack> {
    let id = text(node, "id")?;
    let name = text(node, "name").unwrap_or_else(|| id.clone());
    let author = text(node, "author").or_else(|| {
        node.get("publisher")
            .and_then(|p| text(p, "name").or_else(|| text(p, "id")))
    });
    Some(RegistryPack {
        id,
        name,
        author,
        description: text(node, "description"),
        repository: text(node, "repository"),
        downloads: node.get("downloads").and_then(Value::as_u64),
        rating: node.get("rating").and_then(Value::as_f64),
        latest_version: node.get("latest_version").and_then(|v| text(v, "version")),
    })
}

fn text(value: &Value, key: &str) -> Option<String> {
    value
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// `GET nodes/search?search=…&limit=…`.
pub async fn search(web: &Web, query: &str, limit: usize) -> Result<Vec<RegistryPack>, WebError> {
    let answer = web
        .get_json(
            Source::Registry,
            "nodes/search",
            &[("search", query.to_string()), ("limit", limit.to_string())],
        )
        .await?;
    let nodes = answer.body.get("nodes").and_then(Value::as_array);
    let Some(nodes) = nodes else {
        return Err(WebError::Malformed {
            site: Source::Registry,
            detail: "the search answer has no `nodes` list".into(),
        });
    };
    Ok(nodes.iter().filter_map(parse_pack).take(limit).collect())
}

/// `GET nodes/{id}`; `None` when the registry has no such pack.
pub async fn pack(web: &Web, id: &str) -> Result<Option<RegistryPack>, WebError> {
    let path = format!("nodes/{}", encode_segment(id));
    not_found_as_none(web.get_json(Source::Registry, &path, &[]).await)
}

/// `GET comfy-nodes/{class}/node`: the pack providing a node class; `None` when unknown.
pub async fn pack_for_class(web: &Web, class: &str) -> Result<Option<RegistryPack>, WebError> {
    let path = format!("comfy-nodes/{}/node", encode_segment(class));
    not_found_as_none(web.get_json(Source::Registry, &path, &[]).await)
}

fn not_found_as_none(
    answer: Result<crate::web::WebAnswer, WebError>,
) -> Result<Option<RegistryPack>, WebError> {
    match answer {
        Ok(answer) => Ok(parse_pack(&answer.body)),
        Err(WebError::NotFound { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn packs_parse_from_the_documented_shape() {
        let pack = parse_pack(&json!({
            "id": "comfyui-impact-pack", "name": "ComfyUI Impact Pack",
            "description": "Detailers", "repository": "https://github.com/ltdrdata/ComfyUI-Impact-Pack",
            "downloads": 1200, "rating": 4.5, "publisher": {"id": "drltdata", "name": "Dr.Lt.Data"},
            "latest_version": {"version": "8.1.0"}
        }))
        .expect("pack");
        assert_eq!(pack.author.as_deref(), Some("Dr.Lt.Data"));
        assert_eq!(pack.latest_version.as_deref(), Some("8.1.0"));
        assert_eq!(pack.downloads, Some(1200));
        assert!(parse_pack(&json!({"name": "no id"})).is_none());
    }
}
