//! Bar charts drawn on the server as inline SVG, for the dashboard: no
//! script, colours from the stylesheet's classes (the CSP allows no inline
//! style), labelled axes with a few round-number ticks, a title and a
//! description for screen readers, and each bar carrying its label and
//! value as data attributes. Every label is escaped: paths and referrer
//! hosts are visitors' text.

use std::fmt::Write;

use lectern_actors::billing::Money;
use lectern_actors::events::figures::grouped;

/// What a chart's values are: counts, or amounts in a currency's minor units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unit {
    Count,
    Money { currency: String },
}

impl Unit {
    /// A value as a reader reads it: `12,345`, `19.00 USD`.
    pub fn show(&self, value: i64) -> String {
        match self {
            Unit::Count => grouped(value),
            Unit::Money { currency } => Money::new(value, currency).to_string(),
        }
    }
}

/// One bar: its label on the x axis (a day, a month) and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bar {
    pub label: String,
    pub value: i64,
}

/// A bar chart; `id` tells its title and description apart from other
/// charts' on the page.
#[derive(Debug, Clone)]
pub struct BarChart {
    pub id: &'static str,
    pub title: String,
    pub unit: Unit,
    pub bars: Vec<Bar>,
}

const WIDTH: i64 = 720;
const HEIGHT: i64 = 240;
const LEFT: i64 = 88;
const RIGHT: i64 = 8;
/// Room above the plot for the chart's visible title.
const TOP: i64 = 36;
const BOTTOM: i64 = 28;
/// X-axis labels shown at most; the others are in each bar's title.
const X_LABELS: usize = 8;

impl BarChart {
    /// The chart as an `<svg>` element, to put in a page as it is.
    pub fn svg(&self) -> String {
        let values = self.bars.iter().map(|b| b.value);
        let (ticks, low, high) = ticks(values.clone().min().unwrap_or(0), values.max().unwrap_or(0));
        let plot_width = WIDTH - LEFT - RIGHT;
        let plot_height = HEIGHT - TOP - BOTTOM;
        // The y of a value: `high` at the top, `low` at the bottom.
        let y = |value: i64| TOP + (high - value) * plot_height / (high - low);
        let id = escape(self.id);
        let mut svg = String::with_capacity(1024 + self.bars.len() * 200);
        // Writing to a String cannot fail.
        let _ = write!(
            svg,
            "<svg class=\"chart\" role=\"img\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
             aria-labelledby=\"{id}-title {id}-desc\" xmlns=\"http://www.w3.org/2000/svg\">\
             <title id=\"{id}-title\">{}</title><desc id=\"{id}-desc\">{}</desc>",
            escape(&self.title),
            escape(&self.description()),
        );
        // The title again, shown: a `<title>` is only a tooltip.
        let _ = write!(
            svg,
            "<text class=\"chart-title\" x=\"{LEFT}\" y=\"16\" aria-hidden=\"true\">{}</text>",
            escape(&self.title),
        );
        svg.push_str("<g class=\"chart-axis\">");
        for tick in &ticks {
            let at = y(*tick);
            let _ = write!(
                svg,
                "<line class=\"chart-grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{at}\" y2=\"{at}\"/>\
                 <text class=\"chart-tick\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
                WIDTH - RIGHT,
                LEFT - 6,
                at + 4,
                escape(&self.unit.show(*tick)),
            );
        }
        let every = self.bars.len().div_ceil(X_LABELS).max(1);
        let slot = plot_width / i64::try_from(self.bars.len().max(1)).unwrap_or(i64::MAX);
        for (n, bar) in self.bars.iter().enumerate() {
            if n % every == 0 {
                let x = LEFT + slot * n as i64 + slot / 2;
                let _ = write!(
                    svg,
                    "<text class=\"chart-tick\" x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                    HEIGHT - 8,
                    escape(&bar.label),
                );
            }
        }
        let _ = write!(
            svg,
            "<line class=\"chart-baseline\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{}\" y2=\"{}\"/></g>",
            WIDTH - RIGHT,
            y(0),
            y(0),
        );
        svg.push_str("<g class=\"chart-bars\">");
        let width = (slot * 3 / 4).max(1);
        for (n, bar) in self.bars.iter().enumerate() {
            let x = LEFT + slot * n as i64 + (slot - width) / 2;
            let (top, bottom) = (y(bar.value.max(0)), y(bar.value.min(0)));
            let label = escape(&bar.label);
            let _ = write!(
                svg,
                "<rect class=\"chart-bar\" x=\"{x}\" y=\"{top}\" width=\"{width}\" height=\"{}\" \
                 data-label=\"{label}\" data-value=\"{}\"><title>{label}: {}</title></rect>",
                bottom - top,
                bar.value,
                escape(&self.unit.show(bar.value)),
            );
        }
        svg.push_str("</g></svg>");
        svg
    }

