//! Logs: JSON lines to a file that SIGHUP reopens (for logrotate), and
//! human-readable lines on the terminal in development. Events go through
//! slog (its own thread formats and writes them); the access log, one line
//! per request, is appended by the HTTP worker straight into the file's
//! buffer, because waking slog's thread for every request cost a pinned core
//! a quarter of its throughput. The buffer is written every 100 ms and at exit.
//! [`problems`] reads the file's newest warnings and errors back.

pub mod problems;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

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
#[derive(Debug)]
pub struct AccessLine<'a> {
    /// Plain ASCII: the middleware keeps or makes no other id.
    pub request_id: &'a [u8],
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub bytes: u64,
    pub latency_us: u64,
    /// hit, miss or bypass from the page cache; `-` where it was not asked.
    pub cache: &'static str,
    pub user_id: Option<i64>,
}

impl AccessLine<'_> {
    /// The line as JSON, in the shape of slog's lines (`msg`, `level`,
    /// `ts`, then the fields), written by hand: a serializer and a date
    /// formatter per request cost a pinned core measurable throughput.
    fn write_json(&self, out: &mut Vec<u8>, now: SystemTime) {
        let mut number = itoa::Buffer::new();
        out.extend_from_slice(b"{\"msg\":\"request\",\"level\":\"INFO\",\"ts\":\"");
        write_timestamp(out, now);
        // The request id and the method are plain ASCII tokens (the
        // middleware keeps no other id; actix parses no other method).
        out.extend_from_slice(b"\",\"request_id\":\"");
        out.extend_from_slice(self.request_id);
        out.extend_from_slice(b"\",\"method\":\"");
        out.extend_from_slice(self.method.as_bytes());
        out.extend_from_slice(b"\",\"path\":");
        write_json_string(out, self.path);
        out.extend_from_slice(b",\"status\":");
        out.extend_from_slice(number.format(self.status).as_bytes());
        out.extend_from_slice(b",\"bytes\":");
        out.extend_from_slice(number.format(self.bytes).as_bytes());
        out.extend_from_slice(b",\"latency_us\":");
        out.extend_from_slice(number.format(self.latency_us).as_bytes());
        // The cache verdict is one of a few words of Lectern's own.
        out.extend_from_slice(b",\"cache\":\"");
        out.extend_from_slice(self.cache.as_bytes());
        out.extend_from_slice(b"\",\"user_id\":\"");
        match self.user_id {
            Some(id) => out.extend_from_slice(number.format(id).as_bytes()),
            None => out.push(b'-'),
        }
        out.extend_from_slice(b"\"}\n");
    }
}

/// A JSON string: quotes, backslashes and control characters escaped; the
/// runs between them copied whole.
fn write_json_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let bytes = text.as_bytes();
    if !needs_escaping(bytes) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let escaped: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0..=0x1f | 0x7f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escaped.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 15)],
            ]);
        } else {
            out.extend_from_slice(escaped);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Whether `bytes` hold a quote, a backslash or a control character: one
/// pass without an early exit or branches, which the compiler turns into
/// vector compares 16 bytes at a time (a path rarely holds any, and the
/// log writes one per request).
fn needs_escaping(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |any, &b| {
        any | u8::from(b < 0x20) | u8::from(b == b'"') | u8::from(b == b'\\') | u8::from(b == 0x7f)
    }) != 0
}

/// `now` as RFC 3339 in UTC with microseconds, e.g. `2026-11-29T08:35:12.123456Z`.
/// The date and time to the second are formatted once a second per thread.
fn write_timestamp(out: &mut Vec<u8>, now: SystemTime) {
    thread_local! {
        static SECOND: std::cell::Cell<(u64, [u8; 20])> = const { std::cell::Cell::new((u64::MAX, [0; 20])) };
    }
    let since_epoch = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (cached, mut prefix) = SECOND.get();
    if cached != secs {
        let (days, second_of_day) = (secs / 86_400, secs % 86_400);
        let (year, month, day) = civil_from_days(days);
        let mut text = Vec::with_capacity(20);
        let _ = write!(
            text,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.",
            second_of_day / 3600,
            second_of_day / 60 % 60,
            second_of_day % 60
        );
        match <[u8; 20]>::try_from(text.as_slice()) {
            Ok(text) => {
                prefix = text;
                SECOND.set((secs, prefix));
            }
            // A year past 9999: not kept, written as it is.
            Err(_) => prefix.fill(0),
        }
        if prefix[0] == 0 {
            out.extend_from_slice(&text);
        }
    }
    if prefix[0] != 0 {
        out.extend_from_slice(&prefix);
    }
    let micros = since_epoch.subsec_micros();
    let mut digits = [b'0'; 6];
    let mut rest = micros;
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.extend_from_slice(&digits);
    out.push(b'Z');
}

/// The calendar date `days` after 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Writes access lines in the same JSON shape as slog's lines (`msg`,
/// `level`, `ts`, then the fields), without waking any thread.
#[derive(Clone)]
pub struct AccessLog {
    file: Option<SharedFile>,
    terminal: Option<Logger>,
}

