//! Integration tests: the real binary driven by real MCP clients over stdio, Streamable HTTP
//! and legacy SSE, plus the adversarial cases a production server must survive.

// Helpers are `pub` for the sibling test modules; nothing outside this binary sees them.
#![allow(unreachable_pub)]

mod browser;
mod cli;
mod comfy;
mod consent;
mod demo;
mod discover;
mod events;
mod execution;
mod execution_client;
mod families;
mod features;
mod github;
mod gpu;
mod http;
mod inprocess;
mod inspect;
mod memory;
mod metrics;
mod optimize;
mod pipeline;
mod planning;
mod provenance;
mod refine;
mod stdio;
mod support;
mod telemetry;
mod vision;
mod workflow;
