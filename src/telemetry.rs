//! Logs with slog: JSON lines to a file that SIGHUP reopens (for logrotate),
//! and human-readable lines on the terminal in development. Writing happens
//! on slog-async's thread, never on an HTTP worker.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use slog::{o, Drain, Level, Logger};

use crate::config::{LogLevel, Settings};

/// The process's logger; dropping it writes what is still queued.
pub struct Telemetry {
    pub log: Logger,
    reopen: Arc<AtomicBool>,
    _flush_on_drop: slog_async::AsyncGuard,
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
    let file = ReopeningFile::open(path, Arc::clone(&reopen))?;
    let json = slog_json::Json::new(file)
        .add_default_keys()
        .set_newlines(true)
        // One write per line (the buffer gathers the line's pieces), so that
        // `tail -f` and a crash see every line.
        .set_flush(true)
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
        _flush_on_drop: guard,
    })
}

/// A log file that is reopened at its path when asked, so that logrotate can
/// move the old one away.
struct ReopeningFile {
    path: PathBuf,
    file: BufWriter<File>,
    reopen: Arc<AtomicBool>,
}

impl ReopeningFile {
    fn open(path: PathBuf, reopen: Arc<AtomicBool>) -> io::Result<ReopeningFile> {
        let file = BufWriter::new(open_append(&path)?);
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
                self.file = BufWriter::new(file);
            }
        }
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}
