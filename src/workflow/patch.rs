//! JSON Patch (RFC 6902) and JSON Pointer (RFC 6901) over `serde_json::Value`.
//!
//! Written for the workflow editor: a patch applies all or nothing, a failure names the
//! operation, its path and what to do about it, and every successful application hands back
//! its own inverse ([`Undo`]) so undo costs what the patch touched, not a copy of the whole
//! workflow. Pointers are unescaped properly (`~1` is `/`, `~0` is `~`), which the original
//! project's naive `/` split did not do.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// The six RFC 6902 operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    Add,
    Remove,
    Replace,
    Move,
    Copy,
    Test,
}

impl OpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::Remove => "remove",
            Self::Replace => "replace",
            Self::Move => "move",
            Self::Copy => "copy",
            Self::Test => "test",
        }
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One patch operation: `{op, path, value?, from?}`. Unknown keys are ignored, as RFC 6902
/// asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PatchOp {
    /// add, remove, replace, move, copy or test.
    pub op: OpKind,
    /// JSON Pointer to the target, e.g. `/3/inputs/seed`. Write `~1` for a `/` and `~0` for a
    /// `~` inside a key; `-` (with add) means after the last item of a list.
    pub path: String,
    /// The new value (add, replace) or the expected one (test). `null` is a value.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub value: Option<Value>,
    /// Where move and copy take their value from, as a JSON Pointer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// Tells `"value": null` (a null value) apart from no `value` key at all.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

impl PatchOp {
    pub fn add(path: impl Into<String>, value: Value) -> Self {
        Self::with(OpKind::Add, path, Some(value), None)
    }

    pub fn remove(path: impl Into<String>) -> Self {
        Self::with(OpKind::Remove, path, None, None)
    }

    pub fn replace(path: impl Into<String>, value: Value) -> Self {
        Self::with(OpKind::Replace, path, Some(value), None)
    }

    pub fn move_to(from: impl Into<String>, path: impl Into<String>) -> Self {
        Self::with(OpKind::Move, path, None, Some(from.into()))
    }

    pub fn copy_to(from: impl Into<String>, path: impl Into<String>) -> Self {
        Self::with(OpKind::Copy, path, None, Some(from.into()))
    }

    pub fn test(path: impl Into<String>, value: Value) -> Self {
        Self::with(OpKind::Test, path, Some(value), None)
    }

    fn with(
        op: OpKind,
        path: impl Into<String>,
        value: Option<Value>,
        from: Option<String>,
    ) -> Self {
        Self {
            op,
            path: path.into(),
            value,
            from,
        }
    }
}

/// What one operation did: the value at `path` before and after it (`None` where nothing
/// was there).
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Change {
    pub path: String,
    pub op: OpKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Why a patch failed: which operation (0-based, as in the `patches` list), where, and why.
/// Nothing was changed.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchError {
    pub index: usize,
    pub op: OpKind,
    pub path: String,
    pub problem: Problem,
}

impl fmt::Display for PatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "patches[{}] ({} \"{}\") failed: {} The patch was not applied; nothing changed.",
            self.index, self.op, self.path, self.problem
        )
    }
}

impl std::error::Error for PatchError {}

/// What was wrong with one operation. Each message ends with what to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    MissingValue,
    MissingFrom,
    BadPointer {
        pointer: String,
        why: &'static str,
    },
    NoSuchKey {
        parent: String,
        key: String,
        available: Vec<String>,
    },
    IndexOutOfRange {
        parent: String,
        index: usize,
        len: usize,
    },
    NotAnIndex {
        parent: String,
        token: String,
        len: usize,
    },
    /// `-` used where an existing item is needed.
    AppendNotAllowed {
        parent: String,
        len: usize,
    },
    NotAContainer {
        at: String,
        kind: &'static str,
        token: String,
    },
    RemoveRoot,
    MoveIntoItself {
        from: String,
    },
    TestFailed {
        expected: Value,
        actual: Value,
    },
}

fn place(pointer: &str) -> String {
    if pointer.is_empty() {
        "the workflow".to_string()
    } else {
        pointer.to_string()
    }
}

/// A value shortened for a message.
fn brief(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= 80 {
        text
    } else {
        let cut: String = text.chars().take(77).collect();
        format!("{cut}...")
    }
}

