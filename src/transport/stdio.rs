//! MCP over stdin/stdout, one JSON-RPC message per line. stdout carries only protocol
//! messages; logs go to stderr. Bad lines are answered (-32700, -32600) and never end the
//! process.

use std::sync::Arc;

use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::service::ServerInitializeError;
use rmcp::transport::Transport;
use rmcp::{RoleServer, ServerHandler, ServiceExt};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::{INVALID_REQUEST, Rejection, SHUTDOWN_GRACE, StartGate, decode};
use crate::app::AppState;
use crate::error::StartupError;
use crate::mcp::McpServer;

/// Serves the product on this process's stdin and stdout until stdin closes or `shutdown`.
pub async fn serve(app: AppState, shutdown: CancellationToken) -> Result<(), StartupError> {
    let limit = app.config().http.max_body_bytes;
    let server = McpServer::new(app, "stdio");
    // Non-blocking pipes on Linux: no hand-off to the blocking pool for every read and write.
    // Anything else (a terminal, a file, other systems) falls back to tokio's stdio.
    let (input, output) = rmcp::transport::stdio_pipes();
    serve_handler(server, input, output, limit, shutdown).await
}

/// Serves `handler` over any byte streams (tests use in-memory pipes).
pub async fn serve_handler<H, R, W>(
    handler: H,
    input: R,
    output: W,
    max_message_bytes: usize,
    shutdown: CancellationToken,
) -> Result<(), StartupError>
where
    H: ServerHandler,
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let transport = StdioTransport {
        gate: StartGate::default(),
        lines: LineReader::new(input, max_message_bytes),
        output: Arc::new(Mutex::new(output)),
        shutdown: shutdown.clone(),
    };
    match handler.serve(transport).await {
        Ok(running) => {
            // `receive` ends on EOF or shutdown; rmcp then finishes in-flight calls.
            let waiting = running.waiting();
            tokio::pin!(waiting);
            tokio::select! {
                _ = &mut waiting => {}
                () = async { shutdown.cancelled().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
                    tracing::warn!("in-flight calls did not finish within {SHUTDOWN_GRACE:?}; exiting");
                }
            }
        }
        // A client that leaves before initializing is not a server failure.
        Err(ServerInitializeError::ConnectionClosed(_) | ServerInitializeError::Cancelled) => {
            tracing::info!("the client closed the session before it started");
        }
        Err(error) => tracing::warn!(%error, "the session could not start"),
    }
    Ok(())
}

/// Reads and writes the lines itself, in rmcp's own task: no extra tasks or channels sit
/// between the pipe and rmcp, and malformed lines are answered here rather than dropped.
struct StdioTransport<R, W> {
    gate: StartGate,
    lines: LineReader<R>,
    /// Whole frames are written under the lock, so concurrent responses never interleave.
    output: Arc<Mutex<W>>,
    shutdown: CancellationToken,
}

async fn write_frame<W: AsyncWrite + Unpin>(
    output: &Mutex<W>,
    mut frame: Vec<u8>,
) -> std::io::Result<()> {
    frame.push(b'\n');
    let mut output = output.lock().await;
    output.write_all(&frame).await?;
    output.flush().await
}

