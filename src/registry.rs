//! The tool registry: every tool's declaration (name, title, description, schemas,
//! annotations) and the one dispatch path. Tools are added only through [`tool`], in their
//! domain's list in `tools/`; the registry, `tools/list` and the docs follow from that list.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};

use futures::future::BoxFuture;
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool, ToolAnnotations};
use schemars::JsonSchema;
use schemars::generate::Contract;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::{ArgumentProblem, StartupError, ToolError};
use crate::mcp::ToolContext;

type Handler =
    Box<dyn Fn(ToolContext, Value) -> BoxFuture<'static, Result<Value, ToolError>> + Send + Sync>;

/// What a tool does to the world, for clients deciding whether to ask the user first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hints {
    pub read_only: bool,
    pub destructive: bool,
    pub idempotent: bool,
    /// Talks to something outside this machine's files (ComfyUI, the internet).
    pub open_world: bool,
}

impl Hints {
    /// Reads local files or computes; changes nothing.
    pub const LOCAL_READ: Self = Self {
        read_only: true,
        destructive: false,
        idempotent: true,
        open_world: false,
    };

    /// Changes the session's workflow in memory (undoable); touches no file.
    pub const EDIT: Self = Self {
        read_only: false,
        destructive: false,
        idempotent: false,
        open_world: false,
    };

    /// Writes a file, possibly replacing one.
    pub const WRITE: Self = Self {
        read_only: false,
        destructive: true,
        idempotent: true,
        open_world: false,
    };

    /// Adds to the session's memory (plan, intent, iterations) in the server's data folder.
    pub const MEMORY: Self = Self {
        read_only: false,
        destructive: false,
        idempotent: false,
        open_world: false,
    };

    /// Starts the session's plan or iteration log afresh, replacing the previous one.
    pub const MEMORY_RESET: Self = Self {
        read_only: false,
        destructive: true,
        idempotent: false,
        open_world: false,
    };

    /// Queues work on ComfyUI (it spends GPU time and writes output files).
    pub const LIVE_RUN: Self = Self {
        read_only: false,
        destructive: false,
        idempotent: false,
        open_world: true,
    };

    /// Changes ComfyUI's state (its queue, its input folder).
    pub const LIVE_CHANGE: Self = Self {
        read_only: false,
        destructive: true,
        idempotent: false,
        open_world: true,
    };

    /// Asks a model (the client's, or a configured provider) about files; changes nothing,
    /// but two answers may differ.
    pub const ASK_MODEL: Self = Self {
        read_only: true,
        destructive: false,
        idempotent: false,
        open_world: true,
    };

    /// Reads from the live ComfyUI; changes nothing.
    pub const LIVE_READ: Self = Self {
        read_only: true,
        destructive: false,
        idempotent: true,
        open_world: true,
    };
}

/// One registered tool: its declaration, its compiled argument validator and its handler.
pub struct ToolSpec {
    tool: Tool,
    /// Compiled on first use (or by [`Registry::warm_up`] in the background): the first
    /// compile initialises jsonschema's meta-schemas, which costs milliseconds of start-up.
    validator: OnceLock<Result<jsonschema::Validator, String>>,
    parameter_names: Vec<String>,
    handler: Handler,
}

impl std::fmt::Debug for ToolSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolSpec")
            .field("name", &self.tool.name)
            .finish_non_exhaustive()
    }
}

impl ToolSpec {
    pub fn name(&self) -> &str {
        &self.tool.name
    }

    pub fn tool(&self) -> &Tool {
        &self.tool
    }

    /// The compiled input validator. Our schemas come from our own types, so a failure is a
    /// bug (the registry tests compile every one); it is reported, never a panic.
    fn validator(&self) -> Result<&jsonschema::Validator, ToolError> {
        self.validator
            .get_or_init(|| {
                jsonschema::validator_for(&Value::Object((*self.tool.input_schema).clone()))
                    .map_err(|error| error.to_string())
            })
            .as_ref()
            .map_err(|error| {
                ToolError::Internal(format!(
                    "the input schema of {} does not compile: {error}",
                    self.tool.name
                ))
            })
    }

