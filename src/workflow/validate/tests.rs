use super::*;
use serde_json::json;

fn small_index() -> NodeIndex {
    let body = json!({
        "Src": {"input": {"required": {}}, "output": ["IMAGE", "MASK", "IMAGE,MASK", "*", "COMBO"],
                "output_name": ["image", "mask", "either", "anything", "choice"]},
        "Sink": {"input": {"required": {"images": ["IMAGE"]}, "optional": {"mask": ["MASK"]},
                           "hidden": {"prompt": "PROMPT"}},
                 "output": [], "output_node": true},
        "Widgets": {"input": {"required": {
                "steps": ["INT", {"default": 20, "min": 1, "max": 100}],
                "seed": ["INT", {"min": 0, "max": 18446744073709551615_u64}],
                "cfg": ["FLOAT", {"min": 0.0, "max": 30.0}],
                "mode": [["a", "b", 3]],
                "v3": ["COMBO", {"options": ["x", "y"]}],
                "many": ["COMBO", {"options": ["p", "q"], "multiselect": true}],
                "remote": ["COMBO", {"remote": {"route": "/files"}}],
                "flag": ["BOOLEAN", {}],
                "text": ["STRING", {}]},
                "optional": {"ckpt": [[]]}},
            "output": ["IMAGE"]},
        "Any": {"input": {"required": {"anything": ["*"]}}, "output": ["IMAGE"], "output_node": true},
        "Multi": {"input": {"required": {"img": ["IMAGE,MASK"]}}, "output": ["IMAGE"], "output_node": true}
    });
    NodeIndex::parse(body.to_string().as_bytes()).expect("small index")
}

fn recorded() -> NodeIndex {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/comfyui-0.3.64/object_info.json"
    );
    NodeIndex::parse(&std::fs::read(path).expect("fixture")).expect("parses")
}

fn workflow(doc: Value) -> Workflow {
    Workflow::from_api(&doc).expect("workflow")
}

/// (node, input, kind) of every problem, sorted.
fn found(report: &Report) -> Vec<(Option<&str>, Option<&str>, ProblemKind)> {
    let mut found: Vec<_> = report
        .errors
        .iter()
        .chain(&report.warnings)
        .map(|p| (p.node_id.as_deref(), p.input.as_deref(), p.kind))
        .collect();
    found.sort();
    found
}

/// The problem about `input`.
fn about<'a>(report: &'a Report, input: &str) -> &'a Problem {
    report
        .errors
        .iter()
        .chain(&report.warnings)
        .find(|p| p.input.as_deref() == Some(input))
        .expect("a problem about that input")
}

/// A sound `Widgets` node with `overrides` applied, feeding a Sink.
fn widgets(overrides: Value) -> Workflow {
    let mut inputs = json!({"steps": 20, "seed": 5, "cfg": 7.5, "mode": "a", "v3": "x",
                            "many": "p", "remote": "whatever.png", "flag": true, "text": "hi"});
    for (key, value) in overrides.as_object().expect("object") {
        inputs[key] = value.clone();
    }
    workflow(json!({
        "1": {"class_type": "Widgets", "inputs": inputs},
        "2": {"class_type": "Sink", "inputs": {"images": ["1", 0]}}
    }))
}

fn check(overrides: Value) -> Report {
    validate(&widgets(overrides), &small_index())
}

#[test]
fn a_sound_workflow_passes() {
    let report = check(json!({}));
    assert!(report.valid && report.would_queue, "{report:#?}");
    assert!(report.warnings.is_empty(), "{report:#?}");
    assert_eq!(
        report.summary(),
        "The workflow is ready to queue: no problems found."
    );
}

