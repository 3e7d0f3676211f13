//! A model file's header, read without its tensor data: safetensors (a length-prefixed JSON
//! table of tensors plus optional `__metadata__`) and GGUF (typed key/value metadata, then
//! tensor infos). Both parsers bound what they read and keep, so a hostile or truncated file
//! costs at most its header's size in memory and never panics.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read};
use std::path::Path;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

/// Safetensors headers larger than this are refused (real ones are well under 10 MiB).
pub const MAX_SAFETENSORS_HEADER: u64 = 100 * 1024 * 1024;
/// GGUF counts above these are taken as a broken or hostile file.
const MAX_GGUF_TENSORS: u64 = 1 << 20;
const MAX_GGUF_KV: u64 = 1 << 20;
/// Longest GGUF key or tensor name accepted (the format itself says 64 bytes for names).
const MAX_GGUF_NAME: u64 = 64 * 1024;
/// GGUF string values longer than this are skipped rather than kept.
const MAX_KEPT_VALUE: usize = 256;
/// Deepest GGUF array nesting accepted.
const MAX_GGUF_DEPTH: u8 = 4;

/// Metadata keys worth keeping: they say what a file is. Others (training tag counts, huge
/// vocabularies) are skipped without being stored.
const KEPT_KEYS: &[&str] = &[
    "modelspec.architecture",
    "modelspec.title",
    "modelspec.implementation",
    "ss_base_model_version",
    "ss_network_module",
    "ss_sd_model_name",
    "ss_v2",
    "format",
    "general.architecture",
    "general.name",
    "general.type",
    "general.file_type",
    "general.size_label",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Safetensors,
    Gguf,
}

/// One tensor: its name and shape (outermost dimension first, as PyTorch writes it; GGUF's
/// innermost-first dimensions are reversed on reading).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<u64>,
}

/// What a model file's header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelHeader {
    pub format: Format,
    pub tensors: Vec<TensorInfo>,
    /// The metadata keys in [`KEPT_KEYS`] that the file has, values as text.
    pub metadata: BTreeMap<String, String>,
    /// Where the tensor data the header describes ends, counted from the start of the data
    /// section (safetensors only; 0 for GGUF).
    pub data_end: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("it could not be read ({0})")]
    Io(String),
    #[error("it is too short to hold a model header")]
    TooShort,
    #[error("its header says it is {claimed} bytes long, more than the {limit} bytes allowed")]
    TooLarge { claimed: u64, limit: u64 },
    #[error("its header says it is {claimed} bytes long but the file ends after {available}")]
    Truncated { claimed: u64, available: u64 },
    #[error("its safetensors header is not valid ({0})")]
    Json(String),
    #[error("it is GGUF version {0}, and only versions 2 and 3 are understood")]
    GgufVersion(u32),
    #[error("its GGUF header is malformed: {0}")]
    Gguf(String),
    #[error("it is a PyTorch pickle (.ckpt/.pt/.pth), which can't be inspected without running it")]
    Pickle,
    #[error("it is neither a safetensors nor a GGUF file")]
    UnknownFormat,
}

impl From<io::Error> for HeaderError {
    fn from(error: io::Error) -> Self {
        if error.kind() == io::ErrorKind::UnexpectedEof {
            Self::Gguf("the file ends inside its header".into())
        } else {
            Self::Io(error.to_string())
        }
    }
}

/// Reads the header of the model file at `path`: only the header bytes, never tensor data.
pub fn read_header(path: &Path) -> Result<ModelHeader, HeaderError> {
    let mut file = std::fs::File::open(path).map_err(|e| HeaderError::Io(e.to_string()))?;
    let size = file
        .metadata()
        .map_err(|e| HeaderError::Io(e.to_string()))?
        .len();
    let mut start = [0_u8; 8];
    if size < 8 {
        return Err(HeaderError::TooShort);
    }
    file.read_exact(&mut start)?;
    if &start[..4] == b"GGUF" {
        let reader = io::BufReader::with_capacity(64 * 1024, (&start[..]).chain(file));
        return parse_gguf(reader);
    }
    let claimed = u64::from_le_bytes(start);
    if let Err(error) = check_length(claimed, size - 8) {
        // A zip (PyTorch's format since 1.6) or a bare pickle reads as a nonsense length.
        if &start[..2] == b"PK" || (start[0] == 0x80 && start[1] <= 5) {
            return Err(HeaderError::Pickle);
        }
        return Err(error);
    }
    // `claimed` is at most MAX_SAFETENSORS_HEADER, so this fits in memory and in usize.
    let mut json = vec![0_u8; usize::try_from(claimed).map_err(|_| HeaderError::TooShort)?];
    file.read_exact(&mut json)?;
    let mut header = parse_safetensors_json(&json)?;
    header.format = Format::Safetensors;
    Ok(header)
}

