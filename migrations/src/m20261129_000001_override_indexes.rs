use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// "Who overrides field F?" (`GET /audit/overrides`) reads only the rows of overridden fields,
/// in device order. Without these it read every device's row of the field (one per device of the
/// tenant, a million at fleet scale) and sorted them. Partial indexes hold only the overridden
/// rows, a small share, so they cost nothing when the served audit writes inherited fields.
/// The query names the state as a literal (`reported_state = 'overridden'`), so every plan of
/// it, generic ones included, can prove the indexes' condition.
const BY_FIELD: &str = "idx_device_fields_overridden_by_field";
const BY_DEVICE: &str = "idx_device_fields_overridden_by_device";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, columns) in [
            (
                BY_FIELD,
                [DeviceFields::TenantId, DeviceFields::Path, DeviceFields::DeviceId],
            ),
            (
                BY_DEVICE,
                [DeviceFields::TenantId, DeviceFields::DeviceId, DeviceFields::Path],
            ),
        ] {
            let mut index = Index::create();
            index.name(name).table(DeviceFields::Table);
            for column in columns {
                index.col(column);
            }
            index.and_where(Expr::col(DeviceFields::ReportedState).eq("overridden"));
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for name in [BY_FIELD, BY_DEVICE] {
            manager
                .drop_index(Index::drop().name(name).table(DeviceFields::Table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum DeviceFields {
    Table,
    TenantId,
    Path,
    DeviceId,
    ReportedState,
}
