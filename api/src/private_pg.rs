//! A PostgreSQL cluster of gigledger's own, for `serve --demo` on a machine where PostgreSQL is
//! installed but no server answers at the default address, or the one that answers refuses its
//! user (a distribution's server, with its own authentication rules): README's first command
//! then works as it stands.
//!
//! The cluster lives in `<data dir>/pg/<major version>/` (`data/`, `server.log`, `gigledger.pid`),
//! is made by `initdb` on first use and reused afterwards, takes connections on 127.0.0.1 only
//! (no Unix socket) with trust authentication for its superuser `postgres`, on a port free when it
//! starts, and is stopped when gigledger stops ([`PrivateCluster::stop`], or on drop on the error
//! and panic paths). A cluster left running by a gigledger that was killed is recognised by its
//! `gigledger.pid` naming a process that is gone, and restarted.
//!
//! `initdb` and `postgres` refuse to run as root: as root, they run as the `postgres` user (with
//! `runuser`, as `tests/src/cluster.rs` does), who must be able to reach the data directory.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use crate::settings::PrivatePgSettings;

/// The oldest PostgreSQL the migrations run on (`xid8`, `pg_current_xact_id`).
const MIN_MAJOR: u32 = 13;

/// Why no private cluster could be started.
#[derive(Debug, thiserror::Error)]
pub enum PrivatePgError {
    #[error("{0}")]
    NoServerPrograms(String),
    #[error(
        "cannot tell where to keep the private PostgreSQL: neither GIGLEDGER_DATA_DIR, \
         XDG_DATA_HOME nor HOME is set. Set GIGLEDGER_DATA_DIR (or --data-dir)."
    )]
    NoDataDir,
    #[error("cannot prepare the private PostgreSQL's directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Root(String),
    #[error(
        "the private PostgreSQL in {dir} is in use by another gigledger (process {pid}); stop \
         that one, or give this one another directory with GIGLEDGER_DATA_DIR"
    )]
    InUse { dir: PathBuf, pid: u32 },
    #[error("{program} failed for the private PostgreSQL in {dir}:\n{detail}")]
    Failed {
        program: &'static str,
        dir: PathBuf,
        detail: String,
    },
}

/// A set of server programs found on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerPrograms {
    /// The directory holding `initdb`, `pg_ctl` and `postgres`.
    pub bin: PathBuf,
    /// `(major, minor)`, from `postgres --version`.
    pub version: (u32, u32),
}

/// A running private cluster.
#[derive(Debug)]
pub struct PrivateCluster {
    programs: ServerPrograms,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
    running: bool,
}

impl PrivateCluster {
    /// A URL for database `db` on the cluster.
    #[must_use]
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The port it listens on (127.0.0.1 only).
    #[must_use]
    pub const fn port(&self) -> u16 {
        self.port
    }

    /// Its directory (`data/`, `server.log`).
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server programs it runs on.
    #[must_use]
    pub const fn programs(&self) -> &ServerPrograms {
        &self.programs
    }

    /// Finds server programs, makes the cluster if it does not exist yet, and starts it.
    pub async fn start(settings: &PrivatePgSettings) -> Result<Self, PrivatePgError> {
        let root = data_root(settings)?.join("pg");
        let programs = choose_programs(settings, &root).await?;
        let dir = root.join(programs.version.0.to_string());
        std::fs::create_dir_all(&dir).map_err(|source| PrivatePgError::Io {
            path: dir.clone(),
            source,
        })?;
        let as_postgres = running_as_root().await;
        let mut cluster = Self {
            programs,
            dir,
            port: 0,
            as_postgres,
            running: false,
        };
        if as_postgres {
            cluster.hand_to_postgres().await?;
        }
        if !cluster.data().join("PG_VERSION").exists() {
            cluster.initdb().await?;
        }
        cluster.stop_orphan().await?;
        cluster.start_server().await?;
        Ok(cluster)
    }

