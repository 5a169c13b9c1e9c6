//! The EventLog writes events in batches, and everything it holds at
//! shutdown is written before the process stops.

use std::time::Duration;

use lectern_actors::events::count_events;

use crate::helpers::spawn_app;

#[actix_rt::test]
async fn the_start_is_recorded_and_written_at_the_latest_at_shutdown() {
    let app = spawn_app().await;

    app.stopper.stop(true).await;

    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let written = count_events(&app.pool, "server.started").await.unwrap();
        if written == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server.started was not written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
