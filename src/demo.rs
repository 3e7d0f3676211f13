//! Guided demos (catalogue §1.20): scripted walks through the server's tools. Scenarios are
//! data; the progress of a session's demo is a small document (`SessionDocs` kind "demos").

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One step of a scenario.
#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
pub struct Step {
    pub id: &'static str,
    pub title: &'static str,
    pub narration: &'static str,
    /// Tools of this server to call at this step.
    pub suggested_tools: &'static [&'static str],
    /// What a ComfyUI with no model files does at this step.
    pub without_models: &'static str,
}

#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
pub struct Scenario {
    pub name: &'static str,
    pub title: &'static str,
    pub steps: &'static [Step],
}

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "model_free",
        title: "Explore ComfyUI without any model files",
        steps: &[
            Step {
                id: "check",
                title: "Is ComfyUI there?",
                narration: "Check that ComfyUI answers and what hardware it runs on.",
                suggested_tools: &["is_comfyui_running", "get_system_stats"],
                without_models: "Works the same: neither call needs a model.",
            },
            Step {
                id: "explore_nodes",
                title: "Explore the nodes",
                narration: "Look up a few nodes, e.g. EmptyImage and SaveImage.",
                suggested_tools: &["get_all_nodes", "get_node_info"],
                without_models: "Works; loader nodes list no files to choose from.",
            },
            Step {
                id: "load_template",
                title: "Load a template",
                narration: "Pick a template and load it into the session.",
                suggested_tools: &["list_workflow_templates", "get_workflow_template"],
                without_models: "Works: templates are files shipped with this server.",
            },
            Step {
                id: "validate",
                title: "Validate it",
                narration: "Check the workflow against ComfyUI's node list before queueing.",
                suggested_tools: &["validate_workflow", "validate_before_execute"],
                without_models: "A checkpoint loader is reported: no model file matches its \
                                 name. A graph of EmptyImage and SaveImage passes.",
            },
            Step {
                id: "queue",
                title: "Queue something that needs no weights",
                narration: "Run an EmptyImage → SaveImage graph and fetch the picture.",
                suggested_tools: &["execute_with_progress", "get_output_image"],
                without_models: "Runs and saves a flat image; a graph with a model loader \
                                 fails, and the error names the missing file.",
            },
        ],
    },
    Scenario {
        name: "model_swap",
        title: "Swap the model and keep the rest",
        steps: &[
            Step {
                id: "inventory",
                title: "See the models",
                narration: "List the checkpoints and which family each belongs to.",
                suggested_tools: &["list_models", "identify_model_family"],
                without_models: "The lists are empty; there is nothing to swap to.",
            },
            Step {
                id: "swap",
                title: "Swap the checkpoint",
                narration: "Load a workflow and set the loader's ckpt_name to the new model.",
                suggested_tools: &["load_workflow", "set_input", "check_model_compatibility"],
                without_models: "set_input refuses the name: no such file in the list.",
            },
            Step {
                id: "run",
                title: "Run and compare",
                narration: "Queue it and compare with the previous output.",
                suggested_tools: &["execute_with_progress", "get_workflow_diff"],
                without_models: "Fails at the loader with a clear missing-model error.",
            },
        ],
    },
    Scenario {
        name: "speed_run",
        title: "Make a workflow faster",
        steps: &[
            Step {
                id: "baseline",
                title: "Time the baseline",
                narration: "Run the workflow once and note how long it takes.",
                suggested_tools: &["execute_with_progress", "get_gpu_status"],
                without_models: "Only a model-free graph runs; its timing is a baseline.",
            },
            Step {
                id: "trim",
                title: "Trim steps and size",
                narration: "Lower steps or resolution inside the model's sweet spot.",
                suggested_tools: &["get_editable_fields", "set_input", "undo_workflow_patch"],
                without_models: "Edits work; validation still reports the missing model.",
            },
            Step {
                id: "compare",
                title: "Compare",
                narration: "Run again and check the output still holds up.",
                suggested_tools: &["execute_with_progress", "verify_execution"],
                without_models: "Fails at the loader with a clear missing-model error.",
            },
        ],
    },
    Scenario {
        name: "controlnet_add",
        title: "Add a ControlNet",
        steps: &[
            Step {
                id: "find",
                title: "Find the nodes",
                narration: "Check that ControlNet nodes and models are installed.",
                suggested_tools: &["get_node_info", "list_models", "find_missing_nodes"],
                without_models: "The nodes exist in core ComfyUI; no ControlNet model does.",
            },
            Step {
                id: "wire",
                title: "Wire it in",
                narration: "Add the loader and apply nodes and connect the conditioning.",
                suggested_tools: &["add_node", "connect_nodes", "upload_image"],
                without_models: "Works: editing the graph needs no model.",
            },
            Step {
                id: "check",
                title: "Check and run",
                narration: "Validate, then queue.",
                suggested_tools: &["validate_before_execute", "execute_with_progress"],
                without_models: "Validation names the missing ControlNet and checkpoint.",
            },
        ],
    },
    Scenario {
        name: "full_pipeline",
        title: "From nothing to a saved session",
        steps: &[
            Step {
                id: "plan",
                title: "Say what you want",
                narration: "Classify the request to see which agents handle it.",
                suggested_tools: &["classify_intent", "list_workflow_templates"],
                without_models: "Works: planning is local.",
            },
            Step {
                id: "build",
                title: "Build and validate",
                narration: "Load a template, adjust it, validate it.",
                suggested_tools: &["get_workflow_template", "set_input", "validate_workflow"],
                without_models: "Validation reports the missing model files by name.",
            },
            Step {
                id: "run",
                title: "Run and judge",
                narration: "Queue it, follow progress, look at the output.",
                suggested_tools: &[
                    "execute_with_progress",
                    "get_output_image",
                    "verify_execution",
                ],
                without_models: "Fails at the loader; the error says which file to add.",
            },
            Step {
                id: "keep",
                title: "Keep it",
                narration: "Save the session and note what worked.",
                suggested_tools: &["save_session", "add_note"],
                without_models: "Works the same.",
            },
        ],
    },
];