#[test]
fn unknown_classes_suggest_names_and_packs() {
    let index = recorded();
    let report = validate(
        &workflow(json!({
            "1": {"class_type": "KSampeler", "inputs": {}},
            "2": {"class_type": "VHS_VideoCombine", "inputs": {}},
            "3": {"class_type": "Qqqqzzzzxxxx", "inputs": {}}
        })),
        &index,
    );
    assert!(!report.valid && !report.would_queue);
    let kinds = found(&report);
    assert_eq!(
        kinds,
        [
            (Some("1"), None, ProblemKind::UnknownClass),
            (Some("2"), None, ProblemKind::UnknownClass),
            (Some("3"), None, ProblemKind::UnknownClass),
        ],
        "no NoOutputNode while a class is unknown (it may be the output)"
    );
    assert!(report.errors[0].fix.contains("“KSampler”"), "{report:#?}");
    assert!(report.errors[1].fix.contains("ComfyUI-VideoHelperSuite"));
    assert!(
        report.errors[2]
            .fix
            .contains("Install Missing Custom Nodes")
    );
    assert_eq!(node_pack("Image Comparer (rgthree)"), Some("rgthree-comfy"));
    assert_eq!(node_pack("KSampler"), None);
}

#[test]
fn missing_required_inputs_but_not_optional_ones() {
    let report = validate(
        &workflow(json!({
            "1": {"class_type": "Widgets", "inputs": {"seed": 1, "cfg": 1.0, "mode": "a", "v3": "x",
                  "many": "p", "remote": "r", "flag": false, "text": ""}},
            "2": {"class_type": "Sink", "inputs": {}}
        })),
        &small_index(),
    );
    assert_eq!(
        found(&report),
        [
            (Some("1"), Some("steps"), ProblemKind::MissingInput),
            (Some("2"), Some("images"), ProblemKind::MissingInput),
        ]
    );
    assert!(report.errors[0].fix.contains("default is 20"));
    assert!(report.errors[1].fix.contains("IMAGE"));
    assert!(!report.would_queue);
}

#[test]
fn unknown_and_hidden_inputs_are_warnings() {
    let report = validate(
        &workflow(json!({
            "1": {"class_type": "Src", "inputs": {}},
            "2": {"class_type": "Sink", "inputs": {"images": ["1", 0], "stepz": 3, "prompt": "x"}}
        })),
        &small_index(),
    );
    assert!(report.valid && report.would_queue);
    assert_eq!(
        found(&report),
        [
            (Some("2"), Some("prompt"), ProblemKind::UnknownInput),
            (Some("2"), Some("stepz"), ProblemKind::UnknownInput),
        ]
    );
    assert!(about(&report, "stepz").fix.contains("images, mask"));
    assert!(
        about(&report, "prompt")
            .message
            .contains("fills in by itself")
    );
    assert!(
        report.summary().contains("2 warnings"),
        "{}",
        report.summary()
    );
}

#[test]
fn broken_links() {
    let index = small_index();
    let sink = |images: Value| {
        validate(
            &workflow(json!({
                "1": {"class_type": "Src", "inputs": {}},
                "2": {"class_type": "Sink", "inputs": {"images": images}}
            })),
            &index,
        )
    };
    for (images, kind) in [
        (json!(["1", 0, 0]), ProblemKind::MalformedLink),
        (json!(["1"]), ProblemKind::MalformedLink),
        (json!(["1", "0"]), ProblemKind::MalformedLink),
        (json!(["1", -1]), ProblemKind::MalformedLink),
        (json!(["99", 0]), ProblemKind::LinkToMissingNode),
        (json!(["1", 5]), ProblemKind::OutputOutOfRange),
        (json!(["1", 1]), ProblemKind::TypeMismatch),
    ] {
        let report = sink(images.clone());
        assert_eq!(
            found(&report),
            [(Some("2"), Some("images"), kind)],
            "{images}"
        );
        assert!(!report.would_queue, "{images}");
    }
    let mismatch = sink(json!(["1", 1]));
    assert!(
        mismatch.errors[0].fix.contains("output 0 (image)"),
        "{mismatch:#?}"
    );
    let out_of_range = sink(json!(["1", 5]));
    assert!(out_of_range.errors[0].message.contains("5 outputs"));
}

