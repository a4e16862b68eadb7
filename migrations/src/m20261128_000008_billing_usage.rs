use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The storage each appliance last reported for its ConnectWise addition: one row per
        // device, replaced when the figure changes.
        manager
            .create_table(
                Table::create()
                    .table(DeviceBillingUsage::Table)
                    .col(uuid(DeviceBillingUsage::DeviceId).primary_key())
                    .col(uuid(DeviceBillingUsage::TenantId))
                    .col(double(DeviceBillingUsage::StorageGb))
                    // JSON: [{vault, storage_gb}], when the device sends its breakdown.
                    .col(text_null(DeviceBillingUsage::Vaults))
                    .col(timestamp_with_time_zone(DeviceBillingUsage::ReportedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(DeviceBillingUsage::Table, DeviceBillingUsage::DeviceId)
                            .to(Devices::Table, Devices::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_device_billing_usage_tenant")
                    .table(DeviceBillingUsage::Table)
                    .col(DeviceBillingUsage::TenantId)
                    .col(DeviceBillingUsage::DeviceId)
                    .to_owned(),
            )
            .await?;
        // Every change of a device's figure, append-only; the retention job prunes it like the
        // field history.
        manager
            .create_table(
                Table::create()
                    .table(DeviceBillingUsageHistory::Table)
                    .col(uuid(DeviceBillingUsageHistory::Id).primary_key())
                    .col(uuid(DeviceBillingUsageHistory::TenantId))
                    .col(uuid(DeviceBillingUsageHistory::DeviceId))
                    .col(double(DeviceBillingUsageHistory::StorageGb))
                    .col(text_null(DeviceBillingUsageHistory::Vaults))
                    .col(timestamp_with_time_zone(DeviceBillingUsageHistory::RecordedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_device_billing_usage_history_device")
                    .table(DeviceBillingUsageHistory::Table)
                    .col(DeviceBillingUsageHistory::TenantId)
                    .col(DeviceBillingUsageHistory::DeviceId)
                    .col(DeviceBillingUsageHistory::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_device_billing_usage_history_recorded")
                    .table(DeviceBillingUsageHistory::Table)
                    .col(DeviceBillingUsageHistory::RecordedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(DeviceBillingUsageHistory::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(DeviceBillingUsage::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Devices {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum DeviceBillingUsage {
    Table,
    DeviceId,
    TenantId,
    StorageGb,
    Vaults,
    ReportedAt,
}

#[derive(DeriveIden)]
enum DeviceBillingUsageHistory {
    Table,
    Id,
    TenantId,
    DeviceId,
    StorageGb,
    Vaults,
    RecordedAt,
}
