//! Authors' media: the files under a content folder's `media/`, stored in
//! PostgreSQL by the importer and served at `/media/{path}`. Only a
//! whitelist of types is taken, each file at most [`MAX_BYTES`], and a path
//! is a few plain segments: never `..`, never absolute, never hidden.

use std::path::PathBuf;

use deadpool_postgres::Pool;
use sha2::{Digest, Sha256};

use crate::store::StoreError;

/// The largest file `media/` may hold: 20 MiB.
pub const MAX_BYTES: u64 = 20 * 1024 * 1024;
/// The longest path, below `media/`.
pub const MAX_PATH_LEN: usize = 200;

/// The content type of a media file, by its extension; `None` for a type
/// that is not served.
pub fn content_type(path: &str) -> Option<&'static str> {
    let (_, extension) = path.rsplit_once('.')?;
    Some(match extension.to_ascii_lowercase().as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "avif" => "image/avif",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "pdf" => "application/pdf",
        "mp3" => "audio/mpeg",
        _ => return None,
    })
}

/// The extensions [`content_type`] knows, for messages.
pub const EXTENSIONS: &str = "png, jpg, jpeg, gif, webp, svg, avif, mp4, webm, pdf, mp3";

/// Whether `path` (below `media/`, `/`-separated) may name a media file:
/// segments of ASCII letters, digits, `.`, `_` and `-`, none empty or
/// starting with a dot, at most [`MAX_PATH_LEN`] bytes in all.
pub fn valid_path(path: &str) -> bool {
    path.len() <= MAX_PATH_LEN
        && path.split('/').all(|segment| {
            !segment.is_empty()
                && !segment.starts_with('.')
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
}

/// One media file found in a content folder, not read yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSource {
    /// Below `media/`, e.g. `posters/async.png`.
    pub path: String,
    /// Where it is on disk.
    pub file: PathBuf,
    pub content_type: &'static str,
}

impl MediaSource {
    /// The file's bytes and their SHA-256 in hex.
    pub fn read(&self) -> std::io::Result<(Vec<u8>, String)> {
        let bytes = std::fs::read(&self.file)?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        Ok((bytes, sha256))
    }
}

/// A stored media file, as the web layer serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub content_type: String,
    /// The hex SHA-256 of the bytes: the ETag.
    pub sha256: String,
    /// `None` when the client already has this version (`known_sha256`).
    pub bytes: Option<Vec<u8>>,
}

/// The media file at `path`, without its bytes when they hash to
/// `known_sha256` (a client revalidating its copy).
pub async fn get(pool: &Pool, path: &str, known_sha256: Option<&str>) -> Result<Option<Media>, StoreError> {
    if !valid_path(path) {
        return Ok(None);
    }
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT content_type, sha256, CASE WHEN sha256 = $2 THEN NULL ELSE bytes END \
             FROM media WHERE path = $1",
            &[&path, &known_sha256],
        )
        .await?;
    Ok(row.map(|row| Media {
        content_type: row.get(0),
        sha256: row.get(1),
        bytes: row.get(2),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_media_paths() {
        for good in ["a.png", "posters/async-rust_2.webp", "x/y/z.svg"] {
            assert!(valid_path(good), "{good}");
        }
        for bad in [
            "",
            "../x.png",
            "a/../../x.png",
            "/etc/passwd",
            "a//b.png",
            ".hidden.png",
            "a/.git/x",
            "a\\b.png",
            "caf\u{e9}.png",
            "a b.png",
            "%2e%2e/x.png",
            &"a".repeat(MAX_PATH_LEN + 1),
        ] {
            assert!(!valid_path(bad), "{bad}");
        }
    }

    #[test]
    fn only_whitelisted_types_have_a_content_type() {
        assert_eq!(content_type("a/Poster.PNG"), Some("image/png"));
        assert_eq!(content_type("clip.webm"), Some("video/webm"));
        assert_eq!(content_type("page.html"), None);
        assert_eq!(content_type("noextension"), None);
    }
}
