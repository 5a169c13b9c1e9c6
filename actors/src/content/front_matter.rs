//! One content file read into a document the importer can write: its TOML
//! front matter checked (one set of keys, of which the file's kind, decided
//! by its folder, takes some) and its Markdown body compiled. Every problem
//! is reported with the file's path and line, all of them at once. The
//! exporter writes files here too, from the same front-matter struct.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::markdown::{compile_markdown, teaser_source, MarkdownError, MarkdownOptions};
use super::{Slug, MAX_SLUG_LEN, MAX_TAG_LEN};

/// One file to import: where it came from (for messages) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

/// What is wrong with one file, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub path: PathBuf,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
    }
}

/// What a file holds, decided by the folder it is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Series,
    Episode,
    Article,
}

impl FileKind {
    pub const ALL: [FileKind; 3] = [FileKind::Series, FileKind::Episode, FileKind::Article];

    /// The folder that holds files of this kind.
    pub fn folder(self) -> &'static str {
        match self {
            FileKind::Series => "series",
            FileKind::Episode => "episodes",
            FileKind::Article => "articles",
        }
    }

    /// The kind of the file at `path`, or the name of the folder that is no kind's.
    fn of(path: &Path) -> Result<FileKind, String> {
        let folder = path
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        FileKind::ALL
            .into_iter()
            .find(|kind| kind.folder() == folder)
            .ok_or_else(|| folder.to_owned())
    }

    /// The front-matter keys a file of this kind takes.
    fn keys(self) -> &'static [&'static str] {
        match self {
            FileKind::Series => &["title", "summary", "position"],
            FileKind::Episode => &[
                "title",
                "summary",
                "published_at",
                "draft",
                "tags",
                "number",
                "series",
                "position",
                "duration",
                "video",
                "poster",
                "access",
            ],
            FileKind::Article => &["title", "summary", "published_at", "draft", "tags"],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Access {
    Free,
    Premium,
}

impl Access {
    pub(crate) fn of(premium: bool) -> Access {
        if premium {
            Access::Premium
        } else {
            Access::Free
        }
    }
}

/// A date as a TOML string ("2026-03-14T09:00:00Z") or a bare TOML datetime.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub(crate) enum DateValue {
    Text(String),
    Toml(toml::value::Datetime),
}

impl TryFrom<OffsetDateTime> for DateValue {
    type Error = WriteError;

    /// The date as the writer puts it: RFC 3339 text in UTC (`…Z`).
    fn try_from(date: OffsetDateTime) -> Result<DateValue, WriteError> {
        let utc = date.to_offset(time::UtcOffset::UTC);
        Ok(DateValue::Text(utc.format(&Rfc3339)?))
    }
}

/// Every key a front matter may have, for every kind: one declaration that
/// the kinds share, which [`FileKind::keys`] narrows. It is one flat struct
/// rather than `#[serde(flatten)]`ed blocks because TOML cannot name the
/// line of a bad value inside a flattened block (toml-rs/toml#589).
///
/// The reader reads it and the writer ([`write_file`]) writes it: the
/// fields are in the order the writer puts the keys, and what equals the
/// default (no draft, no tags, an empty summary) is left out.
#[derive(Debug, Default, PartialEq, Deserialize, Serialize)]
pub(crate) struct FrontMatter {
    pub(crate) title: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) summary: String,
    pub(crate) number: Option<i32>,
    pub(crate) series: Option<String>,
    pub(crate) position: Option<i32>,
    pub(crate) duration: Option<String>,
    pub(crate) video: Option<String>,
    pub(crate) poster: Option<String>,
    pub(crate) access: Option<Access>,
    pub(crate) published_at: Option<DateValue>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) draft: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) tags: Vec<String>,
}