    /// Validates `arguments` against the tool's schema, then runs it. Every argument problem is
    /// reported at once; nothing runs unless the arguments fit.
    pub fn call(
        &self,
        cx: ToolContext,
        arguments: Option<JsonObject>,
    ) -> BoxFuture<'static, Result<Value, ToolError>> {
        let arguments = Value::Object(arguments.unwrap_or_default());
        let validator = match self.validator() {
            Ok(validator) => validator,
            Err(error) => return Box::pin(std::future::ready(Err(error))),
        };
        let problems: Vec<ArgumentProblem> = validator
            .iter_errors(&arguments)
            .map(|error| describe(&error, &self.parameter_names))
            .collect();
        if !problems.is_empty() {
            return Box::pin(std::future::ready(Err(ToolError::InvalidArguments(
                problems,
            ))));
        }
        (self.handler)(cx, arguments)
    }
}

/// What a tool handler returns: its structured result, and the type whose schema declares it.
/// Any serializable type is its own schema; [`Structured`] carries a result already built.
pub trait ToolOutput: Send + 'static {
    type Schema: JsonSchema;
    fn into_value(self) -> serde_json::Result<Value>;
}

impl<T: Serialize + JsonSchema + Send + 'static> ToolOutput for T {
    type Schema = T;
    fn into_value(self) -> serde_json::Result<Value> {
        serde_json::to_value(self)
    }
}

/// A result already built as JSON (to skip a copy for large answers), declared by `T`'s
/// schema. Build it from a borrowed view with the same shape as `T`; the tools' output-schema
/// tests check that the two agree.
#[derive(Debug)]
pub struct Structured<T> {
    value: Value,
    schema: std::marker::PhantomData<fn() -> T>,
}

impl<T> Structured<T> {
    pub fn new(value: Value) -> Self {
        Self {
            value,
            schema: std::marker::PhantomData,
        }
    }
}

impl<T: JsonSchema + 'static> ToolOutput for Structured<T> {
    type Schema = T;
    fn into_value(self) -> serde_json::Result<Value> {
        Ok(self.value)
    }
}

/// Declares a tool: `P` is its parameters (serde + schemars, `deny_unknown_fields`), `O` its
/// structured output, `handler` the async fn that turns one into the other.
pub fn tool<P, O, F, Fut>(
    name: &'static str,
    title: &'static str,
    description: &'static str,
    hints: Hints,
    handler: F,
) -> ToolSpec
where
    P: DeserializeOwned + JsonSchema + Send + 'static,
    O: ToolOutput,
    F: Fn(ToolContext, P) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, ToolError>> + Send + 'static,
{
    let input_schema = object_schema::<P>(Contract::Deserialize);
    let output_schema = object_schema::<O::Schema>(Contract::Serialize);
    let parameter_names = input_schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|props| props.keys().cloned().collect())
        .unwrap_or_default();
    let annotations = ToolAnnotations::with_title(title)
        .read_only(hints.read_only)
        .destructive(hints.destructive)
        .idempotent(hints.idempotent)
        .open_world(hints.open_world);
    let tool = Tool::new(name, description, Arc::new(input_schema))
        .with_title(title)
        .with_raw_output_schema(Arc::new(output_schema))
        .with_annotations(annotations);
    let handler = Arc::new(handler);
    ToolSpec {
        tool,
        validator: OnceLock::new(),
        parameter_names,
        handler: Box::new(move |cx, args| {
            let handler = Arc::clone(&handler);
            Box::pin(async move {
                let params: P = serde_json::from_value(args).map_err(|error| {
                    ToolError::InvalidArguments(vec![ArgumentProblem {
                        field: String::new(),
                        expected: "arguments matching the tool's input schema".into(),
                        got: error.to_string(),
                    }])
                })?;
                let output = handler(cx, params).await?;
                output
                    .into_value()
                    .map_err(|e| ToolError::Internal(e.to_string()))
            })
        }),
    }
}

/// A JSON Schema 2020-12 object schema for `T`, self-contained (no `$ref`), so every client
/// and form generator can read it. Inputs are described as they are read (`Deserialize`),
/// outputs as they are written (`Serialize`: a field left out when empty is not required).
fn object_schema<T: JsonSchema>(contract: Contract) -> JsonObject {
    let mut settings = schemars::generate::SchemaSettings::draft2020_12();
    settings.inline_subschemas = true;
    settings.contract = contract;
    let schema = settings.into_generator().into_root_schema_for::<T>();
    let mut root = schema.to_value();
    no_boolean_subschemas(&mut root);
    let mut object = match root {
        Value::Object(object) => object,
        _ => Map::new(),
    };
    object.remove("title");
    object
        .entry("type")
        .or_insert_with(|| Value::String("object".into()));
    if object.get("type") == Some(&Value::String("object".into())) {
        object
            .entry("properties")
            .or_insert_with(|| Value::Object(Map::new()));
    }
    object
}

