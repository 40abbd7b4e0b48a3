//! Bulk and builder writes with `exec_distributed` / `insert_many`: one event per affected row,
//! carrying what the statement stored, on every backend. Each test compares the events with a
//! fresh SELECT of the rows.

mod common;

use acts_as_distributed::prelude::*;
use acts_as_distributed::{OutsideTransaction, Settings, insert_many};
use chrono::{TimeZone, Utc};
use common::*;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, Set,
    TransactionTrait,
};
use serde_json::{Value as Json, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{RwLock, RwLockReadGuard};

/// Settings are process-wide: the strict-mode test takes this for writing, the others for reading.
static SETTINGS: RwLock<()> = RwLock::const_new(());

async fn default_settings() -> RwLockReadGuard<'static, ()> {
    SETTINGS.read().await
}

/// A user row as a bulk insert must give it (no hooks run: uuid and timestamps are the caller's).
fn user_row(login: &str, email: Option<&str>) -> user::ActiveModel {
    let now = Utc::now();
    user::ActiveModel {
        uuid: Set(uuid::Uuid::new_v4()),
        login: Set(login.to_owned()),
        email: Set(email.map(str::to_owned)),
        password: Set(Some(format!("secret of {login}"))),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
}

/// Inserts users with SeaORM alone: no events, and no model of them in the test.
async fn seed<C: ConnectionTrait>(db: &C, logins: &[&str]) {
    user::Entity::insert_many(logins.iter().map(|l| user_row(l, None)))
        .exec(db)
        .await
        .expect("seed users");
}

async fn users<C: ConnectionTrait>(db: &C) -> Vec<user::Model> {
    user::Entity::find()
        .order_by_asc(user::Column::Id)
        .all(db)
        .await
        .expect("read users")
}

/// `(distributed_id, changes)` of each event, in order.
fn id_and_changes(events: &[acts_as_distributed::distribute::Model]) -> Vec<(String, Json)> {
    events
        .iter()
        .map(|e| (e.distributed_id.clone(), e.changes.clone()))
        .collect()
}

fn attributes(row: &user::Model) -> Json {
    Json::Object(user::Entity::distributed_attributes(row))
}

#[tokio::test]
async fn insert_many_records_a_create_per_row_as_stored() {
    let _settings = default_settings().await;
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let name = backend.name();
        let txn = t.db.begin().await.expect("begin");
        let mut ada = user_row("ada", Some("ada@example.com"));
        ada.activated = Set(Some(true));
        // `logins` is never set: the database default (0) is stored and recorded.
        let returned = insert_many(&txn, [ada, user_row("grace", None)])
            .await
            .expect("insert_many");
        txn.commit().await.expect("commit");

        let stored = users(&t.db).await;
        assert_eq!(returned, stored, "{name}: the rows as stored, in order");
        let events = events(&t.db).await;
        assert!(
            events
                .iter()
                .all(|e| e.action == "create" && e.distributed_type == "User")
        );
        assert_eq!(
            id_and_changes(&events),
            stored
                .iter()
                .map(|u| (u.uuid.to_string(), attributes(u)))
                .collect::<Vec<_>>(),
            "{name}"
        );
        assert_eq!(
            events[0].changes,
            json!({"uuid": stored[0].uuid.to_string(), "login": "ada", "email": "ada@example.com",
                   "logins": 0, "activated": true}),
            "{name}: the default is recorded, the password is not"
        );
        // Set in one row only: SeaORM's multi-row insert writes NULL in the others, and so does
        // the row-by-row insert of MySQL.
        assert_eq!(stored[1].activated, None, "{name}");
        assert_eq!(events[1].changes["activated"], Json::Null, "{name}");
    }
}

