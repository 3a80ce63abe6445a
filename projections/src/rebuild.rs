//! Rebuilding a read model from position zero while queries keep being served.
//!
//! 1. Fresh copies of the projection's tables are created in schema `read_rebuild`
//!    (`like read.x including all`: columns, defaults, generated columns, indexes, constraints).
//! 2. The handler replays the whole log into them under the checkpoint `<name>#rebuild`; the live
//!    tables and the live worker are untouched meanwhile.
//! 3. When the copy has caught up, one transaction swaps them in: it locks the live tables first
//!    (the order a live batch takes its locks in: tables, then checkpoint, so the two never
//!    deadlock), then the live checkpoint row; drops the live tables, moves the copies into
//!    `read`, and sets the live checkpoint to where the copy stands. The live worker then goes on
//!    from there; a batch it had in flight fails its conditional checkpoint update and rolls back.

use sqlx::PgPool;

use crate::runtime::{catch_up, load_checkpoint, Handler, Target};

/// Why a rebuild stopped. The live read model is untouched unless the swap committed.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("database error during rebuild: {0}")]
    Database(#[from] sqlx::Error),
    #[error("table name {0:?} is not a plain identifier")]
    BadTableName(String),
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

/// Rebuilds `handler`'s read model (its `tables`) from zero and swaps it in. Returns how many events
/// the replay applied.
pub async fn rebuild(
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

    let mut tx = pool.begin().await?;
    for table in tables {
        sqlx::query(&format!(
            "lock table read.{} in access exclusive mode",
            checked(table)?
        ))
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("select 1 from projection_checkpoints where name = $1 for update")
        .bind(&name)
        .execute(&mut *tx)
        .await?;
    let copy = load_checkpoint(pool, &target.checkpoint).await?;
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
    .bind(&name)
    .bind(copy.transaction_id)
    .bind(copy.position)
    .bind(i64::try_from(applied).unwrap_or(i64::MAX))
    .execute(&mut *tx)
    .await?;
    sqlx::query("delete from projection_checkpoints where name = $1")
        .bind(&target.checkpoint)
        .execute(&mut *tx)
        .await?;
    // Moved tables keep the grants they were created with in read_rebuild; restate the read
    // schema's.
    sqlx::query("grant select on all tables in schema read to gigledger_analyst")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "grant select, insert, update, delete on all tables in schema read to gigledger_app",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(applied)
}
