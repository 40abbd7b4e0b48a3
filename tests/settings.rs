//! Process-wide settings: the warning for saves outside a transaction, strict mode, default
//! `client_id` / `messages`. Settings belong to the whole process, so this file is its own test
//! binary and runs its checks one after the other in a single test.

mod common;

use acts_as_distributed::{
    OutsideTransaction, Scope, Settings, UnknownConnection, transaction, without_distributing,
};
use common::*;
use sea_orm::{
    ActiveModelTrait, DatabaseExecutor, DbErr, EntityTrait, IntoActiveModel, PaginatorTrait, Set,
    TransactionTrait,
};
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Collects what `tracing` writes.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("logs")).into_owned()
    }
    fn warnings_about(&self, entity: &str) -> usize {
        self.text()
            .lines()
            .filter(|l| {
                l.contains("WARN")
                    && l.contains(&format!("a {entity} was saved outside a transaction"))
            })
            .count()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn settings_apply_process_wide() {
    let logs = Logs::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let name = backend.name();
        warns_once_per_entity_outside_transactions(&t, &logs).await;
        strict_mode_refuses_saves_outside_transactions(&t).await;
        unknown_connections_follow_the_setting(&t).await;
        defaults_fill_client_id_and_messages(&t).await;
        Settings::new().install();
        eprintln!("{name}: settings checks passed");
    }
}

async fn warns_once_per_entity_outside_transactions(t: &TestDb, logs: &Logs) {
    Settings::new().install();
    let before_user = logs.warnings_about("User");
    // Inside transactions: no warning.
    let txn = t.db.begin().await.expect("begin");
    new_user("in-txn").insert(&txn).await.expect("insert");
    txn.commit().await.expect("commit");
    transaction(&t.db, |txn| {
        Box::pin(async move { new_user("in-helper").insert(txn).await })
    })
    .await
    .expect("helper");
    assert_eq!(
        logs.warnings_about("User"),
        before_user,
        "no warning inside transactions"
    );

    // Outside: saved with its event, and one warning per entity for the whole process.
    let a = new_user("outside-1").insert(&t.db).await.expect("insert");
    new_user("outside-2").insert(&t.db).await.expect("insert");
    let mut am = a.into_active_model();
    am.logins = Set(2);
    am.update(&t.db).await.expect("update");
    note::ActiveModel {
        code: Set("n".into()),
        body: Set("b".into()),
    }
    .insert(&t.db)
    .await
    .expect("note");
    // Once per entity for the process: the first backend's first save warned, no later one.
    assert_eq!(logs.warnings_about("User"), 1, "{}", logs.text());
    assert_eq!(logs.warnings_about("Note"), 1, "{}", logs.text());
    assert!(
        logs.text().contains("acts_as_distributed::transaction"),
        "the warning says what to do"
    );
    assert_eq!(
        events(&t.db).await.len(),
        6,
        "{}: every save has its event",
        t.backend.name()
    );
}

async fn strict_mode_refuses_saves_outside_transactions(t: &TestDb) {
    Settings::new()
        .outside_transaction(OutsideTransaction::Error)
        .install();
    let users = user::Entity::find().count(&t.db).await.expect("count");
    let events_before = events(&t.db).await.len();

    let err = new_user("strict").insert(&t.db).await.expect_err("refused");
    assert!(
        matches!(&err, DbErr::Custom(m) if m.contains("outside a transaction")),
        "{err}"
    );
    let existing = user::Entity::find()
        .one(&t.db)
        .await
        .expect("read")
        .expect("a user");
    let mut am = existing.clone().into_active_model();
    am.logins = Set(77);
    am.update(&t.db).await.expect_err("update refused");
    existing
        .clone()
        .into_active_model()
        .delete(&t.db)
        .await
        .expect_err("delete refused");
    assert_eq!(
        user::Entity::find().count(&t.db).await.expect("count"),
        users,
        "nothing written"
    );
    let stored = user::Entity::find_by_id(existing.id)
        .one(&t.db)
        .await
        .expect("read")
        .expect("row");
    assert_eq!(stored.logins, existing.logins, "the update was not run");
    assert_eq!(events(&t.db).await.len(), events_before);

    // Inside a transaction, the helper, or without distributing: allowed.
    let txn = t.db.begin().await.expect("begin");
    new_user("strict-txn")
        .insert(&txn)
        .await
        .expect("insert in txn");
    txn.commit().await.expect("commit");
    transaction(&t.db, |txn| {
        Box::pin(async move { new_user("strict-helper").insert(txn).await })
    })
    .await
    .expect("helper");
    without_distributing(new_user("strict-silent").insert(&t.db))
        .await
        .expect("no event, no refusal");
    assert_eq!(events(&t.db).await.len(), events_before + 2);
}

async fn unknown_connections_follow_the_setting(t: &TestDb) {
    let executor = DatabaseExecutor::Connection(&t.db);
    Settings::new()
        .outside_transaction(OutsideTransaction::Error)
        .install();
    new_user("exec-assumed-txn")
        .insert(&executor)
        .await
        .expect("assumed a transaction by default");
    Settings::new()
        .outside_transaction(OutsideTransaction::Error)
        .unknown_connection(UnknownConnection::AssumeOutside)
        .install();
    new_user("exec-outside")
        .insert(&executor)
        .await
        .expect_err("assumed outside: refused");
    Settings::new()
        .outside_transaction(OutsideTransaction::Allow)
        .install();
    new_user("allowed").insert(&t.db).await.expect("allowed");
}

async fn defaults_fill_client_id_and_messages(t: &TestDb) {
    Settings::new()
        .client_id("web-1")
        .messages("from settings")
        .install();
    new_user("defaults").insert(&t.db).await.expect("insert");
    Scope::new()
        .client_id("scoped")
        .run(new_user("scoped").insert(&t.db))
        .await
        .expect("insert");
    let events = events(&t.db).await;
    let last_two: Vec<(Option<String>, Option<String>)> = events
        .iter()
        .rev()
        .take(2)
        .map(|e| (e.client_id.clone(), e.messages.clone()))
        .collect();
    assert_eq!(
        last_two,
        [
            (Some("scoped".into()), Some("from settings".into())),
            (Some("web-1".into()), Some("from settings".into())),
        ],
        "a scope overrides what it sets, the settings fill the rest"
    );
}