#[tokio::test]
async fn insert_many_of_composite_and_string_keys() {
    let _settings = default_settings().await;
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let name = backend.name();
        let txn = t.db.begin().await.expect("begin");
        let members =
            [(1, 10, "owner"), (2, 10, "guest")].map(|(u, g, role)| membership::ActiveModel {
                user_id: Set(u),
                group_id: Set(g),
                role: Set(role.to_owned()),
                note: Set(Some("not distributed".to_owned())),
            });
        insert_many(&txn, members).await.expect("memberships");
        let notes = ["a", "b"].map(|code| note::ActiveModel {
            code: Set(code.to_owned()),
            body: Set(format!("body {code}")),
        });
        let stored = insert_many(&txn, notes).await.expect("notes");
        assert_eq!(stored[1].body, "body b");
        txn.commit().await.expect("commit");

        let seen: Vec<(String, String, Json)> = events(&t.db)
            .await
            .into_iter()
            .map(|e| (e.distributed_type, e.distributed_id, e.changes))
            .collect();
        assert_eq!(
            seen,
            [
                (
                    "GroupMember".into(),
                    "[1,10]".into(),
                    json!({"role": "owner"})
                ),
                (
                    "GroupMember".into(),
                    "[2,10]".into(),
                    json!({"role": "guest"})
                ),
                ("Note".into(), "a".into(), json!({"body": "body a"})),
                ("Note".into(), "b".into(), json!({"body": "body b"})),
            ],
            "{name}"
        );
    }
}

#[tokio::test]
async fn entity_insert_records_a_create_and_refuses_upserts() {
    let _settings = default_settings().await;
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let name = backend.name();
        let txn = t.db.begin().await.expect("begin");
        let ada = user::Entity::insert(user_row("ada", None))
            .exec_distributed(&txn)
            .await
            .expect("insert");
        let upsert = user::Entity::insert(user_row("ada", None))
            .on_conflict(
                OnConflict::column(user::Column::Login)
                    .update_column(user::Column::Email)
                    .to_owned(),
            )
            .exec_distributed(&txn)
            .await
            .expect_err("an upsert is refused");
        assert!(upsert.to_string().contains("upsert"), "{name}: {upsert}");
        txn.commit().await.expect("commit");

        assert_eq!(users(&t.db).await, std::slice::from_ref(&ada), "{name}");
        assert_eq!(
            id_and_changes(&events(&t.db).await),
            [(ada.uuid.to_string(), attributes(&ada))],
            "{name}"
        );
    }
}

#[tokio::test]
async fn update_many_records_rows_never_loaded_with_the_stored_result_of_an_expression() {
    let _settings = default_settings().await;
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let name = backend.name();
        seed(&t.db, &["ann", "bob", "amy", "cid"]).await;
        user::Entity::update_many()
            .col_expr(user::Column::Logins, Expr::value(10))
            .filter(user::Column::Login.eq("amy"))
            .exec(&t.db)
            .await
            .expect("plain update, no event");

        let txn = t.db.begin().await.expect("begin");
        let returned = user::Entity::update_many()
            .col_expr(user::Column::Logins, Expr::col(user::Column::Logins).add(1))
            .col_expr(user::Column::Password, Expr::value("reset")) // never distributed
            .filter(user::Column::Login.starts_with("a"))
            .exec_distributed(&txn)
            .await
            .expect("update_many");
        txn.commit().await.expect("commit");

        let stored = users(&t.db).await;
        let matched: Vec<&user::Model> =
            stored.iter().filter(|u| u.login.starts_with('a')).collect();
        assert_eq!(
            matched.iter().map(|u| u.logins).collect::<Vec<_>>(),
            [1, 11],
            "{name}"
        );
        let mut returned = returned;
        returned.sort_by_key(|u| u.id);
        assert_eq!(
            returned,
            matched.iter().map(|u| (*u).clone()).collect::<Vec<_>>(),
            "{name}: the rows as stored"
        );
        let mut seen = id_and_changes(&events(&t.db).await);
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        let mut expected: Vec<(String, Json)> = matched
            .iter()
            .map(|u| (u.uuid.to_string(), json!({"logins": u.logins})))
            .collect();
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(seen, expected, "{name}: one event per matching row");
        assert!(
            stored
                .iter()
                .filter(|u| !u.login.starts_with('a'))
                .all(|u| u.password.as_deref() != Some("reset")),
            "{name}: rows outside the filter are untouched"
        );
    }
}

