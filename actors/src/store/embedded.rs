//! The embedded default database: a private PostgreSQL run from the system's
//! binaries, on a Unix socket only, with its data in one directory, started
//! and stopped with Lectern. As root it runs as the `postgres` system user.
//!
//! The server is spawned from a thread that lives as long as the server, with
//! `PR_SET_PDEATHSIG`, so that no PostgreSQL outlives Lectern even when
//! Lectern is killed; it gets its own process group, so that a Ctrl-C in the
//! terminal reaches Lectern only and Lectern decides when the database stops.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::{Pid, User};
use sha2::{Digest, Sha256};
use slog::{error, info, warn, Logger};

/// The superuser that `initdb` creates; trust authentication on the socket.
pub const SUPERUSER: &str = "lectern";
const PORT: u16 = 5432;
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The first wait before starting a server that died again, doubled after
/// each failed start up to [`MAX_RESTART_WAIT`].
const FIRST_RESTART_WAIT: Duration = Duration::from_millis(250);
const MAX_RESTART_WAIT: Duration = Duration::from_secs(30);
/// A Unix socket path may hold at most 107 bytes on Linux.
const MAX_SOCKET_PATH: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "PostgreSQL server binaries (initdb, postgres) were not found on PATH or under \
         /usr/lib/postgresql/*/bin: install them (Debian: apt-get install postgresql) \
         or set database.url (DATABASE_URL) to a server you run"
    )]
    BinariesMissing,
    #[error(
        "running as root, the embedded database runs as the `postgres` system user, \
         and there is none: install PostgreSQL (apt-get install postgresql) or set database.url"
    )]
    NoPostgresUser,
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0} exists but is not a PostgreSQL data directory (no PG_VERSION); move it away or set server.data_dir")]
    NotADataDirectory(PathBuf),
    #[error("initdb failed for {dir}: {output}")]
    Initdb { dir: PathBuf, output: String },
    #[error("PostgreSQL did not start: {0}")]
    Start(String),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> EmbeddedError + '_ {
    move |source| EmbeddedError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A running private PostgreSQL server; stopped on [`EmbeddedPostgres::stop`] or drop.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    data_dir: PathBuf,
    socket_dir: PathBuf,
    /// The server's PID (a restarted server has a new one).
    pid: Arc<AtomicI32>,
    /// How this process hears that the server exited; `None` for a server
    /// another Lectern runs, which this one never stops.
    watch: Option<Watch>,
}

#[derive(Debug)]
enum Watch {
    /// The server's exit status (in a mutex only so that the server can be shared).
    Exited(Mutex<mpsc::Receiver<ExitStatus>>, Launcher),
    /// A supervising thread starts the server again when it dies, until
    /// `stopping`; it says `done` once the server is down for good.
    Supervised {
        stopping: Arc<AtomicBool>,
        done: Mutex<mpsc::Receiver<()>>,
        restarts: Arc<AtomicU64>,
    },
}

/// What it takes to start this data directory's server.
#[derive(Debug, Clone)]
struct Launcher {
    postgres: PathBuf,
    user: Option<User>,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
}

struct Binaries {
    initdb: PathBuf,
    postgres: PathBuf,
}

impl Binaries {
    fn find() -> Result<Binaries, EmbeddedError> {
        find_programs(&["initdb", "postgres"])
            .map(|dir| Binaries {
                initdb: dir.join("initdb"),
                postgres: dir.join("postgres"),
            })
            .ok_or(EmbeddedError::BinariesMissing)
    }
}

/// The first directory holding every one of `programs`: on PATH, then under
/// /usr/lib/postgresql/*/bin, newest major version first.
pub fn find_programs(programs: &[&str]) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut versioned: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| dirs.flatten().map(|d| d.path().join("bin")).collect())
        .unwrap_or_default();
    // Newest major version first: "15" sorts after "9" only numerically.
    versioned.sort_by_key(|p| {
        std::cmp::Reverse(
            p.parent()
                .and_then(|v| v.file_name())
                .and_then(|v| v.to_str())
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0),
        )
    });
    on_path
        .into_iter()
        .chain(versioned)
        .find(|dir| programs.iter().all(|program| dir.join(program).is_file()))
}

