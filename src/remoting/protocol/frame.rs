//! `FrameDecoder`: splits a byte stream into frames.

use bytes::{Buf, BytesMut};

use super::CodecError;
use super::RemotingCommand;

/// Java's `NettyDecoder` limit: 16 MiB.
pub const DEFAULT_MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// Splits a stream into [`RemotingCommand`]s. It handles frames split across reads and several
/// frames in one read, and rejects a frame longer than the maximum from its length prefix alone,
/// before reserving any memory for it.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_frame_len: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl FrameDecoder {
    /// A decoder that rejects frames whose length prefix exceeds `max_frame_len`.
    pub fn new(max_frame_len: usize) -> Self {
        FrameDecoder { max_frame_len }
    }

    /// The maximum frame length.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Takes one complete frame off the front of `buf`, or returns `Ok(None)` when more bytes are
    /// needed. After an error the stream is unusable: the caller must close the connection.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<RemotingCommand>, CodecError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = (&buf[..4]).get_u32() as usize;
        if len > self.max_frame_len {
            return Err(CodecError::FrameTooLarge {
                len,
                max: self.max_frame_len,
            });
        }
        if len < 4 {
            return Err(CodecError::malformed(format!(
                "frame length {len} is shorter than the header word"
            )));
        }
        if buf.len() < 4 + len {
            // Reserve only what this frame needs; the length was checked above.
            buf.reserve(4 + len - buf.len());
            return Ok(None);
        }
        let mut frame = buf.split_to(4 + len);
        frame.advance(4);
        RemotingCommand::decode(frame.freeze()).map(Some)
    }
}
