//! Threads: ServiceThread, ThreadPoolExecutor and the scheduled executor.
