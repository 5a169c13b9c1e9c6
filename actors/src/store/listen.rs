//! A `LISTEN` on one PostgreSQL channel that survives lost connections: how
//! every node hears of the others' changes (cache invalidation, new mail).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use slog::{info, warn, Logger};
use tokio_postgres::{AsyncMessage, NoTls};

use super::DbConfig;
use crate::supervisor::restarts::ActorStats;

const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// What the listener hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// A notification on the channel, with its payload.
    Notification(String),
    /// The connection was lost and is back: notifications sent meanwhile
    /// were missed.
    Reconnected,
}

/// Listens on `channel` for as long as the future runs, handing what it
/// hears to `heard`; connection errors go to `stats` and it reconnects.
pub async fn listen(
    database: DbConfig,
    channel: &'static str,
    stats: Arc<ActorStats>,
    log: Logger,
    mut heard: impl FnMut(Heard),
) {
    let mut first = true;
    loop {
        match database.connect(NoTls).await {
            Ok((client, mut connection)) => {
                // The connection must be polled for the LISTEN to complete and
                // for notifications to arrive: a task drives it and forwards them.
                let (payloads, mut received) = tokio::sync::mpsc::unbounded_channel::<String>();
                let driver_stats = Arc::clone(&stats);
                actix_rt::spawn(async move {
                    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(AsyncMessage::Notification(n)) if n.channel() == channel => {
                                if payloads.send(n.payload().to_owned()).is_err() {
                                    return;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                driver_stats.record_error(format!("{channel} listener connection lost: {e}"));
                                return;
                            }
                        }
                    }
                });
                match client.batch_execute(&format!("LISTEN {channel}")).await {
                    Err(e) => stats.record_error(format!("cannot LISTEN {channel}: {e}")),
                    Ok(()) => {
                        if !first {
                            info!(log, "listener reconnected"; "channel" => channel);
                            heard(Heard::Reconnected);
                        }
                        first = false;
                        while let Some(payload) = received.recv().await {
                            heard(Heard::Notification(payload));
                        }
                        warn!(log, "listener disconnected"; "channel" => channel);
                    }
                }
            }
            Err(e) => stats.record_error(format!("{channel} listener cannot connect: {e}")),
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}
