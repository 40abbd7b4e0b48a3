//! Shared support for the integration tests, examples and benchmarks of acts_as_distributed:
//! test entities, fresh databases on every backend and the benchmarks' harness. Not published.

pub mod bench;
pub mod doc;
pub mod entities;
pub mod testdb;

pub use testdb::{Backend, TestDb};

/// The examples of `README.md` and of the guides in `docs/`, run by `cargo test --doc`.
#[cfg(doctest)]
pub mod doctests {
    #[doc = include_str!("../README.md")]
    pub struct Readme;
    #[doc = include_str!("../docs/capture.md")]
    pub struct Capture;
    #[doc = include_str!("../docs/values.md")]
    pub struct Values;
    #[doc = include_str!("../docs/queue.md")]
    pub struct Queue;
    #[doc = include_str!("../docs/replication.md")]
    pub struct Replication;
    #[doc = include_str!("../docs/events.md")]
    pub struct Events;
}