fn valid_indexes(len: usize) -> String {
    match len {
        0 => "The list is empty; add to it with \"-\" as the last token.".to_string(),
        1 => "The only index is 0.".to_string(),
        n => format!("Use an index from 0 to {}.", n - 1),
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingValue => f.write_str(
                "this operation needs a \"value\". Add one, e.g. {\"op\": \"replace\", \"path\": \"/3/inputs/seed\", \"value\": 42}.",
            ),
            Self::MissingFrom => f.write_str(
                "this operation needs \"from\", the pointer of the value to take, e.g. {\"op\": \"copy\", \"from\": \"/3\", \"path\": \"/9\"}.",
            ),
            Self::BadPointer { pointer, why } => {
                write!(f, "\"{pointer}\" is not a JSON pointer: {why}")
            }
            Self::NoSuchKey {
                parent,
                key,
                available,
            } => {
                write!(f, "{} has no \"{key}\".", place(parent))?;
                if available.is_empty() {
                    f.write_str(" It is empty.")?;
                } else {
                    const SHOWN: usize = 12;
                    let shown: Vec<&str> =
                        available.iter().take(SHOWN).map(String::as_str).collect();
                    write!(f, " It has: {}", shown.join(", "))?;
                    if available.len() > SHOWN {
                        write!(f, " (and {} more)", available.len() - SHOWN)?;
                    }
                    f.write_str(".")?;
                }
                f.write_str(" Check the spelling, or use \"add\" to create it.")
            }
            Self::IndexOutOfRange { parent, index, len } => write!(
                f,
                "{} has {len} item(s), so there is no index {index}. {}",
                place(parent),
                valid_indexes(*len)
            ),
            Self::NotAnIndex { parent, token, len } => write!(
                f,
                "{} is a list, and \"{token}\" is not a list index (a number without leading zeros). {}",
                place(parent),
                valid_indexes(*len)
            ),
            Self::AppendNotAllowed { parent, len } => write!(
                f,
                "\"-\" in {} means \"after the last item\", which only \"add\" can use. {}",
                place(parent),
                valid_indexes(*len)
            ),
            Self::NotAContainer { at, kind, token } => write!(
                f,
                "{} is {kind}, not an object or a list, so it has no \"{token}\" inside. Point at {} itself or at one of its parents.",
                place(at),
                place(at)
            ),
            Self::RemoveRoot => f.write_str(
                "the whole workflow can't be removed. Remove nodes one at a time (e.g. \"/9\"), or load another workflow.",
            ),
            Self::MoveIntoItself { from } => write!(
                f,
                "a value can't be moved into itself (from \"{from}\" to a place inside it). Copy it instead, or move it elsewhere."
            ),
            Self::TestFailed { expected, actual } => write!(
                f,
                "the test failed: the value is {}, not {}. Read the workflow again and update the test (or drop it).",
                brief(actual),
                brief(expected)
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Pointers (RFC 6901)

/// Escapes one reference token: `~` → `~0`, `/` → `~1`.
pub fn escape(token: &str) -> String {
    if token.contains(['~', '/']) {
        token.replace('~', "~0").replace('/', "~1")
    } else {
        token.to_string()
    }
}

/// Joins tokens into a pointer, escaping each.
pub fn to_pointer<S: AsRef<str>>(tokens: &[S]) -> String {
    let mut pointer = String::new();
    for token in tokens {
        pointer.push('/');
        pointer.push_str(&escape(token.as_ref()));
    }
    pointer
}

/// Splits a pointer into unescaped tokens; `""` is the whole document.
pub fn parse_pointer(pointer: &str) -> Result<Vec<String>, Problem> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(Problem::BadPointer {
            pointer: pointer.to_string(),
            why: "it must be empty (the whole workflow) or start with \"/\", like /3/inputs/seed.",
        });
    };
    rest.split('/')
        .map(|raw| {
            unescape(raw).ok_or_else(|| Problem::BadPointer {
            pointer: pointer.to_string(),
            why: "\"~\" must be followed by 0 or 1 (write ~0 for a ~ and ~1 for a / inside a key).",
        })
        })
        .collect()
}

fn unescape(raw: &str) -> Option<String> {
    if !raw.contains('~') {
        return Some(raw.to_string());
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// An array index as RFC 6901 writes it: `0` or digits without a leading zero.
fn parse_index(token: &str) -> Option<usize> {
    let canonical = token == "0"
        || (!token.is_empty()
            && !token.starts_with('0')
            && token.bytes().all(|b| b.is_ascii_digit()));
    if canonical { token.parse().ok() } else { None }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Finds the child `token` of `value`, or says why there is none. `parent` is the pointer
/// of `value`, for the message.
fn child_index(value: &Value, token: &str, parent: &[String]) -> Result<Option<usize>, Problem> {
    match value {
        Value::Object(map) => {
            if map.contains_key(token) {
                Ok(None)
            } else {
                Err(Problem::NoSuchKey {
                    parent: to_pointer(parent),
                    key: token.to_string(),
                    available: map.keys().cloned().collect(),
                })
            }
        }
        Value::Array(items) => array_index(items.len(), token, parent, false).map(Some),
        other => Err(Problem::NotAContainer {
            at: to_pointer(parent),
            kind: kind_of(other),
            token: token.to_string(),
        }),
    }
}

/// An index into a list of `len` items; `-` (and `len` itself) only when `for_insert`.
fn array_index(
    len: usize,
    token: &str,
    parent: &[String],
    for_insert: bool,
) -> Result<usize, Problem> {
    if token == "-" {
        return if for_insert {
            Ok(len)
        } else {
            Err(Problem::AppendNotAllowed {
                parent: to_pointer(parent),
                len,
            })
        };
    }
    let index = parse_index(token).ok_or_else(|| Problem::NotAnIndex {
        parent: to_pointer(parent),
        token: token.to_string(),
        len,
    })?;
    let limit = if for_insert { len + 1 } else { len };
    if index < limit {
        Ok(index)
    } else {
        Err(Problem::IndexOutOfRange {
            parent: to_pointer(parent),
            index,
            len,
        })
    }
}

fn resolve<'a>(doc: &'a Value, tokens: &[String]) -> Result<&'a Value, Problem> {
    let mut node = doc;
    for (depth, token) in tokens.iter().enumerate() {
        node = match child_index(node, token, &tokens[..depth])? {
            Some(index) => &node[index],
            None => &node[token.as_str()],
        };
    }
    Ok(node)
}

/// Walks to an existing value; call [`resolve`] first for a reason when it is missing.
fn walk_mut<'a>(doc: &'a mut Value, tokens: &[String]) -> Option<&'a mut Value> {
    let mut node = doc;
    for token in tokens {
        node = match node {
            Value::Object(map) => map.get_mut(token.as_str())?,
            Value::Array(items) => items.get_mut(token.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(node)
}

/// The value at `pointer`, if there is one.
pub fn get<'a>(doc: &'a Value, pointer: &str) -> Option<&'a Value> {
    resolve(doc, &parse_pointer(pointer).ok()?).ok()
}

// ---------------------------------------------------------------------------------------
// Applying

/// One primitive step of an inverse. Paths hold resolved indexes (never `-`).
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// Put `value` at an existing place (or a new object key).
    Put(Vec<String>, Value),
    /// Insert into a list at the index (or set an object key).
    Insert(Vec<String>, Value),
    /// Take away the key or list item.
    Delete(Vec<String>),
}

