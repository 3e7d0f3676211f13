//! What the recorded outcomes say: the best model combinations, the parameter values that
//! scored well, how quality and speed move over time, recommendations for the next render,
//! and the feedback an artist gives without saying it (reuse, abandonment, reverts). Every
//! average weighs an outcome by its age (7-day half-life, floor 0.01).

use std::collections::HashMap;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use super::store::{Param, Row};
use super::{Feedback, decay_weight};

/// Quality at or above this counts as a success when learning parameter values.
const GOOD_QUALITY: f64 = 0.7;
/// Below this a combination or value is something to avoid.
const POOR_QUALITY: f64 = 0.4;

/// A weighted running mean.
#[derive(Debug, Default, Clone, Copy)]
struct Mean {
    sum: f64,
    weight: f64,
    count: usize,
}

impl Mean {
    fn add(&mut self, value: f64, weight: f64) {
        self.sum += value * weight;
        self.weight += weight;
        self.count += 1;
    }

    fn get(&self) -> Option<f64> {
        (self.weight > 0.0).then(|| self.sum / self.weight)
    }
}

fn round(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

/// Which rows a question is about.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// `None` for every session.
    pub session: Option<&'a str>,
    /// Case-insensitive substring of the model combination or of `key_params.model`.
    pub model_filter: Option<&'a str>,
    pub now: f64,
}

