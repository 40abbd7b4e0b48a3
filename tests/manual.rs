//! Events recorded by hand with `ManualEvent` and `record_model`: in the caller's transaction, with
//! the scope, strict mode and the transaction helper applied as to saves, and input checked
//! before anything is written.

mod common;

use acts_as_distributed::{
    Action, Error, ManualEvent, OutsideTransaction, Scope, Settings, record_model, transaction,
    without_distributing,
};
use common::*;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, ModelTrait,
    QuerySelect, Set, TransactionTrait,
};
use serde_json::{Value as Json, json};
use tokio::sync::{RwLock, RwLockReadGuard};

/// Settings are process-wide: the strict-mode test takes this for writing, the others for reading.
static SETTINGS: RwLock<()> = RwLock::const_new(());

async fn default_settings() -> RwLockReadGuard<'static, ()> {
    SETTINGS.read().await
}

async fn insert_note_by_sql<C: ConnectionTrait>(db: &C, code: &str, body: &str) {
    db.execute_unprepared(&format!(
        "INSERT INTO notes (code, body) VALUES ('{code}', '{body}')"
    ))
    .await
    .expect("raw insert");
}

async fn note_exists<C: ConnectionTrait>(db: &C, code: &str) -> bool {
    note::Entity::find_by_id(code)
        .one(db)
        .await
        .expect("read note")
        .is_some()
}

/// `(type, action, id, changes)`: what capture and a manual event must agree on.
fn essence(e: &acts_as_distributed::distribute::Model) -> (String, String, String, Json) {
    (
        e.distributed_type.clone(),
        e.action.clone(),
        e.distributed_id.clone(),
        e.changes.clone(),
    )
}

#[tokio::test]
async fn a_manual_event_commits_and_rolls_back_with_the_data() {
    let _settings = default_settings().await;
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let name = backend.name();

        let txn = t.db.begin().await.expect("begin");
        insert_note_by_sql(&txn, "kept", "by raw SQL").await;
        ManualEvent::new("Note", "kept", Action::Create)
            .changes(json!({"body": "by raw SQL"}))
            .client_id("billing")
            .messages("imported by hand")
            .record(&txn)
            .await
            .expect("record");
        txn.commit().await.expect("commit");

        let txn = t.db.begin().await.expect("begin");
        insert_note_by_sql(&txn, "gone", "rolled back").await;
        ManualEvent::new("Note", "gone", Action::Create)
            .changes(json!({"body": "rolled back"}))
            .record(&txn)
            .await
            .expect("record");
        assert_eq!(events(&txn).await.len(), 2, "{name}: visible inside");
        txn.rollback().await.expect("rollback");

        assert!(note_exists(&t.db, "kept").await && !note_exists(&t.db, "gone").await);
        let events = events(&t.db).await;
        assert_eq!(events.len(), 1, "{name}: the rolled-back event is gone");
        let e = &events[0];
        assert_eq!(
            essence(e),
            (
                "Note".into(),
                "create".into(),
                "kept".into(),
                json!({"body": "by raw SQL"})
            ),
            "{name}"
        );
        assert_eq!(e.client_id.as_deref(), Some("billing"));
        assert_eq!(e.messages.as_deref(), Some("imported by hand"));
        assert_eq!(e.format, acts_as_distributed::FORMAT_VERSION);
        assert!((chrono::Utc::now() - e.created_at).num_seconds().abs() < 60);
    }
}

#[tokio::test]
async fn domain_events_need_no_entity_and_ids_are_written_as_displayed() {
    let _settings = default_settings().await;
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let txn = t.db.begin().await.expect("begin");
        let uuid = uuid::Uuid::new_v4();
        ManualEvent::new("InvoicePaid", 42, Action::Update)
            .record(&txn)
            .await
            .expect("no changes: an empty object");
        ManualEvent::new("Customer", uuid, Action::Destroy)
            .changes(json!({"reason": "gdpr"}))
            .record(&txn)
            .await
            .expect("record");
        txn.commit().await.expect("commit");
        let seen: Vec<_> = events(&t.db).await.iter().map(essence).collect();
        assert_eq!(
            seen,
            [
                (
                    "InvoicePaid".into(),
                    "update".into(),
                    "42".into(),
                    json!({})
                ),
                (
                    "Customer".into(),
                    "destroy".into(),
                    uuid.to_string(),
                    json!({"reason": "gdpr"})
                ),
            ],
            "{}",
            backend.name()
        );
    }
}