/// Rewrites `true` subschemas (schemars' "any JSON value") as `{}`, which means the same:
/// some clients' schema readers (the TypeScript SDK's) accept only object subschemas.
fn no_boolean_subschemas(value: &mut Value) {
    let Value::Object(schema) = value else { return };
    for (key, child) in schema.iter_mut() {
        match key.as_str() {
            "properties" | "$defs" | "definitions" | "patternProperties" => {
                if let Value::Object(members) = child {
                    for member in members.values_mut() {
                        as_object_schema(member);
                    }
                }
            }
            "items" | "additionalItems" | "not" | "if" | "then" | "else" | "contains" => {
                as_object_schema(child);
            }
            "anyOf" | "oneOf" | "allOf" | "prefixItems" => {
                if let Value::Array(options) = child {
                    for option in options {
                        as_object_schema(option);
                    }
                }
            }
            _ => {}
        }
    }
}

fn as_object_schema(value: &mut Value) {
    if *value == Value::Bool(true) {
        *value = Value::Object(Map::new());
    }
    no_boolean_subschemas(value);
}

/// All tools, in the order their domains list them (the order `tools/list` reports).
pub struct Registry {
    specs: Vec<ToolSpec>,
    by_name: HashMap<String, usize>,
    listing: Arc<[Tool]>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("tools", &self.specs.len())
            .finish()
    }
}

impl Registry {
    /// Checks the declarations once: unique names that fit MCP's name rule.
    pub fn new(specs: Vec<ToolSpec>) -> Result<Self, StartupError> {
        let mut by_name = HashMap::with_capacity(specs.len());
        for (index, spec) in specs.iter().enumerate() {
            let name = spec.name();
            if !is_valid_tool_name(name) {
                return Err(StartupError::Registry(format!(
                    "tool name {name:?} breaks MCP's rule (1-128 of A-Z a-z 0-9 _ - .)"
                )));
            }
            if by_name.insert(name.to_string(), index).is_some() {
                return Err(StartupError::Registry(format!(
                    "tool {name:?} is declared twice"
                )));
            }
        }
        let listing = specs.iter().map(|spec| spec.tool.clone()).collect();
        Ok(Self {
            specs,
            by_name,
            listing,
        })
    }

    /// The `tools/list` answer, built once.
    pub fn tools(&self) -> &Arc<[Tool]> {
        &self.listing
    }

    pub fn get(&self, name: &str) -> Option<&ToolSpec> {
        self.by_name.get(name).map(|&index| &self.specs[index])
    }

    pub fn len(&self) -> usize {
        self.specs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// Compiles every validator now. Run off the start-up path, so the first call finds them
    /// ready without the handshake waiting for them.
    pub fn warm_up(&self) {
        for spec in &self.specs {
            if let Err(error) = spec.validator() {
                tracing::error!(%error, "a tool's input schema does not compile");
            }
        }
    }
}

/// The tool result for a finished call: structured content plus the same JSON as text, or
/// an `isError` result whose text says what happened and what to do.
pub fn into_call_result(outcome: Result<Value, ToolError>) -> CallToolResult {
    match outcome {
        Ok(value) => CallToolResult::structured(value),
        Err(error) => CallToolResult::error(vec![ContentBlock::text(error.user_message())]),
    }
}

/// MCP's tool-name rule (2025-11-25): 1 to 128 characters of `A-Za-z0-9_-.`.
pub fn is_valid_tool_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn describe(error: &jsonschema::ValidationError<'_>, parameters: &[String]) -> ArgumentProblem {
    use jsonschema::error::{TypeKind, ValidationErrorKind as Kind};
    let field = field_path(error.instance_path().as_str());
    let got = summarise(error.instance());
    let join = |name: &str| {
        if field.is_empty() {
            name.to_string()
        } else {
            format!("{field}.{name}")
        }
    };
    match error.kind() {
        Kind::Required { property } => ArgumentProblem {
            field: join(property.as_str().unwrap_or_default()),
            expected: "a value (it is required)".into(),
            got: "nothing".into(),
        },
        Kind::AdditionalProperties { unexpected } => ArgumentProblem {
            field: unexpected
                .iter()
                .map(|name| join(name))
                .collect::<Vec<_>>()
                .join(", "),
            expected: if field.is_empty() && !parameters.is_empty() {
                format!("only this tool's parameters ({})", parameters.join(", "))
            } else if field.is_empty() {
                "no parameters".into()
            } else {
                "only the documented fields".into()
            },
            got: if unexpected.len() == 1 {
                "an unknown parameter".into()
            } else {
                "unknown parameters".into()
            },
        },
        Kind::Type { kind } => {
            let names: Vec<&str> = match kind {
                TypeKind::Single(one) => vec![type_name(&one.to_string())],
                TypeKind::Multiple(many) => {
                    many.iter().map(|t| type_name(&t.to_string())).collect()
                }
            };
            ArgumentProblem {
                field,
                expected: names.join(" or "),
                got,
            }
        }
        Kind::Enum { options } => ArgumentProblem {
            field,
            expected: format!("one of {options}"),
            got,
        },
        _ => ArgumentProblem {
            field,
            expected: error.masked().to_string(),
            got,
        },
    }
}

/// `/models/2/name` becomes `models[2].name`.
fn field_path(pointer: &str) -> String {
    let mut out = String::new();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if segment.bytes().all(|b| b.is_ascii_digit()) && !segment.is_empty() {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&segment);
        }
    }
    out
}

