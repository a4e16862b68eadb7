use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // A draft is a save not yet made: the edit as a save would apply it (secrets sealed),
        // kept until it is published, rolled out or discarded. It never reaches a device.
        manager
            .create_table(
                Table::create()
                    .table(PolicyDrafts::Table)
                    .col(uuid(PolicyDrafts::Id).primary_key())
                    .col(uuid(PolicyDrafts::TenantId))
                    .col(uuid(PolicyDrafts::PolicyId))
                    // The policy version the draft was made against (shown; publishing applies
                    // the edit to the version current then, like any save).
                    .col(integer(PolicyDrafts::BaseVersion))
                    .col(text(PolicyDrafts::Edit))
                    .col(integer(PolicyDrafts::Revision))
                    .col(uuid_null(PolicyDrafts::AuthorId))
                    .col(timestamp_with_time_zone(PolicyDrafts::CreatedAt))
                    .col(timestamp_with_time_zone(PolicyDrafts::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(PolicyDrafts::Table, PolicyDrafts::PolicyId)
                            .to(Policies::Table, Policies::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_policy_drafts_policy")
                    .table(PolicyDrafts::Table)
                    .col(PolicyDrafts::TenantId)
                    .col(PolicyDrafts::PolicyId)
                    .to_owned(),
            )
            .await?;

        // A staged rollout: the content being rolled out (fixed at the start), the plan, and
        // where it stands. Every replica serves from these rows, so a restart resumes it.
        manager
            .create_table(
                Table::create()
                    .table(Rollouts::Table)
                    .col(uuid(Rollouts::Id).primary_key())
                    .col(uuid(Rollouts::TenantId))
                    .col(uuid(Rollouts::PolicyId))
                    .col(uuid(Rollouts::DraftId))
                    .col(integer(Rollouts::BaseVersion))
                    .col(uuid_null(Rollouts::ParentId))
                    .col(string(Rollouts::Name))
                    .col(text(Rollouts::Description))
                    .col(text(Rollouts::SettingValues))
                    .col(text(Rollouts::Locks))
                    .col(text(Rollouts::Plan))
                    .col(string(Rollouts::State))
                    .col(integer(Rollouts::Wave))
                    .col(timestamp_with_time_zone(Rollouts::WaveStartedAt))
                    .col(text(Rollouts::Waves))
                    .col(text_null(Rollouts::Reason))
                    .col(uuid_null(Rollouts::CreatedBy))
                    .col(timestamp_with_time_zone(Rollouts::CreatedAt))
                    .col(timestamp_with_time_zone(Rollouts::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Rollouts::FinishedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Rollouts::Table, Rollouts::PolicyId)
                            .to(Policies::Table, Policies::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // One rollout at a time per policy, whatever races.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX idx_rollouts_one_active ON rollouts (policy_id) \
                 WHERE state IN ('running', 'paused')",
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_rollouts_tenant_state")
                    .table(Rollouts::Table)
                    .col(Rollouts::TenantId)
                    .col(Rollouts::State)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Rollouts::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(PolicyDrafts::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Policies {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum PolicyDrafts {
    Table,
    Id,
    TenantId,
    PolicyId,
    BaseVersion,
    Edit,
    Revision,
    AuthorId,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Rollouts {
    Table,
    Id,
    TenantId,
    PolicyId,
    DraftId,
    BaseVersion,
    ParentId,
    Name,
    Description,
    SettingValues,
    Locks,
    Plan,
    State,
    Wave,
    WaveStartedAt,
    Waves,
    Reason,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
    FinishedAt,
}
