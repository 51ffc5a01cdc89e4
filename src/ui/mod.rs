//! Rendering: draws a [`Screen`] and nothing else. Reads the view models, never
//! changes them, does no I/O and computes no money (only formats it).
//!
//! Layout of the overview, top to bottom: header (3 rows), per-feature table,
//! anomaly pane, then "top cost drivers" beside the 30-day cost-per-request trend,
//! and the status bar on the last row. As the terminal shrinks, table columns and
//! then the lower panes give way first; below [`MIN_WIDTH`] x [`MIN_HEIGHT`] the
//! screen says it is too small.
//!
//! Every text that came from the database goes through [`text::sanitize`] before it
//! is drawn.

mod alerts;
mod anomalies;
mod drilldown;
mod drivers;
mod features;
mod format;
mod header;
mod help;
mod status;
pub mod text;
mod theme;
mod trend;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;

use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget, Wrap};

use crate::app::view::{BackfillProgress, Screen, ScrollLimits};
use theme::Theme;

/// Smallest terminal the overview is drawn in.
pub const MIN_WIDTH: u16 = 40;
pub const MIN_HEIGHT: u16 = 10;

/// Draws the whole screen into the frame.
pub fn draw(frame: &mut Frame, screen: &Screen) {
    let area = frame.area();
    render(screen, area, frame.buffer_mut());
}

/// Draws the whole screen into any buffer area (the frame's, or a test's).
pub fn render(screen: &Screen, area: Rect, buf: &mut Buffer) {
    let area = area.intersection(buf.area);
    if area.is_empty() {
        return;
    }
    let theme = Theme::new(screen.color);
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        too_small(area, buf, theme);
        return;
    }
    let header_area = Rect {
        height: header::HEIGHT,
        ..area
    };
    let status_area = Rect {
        y: area.bottom() - 1,
        height: 1,
        ..area
    };
    let body = Rect {
        y: header_area.bottom(),
        height: area.height - header::HEIGHT - 1,
        ..area
    };

    header::render(
        &screen.overview.header,
        screen.overview.pending.as_ref(),
        screen.backfill.and_then(|b| b.month_so_far),
        screen.drill.map(|d| d.window.short_label()),
        theme,
        header_area,
        buf,
    );
    match (screen.backfill, screen.drill) {
        // Nothing is in yet (or no overview was built from it yet): the progress.
        // From the first step's overview on, the dashboard, its waits marked.
        (Some(progress), _)
            if progress.loaded_from.is_none() || screen.overview.pending.is_none() =>
        {
            loading(progress, theme, body, buf)
        }
        // The history is in, its overview not built yet: not an empty dashboard
        // ("No anomalies") for the moment the first build takes.
        (None, _) if screen.overview.header.loading => {
            let built = BackfillProgress {
                done_steps: 1,
                total_steps: 1,
                ..BackfillProgress::default()
            };
            loading(built, theme, body, buf)
        }
        (_, Some(view)) => {
            let absent = screen.status.absent.contains(&view.dim);
            drilldown::render(view, screen.top, absent, theme, body, buf)
        }
        (_, None) => {
            overview(screen, theme, body, buf);
            if *screen.top != crate::app::view::TopState::Closed {
                // Asked from the overview: over the lower half of the panes.
                let h = (body.height / 2).min(22);
                let lower = Rect {
                    y: body.bottom() - h,
                    height: h,
                    ..body
                };
                ratatui::widgets::Clear.render(lower, buf);
                drilldown::top_requests(screen.top, screen.window.label(), theme, lower, buf);
            }
        }
    }
    status::render(
        screen.status,
        screen.backfill,
        screen.overview.now,
        theme,
        status_area,
        buf,
    );
    if let Some(pane) = screen.alerts {
        alerts::render(pane, theme, body, buf);
    }
    if let Some(scroll) = screen.anomaly_log {
        anomalies::render_log(
            &listed_anomalies(screen),
            scroll,
            &screen.status.keys.select,
            theme,
            body,
            buf,
        );
    }
    if let Some(lines) = screen.help {
        help::render(
            lines,
            screen.help_scroll,
            &screen.status.keys.select,
            theme,
            area,
            buf,
        );
    }
}

