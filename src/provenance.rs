//! Image provenance: our creative-context record in a PNG text chunk, and what ComfyUI itself
//! embedded (its `prompt` and `workflow` text chunks in PNG, EXIF tags in WebP and JPEG).
//!
//! Writing never re-encodes pixels: the PNG's chunk stream is copied byte for byte, our old
//! chunk dropped and the new one added as iTXt before the first IDAT, so ComfyUI's chunks and
//! any other ancillary chunk survive exactly.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// The text key our record lives under (the original project's).
pub const CHUNK_KEY: &str = "comfyui_agent";
/// The largest metadata record we write.
pub const MAX_METADATA_BYTES: usize = 1024 * 1024;
/// The largest image file read into memory.
pub const MAX_IMAGE_BYTES: u64 = 256 * 1024 * 1024;
/// The largest single text value kept from an image (ComfyUI workflows can be big).
const MAX_TEXT_BYTES: usize = 64 * 1024 * 1024;

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];

/// Why an image could not be read or given metadata, in words for the artist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProvenanceError {
    #[error("this file is not a PNG image (its first bytes are not the PNG signature)")]
    NotPng,
    #[error("this PNG is damaged: {0}")]
    Damaged(String),
    #[error("this image format can't be read for metadata: {0}")]
    UnknownFormat(String),
    #[error("Invalid metadata: {0}")]
    InvalidMetadata(String),
    #[error("the metadata is {size} bytes as JSON, more than the {limit}-byte limit")]
    MetadataTooLarge { size: usize, limit: usize },
}

/// The image container, told by its first bytes rather than its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Png,
    Webp,
    Jpeg,
}

impl Format {
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(&PNG_SIGNATURE) {
            Some(Self::Png)
        } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(Self::Webp)
        } else if bytes.starts_with(&[0xff, 0xd8]) {
            Some(Self::Jpeg)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Webp => "webp",
            Self::Jpeg => "jpeg",
        }
    }
}

/// Every text value an image carries, by key (PNG text chunks; for WebP and JPEG, the
/// `workflow`/`prompt` values ComfyUI's savers put in EXIF). Later duplicates are ignored.
pub fn read_texts(bytes: &[u8]) -> Result<(Format, BTreeMap<String, String>), ProvenanceError> {
    match Format::sniff(bytes) {
        Some(Format::Png) => {
            let chunks = parse_png(bytes)?;
            Ok((Format::Png, png_texts(&chunks)))
        }
        Some(Format::Webp) => Ok((Format::Webp, exif_texts(webp_exif(bytes)))),
        Some(Format::Jpeg) => Ok((Format::Jpeg, exif_texts(jpeg_exif(bytes)))),
        None => Err(ProvenanceError::UnknownFormat(
            "only PNG, WebP and JPEG images are understood".into(),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// PNG chunk stream
// ---------------------------------------------------------------------------------------------

/// One chunk as it sits in the file: `raw` is the whole chunk (length, type, data, CRC).
#[derive(Debug, Clone, Copy)]
struct Chunk<'a> {
    kind: [u8; 4],
    data: &'a [u8],
    raw: &'a [u8],
}

/// Splits a PNG into chunks, checking the signature, IHDR first, IEND last, every CRC and
/// every length, so a damaged file is refused before anything is written.
fn parse_png(bytes: &[u8]) -> Result<Vec<Chunk<'_>>, ProvenanceError> {
    if !bytes.starts_with(&PNG_SIGNATURE) {
        return Err(ProvenanceError::NotPng);
    }
    let mut chunks = Vec::new();
    let mut at = PNG_SIGNATURE.len();
    loop {
        if bytes.len() - at < 12 {
            return Err(ProvenanceError::Damaged(
                "the file ends in the middle of a chunk (it may be truncated)".into(),
            ));
        }
        let length = u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        if length > 0x7fff_ffff {
            return Err(ProvenanceError::Damaged(
                "a chunk has an impossible length".into(),
            ));
        }
        let length = length as usize;
        if bytes.len() - at - 12 < length {
            return Err(ProvenanceError::Damaged(
                "a chunk runs past the end of the file (it may be truncated)".into(),
            ));
        }
        let kind: [u8; 4] = [bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]];
        if !kind.iter().all(u8::is_ascii_alphabetic) {
            return Err(ProvenanceError::Damaged(
                "a chunk has an invalid type name".into(),
            ));
        }
        let data = &bytes[at + 8..at + 8 + length];
        let crc_at = at + 8 + length;
        let stored = u32::from_be_bytes([
            bytes[crc_at],
            bytes[crc_at + 1],
            bytes[crc_at + 2],
            bytes[crc_at + 3],
        ]);
        if stored != chunk_crc(&kind, data) {
            return Err(ProvenanceError::Damaged(format!(
                "the {} chunk's checksum does not match its content",
                String::from_utf8_lossy(&kind)
            )));
        }
        let raw = &bytes[at..crc_at + 4];
        chunks.push(Chunk { kind, data, raw });
        at = crc_at + 4;
        if chunks.len() == 1 && &kind != b"IHDR" {
            return Err(ProvenanceError::Damaged(
                "the first chunk is not IHDR".into(),
            ));
        }
        if &kind == b"IEND" {
            if at != bytes.len() {
                return Err(ProvenanceError::Damaged(
                    "there are bytes after the IEND chunk".into(),
                ));
            }
            break;
        }
    }
    if !chunks.iter().any(|c| &c.kind == b"IDAT") {
        return Err(ProvenanceError::Damaged(
            "there is no image data (IDAT)".into(),
        ));
    }
    Ok(chunks)
}

fn chunk_crc(kind: &[u8; 4], data: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(kind);
    hasher.update(data);
    hasher.finalize()
}

fn encode_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 12);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&chunk_crc(kind, data).to_be_bytes());
    out
}

