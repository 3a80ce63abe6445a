//! Rebuilding a read model from position zero while queries keep being served.
//!
//! 1. Fresh copies of the projection's tables are created in schema `read_rebuild`
//!    (`like read.x including all`: columns, defaults, generated columns, indexes, constraints).
//! 2. The handler replays the whole log into them under the checkpoint `<name>#rebuild`; the live
//!    tables and the live worker are untouched meanwhile.
//! 3. When the copy has caught up, one transaction swaps them in: it locks the live tables and
//!    the live checkpoint row, drops the live tables, moves the copies into `read`, and sets the
//!    live checkpoint to where the copy stands. The live worker then goes on from there; a batch it
//!    had in flight fails its conditional checkpoint update and rolls back. A live batch can hold
//!    one table while wanting another the swap already locked, so the swap may deadlock with it or
//!    wait: it runs under a `lock_timeout`, and on a deadlock or timeout it catches up again and
//!    retries, so the replay is never wasted and readers are never blocked for long.
//!
//! The copies are analysed (`ANALYZE`) once caught up, so they are swapped in with planner
//! statistics.
//!
//! When the analysts' views (schema `analytics`) read a table being swapped, the swap also drops
//! them before it drops tables and defines them again over the moved-in copies, in the same
//! transaction.
//!
//! One rebuild per read model at a time, across processes: a rebuild holds a session advisory
//! lock (on a dedicated connection, so it ends with the rebuild or its process) from step 1 to the
//! end, and a second one is refused at once. Two replays into the same copy would otherwise each
//! drop and refill it under the other and swap in tables that are ahead of their checkpoint.

use sqlx::{Connection, PgConnection, PgPool};

use crate::runtime::{catch_up, load_checkpoint, Handler, Target};

/// Why a rebuild stopped. The live read model is untouched unless the swap committed.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("database error during rebuild: {0}")]
    Database(#[from] sqlx::Error),
    #[error("table name {0:?} is not a plain identifier")]
    BadTableName(String),
    #[error(
        "a rebuild of {0} is already running (in this or another process); \
         wait for it to finish, then rebuild again if needed"
    )]
    AlreadyRunning(String),
}

fn checked(table: &str) -> Result<&str, RebuildError> {
    let plain = !table.is_empty()
        && table
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        Ok(table)
    } else {
        Err(RebuildError::BadTableName(table.to_owned()))
    }
}

/// How often the swap is tried before the rebuild gives up (the copy stays in `read_rebuild`).
const SWAP_ATTEMPTS: u32 = 10;

/// Rebuilds `handler`'s read model (its `tables`) from zero and swaps it in. Returns how many events
/// the replay applied.
pub async fn rebuild(
    pool: &PgPool,
    handler: &dyn Handler,
    tables: &[&str],
    batch_size: i64,
) -> Result<usize, RebuildError> {
    let name = handler.name().to_owned();
    // Held until this function returns (the connection is dropped, which ends the session).
    let mut guard = PgConnection::connect_with(&pool.connect_options()).await?;
    let only_one: bool = sqlx::query_scalar("select pg_try_advisory_lock(hashtextextended($1, 0))")
        .bind(format!("gigledger-rebuild:{name}"))
        .fetch_one(&mut guard)
        .await?;
    if !only_one {
        return Err(RebuildError::AlreadyRunning(name));
    }
    let rebuilt = rebuild_alone(pool, handler, tables, batch_size).await;
    let _ = guard.close().await;
    rebuilt
}