#[tokio::test]
async fn bad_input_is_refused_before_anything_is_written() {
    let _settings = default_settings().await;
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let name = backend.name();
        let txn = t.db.begin().await.expect("begin");
        let long = "x".repeat(256);
        let cases = [
            (
                ManualEvent::new("", 1, Action::Create),
                "distributed_type",
                "is empty",
            ),
            (
                ManualEvent::new("  ", 1, Action::Create),
                "distributed_type",
                "Invoice",
            ),
            (
                ManualEvent::new("Invoice", "", Action::Create),
                "distributed_id",
                "is empty",
            ),
            (
                ManualEvent::new("Invoice", &long, Action::Create),
                "distributed_id",
                "256 characters",
            ),
            (
                ManualEvent::new(&long, 1, Action::Create),
                "distributed_type",
                "shorten it",
            ),
            (
                ManualEvent::new("Invoice", 1, Action::Create).client_id(long.clone()),
                "client_id",
                "shorten it",
            ),
        ];
        for (event, field, says) in cases {
            let err = event.record(&txn).await.expect_err("refused");
            assert!(
                matches!(&err, Error::InvalidEvent { field: f, .. } if *f == field),
                "{name}: {err:?}"
            );
            let text = err.to_string();
            assert!(
                text.contains(field) && text.contains(says) && text.contains("nothing written"),
                "{text}"
            );
        }
        for (changes, kind) in [
            (json!([1, 2]), "an array"),
            (json!("body"), "a string"),
            (Json::Null, "null"),
        ] {
            let err = ManualEvent::new("Invoice", 1, Action::Update)
                .changes(changes)
                .record(&txn)
                .await
                .expect_err("not an object");
            assert!(
                matches!(&err, Error::NotAnObject { found, .. } if *found == kind),
                "{name}: {err:?}"
            );
            assert!(err.to_string().contains("must be a JSON object"), "{err}");
        }
        // Refused input is refused inside `without_distributing` too: a bug shows either way.
        without_distributing(ManualEvent::new("", 1, Action::Create).record(&txn))
            .await
            .expect_err("refused");
        txn.commit().await.expect("commit");
        assert!(events(&t.db).await.is_empty(), "{name}");
    }
}

/// `record_model` after a write that ran no hooks gives the event capture writes for the same
/// row: the capture's event is taken in a transaction that is rolled back, then the same change
/// is made without hooks and recorded by hand.
#[tokio::test]
async fn record_model_gives_the_event_capture_would() {
    let _settings = default_settings().await;
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let name = backend.name();
        let mut am = new_user("ada");
        am.email = Set(Some("ada@example.com".into()));
        am.password = Set(Some("secret".into()));
        let ada = am.insert(&t.db).await.expect("insert");
        let created_by_capture = essence(&events(&t.db).await[0]);

        // Destroy: capture, rolled back.
        let txn = t.db.begin().await.expect("begin");
        ada.clone().delete(&txn).await.expect("delete with hooks");
        let destroyed_by_capture = essence(events(&txn).await.last().expect("event"));
        txn.rollback().await.expect("rollback");

        // Destroy: delete_by_id (no hooks) and record_model.
        let txn = t.db.begin().await.expect("begin");
        let row = user::Entity::find_by_id(ada.id)
            .lock_exclusive()
            .one(&txn)
            .await
            .expect("read")
            .expect("row");
        let res = user::Entity::delete_by_id(ada.id)
            .exec(&txn)
            .await
            .expect("delete_by_id");
        assert_eq!(res.rows_affected, 1);
        record_model(&txn, Action::Destroy, &row)
            .await
            .expect("record_model");
        let by_hand = essence(events(&txn).await.last().expect("event"));
        txn.commit().await.expect("commit");
        assert_eq!(by_hand, destroyed_by_capture, "{name}");
        assert!(
            by_hand.3.get("password").is_none(),
            "{name}: except applies"
        );

        // Create: the same row inserted again without hooks, recorded by hand.
        let txn = t.db.begin().await.expect("begin");
        let again = user::Entity::insert(ada.clone().into_active_model().reset_all())
            .exec_with_returning(&txn)
            .await
            .expect("insert without hooks");
        record_model(&txn, Action::Create, &again)
            .await
            .expect("record_model");
        let created_by_hand = essence(events(&txn).await.last().expect("event"));
        txn.commit().await.expect("commit");
        assert_eq!(created_by_hand, created_by_capture, "{name}");

        // A composite key renders as capture renders it.
        let txn = t.db.begin().await.expect("begin");
        let member = membership::ActiveModel {
            user_id: Set(3),
            group_id: Set(9),
            role: Set("owner".into()),
            note: Set(None),
        }
        .insert(&txn)
        .await
        .expect("insert with hooks");
        let member_by_capture = essence(events(&txn).await.last().expect("event"));
        record_model(&txn, Action::Create, &member)
            .await
            .expect("record_model");
        let member_by_hand = essence(events(&txn).await.last().expect("event"));
        txn.commit().await.expect("commit");
        assert_eq!(member_by_hand, member_by_capture, "{name}");
        assert_eq!(member_by_hand.2, "[3,9]");
    }
}

