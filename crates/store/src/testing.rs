//! A throwaway PostgreSQL cluster for tests: `initdb` in a temp folder, the
//! server listening on a unix socket in that folder only (no TCP port to
//! clash over), run as the `postgres` user when the tests run as root
//! (PostgreSQL refuses root). Dropping a cluster stops it and removes the
//! folder; the cluster shared by a test process ([`shared_database`]) goes
//! when that process exits.
//!
//! PostgreSQL missing fails the test with how to install it, unless
//! `HPKI_ALLOW_NO_POSTGRES=1` says a skip is wanted: then [`PgCluster::start`]
//! returns None and the caller returns early, printing that it skipped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The superuser of a test cluster (trust authentication on the socket).
pub const USER: &str = "hpki";
const PORT: u16 = 5432;

pub struct PgCluster {
    dir: tempfile::TempDir,
    server: Option<Child>,
    bin: PathBuf,
    run_as: Option<(u32, u32)>,
}

impl PgCluster {
    /// A new primary with these extra `postgresql.conf` lines.
    pub fn start(conf: &[&str]) -> Option<PgCluster> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new().prefix("hpki-pg-").tempdir().expect("a temp folder");
        let run_as = run_as();
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the cluster folder");
        }
        let mut cluster = PgCluster { dir, server: None, bin, run_as };
        let data = cluster.data_dir();
        let out = cluster
            .command("initdb")
            .args(["--auth=trust", "--username", USER, "--encoding=UTF8", "--locale=C", "-D"])
            .arg(&data)
            .output()
            .expect("run initdb");
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        cluster.append_conf(conf);
        cluster.launch();
        cluster.wait_ready(USER, "postgres");
        let out = cluster.psql("postgres", &format!("CREATE DATABASE {USER}"));
        assert!(out.0, "create database: {}", out.1);
        Some(cluster)
    }

    /// A streaming standby of `primary`, named `name` (for
    /// `synchronous_standby_names`), started and caught up.
    pub fn standby_of(primary: &PgCluster, name: &str) -> PgCluster {
        let dir = tempfile::Builder::new().prefix("hpki-pg-standby-").tempdir().expect("a temp folder");
        if let Some((uid, gid)) = primary.run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the standby folder");
        }
        let mut standby = PgCluster { dir, server: None, bin: primary.bin.clone(), run_as: primary.run_as };
        let data = standby.data_dir();
        let out = standby
            .command("pg_basebackup")
            .arg("-D")
            .arg(&data)
            .args(["-R", "-c", "fast", "-X", "stream", "-U", USER, "-p", &PORT.to_string(), "-h"])
            .arg(primary.socket_dir())
            .arg("-d")
            .arg(format!("application_name={name}"))
            .output()
            .expect("run pg_basebackup");
        assert!(out.status.success(), "pg_basebackup: {}", String::from_utf8_lossy(&out.stderr));
        standby.launch();
        standby.wait_ready(USER, USER);
        standby
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Where the server's socket is (`host=` of a connection string).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// A connection string for database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("host={} port={PORT} user={USER} dbname={db}", self.socket_dir().display())
    }

    /// Creates a new empty database and returns its connection string.
    pub fn create_database(&self, name: &str) -> String {
        let (ok, text) = self.psql(USER, &format!("CREATE DATABASE {name}"));
        assert!(ok, "create database {name}: {text}");
        self.url(name)
    }

    /// Runs one SQL statement with psql: (success, stdout + stderr).
    pub fn psql(&self, db: &str, sql: &str) -> (bool, String) {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-U", USER, "-p", &PORT.to_string(), "-h"])
            .arg(self.socket_dir())
            .args(["-d", db, "-c", sql])
            .output()
            .expect("run psql");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text.trim().to_owned())
    }

    /// SIGKILL to the postmaster: a crash, with no shutdown checkpoint.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Promotes a standby to primary and waits until it accepts writes.
    pub fn promote(&self) {
        let (ok, text) = self.psql(USER, "SELECT pg_promote(true, 30)");
        assert!(ok && text == "t", "promote: {text}");
    }

    fn append_conf(&self, conf: &[&str]) {
        let path = self.data_dir().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&path).expect("read postgresql.conf");
        text.push_str("\n# tests\nlisten_addresses = ''\n");
        for line in conf {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::write(&path, text).expect("write postgresql.conf");
    }

    fn launch(&mut self) {
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-k")
            .arg(self.socket_dir())
            .args(["-p", &PORT.to_string(), "-c", "listen_addresses="])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join("server.log")).map_or(Stdio::null(), Stdio::from))
            .spawn()
            .expect("start postgres");
        self.server = Some(child);
    }

    fn wait_ready(&self, user: &str, db: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-U", user, "-d", db, "-p", &PORT.to_string(), "-h"])
                .arg(self.socket_dir())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "PostgreSQL did not start: {log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.run_as {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid).current_dir(self.dir.path());
        }
        cmd
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Some(mut child) = self.server.take() {
            // SIGINT: fast shutdown.
            let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A new empty database in a cluster shared by this test process, or None
/// when PostgreSQL is missing and `HPKI_ALLOW_NO_POSTGRES=1`.
pub fn shared_database() -> Option<String> {
    static CLUSTER: OnceLock<Option<PgCluster>> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let cluster = CLUSTER
        .get_or_init(|| {
            let cluster = PgCluster::start(&["fsync = off", "max_connections = 300"])?;
            stop_when_this_process_exits(&cluster);
            Some(cluster)
        })
        .as_ref()?;
    let name = format!("t{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    Some(cluster.create_database(&name))
}

/// A static is never dropped: a watcher stops the server and removes its
/// folder once the test process is gone.
fn stop_when_this_process_exits(cluster: &PgCluster) {
    let Some(server) = &cluster.server else { return };
    let script = format!(
        "while kill -0 {me} 2>/dev/null; do sleep 0.5; done; kill -INT {pg} 2>/dev/null; \
         for i in $(seq 1 40); do kill -0 {pg} 2>/dev/null || break; sleep 0.25; done; rm -rf '{dir}'",
        me = std::process::id(),
        pg = server.id(),
        dir = cluster.dir.path().display(),
    );
    let _ = Command::new("sh").args(["-c", &script]).stdin(Stdio::null()).stdout(Stdio::null()).spawn();
}

/// The newest installed PostgreSQL's binaries (Debian keeps them under
/// /usr/lib/postgresql/<major>/bin), else `initdb` on PATH.
fn bin_dir() -> Option<PathBuf> {
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").exists())
        .collect();
    debian.sort();
    if let Some((_, bin)) = debian.pop() {
        return Some(bin);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .find(|d| d.join("initdb").exists());
    if on_path.is_some() {
        return on_path;
    }
    let allowed = std::env::var("HPKI_ALLOW_NO_POSTGRES").is_ok_and(|v| v == "1");
    assert!(
        allowed,
        "PostgreSQL is not installed: `make setup` installs it (Debian package postgresql); \
         set HPKI_ALLOW_NO_POSTGRES=1 to skip the PostgreSQL tests instead"
    );
    eprintln!("PostgreSQL is not installed: skipped (HPKI_ALLOW_NO_POSTGRES=1)");
    None
}

/// As root, the uid and gid of the `postgres` user to run the server as.
fn run_as() -> Option<(u32, u32)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().nth(1)?.to_owned();
    if uid != "0" {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    let fields: Vec<&str> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&"postgres"))
        .expect("a `postgres` user to run PostgreSQL as (Debian's postgresql package creates it)");
    Some((fields[2].parse().expect("uid"), fields[3].parse().expect("gid")))
}
