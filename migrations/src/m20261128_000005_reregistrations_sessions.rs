use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // A known hardware id registering again waits here for an operator: the live credential
        // keeps working until the request is approved. One waiting request per device.
        manager
            .create_table(
                Table::create()
                    .table(DeviceReregistrations::Table)
                    .col(uuid(DeviceReregistrations::Id).primary_key())
                    .col(uuid(DeviceReregistrations::TenantId))
                    .col(uuid_uniq(DeviceReregistrations::DeviceId))
                    .col(string_uniq(DeviceReregistrations::CredentialHash))
                    .col(string(DeviceReregistrations::Kind))
                    .col(string(DeviceReregistrations::Hostname))
                    .col(string(DeviceReregistrations::SoftwareVersion))
                    .col(uuid(DeviceReregistrations::EnrollmentTokenId))
                    .col(timestamp_with_time_zone(DeviceReregistrations::RequestedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(DeviceReregistrations::Table, DeviceReregistrations::DeviceId)
                            .to(Devices::Table, Devices::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_device_reregistrations_tenant")
                    .table(DeviceReregistrations::Table)
                    .col(DeviceReregistrations::TenantId)
                    .col(DeviceReregistrations::DeviceId)
                    .to_owned(),
            )
            .await?;
        // Bumped when an operator's sessions must end (password change or reset, role change,
        // deletion, logout everywhere): access tokens carry the epoch they were issued under.
        manager
            .alter_table(
                Table::alter()
                    .table(Operators::Table)
                    .add_column(integer(Operators::SessionEpoch).default(0))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Operators::Table)
                    .drop_column(Operators::SessionEpoch)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(DeviceReregistrations::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum DeviceReregistrations {
    Table,
    Id,
    TenantId,
    DeviceId,
    CredentialHash,
    Kind,
    Hostname,
    SoftwareVersion,
    EnrollmentTokenId,
    RequestedAt,
}

#[derive(DeriveIden)]
enum Devices {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Operators {
    Table,
    SessionEpoch,
}
