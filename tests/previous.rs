//! `previous = true`: update events also carry the old values of the changed columns, read under
//! a row lock just before the UPDATE, on every backend, and consumers receive them.

mod common;

use acts_as_distributed::values::redacted;
use acts_as_distributed::{Event, HandlerError, Worker};
use acts_as_distributed_migration::Migrator;
use common::*;
use sea_orm::{
    ActiveModelTrait, DatabaseConnection, DbErr, EntityTrait, IntoActiveModel, ModelTrait, Set,
    TransactionTrait,
};
use sea_orm_migration::MigratorTrait;
use serde_json::{Value as Json, json};
use std::sync::{Arc, Mutex};

fn new_patient(name: &str) -> patient::ActiveModel {
    patient::ActiveModel {
        uuid: Set(uuid::Uuid::new_v4()),
        name: Set(name.to_owned()),
        email: Set(format!("{}@example.com", name.to_lowercase())),
        diagnosis: Set(None),
        visits: Set(0),
        born_on: Set(None),
        ..Default::default()
    }
}

async fn fresh<C: sea_orm::ConnectionTrait>(db: &C, id: i32) -> patient::Model {
    patient::Entity::find_by_id(id)
        .one(db)
        .await
        .expect("select")
        .expect("the row")
}

#[tokio::test]
async fn update_events_carry_the_old_values_of_exactly_the_changed_columns() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let name = backend.name();
        let ada = new_patient("Ada").insert(&t.db).await.expect("insert");
        let mut am = ada.clone().into_active_model();
        am.name = Set("Ada L.".into());
        am.visits = Set(4);
        am.born_on = Set(chrono::NaiveDate::from_ymd_opt(1815, 12, 10));
        let before = fresh(&t.db, ada.id).await;
        am.update(&t.db).await.expect("update");
        let after = fresh(&t.db, ada.id).await;
        fresh(&t.db, ada.id)
            .await
            .delete(&t.db)
            .await
            .expect("delete");

        let events = events(&t.db).await;
        assert_eq!(events.len(), 3, "{name}");
        assert_eq!(events[0].previous, None, "{name}: a create has none");
        assert_eq!(events[2].previous, None, "{name}: a destroy has none");
        let update = &events[1];
        assert_eq!(
            update.changes,
            json!({"name": after.name, "visits": after.visits, "born_on": "1815-12-10"}),
            "{name}"
        );
        assert_eq!(
            update.previous,
            Some(json!({"name": before.name, "visits": before.visits, "born_on": null})),
            "{name}: what the row held, NULL included"
        );
    }
}

#[tokio::test]
async fn entities_without_the_option_write_no_previous() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let ada = new_user("ada").insert(&t.db).await.expect("insert");
        let mut am = ada.into_active_model();
        am.logins = Set(9);
        am.update(&t.db).await.expect("update");
        let events = events(&t.db).await;
        assert_eq!(events[1].changes, json!({"logins": 9}));
        assert_eq!(events[1].previous, None, "{}", backend.name());
    }
}

#[tokio::test]
async fn the_transaction_helper_writes_previous_in_its_batches() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let name = backend.name();
        let ada = new_patient("Ada").insert(&t.db).await.expect("insert");
        let id = ada.id;
        // One batch of mixed events: creates without old values, updates with them.
        acts_as_distributed::transaction(&t.db, |txn| {
            Box::pin(async move {
                new_user("bob").insert(txn).await?;
                for visits in 1..=3 {
                    let mut am = fresh(txn, id).await.into_active_model();
                    am.visits = Set(visits);
                    am.email = Set(format!("ada{visits}@example.com"));
                    am.update(txn).await?;
                }
                new_user("cy").insert(txn).await?;
                Ok::<_, DbErr>(())
            })
        })
        .await
        .expect("transaction");
        let events = events(&t.db).await;
        let seen: Vec<(&str, &str, Option<Json>)> = events
            .iter()
            .map(|e| {
                (
                    e.distributed_type.as_str(),
                    e.action.as_str(),
                    e.previous.clone(),
                )
            })
            .collect();
        let prev = |visits: i32| Some(json!({"visits": visits, "email": redacted()}));
        assert_eq!(
            seen,
            [
                ("Patient", "create", None),
                ("User", "create", None),
                ("Patient", "update", prev(0)),
                ("Patient", "update", prev(1)),
                ("Patient", "update", prev(2)),
                ("User", "create", None),
            ],
            "{name}"
        );
        assert_eq!(events[4].changes, json!({"visits": 3, "email": redacted()}));
    }
}