fn type_name(json_type: &str) -> &'static str {
    match json_type {
        "string" => "a string",
        "integer" => "a whole number",
        "number" => "a number",
        "boolean" => "true or false",
        "array" => "a list",
        "object" => "an object",
        "null" => "null",
        _ => "a value of another type",
    }
}

fn summarise(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("{b} (true/false)"),
        Value::Number(n) => format!("{n} (a number)"),
        Value::String(s) => {
            let shown: String = s.chars().take(60).collect();
            let ellipsis = if s.chars().count() > 60 { "…" } else { "" };
            format!("{shown:?}{ellipsis} (a string)")
        }
        Value::Array(items) => format!("a list of {} item(s)", items.len()),
        Value::Object(map) => format!("an object with {} field(s)", map.len()),
    }
}

/// The tool reference in Markdown, generated from the registry (`comfyui-agent tools --markdown`).
pub fn markdown_reference(registry: &Registry) -> String {
    let mut out = String::from(
        "# Tool reference\n\n<!-- Generated by `comfyui-agent tools --markdown`; do not edit by hand. -->\n\n",
    );
    out.push_str(&format!("{} tools.\n\n", registry.len()));
    for tool in registry.tools().iter() {
        let title = tool.title.as_deref().unwrap_or_default();
        out.push_str(&format!("## `{}`: {title}\n\n", tool.name));
        if let Some(description) = &tool.description {
            out.push_str(description);
            out.push_str("\n\n");
        }
        if let Some(a) = &tool.annotations {
            let flag = |v: Option<bool>| if v == Some(true) { "yes" } else { "no" };
            out.push_str(&format!(
                "Read-only: {} · destructive: {} · idempotent: {} · open-world: {}\n\n",
                flag(a.read_only_hint),
                flag(a.destructive_hint),
                flag(a.idempotent_hint),
                flag(a.open_world_hint)
            ));
        }
        out.push_str("| parameter | type | required | description |\n|---|---|---|---|\n");
        let required: Vec<&str> = tool
            .input_schema
            .get("required")
            .and_then(Value::as_array)
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let properties = tool
            .input_schema
            .get("properties")
            .and_then(Value::as_object);
        for (name, schema) in properties.into_iter().flatten() {
            let description = schema
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .replace('\n', " ");
            out.push_str(&format!(
                "| `{name}` | {} | {} | {description} |\n",
                schema_type(schema),
                if required.contains(&name.as_str()) {
                    "yes"
                } else {
                    "no"
                }
            ));
        }
        out.push('\n');
    }
    out
}

