//! Offset stores.
