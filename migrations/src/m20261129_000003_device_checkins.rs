use sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{timestamp_with_time_zone_null, uuid};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// A device's check-in times (`last_seen_at`, `last_pull_at`, `next_pull_after`) move out of
/// `devices` into a narrow table of their own.
///
/// Every pull rewrites them, and nothing else of the device changes then. In `devices` each
/// check-in rewrote a wide row (identity, device values, hashes: 700 bytes and more), five of
/// them to a 4 KB page. On SQLite every page a batch touches is logged to the WAL whole, so a
/// flush of check-ins logged about one page per device. A check-in row is about 130 bytes, so
/// the same batch logs a fifth of the pages. (Fleet keeps `host_seen_times` apart from `hosts`
/// for the same reason.)
///
/// A device has no row here until it first checks in; readers join with `LEFT JOIN`. On
/// SQLite the table is `WITHOUT ROWID`: the row is stored in its primary key's tree, so a
/// check-in is one lookup, not an index lookup and then a table one.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sqlite = manager.get_database_backend() == DbBackend::Sqlite;
        let mut table = Table::create();
        table
            .table(DeviceCheckins::Table)
            .col(uuid(DeviceCheckins::DeviceId).primary_key())
            .col(uuid(DeviceCheckins::TenantId))
            .col(timestamp_with_time_zone_null(DeviceCheckins::LastSeenAt))
            .col(timestamp_with_time_zone_null(DeviceCheckins::LastPullAt))
            .col(timestamp_with_time_zone_null(DeviceCheckins::NextPullAfter))
            .foreign_key(
                ForeignKey::create()
                    .from(DeviceCheckins::Table, DeviceCheckins::DeviceId)
                    .to(Devices::Table, Devices::Id)
                    .on_delete(ForeignKeyAction::Cascade),
            );
        if sqlite {
            table.extra("WITHOUT ROWID");
        }
        manager.create_table(table.to_owned()).await?;
        let conn = manager.get_connection();
        if !sqlite {
            // Room on each page, so a check-in updates its row in place (HOT), as for
            // `devices` in `m20261129_000002_devices_fillfactor`.
            conn.execute_unprepared("ALTER TABLE device_checkins SET (fillfactor = 70)")
                .await?;
        }
        conn.execute_unprepared(
            "INSERT INTO device_checkins \
               (device_id, tenant_id, last_seen_at, last_pull_at, next_pull_after) \
             SELECT id, tenant_id, last_seen_at, last_pull_at, next_pull_after FROM devices \
             WHERE last_seen_at IS NOT NULL OR last_pull_at IS NOT NULL \
                OR next_pull_after IS NOT NULL",
        )
        .await?;
        // SQLite takes one change per `ALTER TABLE`.
        for column in [Devices::LastSeenAt, Devices::LastPullAt, Devices::NextPullAfter] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Devices::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Devices::LastSeenAt, Devices::LastPullAt, Devices::NextPullAfter] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Devices::Table)
                        .add_column(timestamp_with_time_zone_null(column))
                        .to_owned(),
                )
                .await?;
        }
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE devices SET \
                   last_seen_at = (SELECT c.last_seen_at FROM device_checkins c \
                                   WHERE c.device_id = devices.id), \
                   last_pull_at = (SELECT c.last_pull_at FROM device_checkins c \
                                   WHERE c.device_id = devices.id), \
                   next_pull_after = (SELECT c.next_pull_after FROM device_checkins c \
                                      WHERE c.device_id = devices.id)",
            )
            .await?;
        manager
            .drop_table(Table::drop().table(DeviceCheckins::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum DeviceCheckins {
    Table,
    DeviceId,
    TenantId,
    LastSeenAt,
    LastPullAt,
    NextPullAfter,
}

#[derive(DeriveIden)]
enum Devices {
    Table,
    Id,
    LastSeenAt,
    LastPullAt,
    NextPullAfter,
}