#[test]
fn type_rules_wildcards_unions_and_combos() {
    assert!(types_match("IMAGE", "IMAGE"));
    assert!(types_match("*", "LATENT"));
    assert!(types_match("LATENT", "*"));
    assert!(types_match("IMAGE,MASK", "MASK"));
    assert!(types_match("MASK", "IMAGE, MASK"));
    assert!(types_match("COMBO", "COMBO"));
    assert!(!types_match("MASK", "IMAGE"));
    assert!(!types_match("LATENT", "IMAGE,MASK"));
    let index = small_index();
    let report = validate(
        &workflow(json!({
            "1": {"class_type": "Src", "inputs": {}},
            "2": {"class_type": "Sink", "inputs": {"images": ["1", 2], "mask": ["1", 3]}},
            "3": {"class_type": "Any", "inputs": {"anything": ["1", 1]}},
            "4": {"class_type": "Multi", "inputs": {"img": ["1", 1]}},
            "5": {"class_type": "Widgets", "inputs": {"steps": 1, "seed": 1, "cfg": 1, "mode": ["1", 4],
                  "v3": ["1", 4], "many": ["1", 3], "remote": "r", "flag": true, "text": ["1", 3]}},
            "6": {"class_type": "Sink", "inputs": {"images": ["5", 0]}}
        })),
        &index,
    );
    assert!(report.valid, "{report:#?}");
    let report = validate(
        &workflow(json!({
            "1": {"class_type": "Src", "inputs": {}},
            "5": {"class_type": "Widgets", "inputs": {"steps": ["1", 0], "seed": 1, "cfg": 1, "mode": ["1", 0],
                  "v3": "x", "many": "p", "remote": "r", "flag": true, "text": "t"}},
            "6": {"class_type": "Sink", "inputs": {"images": ["5", 0]}}
        })),
        &index,
    );
    assert_eq!(
        found(&report),
        [
            (Some("5"), Some("mode"), ProblemKind::TypeMismatch),
            (Some("5"), Some("steps"), ProblemKind::TypeMismatch),
        ]
    );
}

#[test]
fn combo_values_in_both_styles() {
    assert!(check(json!({"mode": 3.0})).valid, "3 == 3.0 as in Python");
    assert!(check(json!({"many": {"__value__": ["p", "q"]}})).valid);
    assert!(check(json!({"remote": "anything goes"})).valid);
    let report = check(json!({"mode": "A", "v3": "z", "many": {"__value__": ["p", "r"]}}));
    assert_eq!(
        found(&report),
        [
            (Some("1"), Some("many"), ProblemKind::NotInChoices),
            (Some("1"), Some("mode"), ProblemKind::NotInChoices),
            (Some("1"), Some("v3"), ProblemKind::NotInChoices),
        ]
    );
    assert!(about(&report, "mode").fix.starts_with("Did you mean “a”?"));
    assert!(about(&report, "many").message.contains("\"r\""));
    assert!(!about(&report, "many").message.contains("\"p\""));
    // An empty list (no models installed) refuses everything, as ComfyUI does.
    let report = check(json!({"ckpt": "model.safetensors"}));
    assert_eq!(report.errors[0].kind, ProblemKind::NotInChoices);
    assert!(report.errors[0].fix.contains("no choices"));
}