/// The rebuild itself, once this process holds the model's rebuild lock.
async fn rebuild_alone(
    pool: &PgPool,
    handler: &dyn Handler,
    tables: &[&str],
    batch_size: i64,
) -> Result<usize, RebuildError> {
    let name = handler.name().to_owned();
    let target = Target::rebuild(&name);
    let mut tx = pool.begin().await?;
    for table in tables {
        let table = checked(table)?;
        // DDL takes identifiers, not parameters; the name was checked to be a plain identifier.
        sqlx::query(&format!("drop table if exists read_rebuild.{table}"))
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!(
            "create table read_rebuild.{table} (like read.{table} including all)"
        ))
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("delete from projection_checkpoints where name = $1")
        .bind(&target.checkpoint)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;

    // A second pass picks up what arrived during the first, so the swap lands close to the live
    // read model (the live worker then applies the few events between the two).
    let mut applied = catch_up(pool, handler, &target, batch_size).await?;
    applied += catch_up(pool, handler, &target, batch_size).await?;
    analyze_copies(pool, tables).await?;

    let mut attempt = 0;
    loop {
        attempt += 1;
        match swap(pool, &name, &target, tables, applied).await {
            Ok(()) => break,
            Err(RebuildError::Database(sqlx::Error::Database(e)))
                if attempt < SWAP_ATTEMPTS
                    && matches!(e.code().as_deref(), Some("40P01" | "55P03")) =>
            {
                tracing::info!(projection.name = %name, attempt, "swap waited too long; catching up and retrying");
                applied += catch_up(pool, handler, &target, batch_size).await?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(applied)
}

/// Gathers planner statistics on the caught-up copies before they are swapped in. Tables
/// created by the rebuild have none, and autovacuum may take minutes to analyse them: until then
/// the planner guesses (a selective board filter planned on guesses walked the whole board).
/// Statistics belong to the table, so they move into `read` with it; the few events applied after
/// this do not change them materially. Outside the swap's transaction, which holds exclusive
/// locks on the live tables.
async fn analyze_copies(pool: &PgPool, tables: &[&str]) -> Result<(), RebuildError> {
    for table in tables {
        let table = checked(table)?;
        // A table name is an identifier, not a parameter; it was checked to be a plain one.
        sqlx::query(&format!("analyze read_rebuild.{table}"))
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// Swaps the caught-up copies in for the live tables, in one transaction.
async fn swap(
    pool: &PgPool,
    name: &str,
    target: &Target,
    tables: &[&str],
    applied: usize,
) -> Result<(), RebuildError> {
    let mut tx = pool.begin().await?;
    sqlx::query("set local lock_timeout = '5s'")
        .execute(&mut *tx)
        .await?;
    let live = tables
        .iter()
        .map(|t| checked(t).map(|t| format!("read.{t}")))
        .collect::<Result<Vec<_>, _>>()?
        .join(", ");
    sqlx::query(&format!("lock table {live} in access exclusive mode"))
        .execute(&mut *tx)
        .await?;
    sqlx::query("select 1 from projection_checkpoints where name = $1 for update")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    let copy = load_checkpoint(pool, &target.checkpoint).await?;
    // The analysts' views read tables of `read` by oid: when one reads a table swapped here, they
    // go before the tables do and are defined again over the moved-in copies below
    // (migrations/20261201000120_analyst_schema.sql). Other models' swaps leave them alone, so
    // an analyst's long query holds back only the rebuild of what it reads.
    let names: Vec<&str> = tables.to_vec();
    let views_read_these: bool = sqlx::query_scalar(
        "select exists (
             select 1
               from pg_depend d
               join pg_rewrite r on r.oid = d.objid
               join pg_class v on v.oid = r.ev_class
               join pg_namespace vn on vn.oid = v.relnamespace
               join pg_class t on t.oid = d.refobjid
               join pg_namespace tn on tn.oid = t.relnamespace
              where d.classid = 'pg_rewrite'::regclass and d.refclassid = 'pg_class'::regclass
                and vn.nspname = 'analytics' and tn.nspname = 'read'
                and t.relname = any($1))",
    )
    .bind(&names)
    .fetch_one(&mut *tx)
    .await?;
    if views_read_these {
        sqlx::query("select analyst_views_drop()")
            .execute(&mut *tx)
            .await?;
    }
    for table in tables {
        let table = checked(table)?;
        sqlx::query(&format!("drop table read.{table}"))
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!("alter table read_rebuild.{table} set schema read"))
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(
        "insert into projection_checkpoints (name, transaction_id, position, events_applied)
         values ($1, $2, $3, $4)
         on conflict (name) do update
            set transaction_id = excluded.transaction_id, position = excluded.position,
                events_applied = excluded.events_applied, updated_at = now(),
                status = 'running', failed_position = null, last_error = null",
    )
    .bind(name)
    .bind(copy.transaction_id)
    .bind(copy.position)
    .bind(i64::try_from(applied).unwrap_or(i64::MAX))
    .execute(&mut *tx)
    .await?;
    sqlx::query("delete from projection_checkpoints where name = $1")
        .bind(&target.checkpoint)
        .execute(&mut *tx)
        .await?;
    if views_read_these {
        sqlx::query("select analyst_views_create()")
            .execute(&mut *tx)
            .await?;
    }
    // Moved tables keep the grants they were created with in read_rebuild (none); restate the
    // application's. Analysts get nothing in `read`: they read the views of schema `analytics`.
    sqlx::query(
        "grant select, insert, update, delete on all tables in schema read to gigledger_app",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
