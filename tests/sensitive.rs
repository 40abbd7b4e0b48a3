//! Sensitive data: `redact` keeps a column's key in events with a masked value, and `erase` masks
//! every value of one object's retained events, on every backend.

mod common;

use acts_as_distributed::values::{is_redacted, redacted};
use acts_as_distributed::{DistributedEntity, erase, erase_object};
use common::*;
use sea_orm::{
    ActiveModelTrait, DatabaseConnection, DbErr, EntityTrait, IdenStatic, IntoActiveModel,
    ModelTrait, Set, TransactionTrait, Value,
};
use serde_json::{Value as Json, json};

fn new_patient(name: &str) -> patient::ActiveModel {
    patient::ActiveModel {
        uuid: Set(uuid::Uuid::new_v4()),
        name: Set(name.to_owned()),
        email: Set(format!("{}@example.com", name.to_lowercase())),
        diagnosis: Set(Some("flu".into())),
        visits: Set(1),
        born_on: Set(chrono::NaiveDate::from_ymd_opt(1990, 4, 1)),
        password: Set(Some("secret".into())),
        ..Default::default()
    }
}

async fn fresh(db: &DatabaseConnection, id: i32) -> patient::Model {
    patient::Entity::find_by_id(id)
        .one(db)
        .await
        .expect("select")
        .expect("the row")
}

/// No value of the event's text may be one of the patient's secrets.
fn assert_no_secret(event: &acts_as_distributed::distribute::Model, secrets: &[&str]) {
    let text = format!("{} {:?}", event.changes, event.previous);
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "{secret} leaked into {} event: {text}",
            event.action
        );
    }
}

#[tokio::test]
async fn redacted_columns_keep_their_key_with_a_masked_value_in_every_action() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let ada = new_patient("Ada").insert(&t.db).await.expect("insert");
        let stored = fresh(&t.db, ada.id).await;
        assert_eq!(
            stored.email, "ada@example.com",
            "the row itself is not masked"
        );

        let mut am = ada.clone().into_active_model();
        am.email = Set("ada@clinic.org".into());
        am.visits = Set(2);
        let updated = am.update(&t.db).await.expect("update");
        assert_eq!(fresh(&t.db, ada.id).await, updated);

        let mut am = updated.clone().into_active_model();
        am.diagnosis = Set(None);
        am.update(&t.db).await.expect("update to NULL");

        patient::ActiveModel {
            id: Set(ada.id),
            ..Default::default()
        }
        .delete(&t.db)
        .await
        .expect("delete by key");

        let events = events(&t.db).await;
        let name = backend.name();
        assert_eq!(events.len(), 4, "{name}");
        assert_eq!(
            events.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
            ["create", "update", "update", "destroy"],
            "{name}"
        );
        let id = ada.uuid.to_string();
        assert!(events.iter().all(|e| e.distributed_id == id), "{name}");
        // create: every distributed column, the redacted ones masked, `password` left out.
        assert_eq!(
            events[0].changes,
            json!({
                "uuid": id,
                "name": "Ada",
                "email": redacted(),
                "diagnosis": redacted(),
                "visits": 1,
                "born_on": "1990-04-01",
            }),
            "{name}"
        );
        // update: the key of the changed redacted column stays, so consumers see it changed.
        assert_eq!(
            events[1].changes,
            json!({"email": redacted(), "visits": 2}),
            "{name}"
        );
        assert_eq!(
            events[1].previous,
            Some(json!({"email": redacted(), "visits": 1})),
            "{name}: old values are masked alike"
        );
        // A NULL is masked too: whether a redacted value is empty is not told either.
        assert_eq!(
            events[2].changes,
            json!({"diagnosis": redacted()}),
            "{name}"
        );
        assert_eq!(events[3].changes["email"], redacted(), "{name}");
        assert_eq!(events[3].changes["diagnosis"], redacted(), "{name}");
        assert_eq!(events[3].changes["visits"], json!(2), "{name}");
        for e in &events {
            assert_no_secret(e, &["ada@", "clinic", "flu", "secret"]);
        }
    }
}

#[tokio::test]
async fn decoding_leaves_masked_values_out() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let ada = new_patient("Ada").insert(&t.db).await.expect("insert");
        let events = events(&t.db).await;
        let decoded = patient::Entity::decode_changes(&events[0].changes).expect("decode");
        let decoded: Vec<(&str, Value)> =
            decoded.into_iter().map(|(c, v)| (c.as_str(), v)).collect();
        assert_eq!(
            decoded,
            [
                ("born_on", Value::ChronoDate(ada.born_on)),
                ("name", Value::String(Some("Ada".into()))),
                ("uuid", Value::Uuid(Some(ada.uuid))),
                ("visits", Value::Int(Some(1))),
            ],
            "{}: without email and diagnosis",
            backend.name()
        );
    }
}

#[test]
fn introspection_names_the_redacted_columns() {
    let names = |cols: &[patient::Column]| cols.iter().map(|c| c.as_str()).collect::<Vec<_>>();
    assert_eq!(
        names(patient::Entity::redacted_columns()),
        ["email", "diagnosis"]
    );
    assert_eq!(
        names(patient::Entity::distributed_columns()),
        ["uuid", "name", "email", "diagnosis", "visits", "born_on"]
    );
    assert_eq!(
        names(patient::Entity::non_distributed_columns()),
        ["id", "password"]
    );
    assert!(user::Entity::redacted_columns().is_empty());
    assert!(patient::Entity::distribution().records_previous());
    assert!(!user::Entity::distribution().records_previous());
}