/// How far the help and the anomaly log scroll on a terminal of this size, and
/// their pages: the keys that scroll them stop at the end.
pub fn scroll_limits(screen: &Screen, width: u16, height: u16) -> ScrollLimits {
    let area = Rect::new(0, 0, width, height);
    let body = Rect {
        y: header::HEIGHT.min(height),
        height: height.saturating_sub(header::HEIGHT + 1),
        ..area
    };
    let help_lines = screen.help.unwrap_or_default();
    let (help, help_page) = help::scroll_limits(help_lines, area);
    let (anomaly_log, anomaly_log_page) =
        anomalies::log_scroll_limits(&listed_anomalies(screen), body);
    ScrollLimits {
        help,
        help_page,
        anomaly_log,
        anomaly_log_page,
    }
}

/// For a terminal of `width` x `height`: the screen row of the drill-down table's
/// first data row and how many rows it shows (for paging and mouse clicks).
pub fn drill_table_area(width: u16, height: u16, top_open: bool) -> (u16, usize) {
    if width < MIN_WIDTH || height < MIN_HEIGHT {
        return (0, 1);
    }
    let body = Rect::new(0, header::HEIGHT, width, height - header::HEIGHT - 1);
    let (y, rows) = drilldown::table_area(body, top_open);
    (y, rows.max(1))
}

/// Where the overview's panes go inside the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Panes {
    features: Rect,
    anomalies: Rect,
    drivers: Rect,
    trend: Rect,
}

/// The anomaly pane's list: this monitor's anomalies, then the alerts firing in the
/// shared state that its detector has not confirmed (yet).
fn listed_anomalies<'a>(screen: &Screen<'a>) -> std::borrow::Cow<'a, [crate::detect::Anomaly]> {
    let (own, shared) = (&screen.overview.anomalies, &screen.status.shared_alerts);
    if shared.is_empty() {
        std::borrow::Cow::Borrowed(own)
    } else {
        std::borrow::Cow::Owned(own.iter().chain(shared).cloned().collect())
    }
}

fn layout(screen: &Screen, body: Rect) -> Panes {
    let o = screen.overview;
    // While detection waits for the history, the pane says so in its two rows.
    let waiting = o.pending.is_some_and(|p| p.detection);
    let listed = if waiting {
        std::borrow::Cow::Borrowed(&[][..])
    } else {
        listed_anomalies(screen)
    };
    let has_anomalies = !listed.is_empty();
    let feat_want = features::desired_height(&o.features);
    // Many anomalies leave the features in view: the pane takes at most what the
    // features and the lower panes' least leave, or a third of the body (at least
    // 4 rows) where that is more; the anomaly log (`n`) lists them all.
    let anom_cap = body
        .height
        .saturating_sub(features::desired_height(&o.features) + 3)
        .max(body.height / 3)
        .max(4);
    let anom_want = anomalies::desired_height(&listed, body.width).min(anom_cap);
    let bottom_want = drivers::desired_height(&o.top_drivers).max(3);

    // Each pane's least and wanted heights; the least are handed out first, in order
    // of importance, then each grows to what it wants, again in order.
    let feat_min = feat_want.min(5);
    let anom_min = if has_anomalies { anom_want.min(3) } else { 1 };
    let bottom_min = 3;
    let mut left = body.height;
    let mut take = |want: u16, min: u16| {
        // All of `want` if it fits, else what is left if that is at least `min`.
        let got = if want.min(left) >= min {
            want.min(left)
        } else {
            0
        };
        left -= got;
        got
    };
    let (mut feat, mut anom, mut bottom);
    if has_anomalies {
        anom = take(anom_min, 0);
        feat = take(feat_min, 0);
    } else {
        feat = take(feat_min, 0);
        anom = take(anom_min, 0);
    }
    bottom = take(bottom_min, bottom_min);
    if has_anomalies {
        anom += take(anom_want - anom, 0);
        feat += take(feat_want - feat, 0);
    } else {
        feat += take(feat_want - feat, 0);
        anom += take(2u16.saturating_sub(anom), 0);
    }
    if bottom > 0 {
        bottom += take(bottom_want - bottom, 0);
        bottom += take(u16::MAX, 0);
    } else {
        // No room for the lower panes: the table may use the rest.
        feat += take(u16::MAX, 0);
    }

    let features = Rect {
        height: feat,
        ..body
    };
    let anomalies = Rect {
        y: features.bottom(),
        height: anom,
        ..body
    };
    let bottom = Rect {
        y: anomalies.bottom(),
        height: bottom,
        ..body
    };
    let (drivers, trend) = if body.width >= 60 {
        let dw = body.width * 55 / 100;
        (
            Rect {
                width: dw,
                ..bottom
            },
            Rect {
                x: bottom.x + dw + 1,
                width: body.width - dw - 1,
                ..bottom
            },
        )
    } else {
        (bottom, Rect { width: 0, ..bottom })
    };
    Panes {
        features,
        anomalies,
        drivers,
        trend,
    }
}

