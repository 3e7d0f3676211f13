//! What the artist asked for and how the assistant read it (captured intent), and the
//! journey of attempts towards it (the iteration log). Both belong to a session and are kept
//! on disk by the tools through `SessionDocs`; `write_image_metadata` can carry them into the
//! image later.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Intents remembered per session besides the current one; older ones are dropped first.
pub const MAX_INTENT_HISTORY: usize = 50;
/// Steps one iteration log may hold.
pub const MAX_ITERATION_STEPS: usize = 200;
/// Patches one step may carry.
pub const MAX_PATCHES: usize = 100;
/// Longest request, interpretation, trigger, feedback or observation, in characters.
pub const MAX_TEXT_CHARS: usize = 4000;
/// Most style references per intent.
pub const MAX_REFERENCES: usize = 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Intent {
    pub user_request: String,
    pub interpretation: String,
    #[serde(default)]
    pub style_references: Vec<String>,
    #[serde(default)]
    pub session_context: Option<String>,
    pub captured_at: String,
}

/// The session's intents: the current one and those before it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IntentLog {
    pub current: Option<Intent>,
    /// Earlier intents, oldest first.
    #[serde(default)]
    pub history: Vec<Intent>,
    /// How many intents were captured in all (history is bounded).
    #[serde(default)]
    pub captured_total: u64,
}

