//! Model families told apart by file name (the original project's rule), with an explicit
//! order so that specific names win over generic ones ("juggernautXL" is SDXL, not SD1.5).

/// What a family produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    Image,
    Video,
    #[serde(rename = "3d")]
    ThreeD,
    Audio,
}

/// One model family and the name patterns that identify it.
#[derive(Debug)]
pub struct Family {
    pub key: &'static str,
    pub label: &'static str,
    /// Native generation size, `None` where size doesn't apply.
    pub resolution: Option<&'static str>,
    pub modality: Modality,
    /// Whether LoRAs exist for and load into this family.
    pub lora_compatible: bool,
    /// Lower-case substrings; a name containing any of them belongs here.
    patterns: &'static [&'static str],
}

/// Tried in this order; the first family with a matching pattern wins.
pub static FAMILIES: &[Family] = &[
    Family {
        key: "audio",
        label: "Audio (speech and music)",
        resolution: None,
        modality: Modality::Audio,
        lora_compatible: false,
        patterns: &[
            "bark",
            "xtts",
            "cosyvoice",
            "chattts",
            "stable_audio",
            "stable-audio",
            "musicgen",
            "audioldm",
            "ace_step",
            "ace-step",
            "f5tts",
            "f5-tts",
            "whisper",
        ],
    },
    Family {
        key: "hunyuan3d",
        label: "Hunyuan3D",
        resolution: Some("512x512"),
        modality: Modality::ThreeD,
        lora_compatible: false,
        patterns: &["hunyuan3d", "hunyuan-3d", "hunyuan_3d", "hy3d"],
    },
    Family {
        key: "hunyuan_video",
        label: "HunyuanVideo",
        resolution: Some("1280x720"),
        modality: Modality::Video,
        lora_compatible: true,
        patterns: &["hunyuan_video", "hunyuanvideo", "hunyuan-video"],
    },
    Family {
        key: "wan",
        label: "Wan 2.x video",
        resolution: Some("832x480"),
        modality: Modality::Video,
        lora_compatible: true,
        patterns: &[
            "wan2",
            "wan_2",
            "wan-2",
            "wan21",
            "wan22",
            "wan_vae",
            "wanvideo",
            "wan_video",
        ],
    },
    Family {
        key: "ltxv",
        label: "LTX-Video",
        resolution: Some("768x512"),
        modality: Modality::Video,
        lora_compatible: true,
        patterns: &["ltxv", "ltx-video", "ltx_video", "ltx-2", "ltx2"],
    },
    Family {
        key: "qwen_image",
        label: "Qwen-Image",
        resolution: Some("1328x1328"),
        modality: Modality::Image,
        lora_compatible: true,
        patterns: &["qwen_image", "qwen-image", "qwenimage"],
    },
    Family {
        key: "hidream",
        label: "HiDream",
        resolution: Some("1024x1024"),
        modality: Modality::Image,
        lora_compatible: true,
        patterns: &["hidream"],
    },
    Family {
        key: "flux",
        label: "Flux",
        resolution: Some("1024x1024"),
        modality: Modality::Image,
        lora_compatible: true,
        patterns: &["flux", "ae.safetensors", "ae.sft"],
    },
    Family {
        key: "sd3",
        label: "Stable Diffusion 3 / 3.5",
        resolution: Some("1024x1024"),
        modality: Modality::Image,
        lora_compatible: true,
        patterns: &[
            "sd3",
            "sd_3",
            "sd-3",
            "stable-diffusion-3",
            "stable_diffusion_3",
        ],
    },
    Family {
        key: "sdxl",
        label: "SDXL (incl. Pony, Illustrious)",
        resolution: Some("1024x1024"),
        modality: Modality::Image,
        lora_compatible: true,
        patterns: &[
            "sdxl",
            "sd_xl",
            "sd-xl",
            "pony",
            "illustrious",
            "noobai",
            "animagine",
            "juggernautxl",
            "juggernaut_xl",
            "juggernaut-xl",
            "realvisxl",
            "dreamshaperxl",
            "playground-v2",
            "_xl",
            "-xl",
            "xl_",
            "xl-",
            "xl.",
            "xl ",
        ],
    },
    Family {
        key: "sd2",
        label: "Stable Diffusion 2.x",
        resolution: Some("768x768"),
        modality: Modality::Image,
        lora_compatible: true,
        patterns: &[
            "v2-1", "v2-0", "sd21", "sd_21", "sd2.1", "sd-2", "sd_2", "sd20",
        ],
    },
    Family {
        key: "sd15",
        label: "Stable Diffusion 1.5",
        resolution: Some("512x512"),
        modality: Modality::Image,
        lora_compatible: true,
        patterns: &[
            "sd15",
            "sd_15",
            "sd-15",
            "sd1.5",
            "sd_1.5",
            "sd-1.5",
            "v1-5",
            "v1_5",
            "sd1_5",
            "vae-ft-mse",
            "realisticvision",
            "dreamshaper_8",
            "deliberate",
            "revanimated",
            "anything-v",
            "anythingv",
            "cyberrealistic_v",
            "epicrealism_",
            "absolutereality",
            "control_v11",
            "control_sd15",
        ],
    },
];

/// What a name told us.
#[derive(Debug, Clone, Copy)]
pub struct Identified {
    pub family: Option<&'static Family>,
    /// The pattern that matched, to explain the verdict.
    pub matched: Option<&'static str>,
}

