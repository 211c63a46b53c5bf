//! In-process fakes for tests (feature `test-util`).
//!
//! [`FakeBroker`] speaks the remoting protocol on a local port and answers from a script, so
//! tests can inject faults a real broker cannot produce: silence, delays, closed connections,
//! garbage bytes, oversized frames.

mod fake_broker;

pub use fake_broker::{FakeAction, FakeBroker};
