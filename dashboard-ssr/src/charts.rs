//! Charts drawn on the server as SVG markup: the dashboard runs no JavaScript and its CSP allows
//! no inline style, so a chart is plain elements with presentation attributes (`fill`, `stroke`)
//! and classes app.css may restyle. Every text is XML-escaped here, so a template inserts a chart
//! as is.
//!
//! A chart is drawn in a viewBox [`WIDTH`] units wide and shown at the panel's width (`width`
//! 100%), from a phone to a wide screen. Text is sized in viewBox units too, so app.css enlarges
//! it on narrow screens; the layouts leave room for text up to 28 units high.
//!
//! Accessibility: each chart is one image (`role="img"`) whose `aria-label` says what it shows
//! (range, peak, total); each bar carries its exact figure in a `<title>` (a tooltip).

use chrono::{DateTime, Datelike, Duration, Utc};

use crate::pages::overview::grouped;

/// The viewBox width every chart is drawn in.
const WIDTH: f64 = 800.0;
/// Font size in viewBox units when app.css does not set one.
const FONT_SIZE: u32 = 12;
/// Colours when app.css does not restyle: its accent, line and muted tones.
const BAR_FILL: &str = "#1f5fbf";
const GRID_STROKE: &str = "#d9dee7";
const AXIS_STROKE: &str = "#9aa4b2";
const MUTED_FILL: &str = "#5b6576";
const TEXT_FILL: &str = "#1d2430";
/// What an empty chart says.
const NO_DATA: &str = "No data in this range";
/// The height of an empty chart: enough to read, not a blank page-high frame.
const EMPTY_HEIGHT: f64 = 160.0;

/// The time series' plot area: room on the left for the value labels, below for two lines of
/// time labels.
const SERIES_HEIGHT: f64 = 300.0;
const PLOT_LEFT: f64 = 80.0;
const PLOT_RIGHT: f64 = WIDTH - 16.0;
const PLOT_TOP: f64 = 16.0;
const PLOT_BOTTOM: f64 = SERIES_HEIGHT - 80.0;
/// Time labels under the axis: more would overlap on a phone.
const TIME_LABELS: usize = 4;

/// The bar chart's rows: a label column, then the bar, then its value.
const ROW_HEIGHT: f64 = 36.0;
const BAR_THICKNESS: f64 = 20.0;
const ROWS_TOP: f64 = 8.0;
const LABEL_WIDTH: f64 = 288.0;
const BAR_MAX_LENGTH: f64 = 400.0;
/// Longest label drawn; the full one is in the bar's tooltip (and the page's table).
const LABEL_CHARS: usize = 18;

/// Text made safe for XML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A count in few characters for an axis or a bar's end: 950, 1.2k, 34k, 5.6M, 7B.
pub fn compact(n: i64) -> String {
    const UNITS: [(u128, &str); 4] = [
        (1_000, "k"),
        (1_000_000, "M"),
        (1_000_000_000, "B"),
        (1_000_000_000_000, "T"),
    ];
    let sign = if n < 0 { "-" } else { "" };
    let abs = u128::from(n.unsigned_abs());
    if abs < 1_000 {
        return format!("{sign}{abs}");
    }
    for (size, suffix) in UNITS {
        // One decimal below 100 of a unit (1.2k), none from there (340k); rounding may carry
        // into the next unit (999,999 is 1M, not 1000k).
        let tenths = (abs * 10 + size / 2) / size;
        if tenths < 1_000 {
            return match tenths % 10 {
                0 => format!("{sign}{}{suffix}", tenths / 10),
                d => format!("{sign}{}.{d}{suffix}", tenths / 10),
            };
        }
        let whole = (abs + size / 2) / size;
        if whole < 1_000 || suffix == "T" {
            return format!("{sign}{whole}{suffix}");
        }
    }
    format!("{sign}{abs}")
}

/// The value axis for a peak: a round step (1, 2 or 5 times a power of ten) and how many steps
/// reach at or above the peak, 2 to 4 of them, so the chart has 3 to 5 gridlines counting zero.
pub fn axis_scale(peak: u64) -> (u64, u64) {
    let target = peak.div_ceil(4).max(1);
    let mut magnitude: u64 = 1;
    loop {
        for m in [1, 2, 5] {
            let step = magnitude.saturating_mul(m);
            if step >= target {
                return (step, peak.div_ceil(step).max(2));
            }
        }
        match magnitude.checked_mul(10) {
            Some(next) => magnitude = next,
            None => return (target, 4),
        }
    }
}

