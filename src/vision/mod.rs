//! Eyes for the assistant: comparing images locally (perceptual hashes, pixel statistics)
//! and asking a vision model about them, the client's own model first.

pub mod analysis;
pub mod hash;
pub mod model;