fn schema_type(schema: &Value) -> String {
    match schema.get("type") {
        Some(Value::String(t)) if t == "array" => {
            let items = schema.get("items").map(schema_type).unwrap_or_default();
            format!("array of {items}")
        }
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "any".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_fields_left_out_when_empty_are_not_required() {
        #[derive(serde::Serialize, schemars::JsonSchema)]
        struct Out {
            always: u32,
            #[serde(skip_serializing_if = "Vec::is_empty")]
            notes: Vec<String>,
        }
        let schema = object_schema::<Out>(Contract::Serialize);
        assert_eq!(schema["required"], serde_json::json!(["always"]));
        let empty = serde_json::to_value(Out {
            always: 1,
            notes: Vec::new(),
        })
        .expect("serializes");
        let validator = jsonschema::validator_for(&Value::Object(schema)).expect("compiles");
        assert!(validator.is_valid(&empty), "{empty}");
    }

    #[test]
    fn any_value_subschemas_are_written_as_objects() {
        #[derive(serde::Serialize, schemars::JsonSchema)]
        struct Out {
            value: Value,
            many: Vec<Value>,
            maybe: Option<Value>,
        }
        let schema = Value::Object(object_schema::<Out>(Contract::Serialize));
        fn has_true(value: &Value) -> bool {
            match value {
                Value::Object(map) => map.iter().any(|(k, v)| {
                    (k != "additionalProperties" && *v == Value::Bool(true)) || has_true(v)
                }),
                Value::Array(items) => items.iter().any(|v| *v == Value::Bool(true) || has_true(v)),
                _ => false,
            }
        }
        assert!(!has_true(&schema), "{schema}");
        assert!(schema["properties"]["value"].is_object());
    }

    #[test]
    fn tool_names_follow_the_mcp_rule() {
        assert!(is_valid_tool_name("identify_model_family"));
        assert!(is_valid_tool_name("a.b-c_D9"));
        assert!(!is_valid_tool_name(""));
        assert!(!is_valid_tool_name("has space"));
        assert!(!is_valid_tool_name(&"x".repeat(129)));
    }

    #[test]
    fn field_paths_read_like_code() {
        assert_eq!(field_path(""), "");
        assert_eq!(field_path("/models/2"), "models[2]");
        assert_eq!(field_path("/a/0/b~1c"), "a[0].b/c");
    }

    /// Every product tool, checked as a table (names, descriptions, schemas, annotations).
    #[test]
    fn every_registered_tool_is_well_formed() {
        let registry = Registry::new(crate::tools::all()).expect("registry builds");
        assert!(!registry.is_empty());
        for tool in registry.tools().iter() {
            let name = &tool.name;
            assert!(is_valid_tool_name(name), "{name}");
            assert!(
                tool.description.as_deref().is_some_and(|d| d.len() >= 40),
                "{name} needs a real description"
            );
            assert!(
                tool.title.as_deref().is_some_and(|t| !t.is_empty()),
                "{name}"
            );
            assert_eq!(
                tool.input_schema.get("type"),
                Some(&Value::from("object")),
                "{name}"
            );
            assert_eq!(
                tool.input_schema.get("additionalProperties"),
                Some(&Value::Bool(false)),
                "{name} must reject unknown fields"
            );
            assert!(
                tool.input_schema
                    .get("$schema")
                    .and_then(Value::as_str)
                    .is_some_and(|s| s.contains("2020-12")),
                "{name} input schema must be 2020-12"
            );
            let output = tool.output_schema.as_ref().expect("output schema");
            assert_eq!(output.get("type"), Some(&Value::from("object")), "{name}");
            assert!(
                !Value::Object((*tool.input_schema).clone())
                    .to_string()
                    .contains("$ref"),
                "{name}"
            );
            assert!(tool.annotations.is_some(), "{name}");
            let spec = registry.get(name).expect("registered");
            assert!(
                spec.validator().is_ok(),
                "{name}: input schema must compile"
            );
        }
    }

    #[test]
    fn duplicate_names_are_refused() {
        let twice = vec![
            crate::tools::model_compat::tools().remove(0),
            crate::tools::model_compat::tools().remove(0),
        ];
        let error = Registry::new(twice).expect_err("duplicate");
        assert!(error.to_string().contains("declared twice"));
    }

    #[test]
    fn markdown_reference_lists_every_tool_and_parameter() {
        let registry = Registry::new(crate::tools::all()).expect("registry builds");
        let text = markdown_reference(&registry);
        for tool in registry.tools().iter() {
            assert!(text.contains(&format!("## `{}`", tool.name)));
        }
        assert!(text.contains("| `model_name` | string | yes |"));
    }
}
