use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Sessions of the web UI, shared by every replica. The browser's cookie holds a random session
/// id; only its SHA-256 is stored, as the key, so a database read does not give a usable cookie.
/// Deleting an operator deletes their sessions.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UiSessions::Table)
                    .col(string_len(UiSessions::IdHash, 64).primary_key())
                    .col(uuid(UiSessions::TenantId))
                    .col(uuid(UiSessions::OperatorId))
                    .col(string(UiSessions::Role))
                    .col(string(UiSessions::CsrfToken))
                    .col(timestamp_with_time_zone(UiSessions::CreatedAt))
                    .col(timestamp_with_time_zone(UiSessions::LastSeenAt))
                    .col(timestamp_with_time_zone(UiSessions::ExpiresAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(UiSessions::Table, UiSessions::OperatorId)
                            .to(Operators::Table, Operators::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Ending an operator's sessions (password or role change, deletion) finds them here.
        manager
            .create_index(
                Index::create()
                    .name("idx_ui_sessions_operator")
                    .table(UiSessions::Table)
                    .col(UiSessions::OperatorId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(UiSessions::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum UiSessions {
    Table,
    IdHash,
    TenantId,
    OperatorId,
    Role,
    CsrfToken,
    CreatedAt,
    LastSeenAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum Operators {
    Table,
    Id,
}
