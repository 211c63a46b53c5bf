//! Hooks run around every send attempt (Java `SendMessageHook`, `SendMessageContext`,
//! `CommunicationMode`), and the producer's compression setting (Java 5's `CompressionType`).

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::common::{Message, MessageQueue};
use crate::error::Error;
use crate::producer::SendResult;

/// How a send waits for the broker (Java `CommunicationMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommunicationMode {
    /// The caller waits for the broker's answer (Java `SYNC`).
    Sync,
    /// The answer goes to a callback (Java `ASYNC`).
    Async,
    /// No answer is asked for (Java `ONEWAY`).
    Oneway,
}

/// A hook the producer runs before and after every send attempt (Java `SendMessageHook`).
///
/// Registered with
/// [`DefaultMQProducerBuilder::send_message_hook`](crate::DefaultMQProducerBuilder::send_message_hook).
/// Each attempt (a retry on another broker is another attempt) calls
/// [`send_message_before`](Self::send_message_before) once the broker's address is known, just
/// before the request goes out, and [`send_message_after`](Self::send_message_after) once:
///
/// * sync: with the broker's answer (the [`SendResult`] or the error);
/// * async: when the answer arrives, on a callback thread, before the send callback runs
///   (Java also calls it right after dispatching, with no result; this crate does not);
/// * one-way: once the request is handed to the connection, with no result (or the error
///   that stopped it).
///
/// Hooks run on the sending thread (async `after`: a callback thread), so they should be quick.
/// A hook that panics is logged and skipped; the send goes on.
pub trait SendMessageHook: Send + Sync + 'static {
    /// The hook's name, for logs (Java `hookName`).
    fn hook_name(&self) -> &str;
    /// Runs before the request is sent (Java `sendMessageBefore`).
    fn send_message_before(&self, context: &SendMessageContext<'_>);
    /// Runs after the attempt, with [`SendMessageContext::send_result`] or
    /// [`SendMessageContext::exception`] set (Java `sendMessageAfter`).
    fn send_message_after(&self, context: &SendMessageContext<'_>);
}

/// What a [`SendMessageHook`] sees (Java `SendMessageContext`).
#[derive(Debug)]
#[non_exhaustive]
pub struct SendMessageContext<'a> {
    /// The producer group.
    pub producer_group: &'a str,
    /// The message as sent (with its `UNIQ_KEY`, body not compressed); for a batch, the
    /// batch's messages in order (Java passes the `MessageBatch`).
    pub messages: &'a [Message],
    /// The queue of this attempt.
    pub message_queue: &'a MessageQueue,
    /// The broker's address.
    pub broker_addr: &'a str,
    /// How the send waits for the broker.
    pub communication_mode: CommunicationMode,
    /// The broker's answer (after hook of sync and async sends that succeeded).
    pub send_result: Option<&'a SendResult>,
    /// Why the attempt failed (after hook only).
    pub exception: Option<&'a Error>,
    /// When the attempt began (its before hook), ms since the epoch; the same in its after
    /// hook, which may run on another thread (async sends).
    pub begin_timestamp: i64,
}

/// The hooks of one producer. Empty costs one length check per send.
#[derive(Clone, Default)]
pub(crate) struct SendHooks(pub(crate) Vec<Arc<dyn SendMessageHook>>);

impl fmt::Debug for SendHooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|h| h.hook_name()))
            .finish()
    }
}

impl SendHooks {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Runs every hook's `before` (when `after` is false) or `after`; a panicking hook is logged
    /// and skipped.
    pub(crate) fn run(&self, ctx: &SendMessageContext<'_>, after: bool) {
        for h in &self.0 {
            let result = if after {
                catch_unwind(AssertUnwindSafe(|| h.send_message_after(ctx)))
            } else {
                catch_unwind(AssertUnwindSafe(|| h.send_message_before(ctx)))
            };
            if result.is_err() {
                log::warn!(
                    "send hook {} panicked {} sending to {}",
                    h.hook_name(),
                    if after { "after" } else { "before" },
                    ctx.message_queue
                );
            }
        }
    }
}

/// How bodies over the producer's threshold are compressed (Java 5 `CompressionType`). The
/// consumer reads the type from the message's sys flag, so any consumer of this crate (and Java
/// 5.x consumers) decode all three; Java 4.x consumers decode only [`CompressionType::Zlib`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CompressionType {
    /// zlib (deflate with the zlib header), at the producer's `compress_level`. The default, and
    /// the only type Java 4.x consumers read.
    #[default]
    Zlib,
    /// LZ4 frame format (as lz4-java's `LZ4FrameOutputStream` writes). The level is not used,
    /// as in Java.
    Lz4,
    /// Zstandard frames. Written at zstd's fastest level (about zstd level 1) whatever the
    /// producer's `compress_level`: the pure-Rust encoder implements no other.
    Zstd,
}

impl CompressionType {
    /// The sys-flag bits of the type (Java `CompressionType.getCompressionFlag`): LZ4 `0x100`,
    /// ZSTD `0x200`, ZLIB `0x300`.
    pub fn compression_flag(self) -> i32 {
        match self {
            CompressionType::Lz4 => 0x100,
            CompressionType::Zstd => 0x200,
            CompressionType::Zlib => 0x300,
        }
    }

    /// Java's name: `"ZLIB"`, `"LZ4"` or `"ZSTD"`.
    pub fn as_java_str(self) -> &'static str {
        match self {
            CompressionType::Zlib => "ZLIB",
            CompressionType::Lz4 => "LZ4",
            CompressionType::Zstd => "ZSTD",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::decoder::MessageSysFlag;

    #[test]
    fn compression_flags_match_java_and_the_decoder() {
        assert_eq!(
            CompressionType::Lz4.compression_flag(),
            MessageSysFlag::COMPRESSION_LZ4_TYPE
        );
        assert_eq!(
            CompressionType::Zstd.compression_flag(),
            MessageSysFlag::COMPRESSION_ZSTD_TYPE
        );
        assert_eq!(
            CompressionType::Zlib.compression_flag(),
            MessageSysFlag::COMPRESSION_ZLIB_TYPE
        );
        assert_eq!(CompressionType::default(), CompressionType::Zlib);
    }
}
