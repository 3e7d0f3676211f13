//! Model profiles: per family, the parameter ranges and sweet spots, the samplers to reach
//! for, the words artists use and the parameter moves they mean, and the artifacts to watch
//! for. They are data (`src/refine/profiles/*.json`, written for this project), embedded in the
//! binary and checked by a test.

use std::collections::BTreeMap;

use serde::Deserialize;

const SOURCES: [(&str, &str); 6] = [
    ("sd15", include_str!("profiles/sd15.json")),
    ("sdxl", include_str!("profiles/sdxl.json")),
    ("flux", include_str!("profiles/flux.json")),
    ("sd3", include_str!("profiles/sd3.json")),
    ("wan", include_str!("profiles/wan.json")),
    ("default", include_str!("profiles/default.json")),
];

#[derive(Debug, Clone, Deserialize)]
pub struct Range {
    pub default: f64,
    pub min: f64,
    pub max: f64,
    pub sweet_spot: [f64; 2],
    /// How far one move goes.
    pub step: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Move {
    pub param: String,
    /// `up`, `down` or `to_sweet_spot` for numbers.
    #[serde(default)]
    pub direction: Option<String>,
    /// For the sampler: a key of the profile's `samplers`.
    #[serde(default)]
    pub set: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Translation {
    pub words: Vec<String>,
    pub moves: Vec<Move>,
    #[serde(default)]
    pub positive: Vec<String>,
    #[serde(default)]
    pub negative: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Artifact {
    pub signs: Vec<String>,
    pub moves: Vec<Move>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Profile {
    pub name: String,
    pub title: String,
    pub aliases: Vec<String>,
    pub native_resolution: u32,
    pub parameters: BTreeMap<String, Range>,
    pub samplers: BTreeMap<String, String>,
    pub quality_floor: f64,
    pub translations: Vec<Translation>,
    pub artifacts: Vec<Artifact>,
}

/// Every profile, parsed once per call site (they are small).
pub fn all() -> Vec<Profile> {
    SOURCES
        .iter()
        .filter_map(|(name, text)| match serde_json::from_str::<Profile>(text) {
            Ok(profile) => Some(profile),
            Err(error) => {
                tracing::error!(profile = name, %error, "a built-in model profile does not parse");
                None
            }
        })
        .collect()
}

/// The profile for `model_id` and how it was chosen: its name, then an alias inside the id
/// (a checkpoint file name such as `sd_xl_base_1.0.safetensors` works), then the default.
pub fn resolve(model_id: &str) -> (Profile, String) {
    let profiles = all();
    let id = model_id.trim().to_lowercase();
    if let Some(profile) = profiles.iter().find(|p| p.name == id) {
        return (
            profile.clone(),
            format!("'{id}' is the {} profile", profile.name),
        );
    }
    // Longest alias first, so `sdxl` wins over `xl` and `flux1-dev` over `flux`.
    let mut aliases: Vec<(&Profile, &String)> = profiles
        .iter()
        .flat_map(|p| p.aliases.iter().map(move |a| (p, a)))
        .collect();
    aliases.sort_by_key(|(_, alias)| std::cmp::Reverse(alias.len()));
    if let Some((profile, alias)) = aliases
        .into_iter()
        .find(|(_, alias)| id.contains(alias.as_str()))
    {
        return (
            profile.clone(),
            format!(
                "'{model_id}' contains '{alias}', a name of the {} profile",
                profile.name
            ),
        );
    }
    let fallback = profiles
        .into_iter()
        .find(|p| p.name == "default")
        .or_else(|| all().into_iter().next());
    match fallback {
        Some(profile) => (
            profile,
            format!(
                "'{model_id}' matches no family profile, so the general DiT/UNet profile is used"
            ),
        ),
        None => (
            builtin_minimum(),
            "no profile could be read; minimal defaults are used".into(),
        ),
    }
}

/// Used only if the embedded files could not be read (a build problem, caught by tests).
fn builtin_minimum() -> Profile {
    let range = |default, min, max, step| Range {
        default,
        min,
        max,
        sweet_spot: [min, max],
        step,
    };
    Profile {
        name: "minimal".into(),
        title: "Minimal defaults".into(),
        aliases: Vec::new(),
        native_resolution: 1024,
        parameters: BTreeMap::from([
            ("steps".into(), range(25.0, 8.0, 60.0, 5.0)),
            ("cfg".into(), range(5.0, 1.0, 12.0, 0.5)),
            ("denoise".into(), range(1.0, 0.2, 1.0, 0.1)),
        ]),
        samplers: BTreeMap::from([("default".into(), "euler".into())]),
        quality_floor: 0.6,
        translations: Vec::new(),
        artifacts: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_parses_and_is_consistent() {
        let profiles = all();
        assert_eq!(profiles.len(), SOURCES.len(), "a profile failed to parse");
        for profile in &profiles {
            assert!(profile.samplers.contains_key("default"), "{}", profile.name);
            for (name, range) in &profile.parameters {
                assert!(
                    range.min <= range.default && range.default <= range.max,
                    "{} {name}",
                    profile.name
                );
                assert!(
                    range.min <= range.sweet_spot[0]
                        && range.sweet_spot[0] <= range.sweet_spot[1]
                        && range.sweet_spot[1] <= range.max,
                    "{} {name}",
                    profile.name
                );
            }
            let moves = profile
                .translations
                .iter()
                .flat_map(|t| &t.moves)
                .chain(profile.artifacts.iter().flat_map(|a| &a.moves));
            for m in moves {
                match (&m.direction, &m.set) {
                    (Some(direction), None) => {
                        assert!(
                            profile.parameters.contains_key(&m.param),
                            "{}: {}",
                            profile.name,
                            m.param
                        );
                        assert!(["up", "down", "to_sweet_spot"].contains(&direction.as_str()));
                    }
                    (None, Some(key)) => {
                        assert_eq!(m.param, "sampler_name");
                        assert!(
                            profile.samplers.contains_key(key),
                            "{}: {key}",
                            profile.name
                        );
                    }
                    _ => panic!("{}: a move needs a direction or a sampler", profile.name),
                }
            }
        }
    }

    #[test]
    fn model_ids_find_their_family() {
        for (id, family) in [
            ("sdxl", "sdxl"),
            ("sd_xl_base_1.0.safetensors", "sdxl"),
            ("flux1-dev-fp8.safetensors", "flux"),
            ("v1-5-pruned-emaonly.safetensors", "sd15"),
            ("sd3.5_large.safetensors", "sd3"),
            ("wan2.1_t2v_14B_fp16.safetensors", "wan"),
            ("hidream_i1_full.safetensors", "default"),
        ] {
            assert_eq!(resolve(id).0.name, family, "{id}");
        }
        assert!(resolve("mystery").1.contains("general"));
    }
}
