use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Whether the served field was locked, so the history answers what a device had at a
        // past moment (`GET …/fields?at=`) including its locks and violations. Null on entries
        // written before: not known.
        manager
            .alter_table(
                Table::alter()
                    .table(DeviceFieldHistory::Table)
                    .add_column(boolean_null(DeviceFieldHistory::Locked))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(DeviceFieldHistory::Table)
                    .drop_column(DeviceFieldHistory::Locked)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum DeviceFieldHistory {
    Table,
    Locked,
}
