//! The anomaly pane: what is unusual, by how much, and who is behind it. Its border
//! and title turn red when it lists anything.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Widget};

use super::theme::Theme;
use super::{format, spans_width, text};
use crate::app::progress::{Pending, days_text};
use crate::detect::{Anomaly, Severity};
use chrono::{DateTime, Utc};

/// The first cell of every anomaly's first line.
const MARK: &str = " ! ";
/// Contributors listed per anomaly.
const MAX_CONTRIBUTORS: usize = 3;
/// Width a contributor's name is cut to.
const CONTRIBUTOR_NAME: usize = 24;

/// Rows the pane wants at this width: its title line plus every anomaly's lines.
pub fn desired_height(anomalies: &[Anomaly], width: u16) -> u16 {
    if anomalies.is_empty() {
        return 2;
    }
    let theme = Theme::new(false);
    let lines = lines(anomalies, theme, width as usize).len();
    (1 + lines).min(u16::MAX as usize) as u16
}

/// `log_key` opens the anomaly log (named when not everything fits);
/// `alerts_firing` is the alert state's count, when alerts run: the title says
/// what it counts when it differs from the anomalies listed, and a calm pane
/// names the alerts that fire without an anomaly (a source's health: `alerts_key`
/// lists them).
pub fn render(
    anomalies: &[Anomaly],
    keys: (&str, &str),
    alerts_firing: Option<usize>,
    theme: Theme,
    area: Rect,
    buf: &mut Buffer,
) {
    let (log_key, alerts_key) = keys;
    if anomalies.is_empty() {
        let block = Block::new()
            .borders(Borders::TOP)
            .border_style(theme.border())
            .title(Span::styled(" Anomalies ", theme.title()));
        let mut body = vec![Span::styled(" No anomalies", theme.good())];
        if let Some(n) = alerts_firing.filter(|n| *n > 0) {
            let (what, them) = if n == 1 {
                ("alert", "it")
            } else {
                ("alerts", "them")
            };
            body.push(Span::styled(
                text::fit(
                    &format!("; {n} other {what} firing ({alerts_key} lists {them})"),
                    (area.width as usize).saturating_sub(14),
                ),
                theme.warn(),
            ));
        }
        if area.height >= 2 {
            Paragraph::new(Line::from(body))
                .block(block)
                .render(area, buf);
        } else {
            // One row: the title carries the message.
            body.push(Span::raw(" "));
            Block::new()
                .borders(Borders::TOP)
                .border_style(theme.border())
                .title(Line::from(body))
                .render(area, buf);
        }
        return;
    }
    let block = Block::new()
        .borders(Borders::TOP)
        .border_style(theme.alert_border())
        .title(title(anomalies.len(), alerts_firing, area.width, theme));
    let inner = block.inner(area);
    block.render(area, buf);
    let all = lines(anomalies, theme, inner.width as usize);
    let shown = inner.height as usize;
    let mut visible: Vec<Line> = all.iter().take(shown).cloned().collect();
    if all.len() > shown && shown >= 2 {
        // Say what does not fit, and the key that lists it, rather than cut silently.
        let hidden = anomalies.len() - count_anomalies_in(&all[..shown - 1]);
        if hidden > 0
            && let Some(last) = visible.last_mut()
        {
            *last = Line::from(Span::styled(
                format!(" … and {hidden} more: {log_key} opens the anomaly log"),
                theme.muted(),
            ));
        }
    }
    Paragraph::new(visible).render(inner, buf);
}

/// The pane while the history loads: detection waits for all of it (its baselines
/// reach back weeks; on part of them it would page falsely).
pub fn render_waiting(
    pending: &Pending,
    now: DateTime<Utc>,
    theme: Theme,
    area: Rect,
    buf: &mut Buffer,
) {
    let (loaded, all) = pending.days(now);
    let text = format!(
        " anomaly detection: waiting for history ({} in)",
        days_text(loaded, all)
    );
    let block = Block::new()
        .borders(Borders::TOP)
        .border_style(theme.border())
        .title(Span::styled(" Anomalies ", theme.title()));
    if area.height >= 2 {
        Paragraph::new(Span::styled(text, theme.muted()))
            .block(block)
            .render(area, buf);
    } else {
        Block::new()
            .borders(Borders::TOP)
            .border_style(theme.border())
            .title(Span::styled(format!("{text} "), theme.muted()))
            .render(area, buf);
    }
}

