//! JSON through the UI-to-API conversion, with the recorded node list; whatever comes out
//! must re-read as an API workflow and validate without panicking.

#![no_main]

mod common;

use comfyui_agent::workflow::convert::ui_to_api;
use comfyui_agent::workflow::model::Workflow;
use comfyui_agent::workflow::validate::validate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(doc) = common::json(data) else {
        return;
    };
    match ui_to_api(&doc, common::index()) {
        Ok(converted) => {
            let api = converted.workflow.to_api();
            let again = Workflow::from_api(&api).expect("a converted workflow re-reads");
            // As JSON: input order is not part of an API workflow.
            assert_eq!(again.to_api(), api);
            let _ = validate(&converted.workflow, common::index()).summary();
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