/// Values as stored, not as sent: a datetime with nanoseconds is cut to the column's precision
/// (seconds on MySQL, microseconds on PostgreSQL), and the event carries what the column holds.
#[tokio::test]
async fn update_many_records_the_stored_form_of_every_value_kind() {
    let _settings = default_settings().await;
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let name = backend.name();
        let row = || sample::ActiveModel {
            flag: Set(Some(true)),
            ..Default::default()
        };
        sample::Entity::insert_many([row(), row()])
            .exec(&t.db)
            .await
            .expect("seed samples");
        let moment = Utc
            .with_ymd_and_hms(2024, 2, 29, 13, 5, 9)
            .single()
            .expect("valid time")
            + chrono::Duration::nanoseconds(123_456_789);
        let txn = t.db.begin().await.expect("begin");
        sample::Entity::update_many()
            .col_expr(sample::Column::Utc, Expr::value(moment))
            .col_expr(sample::Column::Single, Expr::value(0.1f32))
            .col_expr(
                sample::Column::Amount,
                Expr::value("12.5".parse::<rust_decimal::Decimal>().expect("decimal")),
            )
            .col_expr(sample::Column::Text, Expr::value("Grüße"))
            .col_expr(sample::Column::Doc, Expr::value(json!({"a": [1, null]})))
            .exec_distributed(&txn)
            .await
            .expect("update_many");
        txn.commit().await.expect("commit");

        let stored = sample::Entity::find()
            .order_by_asc(sample::Column::Id)
            .all(&t.db)
            .await
            .expect("read");
        let mut seen = id_and_changes(&events(&t.db).await);
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        let expected: Vec<(String, Json)> = stored
            .iter()
            .map(|s| {
                let all = sample::Entity::distributed_attributes(s);
                let changed = ["utc", "single", "amount", "text", "doc"]
                    .map(|c| (c.to_owned(), all[c].clone()));
                (
                    s.id.to_string(),
                    Json::Object(changed.into_iter().collect()),
                )
            })
            .collect();
        assert_eq!(seen, expected, "{name}");
        assert_eq!(seen[0].1["text"], "Grüße");
    }
}

#[tokio::test]
async fn update_many_of_only_non_distributed_columns_writes_no_event() {
    let _settings = default_settings().await;
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let name = backend.name();
        seed(&t.db, &["ann", "bob"]).await;
        let txn = t.db.begin().await.expect("begin");
        let returned = user::Entity::update_many()
            .col_expr(user::Column::Password, Expr::value("x"))
            .col_expr(user::Column::Salt, Expr::value("y"))
            .col_expr(user::Column::UpdatedAt, Expr::value(Utc::now()))
            .exec_distributed(&txn)
            .await
            .expect("update_many");
        txn.commit().await.expect("commit");
        assert_eq!(returned.len(), 2, "{name}: both rows updated");
        assert!(
            users(&t.db)
                .await
                .iter()
                .all(|u| u.password.as_deref() == Some("x")),
            "{name}"
        );
        assert!(events(&t.db).await.is_empty(), "{name}");
    }
}

#[tokio::test]
async fn writes_that_match_no_row_write_nothing() {
    let _settings = default_settings().await;
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let name = backend.name();
        seed(&t.db, &["ann"]).await;
        let before = users(&t.db).await;
        let txn = t.db.begin().await.expect("begin");
        let updated = user::Entity::update_many()
            .col_expr(user::Column::Logins, Expr::value(5))
            .filter(user::Column::Login.eq("nobody"))
            .exec_distributed(&txn)
            .await
            .expect("update_many");
        let deleted = user::Entity::delete_many()
            .filter(user::Column::Login.eq("nobody"))
            .exec_distributed(&txn)
            .await
            .expect("delete_many");
        let by_id = user::Entity::delete_by_id(12_345)
            .exec_distributed(&txn)
            .await
            .expect("delete_by_id");
        let none = insert_many(&txn, Vec::<user::ActiveModel>::new())
            .await
            .expect("nothing to insert");
        txn.commit().await.expect("commit");
        assert!(updated.is_empty() && deleted.is_empty() && by_id.is_none() && none.is_empty());
        assert_eq!(users(&t.db).await, before, "{name}");
        assert!(events(&t.db).await.is_empty(), "{name}");
    }
}