/// A label cut to `max` characters, an ellipsis marking the cut.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `part` of `whole` as a percentage with one decimal.
fn share(part: i64, whole: i64) -> String {
    if whole <= 0 {
        return "0%".to_string();
    }
    format!("{:.1}%", part as f64 * 100.0 / whole as f64)
}

/// The opening of a chart: the root element and its accessible name.
fn open(title: &str, summary: &str, height: f64) -> String {
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {height}" width="100%" role="img" aria-label="{}" font-size="{FONT_SIZE}" font-family="system-ui, sans-serif"><title>{}</title>"#,
        escape(summary),
        escape(title)
    )
}

/// A chart with nothing to draw: a dashed frame saying so, not an axis that suggests zeros.
fn empty(title: &str) -> String {
    let mut svg = open(title, &format!("{title}: {NO_DATA}"), EMPTY_HEIGHT);
    svg.push_str(&format!(
        r#"<rect x="0.5" y="0.5" width="{}" height="{}" fill="none" stroke="{GRID_STROKE}" stroke-dasharray="6 4" rx="6"/>"#,
        WIDTH - 1.0,
        EMPTY_HEIGHT - 1.0
    ));
    svg.push_str(&format!(
        r#"<text class="chart-note" x="{}" y="{}" dy="0.35em" text-anchor="middle" fill="{MUTED_FILL}">{NO_DATA}</text></svg>"#,
        WIDTH / 2.0,
        EMPTY_HEIGHT / 2.0
    ));
    svg
}

/// How a bucket's start is written: under the axis (one or two lines, as short as the range
/// allows) and in a bar's tooltip (in full).
struct TimeFormat {
    first_line: &'static str,
    second_line: Option<&'static str>,
    tooltip: &'static str,
}

impl TimeFormat {
    fn new(step: Duration, first: DateTime<Utc>, last: DateTime<Utc>) -> Self {
        let daily = step >= Duration::days(1);
        let (first_line, second_line) = if daily && first.year() != last.year() {
            ("%b %-d", Some("%Y"))
        } else if daily {
            ("%b %-d", None)
        } else if first.date_naive() == last.date_naive() {
            ("%H:%M", None)
        } else {
            ("%b %-d", Some("%H:%M"))
        };
        let tooltip = if daily { "%Y-%m-%d" } else { "%Y-%m-%d %H:%M UTC" };
        Self {
            first_line,
            second_line,
            tooltip,
        }
    }
}

/// Which bars get a time label: the first, the last and evenly spaced ones between.
fn labelled(count: usize) -> Vec<usize> {
    if count <= TIME_LABELS {
        return (0..count).collect();
    }
    (0..TIME_LABELS)
        .map(|i| (i * (count - 1) + (TIME_LABELS - 1) / 2) / (TIME_LABELS - 1))
        .collect()
}

/// A time series as vertical bars, one per bucket (`points` in time order, each bucket `step`
/// long; a bucket without data should be given as 0, or the bars would not be evenly spaced in
/// time). The value axis rounds the peak up to a round number with 3 to 5 gridlines. All zero or
/// no points: an empty chart.
pub fn time_bars(title: &str, unit: &str, step: Duration, points: &[(DateTime<Utc>, i64)]) -> String {
    let peak = points.iter().map(|(_, v)| (*v).max(0)).max().unwrap_or(0);
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return empty(title);
    };
    if peak == 0 {
        return empty(title);
    }
    let format = TimeFormat::new(step, first.0, last.0);
    let total = points.iter().map(|(_, v)| (*v).max(0)).fold(0i64, i64::saturating_add);
    let summary = format!(
        "{title}: {} buckets from {} to {}, peak {} {unit}, total {} {unit}",
        points.len(),
        first.0.format(format.tooltip),
        last.0.format(format.tooltip),
        grouped(peak),
        grouped(total)
    );
    let mut svg = open(title, &summary, SERIES_HEIGHT);
    let top = value_axis(&mut svg, peak);
    let slot = (PLOT_RIGHT - PLOT_LEFT) / points.len() as f64;
    // A gap between bars while they are wide enough to show one.
    let gap = if slot > 4.0 { slot * 0.2 } else { 0.0 };
    let plot_height = PLOT_BOTTOM - PLOT_TOP;
    for (i, (start, value)) in points.iter().enumerate() {
        let height = (*value).max(0) as f64 / top as f64 * plot_height;
        svg.push_str(&format!(
            r#"<rect class="chart-bar" x="{:.1}" y="{:.1}" width="{:.1}" height="{height:.1}" fill="{BAR_FILL}"><title>{}: {} {}</title></rect>"#,
            PLOT_LEFT + i as f64 * slot + gap / 2.0,
            PLOT_BOTTOM - height,
            slot - gap,
            start.format(format.tooltip),
            grouped(*value),
            escape(unit)
        ));
    }
    time_axis(&mut svg, &format, points, slot);
    svg.push_str("</svg>");
    svg
}