impl AccessLog {
    /// Logs `line`, of a request answered at `now`.
    pub fn record(&self, line: &AccessLine<'_>, now: SystemTime) {
        if let Some(file) = &self.file {
            file.append_with(|buffer| line.write_json(buffer, now));
        }
        if let Some(terminal) = &self.terminal {
            slog::info!(terminal, "{} {} {} {}µs", line.method, line.path, line.status, line.latency_us;
                "request_id" => %String::from_utf8_lossy(line.request_id), "cache" => line.cache,
                "user_id" => line.user_id);
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
    /// Appends what `write` puts in the buffer: one or more whole lines.
    fn append_with(&self, write: impl FnOnce(&mut Vec<u8>)) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .append_with(write);
    }

    fn append(&self, line: &[u8]) {
        self.append_with(|buffer| buffer.extend_from_slice(line));
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

/// What the buffer holds before it is written without waiting for the flusher.
const BUFFER: usize = 64 * 1024;

/// A log file that is reopened at its path when asked, so that logrotate can
/// move the old one away. Lines are written straight into its buffer (an
/// access line is not made elsewhere and copied in).
struct ReopeningFile {
    path: PathBuf,
    file: File,
    buffer: Vec<u8>,
    reopen: Arc<AtomicBool>,
}

impl ReopeningFile {
    fn open(path: PathBuf, reopen: Arc<AtomicBool>) -> io::Result<ReopeningFile> {
        Ok(ReopeningFile {
            file: open_append(&path)?,
            path,
            // Room for the line that takes it past BUFFER, so that it is
            // not grown then.
            buffer: Vec::with_capacity(BUFFER + 4096),
            reopen,
        })
    }

    fn append_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        // Read before it is swapped: a swap is a locked write on every line.
        if self.reopen.load(Ordering::Relaxed) && self.reopen.swap(false, Ordering::AcqRel) {
            // The lines before the signal go to the old file. If the new
            // one cannot be opened, keep writing to the old one.
            let _ = self.flush();
            if let Ok(file) = open_append(&self.path) {
                self.file = file;
            }
        }
        write(&mut self.buffer);
        if self.buffer.len() >= BUFFER {
            // A full disk must not fail a request: the lines are lost,
            // nothing else.
            let _ = self.flush();
        }
    }

    /// Writes the buffer to the file. It is emptied even when the write
    /// fails, so that a full disk cannot make it grow.
    fn flush(&mut self) -> io::Result<()> {
        let written = self.file.write_all(&self.buffer);
        self.buffer.clear();
        written
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", parent.display())))?;
    }
    // Readable by the owner and the group (the operator's), nobody else.
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_access_line_is_one_json_object_with_every_field() {
        let line = AccessLine {
            request_id: b"abc-1",
            method: "GET",
            path: "/odd/\"quoted\"\\path\u{1}/ü",
            status: 200,
            bytes: 5981,
            latency_us: 42,
            cache: "hit",
            user_id: Some(7),
        };
        let mut out = Vec::new();
        line.write_json(
            &mut out,
            SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_460_800_123_456),
        );
        assert_eq!(out.last(), Some(&b'\n'));
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json["msg"], "request");
        assert_eq!(json["level"], "INFO");
        assert_eq!(json["ts"], "2025-11-30T00:00:00.123456Z");
        assert_eq!(json["path"], line.path);
        assert_eq!(json["status"], 200);
        assert_eq!(json["bytes"], 5981);
        assert_eq!(json["cache"], "hit");
        assert_eq!(json["user_id"], "7");
        let mut anonymous = Vec::new();
        AccessLine {
            user_id: None,
            ..line
        }
        .write_json(&mut anonymous, SystemTime::now());
        let json: serde_json::Value = serde_json::from_slice(&anonymous).unwrap();
        assert_eq!(json["user_id"], "-");
    }

    #[test]
    fn escaping_is_needed_exactly_for_quotes_backslashes_and_controls() {
        for text in [
            "",
            "/episodes/ownership-and-borrowing",
            "/ü/€/😀/~!$&'()*+,;=:@",
            "1234567",
        ] {
            assert!(!needs_escaping(text.as_bytes()), "{text:?}");
        }
        for special in ['"', '\\', '\u{0}', '\n', '\u{1f}', '\u{7f}'] {
            for at in 0..20 {
                let mut text = "x".repeat(20);
                text.insert(at, special);
                assert!(needs_escaping(text.as_bytes()), "{special:?} at {at}");
            }
        }
        // Bytes just around the special ones do not count.
        for byte in [0x20u8, b'!', b'#', b'[', b']', 0x7e, 0x80, 0xff] {
            let text = [byte; 16];
            assert!(!needs_escaping(&text), "{byte:#x}");
        }
    }

    #[test]
    fn timestamps_agree_with_the_time_crate() {
        for secs in [0u64, 951_782_400, 1_709_164_800, 4_102_444_799, 2_000_000_000] {
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
            let mut ours = Vec::new();
            write_timestamp(&mut ours, now);
            let theirs = time::OffsetDateTime::from_unix_timestamp(secs as i64)
                .unwrap()
                .format(&time::macros::format_description!(
                    "[year]-[month]-[day]T[hour]:[minute]:[second].000000Z"
                ))
                .unwrap();
            assert_eq!(String::from_utf8(ours).unwrap(), theirs, "{secs}");
        }
    }
}