    /// Stops the server (fast shutdown: open sessions are ended, nothing is lost).
    pub async fn stop(mut self) {
        if self.running {
            self.running = false;
            let mut stop = tokio::process::Command::from(self.stop_command());
            match stop.output().await {
                Ok(out) if out.status.success() => {
                    tracing::info!(pg.dir = %self.dir.display(), "stopped the private PostgreSQL");
                }
                Ok(out) => tracing::warn!(
                    pg.dir = %self.dir.display(), detail = %detail(&out),
                    "the private PostgreSQL did not stop cleanly"
                ),
                Err(e) => tracing::warn!(
                    pg.dir = %self.dir.display(), error = %e,
                    "cannot run pg_ctl to stop the private PostgreSQL"
                ),
            }
            let _ = std::fs::remove_file(self.dir.join("gigledger.pid"));
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A server program, run as the `postgres` user when we are root.
    fn command(&self, program: &str) -> std::process::Command {
        let binary = self.programs.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(binary);
            c
        } else {
            std::process::Command::new(binary)
        };
        // The server programs change into the current directory's parents otherwise, which the
        // `postgres` user may not be allowed to read.
        command
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    fn stop_command(&self) -> std::process::Command {
        let mut stop = self.command("pg_ctl");
        stop.arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "-t", "60", "stop"]);
        stop
    }

    async fn run(
        &self,
        program: &'static str,
        args: &[&std::ffi::OsStr],
    ) -> Result<Output, PrivatePgError> {
        let mut command = tokio::process::Command::from(self.command(program));
        command.args(args);
        let out = command.output().await.map_err(|e| PrivatePgError::Failed {
            program,
            dir: self.dir.clone(),
            detail: format!("cannot run it: {e}"),
        })?;
        Ok(out)
    }

