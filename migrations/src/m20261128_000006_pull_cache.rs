use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Bumped by every change to a tenant's policies, in the same transaction: a replica
        // knows its cached tree and effective configs are current by reading this one number.
        manager
            .alter_table(
                Table::alter()
                    .table(Tenants::Table)
                    .add_column(big_integer(Tenants::PolicyRevision).default(0))
                    .to_owned(),
            )
            .await?;
        // A digest of what the field audit last recorded as served to the device. A pull that
        // serves something else queues an audit update; none is written on the request path.
        manager
            .alter_table(
                Table::alter()
                    .table(Devices::Table)
                    .add_column(string_null(Devices::AuditedKey))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Devices::Table)
                    .drop_column(Devices::AuditedKey)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Tenants::Table)
                    .drop_column(Tenants::PolicyRevision)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    PolicyRevision,
}

#[derive(DeriveIden)]
enum Devices {
    Table,
    AuditedKey,
}
