//! Markdown to HTML, once, when content is imported or saved: CommonMark
//! with GitHub's extensions (the `markdown` crate, safe by default), code
//! fences highlighted here with syntect's CSS classes, so that pages need no
//! highlighting script and no inline styles (the CSP allows none).

use std::sync::OnceLock;

use syntect::html::{ClassStyle, ClassedHTMLGenerator};
use syntect::parsing::SyntaxSet;
use syntect::util::LinesWithEndings;

/// The default cap on one document's Markdown source.
pub const DEFAULT_MAX_BYTES: usize = 512 * 1024;

/// How deeply block quotes and lists may nest. The `markdown` crate
/// recurses once per level with no limit of its own: 16,384 nested quotes
/// (16 KiB of `>`) overflow a thread's stack and abort the process, and a
/// document at the size cap made of them does not finish in a minute. No
/// page nests anywhere near this deep.
pub const MAX_NESTING: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarkdownError {
    #[error("the Markdown is {size} bytes; the limit is {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("line {line}: {message}")]
    Invalid { line: usize, message: String },
    #[error("line {line}: quotes and lists nest {depth} deep; the limit is {limit}")]
    TooDeep { line: usize, depth: usize, limit: usize },
    #[error("the Markdown parser cannot read this text (a code fence opened in a list item, then another list, is one such text)")]
    Unreadable,
}

/// How Markdown is compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkdownOptions {
    pub max_bytes: usize,
    /// Raw HTML in the source is passed through (trusted authors only);
    /// otherwise it is shown as text.
    pub allow_raw_html: bool,
}

impl Default for MarkdownOptions {
    fn default() -> Self {
        MarkdownOptions {
            max_bytes: DEFAULT_MAX_BYTES,
            allow_raw_html: false,
        }
    }
}

/// Compiled Markdown: the whole HTML, and the part before the first
/// second-level heading (the teaser of a premium episode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    pub html: String,
    pub teaser_html: String,
}

pub fn compile_markdown(source: &str, options: MarkdownOptions) -> Result<Compiled, MarkdownError> {
    if source.len() > options.max_bytes {
        return Err(MarkdownError::TooLarge {
            size: source.len(),
            limit: options.max_bytes,
        });
    }
    check_nesting(source)?;
    let mut parse = markdown::Options::gfm();
    parse.compile.allow_dangerous_html = options.allow_raw_html;
    parse.compile.allow_dangerous_protocol = false;
    let html = guarded(|| markdown::to_html_with_options(source, &parse))?;
    let html = highlight_code_blocks(&html).replace("<img ", "<img loading=\"lazy\" ");
    let teaser_html = match html.find("<h2") {
        Some(end) => html[..end].trim_end().to_owned(),
        None => html.clone(),
    };
    Ok(Compiled { html, teaser_html })
}

/// Refuses a source whose quotes and lists nest deeper than [`MAX_NESTING`]
/// before the parser recurses into it. A line's depth is an upper bound of
/// the containers open on it: the `>` and list markers it starts with, and
/// for a list item, half its indentation (a nested item is indented by two
/// columns or more per level).
fn check_nesting(source: &str) -> Result<(), MarkdownError> {
    for (index, line) in source.lines().enumerate() {
        let depth = line_nesting(line.as_bytes());
        if depth > MAX_NESTING {
            return Err(MarkdownError::TooDeep {
                line: index + 1,
                depth,
                limit: MAX_NESTING,
            });
        }
    }
    Ok(())
}

fn line_nesting(line: &[u8]) -> usize {
    let (mut markers, mut columns, mut listed, mut at) = (0, 0, false, 0);
    while at < line.len() {
        match line[at] {
            b' ' => columns += 1,
            b'\t' => columns += 4,
            b'>' => markers += 1,
            b'-' | b'*' | b'+' if line.get(at + 1).is_none_or(|b| matches!(b, b' ' | b'\t')) => {
                markers += 1;
                listed = true;
            }
            b'0'..=b'9' => {
                let digits = line[at..].iter().take_while(|b| b.is_ascii_digit()).count();
                let after = at + digits;
                let ordered = digits <= 9
                    && matches!(line.get(after), Some(b'.' | b')'))
                    && line.get(after + 1).is_none_or(|b| matches!(b, b' ' | b'\t'));
                if !ordered {
                    break;
                }
                markers += 1;
                listed = true;
                at = after;
            }
            _ => break,
        }
        at += 1;
    }
    if listed {
        markers + columns / 2
    } else {
        markers
    }
}

