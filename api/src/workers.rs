//! Starting and stopping the background workers of one process: every read-model projection,
//! the ledger digest, every process manager, the NATS relay when one is configured, the due-timer
//! runner, and the gauges that report their progress.

use std::sync::Arc;
use std::time::Duration;

use gigledger_commands::clock::Clock;
use gigledger_commands::process::{Process, ProcessManager, TimerRunner};
use gigledger_commands::services::Services;
use gigledger_projections::runtime::{
    run_worker, statuses, Handler, Leases, LogNotifier, Target, WorkerConfig,
};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::settings::WorkerSettings;

/// Every worker this process runs: the read models, then the process managers.
pub fn handlers(services: &Arc<Services>) -> Vec<Arc<dyn Handler>> {
    handlers_for_pool(services, u32::MAX)
}

/// The same for a pool of `connections`: the process managers' gate leaves connections free.
pub fn handlers_for_pool(services: &Arc<Services>, connections: u32) -> Vec<Arc<dyn Handler>> {
    let mut all = gigledger_projections::read::all();
    all.push(Arc::new(gigledger_projections::digest::LedgerDigest));
    all.extend(ProcessManager::all_for_pool(services, connections));
    all
}

/// The names of every worker [`handlers`] runs (without building them), for status reports:
/// a worker that never ran has no checkpoint row yet and is listed all the same.
pub fn known_names() -> Vec<String> {
    let mut names: Vec<String> = gigledger_projections::read::all()
        .iter()
        .map(|h| h.name().to_owned())
        .collect();
    names.push(gigledger_projections::digest::NAME.to_owned());
    names.extend(Process::ALL.iter().map(|p| p.name().to_owned()));
    names
}

/// The running workers; [`Workers::stop`] ends them.
pub struct Workers {
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts every worker in the background.
    pub async fn start(
        pool: &PgPool,
        services: &Arc<Services>,
        clock: Arc<dyn Clock>,
        settings: &WorkerSettings,
    ) -> Result<Self, sqlx::Error> {
        let mut all = handlers_for_pool(services, pool.options().get_max_connections());
        if let Some(config) = settings.relay.config() {
            let relay = gigledger_projections::relay::NatsRelay::connect(config)
                .await
                .map_err(|e| sqlx::Error::Configuration(Box::new(e)))?;
            all.push(Arc::new(relay));
        }
        let (shutdown, stopped) = watch::channel(false);
        let poll = Duration::from_millis(settings.poll_interval_ms);
        let config = WorkerConfig {
            batch_size: settings.batch_size,
            poll_interval: poll,
            lease_retry: poll,
            stall_after: Duration::from_secs(settings.stall_after_secs),
            ..WorkerConfig::default()
        };
        let notifier = LogNotifier::start(pool).await?;
        let leases = Leases::with_timeout(pool, Duration::from_millis(settings.lease_timeout_ms));
        let mut tasks = Vec::new();
        for handler in all {
            let target = Target::live(handler.name());
            tasks.push(tokio::spawn(run_worker(
                pool.clone(),
                handler,
                target,
                config.clone(),
                leases.clone(),
                notifier.clone(),
                stopped.clone(),
            )));
        }
        tasks.push(tokio::spawn(
            leases.clone().keep_alive(poll, stopped.clone()),
        ));
        let timers = TimerRunner::new(pool.clone(), services.clone(), clock);
        tasks.push(tokio::spawn(
            timers.run(Duration::from_secs(1), stopped.clone()),
        ));
        tasks.push(tokio::spawn(report_progress(pool.clone(), stopped)));
        Ok(Self { shutdown, tasks })
    }

    /// Asks every worker to stop after its current batch and waits for them.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Publishes each worker's position and lag, and the age of the oldest open writer, as gauges.
async fn report_progress(pool: PgPool, mut shutdown: watch::Receiver<bool>) {
    loop {
        match statuses(&pool, &known_names()).await {
            Ok(all) => {
                for s in all {
                    let name = s.name.clone();
                    #[expect(clippy::cast_precision_loss, reason = "a gauge is a float by nature")]
                    {
                        metrics::gauge!("gigledger_projection_position", "projection" => name.clone())
                            .set(s.position as f64);
                        metrics::gauge!("gigledger_projection_lag_events", "projection" => name.clone())
                            .set(s.lag_events as f64);
                    }
                    metrics::gauge!("gigledger_projection_lag_seconds", "projection" => name.clone())
                        .set(s.lag_seconds);
                    metrics::gauge!("gigledger_projection_failed", "projection" => name.clone())
                        .set(if s.status == "failed" { 1.0 } else { 0.0 });
                    metrics::gauge!("gigledger_projection_stalled", "projection" => name.clone())
                        .set(if s.status == "stalled" { 1.0 } else { 0.0 });
                    metrics::gauge!("gigledger_projection_leased", "projection" => name)
                        .set(if s.leased { 1.0 } else { 0.0 });
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read projection progress"),
        }
        match gigledger_projections::log::oldest_open_writer_age(&pool).await {
            Ok(age) => metrics::gauge!("gigledger_oldest_open_writer_seconds").set(age),
            Err(e) => tracing::warn!(error = %e, "cannot read the oldest open writer"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = shutdown.changed() => return,
        }
    }
}
