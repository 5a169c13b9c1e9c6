//! Logs: JSON lines to a file that SIGHUP reopens (for logrotate), and
//! human-readable lines on the terminal in development. Events go through
//! slog (its own thread formats and writes them); the access log, one line
//! per request, is appended by the HTTP worker straight into the file's
//! buffer, because waking slog's thread for every request cost a pinned core
//! a quarter of its throughput. The buffer is written every 100 ms and at exit.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use slog::{o, Drain, Level, Logger};

use crate::config::{LogLevel, Settings};

const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// The process's logger; dropping it writes what is still queued.
pub struct Telemetry {
    pub log: Logger,
    access: AccessLog,
    reopen: Arc<AtomicBool>,
    file: SharedFile,
    stop_flushing: Arc<AtomicBool>,
    queue: Option<slog_async::AsyncGuard>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        // First the queue into the buffer, then the buffer into the file.
        drop(self.queue.take());
        self.stop_flushing.store(true, Ordering::Release);
        let _ = self.file.flush();
    }
}

/// Asks the log file writer to reopen its file before the next line.
#[derive(Clone)]
pub struct LogReopener(Arc<AtomicBool>);

impl LogReopener {
    pub fn reopen(&self) {
        self.0.store(true, Ordering::Release);
    }
}

impl Telemetry {
    pub fn reopener(&self) -> LogReopener {
        LogReopener(Arc::clone(&self.reopen))
    }

    pub fn access_log(&self) -> AccessLog {
        self.access.clone()
    }
}

/// One request, as the access log records it.
#[derive(Debug, Serialize)]
pub struct AccessLine<'a> {
    pub request_id: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub bytes: u64,
    pub latency_us: u64,
    /// hit, miss or bypass from the page cache; `-` where it was not asked.
    pub cache: &'a str,
    pub user_id: &'a str,
}

/// Writes access lines in the same JSON shape as slog's lines (`msg`,
/// `level`, `ts`, then the fields), without waking any thread.
#[derive(Clone)]
pub struct AccessLog {
    file: Option<SharedFile>,
    terminal: Option<Logger>,
}

impl AccessLog {
    pub fn record(&self, line: &AccessLine<'_>) {
        if let Some(file) = &self.file {
            #[derive(Serialize)]
            struct Json<'a> {
                msg: &'static str,
                level: &'static str,
                ts: String,
                #[serde(flatten)]
                line: &'a AccessLine<'a>,
            }
            let ts = time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            let mut text = serde_json::to_vec(&Json {
                msg: "request",
                level: "INFO",
                ts,
                line,
            })
            .unwrap_or_default();
            text.push(b'\n');
            file.append(&text);
        }
        if let Some(terminal) = &self.terminal {
            slog::info!(terminal, "{} {} {} {}µs", line.method, line.path, line.status, line.latency_us;
                "request_id" => line.request_id, "cache" => line.cache);
        }
    }
}

fn slog_level(level: LogLevel) -> Level {
    match level {
        LogLevel::Error => Level::Error,
        LogLevel::Warning => Level::Warning,
        LogLevel::Info => Level::Info,
        LogLevel::Debug => Level::Debug,
        LogLevel::Trace => Level::Trace,
    }
}

/// Opens the log file named by the configuration and builds the logger.
pub fn init(settings: &Settings) -> io::Result<Telemetry> {
    let path = settings.log_file();
    let reopen = Arc::new(AtomicBool::new(false));
    let file = SharedFile(Arc::new(Mutex::new(ReopeningFile::open(
        path,
        Arc::clone(&reopen),
    )?)));
    let stop_flushing = Arc::new(AtomicBool::new(false));
    spawn_flusher(file.clone(), Arc::clone(&stop_flushing))?;
    let json = slog_json::Json::new(WholeRecords {
        pending: Vec::new(),
        file: file.clone(),
    })
    .add_default_keys()
    .set_newlines(true)
    .build()
    .fuse();
    let level = slog_level(settings.log.level);
    let terminal_logger = || {
        let terminal = slog_term::FullFormat::new(slog_term::TermDecorator::new().stderr().build())
            .build()
            .fuse();
        let terminal = slog_async::Async::new(terminal.filter_level(level).fuse())
            .thread_name("lectern-term".into())
            .build();
        Logger::root(terminal.fuse(), o!())
    };
    let drain: Box<dyn Drain<Ok = (), Err = slog::Never> + Send> = if settings.log.terminal {
        let terminal = slog_term::FullFormat::new(slog_term::TermDecorator::new().stderr().build())
            .build()
            .fuse();
        Box::new(slog::Duplicate::new(json, terminal).fuse())
    } else {
        Box::new(json)
    };
    let access = AccessLog {
        file: Level::Info.is_at_least(level).then(|| file.clone()),
        terminal: settings.log.terminal.then(terminal_logger),
    };
    let (drain, guard) = slog_async::Async::new(drain.filter_level(level).fuse())
        .chan_size(16_384)
        .overflow_strategy(slog_async::OverflowStrategy::DropAndReport)
        .thread_name("lectern-log".into())
        .build_with_guard();
    Ok(Telemetry {
        log: Logger::root(drain.fuse(), o!()),
        access,
        reopen,
        file,
        stop_flushing,
        queue: Some(guard),
    })
}

fn spawn_flusher(file: SharedFile, stop: Arc<AtomicBool>) -> io::Result<()> {
    std::thread::Builder::new()
        .name("lectern-log-flush".into())
        .spawn(move || {
            while !stop.load(Ordering::Acquire) {
                std::thread::sleep(FLUSH_EVERY);
                let _ = file.flush();
            }
        })
        .map(|_| ())
}

/// The log file's buffer, shared by slog's thread, the HTTP workers (access
/// lines) and the flusher. Only whole lines go in, so lines never interleave.
#[derive(Clone)]
struct SharedFile(Arc<Mutex<ReopeningFile>>);

impl SharedFile {
    fn append(&self, line: &[u8]) {
        // A full disk must not fail a request: the line is lost, nothing else.
        let _ = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write_all(line);
    }

    fn flush(&self) -> io::Result<()> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).flush()
    }
}

/// slog-json writes a record in pieces; this hands it to the file whole.
struct WholeRecords {
    pending: Vec<u8>,
    file: SharedFile,
}

impl Write for WholeRecords {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if self.pending.ends_with(b"\n") {
            self.file.append(&self.pending);
            self.pending.clear();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

const BUFFER: usize = 64 * 1024;

/// A log file that is reopened at its path when asked, so that logrotate can
/// move the old one away.
struct ReopeningFile {
    path: PathBuf,
    file: BufWriter<File>,
    reopen: Arc<AtomicBool>,
}

impl ReopeningFile {
    fn open(path: PathBuf, reopen: Arc<AtomicBool>) -> io::Result<ReopeningFile> {
        let file = BufWriter::with_capacity(BUFFER, open_append(&path)?);
        Ok(ReopeningFile { path, file, reopen })
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", parent.display())))?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

impl Write for ReopeningFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.reopen.swap(false, Ordering::AcqRel) {
            self.file.flush()?;
            // If the new file cannot be opened, keep writing to the old one.
            if let Ok(file) = open_append(&self.path) {
                self.file = BufWriter::with_capacity(BUFFER, file);
            }
        }
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}
