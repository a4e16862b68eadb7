use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Tenants::Table)
                    .add_column(integer(Tenants::PullIntervalSeconds).default(14_400))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(EnrollmentTokens::Table)
                    .col(uuid(EnrollmentTokens::Id).primary_key())
                    .col(uuid(EnrollmentTokens::TenantId))
                    .col(string_uniq(EnrollmentTokens::TokenHash))
                    .col(string(EnrollmentTokens::Label))
                    .col(uuid_null(EnrollmentTokens::PolicyId))
                    .col(timestamp_with_time_zone(EnrollmentTokens::ExpiresAt))
                    .col(integer(EnrollmentTokens::MaxUses))
                    .col(integer(EnrollmentTokens::Uses))
                    .col(timestamp_with_time_zone_null(EnrollmentTokens::RevokedAt))
                    .col(uuid_null(EnrollmentTokens::CreatedBy))
                    .col(timestamp_with_time_zone(EnrollmentTokens::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(EnrollmentTokens::Table, EnrollmentTokens::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_enrollment_tokens_tenant",
            EnrollmentTokens::Table,
            &[EnrollmentTokens::TenantId, EnrollmentTokens::Id],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(Devices::Table)
                    .col(uuid(Devices::Id).primary_key())
                    .col(uuid(Devices::TenantId))
                    .col(string(Devices::Kind))
                    .col(string(Devices::HardwareId))
                    .col(string(Devices::Hostname))
                    .col(string(Devices::SoftwareVersion))
                    .col(uuid(Devices::PolicyId))
                    .col(string_uniq(Devices::CredentialHash))
                    .col(string(Devices::FingerprintKey))
                    // JSON: path → value (secrets sealed), and the paths to reassert.
                    .col(text(Devices::DeviceValues))
                    .col(text(Devices::Reassert))
                    .col(integer(Devices::Version))
                    .col(string(Devices::Status))
                    .col(timestamp_with_time_zone(Devices::RegisteredAt))
                    .col(timestamp_with_time_zone(Devices::CredentialRotatedAt))
                    .col(timestamp_with_time_zone_null(Devices::LastSeenAt))
                    .col(timestamp_with_time_zone_null(Devices::LastPullAt))
                    .col(timestamp_with_time_zone_null(Devices::NextPullAfter))
                    .col(string_null(Devices::ServedHash))
                    .col(string_null(Devices::AppliedHash))
                    .col(timestamp_with_time_zone_null(Devices::AppliedAt))
                    .col(string_null(Devices::FailedHash))
                    .col(string_null(Devices::LastReportDigest))
                    .col(timestamp_with_time_zone(Devices::CreatedAt))
                    .col(timestamp_with_time_zone(Devices::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Devices::Table, Devices::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Devices::Table, Devices::PolicyId)
                            .to(Policies::Table, Policies::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_devices_tenant_hardware")
                    .table(Devices::Table)
                    .col(Devices::TenantId)
                    .col(Devices::HardwareId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_devices_tenant_policy",
            Devices::Table,
            &[Devices::TenantId, Devices::PolicyId],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(DeviceFields::Table)
                    .col(uuid(DeviceFields::DeviceId))
                    .col(string(DeviceFields::Path))
                    .col(uuid(DeviceFields::TenantId))
                    .col(string_null(DeviceFields::ServedFingerprint))
                    .col(string(DeviceFields::Source))
                    .col(uuid_null(DeviceFields::PolicyId))
                    .col(integer_null(DeviceFields::PolicyVersion))
                    .col(boolean(DeviceFields::Locked))
                    .col(timestamp_with_time_zone(DeviceFields::ServedSince))
                    .col(string_null(DeviceFields::ReportedState))
                    .col(text_null(DeviceFields::LocalValue))
                    .col(text_null(DeviceFields::Error))
                    .col(timestamp_with_time_zone_null(DeviceFields::ReportedSince))
                    .col(boolean(DeviceFields::Violation))
                    .primary_key(
                        Index::create()
                            .col(DeviceFields::DeviceId)
                            .col(DeviceFields::Path),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(DeviceFields::Table, DeviceFields::DeviceId)
                            .to(Devices::Table, Devices::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_device_fields_tenant_path",
            DeviceFields::Table,
            &[DeviceFields::TenantId, DeviceFields::Path],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(DeviceFieldHistory::Table)
                    .col(uuid(DeviceFieldHistory::Id).primary_key())
                    .col(uuid(DeviceFieldHistory::TenantId))
                    .col(uuid(DeviceFieldHistory::DeviceId))
                    .col(string(DeviceFieldHistory::Path))
                    .col(string(DeviceFieldHistory::Event))
                    .col(string_null(DeviceFieldHistory::ServedFingerprint))
                    .col(string(DeviceFieldHistory::Source))
                    .col(uuid_null(DeviceFieldHistory::PolicyId))
                    .col(integer_null(DeviceFieldHistory::PolicyVersion))
                    .col(string_null(DeviceFieldHistory::ReportedState))
                    .col(text_null(DeviceFieldHistory::LocalValue))
                    .col(text_null(DeviceFieldHistory::Error))
                    .col(timestamp_with_time_zone(DeviceFieldHistory::RecordedAt))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_device_field_history_device",
            DeviceFieldHistory::Table,
            &[
                DeviceFieldHistory::TenantId,
                DeviceFieldHistory::DeviceId,
                DeviceFieldHistory::Id,
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            DeviceFieldHistory::Table.into_iden(),
            DeviceFields::Table.into_iden(),
            Devices::Table.into_iden(),
            EnrollmentTokens::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Tenants::Table)
                    .drop_column(Tenants::PullIntervalSeconds)
                    .to_owned(),
            )
            .await
    }
}

async fn index<T: IntoIden + Copy + 'static>(
    manager: &SchemaManager<'_>,
    name: &str,
    table: T,
    columns: &[T],
) -> Result<(), DbErr> {
    let mut index = Index::create();
    index.name(name).table(table);
    for column in columns {
        index.col(*column);
    }
    manager.create_index(index.to_owned()).await
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
    PullIntervalSeconds,
}

#[derive(DeriveIden)]
enum Policies {
    Table,
    Id,
}

#[derive(DeriveIden, Clone, Copy)]
enum EnrollmentTokens {
    Table,
    Id,
    TenantId,
    TokenHash,
    Label,
    PolicyId,
    ExpiresAt,
    MaxUses,
    Uses,
    RevokedAt,
    CreatedBy,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Devices {
    Table,
    Id,
    TenantId,
    Kind,
    HardwareId,
    Hostname,
    SoftwareVersion,
    PolicyId,
    CredentialHash,
    FingerprintKey,
    DeviceValues,
    Reassert,
    Version,
    Status,
    RegisteredAt,
    CredentialRotatedAt,
    LastSeenAt,
    LastPullAt,
    NextPullAfter,
    ServedHash,
    AppliedHash,
    AppliedAt,
    FailedHash,
    LastReportDigest,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum DeviceFields {
    Table,
    DeviceId,
    Path,
    TenantId,
    ServedFingerprint,
    Source,
    PolicyId,
    PolicyVersion,
    Locked,
    ServedSince,
    ReportedState,
    LocalValue,
    Error,
    ReportedSince,
    Violation,
}

#[derive(DeriveIden, Clone, Copy)]
enum DeviceFieldHistory {
    Table,
    Id,
    TenantId,
    DeviceId,
    Path,
    Event,
    ServedFingerprint,
    Source,
    PolicyId,
    PolicyVersion,
    ReportedState,
    LocalValue,
    Error,
    RecordedAt,
}
