//! A private PostgreSQL cluster, run from the machine's own PostgreSQL
//! binaries in a data directory that is kept and reused on the next start.
//!
//! - Finds `initdb`/`pg_ctl` (`CRM_PG_BIN_DIR`, `pg_config --bindir`,
//!   `/usr/lib/postgresql/<newest>/bin`, then `PATH`), and says what to
//!   install when there are none.
//! - As root (PostgreSQL refuses to run as root) it runs them as the
//!   `postgres` user through `runuser`, on a directory that user owns.
//! - Listens on 127.0.0.1 only, trust authentication, no Unix socket.
//! - Sized for the machine, as a production server would be ([`tuning`]):
//!   PostgreSQL's own defaults (128 MB of shared buffers, JIT on) suit a
//!   shared laptop database, not a CRM holding millions of rows.
//! - A server already running on the directory (left by an earlier run) is reused.

use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};

/// How to start the cluster.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `fsync=off`: much faster, loses data on a machine crash. Tests only, never `crm up`.
    pub unsafe_no_fsync: bool,
}

/// A running private cluster. Dropping it leaves the server running; call [`LocalPostgres::stop`].
#[derive(Debug)]
pub struct LocalPostgres {
    bin_dir: PathBuf,
    data_dir: PathBuf,
    port: u16,
    /// `Some("postgres")` when we are root and must switch user.
    run_as: Option<String>,
}

impl LocalPostgres {
    /// Starts (or reuses) the cluster in `dir`, creating it on first use.
    pub fn start(dir: &Path, options: &Options) -> anyhow::Result<LocalPostgres> {
        let bin_dir = find_binaries()?;
        let run_as = if nix::unistd::geteuid().is_root() { Some("postgres".to_string()) } else { None };
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let data_dir = dir.join("pgdata");
        let cluster = LocalPostgres { bin_dir, data_dir, port: 0, run_as };
        cluster.prepare_ownership(dir)?;

        if !cluster.data_dir.join("PG_VERSION").exists() {
            tracing::info!(dir = %cluster.data_dir.display(), "creating a private PostgreSQL cluster");
            cluster.run(
                "initdb",
                &[
                    "-D",
                    &path_str(&cluster.data_dir)?,
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-instructions",
                ],
            )?;
        }
        if let Some(port) = cluster.running_port() {
            tracing::info!(port, "reusing the private PostgreSQL already running");
            return Ok(LocalPostgres { port, ..cluster });
        }
        let log = dir.join("postgres.log");
        // A free port may be taken by another process between finding it
        // and the server binding it (tests start clusters side by side):
        // then the server says so in its log, and another port is tried.
        let mut attempt = 0;
        let port = loop {
            attempt += 1;
            let port = free_port()?;
            let logged_before = fs::metadata(&log).map(|meta| meta.len()).unwrap_or(0);
            match cluster.start_on(port, options, &log) {
                Ok(()) => break port,
                Err(_) if attempt < 3 && port_was_taken(&log, logged_before) => {
                    tracing::warn!(port, "the port was taken before PostgreSQL bound it; trying another");
                }
                Err(error) => return Err(error),
            }
        };
        tracing::info!(port, "private PostgreSQL started");
        Ok(LocalPostgres { port, ..cluster })
    }

