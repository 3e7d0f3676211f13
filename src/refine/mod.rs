//! Planning a change from what an artist says: the router that decides what kind of request it
//! is and which agents handle it, the model profiles, and the refinement loop.

pub mod iterate;
pub mod profile;
pub mod router;
