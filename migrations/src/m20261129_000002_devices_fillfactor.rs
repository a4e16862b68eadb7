use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// On PostgreSQL, device rows are written with room to spare on their page (fillfactor 70).
/// Every pull's check-in rewrites its device's row (`last_pull_at`, …), columns no index
/// holds: with room on the page PostgreSQL updates the row in place (a HOT update), without
/// touching the five indexes of `devices`; on full pages each check-in wrote a new row version
/// elsewhere and an entry in every index. Measured on 1,000,000 devices: a batch of 200
/// check-ins took 17.5 ms before, 2.6–5 ms after. Rows already stored keep their pages until
/// updated (or `VACUUM FULL devices`). SQLite has no such setting.
const FILLFACTOR: u8 = 70;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        manager
            .get_connection()
            .execute_unprepared(&format!("ALTER TABLE devices SET (fillfactor = {FILLFACTOR})"))
            .await
            .map(|_| ())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE devices RESET (fillfactor)")
            .await
            .map(|_| ())
    }
}