/// The inverse of an applied patch: reverting it restores the document exactly. It holds
/// only the values the patch displaced, so history stays small on large workflows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Undo(Vec<Step>);

impl Undo {
    /// Puts `doc` back as it was before the patch. `doc` must be the patch's result.
    pub fn revert(self, doc: &mut Value) {
        for step in self.0.into_iter().rev() {
            let ok = revert_step(doc, step);
            debug_assert!(ok, "an inverse step did not fit the document");
        }
    }

    /// How many primitive steps it holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn revert_step(doc: &mut Value, step: Step) -> bool {
    let (tokens, value, insert) = match step {
        Step::Put(tokens, value) => (tokens, Some(value), false),
        Step::Insert(tokens, value) => (tokens, Some(value), true),
        Step::Delete(tokens) => (tokens, None, false),
    };
    let Some((last, parent)) = tokens.split_last() else {
        if let Some(value) = value {
            *doc = value;
            return true;
        }
        return false;
    };
    match (walk_mut(doc, parent), value) {
        (Some(Value::Object(map)), Some(value)) => {
            map.insert(last.clone(), value);
            true
        }
        (Some(Value::Object(map)), None) => map.remove(last.as_str()).is_some(),
        (Some(Value::Array(items)), value) => {
            let Ok(index) = last.parse::<usize>() else {
                return false;
            };
            match value {
                Some(value) if insert && index <= items.len() => items.insert(index, value),
                Some(value) if index < items.len() => items[index] = value,
                None if index < items.len() => {
                    items.remove(index);
                }
                _ => return false,
            }
            true
        }
        _ => false,
    }
}

/// The result of [`apply_in_place`]: one change record per operation and the inverse.
#[derive(Debug, Clone, PartialEq)]
pub struct Patched {
    pub changes: Vec<Change>,
    pub undo: Undo,
}

/// Applies `ops` to a copy of `doc`, all or nothing.
pub fn apply(doc: &Value, ops: &[PatchOp]) -> Result<Value, PatchError> {
    let mut out = doc.clone();
    apply_in_place(&mut out, ops)?;
    Ok(out)
}

/// What each operation of `ops` would do to `doc`, without changing it.
pub fn describe(doc: &Value, ops: &[PatchOp]) -> Result<Vec<Change>, PatchError> {
    let mut copy = doc.clone();
    apply_in_place(&mut copy, ops).map(|patched| patched.changes)
}

