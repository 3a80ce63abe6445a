//! Support for the black-box tests: databases of their own and processes that die with the test.

use std::process::{Child, Command};

use sqlx::{Connection, PgConnection};

pub mod cluster;
pub mod http;
pub mod world;

/// The server the tests administer databases on (the same variable `#[sqlx::test]` reads).
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database of the test's own, dropped when the value is (best effort).
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    /// A name no other test uses. The database is not created: `gigledger` creates it.
    pub fn fresh(prefix: &str) -> Self {
        let name = format!("gigledger_{prefix}_{}", uuid::Uuid::now_v7().simple());
        let mut url = url::Url::parse(&admin_url()).expect("DATABASE_URL is a URL");
        url.set_path(&name);
        Self {
            name,
            url: url.to_string(),
        }
    }

    pub async fn drop_now(&self) {
        if let Ok(mut admin) = PgConnection::connect(&admin_url()).await {
            let _ = sqlx::query(&format!(
                "drop database if exists {} with (force)",
                self.name
            ))
            .execute(&mut admin)
            .await;
        }
    }
}

/// A child process killed (SIGKILL) when dropped, however the test ends.
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    pub fn spawn(command: &mut Command) -> Self {
        Self(command.spawn().expect("the binary starts"))
    }

    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// SIGKILL, no goodbye: what a crash looks like to the database.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill();
    }
}
