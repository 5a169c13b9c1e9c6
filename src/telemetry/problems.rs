//! The newest warnings and errors in the log file, for `/admin/system`:
//! read from the file's tail only (a bounded number of bytes), so that a
//! large log costs the page no more than a small one.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use serde_json::Value;

/// One line of the log at WARN or above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// As the line has it (RFC 3339).
    pub at: String,
    /// `WARN`, `ERRO` or `CRIT`, as slog writes them.
    pub level: String,
    pub message: String,
    /// The line's other values, `key: value` apart by `; ` (`error`,
    /// `path`, `actor` …), in the order of their keys.
    pub detail: String,
    pub request_id: Option<String>,
}

/// The newest `max` lines at WARN or above among the last `tail_bytes` of
/// the log file at `path`, newest first. A file that does not exist has none.
pub fn newest_problems(path: &Path, tail_bytes: u64, max: usize) -> io::Result<Vec<Problem>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let length = file.metadata()?.len();
    let start = length.saturating_sub(tail_bytes);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::with_capacity(usize::try_from(length - start).unwrap_or(0));
    file.take(tail_bytes).read_to_end(&mut tail)?;
    let mut lines = tail.split(|&b| b == b'\n');
    if start > 0 {
        // Begun mid-line: that line is not whole.
        lines.next();
    }
    let mut problems: Vec<Problem> = lines.filter_map(problem).collect();
    problems.reverse();
    problems.truncate(max);
    Ok(problems)
}

/// The line as a problem, if it is a JSON line at WARN or above.
fn problem(line: &[u8]) -> Option<Problem> {
    // A cheap test first: most lines are access lines at INFO.
    let serious = [&b"\"WARN\""[..], b"\"ERRO\"", b"\"CRIT\""];
    if !serious
        .iter()
        .any(|level| memchr::memmem::find(line, level).is_some())
    {
        return None;
    }
    let Value::Object(mut line) = serde_json::from_slice(line).ok()? else {
        return None;
    };
    let mut text = |key: &str| match line.remove(key) {
        Some(Value::String(text)) => Some(text),
        _ => None,
    };
    let level = text("level").filter(|l| matches!(l.as_str(), "WARN" | "ERRO" | "CRIT"))?;
    let (at, message, request_id) = (
        text("ts").unwrap_or_default(),
        text("msg").unwrap_or_default(),
        text("request_id"),
    );
    let detail = line
        .iter()
        .map(|(key, value)| match value {
            Value::String(text) => format!("{key}: {text}"),
            other => format!("{key}: {other}"),
        })
        .collect::<Vec<_>>()
        .join("; ");
    Some(Problem {
        at,
        level,
        message,
        detail,
        request_id,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn only_whole_lines_at_warn_or_above_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lectern.log");
        let mut file = File::create(&path).unwrap();
        let filler = format!(
            "{{\"msg\":\"request\",\"level\":\"WARN\",\"ts\":\"t0\",\"path\":\"{}\"}}\n",
            "x".repeat(200)
        );
        file.write_all(filler.as_bytes()).unwrap();
        let lines = [
            r#"{"msg":"request","level":"INFO","ts":"t1","request_id":"a"}"#,
            r#"{"msg":"actor restarted","level":"WARN","ts":"t2"}"#,
            r#"not json "WARN""#,
            r#"{"msg":"request failed","level":"ERRO","ts":"t3","request_id":"b","error":"no database"}"#,
        ];
        for line in lines {
            writeln!(file, "{line}").unwrap();
        }
        drop(file);
        let tail = u64::try_from(lines.iter().map(|l| l.len() + 1).sum::<usize>() + 10).unwrap();
        let problems = newest_problems(&path, tail, 10).unwrap();
        let seen: Vec<(&str, &str, Option<&str>)> = problems
            .iter()
            .map(|p| (p.at.as_str(), p.level.as_str(), p.request_id.as_deref()))
            .collect();
        assert_eq!(seen, [("t3", "ERRO", Some("b")), ("t2", "WARN", None)]);
        assert_eq!(problems[0].detail, "error: no database");
        assert_eq!(problems[1].detail, "");
        assert_eq!(newest_problems(&path, 1 << 20, 1).unwrap().len(), 1);
        assert!(newest_problems(&dir.path().join("none.log"), 1024, 10)
            .unwrap()
            .is_empty());
    }
}
