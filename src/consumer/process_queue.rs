//! ProcessQueue.
