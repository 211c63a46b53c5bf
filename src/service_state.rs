//! `ServiceState`: the lifecycle of producers, consumers and client instances. A leaf module
//! (it imports nothing), so that `error` can name it without depending on `common`.

/// Lifecycle state, as Java's `ServiceState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceState {
    /// Built but not started.
    CreateJust,
    /// Started and usable.
    Running,
    /// Shut down; cannot be restarted.
    ShutdownAlready,
    /// `start()` failed; cannot be restarted.
    StartFailed,
}
