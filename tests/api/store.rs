//! Migrations: applied at start and by `lectern migrate`; twice is a no-op.

use std::sync::Arc;

use lectern_actors::store;

use crate::helpers::{conninfo, empty_database, fresh_database, lectern_command};

#[actix_rt::test]
async fn migrating_a_current_database_again_changes_nothing() {
    let database = fresh_database().await;
    let pool = store::connect_pool(database, 1).unwrap();

    let report = store::migrate(&pool).await.unwrap();

    assert!(report.applied.is_empty(), "{report:?}");
    assert_eq!(
        store::applied_version(&pool).await.unwrap(),
        store::expected_version()
    );
}

#[actix_rt::test]
async fn lectern_migrate_applies_then_reports_the_database_current() {
    let database = empty_database().await;
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let migrate = || {
        lectern_command(data_dir.path())
            .env("DATABASE_URL", conninfo(&database))
            .arg("migrate")
            .output()
            .unwrap()
    };

    let first = migrate();
    let second = migrate();

    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let first = String::from_utf8_lossy(&first.stdout);
    assert!(first.starts_with("Applied V1__init"), "{first}");
    assert!(second.status.success());
    let second = String::from_utf8_lossy(&second.stdout);
    assert!(
        second.starts_with("The database is current (version "),
        "{second}"
    );
    let pool = store::connect_pool(database, 1).unwrap();
    assert_eq!(
        store::applied_version(&pool).await.unwrap(),
        store::expected_version()
    );
}
