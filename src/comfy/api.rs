//! ComfyUI's answers as typed values, read leniently: unknown keys are ignored, missing ones
//! default, numbers may arrive as ints, floats or huge u64s, and `{}` means "not found".
//! Shapes follow ComfyUI 0.3.64 as recorded in `tests/fixtures/comfyui-0.3.64/`.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A whole number that ComfyUI may send as an int, a float or a numeric string.
fn lenient_u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    Ok(match Value::deserialize(deserializer)? {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

/// A string, or nothing when the value is null or not a string.
fn lenient_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(deserializer)? {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// `GET /system_stats`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SystemStats {
    pub system: SystemInfo,
    pub devices: Vec<Device>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SystemInfo {
    #[serde(deserialize_with = "lenient_string")]
    pub os: Option<String>,
    #[serde(deserialize_with = "lenient_u64")]
    pub ram_total: Option<u64>,
    #[serde(deserialize_with = "lenient_u64")]
    pub ram_free: Option<u64>,
    #[serde(deserialize_with = "lenient_string")]
    pub comfyui_version: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub python_version: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub pytorch_version: Option<String>,
    pub embedded_python: Option<bool>,
    pub argv: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Device {
    #[serde(deserialize_with = "lenient_string")]
    pub name: Option<String>,
    /// `cuda`, `mps`, `cpu`, …
    #[serde(rename = "type", deserialize_with = "lenient_string")]
    pub kind: Option<String>,
    #[serde(deserialize_with = "lenient_u64")]
    pub vram_total: Option<u64>,
    #[serde(deserialize_with = "lenient_u64")]
    pub vram_free: Option<u64>,
    /// The device's index (`cuda:N`); null for the CPU.
    #[serde(deserialize_with = "lenient_u64")]
    pub index: Option<u64>,
    /// What PyTorch's allocator holds (reserved), and how much of that is unused.
    #[serde(deserialize_with = "lenient_u64")]
    pub torch_vram_total: Option<u64>,
    #[serde(deserialize_with = "lenient_u64")]
    pub torch_vram_free: Option<u64>,
}

impl SystemStats {
    /// The first GPU's name, or `None` on a CPU-only ComfyUI.
    pub fn gpu_name(&self) -> Option<&str> {
        self.devices
            .iter()
            .find(|device| device.kind.as_deref() != Some("cpu"))
            .and_then(|device| device.name.as_deref())
    }
}

/// `GET /queue`, with pending items sorted by queue number (ComfyUI sends heap order).
#[derive(Debug, Clone, Default)]
pub struct Queue {
    pub running: Vec<QueueItem>,
    pub pending: Vec<QueueItem>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueueItem {
    /// The queue number: lower runs first (`front: true` makes it negative).
    pub number: f64,
    pub prompt_id: String,
    /// The WebSocket client the prompt reports to, if any.
    pub client_id: Option<String>,
    /// Node ids of the outputs it will produce.
    pub outputs: Vec<String>,
}

impl QueueItem {
    /// `[number, prompt_id, prompt, extra_data, outputs_to_execute]`; anything shorter or
    /// without an id is skipped.
    fn from_wire(item: &Value) -> Option<Self> {
        let parts = item.as_array()?;
        let prompt_id = parts.get(1)?.as_str()?.to_string();
        Some(Self {
            number: parts.first().and_then(Value::as_f64).unwrap_or(f64::MAX),
            prompt_id,
            client_id: parts
                .get(3)
                .and_then(|extra| extra.get("client_id"))
                .and_then(Value::as_str)
                .map(String::from),
            outputs: parts
                .get(4)
                .and_then(Value::as_array)
                .map(|ids| ids.iter().filter_map(id_string).collect())
                .unwrap_or_default(),
        })
    }
}

fn id_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl<'de> Deserialize<'de> for Queue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Wire {
            queue_running: Vec<Value>,
            queue_pending: Vec<Value>,
        }
        let wire = Wire::deserialize(deserializer)?;
        let items = |values: &[Value]| -> Vec<QueueItem> {
            let mut items: Vec<QueueItem> =
                values.iter().filter_map(QueueItem::from_wire).collect();
            items.sort_by(|a, b| a.number.total_cmp(&b.number));
            items
        };
        Ok(Self {
            running: items(&wire.queue_running),
            pending: items(&wire.queue_pending),
        })
    }
}

impl Queue {
    /// Where `prompt_id` stands: running, or its 1-based place among the pending.
    pub fn position(&self, prompt_id: &str) -> Option<QueuePosition> {
        if self.running.iter().any(|item| item.prompt_id == prompt_id) {
            return Some(QueuePosition::Running);
        }
        self.pending
            .iter()
            .position(|item| item.prompt_id == prompt_id)
            .map(|index| QueuePosition::Pending(index + 1))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueuePosition {
    Running,
    Pending(usize),
}

/// `GET /history` or `GET /history/{id}`: entries in ComfyUI's order (oldest first).
#[derive(Debug, Clone, Default)]
pub struct History {
    pub entries: Vec<(String, HistoryEntry)>,
}

impl<'de> Deserialize<'de> for History {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self {
            entries: Ordered::deserialize(deserializer)?.0,
        })
    }
}

/// One finished (or failed, or interrupted) run.
#[derive(Debug, Clone, Default)]
pub struct HistoryEntry {
    pub number: Option<f64>,
    pub client_id: Option<String>,
    /// Each output node's UI dict, in ComfyUI's order.
    pub outputs: Vec<(String, Value)>,
    /// `success` or `error`; `None` when ComfyUI recorded no status.
    pub status: Option<String>,
    pub completed: bool,
    /// `(event, payload)` pairs: execution_start, execution_cached, execution_error, …
    pub messages: Vec<(String, Value)>,
    /// The API-format workflow that ran.
    pub workflow: Option<Value>,
}

impl<'de> Deserialize<'de> for HistoryEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Wire {
            prompt: Vec<Value>,
            outputs: Ordered<Value>,
            status: Option<WireStatus>,
        }
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct WireStatus {
            #[serde(deserialize_with = "lenient_string")]
            status_str: Option<String>,
            completed: bool,
            messages: Vec<Value>,
        }
        let wire = Wire::deserialize(deserializer)?;
        let status = wire.status.unwrap_or_default();
        Ok(Self {
            number: wire.prompt.first().and_then(Value::as_f64),
            client_id: wire
                .prompt
                .get(3)
                .and_then(|extra| extra.get("client_id"))
                .and_then(Value::as_str)
                .map(String::from),
            workflow: wire.prompt.get(2).filter(|w| w.is_object()).cloned(),
            outputs: wire.outputs.0,
            status: status.status_str,
            completed: status.completed,
            messages: status
                .messages
                .into_iter()
                .filter_map(|message| {
                    let mut parts = match message {
                        Value::Array(parts) => parts.into_iter(),
                        _ => return None,
                    };
                    let name = parts.next()?.as_str()?.to_string();
                    Some((name, parts.next().unwrap_or(Value::Null)))
                })
                .collect(),
        })
    }
}

/// A JSON object read in document order (serde_json's map sorts its keys). A list or null
/// where an object belongs reads as empty (ComfyUI sends `[]` for some empty dicts).
#[derive(Debug)]
pub(crate) struct Ordered<T>(pub(crate) Vec<(String, T)>);

impl<T> Default for Ordered<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ordered<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OrderedVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for OrderedVisitor<T> {
            type Value = Ordered<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered<T>, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(entry) = map.next_entry::<String, T>()? {
                    entries.push(entry);
                }
                Ok(Ordered(entries))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Ordered<T>, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(Ordered::default())
            }
            fn visit_unit<E: de::Error>(self) -> Result<Ordered<T>, E> {
                Ok(Ordered::default())
            }
        }
        deserializer.deserialize_any(OrderedVisitor(std::marker::PhantomData))
    }
}

