//! Helpers: a scratch environment, the binary under test, raw stdio and HTTP servers, and a
//! fake ComfyUI.

pub mod fake_comfy;
pub mod fake_github;
pub mod fake_web;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_comfyui-agent");

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A scratch data folder and an allowed folder holding the workflow fixtures.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let workflows = dir.path().join("allowed/workflows");
        std::fs::create_dir_all(&workflows).expect("mkdir");
        for entry in std::fs::read_dir(fixture("workflows")).expect("fixtures") {
            let entry = entry.expect("entry");
            if entry.path().is_file() {
                std::fs::copy(entry.path(), workflows.join(entry.file_name())).expect("copy");
            }
        }
        std::fs::write(workflows.join("broken.json"), "{ not json").expect("write");
        std::fs::create_dir_all(dir.path().join("outside")).expect("mkdir");
        std::fs::write(dir.path().join("outside/secret.json"), "{}").expect("write");
        Self { dir }
    }

    pub fn allowed(&self) -> PathBuf {
        self.dir.path().join("allowed")
    }

    pub fn path(&self, relative: &str) -> String {
        self.dir.path().join(relative).display().to_string()
    }

    /// A command for the binary, isolated from the developer's own settings.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("RUST_LOG", "warn")
            .env("COMFYUI_AGENT_DATA_DIR", self.dir.path().join("data"))
            .env("COMFYUI_AGENT_ALLOWED_ROOTS", self.allowed())
            .kill_on_drop(true);
        command
    }
}

/// The binary in stdio mode, spoken to line by line.
pub struct RawStdio {
    pub child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl RawStdio {
    pub fn spawn(scratch: &Scratch) -> Self {
        Self::spawn_with(scratch, &[])
    }

    /// Spawns with extra environment settings (`COMFYUI_URL` and the like).
    pub fn spawn_with(scratch: &Scratch, env: &[(&str, &str)]) -> Self {
        let mut command = scratch.command(&["mcp"]);
        command.envs(env.iter().copied());
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Self {
            child,
            stdin,
            stdout,
        }
    }

    pub async fn send_raw(&mut self, line: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin.write_all(line).await.expect("write");
        stdin.write_all(b"\n").await.expect("write");
        stdin.flush().await.expect("flush");
    }

    pub async fn send(&mut self, message: &Value) {
        self.send_raw(message.to_string().as_bytes()).await;
    }

    /// The next stdout line, which must be a JSON object (stdout carries nothing else).
    pub async fn recv(&mut self) -> Value {
        let mut line = String::new();
        let read = tokio::time::timeout(Duration::from_secs(20), self.stdout.read_line(&mut line))
            .await
            .expect("the server answered in time")
            .expect("read");
        assert!(read > 0, "the server closed stdout");
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"))
    }

    /// Skips notifications until the response with `id`.
    pub async fn response(&mut self, id: i64) -> Value {
        loop {
            let message = self.recv().await;
            if message.get("id") == Some(&Value::from(id)) {
                return message;
            }
        }
    }

    pub async fn initialize(&mut self) -> Value {
        self.handshake("2025-06-18", serde_json::json!({})).await
    }

    /// The 2025-11-25 handshake, declaring `capabilities` (elicitation, tasks…).
    pub async fn initialize_with(&mut self, capabilities: Value) -> Value {
        self.handshake("2025-11-25", capabilities).await
    }

    async fn handshake(&mut self, version: &str, capabilities: Value) -> Value {
        self.send(&serde_json::json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": version, "capabilities": capabilities,
                       "clientInfo": {"name": "raw-test", "version": "1"}}
        }))
        .await;
        let reply = self.response(0).await;
        self.send(&serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        reply
    }

    /// Calls a tool and returns its result (a tool error is a result with `isError`).
    pub async fn call_tool(&mut self, id: i64, name: &str, arguments: Value) -> Value {
        self.send(&serde_json::json!({
            "jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": name, "arguments": arguments}
        }))
        .await;
        let reply = self.response(id).await;
        reply
            .get("result")
            .cloned()
            .unwrap_or_else(|| panic!("{name}: expected a result, got {reply}"))
    }

    /// Closes stdin, as a client does when it leaves.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    pub async fn close_and_wait(mut self) -> std::process::ExitStatus {
        self.close_stdin();
        tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .expect("the server exits when stdin closes")
            .expect("wait")
    }
}

