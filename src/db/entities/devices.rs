use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "devices")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub kind: String,
    pub hardware_id: String,
    pub hostname: String,
    pub software_version: String,
    pub policy_id: Uuid,
    #[sea_orm(unique)]
    pub credential_hash: String,
    pub fingerprint_key: String,
    pub device_values: String,
    pub reassert: String,
    pub version: i32,
    pub status: String,
    pub registered_at: DateTimeUtc,
    pub credential_rotated_at: DateTimeUtc,
    pub served_hash: Option<String>,
    pub applied_hash: Option<String>,
    pub applied_at: Option<DateTimeUtc>,
    pub failed_hash: Option<String>,
    pub last_report_digest: Option<String>,
    pub connectivity: String,
    pub audited_key: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
