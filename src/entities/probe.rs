//! A plain SeaORM entity (no acts_as_distributed) whose hooks record what SeaORM hands them: the
//! tests that pin the SeaORM hook behaviour the capture design relies on.

use sea_orm::entity::prelude::*;
use std::sync::Mutex;

/// A probe row.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "probes")]
pub struct Model {
    /// Key.
    #[sea_orm(primary_key)]
    pub id: i32,
    /// A value.
    pub name: String,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

/// What the hooks saw, in order: `before_save(insert)`, `after_save(insert)`, `before_delete`,
/// `after_delete` with the ActiveModel they were given.
pub static CALLS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn record(call: String) {
    CALLS.lock().unwrap_or_else(|p| p.into_inner()).push(call);
}

/// Takes the recorded calls.
pub fn take_calls() -> Vec<String> {
    std::mem::take(&mut *CALLS.lock().unwrap_or_else(|p| p.into_inner()))
}

#[async_trait::async_trait]
impl ActiveModelBehavior for ActiveModel {
    async fn before_save<C>(self, _db: &C, insert: bool) -> Result<Self, DbErr>
    where
        C: ConnectionTrait,
    {
        record(format!(
            "before_save({insert}) {:?} {:?}",
            self.id, self.name
        ));
        Ok(self)
    }

    async fn after_save<C>(model: Model, _db: &C, insert: bool) -> Result<Model, DbErr>
    where
        C: ConnectionTrait,
    {
        record(format!("after_save({insert}) {} {}", model.id, model.name));
        Ok(model)
    }

    async fn before_delete<C>(self, _db: &C) -> Result<Self, DbErr>
    where
        C: ConnectionTrait,
    {
        record(format!("before_delete {:?} {:?}", self.id, self.name));
        Ok(self)
    }

    async fn after_delete<C>(self, _db: &C) -> Result<Self, DbErr>
    where
        C: ConnectionTrait,
    {
        record(format!("after_delete {:?} {:?}", self.id, self.name));
        Ok(self)
    }
}
