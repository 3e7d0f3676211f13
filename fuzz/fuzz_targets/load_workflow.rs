//! Any bytes through the one loader every tool uses, without a node list (API documents and
//! UI ones with an embedded prompt) and with one (UI-only documents are converted too).

#![no_main]

mod common;

use comfyui_agent::workflow::load::{LoadedFormat, load_str};
use comfyui_agent::workflow::model::Workflow;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let without = load_str(text, None);
    let with = load_str(text, Some(common::index()));
    // The node list only matters for UI-only documents.
    match (&without, &with) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "the node list changed an API load"),
        (Ok(_), Err(error)) => panic!("loads without a node list but not with one: {error}"),
        (Err(_), _) => {}
    }
    if let Ok(loaded) = &with {
        if loaded.format != LoadedFormat::UiOnly {
            assert!(
                loaded.notes.is_empty(),
                "notes on a document that wasn't converted"
            );
        }
        // What the loader hands on survives its own API round trip (as JSON: input order is
        // not part of an API workflow).
        let api = loaded.workflow.to_api();
        let again = Workflow::from_api(&api).expect("a loaded workflow re-reads");
        assert_eq!(again.to_api(), api);
        let _ = loaded.format.as_str();
    }
    if let Err(error) = &with {
        let _ = error.to_string();
    }
});
