//! Live notifications for `GET /v1/me/stream`: one shared waker per process, and the signal that
//! ends every stream when the server begins to shut down.
//!
//! The waker is a `watch` of the notifications projection's checkpoint, fed by a single task
//! (started with the first stream) that follows the checkpoint row: it reads it again when the
//! log announces new events (the process's own `LISTEN gigledger_events`, [`LogNotifier`]), then
//! keeps reading it, backing off, for as long as the log has events past it (the projection is
//! applying them), and otherwise looks every [`SAFETY_RECHECK`] anyway. Streams never poll: each
//! awaits a change of the watch, then reads its own user's rows after the last one it sent (one
//! range of the index `notifications_by_user`).

use std::time::Duration;

use futures::stream::{self, Stream, StreamExt as _};
use gigledger_domain::UserId;
use gigledger_projections::log::{self, Checkpoint};
use gigledger_projections::read::notifications::{self, Notification};
use gigledger_projections::runtime::{load_checkpoint, LogNotifier};
use sqlx::PgPool;
use tokio::sync::{watch, OnceCell};

/// How long the follower waits for an event notification before it reads the checkpoint anyway
/// (a lost notification, a projection run by another process).
pub const SAFETY_RECHECK: Duration = Duration::from_secs(5);

/// The first pause while the projection is behind the log; it doubles up to [`LONGEST_PAUSE`]
/// while the checkpoint does not move, and starts again when it does.
/// (25 ms: a stream is woken at most about forty times a second while writes keep coming, each
/// wake one indexed read per open stream.)
const FIRST_PAUSE: Duration = Duration::from_millis(25);

/// The most streams one process keeps open; past it a new one is answered 503 (each holds no
/// connection while it waits, but every wake reads once per stream).
pub const MAX_STREAMS: usize = 2_000;
const LONGEST_PAUSE: Duration = Duration::from_secs(1);

/// What every stream of one process shares.
pub struct Live {
    pool: PgPool,
    /// The notifications projection's checkpoint, as the follower last read it; started on the
    /// first stream.
    progress: OnceCell<watch::Receiver<Checkpoint>>,
    /// Turns `true` when the server begins to shut down: every stream ends.
    closing: watch::Sender<bool>,
    /// One permit per open stream.
    open: std::sync::Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("following", &self.progress.initialized())
            .field("closing", &*self.closing.borrow())
            .finish_non_exhaustive()
    }
}

impl Live {
    #[must_use]
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            progress: OnceCell::new(),
            closing: watch::channel(false).0,
            open: std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_STREAMS)),
        }
    }

    /// A place for one more open stream, held as long as the stream is; `None` when
    /// [`MAX_STREAMS`] are open.
    #[must_use]
    pub fn admit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.open.clone().try_acquire_owned().ok()
    }

    /// Ends every open stream (and the follower); a stream opened afterwards ends at once.
    /// `serve` calls it when its graceful shutdown begins, which would otherwise wait for every
    /// open stream forever.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// The shutdown signal, for a stream to await.
    #[must_use]
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// The shared waker: the notifications projection's checkpoint, changing as it moves.
    /// Starts the follower (and its `LISTEN` session) on the first call.
    pub async fn progress(&self) -> Result<watch::Receiver<Checkpoint>, sqlx::Error> {
        self.progress
            .get_or_try_init(|| async {
                let notifier = LogNotifier::start(&self.pool).await?;
                let at = load_checkpoint(&self.pool, notifications::NAME).await?;
                let (progress, follower) = watch::channel(at);
                tokio::spawn(follow(
                    self.pool.clone(),
                    progress,
                    notifier,
                    self.closing(),
                ));
                Ok(follower)
            })
            .await
            .cloned()
    }
}

/// The follower: publishes the notifications projection's checkpoint whenever it moves, until
/// shutdown or until nothing listens any more.
async fn follow(
    pool: PgPool,
    progress: watch::Sender<Checkpoint>,
    mut notifier: LogNotifier,
    mut closing: watch::Receiver<bool>,
) {
    let mut pause = FIRST_PAUSE;
    loop {
        let wait = match look(&pool).await {
            Ok((at, behind)) => {
                let moved = progress.send_if_modified(|seen| {
                    let moved = *seen != at;
                    *seen = at;
                    moved
                });
                if moved {
                    pause = FIRST_PAUSE;
                }
                if behind {
                    let now = pause;
                    pause = (pause * 2).min(LONGEST_PAUSE);
                    now
                } else {
                    SAFETY_RECHECK
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the notifications checkpoint; live streams wait");
                LONGEST_PAUSE
            }
        };
        tokio::select! {
            () = notifier.wait(wait) => {}
            _ = closing.wait_for(|closing| *closing) => return,
            () = progress.closed() => return,
        }
    }
}

/// The projection's checkpoint, and whether the log has events past it (it is then applying
/// them, or waiting for an older transaction to end).
async fn look(pool: &PgPool) -> Result<(Checkpoint, bool), sqlx::Error> {
    let at = load_checkpoint(pool, notifications::NAME).await?;
    let behind = log::pending_after(pool, at).await?;
    Ok((at, behind))
}

/// The most notifications read (and held) at once: a stream that falls behind reads the table
/// in pages of this many from the last one it sent, each only when the client has taken the
/// one before.
pub const PAGE: u32 = 100;

/// Where one stream stands.
struct Follow {
    pool: PgPool,
    user: UserId,
    /// The last notification sent (or where the stream started).
    after: Checkpoint,
    progress: watch::Receiver<Checkpoint>,
    closing: watch::Receiver<bool>,
    /// The last read found every row there was: wait for the projection to move on.
    caught_up: bool,
}

/// `user`'s notifications after `after` in the order the projection applies them, as they are
/// written: first those already in the table (page by page), then each as it is projected. Ends
/// when the server shuts down, or when a read fails (the client resumes with `Last-Event-ID`).
pub fn notifications_after(
    pool: PgPool,
    user: UserId,
    after: Checkpoint,
    progress: watch::Receiver<Checkpoint>,
    closing: watch::Receiver<bool>,
) -> impl Stream<Item = Notification> + Send + 'static {
    let start = Follow {
        pool,
        user,
        after,
        progress,
        closing,
        caught_up: false,
    };
    stream::unfold(start, next_page).flat_map(stream::iter)
}

async fn next_page(mut s: Follow) -> Option<(Vec<Notification>, Follow)> {
    loop {
        if *s.closing.borrow() {
            return None;
        }
        if s.caught_up {
            tokio::select! {
                changed = s.progress.changed() => changed.ok()?,
                _ = s.closing.wait_for(|closing| *closing) => return None,
            }
        }
        // Marked seen before the read: a move of the projection after it wakes the next wait.
        let reached = *s.progress.borrow_and_update();
        if reached <= s.after {
            // The projection has written nothing past this stream's place yet (it writes a
            // notification and moves its checkpoint in one transaction).
            s.caught_up = true;
            continue;
        }
        let cursor = notifications::cursor_after(s.after);
        let page = match notifications::notifications_of(
            &s.pool,
            s.user,
            Some(cursor.as_str()),
            Some(PAGE),
        )
        .await
        {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(error = %e, "a notification stream cannot read its rows; it ends");
                return None;
            }
        };
        s.caught_up = page.next_cursor.is_none();
        let Some(last) = page.items.last() else {
            continue;
        };
        s.after = last.place();
        return Some((page.items, s));
    }
}