/// The Markdown of the teaser: the source up to its first second-level
/// heading, where `compile_markdown` cuts the teaser's HTML. Search reads
/// it for premium episodes, so where the two could differ it stops sooner.
pub fn teaser_source(source: &str, options: MarkdownOptions) -> Result<&str, MarkdownError> {
    check_nesting(source)?;
    let tree = guarded(|| markdown::to_mdast(source, &markdown::ParseOptions::gfm()))?;
    let Some(end) = teaser_end(&tree, options.allow_raw_html) else {
        return Ok(source.trim_end());
    };
    // From the start of its line: a heading in a quote or a list starts
    // after the markers that open it.
    let line_start = source[..end].rfind('\n').map_or(0, |i| i + 1);
    Ok(source[..line_start].trim_end())
}

/// Where the first node that puts an `<h2` into the HTML starts: a heading,
/// raw HTML (when passed through), or a footnote definition (footnotes are
/// printed at the end under an `<h2>` label, outside the teaser).
fn teaser_end(node: &markdown::mdast::Node, allow_raw_html: bool) -> Option<usize> {
    use markdown::mdast::Node;
    let ends_teaser = match node {
        Node::Heading(heading) => heading.depth == 2,
        Node::Html(html) => allow_raw_html && html.value.contains("<h2"),
        Node::FootnoteDefinition(_) => true,
        _ => false,
    };
    if ends_teaser {
        // A node without a position cannot be placed: then nothing is teaser.
        return Some(node.position().map_or(0, |p| p.start.offset));
    }
    node.children()?
        .iter()
        .find_map(|child| teaser_end(child, allow_raw_html))
}

/// Runs the Markdown parser, whose own bugs panic on a few texts (1.0.0:
/// "1. ```rust\n- " reaches an `unreachable!`): such a text is refused, as
/// invalid Markdown is, rather than taking down the import, the editor's
/// request or the Renderer.
fn guarded<T>(parse: impl FnOnce() -> Result<T, markdown::message::Message>) -> Result<T, MarkdownError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(parse))
        .map_err(|_| MarkdownError::Unreadable)?
        .map_err(invalid)
}

fn invalid(message: markdown::message::Message) -> MarkdownError {
    MarkdownError::Invalid {
        line: message.place.as_ref().map_or(1, |place| match **place {
            markdown::message::Place::Point(ref point) => point.line,
            markdown::message::Place::Position(ref position) => position.start.line,
        }),
        message: message.reason,
    }
}

fn syntaxes() -> &'static SyntaxSet {
    static SYNTAXES: OnceLock<SyntaxSet> = OnceLock::new();
    SYNTAXES.get_or_init(SyntaxSet::load_defaults_newlines)
}

const FENCE_START: &str = "<pre><code class=\"language-";
const FENCE_END: &str = "</code></pre>";

/// Replaces each fenced block of a known language with highlighted HTML.
fn highlight_code_blocks(html: &str) -> String {
    let mut out = String::with_capacity(html.len() + html.len() / 2);
    let mut rest = html;
    while let Some(start) = rest.find(FENCE_START) {
        out.push_str(&rest[..start]);
        let after = &rest[start + FENCE_START.len()..];
        let Some((language, code_and_rest)) = after.split_once("\">") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let Some(end) = code_and_rest.find(FENCE_END) else {
            out.push_str(&rest[start..]);
            return out;
        };
        let escaped_code = &code_and_rest[..end];
        match highlight(language, &unescape(escaped_code)) {
            Some(highlighted) => {
                out.push_str(&format!(
                    "<pre class=\"code\"><code class=\"language-{language}\">{highlighted}</code></pre>"
                ));
            }
            None => out.push_str(
                &rest[start..start + FENCE_START.len() + language.len() + 2 + end + FENCE_END.len()],
            ),
        }
        rest = &code_and_rest[end + FENCE_END.len()..];
    }
    out.push_str(rest);
    out
}

