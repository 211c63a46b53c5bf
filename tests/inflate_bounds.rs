//! Decompression bombs: a small compressed body that inflates to far more than the decoder's
//! bound is rejected as undecodable, and decoding it never holds much more memory than the
//! bound (the output buffer) plus the codec's fixed working set. A larger configured bound
//! accepts the same body.
//!
//! The memory is measured by a global allocator that tracks, per thread, the peak of the bytes
//! allocated and not yet freed since a reset: each test decodes on its own thread, so tests
//! running in parallel do not disturb each other.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};

use bytes::Bytes;
use rocketmq_sync::codec::{MessageDecoder, MessageSysFlag, DEFAULT_MAX_BODY_SIZE};
use rocketmq_sync::{CodecError, Message, MessageExt};

struct PeakTracking;

thread_local! {
    /// Bytes this thread allocated and has not freed since the last reset (frees of older
    /// allocations can make it negative).
    static LIVE: Cell<isize> = const { Cell::new(0) };
    /// The largest `LIVE` since the last reset.
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    // `try_with`: the allocator may be called while the thread's locals are torn down.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: forwards every call unchanged to the system allocator; it only keeps counts.
unsafe impl GlobalAlloc for PeakTracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        track(-(layout.size() as isize));
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            track(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: PeakTracking = PeakTracking;

/// Runs `f` and returns its result and the peak of the bytes it held allocated at once.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    let out = f();
    (out, PEAK.with(Cell::get).max(0) as usize)
}

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// A stored record at queue offset `offset` whose body is `compressed`, flagged as compressed
/// with the compression type `type_bits`.
fn compressed_record(compressed: &[u8], type_bits: i32, offset: i64) -> Bytes {
    let mut m = MessageExt::from_message(&Message::new("T", compressed.to_vec()));
    m.set_sys_flag(MessageSysFlag::COMPRESSED_FLAG | type_bits);
    m.set_queue_offset(offset);
    m.set_store_host("10.1.2.3:10911".parse().unwrap());
    m.set_born_host("10.9.9.9:40000".parse().unwrap());
    MessageDecoder::encode(&m, false).unwrap()
}

/// `len` zero bytes, zlib-compressed as Java's producers do (streamed, never all in memory).
fn zlib_zeros(len: usize) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(9));
    std::io::copy(&mut std::io::repeat(0).take(len as u64), &mut z).unwrap();
    z.finish().unwrap()
}

/// `len` zero bytes in an LZ4 frame as lz4-java's `LZ4FrameOutputStream` writes it by default:
/// independent 4 MiB blocks.
fn lz4_zeros(len: usize) -> Vec<u8> {
    use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};
    let info = FrameInfo::new()
        .block_size(BlockSize::Max4MB)
        .block_mode(BlockMode::Independent);
    let mut enc = FrameEncoder::with_frame_info(info, Vec::new());
    std::io::copy(&mut std::io::repeat(0).take(len as u64), &mut enc).unwrap();
    enc.finish().unwrap()
}

/// A Zstandard frame of `blocks` RLE blocks of 128 KiB zeros each, declaring a window of
/// 2^`window_log` bytes and no content size: 4 bytes of input per 128 KiB of output.
fn zstd_rle_zeros(window_log: u8, blocks: usize) -> Vec<u8> {
    assert!((10..=41).contains(&window_log));
    // Magic, then a descriptor with no content size, no checksum and no dictionary, then the
    // window descriptor: exponent in the high 5 bits, mantissa 0.
    let mut f = vec![0x28, 0xB5, 0x2F, 0xFD, 0x00, (window_log - 10) << 3];
    for i in 0..blocks {
        let last = u32::from(i + 1 == blocks);
        // Block header (little endian, 3 bytes): last flag, type 1 (RLE), size 128 KiB.
        let header = last | (1 << 1) | ((128 * KIB as u32) << 3);
        f.extend_from_slice(&header.to_le_bytes()[..3]);
        f.push(0);
    }
    f
}

/// `len` zero bytes in a Zstandard frame as `ruzstd`'s encoder writes it.
fn zstd_zeros(len: usize) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(
        std::io::repeat(0).take(len as u64),
        ruzstd::encoding::CompressionLevel::Fastest,
    )
}

