//! Which family a model file belongs to and what kind of component it is, decided from its
//! header (tensor names, a few shapes, embedded metadata) rather than its name. The rules
//! look for each architecture's distinctive module names, with or without the prefixes that
//! checkpoints, ComfyUI, diffusers, PEFT and kohya-style LoRAs add, and read a shape only
//! where the names alone can't tell (cross-attention width for SD1.5 / SD2 / SDXL, model
//! width for Wan, latent channels for VAEs).

use schemars::JsonSchema;
use serde::Serialize;

use crate::models::family::{self, Family, Identified};
use crate::models::header::{Format, ModelHeader};

/// What part of a generation pipeline a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    /// A diffusion model bundled with its VAE and/or text encoders.
    Checkpoint,
    /// The diffusion model (UNet or transformer) alone.
    DiffusionModel,
    Lora,
    Vae,
    TextEncoder,
    Controlnet,
    Unknown,
}

/// How a model's family was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecidedBy {
    /// The file's tensor names, shapes or embedded metadata.
    Header,
    /// A GGUF file's `general.architecture`.
    GgufMetadata,
    /// The file name (the file wasn't found, or its header said nothing useful).
    FileName,
    /// The header and the name name different families; the header's answer is reported.
    HeaderAndNameDisagree,
}

/// What a header says about its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// The family key, when the header decides one.
    pub family: Option<&'static str>,
    /// When the header narrows it down but can't decide (a 4-channel VAE is SD1.5, SD2 or
    /// SDXL), the families it could be; the name may pick one of them.
    pub candidates: &'static [&'static str],
    pub component: Component,
    /// `Header` or `GgufMetadata`.
    pub decided_by: DecidedBy,
    /// Size, task or sub-type where the header shows it (`14B, image-to-video`, `T5-XXL`).
    pub variant: Option<String>,
    /// The tensor names and metadata keys that decided, in words.
    pub evidence: Vec<String>,
}

// Indices into `Scan::markers`.
const ACE_STEP: usize = 0;
const STABLE_AUDIO: usize = 1;
const HUNYUAN3D: usize = 2;
const HUNYUAN_VIDEO: usize = 3;
const HIDREAM: usize = 4;
const FLUX: usize = 5;
const SD3: usize = 6;
const QWEN: usize = 7;
const JOINT: usize = 8;
const WAN: usize = 9;
const LTXV: usize = 10;
const SD_UNET: usize = 11;
const SDXL_ADM: usize = 12;
const CONTROLNET: usize = 13;
const VAE: usize = 14;
const CLIP: usize = 15;
const T5: usize = 16;
const LLM: usize = 17;
const MARKERS: usize = 18;

/// Where a tensor sits in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    /// The diffusion model (or a standalone file's own tensors).
    Model,
    /// A checkpoint's bundled VAE.
    BundledVae,
    /// A checkpoint's bundled text encoder, or a LoRA's text-encoder part.
    TextEncoder,
}

/// Which half of a LoRA pair a tensor is; only the "down" (A) half's shape tells the input
/// width of the layer it patches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoraPart {
    Down,
    Other,
}

const LORA_SUFFIXES: &[(&str, LoraPart)] = &[
    (".lora_down.", LoraPart::Down),
    (".lora_A.", LoraPart::Down),
    (".lora.down.", LoraPart::Down),
    (".lora_up.", LoraPart::Other),
    (".lora_B.", LoraPart::Other),
    (".lora.up.", LoraPart::Other),
    (".hada_", LoraPart::Other),
    (".lokr_", LoraPart::Other),
    (".dora_scale", LoraPart::Other),
];

/// Prefixes and the section they put a tensor in, tried in order; `true` marks a prefix that
/// on its own says the file is a kohya-style LoRA.
const PREFIXES: &[(&str, Section, bool)] = &[
    ("lora_unet_", Section::Model, true),
    ("lora_transformer_", Section::Model, true),
    ("lora_te1_", Section::TextEncoder, true),
    ("lora_te2_", Section::TextEncoder, true),
    ("lora_te3_", Section::TextEncoder, true),
    ("lora_te_", Section::TextEncoder, true),
    ("model.diffusion_model.", Section::Model, false),
    ("first_stage_model.", Section::BundledVae, false),
    ("vae.", Section::BundledVae, false),
    ("cond_stage_model.", Section::TextEncoder, false),
    ("conditioner.embedders.", Section::TextEncoder, false),
    ("text_encoders.", Section::TextEncoder, false),
    ("text_encoder_2.", Section::TextEncoder, false),
    ("text_encoder.", Section::TextEncoder, false),
    ("control_model.", Section::Model, false),
    ("model.model.", Section::Model, false),
    ("diffusion_model.", Section::Model, false),
    ("base_model.model.", Section::Model, false),
    ("transformer.", Section::Model, false),
    ("unet.", Section::Model, false),
    ("model.", Section::Model, false),
];

