//! What each create, update and destroy writes to `distributes`: the original plugin's behaviour,
//! on every SeaORM path that runs hooks, on every backend.

mod common;

use acts_as_distributed::{
    DistributedActiveModelExt, DistributedEntity, Scope, without_distributing,
};
use common::*;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, ModelTrait,
    PaginatorTrait, Set, TransactionTrait,
};
use serde_json::json;

#[tokio::test]
async fn create_records_every_distributed_attribute_including_nulls_and_defaults() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let mut am = new_user("ada");
        am.password = Set(Some("secret".into()));
        am.salt = Set(Some("pepper".into()));
        let ada = am.insert(&t.db).await.expect("insert");

        let events = events(&t.db).await;
        assert_eq!(events.len(), 1, "{backend:?}");
        let e = &events[0];
        assert_eq!(e.distributed_type, "User");
        assert_eq!(e.action, "create");
        assert_eq!(e.distributed_id, ada.uuid.to_string());
        assert_eq!(e.format, acts_as_distributed::FORMAT_VERSION);
        assert!(!e.error);
        assert_eq!(e.processed_at, None);
        // Never: id, created_at, updated_at, and the `except` columns.
        assert_eq!(
            keys(&e.changes),
            ["activated", "email", "login", "logins", "uuid"]
        );
        assert_eq!(
            e.changes,
            json!({
                "uuid": ada.uuid.to_string(),
                "login": "ada",
                "email": null,
                "logins": 0, // the database default, never set by the caller
                "activated": null,
            }),
            "{}",
            backend.name()
        );
        let age = chrono::Utc::now() - e.created_at;
        assert!(
            age.num_seconds().abs() < 60,
            "created_at is now, in UTC: {}",
            e.created_at
        );
    }
}

#[tokio::test]
async fn update_records_only_the_changed_attributes_with_their_new_values() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let ada = new_user("ada").insert(&t.db).await.expect("insert");
        let mut am = ada.clone().into_active_model();
        am.logins = Set(3);
        am.activated = Set(Some(true));
        let updated = am.update(&t.db).await.expect("update");
        assert_eq!(
            (updated.logins, updated.activated),
            (3, Some(true)),
            "the model SeaORM returns"
        );

        let events = events(&t.db).await;
        assert_eq!(events.len(), 2, "{}", backend.name());
        assert_eq!(events[1].action, "update");
        assert_eq!(events[1].distributed_id, ada.uuid.to_string());
        assert_eq!(
            events[1].changes,
            json!({"logins": 3, "activated": true}),
            "{}",
            backend.name()
        );
    }
}

#[tokio::test]
async fn update_of_only_excluded_columns_writes_no_event() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let ada = new_user("ada").insert(&t.db).await.expect("insert");
        let mut am = ada.into_active_model();
        am.password = Set(Some("new".into()));
        am.salt = Set(Some("salt".into()));
        let saved = am.update(&t.db).await.expect("update");
        assert_eq!(
            saved.password.as_deref(),
            Some("new"),
            "the row is still updated"
        );
        assert_eq!(
            events(&t.db).await.len(),
            1,
            "{}: only the create",
            backend.name()
        );
    }
}

#[tokio::test]
async fn save_without_changes_writes_no_event() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let ada = new_user("ada").insert(&t.db).await.expect("insert");
        // Nothing Set but the user's own hook, which touches updated_at (never distributed).
        ada.clone()
            .into_active_model()
            .save(&t.db)
            .await
            .expect("save");
        ada.into_active_model().update(&t.db).await.expect("update");
        assert_eq!(
            events(&t.db).await.len(),
            1,
            "{}: only the create",
            backend.name()
        );
    }
}

#[tokio::test]
async fn update_of_an_excluded_and_a_normal_column_records_the_normal_one_only() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let ada = new_user("ada").insert(&t.db).await.expect("insert");
        let mut am = ada.into_active_model();
        am.password = Set(Some("new".into()));
        am.email = Set(Some("ada@example.com".into()));
        let saved = am.update(&t.db).await.expect("update");
        assert_eq!(
            saved.password.as_deref(),
            Some("new"),
            "both columns are written"
        );
        let events = events(&t.db).await;
        assert_eq!(
            events[1].changes,
            json!({"email": "ada@example.com"}),
            "{}",
            backend.name()
        );
    }
}

