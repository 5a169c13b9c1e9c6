//! Snapshots of whole pages rendered from the demo content: a change to a
//! template or to the content's HTML shows up here for review.

use crate::helpers::{demo_database, spawn_app_on, TestApp};

/// The page with the static files' content versions blanked, so that a CSS
/// or script edit does not change every snapshot.
async fn snapshot_of(app: &TestApp, path: &str) -> String {
    let mut body = app.get(path).await.text().await.unwrap();
    for marker in ["lectern.css?v=", "me.js?v="] {
        if let Some(start) = body.find(marker) {
            let version_start = start + marker.len();
            let version_end = body[version_start..]
                .find('"')
                .map_or(body.len(), |i| version_start + i);
            body = format!("{}VERSION{}", &body[..version_start], &body[version_end..]);
        }
    }
    body
}

#[actix_rt::test]
async fn pages_from_the_demo_content() {
    // A fixed public URL, so that links do not change with the port.
    let app = spawn_app_on(
        demo_database().await,
        &[("server.public_url", "\"http://127.0.0.1:4000\"")],
    )
    .await;
    insta::assert_snapshot!("home", snapshot_of(&app, "/").await);
    insta::assert_snapshot!(
        "free_episode",
        snapshot_of(&app, "/episodes/installing-rust-and-cargo").await
    );
    insta::assert_snapshot!(
        "premium_episode",
        snapshot_of(&app, "/episodes/application-state-and-configuration").await
    );
    insta::assert_snapshot!("series", snapshot_of(&app, "/series/async-rust").await);
    insta::assert_snapshot!("search", snapshot_of(&app, "/search?q=borrow+checker").await);
    insta::assert_snapshot!("not_found", snapshot_of(&app, "/episodes/no-such-episode").await);
}
