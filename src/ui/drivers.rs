//! "Top 5 cost drivers this week": a feature, user, model, tenant or region, its
//! cost and its share of the week; five, or as many as the pane has rows for.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, Widget};

use super::theme::Theme;
use super::{format, spans_width, text};
use crate::app::progress::{Pending, days_text};
use crate::app::view::Driver;
use crate::model::NONE_NAME;
use crate::money::Money;
use chrono::{DateTime, Utc};

pub const SHOWN: usize = 5;

/// Rows the pane wants: title plus one per driver up to [`SHOWN`] (or the
/// "nothing" line); given more, it lists more.
pub fn desired_height(drivers: &[Driver]) -> u16 {
    1 + drivers.len().clamp(1, SHOWN) as u16
}

/// The pane while the week is not all in: no partial ranking.
pub fn render_waiting(
    pending: &Pending,
    now: DateTime<Utc>,
    theme: Theme,
    area: Rect,
    buf: &mut Buffer,
) {
    let (loaded, all) = pending.days(now);
    let block = Block::new()
        .borders(Borders::TOP)
        .border_style(theme.border())
        .title(Span::styled(" Top cost drivers this week ", theme.title()));
    let lines = vec![
        Line::from(Span::styled(
            " … waiting for 7 days of history",
            theme.muted(),
        )),
        Line::from(Span::styled(
            format!(" ({} in)", days_text(loaded, all)),
            theme.muted(),
        )),
    ];
    Paragraph::new(lines).block(block).render(area, buf);
}

pub fn render(drivers: &[Driver], week_total: Money, theme: Theme, area: Rect, buf: &mut Buffer) {
    // As many as the pane has rows for (a tall terminal lists more than five).
    let shown = &drivers[..drivers
        .len()
        .min((area.height as usize).saturating_sub(1).max(1))];
    let heading = match shown.len() {
        0 => " Top cost drivers this week ".to_string(),
        1 => " Top cost driver this week ".to_string(),
        n => format!(" Top {n} cost drivers this week "),
    };
    let long = vec![
        Span::styled(heading.clone(), theme.title()),
        Span::styled(
            format!("({} total) ", week_total.display_usd()),
            theme.muted(),
        ),
    ];
    let medium = vec![Span::styled(heading, theme.title())];
    let title = if spans_width(&long) + 2 <= area.width as usize {
        Line::from(long)
    } else if spans_width(&medium) + 2 <= area.width as usize {
        Line::from(medium)
    } else {
        Line::from(Span::styled(" Top drivers, 7d ", theme.title()))
    };
    let block = Block::new()
        .borders(Borders::TOP)
        .border_style(theme.border())
        .title(title);
    if drivers.is_empty() {
        Paragraph::new(Span::styled(" No spend this week.", theme.muted()))
            .block(block)
            .render(area, buf);
        return;
    }
    // Costs priced from the price list are marked (the legend is above the features).
    let marked = shown.iter().any(|d| d.computed_requests > 0);
    let costs: Vec<String> = shown
        .iter()
        .map(|d| format::cost_cell(d.cost.display_usd(), d.computed_requests, marked))
        .collect();
    let shares: Vec<String> = shown.iter().map(|d| format::percent(d.share)).collect();
    let dim_w = shown.iter().map(|d| d.dim.name().len()).max().unwrap_or(0);
    let cost_w = costs
        .iter()
        .map(|c| text::width(c))
        .max()
        .unwrap_or(0)
        .min(12 + usize::from(marked));
    let share_w = shares.iter().map(String::len).max().unwrap_or(0);
    // " " + dim + name + cost + share, one space between.
    let longest = shown
        .iter()
        .map(|d| text::width(&text::sanitize(&d.name)).max(NONE_NAME.len()))
        .max()
        .unwrap_or(0);
    let name_w = (area.width as usize)
        .saturating_sub(1 + dim_w + cost_w + share_w + 4)
        .clamp(1, longest.max(1));

    let rows = shown
        .iter()
        .zip(costs)
        .zip(shares)
        .map(|((d, cost), share)| {
            let name = if d.name.is_empty() {
                NONE_NAME.to_string()
            } else {
                text::clean(&d.name, name_w)
            };
            Row::new(vec![
                Cell::from(""),
                Cell::from(Span::styled(d.dim.name(), theme.muted())),
                Cell::from(name),
                Cell::from(Line::from(cost).right_aligned()),
                Cell::from(Line::from(share).right_aligned()),
            ])
        });
    let widths = [
        Constraint::Length(0),
        Constraint::Length(dim_w as u16),
        Constraint::Length(name_w.min(u16::MAX as usize) as u16),
        Constraint::Length(cost_w as u16),
        Constraint::Length(share_w as u16),
    ];
    Table::new(rows, widths)
        .column_spacing(1)
        .block(block)
        .render(area, buf);
}
