//! The header: month, spend, burn, forecast, and the two budget gauges.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::theme::{Level, Theme};
use super::{format, spans_width, text};
use crate::app::view::{Header, Pending};
use crate::money::Money;

/// Rows the header takes.
pub const HEIGHT: u16 = 3;

/// `window` is the drill-down's time window, shown while a drill-down is open;
/// `pending`, while the history loads, which figures wait for it; `month_so_far`,
/// the month's spend read in one sum at the start, shown until the month is in.
pub fn render(
    h: &Header,
    pending: Option<&Pending>,
    month_so_far: Option<Money>,
    window: Option<&str>,
    theme: Theme,
    area: Rect,
    buf: &mut Buffer,
) {
    // One blank column on each side.
    let area = Rect {
        x: area.x.saturating_add(1),
        width: area.width.saturating_sub(2),
        ..area
    };
    if area.is_empty() {
        return;
    }
    let w = area.width as usize;
    let row = |i: u16| Rect {
        y: area.y + i,
        height: 1,
        ..area
    };

    if h.month.is_empty() {
        // Nothing known yet (before the first tick): no "day 0.0 of 0".
        Line::from(Span::styled("burnrate", theme.title())).render(row(0), buf);
        return;
    }
    // Row 1: what month, how far into it; the budget at the right.
    let month = format!(
        "{}, {}",
        format::month(&h.month),
        text::clean(&h.time_zone, 32)
    );
    let days = format::days(h.days_elapsed);
    let full = vec![
        Span::styled("burnrate", theme.title()),
        Span::raw("  "),
        Span::styled(month.clone(), theme.value()),
        Span::raw("  "),
        Span::styled("day ", theme.muted()),
        Span::raw(format!("{days} of {}", h.days_in_month)),
    ];
    let mut left = if spans_width(&full) <= w {
        full
    } else {
        vec![
            Span::styled(month, theme.value()),
            Span::styled("  day ", theme.muted()),
            Span::raw(format!("{days}/{}", h.days_in_month)),
        ]
    };
    if let Some(window) = window {
        // The window goes before everything else on this line but the month.
        let label = [
            Span::styled("  window ", theme.muted()),
            Span::styled(window.to_string(), theme.key()),
        ];
        if spans_width(&left) + spans_width(&label) > w {
            left.truncate(1);
        }
        left.extend(label);
    }
    let right = h.budget.map(|b| {
        let mut spans = Vec::new();
        if let Some(d) = h.budget_exhausted_on {
            spans.push(Span::styled(
                format!("runs out {}  ", d.format("%b %-d")),
                theme.warn(),
            ));
        }
        spans.extend([
            Span::styled("budget ", theme.muted()),
            Span::raw(b.display_usd()),
            Span::styled("/month", theme.muted()),
        ]);
        spans
    });
    if let Some(right) = right
        && spans_width(&left) + 2 + spans_width(&right) <= w
    {
        let pad = w - spans_width(&left) - spans_width(&right);
        left.push(Span::raw(" ".repeat(pad)));
        left.extend(right);
    }
    Line::from(left).render(row(0), buf);

    if h.loading {
        // No figures before the history is in (not "$0.00"); the budget, if any,
        // is on the first row.
        if area.height > 1 {
            let line = match month_so_far {
                Some(m) => so_far_line(
                    m,
                    &[
                        "burn and forecast once the history is in",
                        "burn, forecast: loading",
                    ],
                    theme,
                    w,
                ),
                None => Line::from(Span::styled(
                    text::fit("month-to-date, burn and forecast once the history is in", w),
                    theme.muted(),
                )),
            };
            line.render(row(1), buf);
        }
        if area.height > 2 && h.budget.is_none() {
            no_budget(theme).render(row(2), buf);
        }
        return;
    }

    if let Some(p) = pending.filter(|p| p.month) {
        // The month is not all in: no month-to-date from part of it.
        if area.height > 1 {
            let back_to = p.month_start.format("%b %-d");
            let line = match month_so_far {
                Some(m) => so_far_line(
                    m,
                    &[
                        &format!(
                            "burn and forecast {LOADING} waiting for the history back to {back_to}"
                        ),
                        &format!("burn, forecast {LOADING} history back to {back_to}"),
                    ],
                    theme,
                    w,
                ),
                None => Line::from(Span::styled(
                    text::fit(
                        &format!(
                            "month-to-date, burn and forecast {LOADING} waiting for the history back to {back_to}"
                        ),
                        w,
                    ),
                    theme.muted(),
                )),
            };
            line.render(row(1), buf);
        }
        if area.height > 2 {
            match h.budget {
                Some(_) => Line::from(Span::styled(
                    format!("spent {LOADING}   forecast {LOADING}"),
                    theme.muted(),
                ))
                .render(row(2), buf),
                None => no_budget(theme).render(row(2), buf),
            }
        }
        return;
    }
    let forecast_waits = pending.is_some_and(|p| p.forecast);

    // Row 2: the numbers, with shorter labels when narrow.
    if area.height > 1 {
        Line::from(figures(h, forecast_waits, theme, w)).render(row(1), buf);
    }

    // Row 3: the gauges, or why there are none.
    if area.height > 2 {
        match h.budget {
            Some(budget) => gauges(h, budget, forecast_waits, theme, row(2), buf),
            None => no_budget(theme).render(row(2), buf),
        }
    }
}