/// The system user the server runs as: `postgres` when we are root, else ourselves.
fn server_user() -> Result<Option<User>, EmbeddedError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    match User::from_name("postgres") {
        Ok(Some(user)) => Ok(Some(user)),
        _ => Err(EmbeddedError::NoPostgresUser),
    }
}

fn as_server_user(command: &mut Command, user: &Option<User>) {
    if let Some(user) = user {
        command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
}

impl EmbeddedPostgres {
    /// Initialises `data_dir` on first use, then starts the server and waits
    /// until it accepts connections. `log_file` receives the server's output.
    pub fn start(data_dir: &Path, log_file: &Path) -> Result<EmbeddedPostgres, EmbeddedError> {
        let binaries = Binaries::find()?;
        let user = server_user()?;
        let data_dir = absolute(data_dir)?;
        prepare_data_dir(&data_dir, &binaries, &user)?;
        let socket_dir = socket_dir_for(&data_dir);
        if socket_dir != data_dir {
            fs::create_dir_all(&socket_dir).map_err(io_error(&socket_dir))?;
            chown_to(&socket_dir, &user)?;
        }
        // Another Lectern (`serve`, while this is `content import`, say)
        // already runs this data directory's server: use it, never stop it.
        if let Some(pid) = running_server(&data_dir) {
            return Ok(EmbeddedPostgres {
                data_dir,
                socket_dir,
                pid: Arc::new(AtomicI32::new(pid.as_raw())),
                watch: None,
            });
        }
        let launcher = Launcher {
            postgres: binaries.postgres,
            user,
            data_dir: data_dir.clone(),
            socket_dir: socket_dir.clone(),
            log_file: log_file.to_owned(),
        };
        let pid = Arc::new(AtomicI32::new(0));
        let exited = launcher.launch(&pid)?;
        Ok(EmbeddedPostgres {
            data_dir,
            socket_dir,
            pid,
            watch: Some(Watch::Exited(Mutex::new(exited), launcher)),
        })
    }

    /// From now on, a server that dies is started again, after a wait that
    /// doubles with each failed start (from 0.25 s to 30 s), and each
    /// restart is logged; the connection pools reconnect by themselves. For
    /// `lectern serve`; one-off commands do without.
    pub fn supervise(&mut self, log: Logger) {
        let Some(Watch::Exited(exited, launcher)) = self.watch.take() else {
            return;
        };
        let mut exited = exited.into_inner().unwrap_or_else(PoisonError::into_inner);
        let stopping = Arc::new(AtomicBool::new(false));
        let restarts = Arc::new(AtomicU64::new(0));
        let (done_tx, done) = mpsc::channel();
        let (pid, stop, count) = (
            Arc::clone(&self.pid),
            Arc::clone(&stopping),
            Arc::clone(&restarts),
        );
        let thread_log = log.clone();
        let supervisor = thread::Builder::new()
            .name("postgres-supervisor".into())
            .spawn(move || {
                let log = thread_log;
                loop {
                    let status = exited.recv().ok();
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let restarts = count.fetch_add(1, Ordering::Relaxed) + 1;
                    warn!(log, "the embedded PostgreSQL exited: starting it again";
                        "status" => status.map(|s| s.to_string()).unwrap_or_default(), "restarts" => restarts);
                    let mut wait = FIRST_RESTART_WAIT;
                    loop {
                        thread::sleep(wait);
                        if stop.load(Ordering::Acquire) {
                            let _ = done_tx.send(());
                            return;
                        }
                        match launcher.launch(&pid) {
                            Ok(again) => {
                                info!(log, "embedded PostgreSQL started again";
                                    "pid" => pid.load(Ordering::Relaxed), "restarts" => restarts);
                                exited = again;
                                break;
                            }
                            Err(e) => {
                                error!(log, "the embedded PostgreSQL did not start again";
                                    "error" => %e, "next_try_in_ms" => (wait * 2).min(MAX_RESTART_WAIT).as_millis() as u64);
                                wait = (wait * 2).min(MAX_RESTART_WAIT);
                            }
                        }
                    }
                }
                let _ = done_tx.send(());
            });
        match supervisor {
            Ok(_) => {
                self.watch = Some(Watch::Supervised {
                    stopping,
                    done: Mutex::new(done),
                    restarts,
                })
            }
            Err(e) => error!(log, "cannot supervise the embedded PostgreSQL"; "error" => %e),
        }
    }

    /// How often a supervised server was started again.
    pub fn restarts(&self) -> u64 {
        match &self.watch {
            Some(Watch::Supervised { restarts, .. }) => restarts.load(Ordering::Relaxed),
            _ => 0,
        }
    }

    /// Connection settings for `database` on this server (superuser, socket).
    pub fn config(&self, database: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&self.socket_dir)
            .port(PORT)
            .user(SUPERUSER)
            .dbname(database)
            .application_name("lectern");
        config
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn pid(&self) -> u32 {
        self.pid.load(Ordering::Relaxed).unsigned_abs()
    }

    /// Whether this process started the server (and so stops it), rather
    /// than attaching to one another Lectern runs.
    pub fn is_owned(&self) -> bool {
        self.watch.is_some()
    }

    /// Fast shutdown (clients disconnected, no recovery on next start), then
    /// immediate shutdown if that takes too long. A server this process only
    /// attached to is left running.
    pub fn stop(&mut self) {
        let signals = [Signal::SIGINT, Signal::SIGQUIT, Signal::SIGKILL];
        match self.watch.take() {
            None => {}
            Some(Watch::Exited(exited, _)) => {
                let exited = exited.into_inner().unwrap_or_else(PoisonError::into_inner);
                for signal in signals {
                    if kill(Pid::from_raw(self.pid.load(Ordering::Acquire)), signal).is_err() {
                        return;
                    }
                    if exited.recv_timeout(STOP_TIMEOUT).is_ok() {
                        return;
                    }
                }
            }
            Some(Watch::Supervised { stopping, done, .. }) => {
                stopping.store(true, Ordering::Release);
                let done = done.into_inner().unwrap_or_else(PoisonError::into_inner);
                for signal in signals {
                    // The PID is read each time: a restart may have changed it.
                    let _ = kill(Pid::from_raw(self.pid.load(Ordering::Acquire)), signal);
                    if done.recv_timeout(STOP_TIMEOUT).is_ok() {
                        return;
                    }
                }
            }
        }
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Launcher {
    /// Starts the server (its PID goes to `pid` at once, for a stop that
    /// comes meanwhile) and waits until it accepts connections; answers how
    /// this process will hear that it exited.
    fn launch(&self, pid: &AtomicI32) -> Result<mpsc::Receiver<ExitStatus>, EmbeddedError> {
        clear_stale_lock_files(&self.data_dir, &self.socket_dir);
        if let Some(parent) = self.log_file.parent() {
            fs::create_dir_all(parent).map_err(io_error(parent))?;
        }
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&self.log_file)
            .map_err(io_error(&self.log_file))?;
        let log_err = log.try_clone().map_err(io_error(&self.log_file))?;

        let mut command = Command::new(&self.postgres);
        command
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-p")
            .arg(PORT.to_string())
            .args(["-c", "listen_addresses="])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.socket_dir.display()))
            .args(["-c", "unix_socket_permissions=0770"])
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0);
        as_server_user(&mut command, &self.user);
        die_with_parent(&mut command);

        let (spawned, exited) = spawn_watched(command)?;
        pid.store(spawned.as_raw(), Ordering::Release);
        if let Err(e) = self.wait_until_ready(&exited) {
            // Not ready: stop it, as `stop` would.
            for signal in [Signal::SIGINT, Signal::SIGQUIT, Signal::SIGKILL] {
                if kill(spawned, signal).is_err() || exited.recv_timeout(STOP_TIMEOUT).is_ok() {
                    break;
                }
            }
            return Err(e);
        }
        Ok(exited)
    }

    fn wait_until_ready(&self, exited: &mpsc::Receiver<ExitStatus>) -> Result<(), EmbeddedError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let pid_file = self.data_dir.join("postmaster.pid");
        loop {
            if let Ok(status) = exited.try_recv() {
                return Err(EmbeddedError::Start(format!(
                    "the server exited ({status}); its log {} ends with: {}",
                    self.log_file.display(),
                    tail(&self.log_file, 600)
                )));
            }
            // postmaster.pid's eighth line says "ready" once connections are accepted.
            let ready = fs::read_to_string(&pid_file)
                .map(|s| s.lines().nth(7).is_some_and(|l| l.trim() == "ready"))
                .unwrap_or(false);
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(EmbeddedError::Start(format!(
                    "not ready after {} s; see {}",
                    READY_TIMEOUT.as_secs(),
                    self.log_file.display()
                )));
            }
            thread::sleep(Duration::from_millis(25));
        }
    }
}

