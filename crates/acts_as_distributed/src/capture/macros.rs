//! The `acts_as_distributed!` macro: a thin layer over the capture functions
//! of `capture/hooks.rs`.

/// Distributes an entity: implements SeaORM's `ActiveModelBehavior` so that every create, update
/// and destroy writes one row to `distributes`. Write it in the entity module in place of
/// `impl ActiveModelBehavior for ActiveModel {}`, or in any module where the entity's `Entity`,
/// `ActiveModel` and `Column` are in scope (so regenerated entity files do not erase it).
///
/// **Your own hooks:** the macro *is* the entity's `impl ActiveModelBehavior`, so a second one
/// beside it fails with rustc's `E0119` ("conflicting implementations of trait
/// `ActiveModelBehavior`"). Move your hook code into `impl DistributedBehavior for ActiveModel`
/// (same signatures as SeaORM's hooks) and write `acts_as_distributed!(hooks = true)`: see
/// [`DistributedBehavior`](crate::DistributedBehavior).
///
/// Options, each optional, in any order:
///
/// | option | meaning | default |
/// | --- | --- | --- |
/// | `except = [Column::A, ..]` | columns kept out of events | none |
/// | `only = [Column::A, ..]` | the only columns in events (not with `except`) | every column |
/// | `uuid = Column::X` | the column whose value is `distributed_id` | a column named `uuid`, else the primary key |
/// | `type_name = "User"` | `distributed_type` | the CamelCase of the entity's module name |
/// | `hooks = true` | call your own [`DistributedBehavior`](crate::DistributedBehavior) hooks | `false` |
/// | `redact = [Column::A, ..]` | columns whose key stays in `changes` with a [masked value](crate::values::redacted) (not with `except`; within `only`) | none |
/// | `previous = true` | update events also carry the old values of the changed columns (`distributes.previous`; one locked read per update) | `false` |
///
/// The primary key, `created_at` and `updated_at` are never distributed.
///
/// Sensitive columns: `except` keeps a column out of events entirely; `redact` keeps its key (so
/// consumers see that it changed) with the value masked, in `changes` and in `previous` alike.
/// [`erase`](crate::erase()) masks one object's retained events after the fact.
///
/// ```
/// mod account {
///     use sea_orm::entity::prelude::*;
///
///     #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
///     #[sea_orm(table_name = "accounts")]
///     pub struct Model {
///         #[sea_orm(primary_key)]
///         pub id: i32,
///         pub public_id: String,
///         pub email: String,
///         pub password: String,
///         pub salt: String,
///     }
///
///     #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
///     pub enum Relation {}
///
///     acts_as_distributed::acts_as_distributed!(
///         except = [Column::Password, Column::Salt],
///         uuid = Column::PublicId,
///         type_name = "Customer",
///     );
/// }
///
/// use acts_as_distributed::DistributedEntity;
/// assert_eq!(account::Entity::distributed_type(), "Customer");
/// use sea_orm::IdenStatic;
/// let names = |cols: &[account::Column]| cols.iter().map(|c| c.as_str()).collect::<Vec<_>>();
/// assert_eq!(names(account::Entity::distribution().id_columns()), ["public_id"]);
/// assert_eq!(names(account::Entity::distributed_columns()), ["public_id", "email"]);
/// ```
///
/// A misspelt option does not compile:
///
/// ```compile_fail
/// # mod user { use sea_orm::entity::prelude::*;
/// # #[derive(Clone, Debug, PartialEq, DeriveEntityModel)] #[sea_orm(table_name = "users")]
/// # pub struct Model { #[sea_orm(primary_key)] pub id: i32, pub password: String }
/// # #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)] pub enum Relation {}
/// acts_as_distributed::acts_as_distributed!(exept = [Column::Password]);
/// # }
/// ```
///
/// Nor does a value that is not a column:
///
/// ```compile_fail
/// # mod user { use sea_orm::entity::prelude::*;
/// # #[derive(Clone, Debug, PartialEq, DeriveEntityModel)] #[sea_orm(table_name = "users")]
/// # pub struct Model { #[sea_orm(primary_key)] pub id: i32, pub password: String }
/// # #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)] pub enum Relation {}
/// acts_as_distributed::acts_as_distributed!(except = ["password"]);
/// # }
/// ```
///
/// Nor `only` with `except`:
///
/// ```compile_fail
/// # mod user { use sea_orm::entity::prelude::*;
/// # #[derive(Clone, Debug, PartialEq, DeriveEntityModel)] #[sea_orm(table_name = "users")]
/// # pub struct Model { #[sea_orm(primary_key)] pub id: i32, pub name: String, pub password: String }
/// # #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)] pub enum Relation {}
/// acts_as_distributed::acts_as_distributed!(only = [Column::Name], except = [Column::Password]);
/// # }
/// ```
///
/// `redact` and `previous`:
///
/// ```
/// mod patient {
///     use sea_orm::entity::prelude::*;
///
///     #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
///     #[sea_orm(table_name = "patients")]
///     pub struct Model {
///         #[sea_orm(primary_key)]
///         pub id: i32,
///         pub name: String,
///         pub diagnosis: String,
///         pub password: String,
///     }
///
///     #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
///     pub enum Relation {}
///
///     acts_as_distributed::acts_as_distributed!(
///         except = [Column::Password],
///         redact = [Column::Diagnosis],
///         previous = true,
///     );
/// }
///
/// use acts_as_distributed::DistributedEntity;
/// use sea_orm::IdenStatic;
/// let names = |cols: &[patient::Column]| cols.iter().map(|c| c.as_str()).collect::<Vec<_>>();
/// assert_eq!(names(patient::Entity::distributed_columns()), ["name", "diagnosis"]);
/// assert_eq!(names(patient::Entity::redacted_columns()), ["diagnosis"]);
/// assert!(patient::Entity::distribution().records_previous());
/// ```
///
/// A column cannot be both left out and redacted:
///
/// ```compile_fail
/// # mod user { use sea_orm::entity::prelude::*;
/// # #[derive(Clone, Debug, PartialEq, DeriveEntityModel)] #[sea_orm(table_name = "users")]
/// # pub struct Model { #[sea_orm(primary_key)] pub id: i32, pub email: String, pub password: String }
/// # #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)] pub enum Relation {}
/// acts_as_distributed::acts_as_distributed!(except = [Column::Password], redact = [Column::Password]);
/// # }
/// ```
///
/// Nor redacted outside `only`:
///
/// ```compile_fail
/// # mod user { use sea_orm::entity::prelude::*;
/// # #[derive(Clone, Debug, PartialEq, DeriveEntityModel)] #[sea_orm(table_name = "users")]
/// # pub struct Model { #[sea_orm(primary_key)] pub id: i32, pub name: String, pub email: String }
/// # #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)] pub enum Relation {}
/// acts_as_distributed::acts_as_distributed!(only = [Column::Name], redact = [Column::Email]);
/// # }
/// ```
///
/// `previous` takes a boolean:
///
/// ```compile_fail
/// # mod user { use sea_orm::entity::prelude::*;
/// # #[derive(Clone, Debug, PartialEq, DeriveEntityModel)] #[sea_orm(table_name = "users")]
/// # pub struct Model { #[sea_orm(primary_key)] pub id: i32, pub name: String }
/// # #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)] pub enum Relation {}
/// acts_as_distributed::acts_as_distributed!(previous = [Column::Name]);
/// # }
/// ```
///
/// Nor a second `impl ActiveModelBehavior` (the macro is that impl; see `hooks = true`):
///
/// ```compile_fail
/// # mod user { use sea_orm::entity::prelude::*;
/// # #[derive(Clone, Debug, PartialEq, DeriveEntityModel)] #[sea_orm(table_name = "users")]
/// # pub struct Model { #[sea_orm(primary_key)] pub id: i32, pub name: String }
/// # #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)] pub enum Relation {}
/// acts_as_distributed::acts_as_distributed!();
/// impl ActiveModelBehavior for ActiveModel {}
/// # }
/// ```
#[macro_export]
macro_rules! acts_as_distributed {
    ($($options:tt)*) => {
        $crate::__acts_as_distributed_parse!([] [] [] [] [false] [] [false] ; $($options)*);
    };
}

