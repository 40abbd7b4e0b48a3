//! Shared support for the integration tests, examples and benchmarks of acts_as_distributed:
//! test entities, fresh databases on every backend and the benchmarks' harness. Not published.

pub mod bench;
pub mod entities;
pub mod testdb;

pub use testdb::{Backend, TestDb};