#[test]
fn numbers_convert_like_comfyui_then_meet_the_range() {
    for ok in [
        json!({"steps": "8"}),
        json!({"steps": 8.7}),
        json!({"steps": " 8 "}),
        json!({"steps": "1_0"}),
        json!({"steps": true}),
        json!({"steps": {"__value__": 8}}),
        json!({"steps": 100.9}),
        json!({"seed": 18_446_744_073_709_551_615_u64}),
        json!({"cfg": "7.5"}),
        json!({"cfg": 3}),
        json!({"text": 12}),
        json!({"flag": 0}),
    ] {
        let report = check(ok.clone());
        assert!(
            report.valid && report.warnings.is_empty(),
            "{ok}: {report:#?}"
        );
    }
    for (bad, kind) in [
        (json!({"steps": "abc"}), ProblemKind::InvalidValue),
        (json!({"steps": "8.5"}), ProblemKind::InvalidValue),
        (json!({"steps": null}), ProblemKind::InvalidValue),
        (json!({"steps": {"a": 1}}), ProblemKind::InvalidValue),
        (json!({"steps": "_8"}), ProblemKind::InvalidValue),
        (json!({"cfg": "lots"}), ProblemKind::InvalidValue),
        (json!({"steps": 0}), ProblemKind::BelowMin),
        (json!({"steps": 0.9}), ProblemKind::BelowMin),
        (json!({"steps": 101}), ProblemKind::AboveMax),
        (json!({"steps": "1000"}), ProblemKind::AboveMax),
        (json!({"seed": -1}), ProblemKind::BelowMin),
        (json!({"seed": 1e30}), ProblemKind::AboveMax),
        (json!({"cfg": 30.5}), ProblemKind::AboveMax),
        (json!({"cfg": -0.1}), ProblemKind::BelowMin),
    ] {
        let report = check(bad.clone());
        assert_eq!(report.errors.len(), 1, "{bad}: {report:#?}");
        assert_eq!(report.errors[0].kind, kind, "{bad}");
        assert!(!report.would_queue, "{bad}");
    }
    let report = check(json!({"steps": 0}));
    assert!(report.errors[0].fix.contains("from 1 to 100"));
    let report = check(json!({"steps": "abc"}));
    assert!(report.errors[0].fix.contains("such as 20"));
}

#[test]
fn values_where_connections_belong_and_text_booleans_are_warnings() {
    let index = small_index();
    let report = validate(
        &workflow(json!({"2": {"class_type": "Sink", "inputs": {"images": "cat.png"}}})),
        &index,
    );
    assert!(report.valid && report.would_queue, "ComfyUI accepts it");
    assert_eq!(report.warnings[0].kind, ProblemKind::ValueForSocket);
    let report = validate(
        &workflow(json!({"3": {"class_type": "Any", "inputs": {"anything": 42}}})),
        &index,
    );
    assert!(
        report.valid && report.warnings.is_empty(),
        "a wildcard takes values"
    );
    let report = check(json!({"flag": "false"}));
    assert!(report.valid);
    assert_eq!(report.warnings[0].kind, ProblemKind::SuspiciousValue);
    assert!(report.warnings[0].fix.contains("false"));
}

#[test]
fn no_output_node() {
    let report = validate(
        &workflow(json!({"1": {"class_type": "Src", "inputs": {}}})),
        &small_index(),
    );
    assert_eq!(found(&report), [(None, None, ProblemKind::NoOutputNode)]);
    assert!(!report.would_queue);
    assert!(report.summary().contains("refuse"));
}

#[test]
fn loops_are_reported_once_and_fail_their_outputs() {
    let report = validate(
        &workflow(json!({
            "1": {"class_type": "Multi", "inputs": {"img": ["2", 0]}},
            "2": {"class_type": "Multi", "inputs": {"img": ["1", 0]}},
            "3": {"class_type": "Sink", "inputs": {"images": ["2", 0]}},
            "4": {"class_type": "Multi", "inputs": {"img": ["4", 0]}}
        })),
        &small_index(),
    );
    let kinds = found(&report);
    assert_eq!(
        kinds.iter().filter(|k| k.2 == ProblemKind::Cycle).count(),
        2,
        "{kinds:?}"
    );
    assert!(!report.would_queue, "{report:#?}");
}

#[test]
fn one_sound_output_is_enough_for_comfyui_but_not_for_us() {
    let report = validate(
        &workflow(json!({
            "1": {"class_type": "Src", "inputs": {}},
            "2": {"class_type": "Sink", "inputs": {"images": ["1", 0]}},
            "3": {"class_type": "Widgets", "inputs": {"steps": 0}},
            "4": {"class_type": "Sink", "inputs": {"images": ["3", 0]}}
        })),
        &small_index(),
    );
    assert!(!report.valid && report.would_queue);
    assert!(
        report
            .errors
            .iter()
            .all(|p| p.node_id.as_deref() == Some("3"))
    );
    assert!(report.summary().contains("would still queue"));
}

