//! Scoring, de-duplication and ranking of discovery results, as the original project did it:
//! text matches for registry entries, downloads for CivitAI and Hugging Face; one entry per
//! name (the higher score wins and lists the other sources); installed first, then core,
//! partner and community, then score, then name.

use schemars::JsonSchema;
use serde::Serialize;

use crate::install::nodes::repository_key;

/// One discovery result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
pub struct Hit {
    pub name: String,
    /// `node_pack` or `model`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Where it was found: `registry_nodes`/`registry_models` (ComfyUI-Manager's lists),
    /// `comfy_registry`, `civitai` or `huggingface`.
    pub source: String,
    /// `core`, `partner` or `community`.
    pub source_tier: String,
    /// 0 to 1, three decimals.
    pub relevance_score: f64,
    pub installed: bool,
    pub url: String,
    /// The id to pass on: registry pack id, CivitAI model id, Hugging Face repo.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// At most 200 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downloads: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rating: Option<f64>,
    /// The model's file name, where known (Manager model list, CivitAI).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// Other sources that found the same item with a lower score.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also_found_on: Vec<String>,
}

/// The partner node packs: tier `partner`, matched by URL or name (any case).
pub const PARTNERS: [&str; 4] = ["hunyuan3d", "meshy", "tripo", "rodin"];

/// How well `query` matches a registry entry's texts: the share of query words found, plus
/// 0.5 when the whole query is in the name, at most 1.
pub fn text_score(query: &str, name: &str, others: &[&str]) -> f64 {
    let query = query.trim().to_lowercase();
    let words: Vec<&str> = query.split_whitespace().collect();
    if words.is_empty() {
        return 0.0;
    }
    let name = name.to_lowercase();
    let haystack = std::iter::once(name.clone())
        .chain(others.iter().map(|t| t.to_lowercase()))
        .collect::<Vec<_>>()
        .join(" ");
    let found = words.iter().filter(|w| haystack.contains(*w)).count();
    let mut score = found as f64 / words.len() as f64;
    if name.contains(&query) {
        score += 0.5;
    }
    round3(score.min(1.0))
}

/// Popularity for CivitAI and Hugging Face: `(downloads / 1e6)^0.3`, at most 1; 0.1 without
/// downloads.
pub fn download_score(downloads: u64) -> f64 {
    if downloads == 0 {
        return 0.1;
    }
    round3((downloads as f64 / 1e6).powf(0.3).min(1.0))
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `core` for ComfyUI's own repositories, `partner` for the partner packs, else `community`.
pub fn tier(url: &str, name: &str) -> &'static str {
    let url = url.to_lowercase();
    if url.contains("github.com/comfyanonymous/") || url.contains("github.com/comfy-org/comfyui") {
        return "core";
    }
    let name = name.to_lowercase();
    if PARTNERS.iter().any(|p| url.contains(p) || name.contains(p)) {
        return "partner";
    }
    "community"
}

fn tier_rank(tier: &str) -> u8 {
    match tier {
        "core" => 0,
        "partner" => 1,
        _ => 2,
    }
}

