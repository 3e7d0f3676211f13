//! JSON read as an API workflow and validated against the recorded node list.

#![no_main]

mod common;

use comfyui_agent::workflow::model::Workflow;
use comfyui_agent::workflow::validate::validate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(doc) = common::json(data) else {
        return;
    };
    // Accept the `{"prompt": …}` wrapper as well, so UI-free seeds of both shapes help.
    let api = doc.get("prompt").filter(|p| p.is_object()).unwrap_or(&doc);
    let Ok(workflow) = Workflow::from_api(api) else {
        return;
    };
    let report = validate(&workflow, common::index());
    assert_eq!(
        report.valid,
        report.errors.is_empty(),
        "`valid` disagrees with the errors"
    );
    let _ = report.summary();
});