/// Spawns the server from a thread that waits for it: `PR_SET_PDEATHSIG`
/// fires when the spawning *thread* ends, so that thread must live as long as
/// the server does.
fn spawn_watched(mut command: Command) -> Result<(Pid, mpsc::Receiver<ExitStatus>), EmbeddedError> {
    let (spawned_tx, spawned_rx) = mpsc::channel();
    let (exited_tx, exited_rx) = mpsc::channel();
    thread::Builder::new()
        .name("postgres-watch".into())
        .spawn(move || match command.spawn() {
            Ok(mut child) => {
                let _ = spawned_tx.send(Ok(child.id()));
                if let Ok(status) = child.wait() {
                    let _ = exited_tx.send(status);
                }
            }
            Err(e) => {
                let _ = spawned_tx.send(Err(e));
            }
        })
        .map_err(|e| EmbeddedError::Start(format!("cannot start a thread: {e}")))?;
    let pid = spawned_rx
        .recv()
        .map_err(|_| EmbeddedError::Start("the spawning thread died".into()))?
        .map_err(|e| EmbeddedError::Start(format!("cannot run postgres: {e}")))?;
    Ok((Pid::from_raw(pid as i32), exited_rx))
}

#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    // SAFETY: runs in the forked child before exec and calls only prctl(2),
    // which is async-signal-safe. std has already dropped privileges here,
    // and a change of credentials would have cleared the death signal.
    unsafe {
        command.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGINT).map_err(std::io::Error::from));
    }
}