/// The keyword of a tEXt/zTXt/iTXt chunk, if it is one.
fn text_keyword<'a>(chunk: &Chunk<'a>) -> Option<&'a [u8]> {
    match &chunk.kind {
        b"tEXt" | b"zTXt" | b"iTXt" => {
            let end = chunk.data.iter().position(|&b| b == 0)?;
            Some(&chunk.data[..end])
        }
        _ => None,
    }
}

/// Decodes the text chunks with the png crate's own decoders (tEXt Latin-1, zTXt and
/// compressed iTXt inflated with a bound). The decoder reads text only up to the first IDAT,
/// so it is handed a small stand-in stream: IHDR, every text chunk, the first IDAT, IEND.
fn png_texts(chunks: &[Chunk<'_>]) -> BTreeMap<String, String> {
    let mut texts = BTreeMap::new();
    let (Some(ihdr), Some(idat)) = (chunks.first(), chunks.iter().find(|c| &c.kind == b"IDAT"))
    else {
        return texts;
    };
    let mut stream = PNG_SIGNATURE.to_vec();
    stream.extend_from_slice(ihdr.raw);
    for chunk in chunks.iter().filter(|c| text_keyword(c).is_some()) {
        stream.extend_from_slice(chunk.raw);
    }
    stream.extend_from_slice(idat.raw);
    stream.extend_from_slice(&encode_chunk(b"IEND", &[]));
    let mut decoder = png::Decoder::new(std::io::Cursor::new(stream));
    decoder.set_ignore_text_chunk(false);
    let Ok(reader) = decoder.read_info() else {
        return texts;
    };
    let info = reader.info();
    for chunk in &info.uncompressed_latin1_text {
        texts
            .entry(chunk.keyword.clone())
            .or_insert_with(|| chunk.text.clone());
    }
    for chunk in &info.compressed_latin1_text {
        let mut chunk = chunk.clone();
        if chunk.decompress_text_with_limit(MAX_TEXT_BYTES).is_ok()
            && let Ok(text) = chunk.get_text()
        {
            texts.entry(chunk.keyword.clone()).or_insert(text);
        }
    }
    for chunk in &info.utf8_text {
        let mut chunk = chunk.clone();
        if chunk.decompress_text_with_limit(MAX_TEXT_BYTES).is_ok()
            && let Ok(text) = chunk.get_text()
        {
            texts.entry(chunk.keyword.clone()).or_insert(text);
        }
    }
    texts
}

/// Rebuilds `png` with `json` as our iTXt chunk: every other chunk copied byte for byte, any
/// previous chunk under our key dropped, the new one placed just before the first IDAT.
pub fn embed_in_png(png: &[u8], json: &str) -> Result<Vec<u8>, ProvenanceError> {
    let chunks = parse_png(png)?;
    let mut data = Vec::with_capacity(CHUNK_KEY.len() + json.len() + 5);
    data.extend_from_slice(CHUNK_KEY.as_bytes());
    // Keyword end, not compressed, method 0, empty language tag, empty translated keyword.
    data.extend_from_slice(&[0, 0, 0, 0, 0]);
    data.extend_from_slice(json.as_bytes());
    let ours = encode_chunk(b"iTXt", &data);
    let mut out = Vec::with_capacity(png.len() + ours.len());
    out.extend_from_slice(&PNG_SIGNATURE);
    let mut placed = false;
    for chunk in &chunks {
        if text_keyword(chunk) == Some(CHUNK_KEY.as_bytes()) {
            continue;
        }
        if !placed && (&chunk.kind == b"IDAT" || &chunk.kind == b"IEND") {
            out.extend_from_slice(&ours);
            placed = true;
        }
        out.extend_from_slice(chunk.raw);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// EXIF in WebP and JPEG (read only)
// ---------------------------------------------------------------------------------------------

/// The EXIF payload (a TIFF stream) of a WebP's `EXIF` chunk, if any.
fn webp_exif(bytes: &[u8]) -> Option<&[u8]> {
    let mut at = 12usize;
    while bytes.len().checked_sub(at)? >= 8 {
        let kind = &bytes[at..at + 4];
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().ok()?) as usize;
        let start = at + 8;
        let end = start.checked_add(size)?;
        if end > bytes.len() {
            return None;
        }
        if kind == b"EXIF" {
            let payload = &bytes[start..end];
            // Some writers keep JPEG's "Exif\0\0" prefix here.
            return Some(payload.strip_prefix(b"Exif\0\0").unwrap_or(payload));
        }
        at = end + (size & 1);
    }
    None
}

/// The EXIF payload of a JPEG's APP1 `Exif` segment, if any.
fn jpeg_exif(bytes: &[u8]) -> Option<&[u8]> {
    let mut at = 2usize;
    loop {
        if bytes.len().checked_sub(at)? < 4 || bytes[at] != 0xff {
            return None;
        }
        let marker = bytes[at + 1];
        // Start of scan or end of image: no more metadata segments.
        if marker == 0xda || marker == 0xd9 {
            return None;
        }
        let length = u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize;
        if length < 2 {
            return None;
        }
        let start = at + 4;
        let end = (at + 2).checked_add(length)?;
        if end > bytes.len() {
            return None;
        }
        if marker == 0xe1
            && let Some(tiff) = bytes[start..end].strip_prefix(b"Exif\0\0")
        {
            return Some(tiff);
        }
        at = end;
    }
}

/// ASCII/UTF-8 string values of IFD0 (and the Exif sub-IFD) by tag, from a TIFF stream.
/// Bounded: at most a few hundred entries, every offset checked.
fn tiff_strings(tiff: &[u8]) -> Vec<(u16, String)> {
    let little = match tiff.get(0..2) {
        Some(b"II") => true,
        Some(b"MM") => false,
        _ => return Vec::new(),
    };
    let u16_at = |at: usize| -> Option<u16> {
        let b: [u8; 2] = tiff.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(if little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b: [u8; 4] = tiff.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    if u16_at(2) != Some(42) {
        return Vec::new();
    }
    let mut found = Vec::new();
    let mut queue: Vec<usize> = u32_at(4).map(|o| o as usize).into_iter().collect();
    let mut visited = Vec::new();
    while let Some(ifd) = queue.pop() {
        if visited.contains(&ifd) || visited.len() >= 8 {
            continue;
        }
        visited.push(ifd);
        let Some(count) = u16_at(ifd) else { continue };
        for index in 0..usize::from(count).min(512) {
            let entry = ifd + 2 + index * 12;
            let (Some(tag), Some(kind), Some(n)) =
                (u16_at(entry), u16_at(entry + 2), u32_at(entry + 4))
            else {
                break;
            };
            // 0x8769: pointer to the Exif sub-IFD.
            if tag == 0x8769 {
                if let Some(offset) = u32_at(entry + 8) {
                    queue.push(offset as usize);
                }
                continue;
            }
            // ASCII (2) or UNDEFINED (7) byte strings.
            if kind != 2 && kind != 7 {
                continue;
            }
            let n = n as usize;
            let start = if n <= 4 {
                entry + 8
            } else {
                match u32_at(entry + 8) {
                    Some(offset) => offset as usize,
                    None => continue,
                }
            };
            let Some(raw) = start.checked_add(n).and_then(|end| tiff.get(start..end)) else {
                continue;
            };
            let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
            found.push((tag, String::from_utf8_lossy(raw).into_owned()));
        }
        if let Some(next) = u16_at(ifd).and_then(|c| u32_at(ifd + 2 + usize::from(c) * 12))
            && next != 0
        {
            queue.push(next as usize);
        }
    }
    found
}

/// ComfyUI's savers store `"workflow:<json>"` (tag 0x010f, Make) and `"prompt:<json>"`
/// (0x0110, Model) as EXIF strings; any string of the form `key:<json object>` is taken.
fn exif_texts(tiff: Option<&[u8]>) -> BTreeMap<String, String> {
    let mut texts = BTreeMap::new();
    for (_, value) in tiff.map(tiff_strings).unwrap_or_default() {
        let Some((key, rest)) = value.split_once(':') else {
            continue;
        };
        let key = key.trim();
        let valid_key = !key.is_empty()
            && key.len() <= 79
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if valid_key && rest.trim_start().starts_with('{') {
            texts
                .entry(key.to_string())
                .or_insert_with(|| rest.to_string());
        }
    }
    texts
}

// ---------------------------------------------------------------------------------------------
// Our metadata record
// ---------------------------------------------------------------------------------------------

const ITERATION_TYPES: [&str; 4] = ["initial", "refinement", "variation", "rollback"];

/// Checks the record: `schema_version` 1 and a `timestamp` (the original's rules), then the
/// fuller schema's fields where present, naming the first bad field. Returns sorted-keys JSON.
pub fn validate_metadata(metadata: &Map<String, Value>) -> Result<String, ProvenanceError> {
    let bad = |m: String| Err(ProvenanceError::InvalidMetadata(m));
    if metadata.get("schema_version").and_then(Value::as_i64) != Some(1) {
        return bad("schema_version must be 1".into());
    }
    match metadata.get("timestamp") {
        None | Some(Value::Null) => return bad("timestamp is required".into()),
        Some(Value::String(s)) if !s.trim().is_empty() => {}
        Some(Value::Number(_)) => {}
        Some(_) => return bad("timestamp must be a date-time string or a number".into()),
    }
    if let Some(intent) = metadata.get("intent") {
        let Some(intent) = intent.as_object() else {
            return bad("intent must be an object".into());
        };
        for key in ["user_request", "interpretation", "session_context"] {
            if let Some(v) = intent.get(key).filter(|v| !v.is_null() && !v.is_string()) {
                return bad(format!("intent.{key} must be text, not {}", kind(v)));
            }
        }
        if let Some(refs) = intent.get("style_references") {
            match refs.as_array() {
                Some(items) if items.iter().all(Value::is_string) => {}
                _ => return bad("intent.style_references must be a list of text".into()),
            }
        }
    }
    if let Some(iterations) = metadata.get("iterations") {
        let Some(items) = iterations.as_array() else {
            return bad("iterations must be a list".into());
        };
        for (i, item) in items.iter().enumerate() {
            let Some(item) = item.as_object() else {
                return bad(format!("iterations[{i}] must be an object"));
            };
            if let Some(v) = item.get("iteration").filter(|v| !v.is_u64()) {
                return bad(format!(
                    "iterations[{i}].iteration must be a whole number, not {}",
                    kind(v)
                ));
            }
            if let Some(v) = item.get("type")
                && !v.as_str().is_some_and(|t| ITERATION_TYPES.contains(&t))
            {
                return bad(format!(
                    "iterations[{i}].type must be one of {}",
                    ITERATION_TYPES.join(", ")
                ));
            }
            for key in ["trigger", "feedback", "observation"] {
                if let Some(v) = item.get(key).filter(|v| !v.is_null() && !v.is_string()) {
                    return bad(format!(
                        "iterations[{i}].{key} must be text, not {}",
                        kind(v)
                    ));
                }
            }
            if let Some(v) = item
                .get("patches")
                .filter(|v| !v.is_null() && !v.is_array())
            {
                return bad(format!(
                    "iterations[{i}].patches must be a list, not {}",
                    kind(v)
                ));
            }
            if let Some(v) = item
                .get("params")
                .filter(|v| !v.is_null() && !v.is_object())
            {
                return bad(format!(
                    "iterations[{i}].params must be an object, not {}",
                    kind(v)
                ));
            }
        }
    }
    if let Some(v) = metadata
        .get("accepted_iteration")
        .filter(|v| !v.is_null() && !v.is_u64())
    {
        return bad(format!(
            "accepted_iteration must be a whole number, not {}",
            kind(v)
        ));
    }
    if let Some(session) = metadata.get("session") {
        let Some(session) = session.as_object() else {
            return bad("session must be an object".into());
        };
        for key in ["session_name", "workflow_path", "workflow_hash"] {
            if let Some(v) = session.get(key).filter(|v| !v.is_null() && !v.is_string()) {
                return bad(format!("session.{key} must be text, not {}", kind(v)));
            }
        }
        if let Some(v) = session
            .get("key_params")
            .filter(|v| !v.is_null() && !v.is_object())
        {
            return bad(format!(
                "session.key_params must be an object, not {}",
                kind(v)
            ));
        }
        if let Some(combo) = session.get("model_combo") {
            match combo.as_array() {
                Some(items) if items.iter().all(Value::is_string) => {}
                _ => return bad("session.model_combo must be a list of text".into()),
            }
        }
    }
    // serde_json's Map is a BTreeMap here (no preserve_order), so keys come out sorted.
    let json = serde_json::to_string(&Value::Object(metadata.clone()))
        .map_err(|e| ProvenanceError::InvalidMetadata(e.to_string()))?;
    if json.len() > MAX_METADATA_BYTES {
        return Err(ProvenanceError::MetadataTooLarge {
            size: json.len(),
            limit: MAX_METADATA_BYTES,
        });
    }
    Ok(json)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The original's `context` view of our record.
pub fn context_of(metadata: &Map<String, Value>) -> Map<String, Value> {
    let mut context = Map::new();
    context.insert(
        "schema_version".into(),
        metadata
            .get("schema_version")
            .cloned()
            .unwrap_or(Value::Null),
    );
    context.insert(
        "created_at".into(),
        metadata.get("timestamp").cloned().unwrap_or(Value::Null),
    );
    if let Some(intent) = metadata.get("intent").and_then(Value::as_object) {
        let field = |k: &str| intent.get(k).cloned().unwrap_or(Value::Null);
        context.insert(
            "intent".into(),
            serde_json::json!({
                "what_artist_wanted": field("user_request"),
                "how_agent_interpreted": field("interpretation"),
                "style_references": intent.get("style_references").cloned().unwrap_or_else(|| Value::Array(vec![])),
                "session_context": field("session_context"),
            }),
        );
    }
    if let Some(items) = metadata.get("iterations").and_then(Value::as_array) {
        let journey: Vec<Value> = items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let get = |k: &str| item.get(k).cloned().unwrap_or(Value::Null);
                serde_json::json!({
                    "step": item.get("iteration").cloned().unwrap_or_else(|| Value::from(i + 1)),
                    "type": get("type"),
                    "trigger": get("trigger"),
                    "feedback": get("feedback"),
                })
            })
            .collect();
        context.insert(
            "iteration_history".into(),
            serde_json::json!({
                "total_iterations": items.len(),
                "accepted_iteration": metadata.get("accepted_iteration").cloned().unwrap_or(Value::Null),
                "journey": journey,
            }),
        );
    }
    if let Some(session) = metadata.get("session").and_then(Value::as_object) {
        let field = |k: &str| session.get(k).cloned().unwrap_or(Value::Null);
        context.insert(
            "session".into(),
            serde_json::json!({
                "name": field("session_name"),
                "workflow": field("workflow_path"),
                "key_params": field("key_params"),
                "models_used": session.get("model_combo").cloned().unwrap_or_else(|| Value::Array(vec![])),
            }),
        );
    }
    context
}

/// A short readable sentence list of our record, the original's `summary`.
pub fn summary_of(metadata: &Map<String, Value>) -> Vec<String> {
    let mut lines = Vec::new();
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    if let Some(request) = text(metadata.get("intent").and_then(|i| i.get("user_request"))) {
        lines.push(format!("The artist asked for: {request}"));
    }
    if let Some(interp) = text(metadata.get("intent").and_then(|i| i.get("interpretation"))) {
        lines.push(format!("Interpreted as: {interp}"));
    }
    if let Some(items) = metadata.get("iterations").and_then(Value::as_array) {
        let accepted = metadata
            .get("accepted_iteration")
            .and_then(Value::as_u64)
            .map(|n| format!(", iteration {n} accepted"))
            .unwrap_or_default();
        lines.push(format!("{} iteration(s){accepted}.", items.len()));
    }
    if let Some(name) = text(metadata.get("session").and_then(|s| s.get("session_name"))) {
        lines.push(format!("Session: {name}"));
    }
    if let Some(models) = metadata
        .get("session")
        .and_then(|s| s.get("model_combo"))
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
    {
        let names: Vec<&str> = models.iter().filter_map(Value::as_str).collect();
        lines.push(format!("Models: {}", names.join(", ")));
    }
    lines
}

// ---------------------------------------------------------------------------------------------
// What ComfyUI's own prompt says
// ---------------------------------------------------------------------------------------------

/// The generation settings found by walking an API-format prompt graph.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, schemars::JsonSchema)]
pub struct Generation {
    pub checkpoints: Vec<String>,
    pub loras: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cfg: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampler_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub positive: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negative: Option<String>,
    pub node_count: usize,
}

/// Reads ComfyUI's `prompt` text (API format: `{id: {class_type, inputs}}`). Sampler values
/// come from the first sampler node (by id order); prompts by following its `positive` and
/// `negative` links to a node with a `text` input.
pub fn generation_from_prompt(prompt: &str) -> Option<Generation> {
    let graph: Map<String, Value> = serde_json::from_str(prompt).ok()?;
    let node = |id: &str| graph.get(id).and_then(Value::as_object);
    let mut found = Generation {
        node_count: graph.len(),
        ..Generation::default()
    };
    let mut ids: Vec<&String> = graph.keys().collect();
    ids.sort_by_key(|id| (id.parse::<u64>().unwrap_or(u64::MAX), id.to_string()));
    let mut sampler = None;
    for id in &ids {
        let Some(entry) = node(id) else { continue };
        let class = entry
            .get("class_type")
            .and_then(Value::as_str)
            .unwrap_or("");
        let Some(inputs) = entry.get("inputs").and_then(Value::as_object) else {
            continue;
        };
        let string = |k: &str| inputs.get(k).and_then(Value::as_str).map(str::to_owned);
        if let Some(ckpt) = string("ckpt_name").or_else(|| string("unet_name"))
            && !found.checkpoints.contains(&ckpt)
        {
            found.checkpoints.push(ckpt);
        }
        if let Some(lora) = string("lora_name")
            && !found.loras.contains(&lora)
        {
            found.loras.push(lora);
        }
        if sampler.is_none() && class.contains("Sampler") && inputs.contains_key("positive") {
            sampler = Some(inputs);
        }
        if found.width.is_none() && class.contains("LatentImage") {
            found.width = inputs.get("width").filter(|v| v.is_number()).cloned();
            found.height = inputs.get("height").filter(|v| v.is_number()).cloned();
        }
    }
    if let Some(inputs) = sampler {
        let number = |k: &str| inputs.get(k).filter(|v| v.is_number()).cloned();
        found.seed = number("seed").or_else(|| number("noise_seed"));
        found.steps = number("steps");
        found.cfg = number("cfg");
        found.sampler_name = inputs
            .get("sampler_name")
            .and_then(Value::as_str)
            .map(str::to_owned);
        found.scheduler = inputs
            .get("scheduler")
            .and_then(Value::as_str)
            .map(str::to_owned);
        found.positive = inputs
            .get("positive")
            .and_then(|l| text_behind(&graph, l, 0));
        found.negative = inputs
            .get("negative")
            .and_then(|l| text_behind(&graph, l, 0));
    }
    Some(found)
}

/// Follows a `[node_id, output]` link back to the nearest node with a text input.
fn text_behind(graph: &Map<String, Value>, link: &Value, depth: usize) -> Option<String> {
    if depth > 16 {
        return None;
    }
    let id = match link.as_array()?.first()? {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let inputs = graph.get(&id)?.get("inputs")?.as_object()?;
    for key in ["text", "text_g", "prompt"] {
        if let Some(text) = inputs.get(key).and_then(Value::as_str) {
            return Some(text.to_owned());
        }
    }
    // Through conditioning pass-throughs (ControlNet apply, combine, …).
    [
        "conditioning",
        "positive",
        "conditioning_1",
        "conditioning_to",
    ]
    .iter()
    .filter_map(|k| inputs.get(*k))
    .find_map(|next| text_behind(graph, next, depth + 1))
}

/// One line describing the generation, for the summary.
pub fn generation_summary(g: &Generation) -> Vec<String> {
    let mut lines = Vec::new();
    if !g.checkpoints.is_empty() {
        lines.push(format!("Model: {}", g.checkpoints.join(", ")));
    }
    if !g.loras.is_empty() {
        lines.push(format!("LoRAs: {}", g.loras.join(", ")));
    }
    let mut settings = Vec::new();
    let show = |v: &Option<Value>| v.as_ref().map(Value::to_string);
    if let Some(seed) = show(&g.seed) {
        settings.push(format!("seed {seed}"));
    }
    if let Some(steps) = show(&g.steps) {
        settings.push(format!("{steps} steps"));
    }
    if let Some(cfg) = show(&g.cfg) {
        settings.push(format!("cfg {cfg}"));
    }
    if let Some(s) = &g.sampler_name {
        settings.push(format!("sampler {s}"));
    }
    if let Some(s) = &g.scheduler {
        settings.push(format!("scheduler {s}"));
    }
    if let (Some(w), Some(h)) = (show(&g.width), show(&g.height)) {
        settings.push(format!("{w}×{h}"));
    }
    if !settings.is_empty() {
        lines.push(format!("Settings: {}", settings.join(", ")));
    }
    if let Some(p) = &g.positive {
        lines.push(format!("Prompt: {p}"));
    }
    if let Some(n) = &g.negative {
        lines.push(format!("Negative prompt: {n}"));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    pub(crate) const PROMPT: &str = r#"{"3":{"class_type":"KSampler","inputs":{"seed":42,"steps":20,"cfg":7.5,"sampler_name":"euler","scheduler":"normal","denoise":1,"model":["10",0],"positive":["6",0],"negative":["7",0],"latent_image":["5",0]}},"4":{"class_type":"CheckpointLoaderSimple","inputs":{"ckpt_name":"sd15.safetensors"}},"5":{"class_type":"EmptyLatentImage","inputs":{"width":512,"height":768,"batch_size":1}},"6":{"class_type":"CLIPTextEncode","inputs":{"text":"a lighthouse at dusk","clip":["10",1]}},"7":{"class_type":"CLIPTextEncode","inputs":{"text":"blurry","clip":["10",1]}},"10":{"class_type":"LoraLoader","inputs":{"lora_name":"film.safetensors","model":["4",0],"clip":["4",1]}}}"#;

    /// A small RGB PNG as ComfyUI writes it: tEXt `prompt` and `workflow`, plus a private
    /// ancillary chunk after IDAT.
    pub(crate) fn comfy_png() -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut out, 3, 2);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            encoder
                .add_text_chunk("prompt".into(), PROMPT.into())
                .unwrap();
            encoder
                .add_text_chunk("workflow".into(), r#"{"nodes":[],"links":[]}"#.into())
                .unwrap();
            let mut writer = encoder.write_header().unwrap();
            let pixels: Vec<u8> = (0..18).map(|i| (i * 13) as u8).collect();
            writer.write_image_data(&pixels).unwrap();
        }
        // A private chunk just before IEND.
        let iend = out.len() - 12;
        let private = encode_chunk(b"prVt", b"keep me");
        out.splice(iend..iend, private);
        out
    }

    fn chunk_raws(bytes: &[u8]) -> Vec<Vec<u8>> {
        parse_png(bytes)
            .unwrap()
            .iter()
            .map(|c| c.raw.to_vec())
            .collect()
    }

    #[test]
    fn embedding_keeps_every_other_chunk_byte_for_byte() {
        let original = comfy_png();
        let json = validate_metadata(
            json!({"schema_version": 1, "timestamp": "2026-01-01T00:00:00Z"})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        let written = embed_in_png(&original, &json).unwrap();
        let before = chunk_raws(&original);
        let after: Vec<Vec<u8>> = chunk_raws(&written)
            .into_iter()
            .filter(|raw| &raw[4..8] != b"iTXt")
            .collect();
        assert_eq!(before, after);
        let (_, texts) = read_texts(&written).unwrap();
        assert_eq!(texts[CHUNK_KEY], json);
        assert_eq!(texts["prompt"], PROMPT);
        // Our chunk sits before the first IDAT.
        let kinds: Vec<[u8; 4]> = parse_png(&written)
            .unwrap()
            .iter()
            .map(|c| c.kind)
            .collect();
        let ours = kinds.iter().position(|k| k == b"iTXt").unwrap();
        let idat = kinds.iter().position(|k| k == b"IDAT").unwrap();
        assert!(ours < idat);
        let pixels = |b: &[u8]| image::load_from_memory(b).unwrap().to_rgba8().into_raw();
        assert_eq!(pixels(&original), pixels(&written));
    }

    #[test]
    fn a_second_embed_replaces_the_first() {
        let once = embed_in_png(&comfy_png(), r#"{"a":1}"#).unwrap();
        let twice = embed_in_png(&once, r#"{"b":"天気 ünïcødé"}"#).unwrap();
        let ours = parse_png(&twice)
            .unwrap()
            .iter()
            .filter(|c| text_keyword(c) == Some(CHUNK_KEY.as_bytes()))
            .count();
        assert_eq!(ours, 1);
        assert_eq!(
            read_texts(&twice).unwrap().1[CHUNK_KEY],
            r#"{"b":"天気 ünïcødé"}"#
        );
    }

    #[test]
    fn damaged_pngs_are_refused() {
        let good = comfy_png();
        assert_eq!(
            embed_in_png(b"GIF89a....", "{}").unwrap_err(),
            ProvenanceError::NotPng
        );
        let mut bad_crc = good.clone();
        let last_idat_byte = bad_crc.len() - 30;
        bad_crc[last_idat_byte] ^= 0xff;
        assert!(matches!(
            embed_in_png(&bad_crc, "{}"),
            Err(ProvenanceError::Damaged(_))
        ));
        for cut in [9, 20, 40, good.len() - 1] {
            assert!(
                matches!(
                    embed_in_png(&good[..cut], "{}"),
                    Err(ProvenanceError::Damaged(_))
                ),
                "truncated at {cut}"
            );
        }
        let mut trailing = good.clone();
        trailing.extend_from_slice(b"junk");
        assert!(embed_in_png(&trailing, "{}").is_err());
    }

    #[test]
    fn metadata_is_validated_field_by_field() {
        let check = |v: Value| validate_metadata(v.as_object().unwrap()).map_err(|e| e.to_string());
        assert_eq!(
            check(json!({"timestamp": "t"})).unwrap_err(),
            "Invalid metadata: schema_version must be 1"
        );
        assert_eq!(
            check(json!({"schema_version": 1})).unwrap_err(),
            "Invalid metadata: timestamp is required"
        );
        let base = |extra: Value| {
            let mut m = json!({"schema_version": 1, "timestamp": "t"});
            m.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            check(m)
        };
        assert!(
            base(json!({"intent": {"style_references": [1]}}))
                .unwrap_err()
                .contains("intent.style_references")
        );
        assert!(
            base(json!({"iterations": [{"type": "initial"}, {"type": "remix"}]}))
                .unwrap_err()
                .contains("iterations[1].type")
        );
        assert!(
            base(json!({"iterations": [{"iteration": "one"}]}))
                .unwrap_err()
                .contains("iterations[0].iteration")
        );
        assert!(
            base(json!({"accepted_iteration": -1}))
                .unwrap_err()
                .contains("accepted_iteration")
        );
        assert!(
            base(json!({"session": {"model_combo": "sd15"}}))
                .unwrap_err()
                .contains("session.model_combo")
        );
        assert!(
            base(json!({"session": {"key_params": []}}))
                .unwrap_err()
                .contains("session.key_params")
        );
        let big = "x".repeat(MAX_METADATA_BYTES);
        assert!(base(json!({"notes": big})).unwrap_err().contains("limit"));
        let ok = base(json!({"zeta": 1, "alpha": {"z": 1, "a": 2}})).unwrap();
        assert_eq!(
            ok,
            r#"{"alpha":{"a":2,"z":1},"schema_version":1,"timestamp":"t","zeta":1}"#
        );
    }

    #[test]
    fn the_prompt_graph_yields_the_generation_settings() {
        let g = generation_from_prompt(PROMPT).unwrap();
        assert_eq!(g.checkpoints, ["sd15.safetensors"]);
        assert_eq!(g.loras, ["film.safetensors"]);
        assert_eq!(g.seed, Some(json!(42)));
        assert_eq!(g.steps, Some(json!(20)));
        assert_eq!(g.cfg, Some(json!(7.5)));
        assert_eq!(g.sampler_name.as_deref(), Some("euler"));
        assert_eq!(
            (g.width.clone(), g.height.clone()),
            (Some(json!(512)), Some(json!(768)))
        );
        assert_eq!(g.positive.as_deref(), Some("a lighthouse at dusk"));
        assert_eq!(g.negative.as_deref(), Some("blurry"));
        assert!(generation_summary(&g).join("\n").contains("seed 42"));
        assert!(generation_from_prompt("not json").is_none());
    }

    /// A TIFF stream (little- or big-endian) with ComfyUI's Make/Model strings in IFD0.
    pub(crate) fn comfy_tiff(little: bool) -> Vec<u8> {
        let make = b"workflow:{\"nodes\":[]}\0".to_vec();
        let model = format!("prompt:{PROMPT}\0").into_bytes();
        let u16b = |v: u16| {
            if little {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            }
        };
        let u32b = |v: u32| {
            if little {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            }
        };
        let mut t = Vec::new();
        t.extend_from_slice(if little { b"II" } else { b"MM" });
        t.extend_from_slice(&u16b(42));
        t.extend_from_slice(&u32b(8));
        t.extend_from_slice(&u16b(2));
        let data_at = 8 + 2 + 2 * 12 + 4;
        for (tag, value, at) in [
            (0x010f, &make, data_at),
            (0x0110, &model, data_at + make.len()),
        ] {
            t.extend_from_slice(&u16b(tag));
            t.extend_from_slice(&u16b(2));
            t.extend_from_slice(&u32b(value.len() as u32));
            t.extend_from_slice(&u32b(at as u32));
        }
        t.extend_from_slice(&u32b(0));
        t.extend_from_slice(&make);
        t.extend_from_slice(&model);
        t
    }

    pub(crate) fn comfy_webp() -> Vec<u8> {
        let exif = comfy_tiff(true);
        let vp8l: &[u8] = &[0x2f, 0, 0, 0, 0];
        let mut body = b"WEBP".to_vec();
        for (kind, data) in [(b"VP8L", vp8l), (b"EXIF", exif.as_slice())] {
            body.extend_from_slice(kind);
            body.extend_from_slice(&(data.len() as u32).to_le_bytes());
            body.extend_from_slice(data);
            if data.len() % 2 == 1 {
                body.push(0);
            }
        }
        let mut out = b"RIFF".to_vec();
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    pub(crate) fn comfy_jpeg() -> Vec<u8> {
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&comfy_tiff(false));
        let mut out = vec![0xff, 0xd8, 0xff, 0xe0, 0, 4, 0, 0, 0xff, 0xe1];
        out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&app1);
        out.extend_from_slice(&[0xff, 0xda, 0, 2, 0xff, 0xd9]);
        out
    }

    #[test]
    fn webp_and_jpeg_exif_give_comfyuis_prompt_and_workflow() {
        for (bytes, format) in [(comfy_webp(), Format::Webp), (comfy_jpeg(), Format::Jpeg)] {
            let (found, texts) = read_texts(&bytes).unwrap();
            assert_eq!(found, format);
            assert_eq!(texts["prompt"], PROMPT);
            assert_eq!(texts["workflow"], r#"{"nodes":[]}"#);
        }
    }

    proptest! {
        #[test]
        fn malformed_images_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512), prefix in 0usize..4) {
            let heads: [&[u8]; 4] = [&PNG_SIGNATURE, b"RIFF\x10\0\0\0WEBP", &[0xff, 0xd8], b""];
            let mut bytes = heads[prefix].to_vec();
            bytes.extend_from_slice(&data);
            let _ = read_texts(&bytes);
            let _ = embed_in_png(&bytes, "{}");
            let _ = tiff_strings(&data);
        }

        #[test]
        fn corrupting_real_images_never_panics(at in any::<prop::sample::Index>(), byte in any::<u8>(), which in 0usize..3, cut in any::<prop::sample::Index>()) {
            let mut bytes = [comfy_png(), comfy_webp(), comfy_jpeg()][which].clone();
            let i = at.index(bytes.len());
            bytes[i] = byte;
            let keep = cut.index(bytes.len() + 1);
            bytes.truncate(keep.max(i));
            let _ = read_texts(&bytes);
            let _ = embed_in_png(&bytes, "{}");
        }
    }
}
