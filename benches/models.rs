//! Model family detection from file headers, against the target:
//!
//! - family from a safetensors header (read from disk, parsed, decided), for a generated SDXL
//!   checkpoint header of about 2,500 tensors: under 1 ms per file;
//! - the same for a Flux GGUF header (about 500 tensor infos): under 1 ms, and for a GGUF
//!   carrying a 150,000-token vocabulary (skipped, never stored): under 10 ms;
//! - `identify_model_family` end to end (model folder walk, header read, report): under 5 ms.
//!
//! Run with `cargo bench --bench models`; it prints median, p99 and max per figure and exits
//! non-zero when one misses its target (judged on the median).

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use comfyui_agent::AppState;
use comfyui_agent::config::Config;
use comfyui_agent::mcp::ToolContext;
use comfyui_agent::models::{detect, header};
use serde_json::{Map, Value, json};

#[path = "support/figure.rs"]
mod figure;
use figure::{Figure, measure};

/// Tensor names and shapes shaped like an SDXL checkpoint's: UNet, both text encoders, VAE.
fn sdxl_tensors() -> Vec<(String, Vec<u64>)> {
    let mut tensors = Vec::new();
    let mut add = |name: String, shape: &[u64]| tensors.push((name, shape.to_vec()));
    let unet = "model.diffusion_model";
    for block in 0..9 {
        for part in [
            "in_layers.0",
            "in_layers.2",
            "emb_layers.1",
            "out_layers.0",
            "out_layers.3",
        ] {
            for kind in ["weight", "bias"] {
                add(
                    format!("{unet}.input_blocks.{block}.0.{part}.{kind}"),
                    &[640, 640, 3, 3],
                );
                add(
                    format!("{unet}.output_blocks.{block}.0.{part}.{kind}"),
                    &[640, 640, 3, 3],
                );
            }
        }
        for depth in 0..10 {
            for (layer, shape) in [
                ("attn1.to_q.weight", [1280, 1280]),
                ("attn1.to_k.weight", [1280, 1280]),
                ("attn1.to_v.weight", [1280, 1280]),
                ("attn1.to_out.0.weight", [1280, 1280]),
                ("attn2.to_q.weight", [1280, 1280]),
                ("attn2.to_k.weight", [1280, 2048]),
                ("attn2.to_v.weight", [1280, 2048]),
                ("ff.net.0.proj.weight", [10240, 1280]),
                ("ff.net.2.weight", [1280, 5120]),
                ("attn1.to_out.0.bias", [1280, 1]),
                ("attn2.to_out.0.weight", [1280, 1280]),
                ("attn2.to_out.0.bias", [1280, 1]),
                ("norm1.weight", [1280, 1]),
                ("norm1.bias", [1280, 1]),
                ("norm2.weight", [1280, 1]),
                ("norm2.bias", [1280, 1]),
            ] {
                if block % 3 != 0 {
                    add(
                        format!("{unet}.input_blocks.{block}.1.transformer_blocks.{depth}.{layer}"),
                        &shape,
                    );
                    add(
                        format!(
                            "{unet}.output_blocks.{block}.1.transformer_blocks.{depth}.{layer}"
                        ),
                        &shape,
                    );
                }
            }
        }
    }
    add(format!("{unet}.label_emb.0.0.weight"), &[1280, 2816]);
    for layer in 0..32 {
        for part in [
            "attn.in_proj_weight",
            "attn.in_proj_bias",
            "attn.out_proj.weight",
            "attn.out_proj.bias",
            "ln_1.weight",
            "ln_2.weight",
            "mlp.c_fc.weight",
            "mlp.c_proj.weight",
        ] {
            add(
                format!("conditioner.embedders.1.model.transformer.resblocks.{layer}.{part}"),
                &[1280, 1280],
            );
        }
    }
    for layer in 0..12 {
        for part in [
            "self_attn.q_proj.weight",
            "self_attn.k_proj.weight",
            "self_attn.v_proj.weight",
            "self_attn.out_proj.weight",
            "layer_norm1.weight",
            "layer_norm2.weight",
            "mlp.fc1.weight",
            "mlp.fc2.weight",
        ] {
            add(
                format!(
                    "conditioner.embedders.0.transformer.text_model.encoder.layers.{layer}.{part}"
                ),
                &[768, 768],
            );
        }
    }
    for up in 0..4 {
        for block in 0..3 {
            for part in [
                "conv1.weight",
                "conv1.bias",
                "conv2.weight",
                "conv2.bias",
                "norm1.weight",
                "norm1.bias",
            ] {
                add(
                    format!("first_stage_model.decoder.up.{up}.block.{block}.{part}"),
                    &[512, 512, 3, 3],
                );
                add(
                    format!("first_stage_model.encoder.down.{up}.block.{block}.{part}"),
                    &[512, 512, 3, 3],
                );
            }
        }
    }
    add(
        "first_stage_model.decoder.conv_in.weight".into(),
        &[512, 4, 3, 3],
    );
    tensors
}

