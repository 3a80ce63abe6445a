//! The application's role can only read and append to the event store (issue 14, part): as
//! `gigledger_app`, UPDATE, DELETE and TRUNCATE of `events` are refused by privileges, even when
//! an administrator has turned the append-only triggers off, and naming a column the store
//! assigns is refused too. The ledger digest's table is append-only the same way.

use sqlx::{Connection, PgConnection, PgPool};

async fn as_app_without_triggers(pool: &PgPool) -> PgConnection {
    let mut conn = PgConnection::connect_with(&pool.connect_options())
        .await
        .expect("a connection");
    // What an administrator could do: the triggers are off for this session...
    sqlx::query("set session_replication_role = replica")
        .execute(&mut conn)
        .await
        .expect("triggers off");
    // ...and the statements then run with the application's rights only.
    sqlx::query("set role gigledger_app")
        .execute(&mut conn)
        .await
        .expect("the application's role");
    conn
}

fn refused_for_privilege(result: Result<sqlx::postgres::PgQueryResult, sqlx::Error>) -> bool {
    match result {
        Err(sqlx::Error::Database(e)) => e.code().as_deref() == Some("42501"),
        _ => false,
    }
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn the_application_role_cannot_change_or_remove_events_even_with_triggers_off(pool: PgPool) {
    // One event, appended as the application appends.
    let mut app = as_app_without_triggers(&pool).await;
    let mut writer = PgConnection::connect_with(&pool.connect_options())
        .await
        .expect("a connection");
    sqlx::query("set role gigledger_app")
        .execute(&mut writer)
        .await
        .expect("the application's role");
    sqlx::query(
        "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata, event_id)
         values ('gig', 'g1', 1, 'GigPosted', '1', '{}', '{}', gen_random_uuid())",
    )
    .execute(&mut writer)
    .await
    .expect("the application appends");

    for statement in [
        "update events set payload = '{\"x\": 1}'",
        "delete from events",
        "truncate events",
        "update ledger_digests set events = 0",
        "delete from ledger_digests",
    ] {
        let result = sqlx::query(statement).execute(&mut app).await;
        assert!(
            refused_for_privilege(result),
            "{statement} was not refused for privileges"
        );
    }
    // The columns the store assigns cannot even be named on insert.
    for column in ["position", "transaction_id", "recorded_at", "hash"] {
        let value = match column {
            "position" => "1",
            "transaction_id" => "'1'::xid8",
            "recorded_at" => "now()",
            _ => "'\\x00'::bytea",
        };
        let statement = format!(
            "insert into events (aggregate_type, aggregate_id, sequence, event_type,
                                 event_version, payload, metadata, event_id, {column})
             values ('gig', 'g2', 1, 'GigPosted', '1', '{{}}', '{{}}', gen_random_uuid(), {value})"
        );
        let result = sqlx::query(&statement).execute(&mut app).await;
        assert!(
            refused_for_privilege(result),
            "naming {column} was not refused"
        );
    }
    let count: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(&pool)
        .await
        .expect("counted");
    assert_eq!(count, 1, "the one event stands, unchanged");
}
