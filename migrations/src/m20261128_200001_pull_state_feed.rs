use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// SQLite's feed of pull-state changes (see `db::changes` in the server): each process polls it
/// to drop what other processes' writes made stale. PostgreSQL uses `NOTIFY` instead, so the
/// table exists only on SQLite.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Sqlite {
            return Ok(());
        }
        manager
            .create_table(
                Table::create()
                    .table(PullStateChanges::Table)
                    .col(
                        // SQLite's `INTEGER PRIMARY KEY AUTOINCREMENT`: ids never reused.
                        ColumnDef::new(PullStateChanges::Seq)
                            .integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    // The process that wrote the change (it skips its own).
                    .col(ColumnDef::new(PullStateChanges::Origin).big_integer().not_null())
                    .col(ColumnDef::new(PullStateChanges::TenantId).uuid().null())
                    .col(ColumnDef::new(PullStateChanges::DeviceId).uuid().null())
                    .col(
                        ColumnDef::new(PullStateChanges::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_pull_state_changes_created_at")
                    .table(PullStateChanges::Table)
                    .col(PullStateChanges::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Sqlite {
            return Ok(());
        }
        manager
            .drop_table(Table::drop().table(PullStateChanges::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum PullStateChanges {
    Table,
    Seq,
    Origin,
    TenantId,
    DeviceId,
    CreatedAt,
}
