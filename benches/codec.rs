//! Codec benchmarks (filled in with the protocol tests).
fn main() {}
