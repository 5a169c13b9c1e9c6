//! The EventLog writes events in batches, and everything it holds at
//! shutdown is written before the process stops.

use std::time::{Duration, Instant};

use lectern_actors::events::count_events;

use crate::helpers::spawn_app_with;

#[actix_rt::test]
async fn the_start_is_recorded_and_written_at_the_latest_at_shutdown() {
    // An hour between periodic writes: only the write at shutdown can
    // bring the event to the table within this test.
    let app = spawn_app_with(&[("log.events_flush_secs", "3600")]).await;
    assert_eq!(
        count_events(&app.pool, "server.started").await.unwrap(),
        0,
        "held in memory while the app runs"
    );

    app.stopper.stop(true).await;

    // The app shuts its actors down after the server stopped, on its own task.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let written = count_events(&app.pool, "server.started").await.unwrap();
        if written == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "server.started was not written at shutdown ({written} rows)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