/// The gridlines and their values; answers the axis' top value.
fn value_axis(svg: &mut String, peak: i64) -> u64 {
    let (step, ticks) = axis_scale(peak.unsigned_abs());
    for i in 0..=ticks {
        let y = PLOT_BOTTOM - (i as f64 / ticks as f64) * (PLOT_BOTTOM - PLOT_TOP);
        let (class, stroke) = if i == 0 {
            ("chart-axis", AXIS_STROKE)
        } else {
            ("chart-grid", GRID_STROKE)
        };
        let value = i64::try_from(step.saturating_mul(i)).unwrap_or(i64::MAX);
        svg.push_str(&format!(
            r#"<line class="{class}" x1="{PLOT_LEFT}" y1="{y:.1}" x2="{PLOT_RIGHT}" y2="{y:.1}" stroke="{stroke}"/><text class="chart-tick" x="{}" y="{y:.1}" dy="0.35em" text-anchor="end" fill="{MUTED_FILL}">{}</text>"#,
            PLOT_LEFT - 8.0,
            compact(value)
        ));
    }
    step.saturating_mul(ticks)
}

/// A few time labels under the bars; the first and last aligned to the plot's edges so they
/// stay inside it.
fn time_axis(svg: &mut String, format: &TimeFormat, points: &[(DateTime<Utc>, i64)], slot: f64) {
    let indices = labelled(points.len());
    let last = indices.len().saturating_sub(1);
    for (n, &i) in indices.iter().enumerate() {
        let Some((start, _)) = points.get(i) else { continue };
        let (x, anchor) = match n {
            _ if indices.len() == 1 => (PLOT_LEFT + slot * (i as f64 + 0.5), "middle"),
            0 => (PLOT_LEFT, "start"),
            n if n == last => (PLOT_RIGHT, "end"),
            _ => (PLOT_LEFT + slot * (i as f64 + 0.5), "middle"),
        };
        let mut text = format!(
            r#"<text class="chart-tick" x="{x:.1}" y="{PLOT_BOTTOM}" text-anchor="{anchor}" fill="{MUTED_FILL}"><tspan x="{x:.1}" dy="1.3em">{}</tspan>"#,
            start.format(format.first_line)
        );
        if let Some(second) = format.second_line {
            text.push_str(&format!(
                r#"<tspan x="{x:.1}" dy="1.2em">{}</tspan>"#,
                start.format(second)
            ));
        }
        text.push_str("</text>");
        svg.push_str(&text);
    }
}

