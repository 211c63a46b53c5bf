//! The protocol layer's error: a frame, header or body that could not be encoded or decoded.
//!
//! It lives in the protocol layer so that the protocol depends on nothing above it; the crate's
//! `Error` wraps it as `Error::Codec`, and the crate root re-exports it.

use std::fmt;

/// A frame, header or body that could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecError {
    /// A frame announced a length over the configured maximum. Nothing was allocated for it.
    FrameTooLarge {
        /// The announced length.
        len: usize,
        /// The maximum allowed.
        max: usize,
    },
    /// The frame is structurally invalid (short, bad lengths, unknown serialize type, ...).
    Malformed(String),
    /// A JSON header or body could not be parsed.
    Json(String),
    /// A required custom-header field is missing (Java: `"the custom field <x> is null"`).
    MissingField(&'static str),
    /// A custom-header field has a value that does not parse.
    InvalidField {
        /// The field name.
        field: &'static str,
        /// The value found.
        value: String,
    },
    /// A compressed body could not be decompressed.
    Decompress(String),
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::FrameTooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the maximum of {max}")
            }
            CodecError::Malformed(m) => write!(f, "malformed frame: {m}"),
            CodecError::Json(m) => write!(f, "invalid JSON: {m}"),
            CodecError::MissingField(name) => write!(f, "the custom field <{name}> is null"),
            CodecError::InvalidField { field, value } => {
                write!(
                    f,
                    "the custom field <{field}> has an invalid value {value:?}"
                )
            }
            CodecError::Decompress(m) => write!(f, "cannot decompress body: {m}"),
        }
    }
}

impl std::error::Error for CodecError {}

impl CodecError {
    pub(crate) fn malformed(msg: impl Into<String>) -> Self {
        CodecError::Malformed(msg.into())
    }
}
