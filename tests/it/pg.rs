//! A real PostgreSQL server for the tests: `initdb` into a temporary folder, `postgres` on a
//! free loopback port (as the `postgres` user when the tests run as root, since PostgreSQL
//! refuses to run as root). Stopped when dropped.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::free_port;

pub struct PgServer {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    child: Option<Child>,
    /// Extra `-c name=value` settings.
    settings: Vec<String>,
    /// It has run: clients know its port, which must not change.
    ran: bool,
}

/// The newest installed PostgreSQL's programs (Debian: /usr/lib/postgresql/NN/bin).
fn pg_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (.ci/run installs Debian's postgresql)")
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|p| p.join("postgres").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("a PostgreSQL server in /usr/lib/postgresql")
}

/// The uid and gid to run PostgreSQL as: ours, or the `postgres` user's when we are root.
fn run_as() -> Option<(u32, u32)> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new("postgres").unwrap();
    // SAFETY: a valid C string; the returned record is read at once, before any other call.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(!pw.is_null(), "running as root needs a `postgres` user");
    // SAFETY: pw is non-null and points to the static record getpwnam returned.
    unsafe { Some(((*pw).pw_uid, (*pw).pw_gid)) }
}

fn command(program: &Path) -> Command {
    let mut c = Command::new(program);
    if let Some((uid, gid)) = run_as() {
        c.uid(uid).gid(gid);
    }
    c
}

impl PgServer {
    /// A fresh cluster, started and accepting connections.
    pub async fn start() -> PgServer {
        Self::start_with(&[]).await
    }

    /// A fresh cluster with extra server settings (`ssl=on`, ...).
    pub async fn start_with(settings: &[&str]) -> PgServer {
        let mut server = PgServer::init();
        server.settings = settings.iter().map(|s| s.to_string()).collect();
        server.run().await;
        server
    }

    /// A fresh cluster, not started: [`PgServer::set`], then [`PgServer::run`].
    pub fn init() -> PgServer {
        let dir = tempfile::tempdir().unwrap();
        if let Some((uid, gid)) = run_as() {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let bin = pg_bin();
        let data = dir.path().join("data");
        let out = command(&bin.join("initdb"))
            .args([
                "-D",
                data.to_str().unwrap(),
                "-U",
                "cordon",
                "-A",
                "trust",
                "-E",
                "UTF8",
            ])
            .arg("--no-sync")
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PgServer {
            port: free_port(),
            dir,
            bin,
            child: None,
            settings: Vec::new(),
            ran: false,
        }
    }

    /// Adds a server setting (`name=value`) for the next [`PgServer::run`].
    pub fn set(&mut self, setting: &str) {
        self.settings.push(setting.to_string());
    }

    /// Writes a file the server will read (a certificate, a key): readable by the server only.
    pub fn write_private(&self, name: &str, contents: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        if let Some((uid, gid)) = run_as() {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
        }
        path
    }

    /// Starts the server process (again) on the same data and port; on a first start, a port
    /// another test took in the meantime is traded for another free one.
    pub async fn run(&mut self) {
        assert!(self.child.is_none(), "already running");
        for _ in 0..3 {
            self.spawn();
            let url = self.url("postgres");
            let child = self.child.as_mut().expect("spawned");
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while std::time::Instant::now() < deadline {
                if tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .is_ok()
                {
                    self.ran = true;
                    return;
                }
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            self.child = None;
            let taken = self.log().contains("could not create any TCP/IP sockets");
            if !taken || self.ran {
                break;
            }
            self.port = free_port();
        }
        panic!("postgres did not start: {}", self.log());
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("postgres.log")).unwrap();
        let mut c = command(&self.bin.join("postgres"));
        c.arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=200",
            ])
            // A crash of this process, not of the machine, is what the tests simulate.
            .args(["-c", "fsync=off"]);
        for s in &self.settings {
            c.args(["-c", s]);
        }
        let child = c
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("postgres starts");
        self.child = Some(child);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// The URL of database `db` (no TLS).
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://cordon@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    /// A new empty database; its URL.
    pub async fn database(&self, name: &str) -> String {
        let client = self.client("postgres").await;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        self.url(name)
    }

    /// A connection to database `db`, for the test's own reads and writes.
    pub async fn client(&self, db: &str) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url(db), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    }

    /// Freezes (or thaws) the whole server: the postmaster and every backend, so that open
    /// connections hang rather than fail.
    pub fn freeze(&self, frozen: bool) {
        let signal = if frozen { libc::SIGSTOP } else { libc::SIGCONT };
        let pid = self.child.as_ref().expect("running").id();
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for p in
            std::iter::once(pid).chain(children.split_whitespace().filter_map(|p| p.parse().ok()))
        {
            // SAFETY: kill(2) on the server this test spawned and its backends.
            unsafe { libc::kill(p as libc::pid_t, signal) };
        }
    }

    /// Stops the server at once (SIGQUIT: immediate shutdown, as a crash would).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on a child this test spawned and has not reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGQUIT) };
            let _ = child.wait();
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            // Thaw first: a frozen server would not hear the signal to stop.
            self.freeze(false);
        }
        self.stop();
    }
}