    /// As root: the directory becomes the `postgres` user's, who must be able to reach it.
    async fn hand_to_postgres(&self) -> Result<(), PrivatePgError> {
        let user_exists = tokio::process::Command::new("id")
            .args(["-u", "postgres"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success());
        if !user_exists {
            return Err(PrivatePgError::Root(
                "gigledger runs as root, and PostgreSQL's initdb refuses to run as root; there is \
                 no `postgres` user to run it as. Run gigledger as another user, or point it at a \
                 running server with DATABASE_URL."
                    .to_owned(),
            ));
        }
        let chown = tokio::process::Command::new("chown")
            .arg("postgres:postgres")
            .arg(&self.dir)
            .output()
            .await;
        let reachable = tokio::process::Command::new("runuser")
            .args(["-u", "postgres", "--", "test", "-w"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        match (chown, reachable) {
            (Ok(c), Ok(r)) if c.status.success() && r.success() => Ok(()),
            (_, Err(e)) => Err(PrivatePgError::Root(format!(
                "gigledger runs as root, and PostgreSQL's initdb refuses to run as root; running it \
                 as the `postgres` user needs `runuser`, which cannot be run ({e}). Run gigledger \
                 as another user, or point it at a running server with DATABASE_URL."
            ))),
            _ => Err(PrivatePgError::Root(format!(
                "gigledger runs as root, so its private PostgreSQL runs as the `postgres` user \
                 (initdb refuses to run as root), but that user cannot write to {} (a directory \
                 above it is closed to others, as /root is). Set GIGLEDGER_DATA_DIR to a \
                 directory it can reach (e.g. /var/lib/gigledger), run gigledger as another \
                 user, or point it at a running server with DATABASE_URL.",
                self.dir.display()
            ))),
        }
    }

    async fn initdb(&self) -> Result<(), PrivatePgError> {
        let data = self.data();
        tracing::info!(pg.dir = %self.dir.display(), "creating the private PostgreSQL cluster (initdb)");
        let out = self
            .run(
                "initdb",
                &[
                    "-D".as_ref(),
                    data.as_os_str(),
                    "-U".as_ref(),
                    "postgres".as_ref(),
                    "-A".as_ref(),
                    "trust".as_ref(),
                    "-E".as_ref(),
                    "UTF8".as_ref(),
                    // C works with any encoding on any system; the user's locale may not.
                    "--locale=C".as_ref(),
                ],
            )
            .await?;
        if !out.status.success() {
            return Err(PrivatePgError::Failed {
                program: "initdb",
                dir: self.dir.clone(),
                detail: detail(&out),
            });
        }
        let conf = data.join("postgresql.conf");
        let extra =
            "\n# Added by gigledger (serve --demo): this private cluster takes connections \
                     over TCP on\n# 127.0.0.1 only (no Unix socket, whose default directory a user \
                     may not write),\n# and a demo's commits need not wait for the disk.\n\
                     listen_addresses = '127.0.0.1'\nunix_socket_directories = ''\n\
                     synchronous_commit = off\n";
        let appended = std::fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .and_then(|mut f| std::io::Write::write_all(&mut f, extra.as_bytes()));
        appended.map_err(|source| PrivatePgError::Io { path: conf, source })
    }

    /// A server still running in this directory: another live gigledger's (refused), or one
    /// left by a gigledger that was killed (stopped, to be started afresh on a free port).
    async fn stop_orphan(&self) -> Result<(), PrivatePgError> {
        let data = self.data();
        let status = self
            .run(
                "pg_ctl",
                &["-D".as_ref(), data.as_os_str(), "status".as_ref()],
            )
            .await?;
        if !status.status.success() {
            return Ok(());
        }
        let owner = std::fs::read_to_string(self.dir.join("gigledger.pid"))
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok());
        if let Some(pid) = owner {
            if pid != std::process::id() && process_alive(pid).await {
                return Err(PrivatePgError::InUse {
                    dir: self.dir.clone(),
                    pid,
                });
            }
        }
        tracing::warn!(pg.dir = %self.dir.display(), "a private PostgreSQL was left running by a gigledger that is gone: restarting it");
        let out = tokio::process::Command::from(self.stop_command())
            .output()
            .await
            .map_err(|e| PrivatePgError::Failed {
                program: "pg_ctl",
                dir: self.dir.clone(),
                detail: format!("cannot run it: {e}"),
            })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(PrivatePgError::Failed {
                program: "pg_ctl",
                dir: self.dir.clone(),
                detail: detail(&out),
            })
        }
    }

    /// Starts the server on a free port; a port taken between choosing and binding it is
    /// retried with another.
    async fn start_server(&mut self) -> Result<(), PrivatePgError> {
        let data = self.data();
        let log = self.dir.join("server.log");
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port().map_err(|source| PrivatePgError::Io {
                path: self.dir.clone(),
                source,
            })?;
            let options = format!("-p {port}");
            let out = self
                .run(
                    "pg_ctl",
                    &[
                        "-D".as_ref(),
                        data.as_os_str(),
                        "-l".as_ref(),
                        log.as_os_str(),
                        "-o".as_ref(),
                        options.as_ref(),
                        "-w".as_ref(),
                        "-t".as_ref(),
                        "60".as_ref(),
                        "start".as_ref(),
                    ],
                )
                .await?;
            if out.status.success() {
                self.port = port;
                self.running = true;
                let pid_file = self.dir.join("gigledger.pid");
                std::fs::write(&pid_file, format!("{}\n", std::process::id())).map_err(
                    |source| PrivatePgError::Io {
                        path: pid_file,
                        source,
                    },
                )?;
                return Ok(());
            }
            last = format!("{}\n{}", detail(&out), tail(&log, 15));
        }
        Err(PrivatePgError::Failed {
            program: "pg_ctl start",
            dir: self.dir.clone(),
            detail: last,
        })
    }
}

impl Drop for PrivateCluster {
    /// The error and panic paths: the server does not outlive gigledger.
    fn drop(&mut self) {
        if self.running {
            self.running = false;
            let _ = self.stop_command().output();
            let _ = std::fs::remove_file(self.dir.join("gigledger.pid"));
        }
    }
}

/// Whether a server answers (accepts a TCP connection) at `url`'s host and port. A URL without
/// a TCP address (a Unix socket) counts as answering: it is left to the connection to tell.
pub async fn answers(url: &str) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return true;
    };
    let Some(host) = parsed.host_str().filter(|h| !h.is_empty()) else {
        return true;
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = parsed.port().unwrap_or(5432);
    let connect = tokio::net::TcpStream::connect((host.as_str(), port));
    matches!(
        tokio::time::timeout(Duration::from_secs(3), connect).await,
        Ok(Ok(_))
    )
}

