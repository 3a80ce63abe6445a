//! A PostgreSQL cluster of the test's own: `initdb` in a temporary directory, started on a free
//! port of 127.0.0.1, stopped (immediately) and removed when dropped, however the test ends. For
//! tests that stop, dump, restore or break a server: never the shared one.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where PostgreSQL's server programs are (`GIGLEDGER_PG_BIN` overrides).
fn pg_bin() -> PathBuf {
    std::env::var_os("GIGLEDGER_PG_BIN").map_or_else(
        || PathBuf::from("/usr/lib/postgresql/15/bin"),
        PathBuf::from,
    )
}

/// initdb and pg_ctl refuse to run as root: as root, they run as `postgres`.
fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A running throwaway cluster.
pub struct ThrowawayCluster {
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl ThrowawayCluster {
    /// Creates and starts a cluster (trust auth, user `postgres`, fsync off: nothing here must
    /// survive a power cut).
    pub fn start() -> Self {
        let as_postgres = running_as_root();
        let dir = std::env::temp_dir().join(format!("gigledger-pg-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        if as_postgres {
            check(
                Command::new("chown")
                    .args(["postgres:postgres"])
                    .arg(&dir)
                    .output(),
                "chown",
            );
        }
        let port = free_port();
        let cluster = Self {
            dir,
            port,
            as_postgres,
        };
        let data = cluster.data();
        cluster.server(
            "initdb",
            &[
                "-D",
                path(&data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off",
            cluster.dir.display()
        );
        let log = cluster.dir.join("server.log");
        cluster.server(
            "pg_ctl",
            &[
                "-D",
                path(&data),
                "-l",
                path(&log),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
        cluster
    }

    /// A URL for database `db` on this cluster.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs a client program of PostgreSQL's (`pg_dump`, `pg_restore`, `psql`) and returns its
    /// output, panicking with its stderr when it fails.
    pub fn client(&self, program: &str, args: &[&str]) -> Output {
        check(
            Command::new(pg_bin().join(program)).args(args).output(),
            program,
        )
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn server(&self, program: &str, args: &[&str]) -> Output {
        let binary = pg_bin().join(program);
        let output = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(binary)
                .args(args)
                .output()
        } else {
            Command::new(binary).args(args).output()
        };
        check(output, program)
    }
}

impl Drop for ThrowawayCluster {
    fn drop(&mut self) {
        let data = self.data();
        let binary = pg_bin().join("pg_ctl");
        let args = ["-D", path(&data), "-m", "immediate", "-w", "stop"];
        let _ = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(binary)
                .args(args)
                .output()
        } else {
            Command::new(binary).args(args).output()
        };
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn check(output: std::io::Result<Output>, program: &str) -> Output {
    let output = output.unwrap_or_else(|e| panic!("{program} does not start: {e}"));
    assert!(
        output.status.success(),
        "{program} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
