//! Any bytes as a safetensors or GGUF model header, and whatever parses through family
//! detection: no panic, no unbounded allocation, whatever the file claims.

#![no_main]

use comfyui_agent::models::detect::detect;
use comfyui_agent::models::header::{parse_gguf, parse_safetensors};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = parse_safetensors(data) {
        let _ = detect(&header);
    }
    if let Ok(header) = parse_gguf(data) {
        let _ = detect(&header);
    }
});
