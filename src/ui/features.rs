//! The per-feature table: spend now, today and this week, unit costs, the change
//! against the 7-day average, and a 24-hour sparkline per row.
//!
//! Columns are dropped as the width shrinks, least important first: cost per 1k
//! tokens, requests, 7-day spend, cost per request, this hour, then the sparkline.
//! The marker, name, today and change columns always stay.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Borders, Cell, Paragraph, Row, StatefulWidget, Table, TableState, Widget,
};

use super::theme::Theme;
use super::{format, spans_width, text};
use crate::app::view::{FeatureRow, Pending};
use crate::model::NONE_NAME;
use crate::money::Money;

const SPACING: u16 = 1;
/// The name column's width when deciding which columns fit.
const NAME_COMFORT: usize = 16;
const NAME_MIN: usize = 6;
const NAME_MAX: usize = 40;
/// Hours in the sparkline when it fits.
const SPARK_HOURS: usize = 24;
/// A figure that waits for the history.
const LOADING: &str = "…";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    Mark,
    Name,
    Hour,
    Today,
    Week,
    Requests,
    PerRequest,
    Per1k,
    Change,
    Spark,
}

const ORDER: [Col; 10] = [
    Col::Mark,
    Col::Name,
    Col::Hour,
    Col::Today,
    Col::Week,
    Col::Requests,
    Col::PerRequest,
    Col::Per1k,
    Col::Change,
    Col::Spark,
];
/// First dropped first.
const DROP: [Col; 6] = [
    Col::Per1k,
    Col::Requests,
    Col::Week,
    Col::PerRequest,
    Col::Hour,
    Col::Spark,
];

impl Col {
    fn title(self) -> &'static str {
        match self {
            Col::Mark => "",
            Col::Name => "feature",
            Col::Hour => "hour",
            Col::Today => "today",
            Col::Week => "7 days",
            Col::Requests => "req today",
            Col::PerRequest => "$/req",
            Col::Per1k => "$/1k tok",
            Col::Change => "vs 7d",
            Col::Spark => "last 24h",
        }
    }
}

/// Rows the table wants: title, column header, one per feature (one for the
/// "nothing yet" line when empty).
pub fn desired_height(rows: &[FeatureRow]) -> u16 {
    if rows.is_empty() {
        2
    } else {
        2 + rows.len().min(u16::MAX as usize - 2) as u16
    }
}

fn money(m: Option<Money>) -> String {
    m.map(Money::display_usd).unwrap_or_else(|| "—".into())
}

/// Requests behind a cost cell whose cost came from the price list (0 for columns
/// that are not costs).
fn computed_in(col: Col, f: &FeatureRow) -> u64 {
    match col {
        Col::Hour => f.computed_hour,
        Col::Today => f.computed_today,
        Col::Week | Col::PerRequest | Col::Per1k => f.computed_7d,
        _ => 0,
    }
}

/// The columns in which some row's cost is marked as computed.
fn marked_columns(rows: &[FeatureRow]) -> Vec<Col> {
    ORDER
        .into_iter()
        .filter(|&c| rows.iter().any(|r| computed_in(c, r) > 0))
        .collect()
}

/// Whether the column's figures still wait for the history (drawn "…").
fn waits(col: Col, pending: Option<&Pending>) -> bool {
    pending.is_some_and(|p| match col {
        Col::Hour => p.hour,
        Col::Today | Col::Requests => p.today,
        Col::Week | Col::PerRequest | Col::Per1k => p.week,
        Col::Change => p.change,
        _ => false,
    })
}

fn cell_text(col: Col, f: &FeatureRow, marked: &[Col], pending: Option<&Pending>) -> String {
    if waits(col, pending) {
        return LOADING.into();
    }
    let cost = |text: String| format::cost_cell(text, computed_in(col, f), marked.contains(&col));
    match col {
        Col::Mark => if f.anomalous { "!" } else { "" }.into(),
        Col::Name => String::new(), // fitted separately
        Col::Hour => cost(f.this_hour.display_usd()),
        Col::Today => cost(f.today.display_usd()),
        Col::Week => cost(f.last_7d.display_usd()),
        Col::Requests => format::count(f.requests_today),
        Col::PerRequest => cost(money(f.cost_per_request)),
        Col::Per1k => cost(money(f.cost_per_1k_tokens)),
        Col::Change => f
            .change_vs_7d
            .map(format::change)
            .unwrap_or_else(|| "—".into()),
        Col::Spark => String::new(), // drawn to the column's width
    }
}

