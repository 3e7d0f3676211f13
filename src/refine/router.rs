//! The intent router (catalogue §1.21, `classify_intent`): the original's rules, in the
//! original's order, but matching keywords as whole words so "renew" is not "new" and
//! "remake" is not "make".

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where the workflow stands when the request arrives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowStage {
    /// No workflow loaded yet.
    Empty,
    /// A workflow is loaded and set up.
    #[default]
    Configured,
    /// A run is in progress.
    Executing,
    /// A run has produced an output to look at.
    HasOutput,
}

/// What kind of request it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IntentType {
    Generation,
    Modification,
    Evaluation,
    Exploration,
}

impl IntentType {
    /// The agents that handle this kind of request, in order.
    pub fn delegation_sequence(self) -> &'static [&'static str] {
        match self {
            Self::Generation | Self::Modification => &["intent", "execution", "verify"],
            Self::Evaluation => &["verify"],
            Self::Exploration => &["intent"],
        }
    }
}

const EXPLORATION: &[&str] = &[
    "what would",
    "how would",
    "translate",
    "plan",
    "explore",
    "what if",
    "hypothetical",
];
const EVALUATION: &[&str] = &[
    "evaluate",
    "judge",
    "rate",
    "score",
    "how good",
    "check quality",
    "assess",
    "review quality",
];
const GENERATION: &[&str] = &[
    "create",
    "generate",
    "make",
    "new",
    "from scratch",
    "build",
    "start fresh",
];
const FRESH_START: &[&str] = &["from scratch", "start fresh", "new workflow"];

/// The request's words, lower-cased; everything that is not a letter, digit or apostrophe
/// separates words.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Whether `phrase` (one or more words) appears in `words` as whole, consecutive words.
fn has_phrase(words: &[String], phrase: &str) -> bool {
    let wanted: Vec<&str> = phrase.split(' ').collect();
    words
        .windows(wanted.len())
        .any(|window| window.iter().zip(&wanted).all(|(a, b)| a == b))
}

fn any_phrase(words: &[String], phrases: &[&str]) -> bool {
    phrases.iter().any(|phrase| has_phrase(words, phrase))
}

/// Classifies a request; the first rule that fits wins.
pub fn classify(user_intent: &str, stage: WorkflowStage) -> IntentType {
    let words = words(user_intent);
    if any_phrase(&words, EXPLORATION) {
        IntentType::Exploration
    } else if stage == WorkflowStage::HasOutput && any_phrase(&words, EVALUATION) {
        IntentType::Evaluation
    } else if (stage == WorkflowStage::Empty && any_phrase(&words, GENERATION))
        || any_phrase(&words, FRESH_START)
    {
        IntentType::Generation
    } else {
        IntentType::Modification
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use IntentType::*;
    use WorkflowStage::*;

    #[test]
    fn exploration_comes_first_in_any_state() {
        assert_eq!(
            classify("What would happen with more steps?", HasOutput),
            Exploration
        );
        assert_eq!(classify("plan a new workflow", Empty), Exploration);
        assert_eq!(classify("what if I rate it higher", HasOutput), Exploration);
    }

    #[test]
    fn evaluation_needs_an_output() {
        assert_eq!(classify("rate this image", HasOutput), Evaluation);
        assert_eq!(classify("How good is it?", HasOutput), Evaluation);
        assert_eq!(classify("rate this image", Configured), Modification);
    }

    #[test]
    fn generation_words_count_only_when_empty() {
        assert_eq!(classify("make a cat portrait", Empty), Generation);
        assert_eq!(classify("make it sharper", Configured), Modification);
    }

    #[test]
    fn fresh_start_is_generation_in_any_state() {
        assert_eq!(
            classify("start fresh with a landscape", HasOutput),
            Generation
        );
        assert_eq!(classify("build a new workflow", Executing), Generation);
        assert_eq!(classify("from scratch please", Configured), Generation);
    }

    #[test]
    fn keywords_match_whole_words_only() {
        // The original matched substrings: "renew" held "new", "planet" held "plan",
        // "accurate" held "rate", "remake" held "make".
        assert_eq!(classify("renew the colours", Empty), Modification);
        assert_eq!(classify("a planet in the sky", Configured), Modification);
        assert_eq!(classify("more accurate hands", HasOutput), Modification);
        assert_eq!(classify("remake", Empty), Modification);
        assert_eq!(classify("a renewed workflow", HasOutput), Modification);
    }

    #[test]
    fn delegation_sequences_follow_the_type() {
        assert_eq!(
            Generation.delegation_sequence(),
            ["intent", "execution", "verify"]
        );
        assert_eq!(
            Modification.delegation_sequence(),
            ["intent", "execution", "verify"]
        );
        assert_eq!(Evaluation.delegation_sequence(), ["verify"]);
        assert_eq!(Exploration.delegation_sequence(), ["intent"]);
    }
}