/// Why an item cannot be written as a file.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("its front matter is not TOML: {0}")]
    Toml(#[from] toml::ser::Error),
    /// RFC 3339 has four-digit years only.
    #[error("its date is not an RFC 3339 date: {0}")]
    Date(#[from] time::error::Format),
    /// TOML writes a text with line breaks over several lines; one of them
    /// `+++` would close the front matter there.
    #[error("its title or summary has a line `+++`, which would end the front matter early")]
    Fence,
}

/// The file that holds `front` and the Markdown `body`: what
/// [`parse_file`] reads back to the same values.
pub(crate) fn write_file(front: &FrontMatter, body: &str) -> Result<String, WriteError> {
    let toml = toml::to_string(front)?;
    if toml.lines().any(|line| line.trim_end() == FENCE) {
        return Err(WriteError::Fence);
    }
    Ok(format!("{FENCE}\n{toml}{FENCE}\n{body}"))
}

/// The line above and below the front matter.
const FENCE: &str = "+++";

/// When and under which tags an item is published; series have neither.
#[derive(Debug, Default)]
struct Publication {
    published_at: Option<OffsetDateTime>,
    draft: bool,
    tags: Vec<String>,
}

/// What every document has, checked and compiled.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Common {
    pub(crate) path: PathBuf,
    pub(crate) slug: Slug,
    pub(crate) title: String,
    pub(crate) summary: String,
    pub(crate) body_source: String,
    pub(crate) body_html: String,
    pub(crate) teaser_html: String,
    pub(crate) published_at: Option<OffsetDateTime>,
    /// Drafts are stored but never shown, whatever their date.
    pub(crate) draft: bool,
    pub(crate) tags: Vec<Slug>,
}