#[tokio::test]
async fn delete_many_records_every_attribute_of_each_deleted_row() {
    let _settings = default_settings().await;
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let name = backend.name();
        seed(&t.db, &["ann", "bob", "amy"]).await;
        user::Entity::update_many()
            .col_expr(user::Column::Email, Expr::value("amy@example.com"))
            .col_expr(user::Column::Activated, Expr::value(false))
            .col_expr(user::Column::Logins, Expr::value(4))
            .filter(user::Column::Login.eq("amy"))
            .exec(&t.db)
            .await
            .expect("plain update");
        let doomed: Vec<user::Model> = user::Entity::find()
            .filter(user::Column::Login.starts_with("a"))
            .order_by_asc(user::Column::Id)
            .all(&t.db)
            .await
            .expect("read the rows before");

        let txn = t.db.begin().await.expect("begin");
        let mut deleted = user::Entity::delete_many()
            .filter(user::Column::Login.starts_with("a"))
            .exec_distributed(&txn)
            .await
            .expect("delete_many");
        txn.commit().await.expect("commit");

        deleted.sort_by_key(|u| u.id);
        assert_eq!(deleted, doomed, "{name}: the deleted rows");
        let left: Vec<String> = users(&t.db).await.into_iter().map(|u| u.login).collect();
        assert_eq!(left, ["bob"], "{name}");
        let events = events(&t.db).await;
        assert!(events.iter().all(|e| e.action == "destroy"));
        let mut seen = id_and_changes(&events);
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        let mut expected: Vec<(String, Json)> = doomed
            .iter()
            .map(|u| (u.uuid.to_string(), attributes(u)))
            .collect();
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(seen, expected, "{name}");
        assert!(
            expected
                .iter()
                .any(|(_, c)| c["email"] == "amy@example.com" && c["logins"] == 4),
            "{name}: the attributes the caller never loaded"
        );
    }
}

#[tokio::test]
async fn delete_by_id_and_entity_delete_record_the_whole_row() {
    let _settings = default_settings().await;
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let name = backend.name();
        seed(&t.db, &["ann", "bob"]).await;
        let before = users(&t.db).await;
        note::Entity::insert(note::ActiveModel {
            code: Set("n1".into()),
            body: Set("hello".into()),
        })
        .exec(&t.db)
        .await
        .expect("seed note");

        let txn = t.db.begin().await.expect("begin");
        let ann = user::Entity::delete_by_id(before[0].id)
            .exec_distributed(&txn)
            .await
            .expect("delete_by_id");
        let note = note::Entity::delete(note::ActiveModel {
            code: Set("n1".into()),
            ..Default::default()
        })
        .exec_distributed(&txn)
        .await
        .expect("Entity::delete");
        txn.commit().await.expect("commit");

        assert_eq!(ann.as_ref(), Some(&before[0]), "{name}");
        assert_eq!(note.map(|n| n.body), Some("hello".to_owned()));
        let seen: Vec<(String, String, String, Json)> = events(&t.db)
            .await
            .into_iter()
            .map(|e| (e.distributed_type, e.action, e.distributed_id, e.changes))
            .collect();
        assert_eq!(
            seen,
            [
                (
                    "User".into(),
                    "destroy".into(),
                    before[0].uuid.to_string(),
                    attributes(&before[0])
                ),
                (
                    "Note".into(),
                    "destroy".into(),
                    "n1".into(),
                    json!({"body": "hello"})
                ),
            ],
            "{name}"
        );
        assert_eq!(user::Entity::find().count(&t.db).await.expect("count"), 1);
    }
}

#[tokio::test]
async fn rollback_removes_bulk_changes_and_their_events_together() {
    let _settings = default_settings().await;
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let name = backend.name();
        seed(&t.db, &["ann", "bob"]).await;
        let before = users(&t.db).await;
        let txn = t.db.begin().await.expect("begin");
        insert_many(&txn, [user_row("cid", None)])
            .await
            .expect("insert_many");
        user::Entity::update_many()
            .col_expr(user::Column::Logins, Expr::value(9))
            .exec_distributed(&txn)
            .await
            .expect("update_many");
        user::Entity::delete_many()
            .filter(user::Column::Login.eq("bob"))
            .exec_distributed(&txn)
            .await
            .expect("delete_many");
        assert_eq!(
            events(&txn).await.len(),
            1 + 3 + 1,
            "{name}: visible inside"
        );
        txn.rollback().await.expect("rollback");
        assert_eq!(users(&t.db).await, before, "{name}");
        assert!(events(&t.db).await.is_empty(), "{name}");
    }
}

