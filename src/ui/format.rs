//! Short texts for numbers, times and bars. Formatting only: no money is computed
//! here (f64 appears only for ratios and for scaling bars).

use chrono::{DateTime, Utc};

use super::text;

/// Eighth blocks, lowest first.
pub const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
pub const GAUGE_FULL: char = '█';
pub const GAUGE_EMPTY: char = '░';

/// "12,345", "123k", "1.2M", "3.4B".
pub fn count(n: u64) -> String {
    if n < 10_000 {
        group(n)
    } else if n < 1_000_000 {
        if n < 100_000 {
            format!("{:.1}k", n as f64 / 1e3)
        } else {
            format!("{}k", n / 1000)
        }
    } else if n < 1_000_000_000 {
        format!("{:.1}M", n as f64 / 1e6)
    } else {
        format!("{:.1}B", n as f64 / 1e9)
    }
}

fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A change as a signed percentage: 3.12 -> "+312%", -0.2 -> "-20%". Above +9,999%
/// (or not a number) it says so instead of growing the column.
pub fn change(c: f64) -> String {
    if c.is_nan() {
        return "?".into();
    }
    let pct = (c * 100.0).round();
    if pct > 9999.0 {
        ">9999%".into()
    } else if pct < -9999.0 {
        "<-9999%".into()
    } else if pct > 0.0 {
        format!("+{pct:.0}%")
    } else if pct == 0.0 {
        "0%".into()
    } else {
        format!("{pct:.0}%")
    }
}

/// A share or budget ratio as a whole percentage: 0.62 -> "62%"; capped at ">999%".
pub fn percent(r: f64) -> String {
    if r.is_nan() {
        return "?%".into();
    }
    let pct = (r * 100.0).round();
    if pct > 999.0 {
        ">999%".into()
    } else if pct < 0.0 {
        "0%".into()
    } else {
        format!("{pct:.0}%")
    }
}

/// A ratio of observed to expected: "4.2x", "12x".
pub fn times(r: f64) -> String {
    if !r.is_finite() || r >= 999.0 {
        ">999x".into()
    } else if r < 10.0 {
        format!("{r:.1}x")
    } else {
        format!("{r:.0}x")
    }
}

/// "2s ago", "5m ago", "3h ago", "2d ago". A refresh in the future (clock skew)
/// reads "0s ago".
pub fn age(now: DateTime<Utc>, then: DateTime<Utc>) -> String {
    let s = (now - then).num_seconds().max(0);
    if s < 60 {
        format!("{s}s ago")
    } else if s < 3600 {
        format!("{}m ago", s / 60)
    } else if s < 86_400 {
        format!("{}h ago", s / 3600)
    } else {
        format!("{}d ago", s / 86_400)
    }
}

/// A duration in seconds: "42s", "3m", "2h".
pub fn secs(s: i64) -> String {
    let s = s.max(0);
    if s < 120 {
        format!("{s}s")
    } else if s < 7200 {
        format!("{}m", s / 60)
    } else {
        format!("{}h", s / 3600)
    }
}

/// Events per second: "0.4", "12", "1.2k".
pub fn rate(r: f64) -> String {
    if !r.is_finite() || r <= 0.0 {
        "0".into()
    } else if r < 10.0 {
        format!("{r:.1}")
    } else if r < 10_000.0 {
        format!("{r:.0}")
    } else {
        count(r.min(u64::MAX as f64) as u64)
    }
}

/// "2026-11" -> "Nov 2026"; anything else is shown as it is (sanitised).
pub fn month(ym: &str) -> String {
    const NAMES: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    if let Some((y, m)) = ym.split_once('-')
        && let (Ok(y), Ok(m)) = (y.parse::<u32>(), m.parse::<usize>())
        && (1..=12).contains(&m)
    {
        return format!("{} {y}", NAMES[m - 1]);
    }
    text::sanitize(ym)
}

/// Days elapsed: "13.5"; never "NaN".
pub fn days(d: f64) -> String {
    if d.is_finite() && d >= 0.0 {
        format!("{:.1}", d.min(99_999.0))
    } else {
        "?".into()
    }
}

