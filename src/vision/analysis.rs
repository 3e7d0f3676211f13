//! The three questions a vision model answers about outputs (judge one image, compare two,
//! suggest parameter changes), each with the JSON shape it must answer in. An answer that
//! doesn't fit is sent back once with what was wrong; if the second answer doesn't fit
//! either, the caller gets the raw text and the problems instead of a guess.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;

use super::model::{ModelAnswer, ModelRequest, Via};
use crate::error::ToolError;
use crate::images::Fitted;
use crate::mcp::ToolContext;

const SYSTEM: &str = "You are an expert judge of AI-generated images made with ComfyUI. \
Look carefully at the image(s) and answer with one JSON object only, no prose and no code \
fence, exactly in the shape asked for. Scores are numbers, lists are JSON arrays.";

/// One image judged.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Analysis {
    /// Overall technical and aesthetic quality, 0 (unusable) to 1 (excellent).
    pub quality_score: f64,
    /// Visible defects: extra fingers, warped faces, banding, noise, seams, text garbage…
    pub artifacts: Vec<String>,
    /// A sentence on framing, balance and focus.
    pub composition: String,
    /// How well it follows the prompt, 0 to 1; null when no prompt was given.
    pub prompt_adherence: Option<f64>,
    pub strengths: Vec<String>,
    /// Concrete next steps, most useful first.
    pub suggestions: Vec<String>,
}

/// Two images compared.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputComparison {
    /// Whether B is better than A.
    pub improved: bool,
    pub differences: Vec<String>,
    /// B's quality minus A's, -1 to 1.
    pub quality_delta: f64,
    /// What to keep or try next.
    pub recommendation: String,
}

/// One suggested parameter change.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Suggestion {
    /// The input to change, like `cfg`, `steps`, `sampler_name` or `positive prompt`.
    pub parameter: String,
    pub current_value: Value,
    pub suggested_value: Value,
    pub reason: String,
    pub expected_impact: String,
    /// 0 to 1.
    pub confidence: f64,
}

/// Parameter changes suggested for an image.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Improvements {
    pub suggestions: Vec<Suggestion>,
    /// The parameters in the order to try them.
    pub priority_order: Vec<String>,
}

/// A shape a model must answer in: its description for the prompt, and range checks the
/// types alone don't make.
pub trait Answer: DeserializeOwned + Serialize + JsonSchema {
    const SHAPE: &'static str;
    fn problems(&self) -> Vec<String>;
}

fn unit(name: &str, value: f64, low: f64, problems: &mut Vec<String>) {
    if !(low..=1.0).contains(&value) {
        problems.push(format!("{name} must be between {low} and 1, not {value}"));
    }
}

impl Answer for Analysis {
    const SHAPE: &'static str = r#"{"quality_score": 0.0-1.0, "artifacts": [string], "composition": string, "prompt_adherence": 0.0-1.0 or null, "strengths": [string], "suggestions": [string]}"#;

    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        unit("quality_score", self.quality_score, 0.0, &mut problems);
        if let Some(adherence) = self.prompt_adherence {
            unit("prompt_adherence", adherence, 0.0, &mut problems);
        }
        problems
    }
}

impl Answer for OutputComparison {
    const SHAPE: &'static str = r#"{"improved": true|false, "differences": [string], "quality_delta": -1.0-1.0, "recommendation": string}"#;

    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        unit("quality_delta", self.quality_delta, -1.0, &mut problems);
        problems
    }
}

impl Answer for Improvements {
    const SHAPE: &'static str = r#"{"suggestions": [{"parameter": string, "current_value": any, "suggested_value": any, "reason": string, "expected_impact": string, "confidence": 0.0-1.0}], "priority_order": [string]}"#;

    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (i, suggestion) in self.suggestions.iter().enumerate() {
            unit(
                &format!("suggestions[{i}].confidence"),
                suggestion.confidence,
                0.0,
                &mut problems,
            );
        }
        problems
    }
}