#[tokio::test]
async fn save_takes_both_branches() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let saved = new_user("ada").save(&t.db).await.expect("save inserts");
        let mut am = saved;
        am.logins = Set(1);
        let am = am.save(&t.db).await.expect("save updates");
        assert_eq!(am.logins.clone().unwrap(), 1);
        let events = events(&t.db).await;
        let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["create", "update"], "{}", backend.name());
        assert_eq!(events[1].changes, json!({"logins": 1}));
    }
}

#[tokio::test]
async fn update_without_returning_is_captured() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let ada = new_user("ada").insert(&t.db).await.expect("insert");
        let mut am = ada.clone().into_active_model();
        am.logins = Set(9);
        am.update_without_returning(&t.db).await.expect("update");
        let stored = user::Entity::find_by_id(ada.id)
            .one(&t.db)
            .await
            .expect("read")
            .expect("row");
        assert_eq!(stored.logins, 9, "the row is written");
        let events = events(&t.db).await;
        assert_eq!(events.len(), 2, "{}", backend.name());
        assert_eq!(events[1].changes, json!({"logins": 9}));
    }
}

#[tokio::test]
async fn destroy_records_every_attribute_even_from_a_key_only_active_model() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let mut am = new_user("ada");
        am.email = Set(Some("ada@example.com".into()));
        let ada = am.insert(&t.db).await.expect("insert");
        let key_only = user::ActiveModel {
            id: Set(ada.id),
            ..Default::default()
        };
        let res = key_only.delete(&t.db).await.expect("delete");
        assert_eq!(res.rows_affected, 1, "SeaORM's result is kept");
        assert_eq!(user::Entity::find().count(&t.db).await.expect("count"), 0);

        let events = events(&t.db).await;
        assert_eq!(events.len(), 2, "{}", backend.name());
        assert_eq!(events[1].action, "destroy");
        assert_eq!(events[1].distributed_id, ada.uuid.to_string());
        assert_eq!(
            events[1].changes,
            json!({"uuid": ada.uuid.to_string(), "login": "ada", "email": "ada@example.com", "logins": 0, "activated": null}),
            "{}",
            backend.name()
        );
    }
}

#[tokio::test]
async fn model_delete_is_captured() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let ada = new_user("ada").insert(&t.db).await.expect("insert");
        let res = ada.clone().delete(&t.db).await.expect("Model::delete");
        assert_eq!(res.rows_affected, 1);
        let events = events(&t.db).await;
        assert_eq!(
            events.last().map(|e| e.action.as_str()),
            Some("destroy"),
            "{}",
            backend.name()
        );
        assert_eq!(
            events.last().map(|e| e.distributed_id.clone()),
            Some(ada.uuid.to_string())
        );
    }
}

#[tokio::test]
async fn deleting_a_missing_row_keeps_seaorms_result_and_writes_no_event() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let ada = new_user("ada").insert(&t.db).await.expect("insert");
        ada.clone().delete(&t.db).await.expect("first delete");
        let again = ada
            .clone()
            .delete(&t.db)
            .await
            .expect("deleting a missing row is Ok");
        assert_eq!(again.rows_affected, 0);
        let key_only = user::ActiveModel {
            id: Set(12345),
            ..Default::default()
        };
        assert_eq!(key_only.delete(&t.db).await.expect("Ok").rows_affected, 0);
        let actions: Vec<String> = events(&t.db).await.into_iter().map(|e| e.action).collect();
        assert_eq!(actions, ["create", "destroy"], "{}", backend.name());
    }
}