    /// Starts the server on `port`, logging to `log`.
    fn start_on(&self, port: u16, options: &Options, log: &Path) -> anyhow::Result<()> {
        let mut server_options =
            format!("-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=300");
        for (name, value) in tuning(memory_bytes()) {
            server_options.push_str(&format!(" -c {name}={value}"));
        }
        if options.unsafe_no_fsync {
            server_options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        let log = path_str(log)?;
        self.run(
            "pg_ctl",
            &["start", "-w", "-t", "60", "-D", &path_str(&self.data_dir)?, "-l", &log, "-o", &server_options],
        )
        .with_context(|| format!("starting PostgreSQL; its log is {log}"))
    }

    /// A URL for the `postgres` database as the `postgres` superuser.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (fast shutdown: running transactions roll back).
    pub fn stop(&self) -> anyhow::Result<()> {
        self.run("pg_ctl", &["stop", "-m", "fast", "-w", "-D", &path_str(&self.data_dir)?])
    }

    /// Restarts the server on the same port and settings; `mode` is pg_ctl's
    /// shutdown mode: `fast` (transactions roll back) or `immediate` (a crash:
    /// recovery replays the WAL at start).
    pub fn restart(&self, mode: &str) -> anyhow::Result<()> {
        let log = path_str(&self.data_dir.with_file_name("postgres.log"))?;
        self.run("pg_ctl", &["restart", "-m", mode, "-w", "-t", "60", "-D", &path_str(&self.data_dir)?, "-l", &log])
    }

    /// A physical copy of the whole running cluster (`pg_basebackup`, with
    /// the WAL to make it consistent) into `dir`, where [`LocalPostgres::start`]
    /// then runs it: a backup restored, as CloudNativePG's are.
    pub fn base_backup(&self, dir: &Path) -> anyhow::Result<()> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        self.prepare_ownership(dir)?;
        let port = self.port.to_string();
        let target = path_str(&dir.join("pgdata"))?;
        let args = ["-D", &target, "-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-X", "stream", "-c", "fast"];
        self.run("pg_basebackup", &args)
    }

    /// The port of a server already running on our data directory, if any.
    fn running_port(&self) -> Option<u16> {
        let status = self.command("pg_ctl").args(["status", "-D", &path_str(&self.data_dir).ok()?]).output().ok()?;
        if !status.status.success() {
            return None;
        }
        // postmaster.pid: line 4 is the port.
        let pid_file = fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        pid_file.lines().nth(3)?.trim().parse().ok()
    }

    /// As root, hands `dir` to the `postgres` user and checks that it can reach it.
    fn prepare_ownership(&self, dir: &Path) -> anyhow::Result<()> {
        let Some(user_name) = &self.run_as else { return Ok(()) };
        let user = nix::unistd::User::from_name(user_name)
            .context("looking up the postgres user")?
            .with_context(|| {
                format!("running as root needs a `{user_name}` user to run PostgreSQL as; install PostgreSQL from your distribution's packages (it creates one), or run as a normal user")
            })?;
        std::os::unix::fs::chown(dir, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
            .with_context(|| format!("giving {} to the {user_name} user", dir.display()))?;
        let reachable = Command::new("runuser")
            .args(["-u", user_name, "--", "test", "-w"])
            .arg(dir)
            .status()
            .context("running runuser (from util-linux) to switch to the postgres user")?;
        if !reachable.success() {
            bail!(
                "the {user_name} user cannot write to {}: a parent directory is closed to it; choose another CRM_DATA_DIR (e.g. under /var/lib)",
                dir.display()
            );
        }
        Ok(())
    }

    /// A command for one PostgreSQL program, as the `postgres` user when we are root.
    fn command(&self, program: &str) -> Command {
        let binary = self.bin_dir.join(program);
        match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(binary);
                command
            }
            None => Command::new(binary),
        }
    }

    /// Runs one PostgreSQL program and fails with its output when it fails.
    fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let output = self.command(program).args(args).output().with_context(|| format!("running {program}"))?;
        if !output.status.success() {
            bail!(
                "{program} failed ({}): {} {}",
                output.status,
                String::from_utf8_lossy(&output.stdout).trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }
}

/// The directory holding `initdb` and `pg_ctl`.
fn find_binaries() -> anyhow::Result<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("CRM_PG_BIN_DIR").map(PathBuf::from) {
        if has_tools(&dir) {
            return Ok(dir);
        }
        bail!("CRM_PG_BIN_DIR={} holds no initdb and pg_ctl", dir.display());
    }
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if output.status.success() && has_tools(&dir) {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse().ok()?, entry.path().join("bin"))))
        .filter(|(_, dir)| has_tools(dir))
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return Ok(dir);
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        if has_tools(&dir) {
            return Ok(dir);
        }
    }
    bail!(
        "no PostgreSQL server binaries (initdb, pg_ctl) found. Install them (Debian/Ubuntu: `apt-get install postgresql`; \
         Fedora: `dnf install postgresql-server`; macOS: `brew install postgresql`), set CRM_PG_BIN_DIR to their directory, \
         or set DATABASE_URL to an existing server"
    )
}

