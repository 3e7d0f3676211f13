//! A JSON document and a JSON Patch, separated by the first NUL byte, through the patch
//! engine. Checks: a failed patch leaves the document exactly as it was, a successful one is
//! undone exactly by its inverse, and the diff of before and after rebuilds the result.

#![no_main]

use comfyui_agent::workflow::patch::{self, PatchOp};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some(split) = data.iter().position(|&b| b == 0) else {
        return;
    };
    let Ok(doc) = serde_json::from_slice::<Value>(&data[..split]) else {
        return;
    };
    let rest = &data[split + 1..];
    let ops: Vec<PatchOp> = match serde_json::from_slice::<Vec<PatchOp>>(rest) {
        Ok(ops) => ops,
        Err(_) => match serde_json::from_slice::<PatchOp>(rest) {
            Ok(op) => vec![op],
            Err(_) => return,
        },
    };

    let mut work = doc.clone();
    match patch::apply_in_place(&mut work, &ops) {
        Err(error) => {
            assert_eq!(work, doc, "a failed patch changed the document ({error})");
            assert!(error.index < ops.len());
            assert!(
                patch::apply(&doc, &ops).is_err(),
                "apply and apply_in_place disagree"
            );
        }
        Ok(patched) => {
            assert_eq!(patched.changes.len(), ops.len());
            let result = work.clone();
            assert_eq!(patch::apply(&doc, &ops).ok().as_ref(), Some(&result));
            patched.undo.revert(&mut work);
            assert_eq!(work, doc, "undo did not restore the document");
            let rebuilt = patch::apply(&doc, &patch::diff(&doc, &result))
                .expect("a diff applies to its base");
            assert!(
                patch::json_equal(&rebuilt, &result),
                "the diff did not rebuild the result"
            );
        }
    }
});