/// Decodes `rec` (alone in a pull body) with the bound `max`, on this thread, and returns
/// what decoding made of it and the peak memory it held.
fn decode_alone(rec: &Bytes, max: usize) -> (Result<Bytes, CodecError>, usize) {
    let (batch, peak) = peak_of(|| MessageDecoder::decode_batch(rec.clone(), true, max));
    let out = match (batch.messages.first(), batch.skipped.first()) {
        (Some(m), None) => Ok(m.body().clone()),
        (None, Some(bad)) => Err(bad.error.clone()),
        _ => panic!("one record, one outcome: {batch:?}"),
    };
    (out, peak)
}

/// Asserts that `rec` does not decode under the bound `max` because it inflates past it, and
/// that decoding it held at most `max` plus `working_set` bytes at once.
fn assert_rejected_within(what: &str, rec: &Bytes, max: usize, working_set: usize) {
    let (out, peak) = decode_alone(rec, max);
    match out {
        Err(CodecError::Decompress(msg)) => assert!(
            msg.contains(&max.to_string()),
            "{what}: the error names the bound {max}: {msg}"
        ),
        Err(other) => panic!("{what}: not a decompression error: {other}"),
        Ok(body) => panic!("{what}: decoded {} bytes past the bound {max}", body.len()),
    }
    assert!(
        peak <= max + working_set,
        "{what}: decoding held {peak} bytes at once (bound {max} + working set {working_set})"
    );
}

/// zlib: the inflater's window and buffers, well under this.
const ZLIB_WORKING_SET: usize = 256 * KIB;
/// LZ4 frames with independent 4 MiB blocks: one compressed and one decompressed block buffer.
const LZ4_WORKING_SET: usize = 2 * 4 * MIB + 256 * KIB;

/// Zstandard: the history window, which the decoder keeps no larger than the bound (rounded
/// up to a representable window, at most 1/8 more), two blocks and its tables.
fn zstd_working_set(max: usize) -> usize {
    max + max / 8 + MIB
}

#[test]
fn a_zlib_bomb_is_rejected_without_allocating_past_the_bound() {
    // 1 GiB of zeros deflates to about 1 MiB: 32 of them fit a 16 MiB pull frame.
    let bomb = zlib_zeros(1024 * MIB);
    assert!(bomb.len() < 2 * MIB, "{}", bomb.len());
    let rec = compressed_record(&bomb, MessageSysFlag::COMPRESSION_ZLIB_TYPE, 7);
    assert_rejected_within(
        "zlib, default bound",
        &rec,
        DEFAULT_MAX_BODY_SIZE,
        ZLIB_WORKING_SET,
    );
    assert_rejected_within("zlib, 64 KiB bound", &rec, 64 * KIB, ZLIB_WORKING_SET);
}

#[test]
fn an_lz4_bomb_is_rejected_without_allocating_past_the_bound() {
    let bomb = lz4_zeros(256 * MIB);
    assert!(bomb.len() < 2 * MIB, "{}", bomb.len());
    let rec = compressed_record(&bomb, MessageSysFlag::COMPRESSION_LZ4_TYPE, 7);
    assert_rejected_within(
        "lz4, default bound",
        &rec,
        DEFAULT_MAX_BODY_SIZE,
        LZ4_WORKING_SET,
    );
    assert_rejected_within("lz4, 64 KiB bound", &rec, 64 * KIB, LZ4_WORKING_SET);
}

