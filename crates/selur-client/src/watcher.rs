//! The watcher (in progress).