/// Concurrent transactions updating one row: each event's old values are what the event before it
/// (in event order) stored, so no update is lost between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_chain_their_old_values() {
    const TASKS: usize = 4;
    const UPDATES: usize = 5;
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let name = backend.name();
        let ada = new_patient("Ada").insert(&t.db).await.expect("insert");
        let failures = Arc::new(Mutex::new(0usize));
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let db = t.db.clone();
            let failures = failures.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0..UPDATES {
                    // SQLite refuses a transaction whose read went stale ("database is
                    // locked"): retry after a pause.
                    loop {
                        match update_name(&db, ada.id, format!("t{task}-{n}")).await {
                            Ok(()) => break,
                            Err(_) => *failures.lock().expect("count") += 1,
                        }
                        assert!(*failures.lock().expect("count") < 10_000, "stuck");
                        tokio::time::sleep(std::time::Duration::from_millis(1 + task as u64)).await;
                    }
                }
            }));
        }
        for task in tasks {
            task.await.expect("task");
        }
        let updates: Vec<_> = events(&t.db)
            .await
            .into_iter()
            .filter(|e| e.action == "update")
            .collect();
        assert_eq!(updates.len(), TASKS * UPDATES, "{name}");
        let mut expected_previous = json!("Ada");
        for e in &updates {
            let previous = e.previous.as_ref().expect("previous");
            assert_eq!(
                previous["name"], expected_previous,
                "{name}: event {}",
                e.id
            );
            expected_previous = e.changes["name"].clone();
        }
        let last = fresh(&t.db, ada.id).await;
        assert_eq!(json!(last.name), expected_previous, "{name}");
    }
}

async fn update_name(db: &DatabaseConnection, id: i32, name: String) -> Result<(), DbErr> {
    let txn = db.begin().await?;
    let mut am = patient::ActiveModel {
        id: Set(id),
        ..Default::default()
    };
    am.name = Set(name);
    am.update(&txn).await?;
    txn.commit().await
}

#[tokio::test]
async fn consumers_receive_the_old_values() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let ada = new_patient("Ada").insert(&t.db).await.expect("insert");
        let mut am = ada.into_active_model();
        am.visits = Set(1);
        am.update(&t.db).await.expect("update");

        let seen: Arc<Mutex<Vec<Event>>> = Arc::default();
        let recorder = seen.clone();
        let worker = Worker::builder(t.db.clone(), "audit")
            .handler(move |e: Event| {
                let recorder = recorder.clone();
                async move {
                    recorder.lock().expect("seen").push(e);
                    Ok::<_, HandlerError>(())
                }
            })
            .build()
            .expect("worker");
        while worker.run_once().await.expect("run") > 0 {}
        let seen = seen.lock().expect("seen");
        let name = backend.name();
        assert_eq!(seen.len(), 2, "{name}");
        assert_eq!(seen[0].previous, None, "{name}");
        assert_eq!(seen[1].previous, Some(json!({"visits": 0})), "{name}");
        assert_eq!(seen[1].changes, json!({"visits": 1}), "{name}");
    }
}

#[tokio::test]
async fn without_the_new_migration_only_previous_events_fail_and_say_what_to_do() {
    for backend in backends() {
        let t = TestDb::empty(&backend).await;
        Migrator::up(&t.db, Some(2)).await.expect("the first two");
        create_tables(&t.db).await;
        // Entities without `previous` keep working on the old table.
        let ada = new_user("ada").insert(&t.db).await.expect("insert");
        let mut am = ada.into_active_model();
        am.logins = Set(1);
        am.update(&t.db).await.expect("update without previous");
        let patient = new_patient("Ada").insert(&t.db).await.expect("insert");
        let mut am = patient.into_active_model();
        am.visits = Set(1);
        let error = am.update(&t.db).await.expect_err("no previous column");
        let text = error.to_string();
        assert!(
            text.contains("m20261128_000003_add_previous"),
            "{}: {text}",
            backend.name()
        );
    }
}
