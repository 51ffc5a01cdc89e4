//! Cost per request per day over 30 days: a sparkline scaled between the month's
//! lowest and highest day, with the min, max and latest values written out.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Widget};

use super::theme::Theme;
use super::{format, spans_width};
use crate::money::Money;

/// Rows of sparkline at most, however tall the pane.
const MAX_SPARK_ROWS: usize = 8;
/// Columns per day at most, when the pane is wide.
const MAX_STRETCH: usize = 3;

/// `loading`: while the history loads, the days in (the others are empty and the
/// labels say so rather than give a month's min and max from a few days).
pub fn render(
    days: &[Option<Money>],
    loading: Option<usize>,
    theme: Theme,
    area: Rect,
    buf: &mut Buffer,
) {
    let title = if area.width >= 30 {
        " Cost per request, 30 days "
    } else {
        " $/req, 30d "
    };
    let block = Block::new()
        .borders(Borders::TOP)
        .border_style(theme.border())
        .title(Span::styled(title, theme.title()));
    let inner = block.inner(area);
    block.render(area, buf);
    let inner = Rect {
        x: inner.x.saturating_add(1),
        width: inner.width.saturating_sub(1),
        ..inner
    };
    let present: Vec<Money> = days.iter().flatten().copied().collect();
    let waiting = loading.map(|n| format!("… {n} of 30 days in so far"));
    let (Some(lo), Some(hi), Some(latest)) =
        (present.iter().min(), present.iter().max(), present.last())
    else {
        let text = waiting.unwrap_or_else(|| "No requests in 30 days.".into());
        Paragraph::new(Span::styled(text, theme.muted())).render(inner, buf);
        return;
    };
    if inner.is_empty() {
        return;
    }

    let (lo, hi, latest) = (lo.display_usd(), hi.display_usd(), latest.display_usd());
    let long = vec![
        Span::styled("min ", theme.muted()),
        Span::raw(lo.clone()),
        Span::styled("  max ", theme.muted()),
        Span::raw(hi.clone()),
        Span::styled("  latest ", theme.muted()),
        Span::styled(latest.clone(), theme.value()),
    ];
    let labels = if let Some(waiting) = waiting {
        Line::from(Span::styled(waiting, theme.muted()))
    } else if spans_width(&long) <= inner.width as usize {
        Line::from(long)
    } else {
        Line::from(vec![
            Span::raw(lo),
            Span::styled("..", theme.muted()),
            Span::raw(hi),
            Span::styled(" now ", theme.muted()),
            Span::styled(latest, theme.value()),
        ])
    };
    let spark_rows = (inner.height as usize)
        .saturating_sub(1)
        .clamp(1, MAX_SPARK_ROWS);
    // Each day one column, or up to three when the pane is wide.
    let stretch = (inner.width as usize / days.len().max(1)).clamp(1, MAX_STRETCH);
    let values: Vec<Option<f64>> = days
        .iter()
        .flat_map(|d| std::iter::repeat_n(d.map(Money::as_f64), stretch))
        .collect();
    let width = (inner.width as usize).min(values.len());
    let mut lines: Vec<Line> = format::spark_min_max(&values, width, spark_rows)
        .into_iter()
        .map(|s| Line::from(Span::styled(s, theme.sparkline(false))))
        .collect();
    if inner.height as usize > spark_rows {
        lines.push(labels);
    }
    Paragraph::new(lines).render(inner, buf);
}
