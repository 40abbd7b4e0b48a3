//! Verify: compare source and replica per entity on what events carry.

use super::apply::{Entry, same};
use crate::backend::begin_consistent_read;
use crate::error::Error;
use crate::values;
use sea_orm::DatabaseConnection;
use std::fmt;
use std::sync::Arc;

/// The result of [`Replicator::verify`](super::Replicator::verify): one entry per entity.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Per registered entity, in registration order.
    pub entities: Vec<EntityDiff>,
}

/// How one entity's rows differ between source and replica.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct EntityDiff {
    /// The `distributed_type`.
    pub type_name: String,
    /// Rows on the source.
    pub source_rows: usize,
    /// Rows on the replica.
    pub replica_rows: usize,
    /// `distributed_id`s on the source and not on the replica, sorted.
    pub missing: Vec<String>,
    /// `distributed_id`s on the replica and not on the source, sorted.
    pub extra: Vec<String>,
    /// Objects on both sides with different values: `distributed_id` and the differing columns.
    pub differing: Vec<(String, Vec<String>)>,
}

impl EntityDiff {
    /// Whether source and replica hold the same objects with the same values.
    pub fn is_equal(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.differing.is_empty()
    }
}

impl VerifyReport {
    /// Whether every entity is equal.
    pub fn is_equal(&self) -> bool {
        self.entities.iter().all(EntityDiff::is_equal)
    }
}

/// `equal`, or per differing entity the counts and the first ids of each kind.
impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_equal() {
            let rows: usize = self.entities.iter().map(|e| e.source_rows).sum();
            return write!(f, "equal ({} entities, {rows} rows)", self.entities.len());
        }
        const SHOWN: usize = 10;
        for e in self.entities.iter().filter(|e| !e.is_equal()) {
            writeln!(
                f,
                "{}: {} rows on the source, {} on the replica",
                e.type_name, e.source_rows, e.replica_rows
            )?;
            let list = |ids: &[String]| {
                let mut s = ids
                    .iter()
                    .take(SHOWN)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ");
                if ids.len() > SHOWN {
                    s.push_str(&format!(", … ({} more)", ids.len() - SHOWN));
                }
                s
            };
            if !e.missing.is_empty() {
                writeln!(
                    f,
                    "  missing on the replica ({}): {}",
                    e.missing.len(),
                    list(&e.missing)
                )?;
            }
            if !e.extra.is_empty() {
                writeln!(
                    f,
                    "  only on the replica ({}): {}",
                    e.extra.len(),
                    list(&e.extra)
                )?;
            }
            for (id, columns) in e.differing.iter().take(SHOWN) {
                writeln!(f, "  differs: {id} ({})", columns.join(", "))?;
            }
            if e.differing.len() > SHOWN {
                writeln!(
                    f,
                    "  … {} more differing objects",
                    e.differing.len() - SHOWN
                )?;
            }
        }
        Ok(())
    }
}

pub(super) async fn verify(
    entries: &[Arc<dyn Entry>],
    source: &DatabaseConnection,
    replica: &DatabaseConnection,
) -> Result<VerifyReport, Error> {
    // Each side read as one consistent state.
    let source = begin_consistent_read(source).await?;
    let replica = begin_consistent_read(replica).await?;
    let mut entities = Vec::new();
    for entry in entries {
        let columns = entry.compared_columns();
        let ours = entry.rows(&source).await?;
        let theirs = entry.rows(&replica).await?;
        let mut diff = EntityDiff {
            type_name: entry.type_name().to_owned(),
            source_rows: ours.len(),
            replica_rows: theirs.len(),
            ..EntityDiff::default()
        };
        for (id, values) in &ours {
            match theirs.get(id) {
                None => diff.missing.push(id.clone()),
                Some(other) => {
                    let differ: Vec<String> = columns
                        .iter()
                        .zip(values.iter().zip(other))
                        .filter(|(_, (a, b))| !same(a, b))
                        .map(|(c, (a, b))| {
                            format!("{c}: {} vs {}", values::to_json(a), values::to_json(b))
                        })
                        .collect();
                    if !differ.is_empty() {
                        diff.differing.push((id.clone(), differ));
                    }
                }
            }
        }
        diff.extra = theirs
            .keys()
            .filter(|id| !ours.contains_key(*id))
            .cloned()
            .collect();
        diff.missing.sort();
        diff.extra.sort();
        diff.differing.sort();
        entities.push(diff);
    }
    source.commit().await?;
    replica.commit().await?;
    Ok(VerifyReport { entities })
}