#[tokio::test]
async fn a_failed_update_leaves_no_event_even_when_the_error_is_swallowed_and_committed() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        new_user("ada").insert(&t.db).await.expect("insert");
        let grace = new_user("grace").insert(&t.db).await.expect("insert");

        let txn = t.db.begin().await.expect("begin");
        // A missing row: SeaORM's own error.
        let missing = user::ActiveModel {
            id: Set(999),
            logins: Set(5),
            ..Default::default()
        };
        let err = missing.update(&txn).await.expect_err("missing row");
        assert!(
            matches!(err, DbErr::RecordNotUpdated),
            "{}: {err:?}",
            backend.name()
        );
        // A constraint violation: `login` is unique. On SQLite and MySQL only the statement
        // fails, and the transaction can still commit.
        let mut dup = grace.clone().into_active_model();
        dup.login = Set("ada".into());
        let err = dup.update(&txn).await.expect_err("unique violation");
        assert!(!matches!(err, DbErr::RecordNotUpdated), "{err:?}");
        if backend != Backend::Sqlite && !matches!(backend, Backend::MySql(_)) {
            // PostgreSQL aborts the whole transaction: nothing can commit anyway.
            txn.rollback().await.expect("rollback");
        } else {
            txn.commit()
                .await
                .expect("the caller swallows the errors and commits");
        }
        let stored = user::Entity::find_by_id(grace.id)
            .one(&t.db)
            .await
            .expect("read")
            .expect("row");
        assert_eq!(stored.login, "grace");
        let actions: Vec<String> = events(&t.db).await.into_iter().map(|e| e.action).collect();
        assert_eq!(
            actions,
            ["create", "create"],
            "{}: no update event",
            backend.name()
        );
    }
}

#[tokio::test]
async fn a_failed_delete_leaves_no_event() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let ada = new_user("ada").insert(&t.db).await.expect("insert");
        // A row elsewhere that references the user, so the DELETE violates a foreign key.
        t.db.execute_unprepared(
            "CREATE TABLE user_refs (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users (id))",
        )
        .await
        .expect("create user_refs");
        if backend == Backend::Sqlite {
            t.db.execute_unprepared("PRAGMA foreign_keys = ON")
                .await
                .expect("fk on");
        }
        let txn = t.db.begin().await.expect("begin");
        if backend == Backend::Sqlite {
            txn.execute_unprepared("PRAGMA foreign_keys = ON")
                .await
                .expect("fk on");
        }
        txn.execute_unprepared(&format!(
            "INSERT INTO user_refs (id, user_id) VALUES (1, {})",
            ada.id
        ))
        .await
        .expect("reference");
        let err = ada
            .clone()
            .delete(&txn)
            .await
            .expect_err("foreign key violation");
        assert!(!err.to_string().is_empty());
        if matches!(backend, Backend::Postgres(_)) {
            txn.rollback().await.expect("rollback");
        } else {
            txn.commit()
                .await
                .expect("commit after the swallowed error");
        }
        assert_eq!(
            user::Entity::find().count(&t.db).await.expect("count"),
            1,
            "the row stays"
        );
        let actions: Vec<String> = events(&t.db).await.into_iter().map(|e| e.action).collect();
        assert_eq!(actions, ["create"], "{}: no destroy event", backend.name());
    }
}

#[tokio::test]
async fn rollback_removes_the_row_and_its_event_together() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let txn = t.db.begin().await.expect("begin");
        let ada = new_user("ada").insert(&txn).await.expect("insert");
        let mut am = ada.clone().into_active_model();
        am.logins = Set(2);
        am.update(&txn).await.expect("update");
        assert_eq!(
            events(&txn).await.len(),
            2,
            "visible inside the transaction"
        );
        txn.rollback().await.expect("rollback");
        assert_eq!(user::Entity::find().count(&t.db).await.expect("count"), 0);
        assert!(events(&t.db).await.is_empty(), "{}", backend.name());
    }
}

#[tokio::test]
async fn the_users_own_hooks_modify_the_model_and_their_changes_are_in_the_event() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let mut am = new_user("ada");
        am.email = Set(Some("Ada@Example.COM".into()));
        let ada = am.insert(&t.db).await.expect("insert");
        assert_eq!(
            ada.email.as_deref(),
            Some("ada@example.com"),
            "the hook lower-cased it"
        );
        assert!(
            ada.updated_at >= ada.created_at,
            "the hook set the timestamps"
        );
        let mut am = ada.into_active_model();
        am.email = Set(Some("ADA@LOVELACE.EXAMPLE".into()));
        am.update(&t.db).await.expect("update");
        let events = events(&t.db).await;
        assert_eq!(
            events[0].changes["email"],
            json!("ada@example.com"),
            "{}",
            backend.name()
        );
        assert_eq!(events[1].changes, json!({"email": "ada@lovelace.example"}));

        // A hook's validation error stops the change and its event.
        let err = new_user("  ").insert(&t.db).await.expect_err("empty login");
        assert!(err.to_string().contains("login must not be empty"), "{err}");
        assert_eq!(events_count(&t).await, 2);
    }
}