/// The binary serving HTTP on a free loopback port.
pub struct HttpServer {
    pub child: Child,
    pub base: String,
    /// Everything the server wrote to stderr so far.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl HttpServer {
    pub async fn spawn(scratch: &Scratch, extra: &[&str], env: &[(&str, &str)]) -> Self {
        install_tls_provider();
        let mut args = vec!["serve", "--bind", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut command = scratch.command(&args);
        // The listening address is read from the start-up log line.
        command.env("RUST_LOG", "info");
        if let Some((_, level)) = env.iter().find(|(key, _)| *key == "RUST_LOG") {
            command.env("RUST_LOG", level);
        }
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let addr = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = stderr.next_line().await.expect("stderr") {
                if let Some(rest) = line.split("addr=").nth(1) {
                    return rest.split_whitespace().next().expect("address").to_string();
                }
            }
            panic!("the server exited before listening");
        })
        .await
        .expect("the server starts listening in time");
        // Keep draining stderr so the server never blocks on a full pipe.
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&log);
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                sink.lock().expect("log lock").push(line);
            }
        });
        Self {
            child,
            base: format!("http://{addr}"),
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// Installs the process-wide TLS provider that test HTTP clients (ours and rmcp's) need: the
/// crate builds reqwest with `rustls-no-provider`, and its own ComfyUI client passes an
/// explicit provider instead. Safe to call many times.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn http_client() -> reqwest::Client {
    install_tls_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// An initialize request body for Streamable HTTP.
pub fn initialize_body() -> Value {
    serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "raw-http-test", "version": "1"}}
    })
}

/// The JSON-RPC message in a Streamable HTTP response body (plain JSON or SSE `data:`).
pub fn rpc_payload(body: &str) -> Value {
    if let Ok(value) = serde_json::from_str(body) {
        return value;
    }
    body.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(str::trim)
        .filter(|data| !data.is_empty())
        .find_map(|data| serde_json::from_str(data).ok())
        .unwrap_or_else(|| panic!("no JSON-RPC message in: {body}"))
}

/// Reads server-sent events one at a time, skipping keep-alive comments.
pub struct SseEvents {
    stream: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
}

impl SseEvents {
    pub fn new(response: reqwest::Response) -> Self {
        use futures::StreamExt;
        Self {
            stream: response.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    pub async fn next_event(&mut self) -> String {
        use futures::StreamExt;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                if event.starts_with(':') {
                    continue;
                }
                return event;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.stream.next())
                .await
                .expect("an event in time")
                .expect("stream open")
                .expect("chunk");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

/// Sends SIGTERM and waits for a clean exit within the 10 s grace period (plus slack).
#[cfg(unix)]
pub async fn terminate_and_wait(child: &mut Child) -> std::process::ExitStatus {
    let pid = child.id().expect("pid").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    tokio::time::timeout(Duration::from_secs(12), child.wait())
        .await
        .expect("exits within the grace period")
        .expect("wait")
}

/// The text blocks of a raw `tools/call` result, joined.
pub fn result_text(result: &Value) -> String {
    result["content"]
        .as_array()
        .map(|blocks| {
            blocks
                .iter()
                .filter_map(|b| b["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// A successful raw result's structured content (panics with the error text otherwise).
pub fn ok(result: &Value) -> &Value {
    assert!(
        result["isError"] != true,
        "expected success: {}",
        result_text(result)
    );
    &result["structuredContent"]
}

/// A failed raw result's text (panics if the call succeeded).
pub fn failed(result: &Value) -> String {
    assert!(result["isError"] == true, "expected a tool error: {result}");
    result_text(result)
}

/// The binary on stdio, pointed at `fake` (plus any `extra` settings), past the handshake.
pub async fn agent_for(
    fake: &fake_comfy::FakeComfy,
    scratch: &Scratch,
    extra: &[(&str, &str)],
) -> RawStdio {
    let url = fake.url();
    let mut env = vec![("COMFYUI_URL", url.as_str())];
    env.extend_from_slice(extra);
    let mut agent = RawStdio::spawn_with(scratch, &env);
    agent.initialize().await;
    agent
}

/// EmptyImage → SaveImage: a workflow that needs no model (the graph of the recorded basic
/// run).
pub fn solid() -> Value {
    serde_json::json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "solid"}}
    })
}