/// What one pass over the tensor names found.
#[derive(Debug, Default)]
struct Scan<'a> {
    /// The first tensor of each marker kind.
    markers: [Option<&'a str>; MARKERS],
    lora: Option<&'a str>,
    bundled_vae: Option<&'a str>,
    bundled_te: Option<&'a str>,
    /// A second (SDXL-style) text encoder: `lora_te2_`, `text_encoder_2.`, `conditioner.embedders.1.`.
    sdxl_te: Option<&'a str>,
    /// Cross-attention context width, from `attn2.to_k`.
    context: Option<(u64, &'a str)>,
    /// Input channels of the first UNet convolution (9 for inpainting models).
    unet_in: Option<u64>,
    /// Wan model width and input channels, from `patch_embedding` or a block's projection.
    wan_dim: Option<(u64, &'a str)>,
    wan_in: Option<u64>,
    wan_image_embedding: bool,
    /// Hidden width of a diffusers-style joint transformer block (Flux 3072, SD3 1536/2432).
    joint_hidden: Option<u64>,
    /// VAE latent channels, whether the VAE is 3D (video), and the tensor that said so.
    vae_latent: Option<(u64, bool, &'a str)>,
    wan_vae: bool,
    /// CLIP text width, T5 vocabulary size.
    clip_width: Option<u64>,
    t5_vocab: Option<u64>,
    flux_guidance: bool,
    chroma: bool,
}

fn split_lora(name: &str) -> (&str, Option<LoraPart>) {
    // One pass over the dots: every LoRA suffix starts at one.
    for (at, _) in name.match_indices('.') {
        let tail = &name[at..];
        if let Some((_, part)) = LORA_SUFFIXES.iter().find(|(s, _)| tail.starts_with(s)) {
            return (&name[..at], Some(*part));
        }
    }
    if let Some(module) = name.strip_suffix(".alpha") {
        return (module, Some(LoraPart::Other));
    }
    (name, None)
}

fn section_of(module: &str) -> (Section, &str, bool, &str) {
    for (prefix, section, kohya) in PREFIXES {
        if let Some(rest) = module.strip_prefix(prefix) {
            return (*section, rest, *kohya, prefix);
        }
    }
    (Section::Model, module, false, "")
}

impl<'a> Scan<'a> {
    fn run(header: &'a ModelHeader) -> Self {
        let mut scan = Scan::default();
        let mut normal = String::with_capacity(128);
        for tensor in &header.tensors {
            let name = tensor.name.as_str();
            let (module, part) = split_lora(name);
            let (section, rest, kohya, prefix) = section_of(module);
            if part.is_some() || kohya {
                scan.lora.get_or_insert(name);
            }
            normal.clear();
            for (n, piece) in rest.split('.').enumerate() {
                if n > 0 {
                    normal.push('_');
                }
                normal.push_str(piece);
            }
            // Only the down half of a LoRA pair, or a full weight, has the layer's input width
            // as its second dimension.
            let in_width = match part {
                Some(LoraPart::Other) => None,
                _ if tensor.shape.len() >= 2 => Some(tensor.shape[1]),
                _ => None,
            };
            match section {
                Section::BundledVae => {
                    scan.bundled_vae.get_or_insert(name);
                }
                Section::TextEncoder => {
                    scan.bundled_te.get_or_insert(name);
                    if matches!(prefix, "lora_te1_" | "lora_te2_" | "text_encoder_2.")
                        || rest.starts_with("1.")
                    {
                        scan.sdxl_te.get_or_insert(name);
                    }
                    if normal.contains("self_attn_q_proj") && part == Some(LoraPart::Down) {
                        scan.clip_width = scan.clip_width.or(in_width);
                    }
                }
                Section::Model => {
                    if prefix == "control_model." {
                        scan.markers[CONTROLNET].get_or_insert(name);
                    }
                    scan.model_tensor(name, &normal, in_width, &tensor.shape);
                }
            }
        }
        scan
    }

    fn mark(&mut self, marker: usize, name: &'a str) {
        self.markers[marker].get_or_insert(name);
    }

    fn model_tensor(&mut self, name: &'a str, m: &str, in_width: Option<u64>, shape: &[u64]) {
        let starts = |p: &str| m.starts_with(p);
        if starts("lyric_encoder") || starts("genre_embedder") || starts("speaker_embedder") {
            self.mark(ACE_STEP, name);
        } else if starts("conditioner_conditioners_seconds")
            || starts("pretransform_")
            || starts("transformer_rotary_pos_emb")
        {
            self.mark(STABLE_AUDIO, name);
        } else if starts("latent_in") {
            self.mark(HUNYUAN3D, name);
        } else if starts("txt_in_individual_token_refiner")
            || starts("context_embedder_token_refiner")
        {
            self.mark(HUNYUAN_VIDEO, name);
        } else if starts("double_blocks_") || starts("single_blocks_") {
            if [
                "_img_mlp_fc1",
                "_img_mod_linear",
                "_txt_mlp_fc1",
                "_txt_mod_linear",
            ]
            .iter()
            .any(|p| m.contains(p))
            {
                self.mark(HUNYUAN_VIDEO, name);
            }
            self.mark(FLUX, name);
        } else if starts("single_transformer_blocks_") {
            self.mark(FLUX, name);
        } else if starts("double_stream_blocks_") || starts("single_stream_blocks_") {
            self.mark(HIDREAM, name);
        } else if starts("joint_blocks_") {
            self.mark(SD3, name);
        } else if starts("pos_embed_proj") {
            self.mark(JOINT, name);
        } else if starts("transformer_blocks_") {
            if ["_img_mlp_", "_txt_mlp_", "_img_mod_", "_txt_mod_"]
                .iter()
                .any(|p| m.contains(p))
            {
                self.mark(QWEN, name);
            } else if m.contains("_attn1_") {
                self.mark(LTXV, name);
            } else if m.contains("_attn_add_q_proj") || m.contains("_ff_context_") {
                self.mark(JOINT, name);
            }
            if m.contains("_attn_to_q") {
                self.joint_hidden = self.joint_hidden.or(in_width);
            }
        } else if starts("blocks_")
            && ["_self_attn_", "_cross_attn_", "_attn1_", "_attn2_"]
                .iter()
                .any(|p| m.contains(p))
        {
            self.mark(WAN, name);
            if (m.contains("self_attn_q") || m.contains("attn1_to_q"))
                && let Some(width) = in_width
            {
                self.wan_dim.get_or_insert((width, name));
            }
        } else if starts("patch_embedding") {
            self.mark(WAN, name);
            if shape.len() == 5 {
                self.wan_dim = Some((shape[0], name));
                self.wan_in = Some(shape[1]);
            }
        } else if starts("img_emb_") {
            self.wan_image_embedding = true;
        } else if starts("adaln_single") || starts("patchify_proj") {
            self.mark(LTXV, name);
        } else if starts_any(
            m,
            &[
                "input_blocks_",
                "middle_block_",
                "output_blocks_",
                "down_blocks_",
                "up_blocks_",
                "mid_block_",
            ],
        ) {
            self.mark(SD_UNET, name);
            if m == "input_blocks_0_0_weight" && shape.len() == 4 {
                self.unet_in = Some(shape[1]);
            }
        } else if starts("label_emb") || starts("add_embedding") {
            self.mark(SDXL_ADM, name);
        } else if starts("input_hint_block") || starts("controlnet_") || starts("zero_convs") {
            self.mark(CONTROLNET, name);
        } else if starts("decoder_") || starts("encoder_conv") || starts("post_quant_conv") {
            self.vae_tensor(name, m, shape);
        } else if starts("text_model_") || starts("transformer_resblocks") {
            self.mark(CLIP, name);
            if m.ends_with("token_embedding_weight") && shape.len() == 2 {
                self.clip_width = Some(shape[1]);
            }
        } else if starts("token_embedding") && shape.len() == 2 {
            self.clip_width = Some(shape[1]);
        } else if starts("encoder_block_") || m == "shared_weight" {
            self.mark(T5, name);
            if m == "shared_weight" && shape.len() == 2 {
                self.t5_vocab = Some(shape[0]);
            }
        } else if (starts("layers_") && m.contains("_self_attn_")) || starts("embed_tokens") {
            self.mark(LLM, name);
        } else if starts("guidance_in") {
            self.flux_guidance = true;
        } else if starts("distilled_guidance_layer") {
            self.chroma = true;
        }
        if m.contains("attn2_to_k")
            && self.context.is_none()
            && let Some(width) = in_width
        {
            self.context = Some((width, name));
        }
    }

    fn vae_tensor(&mut self, name: &'a str, m: &str, shape: &[u64]) {
        if !(starts_any(
            m,
            &[
                "decoder_conv_in",
                "decoder_conv1",
                "decoder_mid",
                "decoder_up",
            ],
        ) || starts_any(m, &["decoder_head", "decoder_middle", "decoder_upsamples"])
            || starts_any(m, &["encoder_conv", "post_quant_conv"]))
        {
            return;
        }
        self.mark(VAE, name);
        if m.starts_with("decoder_head") || m.starts_with("decoder_middle") {
            self.wan_vae = true;
        }
        let latent = match m {
            "decoder_conv_in_weight" if shape.len() == 4 => Some((shape[1], false)),
            "decoder_conv_in_conv_weight" if shape.len() == 5 => Some((shape[1], true)),
            "decoder_conv1_weight" if shape.len() == 5 => {
                self.wan_vae = true;
                Some((shape[1], true))
            }
            _ => None,
        };
        if let Some((channels, video)) = latent {
            self.vae_latent = Some((channels, video, name));
        }
    }
}

fn starts_any(m: &str, prefixes: &[&str]) -> bool {
    prefixes.iter().any(|p| m.starts_with(p))
}

fn tensor(name: &str) -> String {
    format!("tensor {name:?}")
}

/// Reads a file's header for its family and component. Never touches tensor data.
pub fn detect(header: &ModelHeader) -> Detection {
    let scan = Scan::run(header);
    let mut detection = Detection {
        family: None,
        candidates: &[],
        component: Component::Unknown,
        decided_by: DecidedBy::Header,
        variant: None,
        evidence: Vec::new(),
    };
    if header.format == Format::Gguf
        && let Some(arch) = header.metadata.get("general.architecture")
        && gguf_architecture(arch, &scan, &mut detection)
    {
        return detection;
    }
    from_tensors(&scan, &mut detection);
    from_metadata(header, &mut detection);
    detection
}

/// Applies a GGUF `general.architecture` (city96's ComfyUI-GGUF names for diffusion models);
/// false when it names nothing known, so the tensors decide.
fn gguf_architecture(arch: &str, scan: &Scan<'_>, detection: &mut Detection) -> bool {
    let family = match arch {
        "flux" => Some("flux"),
        "sdxl" => Some("sdxl"),
        "sd1" => Some("sd15"),
        "sd3" => Some("sd3"),
        "wan" => Some("wan"),
        "hyvid" => Some("hunyuan_video"),
        "ltxv" => Some("ltxv"),
        "hidream" => Some("hidream"),
        "qwen_image" => Some("qwen_image"),
        "aura" | "lumina2" | "cosmos" | "chroma" => None,
        "llama" | "qwen2" | "qwen2vl" | "qwen3" | "t5" | "t5encoder" | "gemma2" | "gemma3"
        | "mistral3" => {
            detection.component = Component::TextEncoder;
            detection.decided_by = DecidedBy::GgufMetadata;
            detection.variant = Some(format!("{arch} text encoder"));
            detection
                .evidence
                .push(format!("GGUF general.architecture = {arch:?}"));
            return true;
        }
        _ => return false,
    };
    detection.family = family;
    detection.decided_by = DecidedBy::GgufMetadata;
    detection.component = if scan.lora.is_some() {
        Component::Lora
    } else {
        Component::DiffusionModel
    };
    detection.evidence.push(match family {
        Some(_) => format!("GGUF general.architecture = {arch:?}"),
        None => format!(
            "GGUF general.architecture = {arch:?}, a model outside the families this server \
             tells apart"
        ),
    });
    if arch == "chroma" {
        detection.variant = Some("Chroma".into());
    }
    true
}

fn from_tensors(scan: &Scan<'_>, d: &mut Detection) {
    let m = &scan.markers;
    let decided = |marker: usize| m[marker].map(tensor);
    let (family, evidence): (Option<&'static str>, Option<String>) = if m[ACE_STEP].is_some() {
        d.variant = Some("ACE-Step".into());
        (Some("audio"), decided(ACE_STEP))
    } else if m[STABLE_AUDIO].is_some() {
        d.variant = Some("Stable Audio".into());
        (Some("audio"), decided(STABLE_AUDIO))
    } else if m[HUNYUAN3D].is_some() {
        (Some("hunyuan3d"), decided(HUNYUAN3D))
    } else if m[HUNYUAN_VIDEO].is_some() {
        (Some("hunyuan_video"), decided(HUNYUAN_VIDEO))
    } else if m[HIDREAM].is_some() {
        (Some("hidream"), decided(HIDREAM))
    } else if m[FLUX].is_some() {
        d.variant = if scan.chroma {
            Some("Chroma (Flux-based)".into())
        } else if scan.flux_guidance {
            Some("with guidance embedding (dev-style)".into())
        } else {
            None
        };
        (Some("flux"), decided(FLUX))
    } else if m[SD3].is_some() {
        (Some("sd3"), decided(SD3))
    } else if m[QWEN].is_some() {
        (Some("qwen_image"), decided(QWEN))
    } else if m[JOINT].is_some() {
        // Diffusers-style joint blocks: Flux is 3072 wide, SD3 Medium 1536, SD3.5 Large 2432.
        match scan.joint_hidden {
            Some(3072) => (
                Some("flux"),
                decided(JOINT).map(|e| format!("{e}, hidden width 3072")),
            ),
            _ => (Some("sd3"), decided(JOINT)),
        }
    } else if m[WAN].is_some() {
        d.variant = wan_variant(scan);
        let mut evidence = decided(WAN);
        if let (Some(e), Some((width, _))) = (evidence.as_mut(), scan.wan_dim) {
            e.push_str(&format!(", model width {width}"));
        }
        (Some("wan"), evidence)
    } else if m[LTXV].is_some() {
        (Some("ltxv"), decided(LTXV))
    } else if m[SD_UNET].is_some() || m[SDXL_ADM].is_some() || scan.context.is_some() {
        sd_unet(scan, d)
    } else if scan.lora.is_some() && scan.bundled_te.is_some() {
        // A LoRA for the text encoder only.
        sd_text_encoder_lora(scan, d)
    } else {
        (None, None)
    };
    if let Some(family) = family {
        d.family = Some(family);
        d.evidence.extend(evidence);
        d.component = if scan.lora.is_some() {
            Component::Lora
        } else if m[CONTROLNET].is_some() {
            Component::Controlnet
        } else if scan.bundled_vae.is_some() || scan.bundled_te.is_some() {
            Component::Checkpoint
        } else {
            Component::DiffusionModel
        };
        if d.component == Component::Checkpoint {
            if let Some(part) = scan.bundled_vae.or(scan.bundled_te) {
                d.evidence
                    .push(format!("bundles a VAE or text encoder ({part:?})"));
            }
        } else if d.component == Component::Lora
            && let Some(first) = scan.lora
        {
            d.evidence.push(format!("LoRA weights ({first:?})"));
        }
        return;
    }
    if d.candidates.is_empty() && d.evidence.is_empty() {
        if scan.lora.is_some() {
            d.component = Component::Lora;
        } else if m[VAE].is_some() {
            vae(scan, d);
        } else {
            text_encoder(scan, d);
        }
    } else if scan.lora.is_some() {
        d.component = Component::Lora;
    }
}

fn wan_variant(scan: &Scan<'_>) -> Option<String> {
    let size = match scan.wan_dim.map(|(w, _)| w) {
        Some(1536) => Some("1.3B"),
        Some(5120) => Some("14B"),
        Some(3072) => Some("5B (Wan 2.2)"),
        _ => None,
    };
    let task = match scan.wan_in {
        Some(16) => Some("text-to-video"),
        Some(36) if scan.wan_image_embedding => Some("image-to-video (Wan 2.1)"),
        Some(36) => Some("image-to-video"),
        Some(48) => Some("text/image-to-video"),
        _ => None,
    };
    match (size, task) {
        (Some(s), Some(t)) => Some(format!("{s}, {t}")),
        (Some(s), None) => Some(s.into()),
        (None, Some(t)) => Some(t.into()),
        (None, None) => None,
    }
}

/// SD1.x, SD2.x and SDXL UNets look alike; the cross-attention width tells them apart.
fn sd_unet(scan: &Scan<'_>, d: &mut Detection) -> (Option<&'static str>, Option<String>) {
    let adm = scan.markers[SDXL_ADM].is_some() || scan.sdxl_te.is_some();
    if scan.unet_in == Some(9) {
        d.variant = Some("inpainting".into());
    }
    match scan.context {
        Some((width, name)) => {
            let evidence = Some(format!("cross-attention width {width} ({})", tensor(name)));
            match width {
                768 => (Some("sd15"), evidence),
                1024 => (Some("sd2"), evidence),
                2048 => (Some("sdxl"), evidence),
                1280 => {
                    d.variant = Some("refiner".into());
                    (Some("sdxl"), evidence)
                }
                _ => {
                    d.evidence.extend(evidence);
                    (None, None)
                }
            }
        }
        None if adm => (
            Some("sdxl"),
            scan.markers[SDXL_ADM].or(scan.sdxl_te).map(|n| {
                format!(
                    "SDXL's extra conditioning or second text encoder ({})",
                    tensor(n)
                )
            }),
        ),
        None => {
            d.candidates = &["sd15", "sd2", "sdxl"];
            d.evidence.extend(
                scan.markers[SD_UNET].map(|n| format!("a Stable Diffusion UNet ({})", tensor(n))),
            );
            (None, None)
        }
    }
}

fn sd_text_encoder_lora(
    scan: &Scan<'_>,
    d: &mut Detection,
) -> (Option<&'static str>, Option<String>) {
    if let Some(name) = scan.sdxl_te {
        return (
            Some("sdxl"),
            Some(format!(
                "a LoRA for SDXL's two text encoders ({})",
                tensor(name)
            )),
        );
    }
    match scan.clip_width {
        Some(768) => (
            Some("sd15"),
            Some("a LoRA for a 768-wide CLIP text encoder".into()),
        ),
        Some(1024) => (
            Some("sd2"),
            Some("a LoRA for a 1024-wide text encoder".into()),
        ),
        _ => {
            d.candidates = &["sd15", "sd2", "sdxl"];
            (None, None)
        }
    }
}

fn vae(scan: &Scan<'_>, d: &mut Detection) {
    d.component = Component::Vae;
    let Some((channels, video, name)) = scan.vae_latent else {
        d.evidence
            .extend(scan.markers[VAE].map(|n| format!("a VAE ({})", tensor(n))));
        return;
    };
    d.variant = Some(format!("{channels}-channel latent"));
    d.evidence.push(format!(
        "a VAE with {channels} latent channels ({})",
        tensor(name)
    ));
    match (channels, video, scan.wan_vae) {
        (4, false, _) => d.candidates = &["sd15", "sd2", "sdxl"],
        (16, false, _) => d.candidates = &["flux", "sd3"],
        (16, true, true) => d.candidates = &["wan", "qwen_image"],
        (48, true, true) => {
            d.family = Some("wan");
            d.variant = Some("Wan 2.2 (48-channel latent)".into());
        }
        (16, true, false) => d.family = Some("hunyuan_video"),
        (128, true, false) => d.family = Some("ltxv"),
        _ => {}
    }
}

fn text_encoder(scan: &Scan<'_>, d: &mut Detection) {
    let m = &scan.markers;
    let (variant, name) = if let Some(name) = m[CLIP] {
        let variant = match scan.clip_width {
            Some(768) => "CLIP-L",
            Some(1280) => "CLIP-G",
            Some(1024) => "OpenCLIP-H",
            _ => "CLIP",
        };
        (variant, name)
    } else if let Some(name) = m[T5] {
        let variant = match scan.t5_vocab {
            Some(256_384) => "UMT5-XXL",
            _ => "T5",
        };
        (variant, name)
    } else if let Some(name) = m[LLM] {
        ("a language model", name)
    } else {
        return;
    };
    d.component = Component::TextEncoder;
    d.variant = Some(variant.into());
    d.evidence.push(format!(
        "a {variant} text encoder ({}), shared across families",
        tensor(name)
    ));
}

/// Kohya / modelspec metadata: decides when the tensors didn't, and is noted when it
/// disagrees with them.
fn from_metadata(header: &ModelHeader, d: &mut Detection) {
    for key in ["ss_base_model_version", "modelspec.architecture"] {
        let Some(value) = header.metadata.get(key) else {
            continue;
        };
        if key == "modelspec.architecture"
            && value.ends_with("/lora")
            && d.component == Component::Unknown
        {
            d.component = Component::Lora;
        }
        let Some(said) = family_in_text(value) else {
            continue;
        };
        match d.family {
            None if d.candidates.is_empty() || d.candidates.contains(&said) => {
                d.family = Some(said);
                d.candidates = &[];
                d.evidence.push(format!("metadata {key} = {value:?}"));
            }
            Some(family) if family != said => d.evidence.push(format!(
                "metadata {key} = {value:?} disagrees; the tensors decide"
            )),
            _ => {}
        }
        if header.metadata.contains_key("ss_network_module") && d.component == Component::Unknown {
            d.component = Component::Lora;
        }
        return;
    }
}

/// A family named in free-form metadata (`sdxl_base_v1-0`, `stable-diffusion-v1/lora`,
/// `flux-1-dev`).
fn family_in_text(text: &str) -> Option<&'static str> {
    const NEEDLES: &[(&str, &str)] = &[
        ("stable-diffusion-xl", "sdxl"),
        ("sdxl", "sdxl"),
        ("stable-diffusion-3", "sd3"),
        ("sd3", "sd3"),
        ("flux", "flux"),
        ("hunyuan-video", "hunyuan_video"),
        ("hunyuan_video", "hunyuan_video"),
        ("hunyuanvideo", "hunyuan_video"),
        ("wan", "wan"),
        ("ltx", "ltxv"),
        ("qwen", "qwen_image"),
        ("hidream", "hidream"),
        ("stable-diffusion-v2", "sd2"),
        ("sd_v2", "sd2"),
        ("stable-diffusion-v1", "sd15"),
        ("sd_v1", "sd15"),
        ("stable-audio", "audio"),
    ];
    let lower = text.to_ascii_lowercase();
    NEEDLES
        .iter()
        .find(|(needle, _)| lower.contains(needle))
        .map(|(_, key)| *key)
}

/// The final word on one model: its family, how that was decided, and why.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub family: Option<&'static Family>,
    pub decided_by: DecidedBy,
    /// Null when the file wasn't read.
    pub component: Option<Component>,
    pub variant: Option<String>,
    pub evidence: Vec<String>,
    /// Anything the user should know about how it was decided (an unreadable header, a
    /// name that disagrees).
    pub note: Option<String>,
}

/// Combines the name rule with what the header said (`None` when the file wasn't found;
/// `Err` with the reason when its header couldn't be read).
pub fn decide(name: &Identified, header: Option<Result<Detection, String>>) -> Verdict {
    let by_name = || Verdict {
        family: name.family,
        decided_by: DecidedBy::FileName,
        component: None,
        variant: None,
        evidence: name
            .matched
            .map(|m| format!("the name contains {m:?}"))
            .into_iter()
            .collect(),
        note: None,
    };
    let detection = match header {
        None => return by_name(),
        Some(Err(reason)) => {
            return Verdict {
                note: Some(format!(
                    "The file was found but its header couldn't be read: {reason}. The name \
                     decided instead."
                )),
                ..by_name()
            };
        }
        Some(Ok(detection)) => detection,
    };
    let header_family = detection.family.and_then(family::by_key).or_else(|| {
        // The header narrowed it down; let the name pick among those.
        name.family
            .filter(|f| detection.candidates.contains(&f.key))
    });
    let mut verdict = Verdict {
        family: header_family,
        decided_by: detection.decided_by,
        component: Some(detection.component),
        variant: detection.variant,
        evidence: detection.evidence,
        note: None,
    };
    match (header_family, name.family) {
        (Some(found), Some(named)) if found.key != named.key => {
            verdict.decided_by = DecidedBy::HeaderAndNameDisagree;
            verdict.note = Some(format!(
                "The name suggests {}, but the file itself is {}; the file's header wins.",
                named.label, found.label
            ));
        }
        (Some(found), _) if detection.family.is_none() => {
            verdict.evidence.push(format!(
                "the name picks {} among {}",
                found.label,
                detection.candidates.join(", ")
            ));
        }
        (Some(_), _) => {}
        (None, Some(named)) if !detection.candidates.is_empty() => {
            verdict.decided_by = DecidedBy::HeaderAndNameDisagree;
            verdict.note = Some(format!(
                "The name suggests {}, but the file can only be one of: {}. Its family is left \
                 unknown.",
                named.label,
                labels(detection.candidates)
            ));
        }
        (None, _) if !detection.candidates.is_empty() => {
            verdict.note = Some(format!(
                "The file fits several families ({}); its name doesn't say which.",
                labels(detection.candidates)
            ));
        }
        (None, _) if detection.component == Component::TextEncoder => {
            verdict.note = Some(
                "A text encoder is shared: any family built on it can use it, so it isn't \
                 judged."
                    .into(),
            );
        }
        (None, Some(_)) if verdict.evidence.is_empty() => {
            // The header said nothing useful: the name decides, as before.
            let component = verdict.component;
            return Verdict {
                component,
                note: Some("The file's header didn't show a known architecture.".into()),
                ..by_name()
            };
        }
        (None, _) => {
            verdict.note =
                Some("The file's header doesn't match a family this server tells apart.".into());
        }
    }
    verdict
}

fn labels(keys: &[&str]) -> String {
    keys.iter()
        .filter_map(|k| family::by_key(k))
        .map(|f| f.label)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::header::TensorInfo;
    use crate::models::header::tests::GgufWriter;
    use crate::models::header::tests::safetensors_bytes;
    use crate::models::header::{parse_gguf, parse_safetensors};
    use serde_json::{Map, Value, json};

    fn header(tensors: &[(&str, &[u64])]) -> ModelHeader {
        ModelHeader {
            format: Format::Safetensors,
            tensors: tensors
                .iter()
                .map(|(name, shape)| TensorInfo {
                    name: (*name).into(),
                    shape: shape.to_vec(),
                })
                .collect(),
            metadata: Default::default(),
            data_end: 0,
        }
    }

    fn family_of(tensors: &[(&str, &[u64])]) -> (Option<&'static str>, Component) {
        let d = detect(&header(tensors));
        (d.family, d.component)
    }

    use Component::*;

    type Tensors<'a> = &'a [(&'a str, &'a [u64])];

    #[test]
    fn sd_checkpoints_by_cross_attention_width() {
        let unet = |width: u64, extra: Option<&str>| {
            let mut tensors: Vec<(String, Vec<u64>)> =
                vec![
                ("model.diffusion_model.input_blocks.0.0.weight".into(), vec![320, 4, 3, 3]),
                (
                    "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
                        .into(),
                    vec![320, width],
                ),
                ("first_stage_model.decoder.conv_in.weight".into(), vec![512, 4, 3, 3]),
            ];
            if let Some(extra) = extra {
                tensors.push((extra.into(), vec![1280, 2816]));
            }
            let refs: Vec<(&str, &[u64])> = tensors
                .iter()
                .map(|(n, s)| (n.as_str(), s.as_slice()))
                .collect();
            family_of(&refs)
        };
        assert_eq!(unet(768, None), (Some("sd15"), Checkpoint));
        assert_eq!(unet(1024, None), (Some("sd2"), Checkpoint));
        assert_eq!(
            unet(2048, Some("model.diffusion_model.label_emb.0.0.weight")),
            (Some("sdxl"), Checkpoint)
        );
        let d = detect(&header(&[(
            "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight",
            &[640, 1280],
        )]));
        assert_eq!(d.family, Some("sdxl"));
        assert_eq!(d.variant.as_deref(), Some("refiner"));
        assert_eq!(d.component, DiffusionModel);
    }

    #[test]
    fn transformer_families() {
        let cases: &[(Tensors, &str, Component)] = &[
            (
                &[
                    (
                        "model.diffusion_model.joint_blocks.0.context_block.attn.qkv.weight",
                        &[4608, 1536],
                    ),
                    (
                        "text_encoders.clip_l.transformer.text_model.final_layer_norm.weight",
                        &[768],
                    ),
                ],
                "sd3",
                Checkpoint,
            ),
            (
                &[
                    ("double_blocks.0.img_attn.qkv.weight", &[9216, 3072]),
                    ("single_blocks.0.linear1.weight", &[21504, 3072]),
                    ("guidance_in.in_layer.weight", &[3072, 256]),
                ],
                "flux",
                DiffusionModel,
            ),
            (
                &[
                    (
                        "model.diffusion_model.double_blocks.0.img_attn.qkv.weight",
                        &[9216, 3072],
                    ),
                    (
                        "model.diffusion_model.txt_in.individual_token_refiner.blocks.0.norm1.weight",
                        &[3072],
                    ),
                ],
                "hunyuan_video",
                DiffusionModel,
            ),
            (
                &[
                    ("blocks.0.self_attn.q.weight", &[5120, 5120]),
                    ("patch_embedding.weight", &[5120, 36, 1, 2, 2]),
                    ("text_embedding.0.weight", &[5120, 4096]),
                ],
                "wan",
                DiffusionModel,
            ),
            (
                &[
                    ("transformer_blocks.0.attn1.to_q.weight", &[2048, 2048]),
                    ("adaln_single.emb.timestep_embedder.linear_1.bias", &[2048]),
                    ("patchify_proj.weight", &[2048, 128]),
                ],
                "ltxv",
                DiffusionModel,
            ),
            (
                &[
                    (
                        "transformer_blocks.0.img_mlp.net.0.proj.weight",
                        &[12288, 3072],
                    ),
                    ("txt_norm.weight", &[3584]),
                ],
                "qwen_image",
                DiffusionModel,
            ),
            (
                &[(
                    "double_stream_blocks.0.block.attn1.to_q.weight",
                    &[2560, 2560],
                )],
                "hidream",
                DiffusionModel,
            ),
            (
                &[
                    ("latent_in.weight", &[1024, 64]),
                    ("double_blocks.0.img_attn.qkv.weight", &[3072, 1024]),
                ],
                "hunyuan3d",
                DiffusionModel,
            ),
            (
                &[
                    (
                        "model.model.transformer.layers.0.self_attn.to_qkv.weight",
                        &[4608, 1536],
                    ),
                    (
                        "conditioner.conditioners.seconds_total.embedder.embedding.1.weight",
                        &[768, 257],
                    ),
                ],
                "audio",
                DiffusionModel,
            ),
            (
                &[(
                    "lyric_encoder.encoders.0.self_attn.linear_q.weight",
                    &[1024, 1024],
                )],
                "audio",
                DiffusionModel,
            ),
            (
                &[
                    ("transformer_blocks.0.attn.to_q.weight", &[3072, 3072]),
                    ("transformer_blocks.0.attn.add_q_proj.weight", &[3072, 3072]),
                    (
                        "single_transformer_blocks.0.attn.to_q.weight",
                        &[3072, 3072],
                    ),
                ],
                "flux",
                DiffusionModel,
            ),
            (
                &[
                    ("transformer_blocks.0.attn.to_q.weight", &[1536, 1536]),
                    ("transformer_blocks.0.attn.add_q_proj.weight", &[1536, 1536]),
                    ("pos_embed.proj.weight", &[1536, 16, 2, 2]),
                ],
                "sd3",
                DiffusionModel,
            ),
            (
                &[
                    (
                        "control_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
                        &[320, 768],
                    ),
                    ("control_model.input_hint_block.0.weight", &[16, 3, 3, 3]),
                ],
                "sd15",
                Controlnet,
            ),
        ];
        for (tensors, family, component) in cases {
            assert_eq!(
                family_of(tensors),
                (Some(*family), *component),
                "{tensors:?}"
            );
        }
        let wan = detect(&header(cases[3].0));
        assert_eq!(wan.variant.as_deref(), Some("14B, image-to-video"));
        assert!(
            wan.evidence[0].contains("model width 5120"),
            "{:?}",
            wan.evidence
        );
    }

    #[test]
    fn loras_of_each_flavour_name_their_base() {
        let cases: &[(Tensors, &str)] = &[
            (
                &[
                    (
                        "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight",
                        &[16, 3072],
                    ),
                    ("lora_unet_double_blocks_0_img_attn_qkv.alpha", &[]),
                ],
                "flux",
            ),
            (
                &[(
                    "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight",
                    &[32, 2048],
                )],
                "sdxl",
            ),
            (
                &[
                    (
                        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight",
                        &[8, 768],
                    ),
                    (
                        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight",
                        &[320, 8],
                    ),
                ],
                "sd15",
            ),
            (
                &[(
                    "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight",
                    &[8, 768],
                )],
                "sdxl",
            ),
            (
                &[(
                    "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight",
                    &[8, 768],
                )],
                "sd15",
            ),
            (
                &[
                    (
                        "diffusion_model.blocks.0.self_attn.q.lora_A.weight",
                        &[32, 1536],
                    ),
                    (
                        "diffusion_model.blocks.0.self_attn.q.lora_B.weight",
                        &[1536, 32],
                    ),
                ],
                "wan",
            ),
            (
                &[(
                    "transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight",
                    &[16, 3072],
                )],
                "flux",
            ),
            (
                &[(
                    "transformer.transformer_blocks.0.attn1.to_q.lora_A.weight",
                    &[16, 2048],
                )],
                "ltxv",
            ),
            (
                &[(
                    "transformer_blocks.0.img_mlp.net.0.proj.lora.down.weight",
                    &[16, 3072],
                )],
                "qwen_image",
            ),
            (
                &[(
                    "lora_unet_double_blocks_0_img_mlp_fc1.lora_down.weight",
                    &[32, 3072],
                )],
                "hunyuan_video",
            ),
            (
                &[(
                    "lora_unet_joint_blocks_0_x_block_attn_qkv.lora_down.weight",
                    &[16, 1536],
                )],
                "sd3",
            ),
            (
                &[(
                    "base_model.model.double_blocks.0.img_attn.qkv.lora_A.weight",
                    &[8, 3072],
                )],
                "flux",
            ),
            (
                &[("lora_unet_input_blocks_1_1_proj_in.hada_w1_a", &[320, 4])],
                "sd15",
            ),
        ];
        for (i, (tensors, family)) in cases.iter().enumerate() {
            let d = detect(&header(tensors));
            if i == 12 {
                // LoHa on an ldm-named UNet without attn2: the family stays open.
                assert_eq!(d.family, None);
                assert_eq!(d.candidates, ["sd15", "sd2", "sdxl"]);
                assert_eq!(d.component, Lora);
                continue;
            }
            assert_eq!(
                (d.family, d.component),
                (Some(*family), Lora),
                "{tensors:?}"
            );
        }
        let d = detect(&header(cases[5].0));
        assert_eq!(d.variant.as_deref(), Some("1.3B"));
    }

    #[test]
    fn metadata_decides_when_tensors_cannot() {
        let mut h = header(&[(
            "lora_unet_input_blocks_1_1_proj_in.lora_down.weight",
            &[8, 320],
        )]);
        h.metadata
            .insert("ss_base_model_version".into(), "sdxl_base_v1-0".into());
        h.metadata
            .insert("ss_network_module".into(), "networks.lora".into());
        let d = detect(&h);
        assert_eq!((d.family, d.component), (Some("sdxl"), Lora));
        assert!(
            d.evidence
                .iter()
                .any(|e| e.contains("ss_base_model_version"))
        );

        let mut h = header(&[("double_blocks.0.img_attn.qkv.weight", &[9216, 3072])]);
        h.metadata.insert(
            "modelspec.architecture".into(),
            "stable-diffusion-xl-v1-base".into(),
        );
        let d = detect(&h);
        assert_eq!(d.family, Some("flux"));
        assert!(
            d.evidence.iter().any(|e| e.contains("disagrees")),
            "{:?}",
            d.evidence
        );
    }

    #[test]
    fn vaes_and_text_encoders() {
        let d = detect(&header(&[
            ("decoder.conv_in.weight", &[512, 4, 3, 3]),
            ("post_quant_conv.weight", &[4, 4, 1, 1]),
        ]));
        assert_eq!((d.family, d.component), (None, Vae));
        assert_eq!(d.candidates, ["sd15", "sd2", "sdxl"]);
        let d = detect(&header(&[("decoder.conv_in.weight", &[512, 16, 3, 3])]));
        assert_eq!(d.candidates, ["flux", "sd3"]);
        let d = detect(&header(&[
            ("decoder.conv1.weight", &[384, 16, 3, 3, 3]),
            ("decoder.head.2.weight", &[12, 96, 3, 3, 3]),
        ]));
        assert_eq!(d.candidates, ["wan", "qwen_image"]);
        let d = detect(&header(&[("decoder.conv1.weight", &[1024, 48, 3, 3, 3])]));
        assert_eq!(d.family, Some("wan"));
        let d = detect(&header(&[(
            "decoder.conv_in.conv.weight",
            &[512, 16, 3, 3, 3],
        )]));
        assert_eq!(d.family, Some("hunyuan_video"));

        for (tensors, variant) in [
            (
                &[(
                    "text_model.embeddings.token_embedding.weight",
                    &[49408_u64, 768][..],
                )][..],
                "CLIP-L",
            ),
            (
                &[(
                    "text_model.embeddings.token_embedding.weight",
                    &[49408, 1280][..],
                )],
                "CLIP-G",
            ),
            (
                &[
                    (
                        "encoder.block.0.layer.0.SelfAttention.q.weight",
                        &[4096, 4096][..],
                    ),
                    ("shared.weight", &[32128, 4096][..]),
                ],
                "T5",
            ),
            (&[("shared.weight", &[256384, 4096][..])], "UMT5-XXL"),
            (
                &[("model.layers.0.self_attn.q_proj.weight", &[4096, 4096][..])],
                "a language model",
            ),
        ] {
            let d = detect(&header(tensors));
            assert_eq!((d.family, d.component), (None, TextEncoder), "{tensors:?}");
            assert_eq!(d.variant.as_deref(), Some(variant));
        }
        let d = detect(&header(&[("something.else", &[1])]));
        assert_eq!((d.family, d.component), (None, Unknown));
    }

    #[test]
    fn gguf_architecture_decides_and_tensors_back_it_up() {
        let bytes = GgufWriter::default()
            .string("general.architecture", "hyvid")
            .tensor("double_blocks.0.img_attn.qkv.weight", &[9216, 3072])
            .bytes(3);
        let d = detect(&parse_gguf(&bytes[..]).expect("gguf"));
        assert_eq!(
            (d.family, d.decided_by),
            (Some("hunyuan_video"), DecidedBy::GgufMetadata)
        );
        let bytes = GgufWriter::default()
            .string("general.architecture", "t5encoder")
            .bytes(3);
        assert_eq!(
            detect(&parse_gguf(&bytes[..]).expect("gguf")).component,
            TextEncoder
        );
        let bytes = GgufWriter::default()
            .string("general.architecture", "aura")
            .bytes(3);
        let d = detect(&parse_gguf(&bytes[..]).expect("gguf"));
        assert_eq!((d.family, d.component), (None, DiffusionModel));
        // An architecture we don't know: the tensors decide.
        let bytes = GgufWriter::default()
            .string("general.architecture", "mystery")
            .tensor("blocks.0.self_attn.q.weight", &[5120, 5120])
            .bytes(2);
        let d = detect(&parse_gguf(&bytes[..]).expect("gguf"));
        assert_eq!((d.family, d.decided_by), (Some("wan"), DecidedBy::Header));
        for (arch, key) in [
            ("flux", "flux"),
            ("sdxl", "sdxl"),
            ("sd1", "sd15"),
            ("sd3", "sd3"),
            ("wan", "wan"),
            ("ltxv", "ltxv"),
            ("hidream", "hidream"),
            ("qwen_image", "qwen_image"),
        ] {
            let bytes = GgufWriter::default()
                .string("general.architecture", arch)
                .bytes(3);
            assert_eq!(
                detect(&parse_gguf(&bytes[..]).expect("gguf")).family,
                Some(key),
                "{arch}"
            );
        }
    }

    #[test]
    fn header_beats_name_and_says_so() {
        let bytes = safetensors_bytes(&json!({
            "double_blocks.0.img_attn.qkv.weight": {"dtype": "F16", "shape": [9216, 3072], "data_offsets": [0, 0]}
        }));
        let d = detect(&parse_safetensors(&bytes).expect("parses"));
        let v = decide(
            &family::identify("sdxl_something.safetensors"),
            Some(Ok(d.clone())),
        );
        assert_eq!(v.family.map(|f| f.key), Some("flux"));
        assert_eq!(v.decided_by, DecidedBy::HeaderAndNameDisagree);
        assert!(v.note.as_deref().is_some_and(|n| n.contains("header wins")));
        let v = decide(&family::identify("flux_style.safetensors"), Some(Ok(d)));
        assert_eq!(v.decided_by, DecidedBy::Header);
        let v = decide(&family::identify("my.safetensors"), None);
        assert_eq!(
            (v.family.map(|f| f.key), v.decided_by),
            (None, DecidedBy::FileName)
        );
        let v = decide(
            &family::identify("sdxl_a.safetensors"),
            Some(Err("it is too short".into())),
        );
        assert_eq!(v.family.map(|f| f.key), Some("sdxl"));
        assert!(v.note.as_deref().is_some_and(|n| n.contains("too short")));
    }

    #[test]
    fn the_name_picks_among_header_candidates() {
        let vae = detect(&header(&[("decoder.conv_in.weight", &[512, 4, 3, 3])]));
        let v = decide(
            &family::identify("sdxl_vae.safetensors"),
            Some(Ok(vae.clone())),
        );
        assert_eq!(
            (v.family.map(|f| f.key), v.decided_by),
            (Some("sdxl"), DecidedBy::Header)
        );
        let v = decide(&family::identify("ae.safetensors"), Some(Ok(vae.clone())));
        assert_eq!(
            (v.family.map(|f| f.key), v.decided_by),
            (None, DecidedBy::HeaderAndNameDisagree)
        );
        let v = decide(&family::identify("some_vae.safetensors"), Some(Ok(vae)));
        assert_eq!(
            (v.family.map(|f| f.key), v.decided_by),
            (None, DecidedBy::Header)
        );
        assert!(v.note.is_some());
        let unknown = detect(&header(&[("x", &[1])]));
        let v = decide(
            &family::identify("flux1-dev.safetensors"),
            Some(Ok(unknown)),
        );
        assert_eq!(
            (v.family.map(|f| f.key), v.decided_by),
            (Some("flux"), DecidedBy::FileName)
        );
        let te = detect(&header(&[("shared.weight", &[32128, 4096])]));
        let v = decide(&family::identify("t5xxl_fp16.safetensors"), Some(Ok(te)));
        assert_eq!(
            (v.family.map(|f| f.key), v.component),
            (None, Some(TextEncoder))
        );
    }

    /// A realistic SDXL checkpoint header (about 2,500 tensors), for tests and the bench.
    #[test]
    fn a_generated_sdxl_checkpoint_is_sdxl() {
        let mut map = Map::new();
        for i in 0..2500 {
            map.insert(
                format!("model.diffusion_model.output_blocks.{i}.1.transformer_blocks.0.attn1.to_q.weight"),
                json!({"dtype": "F16", "shape": [640, 640], "data_offsets": [0, 0]}),
            );
        }
        map.insert(
            "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight".into(),
            json!({"dtype": "F16", "shape": [640, 2048], "data_offsets": [0, 0]}),
        );
        let d =
            detect(&parse_safetensors(&safetensors_bytes(&Value::Object(map))).expect("parses"));
        assert_eq!((d.family, d.component), (Some("sdxl"), DiffusionModel));
    }
}
