//! A pipeline's definition and the checks it must pass before it is stored or run.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::workflow::model::Workflow;

/// Bounds that keep one pipeline a reasonable amount of work.
pub const MAX_STAGES: usize = 20;
pub const MAX_MAPPINGS: usize = 32;
pub const MAX_OVERRIDES: usize = 64;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// A name for the pipeline (default unnamed_pipeline).
    #[serde(default = "default_name")]
    #[schemars(length(max = 128))]
    pub name: String,
    pub stages: Vec<Stage>,
}

fn default_name() -> String {
    "unnamed_pipeline".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// Unique within the pipeline.
    #[schemars(length(max = 128))]
    pub stage_id: String,
    /// A workflow file path, or "template:<name>".
    pub workflow_source: String,
    /// Inputs of this stage fed by earlier stages' outputs.
    #[serde(default)]
    pub input_mappings: Vec<Mapping>,
    /// Which kind of output this stage hands on: image (default) or video.
    #[serde(default)]
    pub output_key: OutputKey,
    /// Values to set before running, keyed "<node_id>.<input>".
    #[serde(default)]
    pub param_overrides: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// The node in this stage whose input receives the file (a LoadImage, say).
    pub node_id: String,
    /// The input to set (for LoadImage: image).
    pub input_name: String,
    /// An earlier stage's stage_id.
    pub from_stage: String,
    /// Which of that stage's outputs (default 0, the first).
    #[serde(default)]
    pub output_index: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutputKey {
    #[default]
    Image,
    Video,
}

/// Checks what can be checked without the workflows: counts, ids, mapping order, override
/// keys' shape. Errors name the stage and the field.
pub fn check_shape(pipeline: &Pipeline) -> Result<(), String> {
    if pipeline.stages.is_empty() {
        return Err("The pipeline has no stages: give at least one in `stages`.".into());
    }
    if pipeline.stages.len() > MAX_STAGES {
        return Err(format!(
            "The pipeline has {} stages; at most {MAX_STAGES} are allowed.",
            pipeline.stages.len()
        ));
    }
    let mut seen: Vec<&str> = Vec::new();
    for (index, stage) in pipeline.stages.iter().enumerate() {
        let id = stage.stage_id.trim();
        if id.is_empty() {
            return Err(format!("Stage {} has no `stage_id`.", index + 1));
        }
        if seen.contains(&id) {
            return Err(format!(
                "Stage {}: `stage_id` '{id}' is used twice; each stage needs its own.",
                index + 1
            ));
        }
        if stage.workflow_source.trim().is_empty() {
            return Err(format!(
                "Stage '{id}': `workflow_source` is missing (a workflow file path or \"template:<name>\")."
            ));
        }
        if stage.input_mappings.len() > MAX_MAPPINGS {
            return Err(format!(
                "Stage '{id}': `input_mappings` has {} entries; at most {MAX_MAPPINGS}.",
                stage.input_mappings.len()
            ));
        }
        if stage.param_overrides.len() > MAX_OVERRIDES {
            return Err(format!(
                "Stage '{id}': `param_overrides` has {} entries; at most {MAX_OVERRIDES}.",
                stage.param_overrides.len()
            ));
        }
        for mapping in &stage.input_mappings {
            if !seen.contains(&mapping.from_stage.trim()) {
                return Err(format!(
                    "Stage '{id}': `input_mappings` takes from '{}', which is not an earlier stage; a stage can only use outputs of stages before it.",
                    mapping.from_stage
                ));
            }
            if mapping.input_name.trim().is_empty() {
                return Err(format!(
                    "Stage '{id}': a mapping to node {} has no `input_name`.",
                    mapping.node_id
                ));
            }
        }
        for key in stage.param_overrides.keys() {
            if override_target(key).is_none() {
                return Err(format!(
                    "Stage '{id}': `param_overrides` key '{key}' must look like \"<node_id>.<input>\"."
                ));
            }
        }
        seen.push(id);
    }
    Ok(())
}

/// `"<node_id>.<input>"` split at the first dot.
pub fn override_target(key: &str) -> Option<(&str, &str)> {
    let (node, input) = key.split_once('.')?;
    (!node.is_empty() && !input.is_empty()).then_some((node, input))
}

/// Checks a stage against its loaded workflow: every mapped and overridden node exists.
pub fn check_against(stage: &Stage, workflow: &Workflow) -> Result<(), String> {
    let id = &stage.stage_id;
    for mapping in &stage.input_mappings {
        if !workflow.nodes.contains_key(&mapping.node_id) {
            return Err(format!(
                "Stage '{id}': `input_mappings` names node {}, which is not in {}.",
                mapping.node_id, stage.workflow_source
            ));
        }
    }
    for key in stage.param_overrides.keys() {
        if let Some((node, _)) = override_target(key)
            && !workflow.nodes.contains_key(node)
        {
            return Err(format!(
                "Stage '{id}': `param_overrides` key '{key}' names node {node}, which is not in {}.",
                stage.workflow_source
            ));
        }
    }
    Ok(())
}

/// Applies the overrides to an API-format workflow.
pub fn apply_overrides(api: &mut Value, overrides: &Map<String, Value>) {
    for (key, value) in overrides {
        if let Some((node, input)) = override_target(key) {
            set_input(api, node, input, value.clone());
        }
    }
}

/// Sets one input of one node in an API-format workflow (a node that isn't there is left
/// alone: the definition was checked against the workflow).
pub fn set_input(api: &mut Value, node: &str, input: &str, value: Value) {
    if let Some(node) = api.get_mut(node).and_then(Value::as_object_mut) {
        let inputs = node
            .entry("inputs")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(inputs) = inputs.as_object_mut() {
            inputs.insert(input.to_string(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pipeline(stages: Value) -> Pipeline {
        serde_json::from_value(json!({"stages": stages})).unwrap()
    }

    #[test]
    fn shape_rules_each_name_the_stage_and_field() {
        assert!(
            check_shape(&pipeline(json!([])))
                .unwrap_err()
                .contains("no stages")
        );
        let twice = pipeline(json!([
            {"stage_id": "a", "workflow_source": "x.json"},
            {"stage_id": "a", "workflow_source": "y.json"}
        ]));
        assert!(check_shape(&twice).unwrap_err().contains("used twice"));
        let no_source = pipeline(json!([{"stage_id": "a", "workflow_source": " "}]));
        assert!(
            check_shape(&no_source)
                .unwrap_err()
                .contains("workflow_source")
        );
        let later = pipeline(json!([
            {"stage_id": "a", "workflow_source": "x.json", "input_mappings": [
                {"node_id": "1", "input_name": "image", "from_stage": "b"}]},
            {"stage_id": "b", "workflow_source": "y.json"}
        ]));
        assert!(
            check_shape(&later)
                .unwrap_err()
                .contains("not an earlier stage")
        );
        let own = pipeline(json!([
            {"stage_id": "a", "workflow_source": "x.json", "input_mappings": [
                {"node_id": "1", "input_name": "image", "from_stage": "a"}]}
        ]));
        assert!(check_shape(&own).is_err());
        let bad_key = pipeline(json!([
            {"stage_id": "a", "workflow_source": "x.json", "param_overrides": {"seed": 1}}
        ]));
        assert!(check_shape(&bad_key).unwrap_err().contains("'seed'"));
        let many: Vec<Value> = (0..=MAX_STAGES)
            .map(|i| json!({"stage_id": format!("s{i}"), "workflow_source": "x.json"}))
            .collect();
        assert!(
            check_shape(&pipeline(Value::Array(many)))
                .unwrap_err()
                .contains("at most")
        );
    }

    #[test]
    fn a_sound_pipeline_passes_and_defaults_apply() {
        let sound = pipeline(json!([
            {"stage_id": "a", "workflow_source": "template:txt2img"},
            {"stage_id": "b", "workflow_source": "x.json", "input_mappings": [
                {"node_id": "1", "input_name": "image", "from_stage": "a"}],
             "param_overrides": {"3.seed": 7}}
        ]));
        check_shape(&sound).unwrap();
        assert_eq!(sound.name, "unnamed_pipeline");
        assert_eq!(sound.stages[0].output_key, OutputKey::Image);
        assert_eq!(sound.stages[1].input_mappings[0].output_index, 0);
    }

    #[test]
    fn overrides_and_mappings_name_existing_nodes() {
        let workflow = Workflow::from_api(&json!({
            "1": {"class_type": "LoadImage", "inputs": {"image": "x.png"}}
        }))
        .unwrap();
        let stage: Stage = serde_json::from_value(json!({
            "stage_id": "b", "workflow_source": "x.json",
            "param_overrides": {"9.seed": 1}
        }))
        .unwrap();
        assert!(
            check_against(&stage, &workflow)
                .unwrap_err()
                .contains("node 9")
        );
        let stage: Stage = serde_json::from_value(json!({
            "stage_id": "b", "workflow_source": "x.json",
            "input_mappings": [{"node_id": "4", "input_name": "image", "from_stage": "a"}]
        }))
        .unwrap();
        assert!(
            check_against(&stage, &workflow)
                .unwrap_err()
                .contains("node 4")
        );
        let mut api = workflow.to_api();
        apply_overrides(
            &mut api,
            &serde_json::from_value(json!({"1.image": "y.png"})).unwrap(),
        );
        assert_eq!(api["1"]["inputs"]["image"], "y.png");
    }
}
