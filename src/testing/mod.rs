//! In-process fakes for tests (feature `test-util`).
