//! The anomaly pane: what is unusual, by how much, and who is behind it. Its border
//! and title turn red when it lists anything.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Widget};

use super::theme::Theme;
use super::{format, spans_width, text};
use crate::detect::{Anomaly, Severity};

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

pub fn render(anomalies: &[Anomaly], theme: Theme, area: Rect, buf: &mut Buffer) {
    if anomalies.is_empty() {
        let block = Block::new()
            .borders(Borders::TOP)
            .border_style(theme.border())
            .title(Span::styled(" Anomalies ", theme.title()));
        let body = Span::styled(" No anomalies", theme.good());
        if area.height >= 2 {
            Paragraph::new(body).block(block).render(area, buf);
        } else {
            // One row: the title carries the message.
            Block::new()
                .borders(Borders::TOP)
                .border_style(theme.border())
                .title(Span::styled(" No anomalies ", theme.good()))
                .render(area, buf);
        }
        return;
    }
    let n = anomalies.len();
    let title = format!(" ! {} ANOMAL{} ", n, if n == 1 { "Y" } else { "IES" });
    let block = Block::new()
        .borders(Borders::TOP)
        .border_style(theme.alert_border())
        .title(Span::styled(title, theme.alert_title()));
    let inner = block.inner(area);
    block.render(area, buf);
    let all = lines(anomalies, theme, inner.width as usize);
    let shown = inner.height as usize;
    let mut visible: Vec<Line> = all.iter().take(shown).cloned().collect();
    if all.len() > shown && shown >= 2 {
        // Say what does not fit rather than cutting silently.
        let hidden = anomalies.len() - count_anomalies_in(&all[..shown - 1]);
        if hidden > 0
            && let Some(last) = visible.last_mut()
        {
            *last = Line::from(Span::styled(
                format!(" … and {hidden} more (see the anomaly log)"),
                theme.muted(),
            ));
        }
    }
    Paragraph::new(visible).render(inner, buf);
}

/// Anomalies whose first line is among these lines.
fn count_anomalies_in(lines: &[Line]) -> usize {
    lines
        .iter()
        .filter(|l| l.spans.first().is_some_and(|s| s.content == MARK))
        .count()
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
