//! Telemetry: what the server measures about itself, and where it sends it.

pub mod metrics;