/// A figure that waits for the history.
const LOADING: &str = "…";

/// "month-to-date $1,713 at start   burn and forecast …": the month read in one
/// sum while its rows load (as of the start: the tail begins after the history),
/// then the first of `waiting` that fits in `w` (the last one cut).
fn so_far_line(month: Money, waiting: &[&str], theme: Theme, w: usize) -> Line<'static> {
    let figure = vec![
        Span::styled("month-to-date ", theme.muted()),
        Span::styled(month.display_usd(), theme.value()),
        Span::styled(" at start", theme.muted()),
    ];
    let room = w.saturating_sub(spans_width(&figure) + 3);
    let mut spans = figure;
    let fits = waiting.iter().find(|t| text::width(t) <= room);
    if let Some(t) = fits.or(waiting.last()).filter(|_| room > 3) {
        spans.push(Span::styled(
            format!("   {}", text::fit(t, room)),
            theme.muted(),
        ));
    }
    Line::from(spans)
}

fn no_budget(theme: Theme) -> Line<'static> {
    Line::from(vec![
        Span::styled("no budget set ", theme.warn()),
        Span::styled("(budget.monthly_usd)", theme.muted()),
    ])
}

/// `forecast_waits`: the forecast reads every day of the history, not all in yet.
fn figures(h: &Header, forecast_waits: bool, theme: Theme, w: usize) -> Vec<Span<'static>> {
    let method = if forecast_waits {
        "waits for the history".to_string()
    } else {
        text::clean(&h.forecast_method, 24)
    };
    let v = |m: Money| Span::styled(m.display_usd(), theme.value());
    let fc = || {
        if forecast_waits {
            Span::styled(LOADING, theme.muted())
        } else {
            v(h.forecast)
        }
    };
    let l = |s: &'static str| Span::styled(s, theme.muted());
    let method_span = || Span::styled(format!(" ({method})"), theme.muted());
    let interval = match (h.forecast_low, h.forecast_high) {
        (Some(lo), Some(hi)) => vec![Span::styled(
            format!(" ({}-{} 80%, {method})", lo.display_usd(), hi.display_usd()),
            theme.muted(),
        )],
        _ => vec![method_span()],
    };
    let candidates = [
        [
            vec![
                l("month-to-date "),
                v(h.month_to_date),
                l("   burn "),
                v(h.daily_burn),
                l("/day"),
                l("   forecast "),
                fc(),
            ],
            interval,
        ]
        .concat(),
        vec![
            l("month-to-date "),
            v(h.month_to_date),
            l("   burn "),
            v(h.daily_burn),
            l("/day"),
            l("   forecast "),
            fc(),
            method_span(),
        ],
        vec![
            l("MTD "),
            v(h.month_to_date),
            l("  burn "),
            v(h.daily_burn),
            l("/d"),
            l("  forecast "),
            fc(),
            method_span(),
        ],
        vec![
            l("MTD "),
            v(h.month_to_date),
            l("  burn "),
            v(h.daily_burn),
            l("/d"),
            l("  fcst "),
            fc(),
        ],
        vec![
            l("MTD "),
            v(h.month_to_date),
            l(" "),
            v(h.daily_burn),
            l("/d"),
            l(" fcst "),
            fc(),
        ],
    ];
    let last = candidates.len() - 1;
    candidates
        .into_iter()
        .enumerate()
        .find(|(i, c)| *i == last || spans_width(c) <= w)
        .map(|(_, c)| c)
        .unwrap_or_default()
}