fn check_length(claimed: u64, available: u64) -> Result<(), HeaderError> {
    if claimed > MAX_SAFETENSORS_HEADER {
        return Err(HeaderError::TooLarge {
            claimed,
            limit: MAX_SAFETENSORS_HEADER,
        });
    }
    if claimed > available {
        return Err(HeaderError::Truncated { claimed, available });
    }
    if claimed < 2 {
        return Err(HeaderError::UnknownFormat);
    }
    Ok(())
}

/// Parses a safetensors file's beginning (the 8-byte length, then the JSON header; anything
/// after the header is ignored).
pub fn parse_safetensors(bytes: &[u8]) -> Result<ModelHeader, HeaderError> {
    let Some((length, rest)) = bytes.split_first_chunk::<8>() else {
        return Err(HeaderError::TooShort);
    };
    let claimed = u64::from_le_bytes(*length);
    check_length(claimed, rest.len() as u64)?;
    let end = usize::try_from(claimed).map_err(|_| HeaderError::TooShort)?;
    parse_safetensors_json(&rest[..end])
}

/// Parses the JSON part of a safetensors header.
pub fn parse_safetensors_json(json: &[u8]) -> Result<ModelHeader, HeaderError> {
    // Safetensors pads the header with trailing spaces; serde_json accepts trailing
    // whitespace, so no trimming is needed.
    let table: Table =
        serde_json::from_slice(json).map_err(|e| HeaderError::Json(e.to_string()))?;
    Ok(ModelHeader {
        format: Format::Safetensors,
        tensors: table.tensors,
        metadata: table.metadata,
        data_end: table.data_end,
    })
}

/// A JSON object key, borrowed from the input when it holds no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// One tensor entry; `dtype` and any other fields are skipped.
#[derive(Deserialize)]
struct RawTensor {
    shape: Vec<u64>,
    #[serde(default)]
    data_offsets: Option<(u64, u64)>,
}

/// The whole safetensors table, built straight from the JSON without an intermediate tree.
struct Table {
    tensors: Vec<TensorInfo>,
    metadata: BTreeMap<String, String>,
    data_end: u64,
}

impl<'de> Deserialize<'de> for Table {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TableVisitor;
        impl<'de> Visitor<'de> for TableVisitor {
            type Value = Table;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of tensors")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Table, A::Error> {
                let mut table = Table {
                    tensors: Vec::with_capacity(map.size_hint().unwrap_or(0).min(4096)),
                    metadata: BTreeMap::new(),
                    data_end: 0,
                };
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    if key == "__metadata__" {
                        map.next_value_seed(MetadataSeed(&mut table.metadata))?;
                        continue;
                    }
                    let raw: RawTensor = map.next_value()?;
                    if let Some((start, end)) = raw.data_offsets {
                        if end < start {
                            return Err(de::Error::custom(format!(
                                "tensor {key:?} ends before it starts"
                            )));
                        }
                        table.data_end = table.data_end.max(end);
                    }
                    table.tensors.push(TensorInfo {
                        name: key.into_owned(),
                        shape: raw.shape,
                    });
                }
                Ok(table)
            }
        }
        deserializer.deserialize_map(TableVisitor)
    }
}

/// `__metadata__`: keeps the [`KEPT_KEYS`] (strings as they are, other values as JSON text)
/// and skips the rest unread into memory.
struct MetadataSeed<'a>(&'a mut BTreeMap<String, String>);

