//! The transaction helper: the work and its events commit or roll back together, and the events
//! are written at commit in few statements, in the order of the changes.

mod common;

use acts_as_distributed::transaction;
use common::*;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, ModelTrait,
    PaginatorTrait, Set, TransactionError, TransactionTrait,
};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[tokio::test]
async fn events_are_written_at_commit_in_the_order_of_the_changes() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let buffered = transaction(&t.db, |txn| {
            Box::pin(async move {
                let a = new_user("a").insert(txn).await?;
                let b = new_user("b").insert(txn).await?;
                let mut am = a.clone().into_active_model();
                am.logins = Set(1);
                am.update(txn).await?;
                b.delete(txn).await?;
                // Nothing is written yet: the events wait for the commit.
                Ok::<_, DbErr>(events(txn).await.len())
            })
        })
        .await
        .expect("transaction");
        assert_eq!(buffered, 0, "{}", backend.name());
        let events = events(&t.db).await;
        let seen: Vec<(String, String)> = events
            .iter()
            .map(|e| {
                (
                    e.action.clone(),
                    e.changes
                        .get("login")
                        .map(|l| l.to_string())
                        .unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("create".into(), "\"a\"".into()),
                ("create".into(), "\"b\"".into()),
                ("update".into(), String::new()),
                ("destroy".into(), "\"b\"".into()),
            ],
            "{}",
            backend.name()
        );
        assert_eq!(events[2].changes, json!({"logins": 1}));
    }
}