impl IntentLog {
    /// Makes `intent` current, moving the previous one into the bounded history.
    pub fn capture(&mut self, intent: Intent) {
        if let Some(previous) = self.current.replace(intent) {
            self.history.push(previous);
            if self.history.len() > MAX_INTENT_HISTORY {
                let excess = self.history.len() - MAX_INTENT_HISTORY;
                self.history.drain(..excess);
            }
        }
        self.captured_total += 1;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IterationType {
    Initial,
    Refinement,
    Variation,
    Rollback,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct IterationStep {
    pub iteration: u32,
    #[serde(rename = "type")]
    pub kind: IterationType,
    pub trigger: String,
    #[serde(default)]
    pub patches: Vec<Value>,
    #[serde(default)]
    pub params: Map<String, Value>,
    #[serde(default)]
    pub feedback: Option<String>,
    #[serde(default)]
    pub observation: Option<String>,
    pub recorded_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finalized {
    pub accepted_iteration: u32,
    pub finalized_at: String,
}

/// One tracked journey towards an intent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IterationLog {
    pub intent_summary: String,
    pub started_at: String,
    #[serde(default)]
    pub steps: Vec<IterationStep>,
    #[serde(default)]
    pub finalized: Option<Finalized>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IntentError {
    #[error("The {what} is empty")]
    Empty { what: &'static str },
    #[error("The {what} is {count} long, more than the {limit} allowed")]
    TooLong {
        what: &'static str,
        count: usize,
        limit: usize,
    },
    #[error("No iteration tracking has been started in this session")]
    NotTracking,
    #[error("This iteration log was already finalized (iteration {accepted} accepted)")]
    AlreadyFinalized { accepted: u32 },
    #[error("Iteration {accepted} was never recorded; recorded iterations: {}", list(.recorded))]
    UnknownIteration { accepted: u32, recorded: Vec<u32> },
    #[error("The log already holds {limit} steps, the most one log keeps")]
    TooManySteps { limit: usize },
}

impl From<IntentError> for crate::error::ToolError {
    fn from(error: IntentError) -> Self {
        Self::rejected(error.to_string(), error.hint())
    }
}

fn list(numbers: &[u32]) -> String {
    if numbers.is_empty() {
        "none".to_string()
    } else {
        numbers
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl IntentError {
    pub fn hint(&self) -> &'static str {
        match self {
            Self::Empty { .. } => "Fill it in and call the tool again.",
            Self::TooLong { .. } => "Shorten it; long details fit better in a note (add_note).",
            Self::NotTracking => {
                "Call start_iteration_tracking with a summary of the intent first."
            }
            Self::AlreadyFinalized { .. } => {
                "Call start_iteration_tracking to begin a new log; the finished one stays until then."
            }
            Self::UnknownIteration { .. } => {
                "Pass the number of an iteration recorded with record_iteration_step."
            }
            Self::TooManySteps { .. } => "Finalize this log and start a new one.",
        }
    }
}

/// Trims `text` and checks it is present and not too long.
pub fn required(what: &'static str, text: &str) -> Result<String, IntentError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(IntentError::Empty { what });
    }
    optional(what, Some(text)).map(|text| text.unwrap_or_default())
}

/// Trims `text`; empty becomes `None`; too long is an error.
pub fn optional(what: &'static str, text: Option<&str>) -> Result<Option<String>, IntentError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let count = text.chars().count();
    if count > MAX_TEXT_CHARS {
        return Err(IntentError::TooLong {
            what,
            count,
            limit: MAX_TEXT_CHARS,
        });
    }
    Ok(Some(text.to_string()))
}

/// Checks a list's length against its bound.
pub fn bounded<T>(what: &'static str, items: &[T], limit: usize) -> Result<(), IntentError> {
    if items.len() > limit {
        return Err(IntentError::TooLong {
            what,
            count: items.len(),
            limit,
        });
    }
    Ok(())
}

impl IterationLog {
    pub fn start(intent_summary: String, now: String) -> Self {
        Self {
            intent_summary,
            started_at: now,
            steps: Vec::new(),
            finalized: None,
        }
    }

    pub fn record(&mut self, step: IterationStep) -> Result<(), IntentError> {
        if let Some(done) = &self.finalized {
            return Err(IntentError::AlreadyFinalized {
                accepted: done.accepted_iteration,
            });
        }
        if self.steps.len() >= MAX_ITERATION_STEPS {
            return Err(IntentError::TooManySteps {
                limit: MAX_ITERATION_STEPS,
            });
        }
        self.steps.push(step);
        Ok(())
    }

    /// The distinct iteration numbers recorded, in order.
    pub fn iterations(&self) -> Vec<u32> {
        let mut numbers: Vec<u32> = self.steps.iter().map(|s| s.iteration).collect();
        numbers.sort_unstable();
        numbers.dedup();
        numbers
    }

    pub fn finalize(&mut self, accepted: u32, now: String) -> Result<(), IntentError> {
        if let Some(done) = &self.finalized {
            return Err(IntentError::AlreadyFinalized {
                accepted: done.accepted_iteration,
            });
        }
        let recorded = self.iterations();
        if !recorded.contains(&accepted) {
            return Err(IntentError::UnknownIteration { accepted, recorded });
        }
        self.finalized = Some(Finalized {
            accepted_iteration: accepted,
            finalized_at: now,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(request: &str) -> Intent {
        Intent {
            user_request: request.into(),
            interpretation: "x".into(),
            style_references: Vec::new(),
            session_context: None,
            captured_at: "t".into(),
        }
    }

    fn step(iteration: u32) -> IterationStep {
        IterationStep {
            iteration,
            kind: IterationType::Refinement,
            trigger: "too dark".into(),
            patches: Vec::new(),
            params: Map::new(),
            feedback: None,
            observation: None,
            recorded_at: "t".into(),
        }
    }

    #[test]
    fn capturing_keeps_a_bounded_history() {
        let mut log = IntentLog::default();
        for i in 0..(MAX_INTENT_HISTORY + 3) {
            log.capture(intent(&format!("r{i}")));
        }
        assert_eq!(log.history.len(), MAX_INTENT_HISTORY);
        assert_eq!(log.captured_total, (MAX_INTENT_HISTORY + 3) as u64);
        assert_eq!(
            log.current.as_ref().map(|i| i.user_request.as_str()),
            Some(format!("r{}", MAX_INTENT_HISTORY + 2).as_str())
        );
        assert_eq!(log.history[0].user_request, "r2");
    }

    #[test]
    fn finalizing_checks_the_accepted_iteration_and_closes_the_log() {
        let mut log = IterationLog::start("moody harbour".into(), "t0".into());
        log.record(step(1)).expect("recorded");
        log.record(step(2)).expect("recorded");
        log.record(step(2)).expect("recorded");
        assert_eq!(log.iterations(), [1, 2]);
        let error = log.finalize(5, "t1".into()).expect_err("unknown");
        assert_eq!(
            error.to_string(),
            "Iteration 5 was never recorded; recorded iterations: 1, 2"
        );
        log.finalize(2, "t2".into()).expect("finalized");
        assert!(matches!(
            log.record(step(3)),
            Err(IntentError::AlreadyFinalized { accepted: 2 })
        ));
        assert!(matches!(
            log.finalize(1, "t3".into()),
            Err(IntentError::AlreadyFinalized { .. })
        ));
    }

    #[test]
    fn text_is_trimmed_checked_and_bounded() {
        assert_eq!(required("trigger", "  x "), Ok("x".to_string()));
        assert_eq!(
            required("trigger", "  "),
            Err(IntentError::Empty { what: "trigger" })
        );
        assert_eq!(optional("feedback", Some(" ")), Ok(None));
        assert!(matches!(
            optional("feedback", Some(&"x".repeat(MAX_TEXT_CHARS + 1))),
            Err(IntentError::TooLong { .. })
        ));
        let mut log = IterationLog::start("s".into(), "t".into());
        for i in 0..MAX_ITERATION_STEPS {
            log.record(step(i as u32)).expect("recorded");
        }
        assert!(matches!(
            log.record(step(0)),
            Err(IntentError::TooManySteps { .. })
        ));
    }
}
