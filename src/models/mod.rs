//! Model files: which family a model belongs to and which ones can work together.

pub mod family;
