//! Revocation is pushed: the database notifies the channel `ibex_auth` on commit of any change
//! that can make a valid token invalid (sql/api/auth.sql: a token revoked, expired, re-scoped or
//! deleted, an org suspended, a user deactivated). This task listens and drops the remembered
//! answers of every [`Authenticator`] of the process at once, so a revoked token stops working
//! within the notification's delivery time (milliseconds), not when a cache entry ages out. The
//! payload names no token (any session may listen): `*`, everything is dropped; a payload that
//! is a token's hash drops that token alone.
//!
//! A lost connection may have lost notifications: after it, every remembered answer is dropped,
//! and the listener reconnects (sqlx's `PgListener` does so on the next receive).

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::Authenticator;

pub const CHANNEL: &str = "ibex_auth";
/// Pause before connecting again after a failure, so a database that is down is not hammered.
const RETRY: Duration = Duration::from_secs(1);

/// Listens until `shutdown`; the caches in `forgetters` are dropped from on every notification.
pub async fn run(pool: PgPool, forgetters: Vec<Arc<Authenticator>>, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        let mut listener = match connect(&pool).await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::debug!(error = %e, "LISTEN {CHANNEL} failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(RETRY) => continue,
                }
            }
        };
        // Whatever changed while we were not listening is unknown: forget everything once.
        forget(&forgetters, None).await;
        loop {
            let received = tokio::select! {
                _ = shutdown.cancelled() => return,
                received = listener.try_recv() => received,
            };
            match received {
                Ok(Some(notification)) => {
                    let payload = notification.payload();
                    let hash = (payload != "*").then_some(payload);
                    tracing::debug!(all = hash.is_none(), "token change pushed; forgetting");
                    forget(&forgetters, hash).await;
                }
                Ok(None) => {
                    tracing::warn!("the {CHANNEL} listener lost its connection; forgetting every remembered token");
                    forget(&forgetters, None).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the {CHANNEL} listener failed; reconnecting");
                    break;
                }
            }
        }
    }
}

async fn connect(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

async fn forget(forgetters: &[Arc<Authenticator>], hash: Option<&str>) {
    for authenticator in forgetters {
        authenticator.forget(hash).await;
    }
}
