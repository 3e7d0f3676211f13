//! Planning a change from what an artist says: the router that decides what kind of request it
//! is and which agents handle it.

pub mod router;