/// " ! 9 ANOMALIES ": what the detector sees now. Beside an alert count (alerts
/// running) it says "NOW", and where the alert state counts otherwise why: fewer
/// alerts (the windows of one name's spike are one alert, a new one is pending
/// first), more (alerts keep firing a while after their anomaly clears, monitor
/// health has no anomaly).
fn title(n: usize, alerts_firing: Option<usize>, width: u16, theme: Theme) -> Line<'static> {
    let now = if alerts_firing.is_some() { " NOW" } else { "" };
    let mut spans = vec![Span::styled(
        format!(" ! {} ANOMAL{}{now} ", n, if n == 1 { "Y" } else { "IES" }),
        theme.alert_title(),
    )];
    if let Some(f) = alerts_firing.filter(|f| *f != n) {
        let s = if f == 1 { "" } else { "s" };
        let note = if f < n {
            format!(" {f} alert{s} firing: a name's spikes share one; new ones pend first (L) ")
        } else {
            format!(" {f} alert{s} firing, incl. held after clearing and monitor health (L) ")
        };
        let short = format!(" {f} alert{s} firing (L) ");
        let room = (width as usize).saturating_sub(spans_width(&spans) + 2);
        if let Some(t) = [note, short].into_iter().find(|t| text::width(t) <= room) {
            spans.push(Span::styled(t, theme.muted()));
        }
    }
    Line::from(spans)
}

fn is_first_line(l: &Line) -> bool {
    l.spans.first().is_some_and(|s| s.content == MARK)
}

/// Lines of the anomaly log in an area this wide: the note, then every anomaly in
/// full, wrapped at word boundaries (nothing cut, unlike the pane).
fn log_lines(anomalies: &[Anomaly], theme: Theme, width: u16) -> Vec<Line<'static>> {
    let w = width.saturating_sub(2) as usize;
    let note = Line::from(Span::styled(
        " What the detector sees now, most severe first. Alerts (L) also count monitor \
         health, and keep firing a while after their anomaly clears.",
        theme.muted(),
    ));
    let mut out = wrap_line(note, w, 1);
    out.push(Line::from(""));
    if anomalies.is_empty() {
        out.push(Line::from(Span::styled(" No anomalies", theme.good())));
    }
    for line in lines(anomalies, theme, usize::MAX / 4) {
        out.extend(wrap_line(line, w, 3));
    }
    out
}

/// Splits a line into lines of at most `w` cells at spaces, keeping each span's
/// style; continuation lines start with `indent` spaces.
fn wrap_line(line: Line<'static>, w: usize, indent: usize) -> Vec<Line<'static>> {
    let w = w.max(indent + 8);
    let mut out: Vec<Vec<Span<'static>>> = vec![Vec::new()];
    let mut used = 0;
    for span in line.spans {
        let style = span.style;
        // Words with the spaces before them, so a wrap drops only those spaces.
        let mut words: Vec<String> = Vec::new();
        for (i, part) in span.content.split(' ').enumerate() {
            if i == 0 {
                words.push(part.to_string());
            } else {
                words.push(format!(" {part}"));
            }
        }
        for word in words.into_iter().filter(|w| !w.is_empty()) {
            let ww = text::width(&word);
            if used + ww > w && used > indent && !word.trim().is_empty() {
                out.push(vec![Span::raw(" ".repeat(indent))]);
                used = indent;
                let word = word.trim_start().to_string();
                used += text::width(&word);
                out.last_mut()
                    .expect("pushed")
                    .push(Span::styled(word, style));
                continue;
            }
            used += ww;
            out.last_mut()
                .expect("one line")
                .push(Span::styled(word, style));
        }
    }
    out.into_iter().map(Line::from).collect()
}

/// The anomaly log (`n`): every anomaly in full over the body, scrolled by
/// `scroll` lines, with what it counts against the alerts.
pub fn render_log(
    anomalies: &[Anomaly],
    scroll: usize,
    keys: &str,
    theme: Theme,
    area: Rect,
    buf: &mut Buffer,
) {
    if area.height < 3 {
        return;
    }
    ratatui::widgets::Clear.render(area, buf);
    let n = anomalies.len();
    let block = Block::new()
        .borders(Borders::ALL)
        .border_style(theme.border())
        .title(Span::styled(
            format!(" Anomaly log: {n} now, most severe first "),
            theme.title(),
        ))
        .title_bottom(Span::styled(
            format!(" {} scroll · Esc closes ", text::clean(keys, 12)),
            theme.muted(),
        ));
    let inner = block.inner(area);
    block.render(area, buf);
    let all = log_lines(anomalies, theme, area.width);
    let max = all.len().saturating_sub(inner.height as usize);
    let visible: Vec<Line> = all.into_iter().skip(scroll.min(max)).collect();
    Paragraph::new(visible).render(inner, buf);
}

/// How far the log scrolls in an area of this size, and its page.
pub fn log_scroll_limits(anomalies: &[Anomaly], area: Rect) -> (usize, usize) {
    let inner_h = area.height.saturating_sub(2) as usize;
    let total = log_lines(anomalies, Theme::new(false), area.width).len();
    (
        total.saturating_sub(inner_h),
        inner_h.saturating_sub(1).max(1),
    )
}

/// Anomalies whose first line is among these lines.
fn count_anomalies_in(lines: &[Line]) -> usize {
    lines.iter().filter(|l| is_first_line(l)).count()
}

fn lines(anomalies: &[Anomaly], theme: Theme, width: usize) -> Vec<Line<'static>> {
    let w = width.saturating_sub(3); // the " ! " or indent before every line
    let mut out = Vec::new();
    for a in anomalies {
        // Colour by severity: critical red, warning yellow, info plain.
        let style = match a.severity {
            Severity::Critical => theme.bad(),
            Severity::Warning => theme.warn(),
            Severity::Info => theme.value(),
        };
        out.push(Line::from(vec![
            Span::styled(MARK, style),
            Span::styled(text::clean(&a.message, w), style),
        ]));
        let mut detail = detail(a, theme);
        // Drop the usual band rather than cut it.
        if spans_width(&detail) > w
            && detail
                .last()
                .is_some_and(|s| s.content.starts_with(", usually"))
        {
            detail.pop();
        }
        let who = contributors(a, theme);
        let indent = || Span::raw("   ");
        if !who.is_empty() && spans_width(&detail) + 3 + spans_width(&who) <= w {
            let mut line = vec![indent()];
            line.extend(detail);
            line.push(Span::styled(" · ", theme.muted()));
            line.extend(who);
            out.push(Line::from(line));
        } else {
            out.push(Line::from(
                std::iter::once(indent())
                    .chain(fit_spans(detail, w))
                    .collect::<Vec<_>>(),
            ));
            if !who.is_empty() {
                out.push(Line::from(
                    std::iter::once(indent())
                        .chain(fit_spans(who, w))
                        .collect::<Vec<_>>(),
                ));
            }
        }
    }
    out
}