/// What the model said, checked.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Judged<T> {
    /// `ok`, or `unparsed` when neither answer fit the shape (see `raw_answer`, `problems`).
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<T>,
    /// The model that answered, as it named itself.
    pub model: String,
    pub via: Via,
    /// The first answer didn't fit and the model was asked again.
    pub repaired: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_answer: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// The JSON object in a model's reply: the whole text, or inside a code fence, or the
/// outermost braces.
fn json_in(text: &str) -> Option<Value> {
    let trimmed = text.trim();
    if let Ok(value) = serde_json::from_str::<Value>(trimmed) {
        return Some(value);
    }
    let fenced = trimmed
        .split("```")
        .nth(1)
        .map(|block| block.trim_start_matches("json").trim());
    if let Some(value) = fenced.and_then(|block| serde_json::from_str::<Value>(block).ok()) {
        return Some(value);
    }
    let start = trimmed.find('{')?;
    let end = trimmed.rfind('}')?;
    serde_json::from_str(trimmed.get(start..=end)?).ok()
}

/// Reads `text` as a `T`, or says what is wrong with it.
pub fn read<T: Answer>(text: &str) -> Result<T, Vec<String>> {
    let Some(value) = json_in(text) else {
        return Err(vec!["the answer is not a JSON object".into()]);
    };
    let parsed: T = serde_json::from_value(value).map_err(|error| vec![error.to_string()])?;
    let problems = parsed.problems();
    if problems.is_empty() {
        Ok(parsed)
    } else {
        Err(problems)
    }
}

/// Asks `question` about `images` and checks the answer against `T`'s shape, asking once
/// more with the problems when it doesn't fit.
pub async fn ask<T: Answer>(
    cx: &ToolContext,
    purpose: &str,
    question: String,
    images: Vec<Fitted>,
) -> Result<Judged<T>, ToolError> {
    let request = ModelRequest {
        system: SYSTEM.to_string(),
        text: format!(
            "{question}\n\nAnswer with JSON of exactly this shape:\n{}",
            T::SHAPE
        ),
        images,
        max_tokens: 1500,
    };
    let first = match cx.ask_model(purpose, &request).await {
        Ok(first) => first,
        // A 2026-07-28 retry answering the repair round: the first answer travels in the
        // request state, not in the responses.
        Err(error @ ToolError::NeedsInput { .. }) => match earlier_answer(cx, purpose) {
            Some(first) => first,
            None => return Err(error),
        },
        Err(error) => return Err(error),
    };
    let problems = match read::<T>(&first.text) {
        Ok(answer) => return Ok(judged(answer, &first, false)),
        Err(problems) => problems,
    };
    tracing::info!(
        purpose,
        ?problems,
        "the model's answer didn't fit; asking again"
    );
    let repair = ModelRequest {
        text: format!(
            "{}\n\nYour previous answer was:\n{}\n\nIt does not fit the shape: {}. Answer again \
             with only the corrected JSON object.",
            request.text,
            first.text,
            problems.join("; ")
        ),
        ..request
    };
    let second = match cx.ask_model(&format!("{purpose}-repair"), &repair).await {
        Err(ToolError::NeedsInput { key, request, .. }) => {
            return Err(ToolError::NeedsInput {
                key,
                request,
                state: Some(
                    serde_json::json!({"purpose": purpose, "text": first.text, "model": first.model})
                        .to_string(),
                ),
            });
        }
        other => other?,
    };
    match read::<T>(&second.text) {
        Ok(answer) => Ok(judged(answer, &second, true)),
        Err(problems) => Ok(Judged {
            status: "unparsed".into(),
            answer: None,
            model: second.model,
            via: second.via,
            repaired: true,
            raw_answer: Some(second.text),
            problems,
        }),
    }
}

/// The first answer carried in a retried request's state, when it is for `purpose`.
fn earlier_answer(cx: &ToolContext, purpose: &str) -> Option<ModelAnswer> {
    let state: Value = serde_json::from_str(cx.request_state()?).ok()?;
    (state.get("purpose")?.as_str()? == purpose).then_some(())?;
    Some(ModelAnswer {
        text: state.get("text")?.as_str()?.to_string(),
        model: state.get("model")?.as_str()?.to_string(),
        via: Via::ClientSampling,
    })
}

