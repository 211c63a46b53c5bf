//! Typed custom headers for every request the client sends or answers.