fn absolute(path: &Path) -> Result<PathBuf, EmbeddedError> {
    fs::create_dir_all(path).map_err(io_error(path))?;
    fs::canonicalize(path).map_err(io_error(path))
}

fn chown_to(path: &Path, user: &Option<User>) -> Result<(), EmbeddedError> {
    if let Some(user) = user {
        nix::unistd::chown(path, Some(user.uid), Some(user.gid)).map_err(|e| EmbeddedError::Io {
            path: path.to_owned(),
            source: e.into(),
        })?;
    }
    Ok(())
}

fn prepare_data_dir(data_dir: &Path, binaries: &Binaries, user: &Option<User>) -> Result<(), EmbeddedError> {
    if data_dir.join("PG_VERSION").is_file() {
        return Ok(());
    }
    let empty = fs::read_dir(data_dir)
        .map_err(io_error(data_dir))?
        .next()
        .is_none();
    if !empty {
        return Err(EmbeddedError::NotADataDirectory(data_dir.to_owned()));
    }
    fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700)).map_err(io_error(data_dir))?;
    chown_to(data_dir, user)?;
    let mut command = Command::new(&binaries.initdb);
    command
        .arg("-D")
        .arg(data_dir)
        .args([
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-instructions",
        ])
        .env("LC_ALL", "C")
        .stdin(Stdio::null());
    as_server_user(&mut command, user);
    let output = command.output().map_err(|e| EmbeddedError::Initdb {
        dir: data_dir.to_owned(),
        output: e.to_string(),
    })?;
    if !output.status.success() {
        let mut text = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if text.contains("Permission denied") && user.is_some() {
            text.push_str(
                " (the postgres user must be able to reach this directory: \
                 every parent needs o+x, or set server.data_dir elsewhere)",
            );
        }
        // Leave no half-initialised directory behind for the next start.
        let _ = clear_dir(data_dir);
        return Err(EmbeddedError::Initdb {
            dir: data_dir.to_owned(),
            output: text,
        });
    }
    Ok(())
}

