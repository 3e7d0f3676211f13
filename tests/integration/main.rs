//! Integration tests: the real binary driven by real MCP clients over stdio, Streamable HTTP
//! and legacy SSE, plus the adversarial cases a production server must survive.

mod cli;
mod http;
mod stdio;
mod support;