/// What kind of thing an output node produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    Image,
    /// An animated image (animated WEBP/PNG, from `SaveAnimatedWEBP` and friends).
    Animation,
    Video,
    Audio,
    Latent,
    Text,
    /// 3D meshes and other files.
    File,
}

/// One output of a run: a file in ComfyUI's output, temp or input folder, or a text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Output {
    /// The output node that produced it.
    pub node_id: String,
    #[serde(rename = "type")]
    pub kind: OutputKind,
    /// The file name, for files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// The folder under ComfyUI's output/temp folder ("" for the top level).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subfolder: Option<String>,
    /// ComfyUI's folder: `output`, `temp` or `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder_type: Option<String>,
    /// The text, for text outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl HistoryEntry {
    /// Every output of every node: images, animations, videos (including the VHS `gifs`
    /// key), audio, latents, text and other files, with their subfolders.
    pub fn output_list(&self) -> Vec<Output> {
        let mut list = Vec::new();
        for (node_id, ui) in &self.outputs {
            let Some(ui) = ui.as_object() else { continue };
            let animated = ui
                .get("animated")
                .and_then(Value::as_array)
                .is_some_and(|flags| flags.iter().any(|f| f.as_bool() == Some(true)));
            for (key, items) in ui {
                let Some(items) = items.as_array() else {
                    continue;
                };
                let kind = match key.as_str() {
                    "animated" => continue,
                    "images" if animated => OutputKind::Animation,
                    "images" => OutputKind::Image,
                    "gifs" | "videos" | "video" => OutputKind::Video,
                    "audio" | "audios" => OutputKind::Audio,
                    "latents" => OutputKind::Latent,
                    "text" | "string" => OutputKind::Text,
                    _ => OutputKind::File,
                };
                for item in items {
                    match item {
                        Value::String(text) if kind == OutputKind::Text => list.push(Output {
                            node_id: node_id.clone(),
                            kind: OutputKind::Text,
                            filename: None,
                            subfolder: None,
                            folder_type: None,
                            text: Some(text.clone()),
                        }),
                        Value::Object(file) => {
                            let Some(filename) = file.get("filename").and_then(Value::as_str)
                            else {
                                continue;
                            };
                            // SaveVideo and SaveWEBM list their files as animated images.
                            let kind = if matches!(kind, OutputKind::Image | OutputKind::Animation)
                                && is_video_name(filename)
                            {
                                OutputKind::Video
                            } else {
                                kind.clone()
                            };
                            list.push(Output {
                                node_id: node_id.clone(),
                                kind,
                                filename: Some(filename.to_string()),
                                subfolder: Some(
                                    file.get("subfolder")
                                        .and_then(Value::as_str)
                                        .unwrap_or_default()
                                        .to_string(),
                                ),
                                folder_type: Some(
                                    file.get("type")
                                        .and_then(Value::as_str)
                                        .unwrap_or("output")
                                        .to_string(),
                                ),
                                text: None,
                            });
                        }
                        _ => {}
                    }
                }
            }
        }
        list
    }

    /// The error ComfyUI recorded for a failed run: (node id, node type, message).
    pub fn error(&self) -> Option<RunError> {
        let (_, payload) = self
            .messages
            .iter()
            .find(|(name, _)| name == "execution_error")?;
        let text = |key: &str| {
            payload
                .get(key)
                .and_then(Value::as_str)
                .map(String::from)
                .unwrap_or_default()
        };
        Some(RunError {
            node_id: text("node_id"),
            node_type: text("node_type"),
            message: text("exception_message").trim().to_string(),
        })
    }

    pub fn interrupted(&self) -> bool {
        self.messages
            .iter()
            .any(|(name, _)| name == "execution_interrupted")
    }
}