/// Applies `ops` to `doc` in order. On success `doc` holds the result and the returned
/// [`Undo`] restores it; on failure `doc` is left exactly as it was.
pub fn apply_in_place(doc: &mut Value, ops: &[PatchOp]) -> Result<Patched, PatchError> {
    let mut steps = Vec::with_capacity(ops.len());
    let mut changes = Vec::with_capacity(ops.len());
    for (index, op) in ops.iter().enumerate() {
        match apply_one(doc, op, &mut steps) {
            Ok(change) => changes.push(change),
            Err(problem) => {
                Undo(steps).revert(doc);
                return Err(PatchError {
                    index,
                    op: op.op,
                    path: op.path.clone(),
                    problem,
                });
            }
        }
    }
    Ok(Patched {
        changes,
        undo: Undo(steps),
    })
}

fn apply_one(doc: &mut Value, op: &PatchOp, steps: &mut Vec<Step>) -> Result<Change, Problem> {
    let path = parse_pointer(&op.path)?;
    let change = |before: Option<Value>, after: Option<Value>| Change {
        path: op.path.clone(),
        op: op.op,
        from: op.from.clone(),
        before,
        after,
    };
    match op.op {
        OpKind::Add => {
            let value = op.value.as_ref().ok_or(Problem::MissingValue)?;
            let (before, step) = add_at(doc, &path, value.clone())?;
            steps.push(step);
            Ok(change(before, Some(value.clone())))
        }
        OpKind::Remove => {
            let (removed, step) = remove_at(doc, &path)?;
            steps.push(step);
            Ok(change(Some(removed), None))
        }
        OpKind::Replace => {
            let value = op.value.as_ref().ok_or(Problem::MissingValue)?;
            resolve(doc, &path)?;
            let target = walk_mut(doc, &path).ok_or(Problem::RemoveRoot)?;
            let before = std::mem::replace(target, value.clone());
            steps.push(Step::Put(path, before.clone()));
            Ok(change(Some(before), Some(value.clone())))
        }
        OpKind::Move => {
            let from = parse_pointer(op.from.as_deref().ok_or(Problem::MissingFrom)?)?;
            if from == path {
                let value = resolve(doc, &from)?.clone();
                return Ok(change(Some(value.clone()), Some(value)));
            }
            if path.len() > from.len() && path.starts_with(&from) {
                resolve(doc, &from)?;
                return Err(Problem::MoveIntoItself {
                    from: op.from.clone().unwrap_or_default(),
                });
            }
            let (value, step) = remove_at(doc, &from)?;
            steps.push(step);
            let (before, step) = add_at(doc, &path, value.clone())?;
            steps.push(step);
            Ok(change(before, Some(value)))
        }
        OpKind::Copy => {
            let from = parse_pointer(op.from.as_deref().ok_or(Problem::MissingFrom)?)?;
            let value = resolve(doc, &from)?.clone();
            let (before, step) = add_at(doc, &path, value.clone())?;
            steps.push(step);
            Ok(change(before, Some(value)))
        }
        OpKind::Test => {
            let expected = op.value.as_ref().ok_or(Problem::MissingValue)?;
            let actual = resolve(doc, &path)?;
            if json_equal(actual, expected) {
                Ok(change(Some(actual.clone()), Some(actual.clone())))
            } else {
                Err(Problem::TestFailed {
                    expected: expected.clone(),
                    actual: actual.clone(),
                })
            }
        }
    }
}

/// Adds (or, for an existing object key, replaces) the value; returns what it displaced.
fn add_at(
    doc: &mut Value,
    path: &[String],
    value: Value,
) -> Result<(Option<Value>, Step), Problem> {
    let Some((last, parent)) = path.split_last() else {
        let before = std::mem::replace(doc, value);
        return Ok((Some(before.clone()), Step::Put(Vec::new(), before)));
    };
    resolve(doc, parent)?;
    match walk_mut(doc, parent) {
        Some(Value::Object(map)) => match map.insert(last.clone(), value) {
            Some(before) => Ok((Some(before.clone()), Step::Put(path.to_vec(), before))),
            None => Ok((None, Step::Delete(path.to_vec()))),
        },
        Some(Value::Array(items)) => {
            let index = array_index(items.len(), last, parent, true)?;
            items.insert(index, value);
            let mut at = parent.to_vec();
            at.push(index.to_string());
            Ok((None, Step::Delete(at)))
        }
        Some(other) => Err(Problem::NotAContainer {
            at: to_pointer(parent),
            kind: kind_of(other),
            token: last.clone(),
        }),
        None => Err(Problem::RemoveRoot),
    }
}