fn highlight(language: &str, code: &str) -> Option<String> {
    let syntaxes = syntaxes();
    let syntax = syntaxes
        .find_syntax_by_token(language)
        .or_else(|| match language {
            "toml" => syntaxes.find_syntax_by_extension("yaml"),
            "sh" | "shell" | "console" => syntaxes.find_syntax_by_extension("sh"),
            _ => None,
        })?;
    let mut generator = ClassedHTMLGenerator::new_with_class_style(
        syntax,
        syntaxes,
        ClassStyle::SpacedPrefixed { prefix: "hl-" },
    );
    for line in LinesWithEndings::from(code) {
        generator.parse_html_for_line_which_includes_newline(line).ok()?;
    }
    Some(generator.finalize())
}

/// Undoes the escaping the Markdown compiler applied to code.
fn unescape(escaped: &str) -> String {
    escaped
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn html(source: &str) -> String {
        compile_markdown(source, MarkdownOptions::default())
            .expect("compiles")
            .html
    }

    #[test]
    fn quotes_and_lists_nested_past_the_limit_are_refused_before_parsing() {
        // Deep enough to overflow the stack inside the `markdown` crate.
        let quotes = ">".repeat(16_384);
        for source in [
            quotes.as_str(),
            &format!("intro\n\n{}", "> ".repeat(MAX_NESTING + 1)),
        ] {
            let error = compile_markdown(source, MarkdownOptions::default()).unwrap_err();
            assert!(
                matches!(
                    error,
                    MarkdownError::TooDeep {
                        limit: MAX_NESTING,
                        ..
                    }
                ),
                "{error}"
            );
            assert!(teaser_source(source, MarkdownOptions::default()).is_err());
        }
        let lists: String = (0..=MAX_NESTING)
            .map(|level| format!("{}- item\n", "  ".repeat(level)))
            .collect();
        assert_eq!(
            compile_markdown(&lists, MarkdownOptions::default()).unwrap_err(),
            MarkdownError::TooDeep {
                line: MAX_NESTING + 1,
                depth: MAX_NESTING + 1,
                limit: MAX_NESTING
            }
        );
        let ordered = format!("{}1. item", "1) ".repeat(MAX_NESTING));
        assert!(compile_markdown(&ordered, MarkdownOptions::default()).is_err());
    }

    #[test]
    fn nesting_up_to_the_limit_compiles() {
        let quotes = format!("{}deep", "> ".repeat(MAX_NESTING));
        assert!(html(&quotes).contains("deep"));
        let lists: String = (0..MAX_NESTING / 2)
            .map(|level| format!("{}- item {level}\n", "  ".repeat(level)))
            .collect();
        assert!(html(&lists).contains("item 31"));
        // Code, tables and rules are not containers.
        assert!(html("    indented code\n\n---\n\n2026. A year, not a list?").contains("<code>"));
    }

    #[test]
    fn gfm_tables_and_strikethrough_compile() {
        let out = html("| a | b |\n| - | - |\n| 1 | 2 |\n\n~~gone~~");
        assert!(out.contains("<table>") && out.contains("<td>1</td>"), "{out}");
        assert!(out.contains("<del>gone</del>"), "{out}");
    }

    #[test]
    fn raw_html_is_shown_as_text_unless_allowed() {
        let source = "<script>alert(1)</script>\n\n[x](javascript:alert(1))";
        let safe = html(source);
        assert!(
            !safe.contains("<script>") && safe.contains("&lt;script&gt;"),
            "{safe}"
        );
        assert!(!safe.contains("javascript:"), "{safe}");
        let trusted = compile_markdown(
            "<div class=\"note\">hi</div>",
            MarkdownOptions {
                allow_raw_html: true,
                ..MarkdownOptions::default()
            },
        )
        .expect("compiles");
        assert!(trusted.html.contains("<div class=\"note\">hi</div>"));
    }

    #[test]
    fn known_languages_are_highlighted_with_classes_and_stay_escaped() {
        let out = html("```rust\nfn main() { let s = \"<b>\"; }\n```");
        assert!(
            out.starts_with("<pre class=\"code\"><code class=\"language-rust\">"),
            "{out}"
        );
        assert!(out.contains("class=\"hl-"), "{out}");
        assert!(out.contains("&lt;b&gt;") && !out.contains("<b>"), "{out}");
        assert!(!out.contains("style="), "no inline styles: {out}");
    }

    #[test]
    fn unknown_languages_are_left_as_plain_code() {
        let out = html("```nosuchlang\na < b\n```");
        assert_eq!(
            out,
            "<pre><code class=\"language-nosuchlang\">a &lt; b\n</code></pre>"
        );
    }

    #[test]
    fn the_teaser_stops_at_the_first_second_level_heading() {
        let compiled =
            compile_markdown("Intro.\n\n## Details\n\nMore.", MarkdownOptions::default()).expect("ok");
        assert_eq!(compiled.teaser_html, "<p>Intro.</p>");
        assert!(compiled.html.contains("More."));
    }

    #[test]
    fn the_teaser_source_ends_where_the_teaser_html_does() {
        let teaser = |source| teaser_source(source, MarkdownOptions::default()).expect("parses");
        assert_eq!(teaser("Intro.\n\n## Details\n\nMore."), "Intro.");
        assert_eq!(
            teaser("Café — ½ intro.\n\n## Détails\n\nMore."),
            "Café — ½ intro."
        );
        assert_eq!(teaser("Intro.\n\nDetails\n-------\n\nMore."), "Intro.", "setext");
        assert_eq!(teaser("Intro.\n\n> ## Quoted\n\nMore."), "Intro.");
        assert_eq!(
            teaser("Intro.\n\n```md\n## not a heading\n```\n\n### Deeper\n\nAll public."),
            "Intro.\n\n```md\n## not a heading\n```\n\n### Deeper\n\nAll public."
        );
        assert_eq!(teaser("Intro.[^1]\n\n[^1]: Paid.\n\nMore."), "Intro.[^1]");
        let raw = MarkdownOptions {
            allow_raw_html: true,
            ..MarkdownOptions::default()
        };
        assert_eq!(
            teaser_source("Intro.\n\n<h2>Raw</h2>\n\nMore.", raw).expect("parses"),
            "Intro."
        );
        assert_eq!(
            teaser("Intro.\n\n<h2>Raw</h2>"),
            "Intro.\n\n<h2>Raw</h2>",
            "shown as text"
        );
    }

    #[test]
    fn oversized_input_is_refused_with_the_sizes() {
        let error = compile_markdown(
            &"a".repeat(2048),
            MarkdownOptions {
                max_bytes: 1024,
                allow_raw_html: false,
            },
        )
        .expect_err("too large");
        assert_eq!(
            error.to_string(),
            "the Markdown is 2048 bytes; the limit is 1024 bytes"
        );
    }

    #[test]
    fn images_load_lazily() {
        assert!(html("![a diagram](/static/x.svg)").contains("<img loading=\"lazy\" src=\"/static/x.svg\""));
    }

    /// Markdown-shaped text: the constructs that nest or open and close
    /// (quotes, lists, emphasis, links, fences, tables, HTML, footnotes),
    /// mixed with arbitrary text.
    fn markdownish() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            "\\PC{0,12}",
            prop::sample::select(vec![
                "\n",
                "\n\n",
                "> ",
                "- ",
                "* ",
                "1. ",
                "   ",
                "\t",
                "# ",
                "## ",
                "---\n",
                "===\n",
                "```",
                "```rust\n",
                "```nosuchlang\n",
                "~~~",
                "`",
                "*",
                "**",
                "_",
                "~~",
                "[",
                "]",
                "(",
                ")",
                "![",
                "](",
                "<",
                ">",
                "</",
                "<div>",
                "<h2>",
                "&amp;",
                "&#x",
                "\\",
                "|",
                "| - |\n",
                "[^1]",
                "[^1]: ",
                "<https://x.example>",
                "javascript:",
                "$$",
            ])
            .prop_map(str::to_owned),
        ];
        prop::collection::vec(piece, 0..120).prop_map(|pieces| pieces.concat())
    }

    #[test]
    fn text_the_parser_panics_on_is_refused() {
        let options = MarkdownOptions::default();
        let source = "1. ```rust\n- ";
        assert_eq!(teaser_source(source, options), Err(MarkdownError::Unreadable));
        // The HTML compiler does not panic on it: it compiles or is refused.
        if let Err(error) = compile_markdown(source, options) {
            assert_eq!(error, MarkdownError::Unreadable);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn any_markdown_compiles_or_is_refused_without_panicking(
            source in markdownish(),
            allow_raw_html: bool,
        ) {
            let options = MarkdownOptions { allow_raw_html, ..MarkdownOptions::default() };
            if let Ok(compiled) = compile_markdown(&source, options) {
                prop_assert!(compiled.html.starts_with(&compiled.teaser_html));
            }
            if let Ok(teaser) = teaser_source(&source, options) {
                prop_assert!(source.starts_with(teaser));
            }
        }
    }
}
