//! Pins the SeaORM 2 hook behaviours the capture design of acts_as_distributed relies on (see the
//! module doc of `crates/acts_as_distributed/src/capture.rs`). Every test here checks SeaORM
//! itself, through plain entities whose hooks record what SeaORM hands them, so that a SeaORM
//! upgrade that changes one of these behaviours fails here, loudly and by name, rather than as a
//! silently missing, doubled or wrong event somewhere else.

mod common;

use common::*;
use sea_orm::ActiveValue::{NotSet, Set, Unchanged};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    ModelTrait, PaginatorTrait, QueryFilter, TransactionTrait, Value, sea_query::Expr,
};

/// The hook recorders (`probe::CALLS`, `relay::CALLS`) are process-wide and the tests of this
/// binary run in parallel: every test that reads them holds this lock.
static HOOKS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A second plain entity, for what `probe` cannot show: its `before_delete` returns a different
/// ActiveModel when asked to (a `name` of `redirect:<id>`), and its hooks record which connection
/// type SeaORM hands them.
mod relay {
    use sea_orm::ActiveValue;
    use sea_orm::entity::prelude::*;
    use std::sync::Mutex;

    /// A relay row.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "hook_relays")]
    pub struct Model {
        /// Key.
        #[sea_orm(primary_key)]
        pub id: i32,
        /// A value; `redirect:<id>` makes `before_delete` return the row `<id>` instead.
        pub name: String,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    /// What the hooks saw, in order.
    static CALLS: Mutex<Vec<String>> = Mutex::new(Vec::new());

    fn record(call: String) {
        CALLS.lock().unwrap_or_else(|p| p.into_inner()).push(call);
    }

