//! MCP over stdin/stdout, one JSON-RPC message per line. stdout carries only protocol
//! messages; logs go to stderr. Bad lines are answered (-32700, -32600) and never end the
//! process.

use rmcp::{ServerHandler, ServiceExt};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{ChannelTransport, INVALID_REQUEST, Rejection, SHUTDOWN_GRACE, decode};
use crate::app::AppState;
use crate::error::StartupError;
use crate::mcp::McpServer;

/// Serves the product on this process's stdin and stdout until stdin closes or `shutdown`.
pub async fn serve(app: AppState, shutdown: CancellationToken) -> Result<(), StartupError> {
    let limit = app.config().http.max_body_bytes;
    let server = McpServer::new(app, "stdio");
    serve_handler(
        server,
        tokio::io::stdin(),
        tokio::io::stdout(),
        limit,
        shutdown,
    )
    .await
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
    let (out_tx, out_rx) = mpsc::channel::<String>(64);
    let (in_tx, in_rx) = mpsc::channel(64);
    let writer = tokio::spawn(write_lines(out_rx, output));
    let reader = tokio::spawn(read_lines(
        BufReader::new(input),
        in_tx,
        out_tx.clone(),
        max_message_bytes,
        shutdown.clone(),
    ));
    let transport = ChannelTransport::new(out_tx, in_rx);

    let result = match handler.serve(transport).await {
        Ok(running) => {
            // The reader ends on EOF or shutdown; rmcp then finishes in-flight calls.
            let waiting = running.waiting();
            tokio::pin!(waiting);
            tokio::select! {
                _ = &mut waiting => Ok(()),
                () = async { shutdown.cancelled().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
                    tracing::warn!("in-flight calls did not finish within {SHUTDOWN_GRACE:?}; exiting");
                    Ok(())
                }
            }
        }
        Err(error) => {
            // A client that leaves before initializing is not a server failure.
            tracing::info!(%error, "the client closed the session before it started");
            Ok(())
        }
    };
    reader.abort();
    // The writer drains what is queued, then ends when every sender is gone.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), writer).await;
    result
}

async fn write_lines<W: AsyncWrite + Unpin>(mut lines: mpsc::Receiver<String>, mut output: W) {
    while let Some(line) = lines.recv().await {
        let mut frame = line.into_bytes();
        frame.push(b'\n');
        if output.write_all(&frame).await.is_err() {
            break;
        }
        // Flush only when nothing else is queued, so bursts share one write.
        if lines.is_empty() && output.flush().await.is_err() {
            break;
        }
    }
    let _ = output.flush().await;
}

async fn read_lines<R: AsyncBufRead + Unpin>(
    mut input: R,
    messages: mpsc::Sender<rmcp::model::ClientJsonRpcMessage>,
    replies: mpsc::Sender<String>,
    limit: usize,
    shutdown: CancellationToken,
) {
    let mut line = Vec::with_capacity(4096);
    loop {
        line.clear();
        let read = tokio::select! {
            read = read_bounded_line(&mut input, &mut line, limit) => read,
            () = shutdown.cancelled() => return,
        };
        let overflowed = match read {
            Ok(Line::Eof) => return,
            Ok(Line::Complete) => false,
            Ok(Line::TooLong) => true,
            Err(error) => {
                tracing::warn!(%error, "stdin could not be read; closing the session");
                return;
            }
        };
        if overflowed {
            let rejection = Rejection {
                code: INVALID_REQUEST,
                id: serde_json::Value::Null,
                message: format!(
                    "Invalid request: the message is larger than the {limit}-byte limit. Send \
                     large workflows by path, or raise COMFYUI_AGENT_MAX_BODY_BYTES."
                ),
            };
            if replies.send(rejection.to_json()).await.is_err() {
                return;
            }
            continue;
        }
        let text = trim_line(&line);
        if text.is_empty() {
            continue;
        }
        match decode(text) {
            Ok(message) => {
                if messages.send(message).await.is_err() {
                    return;
                }
            }
            Err(rejection) => {
                tracing::debug!(code = rejection.code, "answered a malformed stdin line");
                if replies.send(rejection.to_json()).await.is_err() {
                    return;
                }
            }
        }
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
    Complete,
    TooLong,
    Eof,
}

/// Reads up to a newline, keeping at most `limit` bytes; the rest of an overlong line is
/// read and dropped so that the next line starts clean.
async fn read_bounded_line<R: AsyncBufRead + Unpin>(
    input: &mut R,
    line: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<Line> {
    let mut too_long = false;
    let mut saw_any = false;
    loop {
        let buffer = input.fill_buf().await?;
        if buffer.is_empty() {
            return Ok(if !saw_any {
                Line::Eof
            } else if too_long {
                Line::TooLong
            } else {
                Line::Complete
            });
        }
        saw_any = true;
        let (chunk, done) = match buffer.iter().position(|&b| b == b'\n') {
            Some(newline) => (&buffer[..newline], Some(newline + 1)),
            None => (buffer, None),
        };
        if !too_long {
            if line.len() + chunk.len() > limit {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let consumed = done.unwrap_or(buffer.len());
        input.consume(consumed);
        if done.is_some() {
            return Ok(if too_long {
                Line::TooLong
            } else {
                Line::Complete
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_lines_split_and_recover_from_overflow() {
        let data = b"short\n0123456789abcdef\nnext\nlast-without-newline".to_vec();
        let mut input = BufReader::with_capacity(4, &data[..]);
        let mut line = Vec::new();
        let mut seen = Vec::new();
        loop {
            line.clear();
            match read_bounded_line(&mut input, &mut line, 8)
                .await
                .expect("read")
            {
                Line::Eof => break,
                Line::TooLong => seen.push("<too long>".to_string()),
                Line::Complete => seen.push(String::from_utf8(line.clone()).expect("utf-8")),
            }
        }
        assert_eq!(seen, ["short", "<too long>", "next", "<too long>"]);
    }

    #[test]
    fn lines_are_trimmed_of_crlf_and_spaces() {
        assert_eq!(trim_line(b"  {}\r"), b"{}");
        assert_eq!(trim_line(b" \r"), b"");
    }
}
