//! The refinement loop behind `iterative_refine`: turn the artist's words into parameter and
//! prompt moves through a model profile (intent), judge each new output against that intent
//! (verify), and decide: accept, refine again, reprompt, or hand back to the artist
//! (escalate). The state of the loop is kept per session, so each call that brings a new
//! output analysis moves it on (the original judged the same analysis over and over and
//! could never reach `refined`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::profile::{Move, Profile};

/// Phrases whose translation is weaker than this make the call ask for clarification.
pub const MIN_CONFIDENCE: f64 = 0.5;
/// Iterations remembered in the history.
pub const MAX_HISTORY: usize = 50;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct PhraseMatch {
    pub text: String,
    /// The profile's words it matched, if any.
    pub matched: Option<String>,
    /// `exact`, `synonym`, `partial` or `none`.
    pub match_kind: String,
    pub confidence: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Mutation {
    /// Where it goes in a workflow, e.g. `KSampler.cfg`.
    pub target: String,
    pub param: String,
    pub from: Value,
    pub to: Value,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct PromptMutations {
    pub add_positive: Vec<String>,
    pub add_negative: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct IntentSpec {
    pub model_profile: String,
    pub profile_reason: String,
    pub phrases: Vec<PhraseMatch>,
    pub parameter_mutations: Vec<Mutation>,
    pub prompt_mutations: PromptMutations,
    /// Mean confidence over the phrases (unmatched ones count 0).
    pub confidence: f64,
    /// Parameters two phrases pulled in opposite directions; left unchanged.
    pub conflicts: Vec<String>,
}

/// What the caller saw in an output.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
pub struct OutputAnalysis {
    /// 0 to 1: technical quality.
    #[serde(default)]
    pub quality_score: Option<f64>,
    /// Artifacts seen, in words ("oversaturated", "extra fingers").
    #[serde(default)]
    pub artifacts: Vec<String>,
    /// Other problems, in words.
    #[serde(default)]
    pub issues: Vec<String>,
    /// Whether (true/false) or how well (0 to 1) it matches what the artist asked for.
    #[serde(default)]
    pub matches_intent: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Verification {
    pub intent_score: f64,
    pub technical_score: f64,
    /// 0.6 × intent + 0.4 × technical.
    pub overall: f64,
    /// `accept`, `refine`, `reprompt` or `escalate`.
    pub decision: String,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Iteration {
    pub iteration: u32,
    pub parameter_mutations: Vec<Mutation>,
    pub prompt_mutations: PromptMutations,
    #[serde(default)]
    pub verification: Option<Verification>,
}

/// The loop's state for one session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Loop {
    pub user_intent: String,
    pub profile: String,
    /// The parameters after the latest mutations.
    pub params: BTreeMap<String, Value>,
    pub iteration: u32,
    pub history: Vec<Iteration>,
    /// `planned`, `refined`, `accepted` or `escalated`.
    pub status: String,
}

fn round(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn has_phrase(haystack: &[String], phrase: &str) -> bool {
    let wanted = words(phrase);
    !wanted.is_empty()
        && haystack
            .windows(wanted.len())
            .any(|window| window.iter().zip(&wanted).all(|(a, b)| a == b))
}

/// Splits a compound request: "sharper and less saturated, but keep the pose".
pub fn split(intent: &str) -> Vec<String> {
    let lowered = intent.to_lowercase();
    let mut parts = vec![lowered];
    for separator in [",", ";", " and ", " but ", " also ", " plus ", " then "] {
        parts = parts
            .iter()
            .flat_map(|part| {
                part.split(separator)
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
    }
    parts
        .into_iter()
        .map(|p| {
            p.trim()
                .trim_end_matches(['.', '!', '?'])
                .trim()
                .to_string()
        })
        .filter(|p| !p.is_empty())
        .collect()
}

/// The numeric value of `param` now: the caller's, else the profile's default.
fn current_number(profile: &Profile, params: &BTreeMap<String, Value>, param: &str) -> Option<f64> {
    params
        .get(param)
        .and_then(Value::as_f64)
        .or_else(|| profile.parameters.get(param).map(|r| r.default))
}

fn target_of(param: &str) -> String {
    match param {
        "guidance" => "FluxGuidance.guidance".into(),
        "lora_strength" => "LoraLoader.strength_model".into(),
        other => format!("KSampler.{other}"),
    }
}

/// Applies one move to `params`, inside the profile's range. Returns the mutation, if the
/// value changed.
fn apply(
    profile: &Profile,
    params: &mut BTreeMap<String, Value>,
    m: &Move,
    reason: &str,
) -> Option<Mutation> {
    if let Some(key) = &m.set {
        let sampler = profile.samplers.get(key)?;
        let from = params.get("sampler_name").cloned().unwrap_or_else(|| {
            Value::from(profile.samplers.get("default").cloned().unwrap_or_default())
        });
        if from == sampler.as_str() {
            return None;
        }
        params.insert("sampler_name".into(), Value::from(sampler.as_str()));
        return Some(Mutation {
            target: target_of("sampler_name"),
            param: "sampler_name".into(),
            from,
            to: Value::from(sampler.as_str()),
            reason: reason.into(),
        });
    }
    let range = profile.parameters.get(&m.param)?;
    let now = current_number(profile, params, &m.param)?;
    let to = match m.direction.as_deref()? {
        "up" => (now + range.step).min(range.max),
        "down" => (now - range.step).max(range.min),
        _ => now.clamp(range.sweet_spot[0], range.sweet_spot[1]),
    };
    let to = if m.param == "steps" {
        to.round()
    } else {
        round(to)
    };
    if (to - now).abs() < 1e-9 {
        return None;
    }
    let value = if m.param == "steps" {
        Value::from(to as i64)
    } else {
        Value::from(to)
    };
    params.insert(m.param.clone(), value.clone());
    Some(Mutation {
        target: target_of(&m.param),
        param: m.param.clone(),
        from: if m.param == "steps" {
            Value::from(now.round() as i64)
        } else {
            Value::from(round(now))
        },
        to: value,
        reason: reason.into(),
    })
}

/// Reads the artist's words through the profile: which phrases it understands, and the
/// moves they mean from `params`.
pub fn translate(
    profile: &Profile,
    reason: &str,
    intent: &str,
    params: &mut BTreeMap<String, Value>,
) -> IntentSpec {
    let mut phrases = Vec::new();
    let mut chosen: Vec<(&super::profile::Translation, String)> = Vec::new();
    for phrase in split(intent) {
        let phrase_words = words(&phrase);
        let mut found = None;
        for translation in &profile.translations {
            for word in &translation.words {
                let kind = if phrase == *word {
                    Some(("exact", 1.0))
                } else if has_phrase(&phrase_words, word) {
                    Some(("synonym", 0.85))
                } else if words(word).iter().any(|w| {
                    w.len() > 4
                        && phrase_words.iter().any(|p| {
                            p.starts_with(w.as_str()) || w.starts_with(p.as_str()) && p.len() > 4
                        })
                }) {
                    Some(("partial", 0.6))
                } else {
                    None
                };
                if let Some((kind, confidence)) = kind
                    && found
                        .as_ref()
                        .is_none_or(|(_, _, _, best): &(_, _, _, f64)| confidence > *best)
                {
                    found = Some((translation, word.clone(), kind, confidence));
                }
            }
        }
        match found {
            Some((translation, word, kind, confidence)) => {
                phrases.push(PhraseMatch {
                    text: phrase.clone(),
                    matched: Some(word),
                    match_kind: kind.into(),
                    confidence,
                });
                chosen.push((translation, phrase));
            }
            None => phrases.push(PhraseMatch {
                text: phrase,
                matched: None,
                match_kind: "none".into(),
                confidence: 0.0,
            }),
        }
    }
    // Opposite directions on one parameter cancel out.
    let mut directions: BTreeMap<&str, (bool, bool)> = BTreeMap::new();
    for (translation, _) in &chosen {
        for m in &translation.moves {
            let entry = directions.entry(m.param.as_str()).or_default();
            match m.direction.as_deref() {
                Some("up") => entry.0 = true,
                Some("down") => entry.1 = true,
                _ => {}
            }
        }
    }
    let conflicts: Vec<String> = directions
        .iter()
        .filter(|(_, (up, down))| *up && *down)
        .map(|(param, _)| (*param).to_string())
        .collect();
    let mut parameter_mutations = Vec::new();
    let mut prompt_mutations = PromptMutations::default();
    for (translation, phrase) in &chosen {
        for m in &translation.moves {
            if conflicts.contains(&m.param) {
                continue;
            }
            if let Some(mutation) = apply(profile, params, m, phrase) {
                parameter_mutations.push(mutation);
            }
        }
        for text in &translation.positive {
            if !prompt_mutations.add_positive.contains(text) {
                prompt_mutations.add_positive.push(text.clone());
            }
        }
        for text in &translation.negative {
            if !prompt_mutations.add_negative.contains(text) {
                prompt_mutations.add_negative.push(text.clone());
            }
        }
    }
    let confidence = if phrases.is_empty() {
        0.0
    } else {
        round(phrases.iter().map(|p| p.confidence).sum::<f64>() / phrases.len() as f64)
    };
    IntentSpec {
        model_profile: profile.name.clone(),
        profile_reason: reason.into(),
        phrases,
        parameter_mutations,
        prompt_mutations,
        confidence,
        conflicts,
    }
}

/// Judges an output: intent counts 0.6, technical quality 0.4.
pub fn verify(
    profile: &Profile,
    analysis: &OutputAnalysis,
    iteration: u32,
    max_iterations: u32,
) -> Verification {
    let mut reasons = Vec::new();
    let intent_score = match &analysis.matches_intent {
        Some(Value::Bool(true)) => 1.0,
        Some(Value::Bool(false)) => 0.2,
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.5).clamp(0.0, 1.0),
        _ => {
            reasons.push(
                "no judgement of how well it matches the intent was given; assumed 0.5".into(),
            );
            0.5
        }
    };
    let problems = analysis.artifacts.len() + analysis.issues.len();
    let base = analysis.quality_score.map_or_else(
        || {
            reasons.push("no quality_score was given; assumed the profile's quality floor".into());
            profile.quality_floor
        },
        |q| q.clamp(0.0, 1.0),
    );
    let technical_score = round((base - 0.1 * problems as f64).clamp(0.0, 1.0));
    let overall = round(0.6 * intent_score + 0.4 * technical_score);
    let decision = if intent_score < 0.4 {
        reasons.push("the output is far from what was asked: rewrite the prompt rather than nudge parameters".into());
        "reprompt"
    } else if overall >= 0.7 && intent_score > 0.7 {
        reasons.push(format!(
            "overall {overall} with intent {intent_score}: good enough to accept"
        ));
        "accept"
    } else if iteration >= max_iterations {
        reasons.push(format!(
            "{iteration} iterations without acceptance: hand back to the artist"
        ));
        "escalate"
    } else {
        if technical_score < profile.quality_floor {
            reasons.push(format!(
                "technical quality {technical_score} is under the {} floor of {}",
                profile.name, profile.quality_floor
            ));
        }
        "refine"
    };
    Verification {
        intent_score: round(intent_score),
        technical_score,
        overall,
        decision: decision.into(),
        reasons,
    }
}

/// The moves that answer the problems an analysis names (through the profile's artifacts).
pub fn fixes(
    profile: &Profile,
    analysis: &OutputAnalysis,
    params: &mut BTreeMap<String, Value>,
) -> Vec<Mutation> {
    let seen: Vec<Vec<String>> = analysis
        .artifacts
        .iter()
        .chain(&analysis.issues)
        .map(|t| words(t))
        .collect();
    let mut out = Vec::new();
    for artifact in &profile.artifacts {
        let Some(sign) = artifact
            .signs
            .iter()
            .find(|sign| seen.iter().any(|w| has_phrase(w, sign)))
        else {
            continue;
        };
        for m in &artifact.moves {
            if let Some(mutation) = apply(profile, params, m, &format!("fix: {sign}")) {
                out.push(mutation);
            }
        }
    }
    out
}

/// The caller's current parameters: every scalar of `workflow_state` but `state`.
pub fn params_from(workflow_state: Option<&Map<String, Value>>) -> BTreeMap<String, Value> {
    workflow_state
        .map(|state| {
            state
                .iter()
                .filter(|(key, value)| {
                    key.as_str() != "state" && (value.is_number() || value.is_string())
                })
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::super::profile::resolve;
    use super::*;

    #[test]
    fn compound_requests_split_and_translate_inside_the_ranges() {
        let (profile, reason) = resolve("sdxl");
        let mut params = BTreeMap::from([
            ("cfg".to_string(), Value::from(11.5)),
            ("steps".to_string(), Value::from(58)),
        ]);
        let spec = translate(
            &profile,
            &reason,
            "Sharper and more like the prompt, but less saturated.",
            &mut params,
        );
        assert_eq!(spec.phrases.len(), 3);
        assert!(
            spec.phrases.iter().all(|p| p.confidence >= 0.85),
            "{:?}",
            spec.phrases
        );
        // cfg up (prompt) and down (saturation) conflict: left alone.
        assert_eq!(spec.conflicts, ["cfg"]);
        assert!(spec.parameter_mutations.iter().all(|m| m.param != "cfg"));
        let steps = spec
            .parameter_mutations
            .iter()
            .find(|m| m.param == "steps")
            .expect("steps");
        assert_eq!(steps.to, Value::from(60), "clamped to the profile's max");
        assert!(
            spec.prompt_mutations
                .add_positive
                .contains(&"sharp focus".to_string())
        );
        assert!(spec.confidence > MIN_CONFIDENCE);
    }

    #[test]
    fn unknown_words_lower_confidence() {
        let (profile, reason) = resolve("flux1-dev");
        let mut params = BTreeMap::new();
        let spec = translate(&profile, &reason, "more purple elephants", &mut params);
        assert!(spec.confidence < MIN_CONFIDENCE);
        assert_eq!(spec.phrases[0].match_kind, "none");
        // Flux moves guidance, not cfg.
        let spec = translate(&profile, &reason, "more like the prompt", &mut params);
        assert_eq!(spec.parameter_mutations[0].param, "guidance");
        assert_eq!(spec.parameter_mutations[0].target, "FluxGuidance.guidance");
    }

    #[test]
    fn verification_follows_the_thresholds() {
        let (profile, _) = resolve("sdxl");
        let analysis = |q: f64, m: Value, artifacts: &[&str]| OutputAnalysis {
            quality_score: Some(q),
            artifacts: artifacts.iter().map(|a| (*a).to_string()).collect(),
            issues: Vec::new(),
            matches_intent: Some(m),
        };
        assert_eq!(
            verify(&profile, &analysis(0.9, Value::from(0.9), &[]), 1, 3).decision,
            "accept"
        );
        assert_eq!(
            verify(&profile, &analysis(0.9, Value::from(0.3), &[]), 1, 3).decision,
            "reprompt"
        );
        let refine = verify(
            &profile,
            &analysis(0.6, Value::from(0.7), &["oversaturated"]),
            1,
            3,
        );
        assert_eq!(refine.decision, "refine");
        assert!((refine.overall - (0.6 * 0.7 + 0.4 * 0.5)).abs() < 1e-9);
        assert_eq!(
            verify(&profile, &analysis(0.6, Value::from(0.7), &[]), 3, 3).decision,
            "escalate"
        );
        let mut params = BTreeMap::from([("cfg".to_string(), Value::from(8.0))]);
        let moves = fixes(
            &profile,
            &analysis(0.5, Value::from(0.7), &["a bit oversaturated"]),
            &mut params,
        );
        assert_eq!(moves[0].param, "cfg");
        assert_eq!(moves[0].to, Value::from(7.0));
    }
}