/// "observed $41.00 vs expected $9.80 (4.2x) in 5m since 02:41 UTC, usually $7-$12"
fn detail(a: &Anomaly, theme: Theme) -> Vec<Span<'static>> {
    let mut spans = vec![
        Span::styled("observed ", theme.muted()),
        Span::styled(a.observed.display_usd(), theme.value()),
        Span::styled(" vs expected ", theme.muted()),
        Span::raw(a.expected.display_usd()),
    ];
    // Against nothing, "new" (as the message and Slack say), not a ratio.
    let times = if a.expected.picos() <= 0 && a.observed.picos() > 0 {
        "new".to_string()
    } else {
        format::times(a.ratio)
    };
    spans.push(Span::raw(format!(" ({times})")));
    let window = text::clean(&a.window, 12);
    if window.starts_with(|c: char| c.is_ascii_digit()) {
        spans.push(Span::styled(format!(" in {window}"), theme.muted()));
    } else if !window.is_empty() {
        spans.push(Span::styled(format!(" {window}"), theme.muted()));
    }
    if let Some(since) = a.since {
        spans.push(Span::styled(
            format!(" since {} UTC", since.format("%H:%M")),
            theme.muted(),
        ));
    }
    // The baseline's usual band last: the first thing to go when narrow.
    if let (Some(lo), Some(hi)) = (a.expected_low, a.expected_high)
        && hi > lo
    {
        spans.push(Span::styled(
            format!(", usually {}-{}", lo.display_usd(), hi.display_usd()),
            theme.muted(),
        ));
    }
    spans
}

/// "of it: user alice $31 74%, model gpt-4o $20 48%": parts of the observed
/// spend and their shares of it.
fn contributors(a: &Anomaly, theme: Theme) -> Vec<Span<'static>> {
    let mut spans = Vec::new();
    for (i, c) in a.contributors.iter().take(MAX_CONTRIBUTORS).enumerate() {
        spans.push(Span::styled(
            if i == 0 { "of it: " } else { ", " },
            theme.muted(),
        ));
        spans.push(Span::styled(format!("{} ", c.dim.name()), theme.muted()));
        spans.push(Span::styled(
            text::clean(&c.name, CONTRIBUTOR_NAME),
            theme.value(),
        ));
        spans.push(Span::raw(format!(
            " {} {}",
            c.cost.display_usd(),
            format::percent(c.share)
        )));
    }
    spans
}

/// Cuts a line of spans to `max` cells, ending in "…" when anything was cut.
fn fit_spans(spans: Vec<Span<'static>>, max: usize) -> Vec<Span<'static>> {
    if spans_width(&spans) <= max {
        return spans;
    }
    let mut out = Vec::new();
    let mut left = max;
    for s in spans {
        let w = text::width(&s.content);
        if w < left {
            left -= w;
            out.push(s);
        } else {
            out.push(Span::styled(text::cut(&s.content, left), s.style));
            break;
        }
    }
    out
}
