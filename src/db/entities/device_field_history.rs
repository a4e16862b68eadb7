use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "device_field_history")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub device_id: Uuid,
    pub path: String,
    pub event: String,
    pub served_fingerprint: Option<String>,
    pub source: String,
    pub policy_id: Option<Uuid>,
    pub policy_version: Option<i32>,
    pub reported_state: Option<String>,
    pub local_value: Option<String>,
    pub error: Option<String>,
    pub recorded_at: DateTimeUtc,
    /// Whether the served field was locked; null on entries written before this was recorded.
    pub locked: Option<bool>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
