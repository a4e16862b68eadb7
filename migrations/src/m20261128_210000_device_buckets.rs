use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{integer, uuid};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Each device's place on the rollout scale (a hash of its id, see `domain::rollout::bucket`),
/// stored so a rollout counts a wave's devices with one grouped query instead of reading every
/// device of the policy. A cache of a pure function: rows are added for devices that have none
/// when a rollout is counted, and go with their device.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DeviceBuckets::Table)
                    .col(uuid(DeviceBuckets::DeviceId).primary_key())
                    .col(uuid(DeviceBuckets::TenantId))
                    .col(integer(DeviceBuckets::Bucket))
                    .foreign_key(
                        ForeignKey::create()
                            .from(DeviceBuckets::Table, DeviceBuckets::DeviceId)
                            .to(Devices::Table, Devices::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_device_buckets_tenant_bucket")
                    .table(DeviceBuckets::Table)
                    .col(DeviceBuckets::TenantId)
                    .col(DeviceBuckets::Bucket)
                    .col(DeviceBuckets::DeviceId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(DeviceBuckets::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum DeviceBuckets {
    Table,
    DeviceId,
    TenantId,
    Bucket,
}

#[derive(DeriveIden)]
enum Devices {
    Table,
    Id,
}
