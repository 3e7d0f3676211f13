//! Asking a language or vision model. The client's own model comes first: through
//! `sampling/createMessage` on sessions that began with `initialize`, through an
//! `input_required` result on 2026-07-28, through a task input request inside a task. When
//! the client can't sample, a provider the operator configured answers instead: any
//! OpenAI-compatible endpoint (a local Ollama, vLLM, LM Studio…) or Anthropic's API. With
//! neither, the tool says so and what to set. Images are fitted to a budget before they go.

// Sampling is deprecated by SEP-2577 (2026-07-28) but is how every client that lends its
// model does so today, and stays part of every protocol version they speak.
#![allow(deprecated)]

use base64::Engine as _;
use rmcp::model::{
    CreateMessageRequest, CreateMessageRequestParams, CreateMessageResult, ImageContent,
    InputRequest, Role, SamplingMessage, SamplingMessageContentBlock,
};
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::config::{ModelProvider, ProviderKind};
use crate::error::ToolError;
use crate::images::{Fitted, ImageBudget};
use crate::mcp::{ClientAnswer, ToolContext};

/// Images sent to a model: large enough to judge detail, small enough to be cheap.
pub const MODEL_IMAGE_BUDGET: ImageBudget = ImageBudget {
    max_side: 1024,
    max_bytes: 900 * 1024,
    max_inline: 2,
};

/// The largest provider response read.
const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;

/// How long a provider or the client's model gets to answer.
const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(180);

/// One question for a model: instructions, text and images.
#[derive(Debug, Clone)]
pub struct ModelRequest {
    pub system: String,
    pub text: String,
    pub images: Vec<Fitted>,
    pub max_tokens: u32,
}

/// Who answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// The client's own model (MCP sampling).
    ClientSampling,
    OpenaiCompatible,
    Anthropic,
}

#[derive(Debug, Clone)]
pub struct ModelAnswer {
    pub text: String,
    pub model: String,
    pub via: Via,
}

impl ModelRequest {
    /// A stable key for this request, so a retried 2026-07-28 call finds its answer.
    pub fn key(&self, purpose: &str) -> String {
        let mut digest = sha2::Sha256::new();
        digest.update(purpose.as_bytes());
        digest.update(self.system.as_bytes());
        digest.update(self.text.as_bytes());
        for image in &self.images {
            digest.update(&image.bytes);
        }
        let hex: String = digest.finalize()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("sample-{hex}")
    }

    fn sampling_params(&self) -> CreateMessageRequestParams {
        let mut blocks: Vec<SamplingMessageContentBlock> = self
            .images
            .iter()
            .map(|image| {
                SamplingMessageContentBlock::Image(ImageContent::new(
                    base64::engine::general_purpose::STANDARD.encode(&image.bytes),
                    image.mime,
                ))
            })
            .collect();
        blocks.push(SamplingMessageContentBlock::text(self.text.clone()));
        let mut params = CreateMessageRequestParams::new(
            vec![SamplingMessage::new_multiple(Role::User, blocks)],
            self.max_tokens,
        );
        params.system_prompt = Some(self.system.clone());
        params.temperature = Some(0.2);
        params
    }
}

impl ToolContext {
    /// Asks a model `request`; `purpose` names the question (for the retry key and logs).
    pub async fn ask_model(
        &self,
        purpose: &str,
        request: &ModelRequest,
    ) -> Result<ModelAnswer, ToolError> {
        let key = request.key(purpose);
        if self.client_can_sample() || self.input_response(&key).is_some() {
            let asked =
                InputRequest::CreateMessage(CreateMessageRequest::new(request.sampling_params()));
            return match self.ask_client(&key, asked, ANSWER_WITHIN).await? {
                ClientAnswer::Given(answer) => sampled(&answer),
                ClientAnswer::Failed(why) => Err(ToolError::rejected(
                    format!("Your client's model did not answer ({why})."),
                    "Try again, or configure a model provider (COMFYUI_AGENT_MODEL_URL or ANTHROPIC_API_KEY) for clients that can't lend theirs.",
                )),
                ClientAnswer::TimedOut => Err(ToolError::rejected(
                    format!(
                        "Your client's model did not answer within {} s.",
                        ANSWER_WITHIN.as_secs()
                    ),
                    "Try again; a smaller question (one image) answers faster.",
                )),
            };
        }
        match &self.app.config().model {
            Some(provider) => {
                let asked = ask_provider(self.app.web().http(), provider, request);
                tokio::select! {
                    biased;
                    () = self.cancelled.cancelled() => Err(ToolError::Cancelled),
                    answer = asked => answer,
                }
            }
            None => Err(no_model(self.tool.as_ref())),
        }
    }
}