fn display_name(name: &str) -> String {
    if name.is_empty() {
        NONE_NAME.to_string()
    } else {
        text::sanitize(name)
    }
}

/// Chooses the columns and their widths for `avail` cells.
fn fit_columns(
    rows: &[FeatureRow],
    names: &[String],
    pending: Option<&Pending>,
    avail: usize,
) -> Vec<(Col, usize)> {
    let marked = marked_columns(rows);
    let spark_len = rows.iter().map(|r| r.spark_24h.len()).max().unwrap_or(0);
    let name_want = names
        .iter()
        .map(|n| text::width(n))
        .max()
        .unwrap_or(0)
        .clamp(Col::Name.title().len(), NAME_MAX);
    let natural = |col: Col| -> usize {
        match col {
            Col::Mark => 1,
            Col::Name => name_want.min(NAME_COMFORT),
            Col::Spark => spark_len.min(SPARK_HOURS).max(col.title().len()),
            _ => rows
                .iter()
                .map(|r| text::width(&cell_text(col, r, &marked, pending)))
                .max()
                .unwrap_or(0)
                .max(col.title().len())
                .min(12 + usize::from(marked.contains(&col))),
        }
    };
    let cols: Vec<(Col, usize)> = ORDER
        .iter()
        .filter(|c| **c != Col::Spark || spark_len > 0)
        .map(|&c| (c, natural(c)))
        .collect();
    // Give the name what is left (up to its longest), or take from it if even the
    // must-have columns do not fit.
    format::shrink_columns(
        cols,
        DROP,
        Col::Name,
        (name_want, NAME_MIN),
        avail,
        SPACING as usize,
    )
}

/// `pending`: while the history loads, which columns wait for it.
pub fn render(
    rows: &[FeatureRow],
    selected: usize,
    pending: Option<&Pending>,
    theme: Theme,
    area: Rect,
    buf: &mut Buffer,
) {
    let mut title = vec![Span::styled(" Spend by feature ", theme.title())];
    let waiting =
        pending.filter(|p| ORDER.iter().any(|c| waits(*c, Some(p))) || p.spark_hours < SPARK_HOURS);
    if waiting.is_some() {
        // What "…" means (the status bar says how far the history is).
        let room = (area.width as usize).saturating_sub(spans_width(&title) + 1);
        if let Some(legend) = [
            "… waits for older history ".to_string(),
            "… loading ".to_string(),
        ]
        .into_iter()
        .find(|l| text::width(l) <= room)
        {
            title.push(Span::styled(legend, theme.muted()));
        }
    }
    // Every request has one feature: the rows' 7-day counts are the week's.
    let computed: u64 = rows.iter().map(|r| r.computed_7d).sum();
    if computed > 0 {
        let room = (area.width as usize).saturating_sub(spans_width(&title) + 1);
        if let Some(legend) = format::computed_legend(computed)
            .into_iter()
            .find(|l| text::width(l) <= room)
        {
            title.push(Span::styled(format!("{legend} "), theme.muted()));
        }
    }
    let block = Block::new()
        .borders(Borders::TOP)
        .border_style(theme.border())
        .title(Line::from(title));
    if rows.is_empty() {
        Paragraph::new(Span::styled(" No spend recorded yet.", theme.muted()))
            .block(block)
            .render(area, buf);
        return;
    }
    let names: Vec<String> = rows.iter().map(|r| display_name(&r.name)).collect();
    let cols = fit_columns(rows, &names, pending, area.width as usize);
    let marked = marked_columns(rows);
    let selected = selected.min(rows.len() - 1);

    let header = Row::new(cols.iter().map(|&(col, _)| {
        let line = Line::from(col.title());
        Cell::from(if right_aligned(col) {
            line.right_aligned()
        } else {
            line
        })
    }))
    .style(theme.muted());

    let body = rows.iter().zip(&names).enumerate().map(|(i, (r, name))| {
        let cells = cols.iter().map(|&(col, w)| {
            let (content, style) = match col {
                Col::Mark => (
                    cell_text(col, r, &marked, pending),
                    if r.anomalous {
                        theme.anomalous()
                    } else {
                        Style::new()
                    },
                ),
                Col::Name => (
                    text::fit(name, w),
                    if r.anomalous {
                        theme.anomalous()
                    } else {
                        Style::new()
                    },
                ),
                _ if waits(col, pending) => (LOADING.to_string(), theme.muted()),
                Col::Change => (
                    cell_text(col, r, &marked, pending),
                    theme.change(r.change_vs_7d),
                ),
                Col::Spark => {
                    let style = theme.sparkline(r.anomalous);
                    let style = if i == selected {
                        style.patch(theme.not_selected())
                    } else {
                        style
                    };
                    // Only the hours that are in; the others dotted, not blank
                    // (blank reads as no spend).
                    let (spark, dots) = spark_loaded(&r.spark_24h, pending, w);
                    let line = Line::from(vec![
                        Span::styled(dots, theme.muted()),
                        Span::styled(spark, style),
                    ]);
                    return Cell::from(line);
                }
                _ => (cell_text(col, r, &marked, pending), Style::new()),
            };
            let line = Line::from(content);
            Cell::from(if right_aligned(col) {
                line.right_aligned()
            } else {
                line
            })
            .style(style)
        });
        let row = Row::new(cells);
        if i == selected {
            row.style(theme.selected())
        } else {
            row
        }
    });

    let widths = cols
        .iter()
        .map(|&(_, w)| Constraint::Length(w.min(u16::MAX as usize) as u16));
    let table = Table::new(body, widths)
        .header(header)
        .column_spacing(SPACING)
        .block(block);
    let mut state = TableState::new().with_selected(Some(selected));
    StatefulWidget::render(table, area, buf, &mut state);
}