async fn events_count(t: &TestDb) -> usize {
    events(&t.db).await.len()
}

#[tokio::test]
async fn entities_without_uuid_use_the_primary_key_and_composite_keys_a_json_array() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        note::ActiveModel {
            code: Set("n-1".into()),
            body: Set("hello".into()),
        }
        .insert(&t.db)
        .await
        .expect("insert note");
        membership::ActiveModel {
            user_id: Set(7),
            group_id: Set(3),
            role: Set("admin".into()),
            note: Set(Some("not distributed".into())),
        }
        .insert(&t.db)
        .await
        .expect("insert membership");
        let events = events(&t.db).await;
        assert_eq!(events[0].distributed_type, "Note");
        assert_eq!(events[0].distributed_id, "n-1");
        assert_eq!(
            events[0].changes,
            json!({"body": "hello"}),
            "the key itself is not distributed"
        );
        assert_eq!(events[1].distributed_type, "GroupMember", "type_name");
        assert_eq!(events[1].distributed_id, "[7,3]", "{}", backend.name());
        assert_eq!(events[1].changes, json!({"role": "admin"}), "only");
    }
}

#[tokio::test]
async fn scopes_set_messages_and_client_id_and_nest() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let db = &t.db;
        Scope::new()
            .client_id("importer")
            .messages("nightly")
            .run(async {
                new_user("a").insert(db).await.expect("a");
                Scope::new()
                    .messages("inner")
                    .run(async {
                        new_user("b").insert(db).await.expect("b");
                        without_distributing(async {
                            new_user("c").insert(db).await.expect("c");
                            Scope::new()
                                .with_distributing()
                                .run(async { new_user("d").insert(db).await.expect("d") })
                                .await;
                        })
                        .await;
                    })
                    .await;
                new_user("e").insert(db).await.expect("e");
            })
            .await;
        new_user("f").insert(db).await.expect("f");
        let seen: Vec<(String, Option<String>, Option<String>)> = events(db)
            .await
            .into_iter()
            .map(|e| {
                (
                    e.changes["login"].as_str().unwrap_or_default().to_owned(),
                    e.client_id,
                    e.messages,
                )
            })
            .collect();
        let s = |x: &str| Some(x.to_owned());
        assert_eq!(
            seen,
            [
                ("a".into(), s("importer"), s("nightly")),
                ("b".into(), s("importer"), s("inner")),
                ("d".into(), s("importer"), s("inner")),
                ("e".into(), s("importer"), s("nightly")),
                ("f".into(), None, None),
            ],
            "{}",
            backend.name()
        );
        assert_eq!(
            user::Entity::find().count(db).await.expect("count"),
            6,
            "c is saved, without event"
        );
    }
}

#[tokio::test]
async fn single_saves_and_deletes_without_distributing() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let saved = new_user("ada")
            .save_without_distributing(&t.db)
            .await
            .expect("save");
        let mut am = saved.clone();
        am.logins = Set(4);
        let am = am.save_without_distributing(&t.db).await.expect("update");
        am.delete_without_distributing(&t.db).await.expect("delete");
        new_user("grace").insert(&t.db).await.expect("insert");
        let events = events(&t.db).await;
        assert_eq!(events.len(), 1, "{}: only grace", backend.name());
        assert_eq!(events[0].changes["login"], json!("grace"));
    }
}

/// Scopes belong to their task: 40 tasks on a multi-thread runtime, each in its own scope,
/// interleaving their saves; every event carries its own task's client_id and messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scopes_are_per_task_under_concurrency() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let mut tasks = tokio::task::JoinSet::new();
        for task in 0..40 {
            let db = t.db.clone();
            tasks.spawn(async move {
                let scope = Scope::new().client_id(format!("task-{task}"));
                let scope = if task % 3 == 0 {
                    scope.without_distributing()
                } else {
                    scope
                };
                scope
                    .messages(format!("m-{task}"))
                    .run(async {
                        for i in 0..5 {
                            new_user(&format!("{task}-{i}"))
                                .insert(&db)
                                .await
                                .expect("insert");
                            tokio::task::yield_now().await;
                        }
                    })
                    .await;
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("task");
        }
        let events = events(&t.db).await;
        let expected_tasks = (0..40).filter(|t| t % 3 != 0).count();
        assert_eq!(events.len(), expected_tasks * 5, "{}", backend.name());
        for e in events {
            let login = e.changes["login"].as_str().expect("login").to_owned();
            let task = login.split('-').next().expect("task part");
            assert_eq!(
                e.client_id.as_deref(),
                Some(format!("task-{task}").as_str()),
                "{login}"
            );
            assert_eq!(
                e.messages.as_deref(),
                Some(format!("m-{task}").as_str()),
                "{login}"
            );
        }
    }
}