/// One entry per item: hits with the same lower-cased, trimmed name (or the same repository)
/// merge; the higher score wins and the other sources go to `also_found_on`. Then ranked.
pub fn dedup_and_rank(mut hits: Vec<Hit>) -> Vec<Hit> {
    hits.sort_by(|a, b| b.relevance_score.total_cmp(&a.relevance_score));
    let mut kept: Vec<Hit> = Vec::with_capacity(hits.len());
    for hit in hits {
        let name = hit.name.trim().to_lowercase();
        let url =
            (hit.kind == "node_pack" && !hit.url.is_empty()).then(|| repository_key(&hit.url));
        let same = kept.iter_mut().find(|k| {
            k.kind == hit.kind
                && (k.name.trim().to_lowercase() == name
                    || (url.is_some()
                        && k.kind == "node_pack"
                        && Some(repository_key(&k.url)) == url))
        });
        match same {
            Some(existing) => {
                if existing.source != hit.source && !existing.also_found_on.contains(&hit.source) {
                    existing.also_found_on.push(hit.source.clone());
                }
                existing.installed |= hit.installed;
                if existing.id.is_none() {
                    existing.id = hit.id;
                }
            }
            None => kept.push(hit),
        }
    }
    for hit in &mut kept {
        hit.also_found_on.sort();
    }
    kept.sort_by(|a, b| {
        b.installed
            .cmp(&a.installed)
            .then(tier_rank(&a.source_tier).cmp(&tier_rank(&b.source_tier)))
            .then(b.relevance_score.total_cmp(&a.relevance_score))
            .then_with(|| a.name.to_lowercase().cmp(&b.name.to_lowercase()))
    });
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(name: &str, source: &str, score: f64) -> Hit {
        Hit {
            name: name.into(),
            kind: "node_pack".into(),
            source: source.into(),
            source_tier: "community".into(),
            relevance_score: score,
            installed: false,
            url: String::new(),
            ..Hit::default()
        }
    }

    #[test]
    fn text_scores_count_words_and_reward_whole_name_matches() {
        assert_eq!(text_score("impact pack", "ComfyUI Impact Pack", &[]), 1.0);
        assert_eq!(text_score("face detailer", "Impact", &["a face tool"]), 0.5);
        assert_eq!(text_score("upscale", "Ultimate SD Upscale", &[]), 1.0);
        assert_eq!(text_score("zzz", "Impact", &["x"]), 0.0);
        assert_eq!(text_score("  ", "Impact", &[]), 0.0);
    }

    #[test]
    fn download_scores_grow_with_downloads_and_cap_at_one() {
        assert_eq!(download_score(0), 0.1);
        assert_eq!(download_score(1_000_000), 1.0);
        assert_eq!(download_score(5_000_000), 1.0);
        assert_eq!(download_score(1_000), 0.126);
    }

    #[test]
    fn tiers_know_core_and_exactly_four_partners() {
        assert_eq!(PARTNERS.len(), 4);
        assert_eq!(
            tier("https://github.com/comfyanonymous/ComfyUI", "x"),
            "core"
        );
        assert_eq!(
            tier("https://github.com/x/ComfyUI-Hunyuan3D", "x"),
            "partner"
        );
        assert_eq!(tier("", "Tripo nodes"), "partner");
        assert_eq!(tier("https://github.com/x/y", "y"), "community");
    }

    #[test]
    fn dedup_keeps_the_higher_score_and_lists_the_others() {
        let ranked = dedup_and_rank(vec![
            hit("Impact Pack", "registry_nodes", 0.5),
            hit(" impact pack ", "comfy_registry", 0.9),
            hit("Other", "civitai", 0.2),
        ]);
        assert_eq!(ranked.len(), 2);
        assert_eq!(ranked[0].source, "comfy_registry");
        assert_eq!(ranked[0].also_found_on, ["registry_nodes"]);
    }

    #[test]
    fn same_repository_merges_even_under_another_name() {
        let mut a = hit("ComfyUI Impact Pack", "registry_nodes", 1.0);
        a.url = "https://github.com/ltdrdata/ComfyUI-Impact-Pack".into();
        let mut b = hit("comfyui-impact-pack", "comfy_registry", 0.6);
        b.url = "https://github.com/ltdrdata/comfyui-impact-pack.git".into();
        b.id = Some("comfyui-impact-pack".into());
        let ranked = dedup_and_rank(vec![a, b]);
        assert_eq!(ranked.len(), 1);
        assert_eq!(ranked[0].id.as_deref(), Some("comfyui-impact-pack"));
    }

    #[test]
    fn installed_first_then_partner_then_score_then_name() {
        let mut installed = hit("Zeta", "registry_nodes", 0.1);
        installed.installed = true;
        let mut partner = hit("Meshy", "registry_nodes", 0.2);
        partner.source_tier = "partner".into();
        let ranked = dedup_and_rank(vec![
            hit("Beta", "registry_nodes", 0.9),
            hit("Alpha", "registry_nodes", 0.9),
            partner,
            installed,
        ]);
        let names: Vec<&str> = ranked.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["Zeta", "Meshy", "Alpha", "Beta"]);
    }
}