/// A safetensors file for `tensors`, its data a sparse hole; returns the header's size.
fn write_safetensors(path: &Path, tensors: &[(String, Vec<u64>)]) -> usize {
    let mut table = Map::new();
    table.insert(
        "__metadata__".into(),
        json!({"format": "pt", "modelspec.architecture": "stable-diffusion-xl-v1-base"}),
    );
    let mut offset = 0_u64;
    for (name, shape) in tensors {
        let bytes = shape.iter().product::<u64>() * 2;
        table.insert(
            name.clone(),
            json!({"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let json = serde_json::to_vec(&Value::Object(table)).expect("json");
    let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&json);
    std::fs::write(path, &bytes).expect("write");
    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open");
    file.set_len(bytes.len() as u64 + offset).expect("sparse");
    json.len()
}

/// A Flux GGUF header as city96's converter writes it (a few keys, then about 500 tensor
/// infos); with `vocabulary`, a 150,000-entry string array too, as text-encoder GGUFs carry.
fn write_gguf(path: &Path, vocabulary: bool) -> usize {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    let mut tensors = Vec::new();
    for block in 0..19 {
        for part in [
            "img_attn.qkv.weight",
            "img_attn.proj.weight",
            "img_mlp.0.weight",
            "img_mlp.2.weight",
            "txt_attn.qkv.weight",
            "txt_attn.proj.weight",
            "txt_mlp.0.weight",
            "txt_mlp.2.weight",
            "img_mod.lin.weight",
            "txt_mod.lin.weight",
            "img_attn.norm.key_norm.scale",
            "txt_attn.norm.query_norm.scale",
        ] {
            tensors.push(format!("double_blocks.{block}.{part}"));
        }
    }
    for block in 0..38 {
        for part in [
            "linear1.weight",
            "linear1.bias",
            "linear2.weight",
            "linear2.bias",
            "modulation.lin.weight",
            "norm.key_norm.scale",
            "norm.query_norm.scale",
        ] {
            tensors.push(format!("single_blocks.{block}.{part}"));
        }
    }
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&3_u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(2 + u64::from(vocabulary)).to_le_bytes());
    string(&mut out, "general.architecture");
    out.extend_from_slice(&8_u32.to_le_bytes());
    string(&mut out, "flux");
    string(&mut out, "general.quantization_version");
    out.extend_from_slice(&4_u32.to_le_bytes());
    out.extend_from_slice(&2_u32.to_le_bytes());
    if vocabulary {
        string(&mut out, "tokenizer.ggml.tokens");
        out.extend_from_slice(&9_u32.to_le_bytes());
        out.extend_from_slice(&8_u32.to_le_bytes());
        out.extend_from_slice(&150_000_u64.to_le_bytes());
        for i in 0..150_000 {
            string(&mut out, &format!("tok{i}"));
        }
    }
    for name in &tensors {
        string(&mut out, name);
        out.extend_from_slice(&2_u32.to_le_bytes());
        out.extend_from_slice(&3072_u64.to_le_bytes());
        out.extend_from_slice(&9216_u64.to_le_bytes());
        out.extend_from_slice(&12_u32.to_le_bytes());
        out.extend_from_slice(&0_u64.to_le_bytes());
    }
    std::fs::write(path, &out).expect("write");
    tensors.len()
}

fn main() -> ExitCode {
    if std::env::args().any(|a| a == "--list") {
        return ExitCode::SUCCESS;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let comfy = dir.path().join("ComfyUI");
    let checkpoints = comfy.join("models/checkpoints");
    std::fs::create_dir_all(&checkpoints).expect("mkdir");
    std::fs::create_dir_all(comfy.join("models/loras")).expect("mkdir");
    std::fs::create_dir_all(comfy.join("models/vae")).expect("mkdir");
    let tensors = sdxl_tensors();
    let st = checkpoints.join("mystery_model.safetensors");
    let header_bytes = write_safetensors(&st, &tensors);
    let gguf = checkpoints.join("mystery_q4.gguf");
    let gguf_tensors = write_gguf(&gguf, false);
    let vocab = checkpoints.join("mystery_vocab.gguf");
    write_gguf(&vocab, true);

    let check = header::read_header(&st).expect("reads");
    let detection = detect::detect(&check);
    assert_eq!(detection.family, Some("sdxl"), "{detection:?}");
    let check = header::read_header(&gguf).expect("reads");
    assert_eq!(detect::detect(&check).family, Some("flux"));

    let mut figures = Vec::new();
    figures.push(Figure {
        name: format!(
            "SDXL safetensors: read + detect ({} tensors, {} KiB)",
            tensors.len(),
            header_bytes / 1024
        ),
        target: Duration::from_millis(1),
        tail: false,
        samples: measure(300, || {
            let header = header::read_header(&st).expect("reads");
            std::hint::black_box(detect::detect(&header));
        }),
    });
    figures.push(Figure {
        name: format!("Flux GGUF: read + detect ({gguf_tensors} tensors)"),
        target: Duration::from_millis(1),
        tail: false,
        samples: measure(300, || {
            let header = header::read_header(&gguf).expect("reads");
            std::hint::black_box(detect::detect(&header));
        }),
    });
    figures.push(Figure {
        name: "GGUF with a 150k-token vocabulary: read + detect".into(),
        target: Duration::from_millis(10),
        tail: false,
        samples: measure(100, || {
            let header = header::read_header(&vocab).expect("reads");
            std::hint::black_box(detect::detect(&header));
        }),
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut config = Config::for_data_dir(dir.path().join("data"));
    config.comfyui_dir = Some(comfy.clone());
    let app = AppState::new(config).expect("app");
    app.registry().warm_up();
    let identify = app.registry().get("identify_model_family").expect("tool");
    let arguments = json!({"model_name": "mystery_model.safetensors"});
    runtime.block_on(async {
        let cx = ToolContext::detached(app.clone());
        let mut samples = Vec::with_capacity(200);
        for _ in 0..200 {
            let input = arguments.as_object().cloned();
            let started = Instant::now();
            let result = identify.call(cx.clone(), input).await.expect("identifies");
            std::hint::black_box(result);
            samples.push(started.elapsed());
        }
        figures.push(Figure {
            name: "identify_model_family (folder walk + header)".into(),
            target: Duration::from_millis(5),
            tail: false,
            samples,
        });
    });

    figure::finish(&figures)
}
