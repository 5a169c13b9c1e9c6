//! The demo content written for Lectern (`actors/demo/`), built into the
//! binary: `lectern seed --demo` imports it, and so does a development
//! server whose database is empty.

use std::path::PathBuf;

use rust_embed::RustEmbed;

use super::front_matter::SourceFile;

#[derive(RustEmbed)]
#[folder = "demo/"]
#[include = "*.md"]
struct DemoFiles;

/// Every demo file, as the importer reads files from a folder.
pub fn demo_files() -> Vec<SourceFile> {
    let mut paths: Vec<String> = DemoFiles::iter().map(|p| p.into_owned()).collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|path| {
            let file = DemoFiles::get(&path)?;
            Some(SourceFile {
                path: PathBuf::from("demo").join(&path),
                text: String::from_utf8_lossy(&file.data).into_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::import::parse_files;
    use crate::content::markdown::MarkdownOptions;

    #[test]
    fn the_demo_content_parses_and_is_large_enough() {
        let files = demo_files();
        let bundle = parse_files(&files, MarkdownOptions::default()).expect("the demo content is valid");
        let counts = bundle.counts();
        assert!(counts.series >= 4, "{counts:?}");
        assert!(counts.published_episodes >= 30, "{counts:?}");
        assert!(counts.published_articles >= 10, "{counts:?}");
        assert!(counts.premium_episodes > 0 && counts.premium_episodes < counts.published_episodes);
    }
}