    /// What the chart shows, in a sentence: its span, its total and its
    /// highest bar.
    fn description(&self) -> String {
        let (Some(first), Some(last)) = (self.bars.first(), self.bars.last()) else {
            return "No data.".into();
        };
        let total: i64 = self.bars.iter().map(|b| b.value).sum();
        let mut text = format!(
            "{} bars from {} to {}; total {}",
            self.bars.len(),
            first.label,
            last.label,
            self.unit.show(total)
        );
        // The first of the highest bars.
        if let Some(highest) = self.bars.iter().rev().max_by_key(|b| b.value) {
            let _ = write!(
                text,
                "; highest {} on {}",
                self.unit.show(highest.value),
                highest.label
            );
        }
        text.push('.');
        text
    }
}

/// Round-number ticks that span `min` to `max` (and zero), about four
/// steps of 1, 2 or 5 times a power of ten; with the lowest and highest.
fn ticks(min: i64, max: i64) -> (Vec<i64>, i64, i64) {
    let (min, max) = (min.min(0), max.max(0));
    let span = u64::try_from(i128::from(max) - i128::from(min)).unwrap_or(u64::MAX);
    let wanted = span.div_ceil(4).max(1);
    let mut power: u64 = 1;
    let step = loop {
        if let Some(step) = [1, 2, 5].iter().map(|m| m * power).find(|s| *s >= wanted) {
            break i64::try_from(step).unwrap_or(i64::MAX);
        }
        power = match power.checked_mul(10) {
            Some(next) => next,
            None => break i64::MAX,
        };
    };
    let low = min.div_euclid(step) * step;
    let high = match max % step {
        0 if max > 0 => max,
        _ => (max.div_euclid(step) + 1) * step,
    };
    let ticks = (0..).map(|n| low + n * step).take_while(|t| *t <= high).collect();
    (ticks, low, high)
}

/// Text made safe for an SVG (XML) element or a quoted attribute.
fn escape(text: &str) -> String {
    let mut safe = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => safe.push_str("&amp;"),
            '<' => safe.push_str("&lt;"),
            '>' => safe.push_str("&gt;"),
            '"' => safe.push_str("&quot;"),
            '\'' => safe.push_str("&#39;"),
            c => safe.push(c),
        }
    }
    safe
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_values() {
        assert_eq!(ticks(0, 0), (vec![0, 1], 0, 1));
        assert_eq!(ticks(0, 7), (vec![0, 2, 4, 6, 8], 0, 8));
        assert_eq!(ticks(0, 8), (vec![0, 2, 4, 6, 8], 0, 8));
        assert_eq!(ticks(3, 1234), (vec![0, 500, 1000, 1500], 0, 1500));
        assert_eq!(ticks(-300, 900), (vec![-500, 0, 500, 1000], -500, 1000));
    }

    #[test]
    fn a_chart_escapes_its_labels_and_carries_each_value() {
        let chart = BarChart {
            id: "views",
            title: "Views <per> day".into(),
            unit: Unit::Count,
            bars: vec![
                Bar {
                    label: "<script>\"x\"".into(),
                    value: 1200,
                },
                Bar {
                    label: "2026-12-02".into(),
                    value: 0,
                },
            ],
        };
        let svg = chart.svg();
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("data-label=\"&lt;script&gt;&quot;x&quot;\" data-value=\"1200\""));
        assert!(svg.contains("data-label=\"2026-12-02\" data-value=\"0\""));
        assert!(svg.contains("<title id=\"views-title\">Views &lt;per&gt; day</title>"));
        assert!(
            svg.contains("total 1,200; highest 1,200 on &lt;script&gt;"),
            "{svg}"
        );
    }
}