/// Why the server at `url` refuses us, when it answers but turns the user down (a password
/// required, or no such role: a distribution's PostgreSQL, running with its own authentication
/// rules, e.g. Debian's `scram-sha-256` for TCP connections). `None` when it lets us in, or fails
/// otherwise (that is left to the connection to report).
pub async fn refuses_us(url: &str) -> Option<String> {
    use sqlx::Connection as _;
    let options = url
        .parse::<sqlx::postgres::PgConnectOptions>()
        .ok()?
        // The maintenance database: the demo's may not exist yet.
        .database("postgres");
    let attempt = sqlx::PgConnection::connect_with(&options);
    match tokio::time::timeout(Duration::from_secs(5), attempt).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            None
        }
        // Class 28: invalid authorization specification.
        Ok(Err(sqlx::Error::Database(e))) if e.code().is_some_and(|c| c.starts_with("28")) => {
            Some(format!("it refuses the user: {}", e.message()))
        }
        _ => None,
    }
}

/// The host and port of `url`, for messages.
#[must_use]
pub fn address_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host_str()
                .map(|h| format!("{h}:{}", u.port().unwrap_or(5432)))
        })
        .unwrap_or_else(|| crate::db::redact(url))
}

/// Where gigledger keeps what outlives it: `--data-dir`, else `$XDG_DATA_HOME/gigledger`, else
/// `~/.local/share/gigledger`.
pub fn data_root(settings: &PrivatePgSettings) -> Result<PathBuf, PrivatePgError> {
    if let Some(dir) = &settings.data_dir {
        return Ok(dir.clone());
    }
    let xdg = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    if let Some(xdg) = xdg {
        return Ok(xdg.join("gigledger"));
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .map(|home| home.join(".local").join("share").join("gigledger"))
        .ok_or(PrivatePgError::NoDataDir)
}

/// The server programs to run: `--pg-bin` when given, else the newest found, preferring a
/// version whose cluster already exists under `root` (so an upgrade does not leave the demo's
/// data behind while the old programs are still installed).
async fn choose_programs(
    settings: &PrivatePgSettings,
    root: &Path,
) -> Result<ServerPrograms, PrivatePgError> {
    let candidates = match &settings.pg_bin {
        Some(bin) => vec![bin.clone()],
        None => candidate_dirs().await,
    };
    let mut found = Vec::new();
    let mut too_old = Vec::new();
    for bin in candidates {
        if let Some(programs) = programs_in(&bin).await {
            if programs.version.0 >= MIN_MAJOR {
                found.push(programs);
            } else {
                too_old.push(programs);
            }
        }
    }
    let existing = |p: &ServerPrograms| {
        root.join(p.version.0.to_string())
            .join("data")
            .join("PG_VERSION")
            .exists()
    };
    found.sort_by_key(|p| (existing(p), p.version));
    found
        .pop()
        .ok_or_else(|| PrivatePgError::NoServerPrograms(no_programs_message(settings, &too_old)))
}

fn no_programs_message(settings: &PrivatePgSettings, too_old: &[ServerPrograms]) -> String {
    let looked = match &settings.pg_bin {
        Some(bin) => format!("in {} (GIGLEDGER_PG_BIN)", bin.display()),
        None => "on PATH, in `pg_config --bindir` and in /usr/lib/postgresql/*/bin, \
                 /usr/pgsql-*/bin, Homebrew's and Postgres.app's directories"
            .to_owned(),
    };
    let old = too_old
        .iter()
        .map(|p| {
            format!(
                " Found PostgreSQL {}.{} in {}, but gigledger needs {MIN_MAJOR} or later.",
                p.version.0,
                p.version.1,
                p.bin.display()
            )
        })
        .collect::<String>();
    let install = if cfg!(target_os = "macos") {
        "install them with `brew install postgresql@16`"
    } else {
        "install them with your system's package, `postgresql` on Debian and Ubuntu (`sudo \
         apt-get install postgresql`; Fedora: `postgresql-server`; macOS: `brew install \
         postgresql@16`)"
    };
    format!(
        "no PostgreSQL answers at the default address and DATABASE_URL is not set, so `serve \
         --demo` would start a private PostgreSQL, but it found no server programs (initdb, \
         pg_ctl, postgres) {looked}.{old} To use one, {install}, or name their directory with \
         GIGLEDGER_PG_BIN; or point gigledger at a running server with DATABASE_URL."
    )
}

/// Directories that may hold server programs, in the order named by the brief of issue 9:
/// PATH, `pg_config --bindir`, then the usual install locations.
async fn candidate_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    if let Ok(out) = tokio::process::Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .await
    {
        if out.status.success() {
            let bindir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if !bindir.is_empty() {
                dirs.push(PathBuf::from(bindir));
            }
        }
    }
    for (parent, prefix, below) in [
        ("/usr/lib/postgresql", "", "bin"),
        ("/usr", "pgsql-", "bin"),
        ("/opt/homebrew/opt", "postgresql", "bin"),
        ("/usr/local/opt", "postgresql", "bin"),
        ("/Applications/Postgres.app/Contents/Versions", "", "bin"),
    ] {
        if let Ok(entries) = std::fs::read_dir(parent) {
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .map(|e| e.path().join(below))
                .collect();
            found.sort();
            dirs.extend(found);
        }
    }
    let mut seen = Vec::new();
    dirs.retain(|d| {
        let key = std::fs::canonicalize(d).unwrap_or_else(|_| d.clone());
        if seen.contains(&key) {
            false
        } else {
            seen.push(key);
            true
        }
    });
    dirs
}