/// Parses the options of [`acts_as_distributed!`] one at a time. Not a public API.
///
/// State: `[except] [only] [uuid] [type_name] [hooks] [redact] [previous] ; remaining tokens`.
#[doc(hidden)]
#[macro_export]
macro_rules! __acts_as_distributed_parse {
    // Done.
    ([$($e:tt)+] [$($o:tt)+] $u:tt $t:tt $h:tt $r:tt $p:tt ; $(,)?) => {
        ::core::compile_error!(
            "acts_as_distributed!: give either `only` or `except`, not both: `only` lists every distributed column already"
        );
    };
    ($e:tt $o:tt $u:tt $t:tt [$h:tt] $r:tt [$p:tt] ; $(,)?) => {
        $crate::__acts_as_distributed_emit!($e $o $u $t $h $r $p);
    };
    // except = [..]
    ([] $o:tt $u:tt $t:tt $h:tt $r:tt $p:tt ; except = [$($c:expr),* $(,)?] $(, $($rest:tt)*)?) => {
        $crate::__acts_as_distributed_parse!([$($c),*] $o $u $t $h $r $p ; $($($rest)*)?);
    };
    // only = [..]
    ($e:tt [] $u:tt $t:tt $h:tt $r:tt $p:tt ; only = [$($c:expr),* $(,)?] $(, $($rest:tt)*)?) => {
        $crate::__acts_as_distributed_parse!($e [$($c),*] $u $t $h $r $p ; $($($rest)*)?);
    };
    // uuid = Column::X
    ($e:tt $o:tt [] $t:tt $h:tt $r:tt $p:tt ; uuid = $c:path $(, $($rest:tt)*)?) => {
        $crate::__acts_as_distributed_parse!($e $o [$c] $t $h $r $p ; $($($rest)*)?);
    };
    // type_name = "Name"
    ($e:tt $o:tt $u:tt [] $h:tt $r:tt $p:tt ; type_name = $n:literal $(, $($rest:tt)*)?) => {
        $crate::__acts_as_distributed_parse!($e $o $u [$n] $h $r $p ; $($($rest)*)?);
    };
    // hooks = true | false
    ($e:tt $o:tt $u:tt $t:tt $h:tt $r:tt $p:tt ; hooks = true $(, $($rest:tt)*)?) => {
        $crate::__acts_as_distributed_parse!($e $o $u $t [true] $r $p ; $($($rest)*)?);
    };
    ($e:tt $o:tt $u:tt $t:tt $h:tt $r:tt $p:tt ; hooks = false $(, $($rest:tt)*)?) => {
        $crate::__acts_as_distributed_parse!($e $o $u $t [false] $r $p ; $($($rest)*)?);
    };
    // redact = [..]
    ($e:tt $o:tt $u:tt $t:tt $h:tt [] $p:tt ; redact = [$($c:expr),* $(,)?] $(, $($rest:tt)*)?) => {
        $crate::__acts_as_distributed_parse!($e $o $u $t $h [$($c),*] $p ; $($($rest)*)?);
    };
    // previous = true | false
    ($e:tt $o:tt $u:tt $t:tt $h:tt $r:tt $p:tt ; previous = true $(, $($rest:tt)*)?) => {
        $crate::__acts_as_distributed_parse!($e $o $u $t $h $r [true] ; $($($rest)*)?);
    };
    ($e:tt $o:tt $u:tt $t:tt $h:tt $r:tt $p:tt ; previous = false $(, $($rest:tt)*)?) => {
        $crate::__acts_as_distributed_parse!($e $o $u $t $h $r [false] ; $($($rest)*)?);
    };
    // Known options with a value of the wrong shape, or given twice.
    ($e:tt $o:tt $u:tt $t:tt $h:tt $r:tt $p:tt ; except $($rest:tt)*) => {
        ::core::compile_error!("acts_as_distributed!: `except` takes a list of columns, once: `except = [Column::Password, Column::Salt]`");
    };
    ($e:tt $o:tt $u:tt $t:tt $h:tt $r:tt $p:tt ; only $($rest:tt)*) => {
        ::core::compile_error!("acts_as_distributed!: `only` takes a list of columns, once: `only = [Column::Name, Column::Email]`");
    };
    ($e:tt $o:tt $u:tt $t:tt $h:tt $r:tt $p:tt ; uuid $($rest:tt)*) => {
        ::core::compile_error!("acts_as_distributed!: `uuid` takes one column, once: `uuid = Column::PublicId`");
    };
    ($e:tt $o:tt $u:tt $t:tt $h:tt $r:tt $p:tt ; type_name $($rest:tt)*) => {
        ::core::compile_error!("acts_as_distributed!: `type_name` takes a string literal, once: `type_name = \"User\"`");
    };
    ($e:tt $o:tt $u:tt $t:tt $h:tt $r:tt $p:tt ; hooks $($rest:tt)*) => {
        ::core::compile_error!("acts_as_distributed!: `hooks` takes `true` or `false`: `hooks = true` calls your DistributedBehavior impl");
    };
    ($e:tt $o:tt $u:tt $t:tt $h:tt $r:tt $p:tt ; redact $($rest:tt)*) => {
        ::core::compile_error!("acts_as_distributed!: `redact` takes a list of columns, once: `redact = [Column::Email, Column::Phone]`");
    };
    ($e:tt $o:tt $u:tt $t:tt $h:tt $r:tt $p:tt ; previous $($rest:tt)*) => {
        ::core::compile_error!("acts_as_distributed!: `previous` takes `true` or `false`: `previous = true` adds the old values to update events");
    };
    ($e:tt $o:tt $u:tt $t:tt $h:tt $r:tt $p:tt ; $other:tt $($rest:tt)*) => {
        ::core::compile_error!(::core::concat!(
            "acts_as_distributed!: unknown option `", ::core::stringify!($other),
            "`; the options are except, only, uuid, type_name, hooks, redact and previous"
        ));
    };
}