impl<'de> DeserializeSeed<'de> for MetadataSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MetadataSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of metadata")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if KEPT_KEYS.contains(&key.as_ref()) {
                let value: serde_json::Value = map.next_value()?;
                let text = match value {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                self.0.insert(key.into_owned(), clip(text));
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

fn clip(mut text: String) -> String {
    if text.len() > MAX_KEPT_VALUE {
        let mut end = MAX_KEPT_VALUE;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Parses a GGUF header (versions 2 and 3) from `reader`, positioned at the magic. Reads
/// through the metadata and the tensor infos and stops there.
pub fn parse_gguf(reader: impl Read) -> Result<ModelHeader, HeaderError> {
    let mut r = Gguf { reader };
    let mut magic = [0_u8; 4];
    r.reader.read_exact(&mut magic)?;
    if &magic != b"GGUF" {
        return Err(HeaderError::UnknownFormat);
    }
    let version = r.u32()?;
    if !(2..=3).contains(&version) {
        return Err(HeaderError::GgufVersion(version));
    }
    let tensor_count = r.u64()?;
    let kv_count = r.u64()?;
    if tensor_count > MAX_GGUF_TENSORS {
        return Err(HeaderError::Gguf(format!(
            "it claims {tensor_count} tensors"
        )));
    }
    if kv_count > MAX_GGUF_KV {
        return Err(HeaderError::Gguf(format!(
            "it claims {kv_count} metadata entries"
        )));
    }
    let mut metadata = BTreeMap::new();
    for _ in 0..kv_count {
        let key = r.name()?;
        let kind = r.u32()?;
        let keep = KEPT_KEYS.contains(&key.as_str());
        if let Some(value) = r.value(kind, keep, 0)? {
            metadata.insert(key, value);
        }
    }
    // Each tensor info takes at least 24 bytes, so the count is checked against what is read:
    // a bogus count ends in an early end-of-file, never a huge allocation.
    let mut tensors = Vec::with_capacity(usize::try_from(tensor_count.min(4096)).unwrap_or(0));
    for _ in 0..tensor_count {
        let name = r.name()?;
        let n_dims = r.u32()?;
        if n_dims > 8 {
            return Err(HeaderError::Gguf(format!(
                "tensor {name:?} claims {n_dims} dimensions"
            )));
        }
        let mut shape = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            shape.push(r.u64()?);
        }
        shape.reverse();
        let _ggml_type = r.u32()?;
        let _offset = r.u64()?;
        tensors.push(TensorInfo { name, shape });
    }
    Ok(ModelHeader {
        format: Format::Gguf,
        tensors,
        metadata,
        data_end: 0,
    })
}

struct Gguf<R> {
    reader: R,
}

impl<R: Read> Gguf<R> {
    fn u32(&mut self) -> Result<u32, HeaderError> {
        let mut b = [0_u8; 4];
        self.reader.read_exact(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, HeaderError> {
        let mut b = [0_u8; 8];
        self.reader.read_exact(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// A key or tensor name: bounded, UTF-8 (lossily).
    fn name(&mut self) -> Result<String, HeaderError> {
        let len = self.u64()?;
        if len > MAX_GGUF_NAME {
            return Err(HeaderError::Gguf(format!(
                "a name claims to be {len} bytes long"
            )));
        }
        let mut bytes = vec![0_u8; len as usize];
        self.reader.read_exact(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Discards `n` bytes, failing at the end of the file.
    fn skip(&mut self, n: u64) -> Result<(), HeaderError> {
        let skipped = io::copy(&mut (&mut self.reader).take(n), &mut io::sink())?;
        if skipped < n {
            return Err(HeaderError::Gguf(
                "the file ends inside its metadata".into(),
            ));
        }
        Ok(())
    }

    /// A string value: kept (clipped) when wanted and short, otherwise skipped unstored.
    fn string(&mut self, keep: bool) -> Result<Option<String>, HeaderError> {
        let len = self.u64()?;
        if keep && len <= MAX_KEPT_VALUE as u64 {
            let mut bytes = vec![0_u8; len as usize];
            self.reader.read_exact(&mut bytes)?;
            return Ok(Some(String::from_utf8_lossy(&bytes).into_owned()));
        }
        self.skip(len)?;
        Ok(None)
    }

    /// One value of GGUF type `kind`; its text when `keep` and it is a scalar or string.
    fn value(&mut self, kind: u32, keep: bool, depth: u8) -> Result<Option<String>, HeaderError> {
        let text = match kind {
            0 | 1 | 7 => {
                let mut b = [0_u8; 1];
                self.reader.read_exact(&mut b)?;
                match kind {
                    0 => b[0].to_string(),
                    1 => (b[0] as i8).to_string(),
                    _ => (b[0] != 0).to_string(),
                }
            }
            2 | 3 => {
                let mut b = [0_u8; 2];
                self.reader.read_exact(&mut b)?;
                if kind == 2 {
                    u16::from_le_bytes(b).to_string()
                } else {
                    i16::from_le_bytes(b).to_string()
                }
            }
            4..=6 => {
                let v = self.u32()?;
                match kind {
                    4 => v.to_string(),
                    5 => (v as i32).to_string(),
                    _ => f32::from_bits(v).to_string(),
                }
            }
            8 => return self.string(keep),
            9 => {
                if depth >= MAX_GGUF_DEPTH {
                    return Err(HeaderError::Gguf("arrays are nested too deeply".into()));
                }
                let item = self.u32()?;
                let count = self.u64()?;
                match fixed_size(item) {
                    Some(size) => {
                        let bytes = count.checked_mul(size).ok_or_else(|| {
                            HeaderError::Gguf(format!("an array claims {count} items"))
                        })?;
                        self.skip(bytes)?;
                    }
                    None if item == 8 || item == 9 => {
                        // Each item takes at least 8 bytes, so a bogus count runs into the end
                        // of the file long before it costs anything but reading.
                        for _ in 0..count {
                            self.value(item, false, depth + 1)?;
                        }
                    }
                    None => {
                        return Err(HeaderError::Gguf(format!(
                            "an array holds items of unknown type {item}"
                        )));
                    }
                }
                return Ok(None);
            }
            10..=12 => {
                let v = self.u64()?;
                match kind {
                    10 => v.to_string(),
                    11 => (v as i64).to_string(),
                    _ => f64::from_bits(v).to_string(),
                }
            }
            other => {
                return Err(HeaderError::Gguf(format!(
                    "a value has unknown type {other}"
                )));
            }
        };
        Ok(keep.then_some(text))
    }
}

/// The size in bytes of a fixed-size GGUF value type.
fn fixed_size(kind: u32) -> Option<u64> {
    match kind {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A safetensors file's bytes: the length, then the JSON header (no tensor data).
    pub(crate) fn safetensors_bytes(header: &serde_json::Value) -> Vec<u8> {
        let json = serde_json::to_vec(header).expect("json");
        let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(&json);
        bytes
    }

    /// A GGUF writer for tests.
    #[derive(Default)]
    pub(crate) struct GgufWriter {
        kv: Vec<u8>,
        kv_count: u64,
        tensors: Vec<u8>,
        tensor_count: u64,
    }

    fn gguf_str(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    impl GgufWriter {
        pub(crate) fn string(mut self, key: &str, value: &str) -> Self {
            gguf_str(&mut self.kv, key);
            self.kv.extend_from_slice(&8_u32.to_le_bytes());
            gguf_str(&mut self.kv, value);
            self.kv_count += 1;
            self
        }

        pub(crate) fn u32(mut self, key: &str, value: u32) -> Self {
            gguf_str(&mut self.kv, key);
            self.kv.extend_from_slice(&4_u32.to_le_bytes());
            self.kv.extend_from_slice(&value.to_le_bytes());
            self.kv_count += 1;
            self
        }

        pub(crate) fn string_array(mut self, key: &str, items: &[&str]) -> Self {
            gguf_str(&mut self.kv, key);
            self.kv.extend_from_slice(&9_u32.to_le_bytes());
            self.kv.extend_from_slice(&8_u32.to_le_bytes());
            self.kv
                .extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                gguf_str(&mut self.kv, item);
            }
            self.kv_count += 1;
            self
        }

        pub(crate) fn f32_array(mut self, key: &str, items: &[f32]) -> Self {
            gguf_str(&mut self.kv, key);
            self.kv.extend_from_slice(&9_u32.to_le_bytes());
            self.kv.extend_from_slice(&6_u32.to_le_bytes());
            self.kv
                .extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                self.kv.extend_from_slice(&item.to_le_bytes());
            }
            self.kv_count += 1;
            self
        }

        /// A tensor with a PyTorch-order `shape` (written innermost first, as GGUF does).
        pub(crate) fn tensor(mut self, name: &str, shape: &[u64]) -> Self {
            gguf_str(&mut self.tensors, name);
            self.tensors
                .extend_from_slice(&(shape.len() as u32).to_le_bytes());
            for dim in shape.iter().rev() {
                self.tensors.extend_from_slice(&dim.to_le_bytes());
            }
            self.tensors.extend_from_slice(&1_u32.to_le_bytes());
            self.tensors.extend_from_slice(&0_u64.to_le_bytes());
            self.tensor_count += 1;
            self
        }

        pub(crate) fn bytes(&self, version: u32) -> Vec<u8> {
            let mut out = b"GGUF".to_vec();
            out.extend_from_slice(&version.to_le_bytes());
            out.extend_from_slice(&self.tensor_count.to_le_bytes());
            out.extend_from_slice(&self.kv_count.to_le_bytes());
            out.extend_from_slice(&self.kv);
            out.extend_from_slice(&self.tensors);
            out
        }
    }

    #[test]
    fn safetensors_names_shapes_and_kept_metadata() {
        let bytes = safetensors_bytes(&serde_json::json!({
            "__metadata__": {"format": "pt", "ss_base_model_version": "sdxl_base_v1-0",
                             "ss_tag_frequency": "{\"huge\": 1}"},
            "a.weight": {"dtype": "F16", "shape": [320, 768], "data_offsets": [0, 491520]},
            "b\\u002ebias": {"dtype": "F32", "shape": [], "data_offsets": [491520, 491524]}
        }));
        let header = parse_safetensors(&bytes).expect("parses");
        assert_eq!(header.format, Format::Safetensors);
        assert_eq!(header.tensors.len(), 2);
        assert_eq!(header.tensors[0].shape, [320, 768]);
        assert_eq!(header.tensors[1].name, "b\\u002ebias");
        assert_eq!(header.data_end, 491524);
        assert_eq!(header.metadata["ss_base_model_version"], "sdxl_base_v1-0");
        assert!(!header.metadata.contains_key("ss_tag_frequency"));
    }

    #[test]
    fn escaped_names_are_decoded() {
        let mut bytes =
            br#"{"a\u002eb": {"dtype": "F16", "shape": [1], "data_offsets": [0, 2]}}  "#.to_vec();
        let mut file = (bytes.len() as u64).to_le_bytes().to_vec();
        file.append(&mut bytes);
        let header = parse_safetensors(&file).expect("parses");
        assert_eq!(header.tensors[0].name, "a.b");
    }

    #[test]
    fn malformed_safetensors_are_refused_plainly() {
        assert_eq!(parse_safetensors(b"abc"), Err(HeaderError::TooShort));
        let mut huge = (MAX_SAFETENSORS_HEADER + 1).to_le_bytes().to_vec();
        huge.extend_from_slice(b"{}");
        assert!(matches!(
            parse_safetensors(&huge),
            Err(HeaderError::TooLarge { .. })
        ));
        let mut short = 100_u64.to_le_bytes().to_vec();
        short.extend_from_slice(b"{}");
        assert_eq!(
            parse_safetensors(&short),
            Err(HeaderError::Truncated {
                claimed: 100,
                available: 2
            })
        );
        let mut bad = 5_u64.to_le_bytes().to_vec();
        bad.extend_from_slice(b"{\"a\":");
        assert!(matches!(parse_safetensors(&bad), Err(HeaderError::Json(_))));
        let mut not_object = 2_u64.to_le_bytes().to_vec();
        not_object.extend_from_slice(b"[]");
        assert!(matches!(
            parse_safetensors(&not_object),
            Err(HeaderError::Json(_))
        ));
        let backwards = safetensors_bytes(&serde_json::json!({
            "a": {"dtype": "F16", "shape": [1], "data_offsets": [8, 2]}
        }));
        assert!(matches!(
            parse_safetensors(&backwards),
            Err(HeaderError::Json(_))
        ));
    }

    #[test]
    fn gguf_metadata_arrays_and_tensors() {
        let bytes = GgufWriter::default()
            .string("general.architecture", "flux")
            .u32("general.file_type", 8)
            .string_array("tokenizer.tokens", &["a", "b", "c"])
            .f32_array("scores", &[0.5, 1.0])
            .string("general.description", &"x".repeat(1000))
            .tensor("double_blocks.0.img_attn.qkv.weight", &[9216, 3072])
            .bytes(3);
        let header = parse_gguf(&bytes[..]).expect("parses");
        assert_eq!(header.format, Format::Gguf);
        assert_eq!(header.metadata["general.architecture"], "flux");
        assert_eq!(header.metadata["general.file_type"], "8");
        assert_eq!(header.metadata.len(), 2);
        assert_eq!(header.tensors[0].shape, [9216, 3072]);
        assert!(parse_gguf(&GgufWriter::default().bytes(2)[..]).is_ok());
    }

    #[test]
    fn malformed_gguf_is_refused_without_allocating() {
        assert_eq!(
            parse_gguf(&b"GGML\x03\0\0\0"[..]),
            Err(HeaderError::UnknownFormat)
        );
        assert_eq!(
            parse_gguf(&GgufWriter::default().bytes(1)[..]),
            Err(HeaderError::GgufVersion(1))
        );
        // Bogus counts: end of file, not a giant Vec.
        let mut bytes = b"GGUF".to_vec();
        bytes.extend_from_slice(&3_u32.to_le_bytes());
        bytes.extend_from_slice(&1000_u64.to_le_bytes());
        bytes.extend_from_slice(&0_u64.to_le_bytes());
        assert!(matches!(parse_gguf(&bytes[..]), Err(HeaderError::Gguf(_))));
        let mut bytes = b"GGUF".to_vec();
        bytes.extend_from_slice(&3_u32.to_le_bytes());
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        bytes.extend_from_slice(&0_u64.to_le_bytes());
        assert!(matches!(parse_gguf(&bytes[..]), Err(HeaderError::Gguf(_))));
        // A key claiming a huge length.
        let mut bytes = b"GGUF".to_vec();
        bytes.extend_from_slice(&3_u32.to_le_bytes());
        bytes.extend_from_slice(&0_u64.to_le_bytes());
        bytes.extend_from_slice(&1_u64.to_le_bytes());
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(parse_gguf(&bytes[..]), Err(HeaderError::Gguf(_))));
        // An array claiming u64::MAX u64 items: overflow is caught.
        let mut bytes = b"GGUF".to_vec();
        bytes.extend_from_slice(&3_u32.to_le_bytes());
        bytes.extend_from_slice(&0_u64.to_le_bytes());
        bytes.extend_from_slice(&1_u64.to_le_bytes());
        gguf_str(&mut bytes, "k");
        bytes.extend_from_slice(&9_u32.to_le_bytes());
        bytes.extend_from_slice(&10_u32.to_le_bytes());
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(parse_gguf(&bytes[..]), Err(HeaderError::Gguf(_))));
        // Unknown value type.
        let mut bytes = b"GGUF".to_vec();
        bytes.extend_from_slice(&3_u32.to_le_bytes());
        bytes.extend_from_slice(&0_u64.to_le_bytes());
        bytes.extend_from_slice(&1_u64.to_le_bytes());
        gguf_str(&mut bytes, "k");
        bytes.extend_from_slice(&99_u32.to_le_bytes());
        assert!(matches!(parse_gguf(&bytes[..]), Err(HeaderError::Gguf(_))));
    }

    #[test]
    fn files_are_read_by_their_magic_and_only_the_header() {
        let dir = tempfile::tempdir().expect("tempdir");
        let st = dir.path().join("a.safetensors");
        std::fs::write(
            &st,
            safetensors_bytes(
                &serde_json::json!({"x": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]}}),
            ),
        )
        .expect("write");
        // The tensor data is a sparse hole: never read.
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&st)
            .expect("open");
        file.set_len(1 << 30).expect("set_len");
        assert_eq!(read_header(&st).expect("reads").tensors[0].name, "x");
        let gguf = dir.path().join("a.gguf");
        std::fs::write(&gguf, GgufWriter::default().tensor("t", &[4]).bytes(3)).expect("write");
        assert_eq!(read_header(&gguf).expect("reads").format, Format::Gguf);
        let pickle = dir.path().join("a.ckpt");
        std::fs::write(&pickle, b"PK\x03\x04rest of a zip").expect("write");
        assert_eq!(read_header(&pickle), Err(HeaderError::Pickle));
        let tiny = dir.path().join("tiny.safetensors");
        std::fs::write(&tiny, b"abc").expect("write");
        assert_eq!(read_header(&tiny), Err(HeaderError::TooShort));
        let cut = dir.path().join("cut.safetensors");
        std::fs::write(
            &cut,
            &safetensors_bytes(
                &serde_json::json!({"x": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]}}),
            )[..20],
        )
        .expect("write");
        assert!(matches!(
            read_header(&cut),
            Err(HeaderError::Truncated { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = parse_safetensors(&bytes);
            let mut gguf = b"GGUF\x03\0\0\0".to_vec();
            gguf.extend_from_slice(&bytes);
            let _ = parse_gguf(&gguf[..]);
            let _ = parse_gguf(&bytes[..]);
        }
    }
}
