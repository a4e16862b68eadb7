use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Device lists page through a tenant's devices in id order (`WHERE tenant_id = ? AND id > ?
/// ORDER BY id LIMIT n`): with this index a page reads its own rows, not every device of the
/// tenant to sort them (the web UI's device list at 10,000 devices).
const INDEX: &str = "idx_devices_tenant_id";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(Devices::Table)
                    .col(Devices::TenantId)
                    .col(Devices::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(INDEX).table(Devices::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Devices {
    Table,
    TenantId,
    Id,
}