/// Writes the impls for [`acts_as_distributed!`]. Not a public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __acts_as_distributed_emit {
    ([$($e:expr),*] [$($o:expr),*] [$($u:path)?] [$($t:literal)?] $hooks:tt [$($r:expr),*] $previous:tt) => {
        const _: () = {
            use $crate::__private::sea_orm as __sea_orm;

            // Checked at compile time: the columns are variants of a fieldless enum.
            const _: () = {
                let redact: &[isize] = &[$($r as isize),*];
                ::core::assert!(
                    $crate::__private::disjoint(redact, &[$($e as isize),*]),
                    "acts_as_distributed!: a column in `redact` is also in `except`; `except` keeps it out of events entirely, `redact` keeps its key with a masked value: list it in one of them"
                );
                $crate::__acts_as_distributed_emit!(@only_check redact [$($o),*]);
            };

            impl $crate::DistributedEntity for Entity {
                fn distribution() -> &'static $crate::Distribution<Self> {
                    static DISTRIBUTION: ::std::sync::OnceLock<$crate::Distribution<Entity>> =
                        ::std::sync::OnceLock::new();
                    DISTRIBUTION.get_or_init(|| {
                        let builder = $crate::Distribution::<Entity>::builder().except([$($e),*]);
                        $crate::__acts_as_distributed_emit!(@only builder [$($o),*]);
                        $(let builder = builder.uuid($u);)?
                        $(let builder = builder.type_name($t);)?
                        builder.redact([$($r),*]).previous($previous).build()
                    })
                }
            }

            $crate::__acts_as_distributed_emit!(@hooks $hooks);

            #[$crate::__private::async_trait::async_trait]
            impl __sea_orm::ActiveModelBehavior for ActiveModel {
                fn new() -> Self {
                    <Self as $crate::DistributedBehavior>::new()
                }

                async fn before_save<C>(self, db: &C, insert: bool) -> ::core::result::Result<Self, __sea_orm::DbErr>
                where
                    C: __sea_orm::ConnectionTrait,
                {
                    $crate::__private::before_save(self, db, insert).await
                }

                async fn after_save<C>(
                    model: <Entity as __sea_orm::EntityTrait>::Model,
                    db: &C,
                    insert: bool,
                ) -> ::core::result::Result<<Entity as __sea_orm::EntityTrait>::Model, __sea_orm::DbErr>
                where
                    C: __sea_orm::ConnectionTrait,
                {
                    $crate::__private::after_save::<Self, C>(model, db, insert).await
                }

                async fn before_delete<C>(self, db: &C) -> ::core::result::Result<Self, __sea_orm::DbErr>
                where
                    C: __sea_orm::ConnectionTrait,
                {
                    $crate::__private::before_delete(self, db).await
                }

                async fn after_delete<C>(self, db: &C) -> ::core::result::Result<Self, __sea_orm::DbErr>
                where
                    C: __sea_orm::ConnectionTrait,
                {
                    $crate::__private::after_delete(self, db).await
                }
            }
        };
    };
    (@only_check $redact:ident []) => {};
    (@only_check $redact:ident [$($o:expr),+]) => {
        ::core::assert!(
            $crate::__private::subset($redact, &[$($o as isize),+]),
            "acts_as_distributed!: a column in `redact` is not in `only`, so it is never in events: add it to `only` or drop it from `redact`"
        );
    };
    (@only $builder:ident []) => {};
    (@only $builder:ident [$($o:expr),+]) => {
        let $builder = $builder.only([$($o),+]);
    };
    (@hooks false) => {
        impl $crate::DistributedBehavior for ActiveModel {}
    };
    (@hooks true) => {};
}
