//! `leasehold bench --plot FILE.svg`: the rows that have a ratio, as horizontal bars against
//! the raw operation (1.0) and each row's target. A picture for the docs, written by hand (a
//! few rects and lines) so the bench needs no plotting library or font files.

use std::fmt::Write as _;

use crate::bench::{Benched, Target, fmt_target};

/// Width of the label column, of the bar area, and the height of one row, in SVG units.
const LABEL_W: f64 = 460.0;
const BARS_W: f64 = 420.0;
const ROW_H: f64 = 22.0;
const TOP: f64 = 64.0;

/// The SVG document for `b`: one bar per row with a ratio (green PASS, red FAIL, grey
/// information), a line across it from the lowest to the highest round's ratio, a dashed line at
/// 1.0 and a tick at each ratio target.
pub(crate) fn svg(b: &Benched) -> String {
    let rows: Vec<_> = b
        .rows
        .iter()
        .filter_map(|r| r.ratio.map(|ratio| (r, ratio)))
        .collect();
    // The scale runs to the largest ratio or target, at least 1.25 (so 1.0 is always shown).
    let max = rows
        .iter()
        .map(|&(r, ratio)| {
            let hi = ratio.max(r.ratio_max.unwrap_or(ratio));
            match r.target {
                Target::RatioAtLeast(t) => hi.max(t),
                _ => hi,
            }
        })
        .fold(1.25_f64, f64::max);
    let x = |v: f64| LABEL_W + BARS_W * (v.max(0.0) / max);
    let height = TOP + ROW_H * rows.len() as f64 + 30.0;
    let width = LABEL_W + BARS_W + 170.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="monospace" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="{width}" height="{height}" fill="white"/>"#
    );
    let sizes: Vec<String> = b.sessions.iter().map(|n| n.to_string()).collect();
    let _ = writeln!(
        s,
        r#"<text x="10" y="20" font-size="14">{} — sessions {} — {} rounds</text>"#,
        escape(&b.store),
        sizes.join(","),
        b.rounds
    );
    let _ = writeln!(
        s,
        r#"<text x="10" y="38">ratio = raw time ÷ leasehold time (higher is better)</text>"#
    );
    let one = x(1.0);
    let bottom = TOP + ROW_H * rows.len() as f64;
    let _ = writeln!(
        s,
        r##"<line x1="{one:.1}" y1="{:.1}" x2="{one:.1}" y2="{bottom:.1}" stroke="#444" stroke-dasharray="4 3"/>"##,
        TOP - 6.0
    );
    let _ = writeln!(
        s,
        r#"<text x="{one:.1}" y="{:.1}" text-anchor="middle">1.0 = the raw operation</text>"#,
        TOP - 10.0
    );
    for (i, &(r, ratio)) in rows.iter().enumerate() {
        let y = TOP + ROW_H * i as f64;
        // Coloured by the verdict only where the verdict is on the ratio; a row judged on its
        // own value (reap rows/s, bytes) says so beside its bar.
        let on_ratio = matches!(r.target, Target::RatioAtLeast(_));
        let fill = match (on_ratio, r.result) {
            (true, "PASS") => "#2e8b57",
            (true, "FAIL") => "#c0392b",
            _ => "#999999",
        };
        let verdict = match r.target {
            Target::RatioAtLeast(_) | Target::None => String::new(),
            t => format!(" ({} {})", r.result, fmt_target(t, r.unit)),
        };
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LABEL_W - 8.0,
            y + 15.0,
            escape(&r.name)
        );
        let _ = writeln!(
            s,
            r#"<rect class="bar" x="{LABEL_W}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{fill}"><title>{}: {ratio:.2} ({})</title></rect>"#,
            y + 4.0,
            x(ratio) - LABEL_W,
            ROW_H - 8.0,
            escape(&r.name),
            r.result
        );
        let mut label_x = x(ratio);
        if let (Some(lo), Some(hi)) = (r.ratio_min, r.ratio_max) {
            let _ = writeln!(
                s,
                r#"<line class="spread" x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="black"/>"#,
                x(lo),
                y + ROW_H / 2.0,
                x(hi),
                y + ROW_H / 2.0
            );
            label_x = label_x.max(x(hi));
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}">{ratio:.2}{}</text>"#,
            label_x + 4.0,
            y + 15.0,
            escape(&verdict)
        );
        if let Target::RatioAtLeast(t) = r.target {
            let tx = x(t);
            let _ = writeln!(
                s,
                r#"<line class="target" x1="{tx:.1}" y1="{:.1}" x2="{tx:.1}" y2="{:.1}" stroke="black" stroke-width="2"/>"#,
                y + 1.0,
                y + ROW_H - 1.0
            );
        }
    }
    let _ = writeln!(
        s,
        r#"<text x="{LABEL_W}" y="{:.1}">green PASS, red FAIL (ratio targets, black ticks); grey: information; thin line: lowest to highest round</text>"#,
        bottom + 20.0
    );
    s.push_str("</svg>\n");
    s
}

