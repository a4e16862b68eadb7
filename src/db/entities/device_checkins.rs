use sea_orm::entity::prelude::*;

/// A device's check-in times, apart from its wide row: every pull rewrites them (migration
/// `m20261129_000003_device_checkins`). No row until the device first checks in.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "device_checkins")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub device_id: Uuid,
    pub tenant_id: Uuid,
    pub last_seen_at: Option<DateTimeUtc>,
    pub last_pull_at: Option<DateTimeUtc>,
    pub next_pull_after: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::devices::Entity",
        from = "Column::DeviceId",
        to = "super::devices::Column::Id"
    )]
    Device,
}

impl ActiveModelBehavior for ActiveModel {}

impl Related<super::devices::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Device.def()
    }
}

/// A device joins its check-in row through the same relation, reversed (defined here so that
/// `devices` need not know of this table).
impl Related<Entity> for super::devices::Entity {
    fn to() -> RelationDef {
        Relation::Device.def().rev()
    }
}
