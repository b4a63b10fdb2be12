//! `evt`: event sourcing and CQRS for Rust services, driven by macros; a port of evtstore.
//!
//! This facade re-exports [`evt_core`] (runtime, in-memory provider, macros); the storage
//! providers join it behind features: `mongo`, `postgres`, `sqlite` (`evt::mongo`, ...). See the README for a tour.

pub use evt_core::*;

/// The MongoDB provider (feature `mongo`).
#[cfg(feature = "mongo")]
pub use evt_mongo as mongo;

/// The PostgreSQL provider (feature `postgres`).
#[cfg(feature = "postgres")]
pub use evt_postgres as postgres;

/// The SQLite provider (feature `sqlite`).
#[cfg(feature = "sqlite")]
pub use evt_sqlite as sqlite;