/// A one-row sparkline of spend, scaled from zero to the row's maximum: a zero
/// value is blank, any other value at least "▁". Shows the last `width` values,
/// right-aligned, so the newest is always at the right edge.
pub fn spark_from_zero(values: &[u64], width: usize) -> String {
    let shown = &values[values.len().saturating_sub(width)..];
    let max = shown.iter().copied().max().unwrap_or(0);
    let mut out = " ".repeat(width - shown.len());
    for &v in shown {
        if v == 0 || max == 0 {
            out.push(' ');
        } else {
            let eighths = ((v as f64 / max as f64) * 8.0).ceil().clamp(1.0, 8.0) as usize;
            out.push(BARS[eighths - 1]);
        }
    }
    out
}

/// A sparkline `rows` tall scaled from the minimum to the maximum of the present
/// values (the lowest shows as "▁", absent values are blank). Rows top first.
pub fn spark_min_max(values: &[Option<f64>], width: usize, rows: usize) -> Vec<String> {
    let shown = &values[values.len().saturating_sub(width)..];
    let present = shown.iter().flatten().copied().filter(|v| v.is_finite());
    let (lo, hi) = present.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let levels = rows * 8;
    let heights: Vec<usize> = shown
        .iter()
        .map(|v| match v {
            Some(v) if v.is_finite() && levels > 0 => {
                let frac = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
                1 + (frac * (levels - 1) as f64)
                    .round()
                    .clamp(0.0, (levels - 1) as f64) as usize
            }
            _ => 0,
        })
        .collect();
    (0..rows)
        .map(|r| {
            let base = (rows - 1 - r) * 8;
            let mut line = " ".repeat(width - shown.len());
            for &h in &heights {
                let fill = h.saturating_sub(base).min(8);
                line.push(if fill == 0 { ' ' } else { BARS[fill - 1] });
            }
            line
        })
        .collect()
}

/// The filled and empty parts of a gauge `width` cells wide for a ratio (capped at 1).
pub fn gauge(ratio: f64, width: usize) -> (String, String) {
    let r = if ratio.is_nan() {
        1.0
    } else {
        ratio.clamp(0.0, 1.0)
    };
    let filled = ((r * width as f64).round() as usize).min(width);
    (
        std::iter::repeat_n(GAUGE_FULL, filled).collect(),
        std::iter::repeat_n(GAUGE_EMPTY, width - filled).collect(),
    )
}

/// Follows a cost some of whose requests were priced from the price list, not logged.
pub const COMPUTED_MARK: &str = "≈";

/// A cost cell: the text, then the mark if any of its requests' costs were computed,
/// else (in a column where some are) a space, so the digits stay aligned.
pub fn cost_cell(text: String, computed: u64, column_has_mark: bool) -> String {
    if computed > 0 {
        text + COMPUTED_MARK
    } else if column_has_mark {
        text + " "
    } else {
        text
    }
}

/// The legend of the mark, longest form first: "≈ cost computed from the price list
/// for 1,234 requests", then shorter ones for narrow lines.
pub fn computed_legend(requests: u64) -> [String; 3] {
    let n = count(requests);
    let noun = if requests == 1 { "request" } else { "requests" };
    [
        format!("{COMPUTED_MARK} cost computed from the price list for {n} {noun}"),
        format!("{COMPUTED_MARK} priced from list: {n} req"),
        format!("{COMPUTED_MARK} {n} priced"),
    ]
}

