//! Connecting to PostgreSQL, creating the database when it is missing, and migrating it.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

use crate::settings::DatabaseSettings;

/// Why the database could not be made ready. Each message names the URL tried (without its
/// password) and how to point elsewhere.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(
        "the database URL {url} is malformed: {reason}\n\
         Expected postgres://user[:password]@host[:port]/database; set DATABASE_URL or --database-url."
    )]
    Malformed { url: String, reason: String },
    #[error(
        "cannot reach PostgreSQL at {url}: {source}\n\
         Is it running? Point gigledger elsewhere with DATABASE_URL or --database-url."
    )]
    Unreachable { url: String, source: sqlx::Error },
    #[error("cannot create database {url}: {source}")]
    Create { url: String, source: sqlx::Error },
    #[error("cannot begin a log epoch on {url}: {source}")]
    Epoch { url: String, source: sqlx::Error },
    #[error("cannot apply migrations to {url}: {source}")]
    Migrate {
        url: String,
        source: sqlx::migrate::MigrateError,
    },
}

/// `url` with any password replaced, for messages and logs. A URL that does not parse is
/// redacted by its shape (`scheme://user:password@…`), so a malformed URL's password is not
/// printed either.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => redact_by_shape(url),
    }
}

fn redact_by_shape(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].find(':') {
        Some(colon) => format!("{}{}:***{}", &url[..start], &rest[..colon], &rest[at..]),
        None => url.to_owned(),
    }
}

/// Checks that `url` is a PostgreSQL connection URL before anything tries to connect with it, so
/// that a typo is reported as one, with its reason, and not as a server that does not answer.
pub fn check_url(url: &str) -> Result<(), DbError> {
    let malformed = |reason: String| DbError::Malformed {
        url: redact(url),
        reason,
    };
    let parsed = url::Url::parse(url).map_err(|e| {
        malformed(match e {
            url::ParseError::RelativeUrlWithoutBase => {
                "it does not start with a scheme such as postgres://".to_owned()
            }
            other => other.to_string(),
        })
    })?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err(malformed(format!(
            "its scheme is {:?}, not postgres or postgresql",
            parsed.scheme()
        )));
    }
    PgConnectOptions::from_str(url).map_err(|e| malformed(e.to_string()))?;
    Ok(())
}

/// Creates the database if needed, applies pending migrations, and returns a pool on it.
pub async fn prepare(settings: &DatabaseSettings) -> Result<PgPool, DbError> {
    let url = settings.database_url.as_str();
    check_url(url)?;
    let shown = redact(url);
    let exists = Postgres::database_exists(url)
        .await
        .map_err(|source| DbError::Unreachable {
            url: shown.clone(),
            source,
        })?;
    if !exists {
        match Postgres::create_database(url).await {
            Ok(()) => tracing::info!(db.url = %shown, "created database"),
            // Another process created it between our check and our create.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            Err(source) => return Err(DbError::Create { url: shown, source }),
        }
    }
    let pool = connect(settings).await?;
    // Only run the migrator when something is pending: applying migrations takes the schema
    // owner, and a service connected as a member of gigledger_app may only check.
    if !pending_migrations(&pool).await.is_empty() {
        gigledger_projections::MIGRATOR
            .run(&pool)
            .await
            .map_err(|source| DbError::Migrate {
                url: shown.clone(),
                source,
            })?;
    }
    begin_log_epoch_if_moved(&pool, &shown).await?;
    Ok(pool)
}

/// After a restore (or logical replication) into another cluster, begins a new log epoch so that
/// events appended here sort after every restored one (see `projections/src/log.rs`). A no-op on
/// the cluster the current epoch runs on.
pub async fn begin_log_epoch_if_moved(pool: &PgPool, shown: &str) -> Result<bool, DbError> {
    let begun: bool = sqlx::query_scalar("select begin_log_epoch_if_moved()")
        .fetch_one(pool)
        .await
        .map_err(|source| DbError::Epoch {
            url: shown.to_owned(),
            source,
        })?;
    if begun {
        tracing::warn!(
            db.url = %shown,
            "the event log is on another cluster than before (restored or replicated): began a new log epoch"
        );
    }
    Ok(begun)
}

/// The versions of the migrations this build knows that the database has not applied (all of them
/// when it cannot tell, e.g. on a fresh database).
pub async fn pending_migrations(pool: &PgPool) -> Vec<i64> {
    let applied: Vec<i64> =
        sqlx::query_scalar("select version from _sqlx_migrations where success")
            .fetch_all(pool)
            .await
            .unwrap_or_default();
    gigledger_projections::MIGRATOR
        .iter()
        .map(|m| m.version)
        .filter(|v| !applied.contains(v))
        .collect()
}

/// A pool on an existing database. Its sessions are named `gigledger:<pid>` in
/// `pg_stat_activity`, so an operator (or a test) can tell which process holds which lease.
pub async fn connect(settings: &DatabaseSettings) -> Result<PgPool, DbError> {
    check_url(&settings.database_url)?;
    let unreachable = |source| DbError::Unreachable {
        url: redact(&settings.database_url),
        source,
    };
    let options = PgConnectOptions::from_str(&settings.database_url)
        .map_err(unreachable)?
        .application_name(&format!("gigledger:{}", std::process::id()))
        // The event store wakes readers itself after commit (see commands/src/store.rs), which
        // spares every commit the database-wide lock of a NOTIFY inside the transaction.
        .options([("gigledger.notify", "off")]);
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .map_err(unreachable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(url: &str) -> String {
        match check_url(url) {
            Err(DbError::Malformed { reason, .. }) => reason,
            other => panic!("{url} is reported as malformed, not {other:?}"),
        }
    }

    #[test]
    fn a_url_without_a_scheme_is_malformed() {
        assert!(reason("postgres//x").contains("scheme"));
    }

    #[test]
    fn a_url_of_another_scheme_is_malformed() {
        assert!(reason("http://x/db").contains("\"http\""));
    }

    #[test]
    fn a_bad_port_is_malformed() {
        assert!(reason("postgres://u@host:99999/db").contains("port"));
        assert!(reason("postgres://u@host:abc/db").contains("port"));
    }

    #[test]
    fn good_urls_pass() {
        assert!(check_url("postgres://postgres@127.0.0.1:5432/gigledger").is_ok());
        assert!(check_url("postgresql://u:p@db.example.com/x?sslmode=require").is_ok());
    }

    #[test]
    fn a_malformed_url_keeps_its_password_out_of_messages() {
        let url = "postgres://u:secret@host:99999/db";
        let message = check_url(url).map_err(|e| e.to_string()).unwrap_err();
        assert!(!message.contains("secret"), "{message}");
        assert!(message.contains("u:***@host:99999/db"), "{message}");
    }
}