fn is_video_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".mp4", ".webm", ".mov", ".mkv", ".avi"]
        .iter()
        .any(|ext| lower.ends_with(ext))
}

/// Why a run failed, as ComfyUI recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct RunError {
    pub node_id: String,
    pub node_type: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded_text(name: &str) -> String {
        let path = format!(
            "{}/tests/fixtures/comfyui-0.3.64/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(path).expect("fixture")
    }

    fn recorded(name: &str) -> Value {
        serde_json::from_str(&recorded_text(name)).expect("json")
    }

    #[test]
    fn system_stats_from_the_recording() {
        let samples = recorded("http-samples.json");
        let stats: SystemStats =
            serde_json::from_value(samples["GET /system_stats"]["body"].clone()).expect("parses");
        assert_eq!(stats.system.comfyui_version.as_deref(), Some("0.3.64"));
        assert_eq!(stats.system.ram_total, Some(25_276_063_744));
        assert_eq!(stats.gpu_name(), None, "a CPU-only server has no GPU");
    }

    #[test]
    fn system_stats_tolerate_floats_strings_and_extra_keys() {
        let stats: SystemStats = serde_json::from_str(
            r#"{"system":{"ram_total":1.6e10,"ram_free":"42","new_key":1,"python_version":null},
                "devices":[{"name":"cuda:0 NVIDIA H200","type":"cuda","vram_total":150000000000.0}]}"#,
        )
        .expect("parses");
        assert_eq!(stats.system.ram_total, Some(16_000_000_000));
        assert_eq!(stats.system.ram_free, Some(42));
        assert_eq!(stats.gpu_name(), Some("cuda:0 NVIDIA H200"));
        assert_eq!(stats.devices[0].vram_total, Some(150_000_000_000));
        let empty: SystemStats = serde_json::from_str("{}").expect("empty object");
        assert!(empty.devices.is_empty());
    }

    #[test]
    fn queue_items_are_sorted_by_number() {
        let queue: Queue = serde_json::from_str(
            r#"{"queue_running":[[3,"run",{},{"client_id":"me"},["9"]]],
                "queue_pending":[[7.0,"b",{},{},[]],[-23,"front",{},{},[]],[5,"a",{},{},["2",3]],["junk"]]}"#,
        )
        .expect("parses");
        let ids: Vec<&str> = queue.pending.iter().map(|i| i.prompt_id.as_str()).collect();
        assert_eq!(ids, ["front", "a", "b"]);
        assert_eq!(queue.running[0].client_id.as_deref(), Some("me"));
        assert_eq!(queue.pending[1].outputs, ["2", "3"]);
        assert_eq!(queue.position("b"), Some(QueuePosition::Pending(3)));
        assert_eq!(queue.position("run"), Some(QueuePosition::Running));
        assert_eq!(queue.position("zzz"), None);
    }

    #[test]
    fn history_keeps_order_and_every_output_kind() {
        // From the text: a parsed `Value` would already have lost ComfyUI's order.
        let history: History =
            serde_json::from_str(&recorded_text("history-outputs.json")).expect("parses");
        let (id, entry) = &history.entries[0];
        assert_eq!(id, "4f35724b-6197-4b16-87b7-6e3412db7bcb");
        assert_eq!(entry.status.as_deref(), Some("success"));
        assert!(entry.completed);
        let outputs = entry.output_list();
        let kinds: Vec<(&str, &OutputKind)> = outputs
            .iter()
            .map(|o| (o.node_id.as_str(), &o.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("2", &OutputKind::Animation),
                ("7", &OutputKind::Image),
                ("6", &OutputKind::Latent),
                ("4", &OutputKind::Text)
            ]
        );
        assert_eq!(outputs[0].subfolder.as_deref(), Some("mcp_probe"));
        assert_eq!(outputs[1].folder_type.as_deref(), Some("temp"));
        assert_eq!(outputs[3].text.as_deref(), Some("hello from mcp"));
    }

    #[test]
    fn history_reads_vhs_videos_audio_and_errors() {
        let history: History = serde_json::from_str(
            r#"{"x":{"prompt":[4,"x",{},{"client_id":"c"},[]],
                "outputs":{"9":{"gifs":[{"filename":"clip.mp4","subfolder":"v","type":"output","format":"video/h264-mp4"}]},
                           "10":{"audio":[{"filename":"a.flac","subfolder":"","type":"output"}]},
                           "11":{"images":[{"filename":"w.webm","subfolder":"","type":"output"}]},
                           "12":{"images":[{"filename":"probe_00003_.mp4","subfolder":"video","type":"output"}],"animated":[true]},
                           "13":{"images":[{"filename":"anim.webp","subfolder":"","type":"output"}],"animated":[true]}},
                "status":{"status_str":"error","completed":false,"messages":[["execution_start",{}],
                  ["execution_error",{"node_id":"20","node_type":"LoadImage","exception_message":"cannot identify image file\n"}]]}},
               "empty":{}}"#,
        )
        .expect("parses");
        let entry = &history.entries[0].1;
        let kinds: Vec<OutputKind> = entry.output_list().into_iter().map(|o| o.kind).collect();
        assert_eq!(
            kinds,
            [
                OutputKind::Video,
                OutputKind::Audio,
                OutputKind::Video,
                OutputKind::Video,
                OutputKind::Animation
            ],
            "SaveVideo's animated .mp4 is a video; an animated .webp an animation"
        );
        assert_eq!(entry.client_id.as_deref(), Some("c"));
        let error = entry.error().expect("an error");
        assert_eq!(error.node_type, "LoadImage");
        assert_eq!(error.message, "cannot identify image file");
        assert!(history.entries[1].1.output_list().is_empty());
        let none: History = serde_json::from_str("{}").expect("not found is {}");
        assert!(none.entries.is_empty());
    }
}