/// Drops columns in `drop_order` until the row fits in `avail` cells (`spacing`
/// between columns), then gives the `name` column what is left, up to `name_want`,
/// or takes from it down to `name_min` when even the kept columns do not fit.
pub fn shrink_columns<C: Copy + PartialEq>(
    mut cols: Vec<(C, usize)>,
    drop_order: impl IntoIterator<Item = C>,
    name: C,
    (name_want, name_min): (usize, usize),
    avail: usize,
    spacing: usize,
) -> Vec<(C, usize)> {
    let total = |cols: &[(C, usize)]| {
        cols.iter().map(|(_, w)| w).sum::<usize>() + cols.len().saturating_sub(1) * spacing
    };
    for drop in drop_order {
        if total(&cols) <= avail {
            break;
        }
        cols.retain(|(c, _)| *c != drop);
    }
    let used = total(&cols);
    if let Some(col) = cols.iter_mut().find(|(c, _)| *c == name) {
        if used <= avail {
            col.1 = (col.1 + avail - used).min(name_want);
        } else {
            col.1 = col.1.saturating_sub(used - avail).max(name_min);
        }
    }
    cols
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn counts_are_compact() {
        assert_eq!(count(0), "0");
        assert_eq!(count(9_999), "9,999");
        assert_eq!(count(18_234), "18.2k");
        assert_eq!(count(123_456), "123k");
        assert_eq!(count(1_234_567), "1.2M");
        assert_eq!(count(u64::MAX), "18446744073.7B");
    }

    #[test]
    fn changes_and_percents() {
        assert_eq!(change(3.12), "+312%");
        assert_eq!(change(-0.2), "-20%");
        assert_eq!(change(0.0), "0%");
        assert_eq!(change(1e9), ">9999%");
        assert_eq!(change(f64::INFINITY), ">9999%");
        assert_eq!(change(f64::NAN), "?");
        assert_eq!(percent(0.62), "62%");
        assert_eq!(percent(1.28), "128%");
        assert_eq!(percent(f64::INFINITY), ">999%");
        assert_eq!(times(4.21), "4.2x");
        assert_eq!(times(999.0), ">999x");
    }

    #[test]
    fn ages_and_rates() {
        let t = Utc.with_ymd_and_hms(2026, 11, 14, 3, 0, 0).unwrap();
        assert_eq!(age(t, t - chrono::Duration::seconds(2)), "2s ago");
        assert_eq!(age(t, t - chrono::Duration::seconds(300)), "5m ago");
        assert_eq!(age(t, t + chrono::Duration::seconds(5)), "0s ago");
        assert_eq!(rate(41.23), "41");
        assert_eq!(rate(0.42), "0.4");
        assert_eq!(rate(f64::NAN), "0");
        assert_eq!(secs(42), "42s");
        assert_eq!(secs(600), "10m");
    }

    #[test]
    fn month_labels() {
        assert_eq!(month("2026-11"), "Nov 2026");
        assert_eq!(month("2026-13"), "2026-13");
        assert_eq!(month("\x1b[2Jx"), "x");
    }

    #[test]
    fn sparklines_scale_and_align_right() {
        assert_eq!(spark_from_zero(&[0, 1, 2, 4, 8], 5), " ▁▂▄█");
        assert_eq!(spark_from_zero(&[8, 8], 4), "  ██");
        assert_eq!(spark_from_zero(&[0, 0], 2), "  ");
        assert_eq!(spark_from_zero(&[1, 2, 3], 2), "▆█");
        assert_eq!(spark_from_zero(&[u64::MAX, 1], 2), "█▁");
        assert_eq!(spark_from_zero(&[], 0), "");
        let rows = spark_min_max(&[Some(1.0), None, Some(2.0)], 3, 2);
        assert_eq!(rows, vec!["  █", "▁ █"]);
        assert_eq!(spark_min_max(&[Some(5.0)], 1, 1), vec!["▅"]);
        assert_eq!(spark_min_max(&[None, Some(f64::NAN)], 2, 1), vec!["  "]);
        assert!(spark_min_max(&[Some(1.0)], 1, 0).is_empty());
    }

    #[test]
    fn computed_costs_are_marked_and_aligned() {
        assert_eq!(cost_cell("$1.20".into(), 3, true), "$1.20≈");
        assert_eq!(cost_cell("$1.20".into(), 0, true), "$1.20 ");
        assert_eq!(cost_cell("$1.20".into(), 0, false), "$1.20");
        assert_eq!(
            computed_legend(1)[0],
            "≈ cost computed from the price list for 1 request"
        );
        assert_eq!(computed_legend(18_234)[2], "≈ 18.2k priced");
    }

    #[test]
    fn gauges_cap_at_full() {
        assert_eq!(gauge(0.5, 4), ("██".into(), "░░".into()));
        assert_eq!(gauge(3.0, 3), ("███".into(), "".into()));
        assert_eq!(gauge(-1.0, 2), ("".into(), "░░".into()));
        assert_eq!(gauge(f64::NAN, 2), ("██".into(), "".into()));
        assert_eq!(gauge(0.5, 0), ("".into(), "".into()));
    }
}
