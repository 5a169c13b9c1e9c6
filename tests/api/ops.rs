//! `/healthz` and `/readyz`.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::spawn_app;

#[actix_rt::test]
async fn healthz_says_the_process_is_alive() {
    let app = spawn_app().await;

    let response = app.get("/healthz").await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.text().await.unwrap(), "ok\n");
}

#[actix_rt::test]
async fn readyz_is_green_when_database_migrations_and_actors_are() {
    let app = spawn_app().await;

    let response = app.get("/readyz").await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    for check in ["database", "migrations", "actors"] {
        assert_eq!(body["checks"][check]["ok"], true, "{check}: {body}");
    }
    let actors: Vec<&str> = body["actors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        actors,
        [
            "event_log",
            "renderer",
            "page_cache",
            "mailer",
            "housekeeper",
            "stripe_worker_1",
            "stripe_worker_2",
            "billing",
            "backup_scheduler",
        ]
    );
}

#[actix_rt::test]
async fn readyz_is_503_with_the_reason_when_the_database_is_unreachable() {
    let app = spawn_app().await;
    app.cut_off_database().await;

    let response = app.get("/readyz").await;

    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["checks"]["database"]["ok"], false);
    assert!(
        body["reason"].as_str().unwrap().starts_with("database: "),
        "{body}"
    );
}

#[actix_rt::test]
async fn readyz_is_503_when_the_database_lacks_a_migration() {
    let app = spawn_app().await;
    let client = app.pool.get().await.unwrap();
    client
        .batch_execute("DELETE FROM refinery_schema_history")
        .await
        .unwrap();

    let response = app.get("/readyz").await;

    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap();
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("migrations: database at version 0"),
        "{reason}"
    );
}

#[actix_rt::test]
async fn head_is_answered_wherever_get_is() {
    let app = spawn_app().await;

    for path in ["/healthz", "/readyz", "/static/css/lectern.css"] {
        let response = app.client.head(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert!(response.headers().contains_key("x-request-id"));
    }
}
