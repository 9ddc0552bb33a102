//! The event recorder (in progress).