#[test]
fn a_zstd_bomb_is_rejected_without_allocating_past_the_bound() {
    let max = DEFAULT_MAX_BODY_SIZE;
    // 1 GiB of zeros in 32 KiB of input, declaring a 128 MiB window (the largest window the
    // decoder library accepts by default): the decoder must not fill that window.
    let wide = zstd_rle_zeros(27, 8192);
    let rec = compressed_record(&wide, MessageSysFlag::COMPRESSION_ZSTD_TYPE, 7);
    assert_rejected_within("zstd, 128 MiB window", &rec, max, zstd_working_set(max));
    assert_rejected_within(
        "zstd, 128 MiB window, 64 KiB bound",
        &rec,
        64 * KIB,
        zstd_working_set(64 * KIB),
    );
    // A window of 1 MiB, under the bound.
    let narrow = zstd_rle_zeros(20, 8192);
    let rec = compressed_record(&narrow, MessageSysFlag::COMPRESSION_ZSTD_TYPE, 7);
    assert_rejected_within("zstd, 1 MiB window", &rec, max, zstd_working_set(max));
    // As an encoder writes it.
    let encoded = zstd_zeros(64 * MIB);
    assert!(encoded.len() < 2 * MIB, "{}", encoded.len());
    let rec = compressed_record(&encoded, MessageSysFlag::COMPRESSION_ZSTD_TYPE, 7);
    assert_rejected_within("zstd, encoder", &rec, max, zstd_working_set(max));
}

#[test]
fn a_zstd_frame_declaring_a_content_size_past_the_bound_is_rejected_at_once() {
    // Single-segment frame (the window is the content size): 8 MiB declared, 128 KiB present.
    let mut f = vec![0x28, 0xB5, 0x2F, 0xFD, 0b1010_0000];
    f.extend_from_slice(&(8 * MIB as u32).to_le_bytes());
    let header = 1u32 | (1 << 1) | ((128 * KIB as u32) << 3);
    f.extend_from_slice(&header.to_le_bytes()[..3]);
    f.push(0);
    let rec = compressed_record(&f, MessageSysFlag::COMPRESSION_ZSTD_TYPE, 7);
    let (out, peak) = decode_alone(&rec, DEFAULT_MAX_BODY_SIZE);
    match out {
        Err(CodecError::Decompress(msg)) => {
            assert!(msg.contains(&(8 * MIB).to_string()), "{msg}");
            assert!(msg.contains(&DEFAULT_MAX_BODY_SIZE.to_string()), "{msg}");
        }
        Err(other) => panic!("not a decompression error: {other}"),
        Ok(body) => panic!("decoded {} bytes of a frame declaring 8 MiB", body.len()),
    }
    assert!(peak < MIB, "held {peak} bytes for a frame it refused");
}

#[test]
fn a_larger_bound_accepts_the_body_and_a_smaller_one_rejects_it() {
    // 6 MiB of data that is not all zeros, so every codec really works.
    let data: Vec<u8> = (0..6 * MIB).map(|i| (i % 251) as u8).collect();
    let zlib = {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(5));
        z.write_all(&data).unwrap();
        z.finish().unwrap()
    };
    let lz4 = {
        use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};
        let info = FrameInfo::new()
            .block_size(BlockSize::Max4MB)
            .block_mode(BlockMode::Independent);
        let mut enc = FrameEncoder::with_frame_info(info, Vec::new());
        enc.write_all(&data).unwrap();
        enc.finish().unwrap()
    };
    let zstd =
        ruzstd::encoding::compress_to_vec(&data[..], ruzstd::encoding::CompressionLevel::Fastest);
    for (name, bits, frame, working_set) in [
        (
            "zlib",
            MessageSysFlag::COMPRESSION_ZLIB_TYPE,
            zlib,
            ZLIB_WORKING_SET,
        ),
        (
            "lz4",
            MessageSysFlag::COMPRESSION_LZ4_TYPE,
            lz4,
            LZ4_WORKING_SET,
        ),
        (
            "zstd",
            MessageSysFlag::COMPRESSION_ZSTD_TYPE,
            zstd,
            zstd_working_set(8 * MIB),
        ),
    ] {
        let rec = compressed_record(&frame, bits, 3);
        // Under Java's default bound (4 MiB) it does not decode...
        let (out, _) = decode_alone(&rec, DEFAULT_MAX_BODY_SIZE);
        assert!(
            matches!(out, Err(CodecError::Decompress(_))),
            "{name}: {:?}",
            out.map(|b| b.len())
        );
        // ...under a bound of 8 MiB it does, intact, and never holding more than the bound.
        let (out, peak) = decode_alone(&rec, 8 * MIB);
        let body = out.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(body[..] == data[..], "{name}: the body comes back intact");
        assert!(
            peak <= 8 * MIB + working_set,
            "{name}: decoding 6 MiB under an 8 MiB bound held {peak} bytes"
        );
    }
}