fn clear_dir(dir: &Path) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            fs::remove_dir_all(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// The socket lives in the data directory unless that path is too long for
/// a Unix socket; then in a directory under /tmp named after the data directory.
fn socket_dir_for(data_dir: &Path) -> PathBuf {
    let socket = data_dir.join(format!(".s.PGSQL.{PORT}"));
    if socket.as_os_str().len() <= MAX_SOCKET_PATH {
        return data_dir.to_owned();
    }
    let digest = Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
    std::env::temp_dir().join(format!("lectern-pg-{}", &hex::encode(digest)[..12]))
}

/// The PID of a live, ready server of this data directory, if one runs.
fn running_server(data_dir: &Path) -> Option<Pid> {
    let pid_file = fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let mut lines = pid_file.lines();
    let pid = lines.next()?.trim().parse::<i32>().ok()?;
    let ready = lines.nth(6).is_some_and(|l| l.trim() == "ready");
    (ready && is_our_postgres(pid, data_dir)).then(|| Pid::from_raw(pid))
}

/// A server that was killed leaves `postmaster.pid` (and the socket's lock
/// file) behind. PostgreSQL ignores them when their PID is dead, but refuses
/// to start when the PID now belongs to another process; so when no server
/// of this data directory runs, they go.
fn clear_stale_lock_files(data_dir: &Path, socket_dir: &Path) {
    let pid_file = data_dir.join("postmaster.pid");
    let socket_lock = socket_dir.join(format!(".s.PGSQL.{PORT}.lock"));
    let Some(pid) = fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
    else {
        return;
    };
    if is_our_postgres(pid, data_dir) {
        // Starting up or shutting down: let it finish rather than race it.
        let deadline = Instant::now() + STOP_TIMEOUT;
        while kill(Pid::from_raw(pid), None).is_ok() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = fs::remove_file(pid_file);
    let _ = fs::remove_file(socket_lock);
}

fn is_our_postgres(pid: i32, data_dir: &Path) -> bool {
    let mut cmdline = Vec::new();
    let readable = fs::File::open(format!("/proc/{pid}/cmdline"))
        .and_then(|mut f| f.read_to_end(&mut cmdline))
        .is_ok();
    if !readable {
        return false;
    }
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let is_postgres = args.first().is_some_and(|a| a.ends_with(b"postgres"));
    let data = data_dir.as_os_str().as_encoded_bytes();
    is_postgres && args.contains(&data)
}

fn tail(path: &Path, bytes: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let start = text.len().saturating_sub(bytes);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    text[start..].trim().replace('\n', " | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_data_dirs_hold_their_socket() {
        let dir = Path::new("/srv/lectern/var/postgres");
        assert_eq!(socket_dir_for(dir), dir);
    }

    #[test]
    fn long_data_dirs_get_a_socket_dir_under_tmp() {
        let dir = PathBuf::from(format!("/srv/{}/postgres", "x".repeat(120)));
        let socket = socket_dir_for(&dir);
        assert!(socket.starts_with(std::env::temp_dir()));
        assert_eq!(socket, socket_dir_for(&dir), "stable across runs");
    }

    #[test]
    fn a_pid_file_naming_a_dead_process_is_removed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pid_file = dir.path().join("postmaster.pid");
        // PID 0 is never a process we can signal; i32::MAX is never allocated.
        fs::write(&pid_file, format!("{}\n{}\n", i32::MAX, dir.path().display())).expect("write");
        clear_stale_lock_files(dir.path(), dir.path());
        assert!(!pid_file.exists());
    }

    #[test]
    fn a_pid_file_naming_an_unrelated_live_process_is_removed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pid_file = dir.path().join("postmaster.pid");
        fs::write(&pid_file, format!("{}\n", std::process::id())).expect("write");
        clear_stale_lock_files(dir.path(), dir.path());
        assert!(!pid_file.exists());
        assert!(kill(Pid::this(), None).is_ok(), "we were not signalled");
    }
}
