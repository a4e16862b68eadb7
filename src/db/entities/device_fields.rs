use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "device_fields")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub device_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub path: String,
    pub tenant_id: Uuid,
    pub served_fingerprint: Option<String>,
    pub source: String,
    pub policy_id: Option<Uuid>,
    pub policy_version: Option<i32>,
    pub locked: bool,
    pub served_since: DateTimeUtc,
    pub reported_state: Option<String>,
    pub local_value: Option<String>,
    pub error: Option<String>,
    pub reported_since: Option<DateTimeUtc>,
    pub violation: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
