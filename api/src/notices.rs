//! The simulated payment provider's side of its notices: it queues them in its outbox (an
//! account verified, a transfer that failed later) and delivers them as a real provider would,
//! signed with the webhook secret, to the webhook's own code ([`crate::routes::payouts::receive`]),
//! oldest first, until each is answered 2xx. A real provider delivers over HTTP by itself; this
//! task stands in for it.

use std::time::Duration;

use gigledger_commands::notice;
use gigledger_commands::provider::{delivered, undelivered};
use tokio::task::JoinHandle;

use crate::state::AppState;

/// How often the outbox is looked at.
const EVERY: Duration = Duration::from_millis(250);

/// Notices delivered per look.
const BATCH: i64 = 50;

/// Starts delivering; the task runs until aborted. Without a webhook secret there is nothing to
/// sign with, and nothing is delivered.
pub fn spawn_simulated_deliveries(state: AppState) -> Option<JoinHandle<()>> {
    let secret = state.webhook_secret.clone()?;
    Some(tokio::spawn(async move {
        loop {
            deliver_pending(&state, &secret).await;
            tokio::time::sleep(EVERY).await;
        }
    }))
}

/// Delivers what waits, oldest first; stops at the first notice not taken (tried again later,
/// so notices arrive in order).
pub async fn deliver_pending(state: &AppState, secret: &[u8]) {
    let pending = match undelivered(&state.pool, BATCH).await {
        Ok(pending) => pending,
        Err(e) => {
            tracing::warn!(error = %e, "the simulated provider cannot read its outbox");
            return;
        }
    };
    for pending in pending {
        let body = serde_json::to_vec(&pending.body).unwrap_or_default();
        let signature = notice::sign(secret, state.services.now().timestamp(), &body);
        match crate::routes::payouts::receive(state, Some(&signature), &body).await {
            Ok(_) => {
                if let Err(e) = delivered(&state.pool, pending.number).await {
                    tracing::warn!(error = %e, "a delivered notice could not be marked");
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(notice.id = %pending.notice_id, error = %e, "a provider notice was not taken; retrying");
                return;
            }
        }
    }
}
