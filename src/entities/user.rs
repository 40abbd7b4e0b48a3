//! The original plugin's `User`: a uuid, excluded secrets, a database default, timestamps and
//! validation in the user's own hooks.

use acts_as_distributed::DistributedBehavior;
use sea_orm::Set;
use sea_orm::entity::prelude::*;

/// A user.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    /// Key.
    #[sea_orm(primary_key)]
    pub id: i32,
    /// The distributed id.
    #[sea_orm(unique)]
    pub uuid: Uuid,
    /// Unique login.
    #[sea_orm(unique)]
    pub login: String,
    /// Lower-cased by the user's hook.
    pub email: Option<String>,
    /// Never distributed (`except`).
    pub password: Option<String>,
    /// Never distributed (`except`).
    pub salt: Option<String>,
    /// Database default 0.
    #[sea_orm(default_value = 0)]
    pub logins: i32,
    /// Nullable.
    pub activated: Option<bool>,
    /// Set by the hook; never distributed.
    pub created_at: DateTimeUtc,
    /// Set by the hook; never distributed.
    pub updated_at: DateTimeUtc,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

acts_as_distributed::acts_as_distributed!(except = [Column::Password, Column::Salt], hooks = true);

#[acts_as_distributed::async_trait]
impl DistributedBehavior for ActiveModel {
    async fn before_save<C>(mut self, _db: &C, insert: bool) -> Result<Self, DbErr>
    where
        C: ConnectionTrait,
    {
        if let Set(login) = &self.login
            && login.trim().is_empty()
        {
            return Err(DbErr::Custom("a user's login must not be empty".into()));
        }
        if let Set(Some(email)) = &self.email {
            self.email = Set(Some(email.to_lowercase()));
        }
        let now = chrono::Utc::now();
        if insert {
            if self.uuid.is_not_set() {
                self.uuid = Set(Uuid::new_v4());
            }
            self.created_at = Set(now);
        }
        self.updated_at = Set(now);
        Ok(self)
    }
}