/// Identifies a model's family from its file name (folders included, case ignored).
pub fn identify(name: &str) -> Identified {
    // "t5xxl" and "umt5_xxl" are shared text encoders, not SDXL models.
    let lower = name.to_lowercase().replace('\\', "/").replace("xxl", "~");
    for family in FAMILIES {
        for pattern in family.patterns {
            if matches(&lower, pattern) {
                return Identified {
                    family: Some(family),
                    matched: Some(pattern),
                };
            }
        }
    }
    Identified {
        family: None,
        matched: None,
    }
}

fn matches(name: &str, pattern: &str) -> bool {
    // "ae.safetensors" is Flux's VAE only as a whole file name, not "xyz_vae.safetensors".
    if pattern.starts_with("ae.") {
        return name == pattern || name.ends_with(&format!("/{pattern}"));
    }
    // A trailing "xl" (e.g. "juggernautXL.safetensors") is handled by the "xl." pattern.
    name.contains(pattern)
}

pub fn by_key(key: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| f.key == key)
}

/// Whether models of these two families can be used in one generation.
/// Image and video families each have their own latent space and text encoders, so any two
/// of them conflict; audio and 3D models run as separate stages and conflict with nothing.
pub fn compatible(a: &Family, b: &Family) -> bool {
    a.key == b.key
        || matches!(a.modality, Modality::Audio | Modality::ThreeD)
        || matches!(b.modality, Modality::Audio | Modality::ThreeD)
}

/// The families `family` cannot be combined with.
pub fn incompatible_with(family: &Family) -> Vec<&'static Family> {
    FAMILIES
        .iter()
        .filter(|other| !compatible(family, other))
        .collect()
}

/// Why two families conflict, in words an artist can act on.
pub fn conflict_reason(a: &Family, b: &Family) -> String {
    format!(
        "{} and {} models use different latent spaces and text encoders, so a {} LoRA, VAE or \
         ControlNet won't work with a {} model (and the other way round).",
        a.label, b.label, a.label, b.label
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> &'static str {
        identify(name).family.map_or("unknown", |f| f.key)
    }

    #[test]
    fn common_checkpoint_names() {
        let cases = [
            ("sdxl_base.safetensors", "sdxl"),
            ("sd_xl_base_1.0.safetensors", "sdxl"),
            ("juggernautXL_v9Rdphoto2Lightning.safetensors", "sdxl"),
            ("ponyDiffusionV6XL.safetensors", "sdxl"),
            ("illustriousXL_v01.safetensors", "sdxl"),
            ("v1-5-pruned-emaonly.safetensors", "sd15"),
            ("realisticVisionV60B1_v51VAE.safetensors", "sd15"),
            ("dreamshaper_8.safetensors", "sd15"),
            ("flux1-dev.safetensors", "flux"),
            ("flux1-schnell-fp8.safetensors", "flux"),
            ("ae.safetensors", "flux"),
            ("sd3.5_large.safetensors", "sd3"),
            ("sd3_medium_incl_clips.safetensors", "sd3"),
            ("wan2.1_t2v_14B_fp16.safetensors", "wan"),
            ("wan_2.1_vae.safetensors", "wan"),
            ("hunyuan3d-dit-v2.safetensors", "hunyuan3d"),
            ("hunyuan_video_t2v_720p_bf16.safetensors", "hunyuan_video"),
            ("ltxv-13b-0.9.7-dev.safetensors", "ltxv"),
            ("qwen_image_fp8_e4m3fn.safetensors", "qwen_image"),
            ("v2-1_768-ema-pruned.safetensors", "sd2"),
            ("bark_large.pt", "audio"),
            ("xtts_v2.pth", "audio"),
            ("cosyvoice-300m.pt", "audio"),
            ("ChatTTS.pt", "audio"),
            ("control_v11p_sd15_canny.pth", "sd15"),
            ("diffusers_xl_canny_full.safetensors", "sdxl"),
            ("vae-ft-mse-840000-ema-pruned.safetensors", "sd15"),
            ("sdxl_vae.safetensors", "sdxl"),
        ];
        for (name, expected) in cases {
            assert_eq!(key(name), expected, "{name}");
        }
    }

    #[test]
    fn shared_encoders_and_odd_names_stay_unknown() {
        for name in [
            "t5xxl_fp16.safetensors",
            "clip_l.safetensors",
            "my_model.safetensors",
            "some_vae.safetensors",
            "4x-UltraSharp.pth",
        ] {
            assert_eq!(key(name), "unknown", "{name}");
        }
    }

    #[test]
    fn folders_and_case_count() {
        assert_eq!(key("SDXL\\detail_tweaker.safetensors"), "sdxl");
        assert_eq!(key("loras/FLUX/style.safetensors"), "flux");
    }

    #[test]
    fn compatibility_is_symmetric_and_modalities_coexist() {
        for a in FAMILIES {
            assert!(compatible(a, a));
            for b in FAMILIES {
                assert_eq!(compatible(a, b), compatible(b, a), "{} {}", a.key, b.key);
            }
        }
        let sd15 = by_key("sd15").expect("sd15");
        let sdxl = by_key("sdxl").expect("sdxl");
        let audio = by_key("audio").expect("audio");
        assert!(!compatible(sd15, sdxl));
        assert!(compatible(sd15, audio));
        assert!(incompatible_with(sd15).iter().any(|f| f.key == "flux"));
        assert!(incompatible_with(audio).is_empty());
    }
}
