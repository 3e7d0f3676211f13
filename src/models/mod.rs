//! Model files: which family a model belongs to and which ones can work together, told by
//! name (`family`) and, for files on disk, by their headers (`header`, `detect`).

pub mod detect;
pub mod family;
pub mod header;
pub mod locate;