    /// Takes the recorded calls.
    pub fn take_calls() -> Vec<String> {
        std::mem::take(&mut *CALLS.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The last path segment of the connection type a hook was given.
    fn connection<C>() -> &'static str {
        let name = std::any::type_name::<C>();
        name.rsplit("::").next().unwrap_or(name)
    }

    #[async_trait::async_trait]
    impl ActiveModelBehavior for ActiveModel {
        async fn before_save<C>(self, _db: &C, insert: bool) -> Result<Self, DbErr>
        where
            C: ConnectionTrait,
        {
            record(format!("before_save({insert}) via {}", connection::<C>()));
            Ok(self)
        }

        async fn after_save<C>(model: Model, _db: &C, insert: bool) -> Result<Model, DbErr>
        where
            C: ConnectionTrait,
        {
            record(format!("after_save({insert}) via {}", connection::<C>()));
            Ok(model)
        }

        async fn before_delete<C>(self, _db: &C) -> Result<Self, DbErr>
        where
            C: ConnectionTrait,
        {
            record(format!(
                "before_delete {:?} {:?} via {}",
                self.id,
                self.name,
                connection::<C>()
            ));
            let target = match &self.name {
                ActiveValue::Set(name) | ActiveValue::Unchanged(name) => name
                    .strip_prefix("redirect:")
                    .and_then(|id| id.parse::<i32>().ok()),
                ActiveValue::NotSet => None,
            };
            Ok(match target {
                Some(id) => ActiveModel {
                    id: ActiveValue::Unchanged(id),
                    name: ActiveValue::Unchanged("returned".to_owned()),
                },
                None => self,
            })
        }

        async fn after_delete<C>(self, _db: &C) -> Result<Self, DbErr>
        where
            C: ConnectionTrait,
        {
            record(format!(
                "after_delete {:?} {:?} via {}",
                self.id,
                self.name,
                connection::<C>()
            ));
            Ok(self)
        }
    }
}

/// A fresh database on `backend` with the `relay` table too.
async fn test_db(backend: &Backend) -> TestDb {
    let db = TestDb::new(backend).await;
    db.create_table(relay::Entity).await;
    db
}

/// Inserts a probe row named `name` and forgets the hook calls that made it.
async fn probe_row(db: &DatabaseConnection, name: &str) -> probe::Model {
    let model = probe::ActiveModel {
        name: Set(name.to_owned()),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("insert a probe row");
    probe::take_calls();
    model
}

/// The stored probe row `id`, if any.
async fn stored_probe(db: &DatabaseConnection, id: i32) -> Option<probe::Model> {
    probe::Entity::find_by_id(id)
        .one(db)
        .await
        .expect("read a probe row")
}

/// How many probe rows there are.
async fn probe_count(db: &DatabaseConnection) -> u64 {
    probe::Entity::find()
        .count(db)
        .await
        .expect("count probe rows")
}

/// Inserts a relay row named `name` and forgets the hook calls that made it.
async fn relay_row(db: &DatabaseConnection, name: &str) -> relay::Model {
    let model = relay::ActiveModel {
        name: Set(name.to_owned()),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("insert a relay row");
    relay::take_calls();
    model
}

/// Changes a probe row's name behind SeaORM's back.
async fn rename_by_raw_sql(db: &DatabaseConnection, id: i32, name: &str) {
    db.execute_unprepared(&format!(
        "UPDATE probes SET name = '{name}' WHERE id = {id}"
    ))
    .await
    .expect("raw UPDATE");
}

/// Create events come from `after_save(insert = true)`, which must see the row as stored,
/// database-assigned key and defaults included, after `before_save(insert = true)` ran.
#[tokio::test]
async fn insert_runs_before_save_then_after_save_with_the_inserted_model() {
    let _hooks = HOOKS.lock().await;
    for backend in backends() {
        let db = test_db(&backend).await;
        let db = &db.db;
        let name = backend.name();
        probe::take_calls();

        let first = probe::ActiveModel {
            name: Set("a".to_owned()),
            ..Default::default()
        }
        .insert(db)
        .await
        .expect("insert a");
        let second = probe::ActiveModel {
            name: Set("b".to_owned()),
            ..Default::default()
        }
        .insert(db)
        .await
        .expect("insert b");

        assert_ne!(first.id, second.id, "{name}: the database assigns the keys");
        assert_eq!(stored_probe(db, first.id).await.as_ref(), Some(&first));
        assert_eq!(stored_probe(db, second.id).await.as_ref(), Some(&second));
        assert_eq!(
            probe::take_calls(),
            [
                r#"before_save(true) NotSet Set("a")"#.to_owned(),
                format!("after_save(true) {} a", first.id),
                r#"before_save(true) NotSet Set("b")"#.to_owned(),
                format!("after_save(true) {} b", second.id),
            ],
            "{name}"
        );
    }
}

/// Update events are built in `before_save(insert = false)`; `after_save(false)` must follow it
/// so the capture can tell an update's `after_save` from a create's.
#[tokio::test]
async fn update_runs_before_save_then_after_save() {
    let _hooks = HOOKS.lock().await;
    for backend in backends() {
        let db = test_db(&backend).await;
        let db = &db.db;
        let name = backend.name();
        let row = probe_row(db, "a").await;

        let mut am: probe::ActiveModel = row.clone().into();
        am.name = Set("b".to_owned());
        let updated = am.update(db).await.expect("update");

        assert_eq!(
            updated,
            probe::Model {
                id: row.id,
                name: "b".to_owned()
            },
            "{name}"
        );
        assert_eq!(stored_probe(db, row.id).await, Some(updated), "{name}");
        assert_eq!(
            probe::take_calls(),
            [
                format!(r#"before_save(false) Unchanged({}) Set("b")"#, row.id),
                format!("after_save(false) {} b", row.id),
            ],
            "{name}"
        );
    }
}

/// `before_save` runs the UPDATE itself and hands SeaORM the key alone: SeaORM must then write
/// nothing and read the stored row back by primary key (not echo the ActiveModel's stale values),
/// so `update` still returns what is stored.
#[tokio::test]
async fn update_with_nothing_set_rereads_the_row_by_primary_key() {
    let _hooks = HOOKS.lock().await;
    for backend in backends() {
        let db = test_db(&backend).await;
        let db = &db.db;
        let name = backend.name();
        let row = probe_row(db, "a").await;
        rename_by_raw_sql(db, row.id, "raw").await;

        // The key alone, as capture::before_save leaves it.
        let key_only = probe::ActiveModel {
            id: Unchanged(row.id),
            name: NotSet,
        };
        let returned = key_only.update(db).await.expect("update with only the key");
        assert_eq!(returned.name, "raw", "{name}: the stored value, read back");

        // A stale, unchanged value is not written either and does not come back.
        rename_by_raw_sql(db, row.id, "raw again").await;
        let stale = probe::ActiveModel {
            id: Set(row.id),
            name: Unchanged("a".to_owned()),
        };
        let returned = stale.update(db).await.expect("update with nothing Set");
        assert_eq!(
            returned.name, "raw again",
            "{name}: the stored value, read back"
        );
        assert_eq!(
            stored_probe(db, row.id).await.map(|m| m.name).as_deref(),
            Some("raw again"),
            "{name}: nothing was written"
        );

        assert_eq!(
            probe::take_calls(),
            [
                format!("before_save(false) Unchanged({}) NotSet", row.id),
                format!("after_save(false) {} raw", row.id),
                format!(r#"before_save(false) Set({}) Unchanged("a")"#, row.id),
                format!("after_save(false) {} raw again", row.id),
            ],
            "{name}"
        );
    }
}

/// A save of a row deleted meanwhile must fail, not report success: with nothing left to write
/// (the capture's own UPDATE ran in `before_save`) SeaORM's read-back fails with RecordNotFound;
/// with something to write, SeaORM's UPDATE fails with RecordNotUpdated. `after_save` never runs.
#[tokio::test]
async fn update_of_a_missing_row_fails_without_after_save() {
    let _hooks = HOOKS.lock().await;
    for backend in backends() {
        let db = test_db(&backend).await;
        let db = &db.db;
        let name = backend.name();
        let row = probe_row(db, "a").await;
        let missing = row.id + 1000;

        let nothing_set = probe::ActiveModel {
            id: Unchanged(missing),
            name: NotSet,
        }
        .update(db)
        .await;
        assert!(
            matches!(nothing_set, Err(DbErr::RecordNotFound(_))),
            "{name}: {nothing_set:?}"
        );

        let something_set = probe::ActiveModel {
            id: Unchanged(missing),
            name: Set("b".to_owned()),
        }
        .update(db)
        .await;
        assert!(
            matches!(something_set, Err(DbErr::RecordNotUpdated)),
            "{name}: {something_set:?}"
        );

        assert_eq!(probe_count(db).await, 1, "{name}: no row appeared");
        assert_eq!(
            probe::take_calls(),
            [
                format!("before_save(false) Unchanged({missing}) NotSet"),
                format!(r#"before_save(false) Unchanged({missing}) Set("b")"#),
            ],
            "{name}"
        );
    }
}

/// On MySQL / MariaDB the capture's UPDATE runs through `exec_without_returning`, which fails
/// with RecordNotUpdated when no row is affected: a save that sets a column to the value it
/// already holds must still count the row (the driver asks for found rows, not changed rows).
#[tokio::test]
async fn update_setting_the_stored_value_counts_the_row() {
    let _hooks = HOOKS.lock().await;
    for backend in backends() {
        let db = test_db(&backend).await;
        let db = &db.db;
        let name = backend.name();
        let row = probe_row(db, "same").await;

        let result = probe::Entity::update(probe::ActiveModel {
            id: Unchanged(row.id),
            name: Set("same".to_owned()),
        })
        .exec_without_returning(db)
        .await
        .expect("an UPDATE that changes nothing still matches the row");
        assert_eq!(result.rows_affected, 1, "{name}");

        let model = probe::ActiveModel {
            id: Unchanged(row.id),
            name: Set("same".to_owned()),
        }
        .update(db)
        .await
        .expect("update to the stored value");
        assert_eq!(model, row, "{name}");
        probe::take_calls();
    }
}

/// `update_without_returning` is a save path too: its update event is written by
/// `before_save(false)`, and no `after_save` must follow (none would have a model to see).
#[tokio::test]
async fn update_without_returning_runs_before_save_only() {
    let _hooks = HOOKS.lock().await;
    for backend in backends() {
        let db = test_db(&backend).await;
        let db = &db.db;
        let name = backend.name();
        let row = probe_row(db, "a").await;

        let result = probe::ActiveModel {
            id: Unchanged(row.id),
            name: Set("b".to_owned()),
        }
        .update_without_returning(db)
        .await
        .expect("update_without_returning");

        assert_eq!(result.rows_affected, 1, "{name}");
        assert_eq!(
            stored_probe(db, row.id).await.map(|m| m.name).as_deref(),
            Some("b"),
            "{name}"
        );
        assert_eq!(
            probe::take_calls(),
            [format!(
                r#"before_save(false) Unchanged({}) Set("b")"#,
                row.id
            )],
            "{name}"
        );
    }
}

/// After the capture's `before_save` ran the UPDATE itself, `update_without_returning` gets an
/// ActiveModel with nothing Set: SeaORM must then succeed without touching the row (no second
/// write, no RecordNotUpdated), whether or not the row still exists.
#[tokio::test]
async fn update_without_returning_with_nothing_set_is_a_no_op() {
    let _hooks = HOOKS.lock().await;
    for backend in backends() {
        let db = test_db(&backend).await;
        let db = &db.db;
        let name = backend.name();
        let row = probe_row(db, "a").await;
        rename_by_raw_sql(db, row.id, "raw").await;

        let result = probe::ActiveModel {
            id: Unchanged(row.id),
            name: Unchanged("a".to_owned()),
        }
        .update_without_returning(db)
        .await
        .expect("update_without_returning with nothing Set");
        assert_eq!(result.rows_affected, 0, "{name}");
        assert_eq!(
            stored_probe(db, row.id).await.map(|m| m.name).as_deref(),
            Some("raw"),
            "{name}: the row is untouched"
        );

        let missing = probe::ActiveModel {
            id: Unchanged(row.id + 1000),
            name: NotSet,
        }
        .update_without_returning(db)
        .await
        .expect("update_without_returning of a missing row with nothing Set");
        assert_eq!(missing.rows_affected, 0, "{name}");

        assert_eq!(
            probe::take_calls(),
            [
                format!(r#"before_save(false) Unchanged({}) Unchanged("a")"#, row.id),
                format!("before_save(false) Unchanged({}) NotSet", row.id + 1000),
            ],
            "{name}"
        );
    }
}

/// `save` must reach the same hooks as `insert` / `update`, with `insert` telling them apart:
/// the capture writes a create event for `true` and runs its UPDATE for `false`.
#[tokio::test]
async fn save_inserts_when_the_key_is_not_set_and_updates_otherwise() {
    let _hooks = HOOKS.lock().await;
    for backend in backends() {
        let db = test_db(&backend).await;
        let db = &db.db;
        let name = backend.name();
        probe::take_calls();

        let saved = probe::ActiveModel {
            id: NotSet,
            name: Set("a".to_owned()),
        }
        .save(db)
        .await
        .expect("save a new row");
        let id = match saved.id {
            Unchanged(id) => id,
            ref other => panic!("{name}: the saved key comes back Unchanged, got {other:?}"),
        };
        assert_eq!(saved.name, Unchanged("a".to_owned()), "{name}");

        let mut am = saved;
        am.name = Set("b".to_owned());
        let resaved = am.save(db).await.expect("save with an Unchanged key");
        assert_eq!(resaved.name, Unchanged("b".to_owned()), "{name}");

        let set_key = probe::ActiveModel {
            id: Set(id),
            name: Set("c".to_owned()),
        }
        .save(db)
        .await
        .expect("save with a Set key");
        assert_eq!(set_key.name, Unchanged("c".to_owned()), "{name}");

        assert_eq!(probe_count(db).await, 1, "{name}: one row, updated twice");
        assert_eq!(
            probe::take_calls(),
            [
                r#"before_save(true) NotSet Set("a")"#.to_owned(),
                format!("after_save(true) {id} a"),
                format!(r#"before_save(false) Unchanged({id}) Set("b")"#),
                format!("after_save(false) {id} b"),
                format!(r#"before_save(false) Set({id}) Set("c")"#),
                format!("after_save(false) {id} c"),
            ],
            "{name}"
        );
    }
}

/// The capture's `before_delete` reads the whole row and returns it (or the key alone, Set, when
/// the row is missing); `after_delete` tells the two apart and writes the destroy event from it.
/// So SeaORM must delete by the key of the ActiveModel `before_delete` returned and pass that
/// same ActiveModel to `after_delete`, not the caller's.
#[tokio::test]
async fn delete_uses_and_passes_on_the_active_model_before_delete_returned() {
    let _hooks = HOOKS.lock().await;
    for backend in backends() {
        let db = test_db(&backend).await;
        let db = &db.db;
        let name = backend.name();
        let asked = relay_row(db, "asked").await;
        let target = relay_row(db, "target").await;

        let result = relay::ActiveModel {
            id: Set(asked.id),
            name: Set(format!("redirect:{}", target.id)),
        }
        .delete(db)
        .await
        .expect("delete");

        assert_eq!(result.rows_affected, 1, "{name}");
        let left: Vec<relay::Model> = relay::Entity::find()
            .all(db)
            .await
            .expect("read relay rows");
        assert_eq!(
            left,
            std::slice::from_ref(&asked),
            "{name}: the returned key was deleted"
        );
        assert_eq!(
            relay::take_calls(),
            [
                format!(
                    r#"before_delete Set({}) Set("redirect:{}") via DatabaseConnection"#,
                    asked.id, target.id
                ),
                format!(
                    r#"after_delete Unchanged({}) Unchanged("returned") via DatabaseConnection"#,
                    target.id
                ),
            ],
            "{name}"
        );
    }
}

/// A missing row leaves no destroy event only because the capture's `after_delete` recognises the
/// key-only ActiveModel; that needs SeaORM to call `after_delete` even when the DELETE affected
/// nothing (and to report Ok with 0 rows, not an error). A delete without a key fails in SeaORM
/// after `before_delete`, which the capture leaves to SeaORM.
#[tokio::test]
async fn delete_of_a_missing_row_still_runs_after_delete() {
    let _hooks = HOOKS.lock().await;
    for backend in backends() {
        let db = test_db(&backend).await;
        let db = &db.db;
        let name = backend.name();
        let row = probe_row(db, "kept").await;
        let missing = row.id + 1000;

        let result = probe::ActiveModel {
            id: Set(missing),
            name: NotSet,
        }
        .delete(db)
        .await
        .expect("deleting a missing row is Ok");
        assert_eq!(result.rows_affected, 0, "{name}");

        let keyless = probe::ActiveModel {
            id: NotSet,
            name: Set("kept".to_owned()),
        }
        .delete(db)
        .await;
        assert!(
            matches!(keyless, Err(DbErr::PrimaryKeyNotSet { .. })),
            "{name}: {keyless:?}"
        );

        assert_eq!(probe_count(db).await, 1, "{name}: nothing was deleted");
        assert_eq!(
            probe::take_calls(),
            [
                format!("before_delete Set({missing}) NotSet"),
                format!("after_delete Set({missing}) NotSet"),
                r#"before_delete NotSet Set("kept")"#.to_owned(),
            ],
            "{name}"
        );
    }
}

/// `Model::delete` is a delete path users reach for as often as `ActiveModel::delete`: it must
/// go through the same hooks, or destroys done that way would leave no event.
#[tokio::test]
async fn model_delete_runs_the_same_hooks() {
    let _hooks = HOOKS.lock().await;
    for backend in backends() {
        let db = test_db(&backend).await;
        let db = &db.db;
        let name = backend.name();
        let row = probe_row(db, "a").await;
        let id = row.id;

        let result = row.delete(db).await.expect("Model::delete");

        assert_eq!(result.rows_affected, 1, "{name}");
        assert_eq!(stored_probe(db, id).await, None, "{name}");
        assert_eq!(
            probe::take_calls(),
            [
                format!(r#"before_delete Unchanged({id}) Unchanged("a")"#),
                format!(r#"after_delete Unchanged({id}) Unchanged("a")"#),
            ],
            "{name}"
        );
    }
}

/// The capture's own `before_save` writes through `Entity::update(am).exec` /
/// `exec_without_returning` (hooks there would recurse), and the documented bypass paths (bulk
/// and builder statements) must write no event: none of them may run a hook.
#[tokio::test]
async fn bypass_paths_run_no_hooks() {
    let _hooks = HOOKS.lock().await;
    for backend in backends() {
        let db = test_db(&backend).await;
        let db = &db.db;
        let name = backend.name();
        probe::take_calls();

        let inserted = probe::Entity::insert(probe::ActiveModel {
            name: Set("insert".to_owned()),
            ..Default::default()
        })
        .exec(db)
        .await
        .expect("Entity::insert(..).exec");
        let id = inserted.last_insert_id;
        let returned = probe::Entity::insert(probe::ActiveModel {
            name: Set("returning".to_owned()),
            ..Default::default()
        })
        .exec_with_returning(db)
        .await
        .expect("Entity::insert(..).exec_with_returning");
        probe::Entity::insert_many([
            probe::ActiveModel {
                name: Set("many 1".to_owned()),
                ..Default::default()
            },
            probe::ActiveModel {
                name: Set("many 2".to_owned()),
                ..Default::default()
            },
        ])
        .exec(db)
        .await
        .expect("Entity::insert_many");
        assert_eq!(probe_count(db).await, 4, "{name}: the inserts happened");

        let updated = probe::Entity::update(probe::ActiveModel {
            id: Unchanged(id),
            name: Set("update".to_owned()),
        })
        .exec(db)
        .await
        .expect("Entity::update(..).exec");
        assert_eq!(updated.name, "update", "{name}");
        let result = probe::Entity::update(probe::ActiveModel {
            id: Unchanged(returned.id),
            name: Set("without returning".to_owned()),
        })
        .exec_without_returning(db)
        .await
        .expect("Entity::update(..).exec_without_returning");
        assert_eq!(result.rows_affected, 1, "{name}");
        let result = probe::Entity::update_many()
            .col_expr(probe::Column::Name, Expr::value("bulk"))
            .filter(probe::Column::Name.starts_with("many"))
            .exec(db)
            .await
            .expect("Entity::update_many");
        assert_eq!(result.rows_affected, 2, "{name}");

        let result = probe::Entity::delete_by_id(id)
            .exec(db)
            .await
            .expect("Entity::delete_by_id");
        assert_eq!(result.rows_affected, 1, "{name}");
        let result = probe::Entity::delete(probe::ActiveModel {
            id: Unchanged(returned.id),
            name: NotSet,
        })
        .exec(db)
        .await
        .expect("Entity::delete(..).exec");
        assert_eq!(result.rows_affected, 1, "{name}");
        let result = probe::Entity::delete_many()
            .filter(probe::Column::Name.eq("bulk"))
            .exec(db)
            .await
            .expect("Entity::delete_many");
        assert_eq!(result.rows_affected, 2, "{name}");
        assert_eq!(probe_count(db).await, 0, "{name}: the deletes happened");

        assert_eq!(probe::take_calls(), Vec::<String>::new(), "{name}");
    }
}

/// The capture writes its events through the connection its hooks are given, and decides
/// whether it runs inside a transaction from that connection's type name (`check_connection`):
/// SeaORM must hand the hooks the caller's own connection, the transaction included.
#[tokio::test]
async fn hooks_receive_the_callers_connection() {
    let _hooks = HOOKS.lock().await;
    for backend in backends() {
        let db = test_db(&backend).await;
        let db = &db.db;
        let name = backend.name();
        relay::take_calls();

        let outside = relay::ActiveModel {
            name: Set("outside".to_owned()),
            ..Default::default()
        }
        .insert(db)
        .await
        .expect("insert outside a transaction");
        let txn = db.begin().await.expect("begin");
        let inside = relay::ActiveModel {
            name: Set("inside".to_owned()),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .expect("insert inside a transaction");
        inside
            .clone()
            .delete(&txn)
            .await
            .expect("delete inside a transaction");
        txn.commit().await.expect("commit");
        outside
            .clone()
            .delete(db)
            .await
            .expect("delete outside a transaction");

        assert_eq!(
            relay::take_calls(),
            [
                "before_save(true) via DatabaseConnection".to_owned(),
                "after_save(true) via DatabaseConnection".to_owned(),
                "before_save(true) via DatabaseTransaction".to_owned(),
                "after_save(true) via DatabaseTransaction".to_owned(),
                format!(
                    r#"before_delete Unchanged({0}) Unchanged("inside") via DatabaseTransaction"#,
                    inside.id
                ),
                format!(
                    r#"after_delete Unchanged({0}) Unchanged("inside") via DatabaseTransaction"#,
                    inside.id
                ),
                format!(
                    r#"before_delete Unchanged({0}) Unchanged("outside") via DatabaseConnection"#,
                    outside.id
                ),
                format!(
                    r#"after_delete Unchanged({0}) Unchanged("outside") via DatabaseConnection"#,
                    outside.id
                ),
            ],
            "{name}"
        );
    }
}

/// An event must commit or roll back with the change it records: the hooks' writes (the
/// distributed `user`'s create event here) go through the caller's transaction.
#[tokio::test]
async fn hook_writes_join_the_callers_transaction() {
    for backend in backends() {
        let db = TestDb::new(&backend).await;
        let name = backend.name();

        let txn = db.db.begin().await.expect("begin");
        let user = new_user("rolled back")
            .insert(&txn)
            .await
            .expect("insert a user");
        assert_eq!(events(&txn).await.len(), 1, "{name}: the event, inside");
        txn.rollback().await.expect("roll back");
        assert_eq!(
            user::Entity::find_by_id(user.id)
                .one(&db.db)
                .await
                .expect("read users"),
            None,
            "{name}: the user was rolled back"
        );
        assert_eq!(
            events(&db.db).await,
            [],
            "{name}: the event was rolled back"
        );

        // The same, committed, keeps both: the rollback above is what removed the event.
        let txn = db.db.begin().await.expect("begin");
        let user = new_user("committed")
            .insert(&txn)
            .await
            .expect("insert a user");
        txn.commit().await.expect("commit");
        assert_eq!(
            user::Entity::find()
                .count(&db.db)
                .await
                .expect("count users"),
            1,
            "{name}"
        );
        let events = events(&db.db).await;
        assert_eq!(events.len(), 1, "{name}: {events:?}");
        assert_eq!(events[0].action, "create", "{name}");
        assert_eq!(events[0].distributed_id, user.uuid.to_string(), "{name}");
    }
}

/// `decode_changes` turns an event's JSON back into column values using the column's entry in
/// `ActiveModel::default_values()` as the template of the value's kind: that entry must be a
/// typed value, the NULL of the field's type for an `Option` field and a value of the field's
/// type otherwise. Pure SeaORM, no database involved.
#[test]
fn default_values_gives_a_typed_value_per_column() {
    let sample = sample::ActiveModel::default_values();
    let value = |c: sample::Column| sample.get(c).into_value();
    assert_eq!(value(sample::Column::Flag), Some(Value::Bool(None)));
    assert_eq!(value(sample::Column::Small), Some(Value::SmallInt(None)));
    assert_eq!(value(sample::Column::Int), Some(Value::Int(None)));
    assert_eq!(value(sample::Column::Big), Some(Value::BigInt(None)));
    assert_eq!(value(sample::Column::Single), Some(Value::Float(None)));
    assert_eq!(value(sample::Column::Double), Some(Value::Double(None)));
    assert_eq!(value(sample::Column::Amount), Some(Value::Decimal(None)));
    assert_eq!(value(sample::Column::Text), Some(Value::String(None)));
    assert_eq!(value(sample::Column::Day), Some(Value::ChronoDate(None)));
    assert_eq!(value(sample::Column::Clock), Some(Value::ChronoTime(None)));
    assert_eq!(
        value(sample::Column::Local),
        Some(Value::ChronoDateTime(None))
    );
    assert_eq!(
        value(sample::Column::Zoned),
        Some(Value::ChronoDateTimeWithTimeZone(None))
    );
    assert_eq!(
        value(sample::Column::Utc),
        Some(Value::ChronoDateTimeUtc(None))
    );
    assert_eq!(value(sample::Column::Token), Some(Value::Uuid(None)));
    assert_eq!(value(sample::Column::Doc), Some(Value::Json(None)));
    assert_eq!(value(sample::Column::Bytes), Some(Value::Bytes(None)));
    assert!(
        matches!(value(sample::Column::Id), Some(Value::Int(Some(_)))),
        "{:?}",
        value(sample::Column::Id)
    );

    let user = user::ActiveModel::default_values();
    let value = |c: user::Column| user.get(c).into_value();
    let typed = |c: user::Column, ok: fn(&Value) -> bool| {
        let v = value(c);
        assert!(v.as_ref().is_some_and(ok), "user {c:?}: {v:?}");
    };
    typed(user::Column::Id, |v| matches!(v, Value::Int(Some(_))));
    typed(user::Column::Logins, |v| matches!(v, Value::Int(Some(_))));
    typed(user::Column::Uuid, |v| matches!(v, Value::Uuid(Some(_))));
    typed(user::Column::Login, |v| matches!(v, Value::String(Some(_))));
    typed(user::Column::CreatedAt, |v| {
        matches!(v, Value::ChronoDateTimeUtc(Some(_)))
    });
    typed(user::Column::UpdatedAt, |v| {
        matches!(v, Value::ChronoDateTimeUtc(Some(_)))
    });
    assert_eq!(value(user::Column::Email), Some(Value::String(None)));
    assert_eq!(value(user::Column::Password), Some(Value::String(None)));
    assert_eq!(value(user::Column::Activated), Some(Value::Bool(None)));
}