/// The kinds we accept as the same finding as one of ComfyUI's `node_errors` types.
fn matching_kinds(comfy_type: &str) -> &'static [ProblemKind] {
    match comfy_type {
        "required_input_missing" => &[ProblemKind::MissingInput],
        "bad_linked_input" => &[ProblemKind::MalformedLink],
        "return_type_mismatch" => &[ProblemKind::TypeMismatch],
        "invalid_input_type" => &[ProblemKind::InvalidValue],
        "value_smaller_than_min" => &[ProblemKind::BelowMin],
        "value_bigger_than_max" => &[ProblemKind::AboveMax],
        "value_not_in_list" => &[ProblemKind::NotInChoices],
        // A link to a missing node (KeyError) or an output index out of range (IndexError).
        "exception_during_validation" | "exception_during_inner_validation" => &[
            ProblemKind::LinkToMissingNode,
            ProblemKind::OutputOutOfRange,
            ProblemKind::MalformedLink,
        ],
        // A node's own VALIDATE_INPUTS (LoadImage checks the file on disk): not knowable
        // offline. We catch the recorded case only because the file isn't in the recorded
        // list of input files.
        "custom_validation_failed" => &[ProblemKind::NotInChoices],
        other => panic!("a node_errors type this test doesn't know: {other}"),
    }
}

/// Every `/prompt` case ComfyUI 0.3.64 answered, validated offline with its recorded
/// registry. `would_queue` must equal "ComfyUI answered 200"; `valid` must equal "200 with no
/// node_errors" (partial acceptance queues only the sound outputs, so we call it invalid and
/// still flag the failing node). Every node ComfyUI named must be flagged with a matching kind.
/// Bodies that aren't a prompt object (no `prompt`, `"<not json>"`, a list) fail before
/// validation and are skipped; a node without `class_type` fails to parse, which is our
/// refusal. `partial_execution_targets` isn't an input of ours: the case passes anyway.
#[test]
fn agrees_with_comfyui_on_every_recorded_case() {
    let index = recorded();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/comfyui-0.3.64/errors.json"
    );
    let cases: Value =
        serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("json");
    let mut checked = Vec::new();
    for (case, recording) in cases.as_object().expect("cases") {
        let Some(prompt) = recording["request"].get("prompt").filter(|p| p.is_object()) else {
            continue;
        };
        let response = &recording["response"];
        let status = response["status"].as_u64().expect("status");
        let body = &response["body"];
        let node_errors = body["node_errors"].as_object().expect("node_errors");
        let accepted = status == 200;
        let clean = accepted && node_errors.is_empty();
        let workflow = match Workflow::from_api(prompt) {
            Ok(workflow) => workflow,
            Err(error) => {
                assert!(
                    !accepted,
                    "{case}: we can't read it ({error}), ComfyUI queued it"
                );
                assert_eq!(body["error"]["type"], "invalid_prompt", "{case}");
                checked.push((case.as_str(), status, "unreadable"));
                continue;
            }
        };
        let report = validate(&workflow, &index);
        assert_eq!(report.would_queue, accepted, "{case}: {report:#?}");
        assert_eq!(report.valid, clean, "{case}: {report:#?}");
        for (node, found) in node_errors {
            for error in found["errors"].as_array().expect("errors") {
                let comfy_type = error["type"].as_str().expect("type");
                let kinds = matching_kinds(comfy_type);
                let input = error["extra_info"]["input_name"].as_str();
                let flagged = report.errors.iter().any(|p| {
                    p.node_id.as_deref() == Some(node)
                        && kinds.contains(&p.kind)
                        && (input.is_none() || p.input.as_deref() == input)
                });
                assert!(
                    flagged,
                    "{case}: ComfyUI's {comfy_type} on node {node} ({input:?}) not flagged: {report:#?}"
                );
            }
        }
        match body["error"]["type"].as_str() {
            Some("invalid_prompt") => {
                let details = body["error"]["details"].as_str().expect("details");
                let node = details
                    .trim_start_matches("Node ID '#")
                    .trim_end_matches('\'');
                assert!(
                    report
                        .errors
                        .iter()
                        .any(|p| p.kind == ProblemKind::UnknownClass
                            && p.node_id.as_deref() == Some(node)),
                    "{case}: {report:#?}"
                );
            }
            Some("prompt_no_outputs") => {
                assert!(
                    report
                        .errors
                        .iter()
                        .any(|p| p.kind == ProblemKind::NoOutputNode),
                    "{case}"
                );
            }
            _ => {}
        }
        checked.push((
            case.as_str(),
            status,
            if report.valid {
                "valid"
            } else if report.would_queue {
                "invalid, would queue"
            } else {
                "invalid"
            },
        ));
    }
    // Every prompt-bearing case was looked at: 21 of the 26 recordings (the others have no
    // prompt object: no_prompt_key, invalid_json_body, prompt_is_a_list, and two bodies of
    // other endpoints).
    assert_eq!(checked.len(), 21, "{checked:#?}");
}

