//! How an outbox consumer (hot cache, archives) waits for work: a notification on channel
//! `ibex_outbox` whose payload is its topic, or its polling interval, whichever comes first.
//! Notifications are only a wake-up: consumers read the outbox table, so a lost one (the LISTEN
//! connection dropped) costs at most one polling interval, and the connection is retried.

use std::time::{Duration, Instant};

use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

/// How long connecting the LISTEN connection may take, and the pause before trying again.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct OutboxWakeup {
    /// For the LISTEN connection (outside the pool, so it never takes a pooled connection).
    database_url: String,
    topic: &'static str,
    listener: Option<PgListener>,
    retry_at: Instant,
}

impl OutboxWakeup {
    pub fn new(database_url: String, topic: &'static str) -> Self {
        Self {
            database_url,
            topic,
            listener: None,
            retry_at: Instant::now(),
        }
    }

    /// Waits for this topic's notification or `poll`; false once `shutdown` is cancelled.
    pub async fn wait(&mut self, poll: Duration, shutdown: &CancellationToken) -> bool {
        if self.listener.is_none() && Instant::now() >= self.retry_at {
            self.listener = self.listen().await;
            self.retry_at = Instant::now() + CONNECT_TIMEOUT;
        }
        let deadline = tokio::time::Instant::now() + poll;
        loop {
            let Some(listener) = self.listener.as_mut() else {
                return tokio::select! {
                    _ = shutdown.cancelled() => false,
                    _ = tokio::time::sleep_until(deadline) => true,
                };
            };
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep_until(deadline) => return true,
                received = listener.recv() => match received {
                    Ok(n) if n.payload() == self.topic => return true,
                    // Another consumer's topic: keep waiting for ours.
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, topic = self.topic, "LISTEN connection lost; polling until it is back");
                        self.listener = None;
                    }
                },
            }
        }
    }

    async fn listen(&self) -> Option<PgListener> {
        let connect = async {
            let mut l = PgListener::connect(&self.database_url).await?;
            l.listen("ibex_outbox").await?;
            Ok::<_, sqlx::Error>(l)
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(l)) => Some(l),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, topic = self.topic, "LISTEN ibex_outbox failed; polling");
                None
            }
            Err(_) => None,
        }
    }
}