/// The sparkline of the hours that are in, and the dots standing for the others,
/// in `w` cells.
fn spark_loaded(values: &[u64], pending: Option<&Pending>, w: usize) -> (String, String) {
    let loaded = pending.map_or(values.len(), |p| p.spark_hours.min(values.len()));
    let tail = &values[values.len() - loaded..];
    let shown = loaded.min(w);
    let dots = "·".repeat(w.min(values.len()).saturating_sub(shown));
    let pad = " ".repeat(w.saturating_sub(values.len().max(shown)));
    (format::spark_from_zero(tail, shown), format!("{pad}{dots}"))
}

fn right_aligned(col: Col) -> bool {
    !matches!(col, Col::Mark | Col::Name | Col::Spark)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str) -> FeatureRow {
        FeatureRow {
            name: name.into(),
            this_hour: Money::from_dollars(41),
            today: Money::from_dollars(612),
            last_7d: Money::from_dollars(2140),
            requests_today: 18_234,
            cost_per_request: Some(Money::from_micros(34_000)),
            cost_per_1k_tokens: Some(Money::from_micros(4_200)),
            change_vs_7d: Some(3.12),
            spark_24h: vec![1; 24],
            anomalous: false,
            ..FeatureRow::default()
        }
    }

    fn cols_at(width: usize) -> Vec<Col> {
        let rows = vec![row("support_qa"), row("summarize_email_thread")];
        let names: Vec<String> = rows.iter().map(|r| display_name(&r.name)).collect();
        fit_columns(&rows, &names, None, width)
            .into_iter()
            .map(|(c, _)| c)
            .collect()
    }

    #[test]
    fn columns_drop_least_important_first() {
        let wide = cols_at(200);
        assert_eq!(wide.len(), 10);
        let at80 = cols_at(80);
        assert!(!at80.contains(&Col::Per1k));
        assert!(!at80.contains(&Col::Requests));
        assert!(at80.contains(&Col::Spark));
        assert!(at80.contains(&Col::Hour));
        let at40 = cols_at(40);
        assert_eq!(at40, vec![Col::Mark, Col::Name, Col::Today, Col::Change]);
    }

    #[test]
    fn widths_never_exceed_the_area_when_the_must_haves_fit() {
        for width in 30..220 {
            let rows = vec![row("support_qa"), row(&"x".repeat(100))];
            let names: Vec<String> = rows.iter().map(|r| display_name(&r.name)).collect();
            let cols = fit_columns(&rows, &names, None, width);
            let total: usize = cols.iter().map(|(_, w)| w).sum::<usize>() + cols.len() - 1;
            assert!(total <= width, "width {width}: {cols:?}");
        }
    }
}
