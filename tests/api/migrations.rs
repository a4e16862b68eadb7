use crate::helpers::TestDb;
use gmp::config::Secret;
use gmp::db;
use sea_orm::ConnectionTrait;

#[tokio::test]
async fn migrations_go_up_down_to_zero_and_up_again() {
    let test_db = TestDb::fresh().await;
    let conn = db::connect(&Secret::new(test_db.url.clone()), 2).await.unwrap();

    db::migrate(&conn).await.unwrap();
    let (applied, pending) = db::migration_status(&conn).await.unwrap();
    assert!(!applied.is_empty());
    assert!(pending.is_empty());

    db::migrate_down(&conn, None).await.unwrap();
    let (applied_after_down, pending_after_down) = db::migration_status(&conn).await.unwrap();
    assert!(
        conn.execute_unprepared("SELECT id FROM operators").await.is_err(),
        "tables dropped"
    );
    assert!(applied_after_down.is_empty());
    assert_eq!(pending_after_down, applied);

    db::migrate(&conn).await.unwrap();
    let (reapplied, pending) = db::migration_status(&conn).await.unwrap();
    assert_eq!(reapplied, applied);
    assert!(pending.is_empty());
    // The schema is usable after the round trip.
    for table in ["tenants", "operators", "refresh_tokens"] {
        conn.execute_unprepared(&format!("SELECT id FROM {table}"))
            .await
            .unwrap();
    }
    conn.close().await.unwrap();
}