/// A failing bulk write inside a transaction leaves neither rows nor events, even when the caller
/// ignores the error and commits: each call is a savepoint of its own.
#[tokio::test]
async fn a_failed_bulk_write_leaves_nothing_behind_even_when_the_caller_commits() {
    let _settings = default_settings().await;
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let name = backend.name();
        seed(&t.db, &["ann"]).await;
        let txn = t.db.begin().await.expect("begin");
        // The second row breaks the unique login: on MySQL the first row is already inserted.
        let err = insert_many(&txn, [user_row("new", None), user_row("ann", None)])
            .await
            .expect_err("unique violation");
        assert!(!err.to_string().is_empty());
        insert_many(&txn, [user_row("after", None)])
            .await
            .expect("the transaction is still usable");
        txn.commit().await.expect("commit");
        let logins: Vec<String> = users(&t.db).await.into_iter().map(|u| u.login).collect();
        assert_eq!(logins, ["ann", "after"], "{name}");
        let seen: Vec<Json> = events(&t.db)
            .await
            .into_iter()
            .map(|e| e.changes["login"].clone())
            .collect();
        assert_eq!(seen, [json!("after")], "{name}");
    }
}

#[tokio::test]
async fn inside_the_transaction_helper_events_are_batched_at_commit() {
    let _settings = default_settings().await;
    for backend in backends() {
        let mut t = TestDb::new(&backend).await;
        let name = backend.name();
        seed(&t.db, &["ann", "bob"]).await;
        let statements = Arc::new(AtomicUsize::new(0));
        let counter = statements.clone();
        t.db.set_metric_callback(move |info| {
            let sql = info.statement.sql.to_lowercase();
            if sql.starts_with("insert into") && sql.contains("distributes") {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        let inside = transaction(&t.db, |txn| {
            Box::pin(async move {
                insert_many(txn, [user_row("cid", None), user_row("dan", None)]).await?;
                user::Entity::update_many()
                    .col_expr(user::Column::Logins, Expr::value(2))
                    .exec_distributed(txn)
                    .await?;
                user::Entity::delete_many()
                    .filter(user::Column::Login.eq("ann"))
                    .exec_distributed(txn)
                    .await?;
                Ok::<_, DbErr>(events(txn).await.len())
            })
        })
        .await
        .expect("transaction");
        assert_eq!(inside, 0, "{name}: nothing written before the commit");
        assert_eq!(statements.load(Ordering::Relaxed), 1, "{name}: one INSERT");
        let actions: Vec<String> = events(&t.db).await.into_iter().map(|e| e.action).collect();
        assert_eq!(
            actions,
            [
                "create", "create", "update", "update", "update", "update", "destroy"
            ],
            "{name}: in the order of the writes"
        );
    }
}

#[tokio::test]
async fn scopes_apply_to_bulk_writes() {
    let _settings = default_settings().await;
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let name = backend.name();
        let txn = t.db.begin().await.expect("begin");
        Scope::new()
            .client_id("importer")
            .messages("nightly import")
            .run(async {
                insert_many(&txn, [user_row("ann", None), user_row("bob", None)])
                    .await
                    .expect("insert_many");
                user::Entity::update_many()
                    .col_expr(user::Column::Logins, Expr::value(1))
                    .exec_distributed(&txn)
                    .await
                    .expect("update_many");
            })
            .await;
        let silent = without_distributing(
            user::Entity::update_many()
                .col_expr(user::Column::Logins, Expr::value(7))
                .exec_distributed(&txn),
        )
        .await
        .expect("update without events");
        assert_eq!(silent.iter().map(|u| u.logins).collect::<Vec<_>>(), [7, 7]);
        txn.commit().await.expect("commit");

        let events = events(&t.db).await;
        assert_eq!(events.len(), 4, "{name}: none from without_distributing");
        assert!(
            events
                .iter()
                .all(|e| e.client_id.as_deref() == Some("importer")
                    && e.messages.as_deref() == Some("nightly import")),
            "{name}"
        );
        assert!(users(&t.db).await.iter().all(|u| u.logins == 7), "{name}");
    }
}

/// Concurrent `logins = logins + 1` over the same rows: each event carries what its own statement
/// stored, so every value from 1 to the number of updates appears once per row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_update_many_events_carry_their_own_statements_values() {
    let _settings = default_settings().await;
    const TASKS: usize = 4;
    const ROUNDS: usize = 10;
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let name = backend.name();
        seed(&t.db, &["ann", "bob"]).await;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..TASKS {
            let db = t.db.clone();
            tasks.spawn(async move {
                for _ in 0..ROUNDS {
                    loop {
                        let result = transaction(&db, |txn| {
                            Box::pin(async move {
                                user::Entity::update_many()
                                    .col_expr(
                                        user::Column::Logins,
                                        Expr::col(user::Column::Logins).add(1),
                                    )
                                    .exec_distributed(txn)
                                    .await
                            })
                        })
                        .await;
                        match result {
                            Ok(_) => break,
                            // SQLite's single writer and InnoDB deadlocks: try again.
                            Err(e) if is_retryable(&e.to_string()) => continue,
                            Err(e) => panic!("update: {e}"),
                        }
                    }
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("task");
        }
        let stored = users(&t.db).await;
        let events = events(&t.db).await;
        for user in &stored {
            let mut values: Vec<i64> = events
                .iter()
                .filter(|e| e.distributed_id == user.uuid.to_string())
                .map(|e| e.changes["logins"].as_i64().expect("logins"))
                .collect();
            values.sort_unstable();
            let expected: Vec<i64> = (1..=(TASKS * ROUNDS) as i64).collect();
            assert_eq!(values, expected, "{name}: {}", user.login);
            assert_eq!(user.logins as usize, TASKS * ROUNDS);
        }
    }
}

fn is_retryable(error: &str) -> bool {
    ["locked", "busy", "deadlock", "Deadlock"]
        .iter()
        .any(|w| error.contains(w))
}

/// On MySQL the rows are read back by key: an update that changes the key itself is refused
/// there, and recorded by RETURNING elsewhere.
#[tokio::test]
async fn an_update_many_of_a_primary_key() {
    let _settings = default_settings().await;
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let name = backend.name();
        note::Entity::insert(note::ActiveModel {
            code: Set("old".into()),
            body: Set("b".into()),
        })
        .exec(&t.db)
        .await
        .expect("seed");
        let txn = t.db.begin().await.expect("begin");
        let result = note::Entity::update_many()
            .col_expr(note::Column::Code, Expr::value("new"))
            .col_expr(note::Column::Body, Expr::value("c"))
            .exec_distributed(&txn)
            .await;
        txn.commit().await.expect("commit");
        let events = events(&t.db).await;
        if matches!(backend, Backend::MySql(_)) {
            let err = result.expect_err("refused on MySQL");
            assert!(err.to_string().contains("primary key"), "{err}");
            assert!(events.is_empty());
            let kept = note::Entity::find_by_id("old")
                .one(&t.db)
                .await
                .expect("read");
            assert!(kept.is_some(), "{name}: nothing written");
        } else {
            result.expect("recorded by RETURNING");
            assert_eq!(
                id_and_changes(&events),
                [("new".to_owned(), json!({"body": "c"}))],
                "{name}"
            );
        }
    }
}

#[tokio::test]
async fn strict_mode_refuses_bulk_writes_outside_a_transaction() {
    let _settings = SETTINGS.write().await;
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let name = backend.name();
        seed(&t.db, &["ann"]).await;
        Settings::new()
            .outside_transaction(OutsideTransaction::Error)
            .install();
        let before = users(&t.db).await;
        let refused = [
            insert_many(&t.db, [user_row("bob", None)])
                .await
                .map(|_| ()),
            user::Entity::update_many()
                .col_expr(user::Column::Logins, Expr::value(3))
                .exec_distributed(&t.db)
                .await
                .map(|_| ()),
            user::Entity::delete_many()
                .exec_distributed(&t.db)
                .await
                .map(|_| ()),
            user::Entity::delete_by_id(before[0].id)
                .exec_distributed(&t.db)
                .await
                .map(|_| ()),
        ];
        let nothing_recorded = user::Entity::update_many()
            .col_expr(user::Column::Password, Expr::value("p"))
            .exec_distributed(&t.db)
            .await;
        let in_txn = async {
            let txn = t.db.begin().await?;
            user::Entity::update_many()
                .col_expr(user::Column::Logins, Expr::value(5))
                .exec_distributed(&txn)
                .await?;
            txn.commit().await
        }
        .await;
        Settings::new().install();

        for result in refused {
            let err = result.expect_err("refused");
            assert!(
                matches!(&err, DbErr::Custom(m) if m.contains("outside a transaction")),
                "{name}: {err}"
            );
        }
        nothing_recorded.expect("no event to write: allowed");
        in_txn.expect("inside a transaction: allowed");
        let after = users(&t.db).await;
        assert_eq!(after.len(), 1, "{name}: nothing inserted or deleted");
        assert_eq!(after[0].logins, 5, "{name}");
        let events = events(&t.db).await;
        assert_eq!(events.len(), 1, "{name}: the update in the transaction");
        assert_eq!(events[0].changes, json!({"logins": 5}));
    }
}
