//! `identify_model_family` and `check_model_compatibility` reading model headers: a temporary
//! ComfyUI install holds synthetic safetensors and GGUF files (headers only, the data a sparse
//! hole) whose names lie, to prove the header decides.

use std::path::Path;

use serde_json::{Value, json};

use crate::support::{RawStdio, Scratch, failed, ok};

/// A safetensors file: the header for `tensors` (name → shape), then a sparse data section.
fn safetensors(path: &Path, tensors: &[(&str, &[u64])], metadata: Option<Value>) {
    let mut header = serde_json::Map::new();
    if let Some(metadata) = metadata {
        header.insert("__metadata__".into(), metadata);
    }
    let mut offset = 0_u64;
    for (name, shape) in tensors {
        let bytes = shape.iter().product::<u64>() * 2;
        header.insert(
            (*name).into(),
            json!({"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let json = serde_json::to_vec(&header).expect("json");
    let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&json);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, &bytes).expect("write");
    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open");
    file.set_len(bytes.len() as u64 + offset)
        .expect("sparse data");
}

/// A GGUF v3 file with one string key and the given tensors (PyTorch-order shapes).
fn gguf(path: &Path, architecture: &str, tensors: &[(&str, &[u64])]) {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&3_u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&1_u64.to_le_bytes());
    string(&mut out, "general.architecture");
    out.extend_from_slice(&8_u32.to_le_bytes());
    string(&mut out, architecture);
    for (name, shape) in tensors {
        string(&mut out, name);
        out.extend_from_slice(&(shape.len() as u32).to_le_bytes());
        for dim in shape.iter().rev() {
            out.extend_from_slice(&dim.to_le_bytes());
        }
        out.extend_from_slice(&12_u32.to_le_bytes());
        out.extend_from_slice(&0_u64.to_le_bytes());
    }
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, out).expect("write");
}

/// A ComfyUI folder with lying model names, plus a model folder added by
/// extra_model_paths.yaml.
fn install(scratch: &Scratch) -> std::path::PathBuf {
    let comfy = scratch.dir.path().join("ComfyUI");
    let models = comfy.join("models");
    std::fs::create_dir_all(&models).expect("mkdir");
    std::fs::write(comfy.join("main.py"), "# ComfyUI\n").expect("write");
    let extra = scratch.dir.path().join("shared_models");
    std::fs::write(
        comfy.join("extra_model_paths.yaml"),
        format!(
            "shared:\n  base_path: {}\n  loras: loras\n",
            extra.display()
        ),
    )
    .expect("write");
    // A Flux diffusion model named like SDXL.
    safetensors(
        &models.join("checkpoints/sdxl_something.safetensors"),
        &[
            (
                "model.diffusion_model.double_blocks.0.img_attn.qkv.weight",
                &[9216, 3072],
            ),
            (
                "model.diffusion_model.single_blocks.0.linear1.weight",
                &[21504, 3072],
            ),
        ],
        None,
    );
    // An SDXL checkpoint with an honest name.
    safetensors(
        &models.join("checkpoints/juggernautXL.safetensors"),
        &[
            (
                "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight",
                &[640, 2048],
            ),
            ("model.diffusion_model.label_emb.0.0.weight", &[1280, 2816]),
            ("first_stage_model.decoder.conv_in.weight", &[512, 4, 3, 3]),
        ],
        None,
    );
    // An SD1.5 kohya LoRA named like Flux, in a sub-folder of the extra model folder.
    safetensors(
        &extra.join("loras/styles/flux_style.safetensors"),
        &[(
            "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight",
            &[8, 768],
        )],
        Some(json!({"ss_network_module": "networks.lora", "ss_base_model_version": "sd_v1"})),
    );
    // A Wan 2.1 14B GGUF with a neutral name.
    gguf(
        &models.join("diffusion_models/video_q4.gguf"),
        "wan",
        &[("blocks.0.self_attn.q.weight", &[5120, 5120])],
    );
    // A 4-channel VAE, a T5 encoder, and a file cut short.
    safetensors(
        &models.join("vae/my_vae.safetensors"),
        &[("decoder.conv_in.weight", &[512, 4, 3, 3])],
        None,
    );
    safetensors(
        &models.join("text_encoders/t5xxl_fp16.safetensors"),
        &[
            ("shared.weight", &[32128, 4096]),
            (
                "encoder.block.0.layer.0.SelfAttention.q.weight",
                &[4096, 4096],
            ),
        ],
        None,
    );
    let cut = models.join("loras/sdxl_broken.safetensors");
    std::fs::create_dir_all(cut.parent().expect("parent")).expect("mkdir");
    std::fs::write(&cut, [200, 0, 0, 0, 0, 0, 0, 0, b'{']).expect("write");
    comfy
}

async fn agent(scratch: &Scratch) -> RawStdio {
    let comfy = install(scratch);
    let comfy = comfy.display().to_string();
    let mut agent = RawStdio::spawn_with(scratch, &[("COMFYUI_DIR", comfy.as_str())]);
    agent.initialize().await;
    agent
}

