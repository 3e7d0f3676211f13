//! A model file's header, read without its tensor data: safetensors (a length-prefixed JSON
//! table of tensors plus optional `__metadata__`) and GGUF (typed key/value metadata, then
//! tensor infos). Both parsers bound what they read and keep, so a hostile or truncated file
//! costs at most its header's size in memory and never panics.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{self, BufRead, Read};
use std::path::Path;

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
///
/// A small scanner rather than serde: it keeps only names, shapes and the wanted metadata,
/// borrows names without escapes, and skips everything else without building values, which
/// makes a 2,500-tensor checkpoint header several times faster to read.
pub fn parse_safetensors_json(json: &[u8]) -> Result<ModelHeader, HeaderError> {
    let mut scanner = Scanner { b: json, i: 0 };
    let mut header = ModelHeader {
        format: Format::Safetensors,
        tensors: Vec::new(),
        metadata: BTreeMap::new(),
        data_end: 0,
    };
    scanner
        .table(&mut header)
        .map_err(|problem| HeaderError::Json(format!("{problem} at byte {}", scanner.i)))?;
    Ok(header)
}

/// Deepest nesting skipped inside a header (real ones nest three deep).
const MAX_JSON_DEPTH: u32 = 64;

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Result<u8, String> {
        self.ws();
        self.b
            .get(self.i)
            .copied()
            .ok_or_else(|| "the header ends too early".to_string())
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.peek()? != c {
            return Err(format!("expected {:?}", c as char));
        }
        self.i += 1;
        Ok(())
    }

    /// After an item: `,` (more follow, true) or `close` (done, false).
    fn next_or_close(&mut self, close: u8) -> Result<bool, String> {
        match self.peek()? {
            b',' => {
                self.i += 1;
                Ok(true)
            }
            c if c == close => {
                self.i += 1;
                Ok(false)
            }
            _ => Err(format!("expected ',' or {:?}", close as char)),
        }
    }

    /// `{` and whether the object is empty.
    fn open(&mut self, open: u8, close: u8) -> Result<bool, String> {
        self.expect(open)?;
        if self.peek()? == close {
            self.i += 1;
            return Ok(false);
        }
        Ok(true)
    }

    fn string(&mut self) -> Result<Cow<'a, str>, String> {
        self.expect(b'"')?;
        let start = self.i;
        let mut escaped = false;
        loop {
            match self.b.get(self.i) {
                None => return Err("a string never ends".into()),
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    self.i += 2;
                }
                Some(_) => self.i += 1,
            }
        }
        let end = self.i;
        self.i += 1;
        if escaped {
            // Rare (names are plain ASCII in practice): let serde_json decode the escapes.
            return serde_json::from_slice::<String>(&self.b[start - 1..=end])
                .map(Cow::Owned)
                .map_err(|e| format!("a string is malformed ({e})"));
        }
        std::str::from_utf8(&self.b[start..end])
            .map(Cow::Borrowed)
            .map_err(|_| "a string is not UTF-8".to_string())
    }

    fn whole_number(&mut self) -> Result<u64, String> {
        self.ws();
        let start = self.i;
        let mut value: u64 = 0;
        while let Some(digit @ b'0'..=b'9') = self.b.get(self.i) {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(digit - b'0')))
                .ok_or("a number is too large")?;
            self.i += 1;
        }
        if self.i == start {
            return Err("expected a whole number".into());
        }
        Ok(value)
    }

    fn numbers(&mut self) -> Result<Vec<u64>, String> {
        let mut out = Vec::new();
        if self.open(b'[', b']')? {
            loop {
                out.push(self.whole_number()?);
                if !self.next_or_close(b']')? {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Skips any JSON value; returns the text it spanned.
    fn skip(&mut self, depth: u32) -> Result<&'a str, String> {
        if depth > MAX_JSON_DEPTH {
            return Err("values are nested too deeply".into());
        }
        let start = {
            self.ws();
            self.i
        };
        match self.peek()? {
            b'"' => {
                self.string()?;
            }
            b'{' => {
                if self.open(b'{', b'}')? {
                    loop {
                        self.string()?;
                        self.expect(b':')?;
                        self.skip(depth + 1)?;
                        if !self.next_or_close(b'}')? {
                            break;
                        }
                    }
                }
            }
            b'[' => {
                if self.open(b'[', b']')? {
                    loop {
                        self.skip(depth + 1)?;
                        if !self.next_or_close(b']')? {
                            break;
                        }
                    }
                }
            }
            _ => {
                while let Some(c) = self.b.get(self.i) {
                    if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.i += 1;
                }
                let literal = &self.b[start..self.i];
                let valid = matches!(literal, b"true" | b"false" | b"null")
                    || serde_json::from_slice::<serde_json::Number>(literal).is_ok();
                if !valid {
                    return Err("expected a JSON value".into());
                }
            }
        }
        std::str::from_utf8(&self.b[start..self.i]).map_err(|_| "a value is not UTF-8".into())
    }

    fn table(&mut self, header: &mut ModelHeader) -> Result<(), String> {
        if self.open(b'{', b'}')? {
            loop {
                let key = self.string()?;
                self.expect(b':')?;
                if key == "__metadata__" {
                    self.metadata(&mut header.metadata)?;
                } else {
                    let (shape, end) = self.tensor(&key)?;
                    header.data_end = header.data_end.max(end);
                    header.tensors.push(TensorInfo {
                        name: key.into_owned(),
                        shape,
                    });
                }
                if !self.next_or_close(b'}')? {
                    break;
                }
            }
        }
        self.ws();
        if self.i != self.b.len() {
            return Err("something follows the header's object".into());
        }
        Ok(())
    }

    /// One tensor entry: its shape and where its data ends; `dtype` and others are skipped.
    fn tensor(&mut self, name: &str) -> Result<(Vec<u64>, u64), String> {
        let mut shape = None;
        let mut end = 0;
        if self.open(b'{', b'}')? {
            loop {
                let field = self.string()?;
                self.expect(b':')?;
                match field.as_ref() {
                    "shape" => shape = Some(self.numbers()?),
                    "data_offsets" => {
                        let offsets = self.numbers()?;
                        match offsets[..] {
                            [first, last] if first <= last => end = last,
                            _ => return Err(format!("tensor {name:?} has bad data_offsets")),
                        }
                    }
                    _ => {
                        self.skip(1)?;
                    }
                }
                if !self.next_or_close(b'}')? {
                    break;
                }
            }
        }
        let shape = shape.ok_or_else(|| format!("tensor {name:?} has no shape"))?;
        Ok((shape, end))
    }

    /// `__metadata__`: keeps the [`KEPT_KEYS`] (strings as they are, other values as JSON
    /// text) and skips the rest.
    fn metadata(&mut self, kept: &mut BTreeMap<String, String>) -> Result<(), String> {
        if self.peek()? != b'{' {
            return Err("__metadata__ is not an object".into());
        }
        if self.open(b'{', b'}')? {
            loop {
                let key = self.string()?;
                self.expect(b':')?;
                if KEPT_KEYS.contains(&key.as_ref()) {
                    let text = if self.peek()? == b'"' {
                        self.string()?.into_owned()
                    } else {
                        self.skip(1)?.to_string()
                    };
                    kept.insert(key.into_owned(), clip(text));
                } else {
                    self.skip(1)?;
                }
                if !self.next_or_close(b'}')? {
                    break;
                }
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
pub fn parse_gguf(reader: impl BufRead) -> Result<ModelHeader, HeaderError> {
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

impl<R: BufRead> Gguf<R> {
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
    fn skip(&mut self, mut n: u64) -> Result<(), HeaderError> {
        while n > 0 {
            let available = self.reader.fill_buf()?.len();
            if available == 0 {
                return Err(HeaderError::Gguf(
                    "the file ends inside its metadata".into(),
                ));
            }
            let step = usize::try_from(n).map_or(available, |n| n.min(available));
            self.reader.consume(step);
            n -= step as u64;
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

    fn scan(json: &str) -> Result<ModelHeader, HeaderError> {
        parse_safetensors_json(json.as_bytes())
    }

    #[test]
    fn the_scanner_accepts_any_layout_and_refuses_what_json_refuses() {
        let header = scan(
            "\n { \"__metadata__\" : { \"ss_v2\" : true , \"format\":\"pt\", \"other\": {\"a\": [1, {\"b\": null}]} } ,\n\
             \"t\" : { \"data_offsets\" : [ 0 , 4 ] , \"shape\" : [ 2 ] , \"dtype\" : \"F16\" , \"extra\": -1.5e3 } }   ",
        )
        .expect("parses");
        assert_eq!(header.metadata["ss_v2"], "true");
        assert_eq!(header.metadata["format"], "pt");
        assert_eq!(header.tensors[0].shape, [2]);
        assert_eq!(header.data_end, 4);
        assert!(scan("{}").expect("empty").tensors.is_empty());
        for bad in [
            "",
            "{",
            "{\"t\": {\"shape\": [-1]}}",
            "{\"t\": {\"shape\": [1.5]}}",
            "{\"t\": {\"shape\": [99999999999999999999999]}}",
            "{\"t\": {\"dtype\": \"F16\"}}",
            "{\"t\": {\"shape\": [1], \"data_offsets\": [1]}}",
            "{\"t\": {\"shape\": [1]}} x",
            "{\"t\": {\"shape\": [1],}}",
            "{\"t\": {\"shape\": [1], \"x\": nope}}",
            "{\"__metadata__\": [], \"t\": {\"shape\": [1]}}",
            "{\"t\" {\"shape\": [1]}}",
            "{\"t\": {\"shape\": [1]}",
            "{\"\\ud800\": {\"shape\": [1]}}",
        ] {
            assert!(matches!(scan(bad), Err(HeaderError::Json(_))), "{bad:?}");
        }
        let deep = format!(
            "{{\"t\": {{\"shape\": [1], \"x\": {}{}}}}}",
            "[".repeat(200),
            "]".repeat(200)
        );
        assert!(matches!(scan(&deep), Err(HeaderError::Json(_))));
    }

    proptest::proptest! {
        /// The scanner reads exactly what serde_json writes, escapes and all.
        #[test]
        fn the_scanner_agrees_with_serde_json(
            tensors in proptest::collection::btree_map(".{0,12}", proptest::collection::vec(0_u64..100_000, 0..5), 0..8),
            pretty in proptest::prelude::any::<bool>(),
        ) {
            let mut table = serde_json::Map::new();
            for (name, shape) in &tensors {
                if name == "__metadata__" {
                    continue;
                }
                table.insert(name.clone(), serde_json::json!({"dtype": "F16", "shape": shape, "data_offsets": [0, 0]}));
            }
            let value = serde_json::Value::Object(table);
            let json = if pretty { serde_json::to_vec_pretty(&value) } else { serde_json::to_vec(&value) }.expect("json");
            let header = parse_safetensors_json(&json).expect("parses");
            let got: BTreeMap<String, Vec<u64>> = header.tensors.into_iter().map(|t| (t.name, t.shape)).collect();
            let want: BTreeMap<String, Vec<u64>> = tensors.into_iter().filter(|(n, _)| n != "__metadata__").collect();
            proptest::prop_assert_eq!(got, want);
        }

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