/// Settings for a server that has the machine to itself, from its memory
/// (`None`: unknown, PostgreSQL's defaults are kept for the memory settings).
///
/// - `shared_buffers` a quarter of memory (at most 8 GB) and
///   `effective_cache_size` half: the usual starting point for a dedicated server.
/// - `max_wal_size` 8 GB and `checkpoint_timeout` 15 min: bulk imports and
///   ingests do not force a checkpoint every few seconds.
/// - `jit` off: compiling a plan costs tens of milliseconds, more than the
///   short queries of a CRM take to run.
/// - `random_page_cost` 1.1: storage is solid-state.
pub fn tuning(memory: Option<u64>) -> Vec<(&'static str, String)> {
    const MB: u64 = 1 << 20;
    let mut settings = vec![
        ("max_wal_size", "8GB".to_string()),
        ("checkpoint_timeout", "15min".to_string()),
        ("jit", "off".to_string()),
        ("random_page_cost", "1.1".to_string()),
    ];
    if let Some(memory) = memory {
        let shared_buffers = (memory / 4).clamp(128 * MB, 8192 * MB);
        settings.push(("shared_buffers", format!("{}MB", shared_buffers / MB)));
        settings.push(("effective_cache_size", format!("{}MB", (memory / 2).max(128 * MB) / MB)));
        settings.push(("maintenance_work_mem", format!("{}MB", (memory / 32).clamp(64 * MB, 1024 * MB) / MB)));
    }
    settings
}

/// The machine's memory, from `/proc/meminfo` (Linux); `None` elsewhere.
fn memory_bytes() -> Option<u64> {
    let meminfo = fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kilobytes: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kilobytes * 1024)
}

/// Whether the server's log, past its first `from` bytes, says its port was in use.
fn port_was_taken(log: &Path, from: u64) -> bool {
    fs::read(log).is_ok_and(|text| {
        let since = &text[(from as usize).min(text.len())..];
        String::from_utf8_lossy(since).contains("Address already in use")
    })
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port for PostgreSQL")?;
    Ok(listener.local_addr()?.port())
}

fn path_str(path: &Path) -> anyhow::Result<String> {
    path.to_str().map(str::to_string).with_context(|| format!("{} is not valid UTF-8", path.display()))
}

#[cfg(test)]
mod tests {
    use super::{port_was_taken, tuning};

    #[test]
    fn a_port_taken_is_read_only_from_the_attempt_s_own_lines() {
        let log = std::env::temp_dir().join(format!("crm-localpg-log-{}", std::process::id()));
        let taken = "LOG:  could not bind IPv4 address \"127.0.0.1\": Address already in use\n";
        std::fs::write(&log, taken).unwrap();
        assert!(port_was_taken(&log, 0));
        let earlier = std::fs::metadata(&log).unwrap().len();
        assert!(!port_was_taken(&log, earlier), "an earlier attempt's lines are not this one's");
        std::fs::write(&log, format!("{taken}LOG:  database system is ready to accept connections\n")).unwrap();
        assert!(!port_was_taken(&log, earlier));
        assert!(!port_was_taken(&log.with_extension("absent"), 0));
        std::fs::remove_file(&log).unwrap();
    }

    fn setting(settings: &[(&str, String)], name: &str) -> Option<String> {
        settings.iter().find(|(key, _)| *key == name).map(|(_, value)| value.clone())
    }

    #[test]
    fn memory_settings_follow_the_machine_within_bounds() {
        let gib = 1u64 << 30;
        let big = tuning(Some(24 * gib));
        assert_eq!(setting(&big, "shared_buffers").as_deref(), Some("6144MB"));
        assert_eq!(setting(&big, "effective_cache_size").as_deref(), Some("12288MB"));
        assert_eq!(setting(&big, "maintenance_work_mem").as_deref(), Some("768MB"));
        let huge = tuning(Some(256 * gib));
        assert_eq!(setting(&huge, "shared_buffers").as_deref(), Some("8192MB"));
        assert_eq!(setting(&huge, "maintenance_work_mem").as_deref(), Some("1024MB"));
        let small = tuning(Some(gib / 4));
        assert_eq!(setting(&small, "shared_buffers").as_deref(), Some("128MB"));
        let unknown = tuning(None);
        assert_eq!(setting(&unknown, "shared_buffers"), None);
        assert_eq!(setting(&unknown, "jit").as_deref(), Some("off"));
    }
}