#[tokio::test]
async fn scopes_and_the_transaction_helper_apply_to_manual_events() {
    let _settings = default_settings().await;
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let name = backend.name();
        let txn = t.db.begin().await.expect("begin");
        Scope::new()
            .client_id("importer")
            .messages("from the scope")
            .run(async {
                ManualEvent::new("Invoice", 1, Action::Create)
                    .record(&txn)
                    .await
                    .expect("scoped");
                ManualEvent::new("Invoice", 2, Action::Create)
                    .messages("from the event")
                    .record(&txn)
                    .await
                    .expect("own messages");
            })
            .await;
        without_distributing(ManualEvent::new("Invoice", 3, Action::Create).record(&txn))
            .await
            .expect("nothing written, no error");
        txn.commit().await.expect("commit");

        let buffered = transaction(&t.db, |txn| {
            Box::pin(async move {
                let ada = new_user("ada").insert(txn).await?;
                record_model(txn, Action::Update, &ada)
                    .await
                    .map_err(|e| DbErr::Custom(e.to_string()))?;
                Ok::<_, DbErr>(events(txn).await.len())
            })
        })
        .await
        .expect("transaction");
        assert_eq!(
            buffered, 2,
            "{name}: only the two committed before; these are held for the commit"
        );

        let seen: Vec<(String, String, Option<String>, Option<String>)> = events(&t.db)
            .await
            .into_iter()
            .map(|e| (e.distributed_id, e.action, e.client_id, e.messages))
            .collect();
        let ada = user::Entity::find()
            .one(&t.db)
            .await
            .expect("read")
            .expect("ada");
        let uuid = ada.uuid.to_string();
        assert_eq!(
            seen,
            [
                (
                    "1".into(),
                    "create".into(),
                    Some("importer".into()),
                    Some("from the scope".into())
                ),
                (
                    "2".into(),
                    "create".into(),
                    Some("importer".into()),
                    Some("from the event".into())
                ),
                (uuid.clone(), "create".into(), None, None),
                (uuid, "update".into(), None, None),
            ],
            "{name}"
        );
    }
}

#[tokio::test]
async fn strict_mode_refuses_manual_events_outside_a_transaction() {
    let _settings = SETTINGS.write().await;
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let name = backend.name();
        Settings::new()
            .outside_transaction(OutsideTransaction::Error)
            .install();
        let outside = ManualEvent::new("Invoice", 1, Action::Create)
            .record(&t.db)
            .await;
        let inside = async {
            let txn = t.db.begin().await?;
            ManualEvent::new("Invoice", 2, Action::Create)
                .record(&txn)
                .await?;
            txn.commit().await?;
            Ok::<_, Error>(())
        }
        .await;
        Settings::new().install();

        let err = outside.expect_err("refused");
        assert!(
            matches!(&err, Error::Db(DbErr::Custom(m)) if m.contains("outside a transaction") && m.contains("Invoice")),
            "{name}: {err}"
        );
        inside.expect("inside a transaction: allowed");
        let ids: Vec<String> = events(&t.db)
            .await
            .into_iter()
            .map(|e| e.distributed_id)
            .collect();
        assert_eq!(ids, ["2"], "{name}");
    }
}

/// The manual path covers what the hooks never see: a row deleted as a side effect.
#[tokio::test]
async fn a_deleted_model_can_be_recorded_from_the_model_itself() {
    let _settings = default_settings().await;
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let txn = t.db.begin().await.expect("begin");
        let note = note::Entity::insert(note::ActiveModel {
            code: Set("n".into()),
            body: Set("b".into()),
        })
        .exec_with_returning(&txn)
        .await
        .expect("insert");
        txn.execute_unprepared("DELETE FROM notes")
            .await
            .expect("raw delete");
        ManualEvent::for_model(Action::Destroy, &note)
            .messages("purged")
            .record(&txn)
            .await
            .expect("record");
        txn.commit().await.expect("commit");
        let e = &events(&t.db).await[0];
        assert_eq!(
            essence(e),
            (
                "Note".into(),
                "destroy".into(),
                "n".into(),
                json!({"body": "b"})
            )
        );
        assert_eq!(e.messages.as_deref(), Some("purged"));
    }
}