impl<R, W> Transport<RoleServer> for StdioTransport<R, W>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: ServerJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let output = Arc::clone(&self.output);
        async move {
            let frame = serde_json::to_vec(&item).map_err(std::io::Error::other)?;
            write_frame(&output, frame).await
        }
    }

    /// Cancel-safe: rmcp drops this future whenever it has something to send, so every
    /// byte read so far lives in `self.lines`, never in the future.
    async fn receive(&mut self) -> Option<ClientJsonRpcMessage> {
        loop {
            let read = tokio::select! {
                read = self.lines.next() => read,
                () = self.shutdown.cancelled() => return None,
            };
            let rejection = match read {
                Ok(None) => return None,
                Err(error) => {
                    tracing::warn!(%error, "stdin could not be read; closing the session");
                    return None;
                }
                Ok(Some(Line::TooLong)) => Rejection {
                    code: INVALID_REQUEST,
                    id: serde_json::Value::Null,
                    message: format!(
                        "Invalid request: the message is larger than the {}-byte limit. Send \
                         large workflows by path, or raise COMFYUI_AGENT_MAX_BODY_BYTES.",
                        self.lines.limit
                    ),
                },
                Ok(Some(Line::Complete(line))) => {
                    let text = trim_line(&line);
                    if text.is_empty() {
                        continue;
                    }
                    match decode(text) {
                        Ok(message) if self.gate.admit(&message) => return Some(message),
                        Ok(_) => continue,
                        Err(rejection) => rejection,
                    }
                }
            };
            tracing::debug!(code = rejection.code, "answered a malformed stdin line");
            // Written from its own task, so dropping this future can't cut a frame short.
            let output = Arc::clone(&self.output);
            tokio::spawn(async move {
                if let Err(error) = write_frame(&output, rejection.to_json().into_bytes()).await {
                    tracing::debug!(%error, "could not answer a malformed line");
                }
            });
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

fn trim_line(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    let start = line[..end]
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(end);
    &line[start..end]
}

enum Line {
    Complete(Vec<u8>),
    TooLong,
}

/// Splits input into lines of at most `limit` bytes. An overlong line is read to its end and
/// dropped, so the next line starts clean. All progress is kept in the struct, which makes
/// [`LineReader::next`] cancel-safe.
struct LineReader<R> {
    input: BufReader<R>,
    line: Vec<u8>,
    discarding: bool,
    limit: usize,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    fn new(input: R, limit: usize) -> Self {
        Self {
            input: BufReader::new(input),
            line: Vec::with_capacity(4096),
            discarding: false,
            limit,
        }
    }

    /// The next line, or `None` at the end of input.
    async fn next(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            // The only await point; nothing is consumed until it returns.
            let buffer = self.input.fill_buf().await?;
            if buffer.is_empty() {
                return Ok(if self.discarding {
                    self.discarding = false;
                    Some(Line::TooLong)
                } else if self.line.is_empty() {
                    None
                } else {
                    Some(Line::Complete(std::mem::take(&mut self.line)))
                });
            }
            let newline = buffer.iter().position(|&b| b == b'\n');
            let chunk = &buffer[..newline.unwrap_or(buffer.len())];
            if !self.discarding {
                if self.line.len() + chunk.len() > self.limit {
                    self.discarding = true;
                    self.line = Vec::with_capacity(4096);
                } else {
                    self.line.extend_from_slice(chunk);
                }
            }
            let consumed = newline.map_or(buffer.len(), |i| i + 1);
            self.input.consume(consumed);
            if newline.is_some() {
                return Ok(Some(if std::mem::take(&mut self.discarding) {
                    Line::TooLong
                } else {
                    Line::Complete(std::mem::replace(&mut self.line, Vec::with_capacity(4096)))
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_lines_split_and_recover_from_overflow() {
        let data = b"short\n0123456789abcdef\nnext\nlast-without-newline".to_vec();
        let mut reader = LineReader::new(&data[..], 8);
        reader.input = BufReader::with_capacity(4, &data[..]);
        let mut seen = Vec::new();
        while let Some(line) = reader.next().await.expect("read") {
            seen.push(match line {
                Line::TooLong => "<too long>".to_string(),
                Line::Complete(bytes) => String::from_utf8(bytes).expect("utf-8"),
            });
        }
        assert_eq!(seen, ["short", "<too long>", "next", "<too long>"]);
    }

    #[tokio::test]
    async fn a_line_survives_a_cancelled_read() {
        let (mut writer, reader) = tokio::io::duplex(64);
        let mut lines = LineReader::new(reader, 1024);
        writer.write_all(b"{\"half\":").await.expect("write");
        // The read is cancelled while the line is incomplete…
        let early = tokio::time::timeout(std::time::Duration::from_millis(50), lines.next()).await;
        assert!(early.is_err());
        // …and the rest of the line still completes it.
        writer.write_all(b" 1}\n").await.expect("write");
        match lines.next().await.expect("read") {
            Some(Line::Complete(line)) => assert_eq!(line, b"{\"half\": 1}"),
            _ => panic!("the line was lost"),
        }
    }

    #[test]
    fn lines_are_trimmed_of_crlf_and_spaces() {
        assert_eq!(trim_line(b"  {}\r"), b"{}");
        assert_eq!(trim_line(b" \r"), b"");
    }
}
