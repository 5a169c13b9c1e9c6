//! Logs with slog: JSON lines to a file that SIGHUP reopens (for logrotate),
//! and human-readable lines on the terminal in development. Writing happens
//! on slog-async's thread, never on an HTTP worker, into a buffer that is
//! flushed every 100 ms and at exit: one write per request would cost a busy
//! server a fifth of its core.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use slog::{o, Drain, Level, Logger};

use crate::config::{LogLevel, Settings};

const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// The process's logger; dropping it writes what is still queued.
pub struct Telemetry {
    pub log: Logger,
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
    let json = slog_json::Json::new(file.clone())
        .add_default_keys()
        .set_newlines(true)
        .build()
        .fuse();
    let level = slog_level(settings.log.level);
    let drain: Box<dyn Drain<Ok = (), Err = slog::Never> + Send> = if settings.log.terminal {
        let terminal = slog_term::FullFormat::new(slog_term::TermDecorator::new().stderr().build())
            .build()
            .fuse();
        Box::new(slog::Duplicate::new(json, terminal).fuse())
    } else {
        Box::new(json)
    };
    let (drain, guard) = slog_async::Async::new(drain.filter_level(level).fuse())
        .chan_size(16_384)
        .overflow_strategy(slog_async::OverflowStrategy::DropAndReport)
        .thread_name("lectern-log".into())
        .build_with_guard();
    Ok(Telemetry {
        log: Logger::root(drain.fuse(), o!()),
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
                let _ = file.clone().flush();
            }
        })
        .map(|_| ())
}

/// The log file, shared by the writer thread and the flusher.
#[derive(Clone)]
struct SharedFile(Arc<Mutex<ReopeningFile>>);

impl Write for SharedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).flush()
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