/// 2,500 inserts in one helper transaction write their events with 3 INSERT statements.
#[tokio::test]
async fn many_events_take_one_statement_per_thousand() {
    for backend in backends() {
        let mut t = TestDb::new(&backend).await;
        let statements = Arc::new(AtomicUsize::new(0));
        let counter = statements.clone();
        t.db.set_metric_callback(move |info| {
            let sql = info.statement.sql.to_lowercase();
            if sql.starts_with("insert into") && sql.contains("distributes") {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        transaction(&t.db, |txn| {
            Box::pin(async move {
                for i in 0..2_500 {
                    new_user(&format!("u{i}")).insert(txn).await?;
                }
                Ok::<_, DbErr>(())
            })
        })
        .await
        .expect("transaction");
        assert_eq!(statements.load(Ordering::Relaxed), 3, "{}", backend.name());
        let events = events(&t.db).await;
        assert_eq!(events.len(), 2_500);
        let logins: Vec<String> = events
            .iter()
            .map(|e| e.changes["login"].as_str().unwrap_or_default().to_owned())
            .collect();
        let expected: Vec<String> = (0..2_500).map(|i| format!("u{i}")).collect();
        assert_eq!(logins, expected, "ids follow the order of the changes");
    }
}

#[tokio::test]
async fn failed_work_rolls_back_the_changes_and_their_events() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let result = transaction(&t.db, |txn| {
            Box::pin(async move {
                new_user("a").insert(txn).await?;
                new_user("a").insert(txn).await?; // unique violation
                Ok::<_, DbErr>(())
            })
        })
        .await;
        assert!(
            matches!(result, Err(TransactionError::Transaction(_))),
            "{result:?}"
        );
        assert_eq!(user::Entity::find().count(&t.db).await.expect("count"), 0);
        assert!(events(&t.db).await.is_empty(), "{}", backend.name());
    }
}

/// A save the helper cannot see (through the pool, or in a spawned task) writes its event at once,
/// through its own connection, so the event is never lost with the helper's rollback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_through_other_connections_write_their_events_at_once() {
    // SQLite has one writer at a time, and the helper takes the write lock at BEGIN: see
    // `on_sqlite_other_connections_wait_for_the_helper_then_write_their_events`.
    for backend in backends().into_iter().filter(|b| *b != Backend::Sqlite) {
        let t = TestDb::new(&backend).await;
        let pool = t.db.clone();
        let result = transaction(&t.db, |txn| {
            Box::pin(async move {
                new_user("through-pool").insert(&pool).await?;
                let spawned = pool.clone();
                tokio::spawn(async move { new_user("spawned").insert(&spawned).await })
                    .await
                    .map_err(|e| DbErr::Custom(e.to_string()))??;
                new_user("in-helper").insert(txn).await?;
                Err::<(), _>(DbErr::Custom("give up".into()))
            })
        })
        .await;
        assert!(result.is_err());
        let logins: Vec<String> = events(&t.db)
            .await
            .into_iter()
            .map(|e| e.changes["login"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(logins, ["through-pool", "spawned"], "{}", backend.name());
        assert_eq!(user::Entity::find().count(&t.db).await.expect("count"), 2);
    }
}

/// On SQLite the helper begins with `BEGIN IMMEDIATE` (so that reading before writing never fails
/// with "database is locked" while a worker writes): a save through another connection waits for
/// the helper's commit, then writes its row and event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_other_connections_wait_for_the_helper_then_write_their_events() {
    let t = TestDb::new(&Backend::Sqlite).await;
    let pool = t.db.clone();
    let other = transaction(&t.db, |txn| {
        Box::pin(async move {
            new_user("in-helper").insert(txn).await?;
            let waiting = tokio::spawn(async move { new_user("waited").insert(&pool).await });
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            assert!(
                !waiting.is_finished(),
                "the other connection waits for the write lock"
            );
            Ok::<_, DbErr>(waiting)
        })
    })
    .await
    .expect("helper commits");
    other
        .await
        .expect("join")
        .expect("the waiting save goes through after the commit");
    let logins: Vec<String> = events(&t.db)
        .await
        .into_iter()
        .map(|e| e.changes["login"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(logins, ["in-helper", "waited"]);
}

/// A nested transaction inside the helper writes its events through itself: rolled back with it.
#[tokio::test]
async fn nested_transactions_keep_their_events_with_them() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        transaction(&t.db, |txn| {
            Box::pin(async move {
                new_user("outer").insert(txn).await?;
                let nested = txn.begin().await?;
                new_user("rolled-back").insert(&nested).await?;
                nested.rollback().await?;
                let nested = txn.begin().await?;
                new_user("kept").insert(&nested).await?;
                nested.commit().await?;
                // A helper inside the helper: its own buffer, written at its own commit.
                transaction(txn, |inner| {
                    Box::pin(async move { new_user("inner").insert(inner).await })
                })
                .await
                .map_err(|e| DbErr::Custom(e.to_string()))?;
                Ok::<_, DbErr>(())
            })
        })
        .await
        .expect("transaction");
        let mut logins: Vec<String> = events(&t.db)
            .await
            .into_iter()
            .map(|e| e.changes["login"].as_str().unwrap_or_default().to_owned())
            .collect();
        logins.sort();
        assert_eq!(logins, ["inner", "kept", "outer"], "{}", backend.name());
    }
}

/// An update that fails inside the helper, with its error swallowed, leaves no buffered event.
#[tokio::test]
async fn a_swallowed_failed_update_leaves_no_buffered_event() {
    for backend in backends() {
        if matches!(backend, Backend::Postgres(_)) {
            continue; // PostgreSQL aborts the transaction on any error: nothing could commit.
        }
        let t = TestDb::new(&backend).await;
        transaction(&t.db, |txn| {
            Box::pin(async move {
                new_user("a").insert(txn).await?;
                let b = new_user("b").insert(txn).await?;
                let mut dup = b.into_active_model();
                dup.login = Set("a".into());
                let _ = dup.update(txn).await.expect_err("unique violation");
                let missing = user::ActiveModel {
                    id: Set(4242),
                    logins: Set(1),
                    ..Default::default()
                };
                let _ = missing.update(txn).await.expect_err("missing row");
                Ok::<_, DbErr>(())
            })
        })
        .await
        .expect("transaction");
        let actions: Vec<String> = events(&t.db).await.into_iter().map(|e| e.action).collect();
        assert_eq!(actions, ["create", "create"], "{}", backend.name());
    }
}

/// When the events cannot be written at commit, nothing commits, and the error says what to do.
#[tokio::test]
async fn a_failed_event_write_rolls_everything_back_with_a_clear_error() {
    for backend in backends() {
        if matches!(backend, Backend::MySql(_)) {
            continue; // MySQL commits DDL implicitly, so the table cannot be dropped inside.
        }
        let t = TestDb::new(&backend).await;
        let result = transaction(&t.db, |txn| {
            Box::pin(async move {
                new_user("a").insert(txn).await?;
                txn.execute_unprepared("DROP TABLE distributes").await?;
                Ok::<_, DbErr>(())
            })
        })
        .await;
        let Err(TransactionError::Connection(err)) = result else {
            panic!(
                "{}: expected a connection error, got {result:?}",
                backend.name()
            );
        };
        assert!(err.to_string().contains("run the migration"), "{err}");
        assert_eq!(user::Entity::find().count(&t.db).await.expect("count"), 0);
        assert!(
            events(&t.db).await.is_empty(),
            "the table is back: the DROP rolled back"
        );
    }
}

/// Without the migration, a save fails with an error that says to run it, and leaves no row
/// inside a transaction.
#[tokio::test]
async fn a_missing_distributes_table_says_to_run_the_migration() {
    for backend in backends() {
        let t = TestDb::empty(&backend).await;
        t.create_table(user::Entity).await;
        let txn = t.db.begin().await.expect("begin");
        let err = new_user("a")
            .insert(&txn)
            .await
            .expect_err("no distributes table");
        assert!(
            err.to_string().contains("run the migration"),
            "{}: {err}",
            backend.name()
        );
        txn.rollback().await.expect("rollback");
        assert_eq!(user::Entity::find().count(&t.db).await.expect("count"), 0);
    }
}