/// The server programs in `bin`, with their version, if all three are there and run.
async fn programs_in(bin: &Path) -> Option<ServerPrograms> {
    if !["initdb", "pg_ctl", "postgres"]
        .iter()
        .all(|p| bin.join(p).is_file())
    {
        return None;
    }
    let out = tokio::process::Command::new(bin.join("postgres"))
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .await
        .ok()?;
    let version = parse_version(&String::from_utf8_lossy(&out.stdout))?;
    Some(ServerPrograms {
        bin: bin.to_owned(),
        version,
    })
}

/// `(major, minor)` from `postgres (PostgreSQL) 15.8 (Debian 15.8-1.pgdg120+1)`, `… 17beta1`, or
/// `… 9.6.24`.
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let number = text.split(')').nth(1)?.split_whitespace().next()?;
    let mut parts = number.split('.');
    let digits = |s: &str| -> Option<u32> {
        let d: String = s.chars().take_while(char::is_ascii_digit).collect();
        d.parse().ok()
    };
    let major = digits(parts.next()?)?;
    let minor = parts.next().and_then(digits).unwrap_or(0);
    Some((major, minor))
}

async fn running_as_root() -> bool {
    tokio::process::Command::new("id")
        .arg("-u")
        .output()
        .await
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

async fn process_alive(pid: u32) -> bool {
    tokio::process::Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

fn free_port() -> std::io::Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
}

fn detail(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .trim()
    .to_owned()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_postgres_version_lines() {
        assert_eq!(
            parse_version("postgres (PostgreSQL) 15.8 (Debian 15.8-1.pgdg120+1)\n"),
            Some((15, 8))
        );
        assert_eq!(
            parse_version("postgres (PostgreSQL) 17beta1"),
            Some((17, 0))
        );
        assert_eq!(parse_version("postgres (PostgreSQL) 9.6.24"), Some((9, 6)));
        assert_eq!(parse_version("garbage"), None);
    }

    #[test]
    fn the_data_dir_setting_wins() {
        let settings = PrivatePgSettings {
            data_dir: Some(PathBuf::from("/srv/gl")),
            ..PrivatePgSettings::default()
        };
        assert_eq!(data_root(&settings).ok(), Some(PathBuf::from("/srv/gl")));
    }

    #[test]
    fn without_programs_the_message_names_the_package_to_install() {
        let message = no_programs_message(&PrivatePgSettings::default(), &[]);
        assert!(message.contains("postgresql"), "{message}");
        assert!(message.contains("brew install postgresql@16"), "{message}");
        assert!(message.contains("DATABASE_URL"), "{message}");
    }

    #[tokio::test]
    async fn nothing_answers_on_a_port_nobody_listens_on() {
        let port = free_port().unwrap_or(1);
        assert!(!answers(&format!("postgres://u@127.0.0.1:{port}/db")).await);
    }

    #[tokio::test]
    async fn a_listener_answers() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("its address").port();
        assert!(answers(&format!("postgres://u@127.0.0.1:{port}/db")).await);
    }
}