pub fn scenario(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

/// A session's demo in progress (the stored document).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemoState {
    pub scenario: String,
    /// Index of the step to do next; equal to the step count when finished.
    pub current: usize,
    #[serde(default)]
    pub notes: Vec<String>,
}

/// Why a checkpoint was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum CheckpointError {
    UnknownScenario(String),
    Finished,
    WrongStep { expected: &'static str, got: String },
}

impl DemoState {
    /// Marks `step_id` done; only the current step is accepted.
    pub fn complete(&mut self, step_id: &str, note: Option<String>) -> Result<(), CheckpointError> {
        let scenario = scenario(&self.scenario)
            .ok_or_else(|| CheckpointError::UnknownScenario(self.scenario.clone()))?;
        let step = scenario
            .steps
            .get(self.current)
            .ok_or(CheckpointError::Finished)?;
        if step.id != step_id.trim() {
            return Err(CheckpointError::WrongStep {
                expected: step.id,
                got: step_id.to_string(),
            });
        }
        self.current += 1;
        self.notes.extend(note.filter(|n| !n.trim().is_empty()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_suggested_tool_exists_in_this_server() {
        let names: Vec<String> = crate::tools::all()
            .iter()
            .map(|t| t.tool().name.to_string())
            .collect();
        for scenario in SCENARIOS {
            for step in scenario.steps {
                for tool in step.suggested_tools {
                    assert!(
                        names.iter().any(|n| n == tool),
                        "{}/{} suggests {tool}, which this server lacks",
                        scenario.name,
                        step.id
                    );
                }
            }
        }
    }

    #[test]
    fn the_required_scenarios_exist_with_unique_step_ids() {
        for name in [
            "model_swap",
            "speed_run",
            "controlnet_add",
            "full_pipeline",
            "model_free",
        ] {
            let s = scenario(name).expect(name);
            let mut ids: Vec<_> = s.steps.iter().map(|s| s.id).collect();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), s.steps.len(), "{name}");
        }
    }

    #[test]
    fn checkpoints_accept_only_the_current_step() {
        let mut state = DemoState {
            scenario: "model_swap".into(),
            current: 0,
            notes: vec![],
        };
        assert_eq!(
            state.complete("swap", None),
            Err(CheckpointError::WrongStep {
                expected: "inventory",
                got: "swap".into()
            })
        );
        state
            .complete("inventory", Some("no models".into()))
            .unwrap();
        state.complete("swap", None).unwrap();
        state.complete("run", None).unwrap();
        assert_eq!(state.complete("run", None), Err(CheckpointError::Finished));
        assert_eq!(state.notes, ["no models"]);
    }
}