/// Spend over budget as a ratio; a zero (or negative) budget is infinitely exceeded
/// by any spend.
fn ratio(spend: Money, budget: Money) -> f64 {
    if budget.picos() > 0 {
        spend.as_f64() / budget.as_f64()
    } else if spend.picos() > 0 {
        f64::INFINITY
    } else {
        0.0
    }
}

fn gauges(
    h: &Header,
    budget: Money,
    forecast_waits: bool,
    theme: Theme,
    area: Rect,
    buf: &mut Buffer,
) {
    let gap = 3;
    let half = area.width.saturating_sub(gap) / 2;
    let left = Rect {
        width: half,
        ..area
    };
    // Both halves the same width, so the bars line up in length.
    let right = Rect {
        x: area.x + half + gap,
        width: half,
        ..area
    };
    gauge("spent", ratio(h.month_to_date, budget), theme, left, buf);
    if forecast_waits {
        Line::from(vec![
            Span::styled(format!("{:<9}", "forecast"), theme.muted()),
            Span::styled(format!("{LOADING} waits for the history"), theme.muted()),
        ])
        .render(right, buf);
        return;
    }
    match (h.forecast_low, h.forecast_high) {
        (Some(lo), Some(hi)) => forecast_gauge(
            [
                ratio(lo, budget),
                ratio(h.forecast, budget),
                ratio(hi, budget),
            ],
            theme,
            right,
            buf,
        ),
        _ => gauge("forecast", ratio(h.forecast, budget), theme, right, buf),
    }
}

/// The forecast gauge with its 80% interval and the budget marked:
/// "forecast ████▓▓▒▒░│░ 104%". Filled up to the interval's low end, `▓` up to
/// the forecast, `▒` up to the high end; when the interval passes the budget the
/// scale stretches (to 2x at most) and `│` marks where the budget is.
fn forecast_gauge(r: [f64; 3], theme: Theme, area: Rect, buf: &mut Buffer) {
    let [lo, mid, hi] = r.map(|x| {
        if x.is_nan() {
            f64::INFINITY
        } else {
            x.max(0.0)
        }
    });
    let level = Theme::budget_level(mid);
    let style = theme.level(level);
    let pct = format!(" {:>4}", format::percent(mid));
    let over = if level == Level::Bad { " OVER" } else { "" };
    let label = format!("{:<9}", "forecast");
    let fixed = label.len() + pct.len() + over.len();
    let bar_w = (area.width as usize).saturating_sub(fixed);
    let mut spans = vec![Span::styled(label, theme.muted())];
    if bar_w >= 3 {
        let scale = hi.max(mid).clamp(1.0, 2.0);
        let budget_cell =
            (scale > 1.0).then(|| ((bar_w as f64 / scale).round() as usize).min(bar_w - 1));
        let mut run = String::new();
        let mut run_style = style;
        for i in 0..bar_w {
            let pos = (i as f64 + 0.5) / bar_w as f64 * scale;
            let (c, st) = if Some(i) == budget_cell {
                ('│', theme.bad())
            } else if pos <= lo {
                (format::GAUGE_FULL, style)
            } else if pos <= mid {
                ('▓', style)
            } else if pos <= hi {
                ('▒', style)
            } else {
                (format::GAUGE_EMPTY, theme.gauge_empty())
            };
            if st != run_style && !run.is_empty() {
                spans.push(Span::styled(std::mem::take(&mut run), run_style));
            }
            run_style = st;
            run.push(c);
        }
        spans.push(Span::styled(run, run_style));
    }
    spans.push(Span::styled(pct, style));
    spans.push(Span::styled(over, style));
    Line::from(spans).render(area, buf);
}

/// "spent    ██████░░░░  62%" or, over budget, "forecast ██████████ 128% OVER".
fn gauge(label: &'static str, ratio: f64, theme: Theme, area: Rect, buf: &mut Buffer) {
    let level = Theme::budget_level(ratio);
    let style = theme.level(level);
    let pct = format!(" {:>4}", format::percent(ratio));
    let over = if level == Level::Bad { " OVER" } else { "" };
    let label = format!("{label:<9}");
    let fixed = label.len() + pct.len() + over.len();
    let bar_w = (area.width as usize).saturating_sub(fixed);
    let mut spans = vec![Span::styled(label, theme.muted())];
    if bar_w >= 3 {
        let (full, empty) = format::gauge(ratio, bar_w);
        spans.push(Span::styled(full, style));
        spans.push(Span::styled(empty, theme.gauge_empty()));
    }
    spans.push(Span::styled(pct, style));
    spans.push(Span::styled(over, style));
    Line::from(spans).render(area, buf);
}
