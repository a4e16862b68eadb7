use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // What the connectivity job last recorded (`new`, `online`, `stale`, `offline`), so
        // each transition is written once.
        manager
            .alter_table(
                Table::alter()
                    .table(Devices::Table)
                    .add_column(string(Devices::Connectivity).default("new"))
                    .to_owned(),
            )
            .await?;
        // One row per scheduled job: who runs it until when, and the last tick it ran for.
        manager
            .create_table(
                Table::create()
                    .table(JobLeases::Table)
                    .col(string(JobLeases::Job).primary_key())
                    .col(string(JobLeases::Holder))
                    .col(timestamp_with_time_zone(JobLeases::ExpiresAt))
                    .col(big_integer(JobLeases::LastTick))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(JobLeases::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Devices::Table)
                    .drop_column(Devices::Connectivity)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Devices {
    Table,
    Connectivity,
}

#[derive(DeriveIden)]
enum JobLeases {
    Table,
    Job,
    Holder,
    ExpiresAt,
    LastTick,
}