/// 200 concurrent single-column updates of 4 rows, outside transactions: each update event must
/// carry the value its own statement wrote, never another writer's (MySQL has no RETURNING, so a
/// read-back would see other tasks' values).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_each_record_their_own_values() {
    acts_as_distributed::Settings::current(); // settings untouched: the default warning applies
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let mut users = Vec::new();
        for i in 0..4 {
            users.push(
                new_user(&format!("u{i}"))
                    .insert(&t.db)
                    .await
                    .expect("insert"),
            );
        }
        let mut tasks = tokio::task::JoinSet::new();
        for k in 0..200 {
            let db = t.db.clone();
            let target = users[k % 4].clone();
            tasks.spawn(async move {
                let mut am = user::ActiveModel {
                    id: Set(target.id),
                    ..Default::default()
                };
                am.logins = Set(1000 + k as i32);
                am.update(&db).await.expect("update");
                (target.uuid.to_string(), 1000 + k as i64)
            });
        }
        let mut written = Vec::new();
        while let Some(r) = tasks.join_next().await {
            written.push(r.expect("task"));
        }
        let mut recorded: Vec<(String, i64)> = events(&t.db)
            .await
            .into_iter()
            .filter(|e| e.action == "update")
            .map(|e| {
                (
                    e.distributed_id,
                    e.changes["logins"].as_i64().expect("logins"),
                )
            })
            .collect();
        written.sort();
        recorded.sort();
        assert_eq!(
            recorded,
            written,
            "{}: every event carries its own write",
            backend.name()
        );
    }
}

/// Several updates of one row polled at once by one task (`join_all`): each event matches its own
/// update.
#[tokio::test]
async fn interleaved_updates_in_one_task_stay_apart() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let ada = new_user("ada").insert(&t.db).await.expect("insert");
        let updates = (0..20).map(|k| {
            let db = &t.db;
            let id = ada.id;
            async move {
                user::ActiveModel {
                    id: Set(id),
                    logins: Set(k),
                    ..Default::default()
                }
                .update(db)
                .await
                .expect("update");
            }
        });
        futures::future::join_all(updates).await;
        let mut logins: Vec<i64> = events(&t.db)
            .await
            .into_iter()
            .skip(1)
            .map(|e| e.changes["logins"].as_i64().expect("logins"))
            .collect();
        logins.sort();
        assert_eq!(logins, (0..20).collect::<Vec<i64>>(), "{}", backend.name());
    }
}

#[tokio::test]
async fn introspection_lists_distributed_and_non_distributed_columns() {
    use sea_orm::IdenStatic;
    fn names<C: IdenStatic>(columns: &[C]) -> Vec<&'static str> {
        columns.iter().map(|c| c.as_str()).collect()
    }
    assert_eq!(
        names(user::Entity::distributed_columns()),
        ["uuid", "login", "email", "logins", "activated"]
    );
    assert_eq!(
        names(user::Entity::non_distributed_columns()),
        ["id", "password", "salt", "created_at", "updated_at"]
    );
    assert_eq!(user::Entity::distributed_type(), "User");
    assert_eq!(names(user::Entity::distribution().id_columns()), ["uuid"]);
    assert_eq!(names(membership::Entity::distributed_columns()), ["role"]);
    assert_eq!(
        names(membership::Entity::distribution().id_columns()),
        ["user_id", "group_id"]
    );
    assert_eq!(names(note::Entity::distribution().id_columns()), ["code"]);

    let backend = Backend::Sqlite;
    let t = TestDb::new(&backend).await;
    let ada = new_user("ada").insert(&t.db).await.expect("insert");
    let attrs = user::Entity::distributed_attributes(&ada);
    assert_eq!(
        serde_json::Value::Object(attrs),
        events(&t.db).await[0].changes
    );
    let _ = ada.delete(&t.db).await.expect("delete");
}
