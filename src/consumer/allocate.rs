//! Queue allocation strategies.