fn remove_at(doc: &mut Value, path: &[String]) -> Result<(Value, Step), Problem> {
    let Some((last, parent)) = path.split_last() else {
        return Err(Problem::RemoveRoot);
    };
    resolve(doc, path)?;
    let removed = match walk_mut(doc, parent) {
        Some(Value::Object(map)) => map.remove(last.as_str()),
        Some(Value::Array(items)) => last
            .parse::<usize>()
            .ok()
            .filter(|&index| index < items.len())
            .map(|index| items.remove(index)),
        _ => None,
    };
    let removed = removed.ok_or(Problem::RemoveRoot)?;
    Ok((removed.clone(), Step::Insert(path.to_vec(), removed)))
}

/// Equality as RFC 6902's `test` defines it: numbers compare by value (`1` equals `1.0`).
pub fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (as_i128(x), as_i128(y)) {
                x == y
            } else {
                x.as_f64() == y.as_f64()
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, a)| y.get(key).is_some_and(|b| json_equal(a, b)))
        }
        _ => a == b,
    }
}

fn as_i128(n: &serde_json::Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

// ---------------------------------------------------------------------------------------
// Diffing

/// The operations that turn `base` into `current`: an added or removed key is one op (an
/// added node is one `add` of the whole node), a changed scalar one `replace`, a list of
/// plain values (a link, a size) one `replace` of the whole list, and lists holding objects
/// are compared item by item around their common start and end. Deterministic: the same
/// inputs always give the same ops in the same order.
pub fn diff(base: &Value, current: &Value) -> Vec<PatchOp> {
    let mut ops = Vec::new();
    let mut path = String::new();
    diff_into(base, current, &mut path, &mut ops);
    ops
}

fn diff_into(a: &Value, b: &Value, path: &mut String, ops: &mut Vec<PatchOp>) {
    // A whole-value comparison stops at the first difference, so it is cheap either way.
    if a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            // Both maps iterate in key order: walk them side by side, with no lookups. Removals
            // come before additions, as the ops must apply in order.
            let len = path.len();
            let mut added = Vec::new();
            let mut left = x.iter().peekable();
            let mut right = y.iter().peekable();
            loop {
                match (left.peek(), right.peek()) {
                    (Some((ka, va)), Some((kb, vb))) => match ka.cmp(kb) {
                        std::cmp::Ordering::Equal => {
                            // Most of a workflow is unchanged: no path is built for those.
                            if va != vb {
                                push_token(path, ka);
                                diff_into(va, vb, path, ops);
                                path.truncate(len);
                            }
                            left.next();
                            right.next();
                        }
                        std::cmp::Ordering::Less => {
                            push_token(path, ka);
                            ops.push(PatchOp::remove(path.clone()));
                            path.truncate(len);
                            left.next();
                        }
                        std::cmp::Ordering::Greater => {
                            added.push((*kb, *vb));
                            right.next();
                        }
                    },
                    (Some((ka, _)), None) => {
                        push_token(path, ka);
                        ops.push(PatchOp::remove(path.clone()));
                        path.truncate(len);
                        left.next();
                    }
                    (None, Some((kb, vb))) => {
                        added.push((*kb, *vb));
                        right.next();
                    }
                    (None, None) => break,
                }
            }
            for (key, value) in added {
                push_token(path, key);
                ops.push(PatchOp::add(path.clone(), value.clone()));
                path.truncate(len);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.iter().chain(y).any(is_container) => {
            diff_arrays(x, y, path, ops);
        }
        _ => ops.push(PatchOp::replace(path.clone(), b.clone())),
    }
}

fn is_container(value: &Value) -> bool {
    matches!(value, Value::Array(_) | Value::Object(_))
}

fn push_token(path: &mut String, token: &str) {
    path.push('/');
    for c in token.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
}

fn diff_arrays(x: &[Value], y: &[Value], path: &mut String, ops: &mut Vec<PatchOp>) {
    let shortest = x.len().min(y.len());
    let prefix = x.iter().zip(y).take_while(|(a, b)| a == b).count();
    let suffix = x[prefix..]
        .iter()
        .rev()
        .zip(y[prefix..].iter().rev())
        .take(shortest - prefix)
        .take_while(|(a, b)| a == b)
        .count();
    let mid_x = &x[prefix..x.len() - suffix];
    let mid_y = &y[prefix..y.len() - suffix];
    let len = path.len();
    let paired = mid_x.len().min(mid_y.len());
    for (offset, (a, b)) in mid_x.iter().zip(mid_y).enumerate() {
        path.push('/');
        path.push_str(&(prefix + offset).to_string());
        diff_into(a, b, path, ops);
        path.truncate(len);
    }
    for (offset, b) in mid_y.iter().enumerate().skip(paired) {
        path.push('/');
        path.push_str(&(prefix + offset).to_string());
        ops.push(PatchOp::add(path.clone(), b.clone()));
        path.truncate(len);
    }
    // Highest first, so each index still points at the item meant.
    for offset in (paired..mid_x.len()).rev() {
        path.push('/');
        path.push_str(&(prefix + offset).to_string());
        ops.push(PatchOp::remove(path.clone()));
        path.truncate(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ops(value: Value) -> Vec<PatchOp> {
        serde_json::from_value(value).expect("patch ops")
    }

    fn applied(doc: Value, patch: Value) -> Value {
        apply(&doc, &ops(patch)).expect("applies")
    }

    fn failure(doc: Value, patch: Value) -> PatchError {
        let before = doc.clone();
        let mut doc = doc;
        let error = apply_in_place(&mut doc, &ops(patch)).expect_err("fails");
        assert_eq!(doc, before, "a failed patch leaves the document as it was");
        error
    }

    #[test]
    fn add_to_objects_and_lists() {
        assert_eq!(
            applied(
                json!({"k": 1}),
                json!([{"op": "add", "path": "/n", "value": [1]}])
            ),
            json!({"k": 1, "n": [1]})
        );
        assert_eq!(
            applied(
                json!({"xs": ["a", "c"]}),
                json!([{"op": "add", "path": "/xs/1", "value": "b"}])
            ),
            json!({"xs": ["a", "b", "c"]})
        );
        // `-` appends; index == len appends too; an existing key is replaced.
        assert_eq!(
            applied(
                json!({"xs": [1], "k": 0}),
                json!([{"op": "add", "path": "/xs/-", "value": 2},
                       {"op": "add", "path": "/xs/2", "value": 3},
                       {"op": "add", "path": "/k", "value": {"deep": true}}])
            ),
            json!({"xs": [1, 2, 3], "k": {"deep": true}})
        );
        // The whole document.
        assert_eq!(
            applied(
                json!({"a": 1}),
                json!([{"op": "add", "path": "", "value": [true]}])
            ),
            json!([true])
        );
        // A null value is a value.
        assert_eq!(
            applied(
                json!({}),
                json!([{"op": "add", "path": "/z", "value": null}])
            ),
            json!({"z": null})
        );
    }

    #[test]
    fn remove_replace_move_copy_test() {
        let doc = json!({"3": {"class_type": "KSampler", "inputs": {"seed": 5, "steps": 20}},
                         "list": [10, 20, 30]});
        let out = applied(
            doc,
            json!([
                {"op": "remove", "path": "/3/inputs/steps"},
                {"op": "remove", "path": "/list/0"},
                {"op": "replace", "path": "/3/inputs/seed", "value": 7},
                {"op": "copy", "from": "/3", "path": "/4"},
                {"op": "move", "from": "/list/1", "path": "/list/0"},
                {"op": "move", "from": "/4/inputs", "path": "/moved"},
                {"op": "test", "path": "/3/inputs/seed", "value": 7.0},
                {"op": "move", "from": "/moved", "path": "/moved"}
            ]),
        );
        assert_eq!(
            out,
            json!({"3": {"class_type": "KSampler", "inputs": {"seed": 7}},
                   "4": {"class_type": "KSampler"},
                   "moved": {"seed": 7},
                   "list": [30, 20]})
        );
    }

    #[test]
    fn pointers_unescape_tilde_and_slash() {
        let doc = json!({"a/b": 1, "m~n": 2, "~1": 3, "": {"": 4}});
        assert_eq!(get(&doc, "/a~1b"), Some(&json!(1)));
        assert_eq!(get(&doc, "/m~0n"), Some(&json!(2)));
        assert_eq!(get(&doc, "/~01"), Some(&json!(3)));
        assert_eq!(get(&doc, "//"), Some(&json!(4)));
        assert_eq!(get(&doc, ""), Some(&doc));
        assert_eq!(get(&doc, "/a/b"), None, "an unescaped slash is two tokens");
        let out = applied(
            doc,
            json!([{"op": "replace", "path": "/a~1b", "value": 10},
                   {"op": "add", "path": "/x~1y~0z", "value": 5}]),
        );
        assert_eq!(out["a/b"], json!(10));
        assert_eq!(out["x/y~z"], json!(5));
        assert_eq!(to_pointer(&["x/y~z", "0"]), "/x~1y~0z/0");
        assert_eq!(parse_pointer("/x~1y~0z/0").expect("parses"), ["x/y~z", "0"]);
        for bad in ["a/b", "/a~2", "/a~", "3/inputs"] {
            assert!(
                matches!(parse_pointer(bad), Err(Problem::BadPointer { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_failing_op_rolls_back_everything_before_it() {
        let doc = json!({"1": {"inputs": {"seed": 1}}, "xs": [1, 2]});
        let error = failure(
            doc,
            json!([
                {"op": "replace", "path": "/1/inputs/seed", "value": 99},
                {"op": "add", "path": "/xs/0", "value": 0},
                {"op": "remove", "path": "/xs/2"},
                {"op": "move", "from": "/1", "path": "/2"},
                {"op": "add", "path": "", "value": 3},
                {"op": "test", "path": "/2/inputs/seed", "value": 1}
            ]),
        );
        assert_eq!(error.index, 5);
        assert!(
            matches!(
                error.problem,
                Problem::NotAContainer {
                    kind: "a number",
                    ..
                }
            ),
            "{error}"
        );
        let error = failure(
            json!({"1": {"inputs": {"seed": 1}}}),
            json!([
                {"op": "replace", "path": "/1/inputs/seed", "value": 2},
                {"op": "test", "path": "/1/inputs/seed", "value": 3}
            ]),
        );
        assert_eq!(error.index, 1);
        assert_eq!(
            error.to_string(),
            "patches[1] (test \"/1/inputs/seed\") failed: the test failed: the value is 2, not 3. \
             Read the workflow again and update the test (or drop it). The patch was not applied; nothing changed."
        );
    }

    #[test]
    fn errors_name_the_op_the_place_and_the_fix() {
        let doc = json!({"3": {"class_type": "KSampler", "inputs": {"seed": 1, "cfg": 7, "steps": 20}},
                         "xs": [1, 2]});
        let message = |patch: Value| failure(doc.clone(), patch).to_string();
        let text = message(json!([{"op": "test", "path": "/3", "value": doc["3"]},
                                  {"op": "replace", "path": "/3/inputs/sed", "value": 2}]));
        assert!(text.starts_with("patches[1] (replace \"/3/inputs/sed\") failed: /3/inputs has no \"sed\". It has: cfg, seed, steps."), "{text}");
        assert!(text.contains("Check the spelling"), "{text}");
        let text = message(json!([{"op": "remove", "path": "/9"}]));
        assert!(
            text.contains("the workflow has no \"9\". It has: 3, xs."),
            "{text}"
        );
        let text = message(json!([{"op": "replace", "path": "/xs/2", "value": 0}]));
        assert!(
            text.contains("/xs has 2 item(s), so there is no index 2. Use an index from 0 to 1."),
            "{text}"
        );
        let text = message(json!([{"op": "remove", "path": "/xs/-"}]));
        assert!(text.contains("only \"add\" can use"), "{text}");
        let text = message(json!([{"op": "add", "path": "/xs/01", "value": 0}]));
        assert!(text.contains("\"01\" is not a list index"), "{text}");
        let text = message(json!([{"op": "add", "path": "/3/inputs/seed/x", "value": 0}]));
        assert!(
            text.contains("/3/inputs/seed is a number, not an object or a list"),
            "{text}"
        );
        let text = message(json!([{"op": "replace", "path": "/3/inputs/seed"}]));
        assert!(text.contains("needs a \"value\""), "{text}");
        let text = message(json!([{"op": "copy", "path": "/4"}]));
        assert!(text.contains("needs \"from\""), "{text}");
        let text = message(json!([{"op": "move", "from": "/3", "path": "/3/inputs/again"}]));
        assert!(text.contains("can't be moved into itself"), "{text}");
        let text = message(json!([{"op": "remove", "path": ""}]));
        assert!(text.contains("whole workflow can't be removed"), "{text}");
        let text = message(json!([{"op": "add", "path": "3/inputs/seed", "value": 1}]));
        assert!(
            text.contains("must be empty (the whole workflow) or start with \"/\""),
            "{text}"
        );
        let text = message(json!([{"op": "add", "path": "/a/b", "value": 1}]));
        assert!(text.contains("the workflow has no \"a\""), "{text}");
        assert!(
            text.ends_with("The patch was not applied; nothing changed."),
            "{text}"
        );
    }

    #[test]
    fn serde_shape_and_schema() {
        let parsed: PatchOp = serde_json::from_value(
            json!({"op": "replace", "path": "/1", "value": null, "comment": "ignored"}),
        )
        .expect("parses");
        assert_eq!(parsed, PatchOp::replace("/1", Value::Null));
        let parsed: PatchOp =
            serde_json::from_value(json!({"op": "remove", "path": "/1"})).expect("parses");
        assert_eq!(parsed.value, None);
        assert_eq!(
            serde_json::to_value(PatchOp::move_to("/a", "/b")).expect("serializes"),
            json!({"op": "move", "path": "/b", "from": "/a"})
        );
        assert!(serde_json::from_value::<PatchOp>(json!({"op": "merge", "path": ""})).is_err());
        let schema = serde_json::to_value(schemars::schema_for!(PatchOp)).expect("schema");
        assert_eq!(schema["required"], json!(["op", "path"]));
        assert_eq!(
            schema["$defs"]["OpKind"]["enum"],
            json!(["add", "remove", "replace", "move", "copy", "test"])
        );
    }

    #[test]
    fn changes_record_before_and_after() {
        let doc = json!({"1": {"inputs": {"seed": 1}}});
        let changes = describe(
            &doc,
            &ops(json!([
                {"op": "replace", "path": "/1/inputs/seed", "value": 2},
                {"op": "add", "path": "/1/inputs/steps", "value": 30},
                {"op": "remove", "path": "/1/inputs/seed"}
            ])),
        )
        .expect("describes");
        let pairs: Vec<(Option<Value>, Option<Value>)> =
            changes.into_iter().map(|c| (c.before, c.after)).collect();
        assert_eq!(
            pairs,
            [
                (Some(json!(1)), Some(json!(2))),
                (None, Some(json!(30))),
                (Some(json!(2)), None)
            ]
        );
        assert_eq!(
            serde_json::to_value(Change {
                path: "/1".into(),
                op: OpKind::Remove,
                from: None,
                before: Some(json!(1)),
                after: None
            })
            .expect("serializes"),
            json!({"path": "/1", "op": "remove", "before": 1, "after": null})
        );
    }

    #[test]
    fn undo_restores_exactly() {
        let doc = json!({"1": {"inputs": {"seed": 1, "xs": [1, 2, 3]}}, "2": {"a/b": null}});
        let mut current = doc.clone();
        let patched = apply_in_place(
            &mut current,
            &ops(json!([
                {"op": "move", "from": "/1/inputs/xs/0", "path": "/1/inputs/xs/-"},
                {"op": "copy", "from": "/1", "path": "/2/a~1b"},
                {"op": "remove", "path": "/1/inputs/seed"},
                {"op": "add", "path": "/1/inputs/xs/1", "value": {"k": 1}},
                {"op": "replace", "path": "", "value": {"whole": [doc]}},
                {"op": "add", "path": "/whole/0/3", "value": 3}
            ])),
        )
        .expect("applies");
        assert_ne!(current, doc);
        patched.undo.revert(&mut current);
        assert_eq!(current, doc);
    }

    #[test]
    fn diff_is_minimal_for_workflow_edits() {
        let base = json!({
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a.safetensors"}},
            "5": {"class_type": "KSampler", "inputs": {"model": ["4", 0], "seed": 1, "steps": 20}}
        });
        let mut current = base.clone();
        current["5"]["inputs"]["model"] = json!(["9", 0]);
        current["5"]["inputs"]["seed"] = json!(2);
        current["5"]["inputs"]
            .as_object_mut()
            .expect("inputs")
            .remove("steps");
        current["9"] = json!({"class_type": "LoraLoader", "inputs": {"model": ["4", 0]}});
        let ops = diff(&base, &current);
        assert_eq!(
            ops,
            [
                PatchOp::replace("/5/inputs/model", json!(["9", 0])),
                PatchOp::replace("/5/inputs/seed", json!(2)),
                PatchOp::remove("/5/inputs/steps"),
                PatchOp::add("/9", current["9"].clone()),
            ]
        );
        assert_eq!(apply(&base, &ops).expect("applies"), current);
        assert!(diff(&base, &base).is_empty());
        assert_eq!(
            diff(&json!({"a/b~": 1}), &json!({"a/b~": 2})),
            [PatchOp::replace("/a~1b~0", json!(2))]
        );
        assert_eq!(
            diff(&json!({"a": 1}), &json!([1])),
            [PatchOp::replace("", json!([1]))]
        );
    }

    #[test]
    fn diff_compares_lists_of_objects_around_their_common_ends() {
        let node = |id: u64| json!({"id": id, "widgets_values": [id]});
        let base = json!({"nodes": [node(1), node(2), node(3), node(4)]});
        // One node edited in place: one deep replace.
        let mut edited = base.clone();
        edited["nodes"][2]["widgets_values"] = json!([30]);
        assert_eq!(
            diff(&base, &edited),
            [PatchOp::replace("/nodes/2/widgets_values", json!([30]))]
        );
        // One inserted, one removed elsewhere.
        let inserted = json!({"nodes": [node(1), node(9), node(2), node(3), node(4)]});
        let ops = diff(&base, &inserted);
        assert_eq!(apply(&base, &ops).expect("applies"), inserted);
        let removed = json!({"nodes": [node(1), node(3), node(4)]});
        let ops = diff(&base, &removed);
        assert_eq!(ops, [PatchOp::remove("/nodes/1")]);
        let shorter = json!({"nodes": [node(4)]});
        let ops = diff(&base, &shorter);
        assert_eq!(
            ops,
            [
                PatchOp::remove("/nodes/2"),
                PatchOp::remove("/nodes/1"),
                PatchOp::remove("/nodes/0")
            ]
        );
        assert_eq!(apply(&base, &ops).expect("applies"), shorter);
    }
}