fn no_model(tool: &str) -> ToolError {
    ToolError::rejected(
        format!(
            "{tool} needs a model that can look at images, and there is none to ask: this client \
             doesn't offer its own model to servers (MCP sampling), and no model provider is \
             configured."
        ),
        "Use a client that supports sampling, or set COMFYUI_AGENT_MODEL_URL and \
         COMFYUI_AGENT_MODEL_NAME for an OpenAI-compatible endpoint (for example Ollama at \
         http://localhost:11434/v1 with a vision model), or ANTHROPIC_API_KEY. \
         hash_compare_images compares two images without a model.",
    )
}

/// A client's `CreateMessageResult`, sent as an input response.
fn sampled(answer: &Value) -> Result<ModelAnswer, ToolError> {
    serde_json::from_value::<CreateMessageResult>(answer.clone())
        .map(|result| answer_of(&result))
        .map_err(|error| {
            ToolError::rejected(
                format!(
                    "The answer your client sent for its model is not a sampling result ({error})."
                ),
                "Answer the model request again.",
            )
        })
}

fn answer_of(result: &CreateMessageResult) -> ModelAnswer {
    let text = result
        .message
        .content
        .clone()
        .into_vec()
        .iter()
        .filter_map(|block| block.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n");
    ModelAnswer {
        text,
        model: result.model.clone(),
        via: Via::ClientSampling,
    }
}

/// The request body for a provider: the images in the dialect's shape, then the text.
pub fn provider_body(provider: &ModelProvider, request: &ModelRequest) -> Value {
    let base64 = |image: &Fitted| base64::engine::general_purpose::STANDARD.encode(&image.bytes);
    let image_part = |image: &Fitted| match provider.kind {
        ProviderKind::OpenaiCompatible => json!({"type": "image_url", "image_url": {
            "url": format!("data:{};base64,{}", image.mime, base64(image)),
        }}),
        ProviderKind::Anthropic => json!({"type": "image", "source": {
            "type": "base64", "media_type": image.mime, "data": base64(image),
        }}),
    };
    let mut content: Vec<Value> = request.images.iter().map(image_part).collect();
    content.push(json!({"type": "text", "text": request.text}));
    match provider.kind {
        ProviderKind::OpenaiCompatible => json!({
            "model": provider.model,
            "max_tokens": request.max_tokens,
            "temperature": 0.2,
            "messages": [
                {"role": "system", "content": request.system},
                {"role": "user", "content": content},
            ],
        }),
        ProviderKind::Anthropic => json!({
            "model": provider.model,
            "max_tokens": request.max_tokens,
            "temperature": 0.2,
            "system": request.system,
            "messages": [{"role": "user", "content": content}],
        }),
    }
}

/// The answer's text from a provider's response body.
pub fn provider_text(kind: ProviderKind, body: &Value) -> Option<String> {
    match kind {
        ProviderKind::OpenaiCompatible => {
            let content = body.pointer("/choices/0/message/content")?;
            match content {
                Value::String(text) => Some(text.clone()),
                Value::Array(parts) => Some(
                    parts
                        .iter()
                        .filter_map(|part| part.get("text").and_then(Value::as_str))
                        .collect::<Vec<_>>()
                        .join("\n"),
                ),
                _ => None,
            }
        }
        ProviderKind::Anthropic => Some(
            body.get("content")?
                .as_array()?
                .iter()
                .filter(|block| block.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|block| block.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
    }
}

async fn ask_provider(
    http: &reqwest::Client,
    provider: &ModelProvider,
    request: &ModelRequest,
) -> Result<ModelAnswer, ToolError> {
    let (url, via) = match provider.kind {
        ProviderKind::OpenaiCompatible => {
            (provider.url.join("chat/completions"), Via::OpenaiCompatible)
        }
        ProviderKind::Anthropic => (provider.url.join("v1/messages"), Via::Anthropic),
    };
    let url = url.map_err(|error| ToolError::Internal(format!("provider URL: {error}")))?;
    let mut call = http
        .post(url.clone())
        .timeout(ANSWER_WITHIN)
        .header("content-type", "application/json")
        .body(provider_body(provider, request).to_string());
    if let Some(key) = &provider.api_key {
        call = match provider.kind {
            ProviderKind::OpenaiCompatible => call.bearer_auth(key.expose()),
            ProviderKind::Anthropic => call
                .header("x-api-key", key.expose())
                .header("anthropic-version", "2023-06-01"),
        };
    }
    let label = provider.label();
    let response = call.send().await.map_err(|error| {
        let why = if error.is_timeout() {
            format!("did not answer within {} s", ANSWER_WITHIN.as_secs())
        } else if error.is_connect() {
            "is not reachable".to_string()
        } else {
            "could not be reached".to_string()
        };
        ToolError::rejected(
            format!("The model provider {label} at {} {why}.", provider.url),
            "Check that it runs and the address (COMFYUI_AGENT_MODEL_URL), or use a client that lends its own model.",
        )
    })?;
    let status = response.status();
    let mut response = response;
    // A model's answer is a few kilobytes; anything past the cap isn't one.
    let body: Value = match crate::httpbody::read_capped(&mut response, MAX_ANSWER_BYTES).await {
        Ok(Ok(bytes)) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        Ok(Err(_)) => {
            return Err(ToolError::rejected(
                format!(
                    "The model provider {label} sent more than {} MB, which is not an answer.",
                    MAX_ANSWER_BYTES / (1024 * 1024)
                ),
                "Check COMFYUI_AGENT_MODEL_URL: it should be the API's base address.",
            ));
        }
        Err(_) => Value::Null,
    };
    if !status.is_success() {
        let detail = body
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("no details");
        let hint = match status.as_u16() {
            401 | 403 => "Check the API key (ANTHROPIC_API_KEY or COMFYUI_AGENT_MODEL_API_KEY).",
            404 => "Check the model name (COMFYUI_AGENT_MODEL_NAME) and the address.",
            429 => "The provider is rate-limiting; wait a moment and try again.",
            _ => "Try again; if it keeps failing, check the provider's logs.",
        };
        return Err(ToolError::rejected(
            format!("The model provider {label} refused the request (HTTP {status}: {detail})."),
            hint,
        ));
    }
    let text = provider_text(provider.kind, &body).ok_or_else(|| {
        ToolError::rejected(
            format!("The model provider {label} answered in a shape this server doesn't read."),
            "Check that the endpoint is OpenAI-compatible (/chat/completions) or Anthropic's Messages API.",
        )
    })?;
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or(&provider.model)
        .to_string();
    Ok(ModelAnswer { text, model, via })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ModelRequest {
        ModelRequest {
            system: "Answer in JSON.".into(),
            text: "How good is it?".into(),
            images: vec![Fitted {
                bytes: vec![1, 2, 3],
                mime: "image/png",
                width: 1,
                height: 1,
                original_width: 1,
                original_height: 1,
                original_bytes: 3,
            }],
            max_tokens: 500,
        }
    }

    fn provider(kind: ProviderKind) -> ModelProvider {
        ModelProvider {
            kind,
            url: url::Url::parse("http://localhost:11434/v1/").expect("url"),
            model: "llava".into(),
            api_key: None,
        }
    }

    #[test]
    fn the_key_depends_on_everything_asked() {
        let a = request();
        let mut b = request();
        assert_eq!(a.key("analyze"), b.key("analyze"));
        assert_ne!(a.key("analyze"), a.key("compare"));
        b.images[0].bytes.push(4);
        assert_ne!(a.key("analyze"), b.key("analyze"));
    }

    #[test]
    fn sampling_sends_the_images_then_the_text() {
        let params = request().sampling_params();
        let json = serde_json::to_value(&params).expect("json");
        let content = &json["messages"][0]["content"];
        assert_eq!(content[0]["type"], "image");
        assert_eq!(content[0]["mimeType"], "image/png");
        assert_eq!(content[0]["data"], "AQID");
        assert_eq!(content[1]["type"], "text");
        assert_eq!(json["systemPrompt"], "Answer in JSON.");
        assert_eq!(json["maxTokens"], 500);
    }

    #[test]
    fn provider_bodies_and_answers_in_both_dialects() {
        let body = provider_body(&provider(ProviderKind::OpenaiCompatible), &request());
        assert_eq!(body["model"], "llava");
        assert_eq!(
            body["messages"][1]["content"][0]["image_url"]["url"],
            "data:image/png;base64,AQID"
        );
        let answer = json!({"choices": [{"message": {"content": "{\"a\":1}"}}]});
        assert_eq!(
            provider_text(ProviderKind::OpenaiCompatible, &answer).as_deref(),
            Some("{\"a\":1}")
        );
        let body = provider_body(&provider(ProviderKind::Anthropic), &request());
        assert_eq!(body["system"], "Answer in JSON.");
        assert_eq!(
            body["messages"][0]["content"][0]["source"]["media_type"],
            "image/png"
        );
        let answer = json!({"content": [{"type": "text", "text": "hi"}], "model": "m"});
        assert_eq!(
            provider_text(ProviderKind::Anthropic, &answer).as_deref(),
            Some("hi")
        );
        assert_eq!(provider_text(ProviderKind::Anthropic, &json!({})), None);
    }

    #[test]
    fn a_sampled_answer_must_be_a_sampling_result() {
        let good = json!({"model": "claude", "role": "assistant",
                          "content": {"type": "text", "text": "{}"}});
        let answer = sampled(&good).expect("parsed");
        assert_eq!(answer.text, "{}");
        assert_eq!(answer.via, Via::ClientSampling);
        assert!(sampled(&json!({"text": "hi"})).is_err());
    }
}