fn judged<T>(answer: T, from: &ModelAnswer, repaired: bool) -> Judged<T> {
    Judged {
        status: "ok".into(),
        answer: Some(answer),
        model: from.model.clone(),
        via: from.via,
        repaired,
        raw_answer: None,
        problems: Vec::new(),
    }
}

/// The question for one image.
pub fn analyze_question(prompt_used: Option<&str>, workflow_context: Option<&str>) -> String {
    let mut text = String::from("Judge this generated image.");
    match prompt_used {
        Some(prompt) => text.push_str(&format!(
            "\nThe prompt was: {prompt}\nRate prompt_adherence against it."
        )),
        None => text.push_str("\nNo prompt was given: prompt_adherence is null."),
    }
    if let Some(context) = workflow_context {
        text.push_str(&format!("\nHow it was made: {context}"));
    }
    text
}

pub fn compare_question(change: Option<&str>) -> String {
    let mut text = String::from(
        "The first image is A (before), the second is B (after). Compare them: is B better?",
    );
    if let Some(change) = change {
        text.push_str(&format!("\nWhat changed between them: {change}"));
    }
    text
}

pub fn suggest_question(workflow_summary: &str, goal: Option<&str>) -> String {
    let mut text = format!(
        "Suggest ComfyUI parameter changes that would improve this image.\nThe workflow: \
         {workflow_summary}"
    );
    if let Some(goal) = goal {
        text.push_str(&format!("\nThe artist's goal: {goal}"));
    }
    text.push_str("\nName real inputs (cfg, steps, sampler_name, scheduler, denoise, width, height, the prompts, LoRA strengths) with their current and suggested values.");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_found_bare_fenced_or_wrapped_in_prose() {
        let bare = r#"{"improved": true, "differences": ["sharper"], "quality_delta": 0.3, "recommendation": "keep B"}"#;
        assert!(read::<OutputComparison>(bare).is_ok());
        let fenced = format!("Here you go:\n```json\n{bare}\n```\nHope it helps.");
        assert!(read::<OutputComparison>(&fenced).is_ok());
        let prose = format!("Sure! {bare} Anything else?");
        assert!(read::<OutputComparison>(&prose).is_ok());
    }

    #[test]
    fn wrong_shapes_and_ranges_are_named() {
        let problems = read::<Analysis>("I think it looks nice.").expect_err("no JSON");
        assert_eq!(problems, ["the answer is not a JSON object"]);
        let problems = read::<Analysis>(r#"{"quality_score": "high"}"#).expect_err("types");
        assert!(
            problems[0].contains("quality_score") || problems[0].contains("invalid type"),
            "{problems:?}"
        );
        let out_of_range = r#"{"quality_score": 7, "artifacts": [], "composition": "centred", "prompt_adherence": null, "strengths": [], "suggestions": []}"#;
        let problems = read::<Analysis>(out_of_range).expect_err("range");
        assert_eq!(problems, ["quality_score must be between 0 and 1, not 7"]);
        let extra = r#"{"improved": true, "differences": [], "quality_delta": 0.1, "recommendation": "x", "mood": "happy"}"#;
        assert!(read::<OutputComparison>(extra).is_err());
        let confidence = r#"{"suggestions": [{"parameter": "cfg", "current_value": 9, "suggested_value": 6, "reason": "burnt", "expected_impact": "softer", "confidence": 1.5}], "priority_order": ["cfg"]}"#;
        let problems = read::<Improvements>(confidence).expect_err("range");
        assert!(
            problems[0].starts_with("suggestions[0].confidence"),
            "{problems:?}"
        );
    }

    #[test]
    fn questions_carry_the_context() {
        assert!(analyze_question(Some("a fox"), None).contains("a fox"));
        assert!(analyze_question(None, None).contains("null"));
        assert!(compare_question(Some("cfg 9 to 6")).contains("cfg 9 to 6"));
        assert!(
            suggest_question("SDXL, 30 steps", Some("more contrast")).contains("more contrast")
        );
    }
}