#[tokio::test]
async fn the_header_decides_when_the_name_lies() {
    let scratch = Scratch::new();
    let mut agent = agent(&scratch).await;
    let identify = |name: &str| json!({"model_name": name});

    let report = agent
        .call_tool(
            1,
            "identify_model_family",
            identify("sdxl_something.safetensors"),
        )
        .await;
    let report = ok(&report);
    assert_eq!(report["family"], "flux", "{report}");
    assert_eq!(report["decided_by"], "header_and_name_disagree");
    assert_eq!(report["component"], "diffusion_model");
    assert!(
        report["note"]
            .as_str()
            .is_some_and(|n| n.contains("header wins")),
        "{report}"
    );
    assert!(
        report["evidence"][0]
            .as_str()
            .is_some_and(|e| e.contains("double_blocks")),
        "{report}"
    );
    assert!(
        report["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("sdxl_something.safetensors"))
    );

    let report = agent
        .call_tool(
            2,
            "identify_model_family",
            identify("checkpoints/juggernautXL.safetensors"),
        )
        .await;
    let report = ok(&report);
    assert_eq!(report["family"], "sdxl");
    assert_eq!(report["decided_by"], "header");
    assert_eq!(report["component"], "checkpoint");

    // Found through extra_model_paths.yaml, by kind and sub-folder.
    let report = agent
        .call_tool(
            3,
            "identify_model_family",
            identify("loras/styles/flux_style.safetensors"),
        )
        .await;
    let report = ok(&report);
    assert_eq!(report["family"], "sd15", "{report}");
    assert_eq!(report["component"], "lora");
    assert_eq!(report["decided_by"], "header_and_name_disagree");

    let report = agent
        .call_tool(4, "identify_model_family", identify("video_q4.gguf"))
        .await;
    let report = ok(&report);
    assert_eq!(report["family"], "wan");
    assert_eq!(report["decided_by"], "gguf_metadata");

    let report = agent
        .call_tool(
            5,
            "identify_model_family",
            identify("t5xxl_fp16.safetensors"),
        )
        .await;
    let report = ok(&report);
    assert_eq!(report["family"], "unknown");
    assert_eq!(report["component"], "text_encoder");
    assert_eq!(report["variant"], "T5");
}

#[tokio::test]
async fn broken_missing_and_outside_files_fall_back_to_the_name() {
    let scratch = Scratch::new();
    let mut agent = agent(&scratch).await;
    let report = agent
        .call_tool(
            1,
            "identify_model_family",
            json!({"model_name": "sdxl_broken.safetensors"}),
        )
        .await;
    let report = ok(&report);
    assert_eq!(report["family"], "sdxl");
    assert_eq!(report["decided_by"], "file_name");
    assert!(
        report["note"]
            .as_str()
            .is_some_and(|n| n.contains("couldn't be read")),
        "{report}"
    );

    let report = agent
        .call_tool(
            2,
            "identify_model_family",
            json!({"model_name": "flux1-dev.safetensors"}),
        )
        .await;
    let report = ok(&report);
    assert_eq!(
        (report["family"].as_str(), report["decided_by"].as_str()),
        (Some("flux"), Some("file_name"))
    );
    assert!(report["file"].is_null() && report["component"].is_null());

    // An absolute path outside the allowed folders is never opened.
    let outside = scratch.dir.path().join("outside/sdxl_x.safetensors");
    safetensors(
        &outside,
        &[("double_blocks.0.img_attn.qkv.weight", &[9216, 3072])],
        None,
    );
    let report = agent
        .call_tool(
            3,
            "identify_model_family",
            json!({"model_name": outside.display().to_string()}),
        )
        .await;
    let report = ok(&report);
    assert_eq!(report["family"], "sdxl");
    assert_eq!(report["decided_by"], "file_name");
    assert!(
        report["note"]
            .as_str()
            .is_some_and(|n| n.contains("wasn't opened")),
        "{report}"
    );

    let message = failed(
        &agent
            .call_tool(4, "identify_model_family", json!({"model_name": ""}))
            .await,
    );
    assert!(!message.is_empty());
}

#[tokio::test]
async fn compatibility_is_judged_on_what_the_files_are() {
    let scratch = Scratch::new();
    let mut agent = agent(&scratch).await;
    // By name these all look SDXL or unknown; by header, a Flux model meets an SDXL checkpoint.
    let report = agent
        .call_tool(
            1,
            "check_model_compatibility",
            json!({"models": ["sdxl_something.safetensors", "juggernautXL.safetensors", "my_vae.safetensors"]}),
        )
        .await;
    let report = ok(&report);
    assert_eq!(report["compatible"], false, "{report}");
    assert_eq!(report["models"]["sdxl_something.safetensors"], "flux");
    assert_eq!(
        report["details"]["sdxl_something.safetensors"]["decided_by"],
        "header_and_name_disagree"
    );
    assert_eq!(report["details"]["my_vae.safetensors"]["component"], "vae");
    assert_eq!(report["models"]["my_vae.safetensors"], "unknown");

    // A workflow: the SDXL checkpoint with the SD1.5 LoRA hiding behind a Flux name.
    let workflow = json!({
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "juggernautXL.safetensors"}},
        "2": {"class_type": "LoraLoader", "inputs": {"lora_name": "styles/flux_style.safetensors",
              "model": ["1", 0], "clip": ["1", 1], "strength_model": 1.0, "strength_clip": 1.0}}
    });
    let report = agent
        .call_tool(
            2,
            "check_model_compatibility",
            json!({"workflow": workflow}),
        )
        .await;
    let report = ok(&report);
    assert_eq!(report["compatible"], false, "{report}");
    assert_eq!(report["families_detected"], json!(["sdxl", "sd15"]));

    let report = agent
        .call_tool(
            3,
            "check_model_compatibility",
            json!({"models": ["juggernautXL.safetensors", "t5xxl_fp16.safetensors"]}),
        )
        .await;
    let report = ok(&report);
    assert_eq!(report["compatible"], true);
    assert_eq!(report["family"], "sdxl");
    assert_eq!(
        report["details"]["t5xxl_fp16.safetensors"]["component"],
        "text_encoder"
    );
}