fn overview(screen: &Screen, theme: Theme, body: Rect, buf: &mut Buffer) {
    let o = screen.overview;
    let panes = layout(screen, body);
    let pending = o.pending.as_ref();
    if !panes.features.is_empty() {
        features::render(
            &o.features,
            screen.selected,
            pending,
            theme,
            panes.features,
            buf,
        );
    }
    if !panes.anomalies.is_empty() {
        match pending.filter(|p| p.detection) {
            // Shared alerts firing elsewhere would still be listed, but this
            // monitor cannot confirm or clear them yet: the pane says why.
            Some(p) => anomalies::render_waiting(p, o.now, theme, panes.anomalies, buf),
            None => anomalies::render(
                &listed_anomalies(screen),
                (&screen.status.keys.anomaly_log, &screen.status.keys.alerts),
                screen.status.alerts_firing,
                theme,
                panes.anomalies,
                buf,
            ),
        }
    }
    if !panes.drivers.is_empty() {
        match pending.filter(|p| p.week) {
            Some(p) => drivers::render_waiting(p, o.now, theme, panes.drivers, buf),
            None => drivers::render(&o.top_drivers, o.week_total, theme, panes.drivers, buf),
        }
    }
    if !panes.trend.is_empty() {
        let loading = pending.map(|p| p.trend_days).filter(|d| *d < 30);
        trend::render(&o.cost_per_request_30d, loading, theme, panes.trend, buf);
    }
}

/// Shown instead of the panes while history loads.
fn loading(progress: BackfillProgress, theme: Theme, body: Rect, buf: &mut Buffer) {
    let BackfillProgress {
        done_steps,
        total_steps,
        history_days,
        ..
    } = progress;
    let ratio = if total_steps == 0 {
        0.0
    } else {
        (done_steps as f64 / total_steps as f64).min(1.0)
    };
    // Steps are the source's queries, not days: the label says how much history,
    // the gauge how far.
    let label = match history_days {
        0 => "Loading history…".to_string(),
        1 => "Loading the last day of history…".to_string(),
        d => format!("Loading the last {d} days of history…"),
    };
    let bar_w = (body.width as usize).saturating_sub(12).min(50);
    let (full, empty) = format::gauge(ratio, bar_w);
    let lines = vec![
        Line::from(Span::styled(label, theme.title())),
        Line::from(""),
        Line::from(vec![
            Span::styled(full, theme.good()),
            Span::styled(empty, theme.gauge_empty()),
            Span::raw(format!(" {:>4}", format::percent(ratio))),
        ]),
        Line::from(""),
        Line::from(Span::styled(
            "The dashboard starts when the newest hours are in.",
            theme.muted(),
        )),
    ];
    let height = (lines.len() as u16).min(body.height);
    let y = body.y + (body.height - height) / 2;
    Paragraph::new(lines)
        .alignment(Alignment::Center)
        .render(Rect { y, height, ..body }, buf);
}

fn too_small(area: Rect, buf: &mut Buffer, theme: Theme) {
    let msg = format!(
        "Terminal too small: {}x{}. burnrate needs {MIN_WIDTH}x{MIN_HEIGHT}.",
        area.width, area.height
    );
    let lines = vec![Line::from(Span::styled(msg, theme.warn()))];
    let y = area.y + area.height.saturating_sub(2) / 2;
    let area = Rect {
        y,
        height: area.bottom() - y,
        ..area
    };
    Paragraph::new(lines)
        .alignment(Alignment::Center)
        .wrap(Wrap { trim: true })
        .render(area, buf);
}

/// Display width of a line's spans.
fn spans_width(spans: &[Span]) -> usize {
    spans.iter().map(|s| text::width(&s.content)).sum()
}