impl Common {
    pub(crate) fn status(&self) -> &'static str {
        if self.draft || self.published_at.is_none() {
            "draft"
        } else {
            "published"
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SeriesDoc {
    pub(crate) common: Common,
    pub(crate) position: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EpisodeDoc {
    pub(crate) common: Common,
    /// The notes' Markdown up to the teaser's end: all that search may read
    /// of a premium episode.
    pub(crate) teaser_source: String,
    pub(crate) number: i32,
    pub(crate) series: Option<(Slug, i32)>,
    pub(crate) series_line: usize,
    pub(crate) duration_secs: i32,
    pub(crate) video_url: String,
    pub(crate) poster_url: Option<String>,
    pub(crate) premium: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ArticleDoc {
    pub(crate) common: Common,
}

/// One file, read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Document {
    Series(SeriesDoc),
    Episode(EpisodeDoc),
    Article(ArticleDoc),
}

/// `MM:SS` or `H:MM:SS` in seconds.
pub fn parse_duration(text: &str) -> Option<i32> {
    let parts: Vec<&str> = text.split(':').collect();
    let numbers: Option<Vec<i32>> = parts
        .iter()
        .map(|p| {
            (!p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse().ok())
                .flatten()
        })
        .collect();
    match numbers?.as_slice() {
        [m, s] if *s < 60 => Some(m * 60 + s),
        [h, m, s] if *m < 60 && *s < 60 => Some(h * 3600 + m * 60 + s),
        _ => None,
    }
}

/// What an episode's `series` names when no such series exists.
pub(crate) fn no_such_series(series: &str) -> String {
    format!("there is no series {series:?} (in series/ or already imported)")
}

/// Splits `+++` front matter from the body: (front matter, body, body's first line).
fn split_front_matter(text: &str) -> Result<(&str, &str, usize), (usize, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split_inclusive('\n');
    let first = lines.next().unwrap_or("");
    if first.trim_end() != FENCE {
        return Err((
            1,
            "the file must start with front matter: a line `+++`, TOML, and another `+++`".into(),
        ));
    }
    let front_start = first.len();
    let mut offset = front_start;
    for (index, line) in lines.enumerate() {
        if line.trim_end() == FENCE {
            let body_start = offset + line.len();
            return Ok((&text[front_start..offset], &text[body_start..], index + 3));
        }
        offset += line.len();
    }
    Err((1, "the front matter is not closed by a line `+++`".into()))
}

/// Reads one file into its document, or says everything that is wrong with it.
pub(crate) fn parse_file(file: &SourceFile, options: MarkdownOptions) -> Result<Document, Vec<FileError>> {
    let (front, body, body_line) = split_front_matter(&file.text).map_err(|(line, message)| {
        vec![FileError {
            path: file.path.clone(),
            line,
            message,
        }]
    })?;
    let mut parser = Parser {
        file,
        front,
        body,
        body_line,
        options,
        errors: Vec::new(),
        bad_keys: Vec::new(),
    };
    let document = match FileKind::of(&file.path) {
        Ok(FileKind::Series) => parser.series(),
        Ok(FileKind::Episode) => parser.episode(),
        Ok(FileKind::Article) => parser.article(),
        Err(folder) => {
            parser.error(
                1,
                format!("files belong in series/, episodes/ or articles/, not {folder:?}"),
            );
            None
        }
    };
    match document {
        Some(document) if parser.errors.is_empty() => Ok(document),
        _ => Err(parser.errors),
    }
}

struct Parser<'a> {
    file: &'a SourceFile,
    front: &'a str,
    body: &'a str,
    /// The file line the body starts on.
    body_line: usize,
    options: MarkdownOptions,
    errors: Vec<FileError>,
    /// The keys whose values were bad, and left out.
    bad_keys: Vec<String>,
}

impl Parser<'_> {
    fn series(&mut self) -> Option<Document> {
        let front = self.front_matter(FileKind::Series)?;
        let title = self.required("title", front.title)?;
        let common = self.common(title, front.summary, Publication::default())?;
        Some(Document::Series(SeriesDoc {
            common,
            position: front.position.unwrap_or(0),
        }))
    }

    fn episode(&mut self) -> Option<Document> {
        let front = self.front_matter(FileKind::Episode)?;
        // Every check runs, so that a file's problems are reported together.
        let title = self.required("title", front.title);
        let number = self.required("number", front.number);
        let duration = self.required("duration", front.duration);
        let video = self.required("video", front.video);
        let access = self.required("access", front.access);
        let publication = self.publication(front.published_at, front.draft, front.tags);
        if number.is_some_and(|number| number <= 0) {
            let line = self.line_of("number");
            self.error(line, "`number` must be a positive integer");
        }
        let duration_secs = duration.and_then(|duration| {
            let secs = parse_duration(&duration);
            if secs.is_none() {
                let line = self.line_of("duration");
                self.error(
                    line,
                    format!("`duration` = {duration:?} must be MM:SS or H:MM:SS"),
                );
            }
            secs
        });
        if let Some(video) = &video {
            self.url("video", video);
        }
        if let Some(poster) = &front.poster {
            self.url("poster", poster);
        }
        let series_line = self.line_of("series");
        let series = match (front.series, front.position) {
            (Some(series), Some(position)) if position > 0 => match Slug::parse(&series) {
                Ok(slug) => Some((slug, position)),
                Err(_) => {
                    self.error(series_line, no_such_series(&series));
                    None
                }
            },
            (None, None) => None,
            (Some(_), None) => {
                self.error(series_line, "an episode in a series needs its `position` too");
                None
            }
            (None, Some(_)) => {
                let line = self.line_of("position");
                self.error(line, "`position` needs a `series`");
                None
            }
            (Some(_), Some(_)) => {
                let line = self.line_of("position");
                self.error(line, "`position` must be a positive integer");
                None
            }
        };
        let common = self.common(title?, front.summary, publication)?;
        let teaser_source = match teaser_source(self.body, self.options) {
            Ok(teaser) => teaser.to_owned(),
            Err(e) => {
                self.markdown_error(e);
                return None;
            }
        };
        Some(Document::Episode(EpisodeDoc {
            common,
            teaser_source,
            number: number?,
            series,
            series_line,
            duration_secs: duration_secs?,
            video_url: video?,
            poster_url: front.poster,
            premium: access? == Access::Premium,
        }))
    }

    fn article(&mut self) -> Option<Document> {
        let front = self.front_matter(FileKind::Article)?;
        let title = self.required("title", front.title);
        let publication = self.publication(front.published_at, front.draft, front.tags);
        let common = self.common(title?, front.summary, publication)?;
        Some(Document::Article(ArticleDoc { common }))
    }

    /// The front matter, with only the keys a file of `kind` takes. A bad
    /// value is reported and its key left out, and the rest is read again,
    /// so that every bad value of the file is reported at once; `None` only
    /// when the text is not TOML at all.
    fn front_matter(&mut self, kind: FileKind) -> Option<FrontMatter> {
        // The keys as written: the struct below cannot tell an absent key
        // from a default, nor see one it does not know.
        let keys = match toml::from_str::<toml::Table>(self.front) {
            Ok(keys) => keys,
            Err(e) => {
                let line = self.line_at(self.front, e.span());
                self.error(line, e.message().to_owned());
                return None;
            }
        };
        let expected = kind.keys();
        let mut refused: Vec<(usize, &str)> = keys
            .keys()
            .filter(|key| !expected.contains(&key.as_str()))
            .map(|key| (self.line_of(key), key.as_str()))
            .collect();
        refused.sort();
        for (line, key) in &refused {
            self.error(
                *line,
                format!(
                    "unknown field `{key}`, expected one of {}",
                    expected
                        .iter()
                        .map(|key| format!("`{key}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        let mut text = self.front.to_owned();
        loop {
            let e = match toml::from_str::<FrontMatter>(&text) {
                Ok(front) => return Some(front),
                Err(e) => e,
            };
            let line = self.line_at(&text, e.span());
            self.error(line, e.message().to_owned());
            // Blank the lines of the bad value (keeping the line numbers),
            // and read again if what is left is still TOML.
            let span = e.span()?;
            let start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
            let end = text[span.end..].find('\n').map_or(text.len(), |i| span.end + i);
            let bad = &text[start..end];
            if bad.trim().is_empty() {
                return None;
            }
            let key = bad.split('=').next().unwrap_or_default().trim().to_owned();
            let blank: String = bad.chars().map(|c| if c == '\n' { c } else { ' ' }).collect();
            text.replace_range(start..end, &blank);
            self.bad_keys.push(key);
            toml::from_str::<toml::Table>(&text).ok()?;
        }
    }

    /// The file line of a byte `span` of the front matter `text`.
    fn line_at(&self, text: &str, span: Option<std::ops::Range<usize>>) -> usize {
        span.map_or(1, |span| {
            text[..span.start.min(text.len())].matches('\n').count() + 2
        })
    }

    /// `value`, or an error that the front matter lacks `key` (unless its
    /// value was bad, which is reported already).
    fn required<T>(&mut self, key: &str, value: Option<T>) -> Option<T> {
        if value.is_none() && !self.bad_keys.iter().any(|bad| bad == key) {
            self.error(1, format!("missing field `{key}`"));
        }
        value
    }

    fn error(&mut self, line: usize, message: impl Into<String>) {
        self.errors.push(FileError {
            path: self.file.path.clone(),
            line,
            message: message.into(),
        });
    }

    /// The file line of `key = …` in the front matter, or the first line.
    fn line_of(&self, key: &str) -> usize {
        self.front
            .lines()
            .position(|l| {
                l.trim_start().starts_with(key)
                    && l[l.find(key).unwrap_or(0) + key.len()..]
                        .trim_start()
                        .starts_with('=')
            })
            .map_or(1, |i| i + 2)
    }

    fn publication(
        &mut self,
        published_at: Option<DateValue>,
        draft: bool,
        tags: Vec<String>,
    ) -> Publication {
        Publication {
            published_at: self.date(published_at, draft),
            draft,
            tags,
        }
    }

    fn date(&mut self, value: Option<DateValue>, draft: bool) -> Option<OffsetDateTime> {
        let text = match value {
            None if draft => return None,
            None => {
                self.error(1, "`published_at` is missing (or mark the file `draft = true`)");
                return None;
            }
            Some(DateValue::Text(text)) => text,
            Some(DateValue::Toml(date)) => date.to_string(),
        };
        match OffsetDateTime::parse(&text, &Rfc3339) {
            Ok(date) => Some(date),
            Err(_) => {
                let line = self.line_of("published_at");
                self.error(
                    line,
                    format!(
                        "`published_at` = {text:?} is not an RFC 3339 date, e.g. \"2026-03-14T09:00:00Z\""
                    ),
                );
                None
            }
        }
    }

    /// Checks what every kind shares and compiles the body.
    fn common(&mut self, title: String, summary: String, publication: Publication) -> Option<Common> {
        let Publication {
            published_at,
            draft,
            tags,
        } = publication;
        let stem = self
            .file
            .path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let slug = Slug::parse(stem);
        if slug.is_err() {
            self.error(1, format!("the file name {stem:?} is not a slug: use lower-case letters, digits and single hyphens, at most {MAX_SLUG_LEN} characters"));
        }
        if title.trim().is_empty() || title.chars().count() > 200 {
            let line = self.line_of("title");
            self.error(line, "`title` must have 1 to 200 characters");
        }
        if summary.chars().count() > 500 {
            let line = self.line_of("summary");
            self.error(line, "`summary` must have at most 500 characters");
        }
        let mut slugs = Vec::with_capacity(tags.len());
        for tag in &tags {
            match Slug::parse_tag(tag) {
                Ok(slug) => slugs.push(slug),
                Err(_) => {
                    let line = self.line_of("tags");
                    self.error(
                        line,
                        format!(
                            "the tag {tag:?} is not a slug (lower-case letters, digits, hyphens; at most {MAX_TAG_LEN})"
                        ),
                    );
                }
            }
        }
        let compiled = match compile_markdown(self.body, self.options) {
            Ok(compiled) => compiled,
            Err(e) => {
                self.markdown_error(e);
                return None;
            }
        };
        slugs.sort();
        slugs.dedup();
        Some(Common {
            path: self.file.path.clone(),
            slug: slug.ok()?,
            title: title.trim().to_owned(),
            summary: summary.trim().to_owned(),
            body_source: self.body.to_owned(),
            body_html: compiled.html,
            teaser_html: compiled.teaser_html,
            published_at,
            draft,
            tags: slugs,
        })
    }

    fn markdown_error(&mut self, error: MarkdownError) {
        match error {
            MarkdownError::Invalid { line, message } => self.error(self.body_line + line - 1, message),
            MarkdownError::TooDeep { line, depth, limit } => self.error(
                self.body_line + line - 1,
                format!("quotes and lists nest {depth} deep; the limit is {limit}"),
            ),
            e => self.error(self.body_line, e.to_string()),
        }
    }

    fn url(&mut self, key: &str, value: &str) {
        let ok = value.starts_with("https://")
            || value.starts_with("http://")
            || (value.starts_with('/') && !value.starts_with("//"));
        if !ok || value.chars().any(char::is_whitespace) {
            let line = self.line_of(key);
            self.error(
                line,
                format!("`{key}` must be an http(s) URL or a path starting with /"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::format_duration;
    use proptest::prelude::*;

    fn file(path: &str, text: &str) -> SourceFile {
        SourceFile {
            path: PathBuf::from(path),
            text: text.to_owned(),
        }
    }

    fn parse(path: &str, text: &str) -> Result<Document, Vec<FileError>> {
        parse_file(&file(path, text), MarkdownOptions::default())
    }

    fn errors(files: &[SourceFile]) -> Vec<String> {
        files
            .iter()
            .flat_map(|file| match parse_file(file, MarkdownOptions::default()) {
                Err(errors) => errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
                Ok(document) => panic!("expected errors, got {document:?}"),
            })
            .collect()
    }

    const EPISODE: &str = "+++\ntitle = \"Ownership\"\nnumber = 1\nduration = \"12:30\"\nvideo = \"https://v.example/1.mp4\"\naccess = \"free\"\npublished_at = \"2026-01-02T09:00:00Z\"\ntags = [\"rust\"]\n+++\nBody *here*.\n";

    #[test]
    fn a_valid_episode_parses_and_compiles() {
        let Ok(Document::Episode(episode)) = parse("c/episodes/ownership.md", EPISODE) else {
            panic!("valid");
        };
        assert_eq!(episode.common.slug.as_str(), "ownership");
        assert_eq!(episode.duration_secs, 750);
        assert_eq!(episode.common.body_html, "<p>Body <em>here</em>.</p>\n");
        assert_eq!(episode.common.tags, [Slug::parse_tag("rust").unwrap()]);
    }

    #[test]
    fn errors_name_the_file_and_the_line() {
        let bad_duration = EPISODE.replace("\"12:30\"", "\"12 minutes\"");
        let unknown_key = EPISODE.replace("access = \"free\"", "acess = \"free\"");
        let bad_date = EPISODE.replace("2026-01-02T09:00:00Z", "yesterday");
        let found = errors(&[
            file("c/episodes/a.md", &bad_duration),
            file("c/episodes/b.md", &unknown_key),
            file("c/episodes/c.md", &bad_date),
            file("c/episodes/d.md", "no front matter"),
            file(
                "c/episodes/Bad_Name.md",
                &EPISODE.replace("number = 1", "number = 9"),
            ),
        ]);
        assert_eq!(
            found[0],
            "c/episodes/a.md:4: `duration` = \"12 minutes\" must be MM:SS or H:MM:SS"
        );
        assert_starts(
            &found[1..],
            &[
                "c/episodes/b.md:6: unknown field `acess`",
                "c/episodes/b.md:1: missing field `access`",
                "c/episodes/c.md:7: `published_at` = \"yesterday\"",
                "c/episodes/d.md:1: the file must start with front matter",
                "c/episodes/Bad_Name.md:1: the file name \"Bad_Name\" is not a slug",
            ],
        );
    }

    #[test]
    fn the_shared_fields_name_their_line_too() {
        let found = errors(&[
            file(
                "c/episodes/a.md",
                &EPISODE.replace("title = \"Ownership\"", "title = 5"),
            ),
            file(
                "c/episodes/b.md",
                &EPISODE.replace("tags = [\"rust\"]", "tags = \"rust\""),
            ),
            file("c/series/c.md", "+++\ntitle = \"S\"\n\ntags = []\n+++\n"),
        ]);
        assert_starts(
            &found,
            &[
                "c/episodes/a.md:2: invalid type",
                "c/episodes/b.md:8: invalid type",
                "c/series/c.md:4: unknown field `tags`, expected one of `title`, `summary`, `position`",
            ],
        );
    }

    #[test]
    fn every_bad_field_of_a_file_is_reported_at_once() {
        let text = EPISODE
            .replace("number = 1", "number = \"one\"")
            .replace("\"12:30\"", "\"12 minutes\"")
            .replace("access = \"free\"", "access = \"sometimes\"")
            .replace("tags = [\"rust\"]", "tags = [\"rust\"]\nextra = 1");
        let found = errors(&[file("c/episodes/a.md", &text)]);
        assert_starts(
            &found,
            &[
                "c/episodes/a.md:9: unknown field `extra`",
                "c/episodes/a.md:3: invalid type: string \"one\", expected i32",
                "c/episodes/a.md:6: unknown variant `sometimes`",
                "c/episodes/a.md:4: `duration` = \"12 minutes\" must be MM:SS or H:MM:SS",
            ],
        );
    }

    /// One error a prefix, in order.
    fn assert_starts(found: &[String], prefixes: &[&str]) {
        assert_eq!(found.len(), prefixes.len(), "{found:#?}");
        for (found, prefix) in found.iter().zip(prefixes) {
            assert!(found.starts_with(prefix), "{found}");
        }
    }

    #[test]
    fn durations_parse_strictly() {
        assert_eq!(parse_duration("04:05"), Some(245));
        assert_eq!(parse_duration("1:02:03"), Some(3723));
        for bad in ["", "5", "1:60", "a:10", "-1:10", "1:2:3:4", "1::2"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    /// A slug short enough for a tag too.
    fn slug() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,8}(-[a-z0-9]{1,8}){0,3}"
    }

    /// A line of front matter: a known key, or a stray one, with a value of
    /// the right type or not.
    fn front_line() -> impl Strategy<Value = String> {
        // Every kind's keys are among an episode's.
        let keys = prop::sample::select([FileKind::Episode.keys(), &["acess", "[extra]"]].concat());
        let values = prop::sample::select(vec![
            "\"x\"",
            "\"\"",
            "1",
            "-3",
            "0",
            "true",
            "[\"rust\"]",
            "[\"Bad Tag\"]",
            "\"free\"",
            "\"premium\"",
            "\"12:30\"",
            "\"https://v.example/a.mp4\"",
            "\"2026-01-02T09:00:00Z\"",
            "2026-01-02T09:00:00Z",
            "\"async-rust\"",
            "{ a = 1 }",
            "\"unclosed",
        ]);
        (keys, values).prop_map(|(key, value)| format!("{key} = {value}"))
    }

    /// Text a title or summary may hold: quotes, backslashes, Unicode, line
    /// breaks and fences among the rest.
    fn free_text() -> impl Strategy<Value = String> {
        let odd = [
            "\n", "\r\n", "\"", "'''", "\\", "+++", "\n+++\n", "\t", "\u{7f}", "é", "日本",
        ];
        prop::collection::vec(
            prop_oneof![
                4 => "\\PC".boxed(),
                1 => prop::sample::select(odd.to_vec()).prop_map(str::to_owned).boxed(),
            ],
            0..30,
        )
        .prop_map(|parts| parts.concat())
    }

    /// A title the reader takes: text that is not blank, at most 200 characters.
    fn title() -> impl Strategy<Value = String> {
        ("\\PC{1,10}", free_text())
            .prop_map(|(start, rest)| format!("{start}{rest}"))
            .prop_filter("a title has text", |t| {
                !t.trim().is_empty() && t.chars().count() <= 200
            })
    }

    fn date() -> impl Strategy<Value = DateValue> {
        (0..4_000_000_000i64, 0..1_000_000i64).prop_map(|(secs, micros)| {
            let date =
                OffsetDateTime::from_unix_timestamp(secs).unwrap() + time::Duration::microseconds(micros);
            DateValue::try_from(date).unwrap()
        })
    }

    /// What the exporter may write for an episode or an article, before the episode's own keys.
    fn publication() -> impl Strategy<Value = FrontMatter> {
        (
            title(),
            free_text(),
            proptest::option::of(date()),
            any::<bool>(),
            prop::collection::btree_set(slug(), 0..5),
        )
            .prop_map(|(title, summary, published_at, draft, tags)| FrontMatter {
                title: Some(title),
                summary,
                // A date, or a draft, or both.
                draft: draft || published_at.is_none(),
                published_at,
                tags: tags.into_iter().collect(),
                ..FrontMatter::default()
            })
    }

    /// What the exporter may write for a file of each kind.
    fn written_front_matter() -> impl Strategy<Value = (FileKind, FrontMatter)> {
        let series = (title(), free_text(), any::<i32>()).prop_map(|(title, summary, position)| {
            (
                FileKind::Series,
                FrontMatter {
                    title: Some(title),
                    summary,
                    position: Some(position),
                    ..FrontMatter::default()
                },
            )
        });
        let article = publication().prop_map(|front| (FileKind::Article, front));
        let episode = (
            publication(),
            1..i32::MAX,
            proptest::option::of((slug(), 1..i32::MAX)),
            0..1000 * 3600i64,
            slug(),
            proptest::option::of(slug()),
            any::<bool>(),
        )
            .prop_map(|(front, number, series, secs, video, poster, premium)| {
                (
                    FileKind::Episode,
                    FrontMatter {
                        number: Some(number),
                        series: series.as_ref().map(|(slug, _)| slug.clone()),
                        position: series.map(|(_, position)| position),
                        duration: Some(format_duration(secs)),
                        video: Some(format!("https://v.example/{video}.mp4")),
                        poster: poster.map(|poster| format!("/media/{poster}.png")),
                        access: Some(Access::of(premium)),
                        ..front
                    },
                )
            });
        prop_oneof![series, article, episode]
    }

    proptest! {
        #[test]
        fn any_front_matter_written_is_read_back_the_same(
            (kind, front) in written_front_matter(),
            body in "[a-z #*`\n]{0,120}",
        ) {
            let text = match write_file(&front, &body) {
                Ok(text) => text,
                Err(WriteError::Fence) => {
                    let fenced = |text: &str| text.lines().any(|line| line.trim_end() == FENCE);
                    let title = front.title.as_deref().unwrap_or_default();
                    prop_assert!(fenced(title) || fenced(&front.summary), "{front:?}");
                    return Ok(());
                }
                Err(e) => return Err(TestCaseError::fail(e.to_string())),
            };
            let (front_text, read_body, _) = split_front_matter(&text).unwrap();
            prop_assert_eq!(toml::from_str::<FrontMatter>(front_text).unwrap(), front);
            prop_assert_eq!(read_body, body.as_str());
            let parsed = parse(&format!("c/{}/item.md", kind.folder()), &text);
            prop_assert!(parsed.is_ok(), "{parsed:?} from\n{text}");
        }

        #[test]
        fn any_duration_formatted_for_a_page_parses_back(secs in 0..1000 * 3600i64) {
            prop_assert_eq!(parse_duration(&format_duration(secs)).map(i64::from), Some(secs));
        }

        #[test]
        fn minutes_and_seconds_parse_as_written(m in 0..1000i32, s in 0..60i32) {
            prop_assert_eq!(parse_duration(&format!("{m:02}:{s:02}")), Some(m * 60 + s));
        }

        #[test]
        fn any_text_is_a_duration_or_not_without_panicking(text in "\\PC{0,20}|[0-9:]{0,12}") {
            if let Some(secs) = parse_duration(&text) {
                prop_assert!(secs >= 0);
            }
        }

        #[test]
        fn any_file_is_read_or_refused_without_panicking(
            folder in prop::sample::select(vec!["series", "episodes", "articles", "drafts"]),
            text in "\\PC{0,300}",
            lines in prop::collection::vec(front_line(), 0..14),
            body in "\\PC{0,200}",
        ) {
            let path = format!("c/{folder}/item.md");
            let _ = parse(&path, &text);
            let _ = parse(&path, &format!("+++\n{text}"));
            let _ = parse(&path, &format!("+++\n{}\n+++\n{body}", lines.join("\n")));
        }

        #[test]
        fn a_valid_episode_keeps_every_field(
            name in slug(),
            title in "\\PC{1,80}".prop_filter("a title has text", |t| !t.trim().is_empty()),
            summary in "\\PC{0,120}",
            number in 1..100_000i64,
            series in proptest::option::of((slug(), 1..500i64)),
            secs in 0..1000 * 3600i64,
            premium: bool,
            draft: bool,
            published in 0..4_000_000_000i64,
            tags in prop::collection::vec(slug(), 0..5),
        ) {
            let published_at = OffsetDateTime::from_unix_timestamp(published).unwrap();
            let mut front = toml::Table::new();
            let mut set = |key: &str, value: toml::Value| front.insert(key.to_owned(), value);
            set("title", title.clone().into());
            set("summary", summary.clone().into());
            set("number", number.into());
            if let Some((series, position)) = &series {
                set("series", series.clone().into());
                set("position", (*position).into());
            }
            set("duration", format_duration(secs).into());
            set("video", format!("https://v.example/{name}.mp4").into());
            set("access", if premium { "premium" } else { "free" }.into());
            set("published_at", published_at.format(&Rfc3339).unwrap().into());
            set("draft", draft.into());
            set("tags", tags.clone().into());
            let text = format!("+++\n{}+++\nIntro.\n\n## Paid\n\nNotes.\n", toml::to_string(&front).unwrap());

            let parsed = parse(&format!("c/episodes/{name}.md"), &text);
            let Ok(Document::Episode(episode)) = parsed else {
                return Err(TestCaseError::fail(format!("{parsed:?} from\n{text}")));
            };
            let mut expected_tags: Vec<Slug> = tags.iter().map(|t| Slug::parse_tag(t).unwrap()).collect();
            expected_tags.sort();
            expected_tags.dedup();
            prop_assert_eq!(episode.common.slug.as_str(), name.as_str());
            prop_assert_eq!(&episode.common.title, title.trim());
            prop_assert_eq!(&episode.common.summary, summary.trim());
            prop_assert_eq!(i64::from(episode.number), number);
            prop_assert_eq!(
                episode.series.map(|(slug, position)| (slug.to_string(), i64::from(position))),
                series
            );
            prop_assert_eq!(i64::from(episode.duration_secs), secs);
            prop_assert_eq!(episode.video_url, format!("https://v.example/{name}.mp4"));
            prop_assert_eq!(episode.premium, premium);
            prop_assert_eq!(episode.common.draft, draft);
            prop_assert_eq!(episode.common.published_at, Some(published_at));
            prop_assert_eq!(episode.common.tags, expected_tags);
            prop_assert_eq!(episode.teaser_source, "Intro.");
        }
    }
}
