//! Static files from `static/`: embedded in release builds, read from disk in
//! debug builds. Each has a content hash, used as its ETag and as the version
//! in the URLs that templates write, so that browsers may keep them for a year.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use rust_embed::RustEmbed;

use crate::cache::CachedPage;

#[derive(RustEmbed)]
#[folder = "../static/"]
struct StaticFiles;

/// One static file, ready to serve.
#[derive(Debug, Clone)]
pub struct Asset {
    pub body: Cow<'static, [u8]>,
    /// The first 16 hex digits of the content's SHA-256.
    pub version: String,
    pub content_type: String,
}

/// The file at `path` (relative to `static/`), if there is one.
pub fn get_asset(path: &str) -> Option<Asset> {
    let traverses = path
        .split(['/', '\\'])
        .any(|segment| segment.is_empty() || segment == "." || segment == "..");
    if traverses {
        return None;
    }
    let file = StaticFiles::get(path)?;
    Some(Asset {
        version: hex::encode(&file.metadata.sha256_hash()[..8]),
        content_type: mime_guess::from_path(path)
            .first_or_octet_stream()
            .essence_str()
            .to_owned(),
        body: file.data,
    })
}

/// The file at `path`, compressed once and ready to serve from memory. In
/// release builds every file is prepared at the first call; debug builds
/// read the file again each time, so that edits show at once.
pub fn get_served_asset(path: &str) -> Option<Arc<CachedPage>> {
    #[cfg(debug_assertions)]
    {
        prepare(path)
    }
    #[cfg(not(debug_assertions))]
    {
        use std::collections::HashMap;
        use std::sync::OnceLock;
        static PREPARED: OnceLock<HashMap<String, Arc<CachedPage>>> = OnceLock::new();
        PREPARED
            .get_or_init(|| {
                StaticFiles::iter()
                    .filter_map(|path| Some((path.to_string(), prepare(&path)?)))
                    .collect()
            })
            .get(path)
            .cloned()
    }
}

fn prepare(path: &str) -> Option<Arc<CachedPage>> {
    let asset = get_asset(path)?;
    let content_type = mime_guess::from_path(path)
        .first_raw()
        .unwrap_or("application/octet-stream");
    let body = match asset.body {
        Cow::Borrowed(bytes) => Bytes::from_static(bytes),
        Cow::Owned(bytes) => Bytes::from(bytes),
    };
    Some(Arc::new(CachedPage::asset(content_type, body, asset.version)))
}

/// The URL of a static file with its content version, e.g.
/// `/static/css/lectern.css?v=1a2b3c4d5e6f7a8b`.
pub fn asset_url(path: &str) -> String {
    match get_asset(path) {
        Some(asset) => format!("/static/{path}?v={}", asset.version),
        None => format!("/static/{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_leave_the_static_folder_are_refused() {
        for path in [
            "../Cargo.toml",
            "css/../../Cargo.toml",
            "/etc/passwd",
            "css//x",
            "..\\x",
        ] {
            assert!(get_asset(path).is_none(), "{path}");
        }
    }

    #[test]
    fn urls_carry_the_content_version() {
        let asset = get_asset("css/lectern.css").expect("the stylesheet exists");
        assert_eq!(asset.content_type, "text/css");
        assert_eq!(
            asset_url("css/lectern.css"),
            format!("/static/css/lectern.css?v={}", asset.version)
        );
    }
}