impl Scope<'_> {
    fn select<'r>(&self, rows: &'r [Row]) -> Vec<&'r Row> {
        let filter = self.model_filter.map(str::to_lowercase);
        rows.iter()
            .filter(|row| self.session.is_none_or(|s| &*row.session == s))
            .filter(|row| {
                filter.as_deref().is_none_or(|f| {
                    row.combo.to_lowercase().contains(f)
                        || row.params.iter().any(|(k, v)| {
                            &**k == "model"
                                && matches!(v, Param::Text(t) if t.to_lowercase().contains(f))
                        })
                })
            })
            .collect()
    }

    fn weight(&self, row: &Row) -> f64 {
        decay_weight(self.now - row.ts)
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ComboStats {
    pub model_combo: String,
    pub uses: usize,
    /// Time-weighted mean quality of the outcomes that had a score.
    pub avg_quality: Option<f64>,
    pub avg_render_time_s: Option<f64>,
    pub positive: usize,
    pub negative: usize,
    /// Quality adjusted for explicit feedback and how many uses back it.
    pub score: f64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ParamValueStats {
    pub value: Value,
    pub uses: usize,
    pub avg_quality: Option<f64>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ParamStats {
    /// The value that scored best (numbers: the weighted mean among good outcomes).
    pub best_value: Value,
    pub samples: usize,
    /// For numbers: the range seen among good outcomes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub good_range: Option<[f64; 2]>,
    /// For words (samplers, schedulers): each value's record, best first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<ParamValueStats>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct QualityTrends {
    pub scored_outcomes: usize,
    pub overall_avg: Option<f64>,
    /// Mean of the last 7 days and of the 7 before them (unweighted).
    pub last_7_days_avg: Option<f64>,
    pub previous_7_days_avg: Option<f64>,
    /// `improving`, `declining`, `stable` or `insufficient_data`.
    pub trend: String,
    pub feedback: FeedbackCounts,
}

#[derive(Debug, Default, Serialize, JsonSchema)]
pub struct FeedbackCounts {
    pub positive: usize,
    pub negative: usize,
    pub neutral: usize,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SpeedAnalysis {
    pub timed_outcomes: usize,
    pub avg_render_time_s: Option<f64>,
    pub fastest_render_time_s: Option<f64>,
    pub slowest_render_time_s: Option<f64>,
    /// Each combination's weighted mean render time, fastest first.
    pub by_model_combo: Vec<ComboSpeed>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ComboSpeed {
    pub model_combo: String,
    pub avg_render_time_s: f64,
    pub uses: usize,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Patterns {
    pub outcomes_count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best_model_combos: Option<Vec<ComboStats>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optimal_params: Option<std::collections::BTreeMap<String, ParamStats>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality_trends: Option<QualityTrends>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed_analysis: Option<SpeedAnalysis>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Query {
    BestModels,
    OptimalParams,
    QualityTrends,
    SpeedAnalysis,
    #[default]
    All,
}

pub fn learned_patterns(rows: &[Row], scope: Scope<'_>, query: Query) -> Patterns {
    let rows = scope.select(rows);
    let wants = |q: Query| query == Query::All || query == q;
    Patterns {
        outcomes_count: rows.len(),
        best_model_combos: wants(Query::BestModels).then(|| combos(&rows, scope)),
        optimal_params: wants(Query::OptimalParams).then(|| optimal_params(&rows, scope)),
        quality_trends: wants(Query::QualityTrends).then(|| trends(&rows, scope)),
        speed_analysis: wants(Query::SpeedAnalysis).then(|| speed(&rows, scope)),
    }
}

fn combos(rows: &[&Row], scope: Scope<'_>) -> Vec<ComboStats> {
    struct Acc {
        quality: Mean,
        render: Mean,
        uses: usize,
        positive: usize,
        negative: usize,
    }
    let mut by_combo: HashMap<&Arc<str>, Acc> = HashMap::new();
    for row in rows.iter().filter(|row| !row.combo.is_empty()) {
        let weight = scope.weight(row);
        let acc = by_combo.entry(&row.combo).or_insert(Acc {
            quality: Mean::default(),
            render: Mean::default(),
            uses: 0,
            positive: 0,
            negative: 0,
        });
        acc.uses += 1;
        if let Some(q) = row.quality {
            acc.quality.add(q, weight);
        }
        if let Some(t) = row.render_time {
            acc.render.add(t, weight);
        }
        match row.feedback {
            Feedback::Positive => acc.positive += 1,
            Feedback::Negative => acc.negative += 1,
            Feedback::Neutral => {}
        }
    }
    let mut out: Vec<ComboStats> = by_combo
        .into_iter()
        .map(|(combo, acc)| {
            let quality = acc.quality.get();
            let feedback = (acc.positive as f64 - acc.negative as f64) / acc.uses.max(1) as f64;
            // Few uses pull the score towards neutral (0.5).
            let support = acc.uses as f64 / (acc.uses as f64 + 2.0);
            let base = quality.unwrap_or(0.5) + 0.1 * feedback;
            ComboStats {
                model_combo: combo.to_string(),
                uses: acc.uses,
                avg_quality: quality.map(|q| round(q, 3)),
                avg_render_time_s: acc.render.get().map(|t| round(t, 2)),
                positive: acc.positive,
                negative: acc.negative,
                score: round(0.5 + (base - 0.5) * support, 3),
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.model_combo.cmp(&b.model_combo))
    });
    out.truncate(10);
    out
}

fn optimal_params(
    rows: &[&Row],
    scope: Scope<'_>,
) -> std::collections::BTreeMap<String, ParamStats> {
    #[derive(Default)]
    struct NumAcc {
        good: Mean,
        min: f64,
        max: f64,
        samples: usize,
    }
    let mut numbers: HashMap<&str, NumAcc> = HashMap::new();
    let mut words: HashMap<&str, HashMap<&str, Mean>> = HashMap::new();
    for row in rows {
        let Some(quality) = row.quality else { continue };
        let weight = scope.weight(row);
        for (name, value) in &row.params {
            if matches!(&**name, "seed" | "noise_seed" | "model") {
                continue; // a seed is not a setting to learn; models are ranked as combinations
            }
            match value {
                Param::Num(v) => {
                    let acc = numbers.entry(name).or_insert(NumAcc {
                        min: f64::INFINITY,
                        max: f64::NEG_INFINITY,
                        ..NumAcc::default()
                    });
                    acc.samples += 1;
                    if quality >= GOOD_QUALITY {
                        acc.good.add(*v, weight * quality);
                        acc.min = acc.min.min(*v);
                        acc.max = acc.max.max(*v);
                    }
                }
                Param::Text(t) => words
                    .entry(name)
                    .or_default()
                    .entry(t)
                    .or_default()
                    .add(quality, weight),
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    for (name, acc) in numbers {
        if let Some(best) = acc.good.get() {
            out.insert(
                name.to_string(),
                ParamStats {
                    best_value: Value::from(round(best, 3)),
                    samples: acc.samples,
                    good_range: Some([acc.min, acc.max]),
                    values: Vec::new(),
                },
            );
        }
    }
    for (name, values) in words {
        let mut ranked: Vec<ParamValueStats> = values
            .into_iter()
            .map(|(value, mean)| ParamValueStats {
                value: Value::from(value),
                uses: mean.count,
                avg_quality: mean.get().map(|q| round(q, 3)),
            })
            .collect();
        ranked.sort_by(|a, b| {
            b.avg_quality
                .unwrap_or_default()
                .total_cmp(&a.avg_quality.unwrap_or_default())
                .then_with(|| b.uses.cmp(&a.uses))
        });
        ranked.truncate(5);
        let samples = ranked.iter().map(|v| v.uses).sum();
        if let Some(best) = ranked.first() {
            out.insert(
                name.to_string(),
                ParamStats {
                    best_value: best.value.clone(),
                    samples,
                    good_range: None,
                    values: ranked,
                },
            );
        }
    }
    out
}

fn trends(rows: &[&Row], scope: Scope<'_>) -> QualityTrends {
    let week = 7.0 * 86_400.0;
    let mut overall = Mean::default();
    let mut last = Mean::default();
    let mut previous = Mean::default();
    let mut feedback = FeedbackCounts::default();
    for row in rows {
        match row.feedback {
            Feedback::Positive => feedback.positive += 1,
            Feedback::Negative => feedback.negative += 1,
            Feedback::Neutral => feedback.neutral += 1,
        }
        let Some(q) = row.quality else { continue };
        overall.add(q, scope.weight(row));
        let age = scope.now - row.ts;
        if age <= week {
            last.add(q, 1.0);
        } else if age <= 2.0 * week {
            previous.add(q, 1.0);
        }
    }
    let trend = match (last.get(), previous.get()) {
        (Some(now), Some(before)) if last.count >= 3 && previous.count >= 3 => {
            if now - before > 0.05 {
                "improving"
            } else if before - now > 0.05 {
                "declining"
            } else {
                "stable"
            }
        }
        _ => "insufficient_data",
    };
    QualityTrends {
        scored_outcomes: overall.count,
        overall_avg: overall.get().map(|q| round(q, 3)),
        last_7_days_avg: last.get().map(|q| round(q, 3)),
        previous_7_days_avg: previous.get().map(|q| round(q, 3)),
        trend: trend.to_string(),
        feedback,
    }
}

fn speed(rows: &[&Row], scope: Scope<'_>) -> SpeedAnalysis {
    let mut all = Mean::default();
    let mut fastest = f64::INFINITY;
    let mut slowest = f64::NEG_INFINITY;
    let mut by_combo: HashMap<&Arc<str>, Mean> = HashMap::new();
    for row in rows {
        let Some(t) = row.render_time else { continue };
        let weight = scope.weight(row);
        all.add(t, weight);
        fastest = fastest.min(t);
        slowest = slowest.max(t);
        if !row.combo.is_empty() {
            by_combo.entry(&row.combo).or_default().add(t, weight);
        }
    }
    let mut combos: Vec<ComboSpeed> = by_combo
        .into_iter()
        .filter_map(|(combo, mean)| {
            Some(ComboSpeed {
                model_combo: combo.to_string(),
                avg_render_time_s: round(mean.get()?, 2),
                uses: mean.count,
            })
        })
        .collect();
    combos.sort_by(|a, b| a.avg_render_time_s.total_cmp(&b.avg_render_time_s));
    combos.truncate(10);
    SpeedAnalysis {
        timed_outcomes: all.count,
        avg_render_time_s: all.get().map(|t| round(t, 2)),
        fastest_render_time_s: fastest.is_finite().then_some(fastest),
        slowest_render_time_s: slowest.is_finite().then_some(slowest),
        by_model_combo: combos,
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Recommendation {
    /// `model_combo`, `parameter`, `performance`, `context`, `warning` or `goal`.
    #[serde(rename = "type")]
    pub kind: String,
    pub suggestion: String,
    pub reason: String,
    /// 0 to 1: how much the recorded outcomes back it.
    pub confidence: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Recommendations {
    pub recommendations: Vec<Recommendation>,
    /// How many outcomes they rest on.
    pub based_on: usize,
    /// Combinations and values with poor results or negative feedback.
    pub avoidance_patterns: Vec<String>,
    pub message: String,
}

/// What to look at for the next render.
#[derive(Debug, Clone, Copy)]
pub struct Current<'a> {
    pub model: Option<&'a str>,
    pub params: Option<&'a serde_json::Map<String, Value>>,
    pub goal: Option<&'a str>,
}

fn confidence(uses: usize) -> f64 {
    round((uses as f64 / (uses as f64 + 3.0)).min(0.95), 2)
}

pub fn recommendations(rows: &[Row], scope: Scope<'_>, current: Current<'_>) -> Recommendations {
    let selected = scope.select(rows);
    let mut out = Vec::new();
    let mut avoid = Vec::new();
    if selected.is_empty() {
        return Recommendations {
            recommendations: Vec::new(),
            based_on: 0,
            avoidance_patterns: Vec::new(),
            message: "No outcomes recorded yet in this scope. Record results with record_outcome; recommendations follow from them.".into(),
        };
    }
    let combos = combos(&selected, scope);
    let current_model = current.model.map(str::to_lowercase);
    let current_combo = current_model.as_deref().and_then(|m| {
        combos
            .iter()
            .find(|c| c.model_combo.to_lowercase().contains(m))
    });
    if let Some(best) = combos.first().filter(|best| best.uses >= 2) {
        let is_current = current_combo.is_some_and(|c| c.model_combo == best.model_combo);
        if !is_current {
            out.push(Recommendation {
                kind: "model_combo".into(),
                suggestion: format!("Try {}", best.model_combo),
                reason: format!(
                    "It scored best of the combinations used ({} uses, mean quality {}).",
                    best.uses,
                    best.avg_quality
                        .map_or("not scored".into(), |q| q.to_string())
                ),
                confidence: confidence(best.uses),
                parameter: None,
                value: None,
            });
        }
    }
    for combo in &combos {
        if combo.uses >= 2
            && (combo.avg_quality.is_some_and(|q| q < POOR_QUALITY)
                || combo.negative * 2 > combo.uses)
        {
            avoid.push(format!("model combination {}", combo.model_combo));
            if current_combo.is_some_and(|c| c.model_combo == combo.model_combo) {
                out.push(Recommendation {
                    kind: "warning".into(),
                    suggestion: format!("Consider moving away from {}", combo.model_combo),
                    reason: format!(
                        "It gave poor results or negative feedback in {} uses.",
                        combo.uses
                    ),
                    confidence: confidence(combo.uses),
                    parameter: None,
                    value: None,
                });
            }
        }
    }
    let params = optimal_params(&selected, scope);
    if let Some(current_params) = current.params {
        for (name, stats) in &params {
            let Some(now) = current_params.get(name) else {
                continue;
            };
            let differs = match (now.as_f64(), stats.best_value.as_f64()) {
                (Some(a), Some(b)) => (a - b).abs() > 0.1 * b.abs().max(1.0),
                _ => now != &stats.best_value,
            };
            if differs && stats.samples >= 2 {
                out.push(Recommendation {
                    kind: "parameter".into(),
                    suggestion: format!("Set {name} to {}", stats.best_value),
                    reason: format!(
                        "Outcomes that scored well used about {} ({} samples; now {now}).",
                        stats.best_value, stats.samples
                    ),
                    confidence: confidence(stats.samples),
                    parameter: Some(name.clone()),
                    value: Some(stats.best_value.clone()),
                });
            }
        }
    }
    // Poor values are worth knowing whatever the current settings hold.
    for (name, stats) in &params {
        for value in &stats.values {
            if value.uses >= 2 && value.avg_quality.is_some_and(|q| q < POOR_QUALITY) {
                avoid.push(format!("{name} = {}", value.value));
            }
        }
    }
    let speed = speed(&selected, scope);
    if let (Some(current), Some(fastest)) = (current_combo, speed.by_model_combo.first())
        && let Some(now) = current.avg_render_time_s
        && now > 1.5 * fastest.avg_render_time_s
        && fastest.model_combo != current.model_combo
    {
        out.push(Recommendation {
            kind: "performance".into(),
            suggestion: format!("For drafts, {} renders faster", fastest.model_combo),
            reason: format!(
                "{:.1} s on average against {now:.1} s for the current models.",
                fastest.avg_render_time_s
            ),
            confidence: confidence(fastest.uses),
            parameter: None,
            value: None,
        });
    }
    if let Some(goal) = current
        .goal
        .map(str::to_lowercase)
        .filter(|g| !g.trim().is_empty())
    {
        let words: Vec<&str> = goal
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.len() > 3)
            .collect();
        let mut related: Vec<&&Row> = selected
            .iter()
            .filter(|row| {
                row.quality.is_some_and(|q| q >= GOOD_QUALITY)
                    && row.summary.as_deref().is_some_and(|s| {
                        let s = s.to_lowercase();
                        words.iter().any(|w| s.contains(w))
                    })
            })
            .collect();
        related.sort_by(|a, b| {
            b.quality
                .unwrap_or_default()
                .total_cmp(&a.quality.unwrap_or_default())
        });
        if let Some(best) = related.first() {
            out.push(Recommendation {
                kind: "goal".into(),
                suggestion: format!(
                    "Start from what worked for \"{}\"{}",
                    best.summary.as_deref().unwrap_or_default(),
                    if best.combo.is_empty() {
                        String::new()
                    } else {
                        format!(" with {}", best.combo)
                    }
                ),
                reason: format!(
                    "{} similar outcomes scored well; the best scored {}.",
                    related.len(),
                    best.quality.unwrap_or_default()
                ),
                confidence: confidence(related.len()),
                parameter: None,
                value: None,
            });
        }
    }
    if selected.len() < 5 {
        out.push(Recommendation {
            kind: "context".into(),
            suggestion: "Record a few more outcomes with quality scores".into(),
            reason: format!(
                "Only {} outcomes are recorded here, so these suggestions are tentative.",
                selected.len()
            ),
            confidence: 0.3,
            parameter: None,
            value: None,
        });
    }
    out.sort_by(|a, b| {
        b.confidence
            .total_cmp(&a.confidence)
            .then_with(|| a.kind.cmp(&b.kind))
            .then_with(|| a.suggestion.cmp(&b.suggestion))
    });
    out.truncate(8);
    avoid.sort();
    avoid.dedup();
    let message = format!(
        "{} recommendations from {} outcomes.",
        out.len(),
        selected.len()
    );
    Recommendations {
        recommendations: out,
        based_on: selected.len(),
        avoidance_patterns: avoid,
        message,
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Signal {
    /// `reuse`, `abandonment`, `refinement_burst` or `parameter_revert`.
    pub signal: String,
    /// `positive` or `negative`.
    pub polarity: String,
    /// 0 to 1.
    pub strength: f64,
    pub detail: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct FeedbackSummary {
    pub total_signals: usize,
    pub positive: usize,
    pub negative: usize,
    pub avg_strength: f64,
    /// `likely_satisfied`, `likely_unsatisfied`, `mixed` or `insufficient_data`.
    pub inferred_satisfaction: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ImplicitFeedback {
    pub signals: Vec<Signal>,
    pub summary: FeedbackSummary,
    pub outcomes_analyzed: usize,
    pub total_outcomes: usize,
}

/// Reads the session's last `window` outcomes (oldest first) for what the artist did rather
/// than said: coming back to a setup (reuse), dropping a model after one poor try
/// (abandonment), quick runs of tries on one setup (a refinement burst), and undoing a change
/// (a parameter revert).
pub fn implicit_feedback(rows: &[Row], session: &str, window: usize) -> ImplicitFeedback {
    let mine: Vec<&Row> = rows.iter().filter(|row| &*row.session == session).collect();
    let total = mine.len();
    let mut recent: Vec<&Row> = mine.into_iter().rev().take(window).collect();
    recent.reverse();
    recent.sort_by(|a, b| a.ts.total_cmp(&b.ts).then(a.id.cmp(&b.id)));
    let mut signals = Vec::new();
    let signal = |name: &str, positive: bool, strength: f64, detail: String| Signal {
        signal: name.into(),
        polarity: if positive { "positive" } else { "negative" }.into(),
        strength: round(strength.clamp(0.0, 1.0), 2),
        detail,
    };
    // Reuse: a setup (same parameters) used again after something else was tried.
    let mut last_seen: HashMap<&str, usize> = HashMap::new();
    for (i, row) in recent.iter().enumerate() {
        if let Some(&before) = last_seen.get(&*row.hash)
            && i > before + 1
        {
            // A return to A after trying B: if B was A's direct revert pair it counts below.
            let between = &recent[before + 1..i];
            let reverted = between.len() == 1;
            if !reverted {
                signals.push(signal(
                    "reuse",
                    true,
                    0.6,
                    format!(
                        "came back to the setup {} after {} other tries",
                        row.hash,
                        between.len()
                    ),
                ));
            }
        }
        last_seen.insert(&row.hash, i);
    }
    // Parameter revert: A → B → A.
    for w in recent.windows(3) {
        if w[0].hash == w[2].hash && w[0].hash != w[1].hash {
            signals.push(signal(
                "parameter_revert",
                false,
                0.5,
                format!("changed the setup then went back to {}", w[0].hash),
            ));
        }
    }
    // Abandonment: a model combination tried once, judged poorly, never used again.
    for (i, row) in recent.iter().enumerate() {
        if row.combo.is_empty() || i + 1 == recent.len() {
            continue;
        }
        let poor =
            row.feedback == Feedback::Negative || row.quality.is_some_and(|q| q < POOR_QUALITY);
        let used_elsewhere = recent
            .iter()
            .enumerate()
            .any(|(j, other)| j != i && other.combo == row.combo);
        if poor && !used_elsewhere {
            signals.push(signal(
                "abandonment",
                false,
                0.7,
                format!("dropped {} after one poor result", row.combo),
            ));
        }
    }
    // Refinement burst: 3+ tries on one combination, each within 10 minutes of the last.
    let mut start = 0;
    for i in 1..=recent.len() {
        let continues = i < recent.len()
            && recent[i].combo == recent[i - 1].combo
            && recent[i].ts - recent[i - 1].ts <= 600.0;
        if !continues {
            let run = &recent[start..i];
            if run.len() >= 3 {
                let first = run.first().and_then(|r| r.quality);
                let last = run.last().and_then(|r| r.quality);
                let improved = matches!((first, last), (Some(a), Some(b)) if b >= a);
                let ended_well = run.last().is_some_and(|r| r.feedback == Feedback::Positive);
                signals.push(signal(
                    "refinement_burst",
                    improved || ended_well,
                    0.3 + 0.1 * run.len() as f64,
                    format!(
                        "{} quick tries on {}",
                        run.len(),
                        if run[0].combo.is_empty() {
                            "one setup"
                        } else {
                            &run[0].combo
                        }
                    ),
                ));
            }
            start = i;
        }
    }
    let positive = signals.iter().filter(|s| s.polarity == "positive").count();
    let negative = signals.len() - positive;
    let avg_strength = if signals.is_empty() {
        0.0
    } else {
        round(
            signals.iter().map(|s| s.strength).sum::<f64>() / signals.len() as f64,
            2,
        )
    };
    let inferred = if recent.len() < 3 || signals.is_empty() {
        "insufficient_data"
    } else if positive as f64 >= 1.5 * negative as f64 && positive > 0 {
        "likely_satisfied"
    } else if negative as f64 >= 1.5 * positive as f64 && negative > 0 {
        "likely_unsatisfied"
    } else {
        "mixed"
    };
    ImplicitFeedback {
        summary: FeedbackSummary {
            total_signals: signals.len(),
            positive,
            negative,
            avg_strength,
            inferred_satisfaction: inferred.into(),
        },
        signals,
        outcomes_analyzed: recent.len(),
        total_outcomes: total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        id: i64,
        session: &str,
        ts: f64,
        combo: &str,
        quality: Option<f64>,
        params: &[(&str, Param)],
    ) -> Row {
        Row {
            id,
            session: session.into(),
            ts,
            combo: combo.into(),
            hash: format!("{params:?}").into(),
            quality,
            render_time: Some(10.0 + id as f64),
            feedback: Feedback::Neutral,
            params: params
                .iter()
                .map(|(k, v)| (Arc::from(*k), v.clone()))
                .collect(),
            summary: Some("foggy harbour poster".into()),
        }
    }

    const DAY: f64 = 86_400.0;

    #[test]
    fn recent_outcomes_outweigh_old_ones() {
        let now = 100.0 * DAY;
        // An old run of great results for A, a recent run of middling ones for B.
        let mut rows: Vec<Row> = (0..5)
            .map(|i| row(i, "s", now - 60.0 * DAY, "A", Some(0.9), &[]))
            .collect();
        rows.extend((5..10).map(|i| row(i, "s", now - DAY, "B", Some(0.6), &[])));
        rows.push(row(10, "s", now, "A", Some(0.2), &[]));
        let scope = Scope {
            session: Some("s"),
            model_filter: None,
            now,
        };
        let patterns = learned_patterns(&rows, scope, Query::BestModels);
        let combos = patterns.best_model_combos.expect("combos");
        // A's one recent poor result dominates its weighted mean.
        let a = combos.iter().find(|c| c.model_combo == "A").expect("A");
        assert!(a.avg_quality.is_some_and(|q| q < 0.3), "{a:?}");
        assert_eq!(combos[0].model_combo, "B");
        assert!(patterns.optimal_params.is_none());
    }

    #[test]
    fn scopes_and_filters_select_rows() {
        let rows = vec![
            row(1, "a", 0.0, "sdxl + vae", Some(0.8), &[]),
            row(
                2,
                "b",
                0.0,
                "flux",
                Some(0.8),
                &[("model", Param::Text("flux-dev".into()))],
            ),
        ];
        let count = |session, filter| {
            learned_patterns(
                &rows,
                Scope {
                    session,
                    model_filter: filter,
                    now: 0.0,
                },
                Query::All,
            )
            .outcomes_count
        };
        assert_eq!(count(Some("a"), None), 1);
        assert_eq!(count(None, None), 2);
        assert_eq!(count(None, Some("FLUX")), 1);
        assert_eq!(count(Some("a"), Some("flux")), 0);
    }

    #[test]
    fn good_parameter_values_are_learned() {
        let now = 0.0;
        let rows = vec![
            row(
                1,
                "s",
                now,
                "A",
                Some(0.9),
                &[
                    ("cfg", Param::Num(6.0)),
                    ("sampler", Param::Text("dpmpp_2m".into())),
                    ("seed", Param::Num(1.0)),
                ],
            ),
            row(
                2,
                "s",
                now,
                "A",
                Some(0.8),
                &[
                    ("cfg", Param::Num(7.0)),
                    ("sampler", Param::Text("dpmpp_2m".into())),
                ],
            ),
            row(
                3,
                "s",
                now,
                "A",
                Some(0.2),
                &[
                    ("cfg", Param::Num(12.0)),
                    ("sampler", Param::Text("euler".into())),
                ],
            ),
            row(
                4,
                "s",
                now,
                "A",
                Some(0.1),
                &[
                    ("cfg", Param::Num(11.0)),
                    ("sampler", Param::Text("euler".into())),
                ],
            ),
        ];
        let patterns = learned_patterns(
            &rows,
            Scope {
                session: None,
                model_filter: None,
                now,
            },
            Query::OptimalParams,
        );
        let params = patterns.optimal_params.expect("params");
        let cfg = &params["cfg"];
        let best = cfg.best_value.as_f64().expect("number");
        assert!((6.0..=7.0).contains(&best), "{best}");
        assert_eq!(cfg.good_range, Some([6.0, 7.0]));
        assert_eq!(params["sampler"].best_value, "dpmpp_2m");
        assert!(!params.contains_key("seed"));
        let recs = recommendations(
            &rows,
            Scope {
                session: None,
                model_filter: None,
                now,
            },
            Current {
                model: Some("a"),
                params: serde_json::json!({"cfg": 12}).as_object(),
                goal: Some("harbour"),
            },
        );
        assert!(
            recs.recommendations
                .iter()
                .any(|r| r.kind == "parameter" && r.parameter.as_deref() == Some("cfg")),
            "{recs:?}"
        );
        assert!(
            recs.recommendations.iter().any(|r| r.kind == "goal"),
            "{recs:?}"
        );
        assert!(
            recs.avoidance_patterns.iter().any(|a| a.contains("euler"))
                || recs.avoidance_patterns.is_empty()
        );
        assert!(recs.recommendations.len() <= 8);
        let sorted = recs
            .recommendations
            .windows(2)
            .all(|w| w[0].confidence >= w[1].confidence);
        assert!(sorted);
    }

    #[test]
    fn implicit_feedback_reads_reverts_bursts_and_abandonment() {
        let p = |cfg: f64| vec![("cfg", Param::Num(cfg))];
        let rows = vec![
            row(1, "s", 0.0, "A", Some(0.5), &p(7.0)),
            row(2, "s", 60.0, "A", Some(0.6), &p(8.0)),
            row(3, "s", 120.0, "A", Some(0.7), &p(7.0)),
            row(4, "s", 180.0, "B", Some(0.1), &p(5.0)),
            row(5, "s", 5000.0, "A", Some(0.8), &p(9.0)),
            row(6, "other", 0.0, "A", Some(0.8), &p(9.0)),
        ];
        let feedback = implicit_feedback(&rows, "s", 20);
        let kinds: Vec<&str> = feedback.signals.iter().map(|s| s.signal.as_str()).collect();
        assert!(kinds.contains(&"parameter_revert"), "{kinds:?}");
        assert!(kinds.contains(&"refinement_burst"), "{kinds:?}");
        assert!(kinds.contains(&"abandonment"), "{kinds:?}");
        assert_eq!(feedback.outcomes_analyzed, 5);
        assert_eq!(feedback.total_outcomes, 5);
        let few = implicit_feedback(&rows, "s", 2);
        assert_eq!(few.outcomes_analyzed, 2);
        assert_eq!(few.summary.inferred_satisfaction, "insufficient_data");
    }
}
