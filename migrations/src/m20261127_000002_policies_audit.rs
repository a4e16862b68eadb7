use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Policies::Table)
                    .col(uuid(Policies::Id).primary_key())
                    .col(uuid(Policies::TenantId))
                    .col(uuid_null(Policies::ParentId))
                    .col(string(Policies::Name))
                    .col(integer(Policies::CurrentVersion))
                    .col(timestamp_with_time_zone(Policies::CreatedAt))
                    .col(timestamp_with_time_zone(Policies::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Policies::Table, Policies::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Policies::Table, Policies::ParentId)
                            .to(Policies::Table, Policies::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_policies_tenant_name")
                    .table(Policies::Table)
                    .col(Policies::TenantId)
                    .col(Policies::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // One root per tenant. Partial unique indexes read the same on SQLite and PostgreSQL.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX idx_policies_one_root ON policies (tenant_id) WHERE parent_id IS NULL",
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(PolicyVersions::Table)
                    .col(uuid(PolicyVersions::Id).primary_key())
                    .col(uuid(PolicyVersions::TenantId))
                    .col(uuid(PolicyVersions::PolicyId))
                    .col(integer(PolicyVersions::Version))
                    .col(string(PolicyVersions::Name))
                    .col(text(PolicyVersions::Description))
                    // JSON objects: path → value (secrets sealed), and the locked paths.
                    .col(text(PolicyVersions::SettingValues))
                    .col(text(PolicyVersions::Locks))
                    .col(uuid_null(PolicyVersions::AuthorId))
                    .col(text_null(PolicyVersions::Comment))
                    .col(timestamp_with_time_zone(PolicyVersions::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(PolicyVersions::Table, PolicyVersions::PolicyId)
                            .to(Policies::Table, Policies::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Two concurrent saves can never both create version N.
        manager
            .create_index(
                Index::create()
                    .name("idx_policy_versions_policy_version")
                    .table(PolicyVersions::Table)
                    .col(PolicyVersions::PolicyId)
                    .col(PolicyVersions::Version)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuditChanges::Table)
                    .col(uuid(AuditChanges::Id).primary_key())
                    .col(uuid(AuditChanges::TenantId))
                    .col(uuid_null(AuditChanges::ActorId))
                    .col(string(AuditChanges::ActorLabel))
                    .col(string(AuditChanges::Action))
                    .col(string(AuditChanges::TargetType))
                    .col(string(AuditChanges::TargetId))
                    .col(text(AuditChanges::Changes))
                    .col(string_null(AuditChanges::RequestId))
                    .col(timestamp_with_time_zone(AuditChanges::CreatedAt))
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("idx_audit_changes_tenant_created", AuditChanges::CreatedAt),
            ("idx_audit_changes_tenant_target", AuditChanges::TargetId),
            ("idx_audit_changes_tenant_actor", AuditChanges::ActorId),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(AuditChanges::Table)
                        .col(AuditChanges::TenantId)
                        .col(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AuditChanges::Table.into_iden(),
            PolicyVersions::Table.into_iden(),
            Policies::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Policies {
    Table,
    Id,
    TenantId,
    ParentId,
    Name,
    CurrentVersion,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum PolicyVersions {
    Table,
    Id,
    TenantId,
    PolicyId,
    Version,
    Name,
    Description,
    SettingValues,
    Locks,
    AuthorId,
    Comment,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AuditChanges {
    Table,
    Id,
    TenantId,
    ActorId,
    ActorLabel,
    Action,
    TargetType,
    TargetId,
    Changes,
    RequestId,
    CreatedAt,
}
