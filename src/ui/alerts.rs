//! The alerts and silences pane (`L`): what is firing or pending, and every active
//! silence with what it matches, who set it and when it ends; the selected silence
//! is the one `U` lifts.

use chrono::{DateTime, Utc};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Widget};

use super::theme::Theme;
use crate::app::alerts::AlertsPane;
use crate::detect::Severity;

/// "2h 05m left", "12m left".
fn left(now: DateTime<Utc>, end: DateTime<Utc>) -> String {
    let m = (end - now).num_minutes().max(0);
    match (m / 1440, (m % 1440) / 60, m % 60) {
        (0, 0, m) => format!("{m}m left"),
        (0, h, m) => format!("{h}h {m:02}m left"),
        (d, h, _) => format!("{d}d {h}h left"),
    }
}

pub fn render(pane: &AlertsPane, theme: Theme, area: Rect, buf: &mut Buffer) {
    let width = area.width.saturating_sub(4).min(120);
    let wanted = (pane.alerts.len().max(1) + pane.silences.len().max(1) + 7) as u16;
    let height = wanted.min(area.height.saturating_sub(2)).max(5);
    let popup = Rect {
        x: area.x + (area.width.saturating_sub(width)) / 2,
        y: area.y + (area.height.saturating_sub(height)) / 2,
        width,
        height,
    }
    .intersection(area);
    Clear.render(popup, buf);
    let inner = popup.width.saturating_sub(2) as usize;
    let local = |t: DateTime<Utc>| t.with_timezone(&pane.tz).format("%m-%d %H:%M").to_string();

    let mut lines = vec![Line::from(Span::styled(
        " Alerts (firing and pending)",
        theme.title(),
    ))];
    if pane.alerts.is_empty() {
        lines.push(Line::from(Span::styled("   none", theme.muted())));
    }
    for a in &pane.alerts {
        let mut notes = Vec::new();
        if let Some(by) = &a.acked_by {
            notes.push(format!("acked by {by}"));
        }
        if let Some(id) = &a.silenced_by {
            notes.push(format!("silenced ({id})"));
        }
        let since = a
            .since
            .map(|t| format!(" since {}", local(t)))
            .unwrap_or_default();
        let text = format!(
            "   {:<8} {:<7} {} {}{}{}",
            a.severity.name(),
            a.phase,
            a.rule,
            super::text::sanitize(&a.subject),
            since,
            if notes.is_empty() {
                String::new()
            } else {
                format!(" · {}", notes.join(", "))
            }
        );
        let style = match (a.phase, a.severity) {
            ("firing", Severity::Critical) => theme.bad(),
            ("firing", Severity::Warning) => theme.warn(),
            _ => theme.value(),
        };
        lines.push(Line::from(Span::styled(
            super::text::fit(&text, inner),
            style,
        )));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(
        format!(" Silences ({})", pane.tz),
        theme.title(),
    )));
    if pane.silences.is_empty() {
        lines.push(Line::from(Span::styled(
            "   none: z or Z on an alert silences it",
            theme.muted(),
        )));
    }
    for (i, s) in pane.silences.iter().enumerate() {
        let mark = if i == pane.selected { " ▶ " } else { "   " };
        let text = format!(
            "{mark}{}  until {} ({})  by {}  matches {}",
            s.id,
            local(s.ends_at),
            left(pane.now, s.ends_at),
            super::text::sanitize(&s.created_by),
            super::text::sanitize(&s.describe()),
        );
        let style = if i == pane.selected {
            theme.selected()
        } else {
            theme.value()
        };
        lines.push(Line::from(Span::styled(
            super::text::fit(&text, inner),
            style,
        )));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(
        " ↑↓ select a silence · U lifts it · Esc or L closes",
        theme.muted(),
    )));
    Paragraph::new(lines)
        .block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(theme.border())
                .title(Span::styled(" Alerts and silences ", theme.title())),
        )
        .render(popup, buf);
}