/// Text for an SVG element's content or attribute.
fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{Row, Unit};

    fn row(name: &str, ratio: Option<f64>, target: Target, result: &'static str) -> Row {
        let mut r = Row::new(name.into(), "raw", Unit::Ns, target);
        r.ratio = ratio;
        r.result = result;
        r
    }

    #[test]
    fn one_bar_per_ratio_and_a_tick_per_ratio_target() {
        let b = Benched {
            store: "redis://h:1 <&>".into(),
            sessions: vec![10_000],
            rounds: 3,
            grow: None,
            rows: vec![
                row("a <row>", Some(0.5), Target::RatioAtLeast(0.9), "FAIL"),
                row("b", Some(2.0), Target::RatioAtLeast(0.95), "PASS"),
                row("c", Some(0.3), Target::None, "info"),
                row("no ratio", None, Target::AtMostNs(1.0), "PASS"),
                row("reap", Some(0.4), Target::AtLeast(40_000.0), "PASS"),
            ],
        };
        let s = svg(&b);
        assert!(s.starts_with("<svg "), "{s}");
        assert!(s.trim_end().ends_with("</svg>"), "{s}");
        assert_eq!(s.matches(r#"class="bar""#).count(), 4, "{s}");
        assert_eq!(s.matches(r#"class="target""#).count(), 2, "{s}");
        assert!(
            s.contains("a &lt;row&gt;") && s.contains("h:1 &lt;&amp;&gt;"),
            "{s}"
        );
        assert!(!s.contains("no ratio"), "{s}");
        assert!(s.contains("#c0392b") && s.contains("#2e8b57") && s.contains("#999999"));
        // Judged on its own value: grey, with its verdict and target beside the bar.
        assert!(s.contains("0.40 (PASS ≥ "), "{s}");
        // The scale stretches to the largest ratio: "b" (2.0) fills the bar area.
        assert!(s.contains(&format!(r#"width="{BARS_W:.1}""#)), "{s}");
        assert!(
            !s.contains(r#"class="spread""#),
            "no rounds' range, no line: {s}"
        );
    }

    /// A row with its rounds' range gets a line from the lowest to the highest, and the
    /// scale stretches to the highest round.
    #[test]
    fn a_line_spans_the_rounds() {
        let mut a = row("a", Some(0.5), Target::RatioAtLeast(0.9), "FAIL");
        (a.ratio_min, a.ratio_max) = (Some(0.25), Some(2.5));
        let b = Benched {
            store: "memory:".into(),
            sessions: vec![10_000],
            rounds: 3,
            grow: None,
            rows: vec![a],
        };
        let s = svg(&b);
        assert_eq!(s.matches(r#"class="spread""#).count(), 1, "{s}");
        let (lo, hi) = (LABEL_W + BARS_W * 0.1, LABEL_W + BARS_W);
        assert!(s.contains(&format!(r#"x1="{lo:.1}""#)), "{s}");
        assert!(s.contains(&format!(r#"x2="{hi:.1}""#)), "{s}");
    }
}