mod properties {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            prop_oneof![
                Just("euler".to_string()),
                Just("8".to_string()),
                Just(" 1_0 ".to_string()),
                Just("_".to_string()),
                Just("-".to_string()),
                Just("1e999".to_string()),
                Just("nan".to_string()),
                ".{0,12}",
            ]
            .prop_map(Value::String),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                // Links, sound or not, to ids that may exist.
                (0u8..12, 0u8..6).prop_map(|(id, slot)| json!([id.to_string(), slot])),
                (0u8..12, -2i8..6).prop_map(|(id, slot)| json!([id, slot])),
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                inner.prop_map(|v| json!({"__value__": v})),
            ]
        })
    }

    fn class() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("KSampler".to_string()),
            Just("SaveImage".to_string()),
            Just("EmptyImage".to_string()),
            Just("LoadImage".to_string()),
            Just("ImageStitch".to_string()),
            Just("CheckpointLoaderSimple".to_string()),
            Just("LoadImageOutput".to_string()),
            Just("PreviewAny".to_string()),
            "[A-Za-z ]{1,10}",
        ]
    }

    fn input_name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("images".to_string()),
            Just("image".to_string()),
            Just("width".to_string()),
            Just("seed".to_string()),
            Just("cfg".to_string()),
            Just("model".to_string()),
            Just("direction".to_string()),
            Just("sampler_name".to_string()),
            Just("prompt".to_string()),
            "[a-z_]{1,8}",
        ]
    }

    fn document() -> impl Strategy<Value = Value> {
        prop::collection::btree_map(
            (0u8..12).prop_map(|id| id.to_string()),
            (
                class(),
                prop::collection::btree_map(input_name(), value(), 0..6),
            ),
            1..10,
        )
        .prop_map(|nodes| {
            Value::Object(
                nodes
                    .into_iter()
                    .map(|(id, (class, inputs))| {
                        (
                            id,
                            json!({"class_type": class, "inputs": Value::Object(inputs.into_iter().collect())}),
                        )
                    })
                    .collect(),
            )
        })
    }

    #[test]
    fn arbitrary_workflows_never_panic_and_verdicts_stay_consistent() {
        let index = recorded();
        let mut runner = TestRunner::new(Config::with_cases(300));
        runner
            .run(&document(), |doc| {
                let Ok(workflow) = Workflow::from_api(&doc) else {
                    return Ok(());
                };
                let report = validate(&workflow, &index);
                prop_assert_eq!(report.valid, report.errors.is_empty());
                prop_assert!(!report.valid || report.would_queue);
                prop_assert!(report.errors.iter().all(|p| p.severity == Severity::Error));
                prop_assert!(
                    report
                        .warnings
                        .iter()
                        .all(|p| p.severity == Severity::Warning)
                );
                prop_assert!(
                    report
                        .errors
                        .iter()
                        .chain(&report.warnings)
                        .all(|p| !p.message.is_empty() && !p.fix.is_empty())
                );
                if report.would_queue {
                    prop_assert!(
                        !report
                            .errors
                            .iter()
                            .any(|p| p.kind == ProblemKind::UnknownClass)
                    );
                }
                prop_assert!(!report.summary().is_empty());
                Ok(())
            })
            .expect("no failures");
    }
}
