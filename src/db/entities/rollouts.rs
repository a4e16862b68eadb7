use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "rollouts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub policy_id: Uuid,
    pub draft_id: Uuid,
    pub base_version: i32,
    pub parent_id: Option<Uuid>,
    pub name: String,
    pub description: String,
    pub setting_values: String,
    pub locks: String,
    pub plan: String,
    pub state: String,
    pub wave: i32,
    pub wave_started_at: DateTimeUtc,
    pub waves: String,
    pub reason: Option<String>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