/// Every value of `changes` and `previous` masked, the keys as they were.
fn assert_erased(before: &Json, after: &Json) {
    let before = before.as_object().expect("object");
    let after = after.as_object().expect("object");
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "the keys stay"
    );
    assert!(
        after.values().all(is_redacted),
        "every value masked: {after:?}"
    );
}

#[tokio::test]
async fn erase_masks_every_value_of_one_objects_events_and_nothing_else() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let name = backend.name();
        let ada = new_patient("Ada").insert(&t.db).await.expect("insert");
        let bob = new_patient("Bob").insert(&t.db).await.expect("insert");
        let mut am = ada.clone().into_active_model();
        am.name = Set("Ada L.".into());
        let ada = am.update(&t.db).await.expect("update");
        ada.clone().delete(&t.db).await.expect("delete");
        let user = new_user("ada").insert(&t.db).await.expect("a user");
        let before = events(&t.db).await;
        assert_eq!(before.len(), 5, "{name}");

        let rewritten = erase::<patient::Entity, _>(&t.db, &ada.uuid.to_string())
            .await
            .expect("erase");
        assert_eq!(rewritten, 3, "{name}: create, update and destroy of Ada");

        let after = events(&t.db).await;
        assert_eq!(after.len(), 5, "{name}: no event removed");
        for (b, a) in before.iter().zip(&after) {
            let erased =
                a.distributed_type == "Patient" && a.distributed_id == ada.uuid.to_string();
            // Everything but the values stays: id, type, object, action, order, time, format.
            assert_eq!(
                (a.id, &a.distributed_type, &a.distributed_id, &a.action),
                (b.id, &b.distributed_type, &b.distributed_id, &b.action),
                "{name}"
            );
            assert_eq!((a.created_at, a.format), (b.created_at, b.format), "{name}");
            if erased {
                assert_erased(&b.changes, &a.changes);
                match (&b.previous, &a.previous) {
                    (None, None) => {}
                    (Some(b), Some(a)) => assert_erased(b, a),
                    other => panic!("{name}: previous {other:?}"),
                }
                assert_no_secret(a, &["Ada", "1990", "\"visits\":1"]);
            } else {
                assert_eq!(
                    (&a.changes, &a.previous),
                    (&b.changes, &b.previous),
                    "{name}"
                );
            }
        }
        assert_eq!(after[1].distributed_id, bob.uuid.to_string());
        assert_eq!(
            after[1].changes["name"],
            json!("Bob"),
            "{name}: Bob keeps his"
        );
        assert_eq!(
            after[4].changes["login"],
            json!("ada"),
            "{name}: other types too"
        );
        assert_eq!(user.login, "ada");

        // Nothing left to mask the second time.
        let again = erase_object(&t.db, "Patient", &ada.uuid.to_string())
            .await
            .expect("erase again");
        assert_eq!(again, 0, "{name}");
        let unknown = erase_object(&t.db, "Patient", "no-such-object")
            .await
            .expect("erase nothing");
        assert_eq!(unknown, 0, "{name}");
    }
}

#[tokio::test]
async fn erase_inside_a_transaction_rolls_back_with_it() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let ada = new_patient("Ada").insert(&t.db).await.expect("insert");
        let before = events(&t.db).await;
        let txn = t.db.begin().await.expect("begin");
        let n = erase::<patient::Entity, _>(&txn, &ada.uuid.to_string())
            .await
            .expect("erase");
        assert_eq!(n, 1);
        assert!(events(&txn).await[0].changes["name"] != json!("Ada"));
        txn.rollback().await.expect("rollback");
        assert_eq!(events(&t.db).await, before, "{}", backend.name());
    }
}

#[tokio::test]
async fn erase_through_the_transaction_helper_commits_with_the_work() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let ada = new_patient("Ada").insert(&t.db).await.expect("insert");
        let uuid = ada.uuid.to_string();
        // The GDPR flow: delete the person and erase their history in one transaction.
        acts_as_distributed::transaction(&t.db, |txn| {
            let uuid = uuid.clone();
            Box::pin(async move {
                ada.delete(txn).await?;
                erase::<patient::Entity, _>(txn, &uuid)
                    .await
                    .map_err(|e| DbErr::Custom(e.to_string()))?;
                Ok::<_, DbErr>(())
            })
        })
        .await
        .expect("transaction");
        let events = events(&t.db).await;
        let name = backend.name();
        assert_eq!(events.len(), 2, "{name}");
        // The helper's buffered destroy was written before the erase, so it is erased too.
        assert_eq!(events[1].action, "destroy", "{name}");
        for e in &events {
            assert!(
                e.changes
                    .as_object()
                    .expect("object")
                    .values()
                    .all(is_redacted),
                "{name}: {} erased",
                e.action
            );
        }
        assert_eq!(
            erase_object(&t.db, "Patient", &uuid).await.expect("erase"),
            0
        );
    }
}

#[tokio::test]
async fn bulk_updates_mask_redacted_columns_too() {
    use acts_as_distributed::DistributedExecExt;
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, QueryFilter};
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let txn = t.db.begin().await.expect("begin");
        new_patient("Grace").insert(&txn).await.expect("insert");
        patient::Entity::update_many()
            .col_expr(patient::Column::Email, Expr::value("grace@secret.org"))
            .col_expr(patient::Column::Visits, Expr::value(7))
            .filter(patient::Column::Name.eq("Grace"))
            .exec_distributed(&txn)
            .await
            .expect("bulk update");
        txn.commit().await.expect("commit");
        let events = events(&t.db).await;
        let update = events.last().expect("the bulk update's event");
        assert_eq!(update.action, "update", "{}", backend.name());
        assert!(is_redacted(&update.changes["email"]), "{}", update.changes);
        assert_eq!(update.changes["visits"], json!(7));
        assert_no_secret(update, &["grace@secret.org"]);
    }
}
