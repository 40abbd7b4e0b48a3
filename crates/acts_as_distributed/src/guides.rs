//! The guides, one module each: the long-form documentation of `docs/`, beside the API.
//!
//! - [`capture`]: how each action is captured, every SeaORM path, scopes, the transaction helper,
//!   strict mode, nested saves, `sea-orm-cli` entities, sensitive data, previous values.
//! - [`values`]: the JSON form of each value, and decoding it back.
//! - [`queue`]: workers and consumers, guarantees, states, retries, leases, pruning, tuning, and
//!   the SQL each step runs.
//! - [`replication`]: the replicator, keys and foreign keys, errors, schema changes, snapshot,
//!   verify, two-way replication.
//! - [`events`]: the JSON form of events, consumer status and worker health.
//!
//! Their examples run as doc tests of the workspace's root package, which has the databases and
//! migrations they need (their hidden lines set those up); here they are documentation only.

// Links between the guides. Each guide ends with definitions such as `[values.md]: values.md`,
// which GitHub resolves; in Markdown the first definition of a label wins, so rustdoc takes these,
// placed before the guide, which name the modules.
macro_rules! guide {
    ($name:ident, $file:literal) => {
        #[doc = "[capture.md]: crate::guides::capture"]
        #[doc = "[capture.md#sensitive-data]: crate::guides::capture#sensitive-data-except-redact-and-erase"]
        #[doc = "[values.md]: crate::guides::values"]
        #[doc = "[queue.md]: crate::guides::queue"]
        #[doc = "[replication.md]: crate::guides::replication"]
        #[doc = "[events.md]: crate::guides::events"]
        #[doc = "[benchmarks.md]: https://github.com/acts-as-distributed/acts_as_distributed/blob/main/docs/benchmarks.md"]
        #[doc = "[benchmarks.md#replication]: https://github.com/acts-as-distributed/acts_as_distributed/blob/main/docs/benchmarks.md#replication"]
        #[doc = ""]
        // Not collected as doc tests of this crate: the root package runs them (see above).
        #[cfg_attr(not(doctest), doc = include_str!($file))]
        pub mod $name {}
    };
}

guide!(capture, "../docs/capture.md");
guide!(values, "../docs/values.md");
guide!(queue, "../docs/queue.md");
guide!(replication, "../docs/replication.md");
guide!(events, "../docs/events.md");