/// Labelled counts as horizontal bars, one row each in the order given: the label, the bar
/// (scaled to the largest count), the count. All zero or no rows: an empty chart.
pub fn bars(title: &str, unit: &str, rows: &[(String, i64)]) -> String {
    let peak = rows.iter().map(|(_, v)| (*v).max(0)).max().unwrap_or(0);
    if peak == 0 {
        return empty(title);
    }
    let total = rows.iter().map(|(_, v)| (*v).max(0)).fold(0i64, i64::saturating_add);
    let height = ROWS_TOP * 2.0 + rows.len() as f64 * ROW_HEIGHT;
    let summary = format!("{title}: {} rows, total {} {unit}", rows.len(), grouped(total));
    let mut svg = open(title, &summary, height);
    for (i, (label, value)) in rows.iter().enumerate() {
        let value = (*value).max(0);
        let middle = ROWS_TOP + (i as f64 + 0.5) * ROW_HEIGHT;
        // A count above zero stays visible however small beside the largest.
        let length = if value > 0 {
            (value as f64 / peak as f64 * BAR_MAX_LENGTH).max(1.0)
        } else {
            0.0
        };
        svg.push_str(&format!(
            r#"<g><title>{}: {} {} ({})</title><text class="chart-label" x="0" y="{middle:.1}" dy="0.35em" fill="{TEXT_FILL}">{}</text><rect class="chart-bar" x="{LABEL_WIDTH}" y="{:.1}" width="{length:.1}" height="{BAR_THICKNESS}" fill="{BAR_FILL}"/><text class="chart-tick" x="{:.1}" y="{middle:.1}" dy="0.35em" fill="{MUTED_FILL}">{}</text></g>"#,
            escape(label),
            grouped(value),
            escape(unit),
            share(value, total),
            escape(&truncate(label, LABEL_CHARS)),
            middle - BAR_THICKNESS / 2.0,
            LABEL_WIDTH + length + 8.0,
            compact(value)
        ));
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    /// A minimal well-formedness check: tags balance and nest, attribute quotes pair, every `&`
    /// starts an entity, no `<` or `>` is left in text or attribute values.
    fn assert_well_formed(svg: &str) {
        for (i, _) in svg.match_indices('&') {
            let rest = &svg[i..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"]
                    .iter()
                    .any(|e| rest.starts_with(e)),
                "a bare & at {i}: {}",
                &rest[..rest.len().min(20)]
            );
        }
        let mut open: Vec<&str> = Vec::new();
        let mut rest = svg;
        while let Some(start) = rest.find('<') {
            assert!(!rest[..start].contains('>'), "a > in text: {}", &rest[..start]);
            let end = rest[start..].find('>').expect("every tag ends") + start;
            let tag = &rest[start + 1..end];
            assert!(!tag.contains('<'), "a < inside a tag: {tag}");
            assert_eq!(tag.matches('"').count() % 2, 0, "unpaired quotes: {tag}");
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(open.pop(), Some(name), "closing tag out of order");
            } else if !tag.ends_with('/') {
                open.push(tag.split_whitespace().next().expect("a tag has a name"));
            }
            rest = &rest[end + 1..];
        }
        assert!(rest.trim().is_empty(), "text after the root: {rest}");
        assert!(open.is_empty(), "unclosed: {open:?}");
        assert!(svg.starts_with("<svg "), "one root element");
    }

    /// What the page's CSP would refuse, and what a chart must always have.
    fn assert_safe_and_labelled(svg: &str) {
        assert!(!svg.contains("style="), "no inline style");
        assert!(!svg.to_lowercase().contains("<script"), "no script");
        assert!(svg.contains("viewBox=\"0 0 800 "));
        assert!(svg.contains("width=\"100%\""));
        assert!(svg.contains("role=\"img\"") && svg.contains("aria-label=\""));
        assert!(svg.contains("<title>"));
    }

    fn hours(values: &[i64]) -> Vec<(DateTime<Utc>, i64)> {
        let start = Utc
            .with_ymd_and_hms(2025, 5, 3, 22, 0, 0)
            .single()
            .expect("a valid time");
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (start + Duration::hours(i as i64), *v))
            .collect()
    }

    fn bar_count(svg: &str) -> usize {
        svg.matches("class=\"chart-bar\"").count()
    }

    #[test]
    fn the_axis_max_rounds_up_to_a_round_step() {
        // (peak, step, steps): the top is step × steps, at or above the peak.
        for (peak, step, steps) in [
            (1, 1, 2),
            (3, 1, 3),
            (4, 1, 4),
            (5, 2, 3),
            (9, 5, 2),
            (10, 5, 2),
            (11, 5, 3),
            (100, 50, 2),
            (101, 50, 3),
            (1_234, 500, 3),
            (3_456_789, 1_000_000, 4),
            (7_000_001, 2_000_000, 4),
        ] {
            assert_eq!(axis_scale(peak), (step, steps), "peak {peak}");
        }
        for peak in (1..5_000).chain([u64::MAX / 3, u64::MAX]) {
            let (step, steps) = axis_scale(peak);
            assert!((2..=4).contains(&steps), "peak {peak}: {steps} steps");
            assert!(step.saturating_mul(steps) >= peak, "peak {peak} above the axis");
        }
    }

    #[test]
    fn counts_are_written_compactly() {
        assert_eq!(compact(0), "0");
        assert_eq!(compact(999), "999");
        assert_eq!(compact(1_000), "1k");
        assert_eq!(compact(1_234), "1.2k");
        assert_eq!(compact(12_345), "12.3k");
        assert_eq!(compact(99_960), "100k");
        assert_eq!(compact(150_600), "151k");
        assert_eq!(compact(999_999), "1M");
        assert_eq!(compact(3_400_000), "3.4M");
        assert_eq!(compact(7_000_000_000), "7B");
        assert_eq!(compact(-1_500), "-1.5k");
        assert_eq!(compact(i64::MAX), "9223372T");
    }

    #[test]
    fn labels_are_escaped() {
        let name = "<script>&\"";
        let svg = bars(name, "requests", &[(name.to_string(), 3), ("gpt-4o".to_string(), 1)]);
        assert_well_formed(&svg);
        assert_safe_and_labelled(&svg);
        assert!(svg.contains("&lt;script&gt;&amp;&quot;"));
        assert!(!svg.contains(name));
        let series = time_bars(name, "<b>", Duration::hours(1), &hours(&[1, 2]));
        assert_well_formed(&series);
        assert_safe_and_labelled(&series);
        assert!(!series.contains(name) && !series.contains("<b>"));
    }

    #[test]
    fn one_bar_per_point_and_per_row() {
        let values: Vec<i64> = (0..168).map(|i| (i * 37) % 11).collect();
        let svg = time_bars("Requests", "requests", Duration::hours(1), &hours(&values));
        assert_eq!(bar_count(&svg), 168);
        assert_well_formed(&svg);
        assert_safe_and_labelled(&svg);
        let rows: Vec<(String, i64)> = (0..12).map(|i| (format!("≤{} ms", i * 10), i)).collect();
        let svg = bars("Latency", "requests", &rows);
        assert_eq!(bar_count(&svg), 12, "a zero row is a bar of no length, still there");
        assert_well_formed(&svg);
    }

    #[test]
    fn the_time_axis_has_a_few_labels() {
        let svg = time_bars("Tokens", "tokens", Duration::hours(1), &hours(&[5; 48]));
        // Two days: each label is a date and a time.
        assert_eq!(svg.matches("<tspan").count(), 2 * TIME_LABELS);
        assert!(svg.contains(">May 3</tspan>") && svg.contains(">22:00</tspan>"));
        // Within one day: the time alone; fewer bars than labels: one label each.
        let svg = time_bars("Tokens", "tokens", Duration::hours(1), &hours(&[5; 2]));
        assert_eq!(svg.matches("<tspan").count(), 2);
        let svg = time_bars("Tokens", "tokens", Duration::days(1), &hours(&[5; 3]));
        assert_eq!(svg.matches("<tspan").count(), 3, "daily: the date alone");
        assert_eq!(labelled(168), vec![0, 56, 111, 167]);
        assert_eq!(labelled(1), vec![0]);
    }

    #[test]
    fn the_value_axis_has_three_to_five_gridlines() {
        let svg = time_bars("Tokens", "tokens", Duration::days(1), &hours(&[1_234, 0, 900]));
        assert_eq!(svg.matches("<line ").count(), 4, "0, 500, 1k, 1.5k");
        assert!(svg.contains(">1.5k</text>"));
    }

    #[test]
    fn empty_input_draws_an_empty_chart() {
        for svg in [
            time_bars("Tokens", "tokens", Duration::hours(1), &[]),
            time_bars("Tokens", "tokens", Duration::hours(1), &hours(&[0, 0, 0])),
            bars("Models", "requests", &[]),
            bars("Latency", "requests", &[("≤10 ms".to_string(), 0)]),
        ] {
            assert_eq!(bar_count(&svg), 0);
            assert!(svg.contains(NO_DATA));
            assert_well_formed(&svg);
            assert_safe_and_labelled(&svg);
        }
    }

    #[test]
    fn long_labels_are_cut_with_an_ellipsis() {
        assert_eq!(truncate("gpt-4o", LABEL_CHARS), "gpt-4o");
        assert_eq!(
            truncate("claude-3-5-sonnet-20241022", LABEL_CHARS),
            "claude-3-5-sonnet…"
        );
        let svg = bars("Models", "requests", &[("claude-3-5-sonnet-20241022".to_string(), 4)]);
        assert!(svg.contains("<title>claude-3-5-sonnet-20241022: 4 requests (100.0%)</title>"));
    }
}
