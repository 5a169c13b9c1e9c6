//! Static files from `static/`: embedded in release builds, read from disk in
//! debug builds. Each has a content hash, used as its ETag and as the version
//! in the URLs that templates write, so that browsers may keep them for a year.

use std::borrow::Cow;

use rust_embed::RustEmbed;

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
