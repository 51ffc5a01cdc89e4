//! The drill-down: a breadcrumb bar (path, dimension, window, metric, sort, filter),
//! the table of the open level (only the visible rows are drawn), and below it the
//! selected row's larger chart, or the most expensive requests when asked for.
//!
//! Columns are dropped as the width shrinks, least important first: tokens, cost
//! per 1k tokens, share, cost per request, requests, sparkline. The name, spend,
//! change and the column of the selected metric always stay.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Sparkline, Table, Widget};

use super::theme::Theme;
use super::{format, spans_width, text};
use crate::app::drill::{Metric, SortKey};
use crate::app::view::{Baseline, DrillChart, DrillRow, DrillView, RequestRow, TopState};
use crate::model::Dim;
use crate::money::Money;

const SPACING: u16 = 1;
const NAME_MIN: usize = 8;
const NAME_MAX: usize = 40;
/// Rows of the chart pane (title + bars).
const CHART_HEIGHT: u16 = 4;
/// The chart is shown only in bodies at least this tall.
const CHART_MIN_BODY: u16 = 12;
/// Rows of the top-requests pane at most (title, header, 20 requests).
const TOP_MAX: u16 = 22;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    Name,
    Spend,
    Requests,
    PerRequest,
    Per1k,
    Tokens,
    Share,
    Change,
    Spark,
}

const ORDER: [Col; 9] = [
    Col::Name,
    Col::Spend,
    Col::Requests,
    Col::Tokens,
    Col::PerRequest,
    Col::Per1k,
    Col::Share,
    Col::Change,
    Col::Spark,
];
/// First dropped first.
const DROP: [Col; 6] = [
    Col::Tokens,
    Col::Per1k,
    Col::Share,
    Col::PerRequest,
    Col::Requests,
    Col::Spark,
];

impl Col {
    fn title(self, view: &DrillView) -> String {
        if self == Col::Change {
            match view.baseline {
                // The per-hour rate of the days just before the window.
                Baseline::HoursBefore { hours, .. } => {
                    return format!("vs {}d", (hours + 12) / 24);
                }
                // This hour so far against the same minutes of the previous one,
                // or (below the top level) the previous hour's rate.
                Baseline::SamePartOfPreviousHour {
                    covered_secs,
                    exact: true,
                    ..
                } => return format!("vs :00-:{:02}", (covered_secs / 60).min(59)),
                Baseline::SamePartOfPreviousHour { exact: false, .. } => {
                    return "vs prev h".into();
                }
                _ => {}
            }
        }
        let title = match self {
            Col::Name => "",
            Col::Spend => "spend",
            Col::Requests => "requests",
            Col::PerRequest => "$/req",
            Col::Per1k => "$/1k tok",
            Col::Tokens => "tokens",
            Col::Share => "share",
            Col::Change => "vs prev",
            Col::Spark => "trend",
        };
        title.to_string()
    }
    fn of_metric(m: Metric) -> Col {
        match m {
            Metric::Cost => Col::Spend,
            Metric::Requests => Col::Requests,
            Metric::Tokens => Col::Tokens,
            Metric::CostPerRequest => Col::PerRequest,
            Metric::CostPer1kTokens => Col::Per1k,
        }
    }
    fn of_sort(s: SortKey, m: Metric) -> Col {
        match s {
            SortKey::Metric => Col::of_metric(m),
            SortKey::Change => Col::Change,
            SortKey::Requests => Col::Requests,
            SortKey::Name => Col::Name,
        }
    }
}

/// The drill-down's body split: breadcrumb, table (header + rows), lower pane.
fn split(body: Rect, top_open: bool) -> (Rect, Rect, Rect) {
    let crumb = Rect {
        height: 1.min(body.height),
        ..body
    };
    let rest = body.height.saturating_sub(1);
    let lower = if top_open {
        (rest / 2).clamp(3.min(rest), TOP_MAX)
    } else if body.height >= CHART_MIN_BODY {
        CHART_HEIGHT
    } else {
        0
    };
    let table = Rect {
        y: crumb.bottom(),
        height: rest - lower,
        ..body
    };
    let lower = Rect {
        y: table.bottom(),
        height: lower,
        ..body
    };
    (crumb, table, lower)
}

/// For a terminal of `width` x `height`: the screen row of the table's first data
/// row and how many data rows it shows.
pub fn table_area(body: Rect, top_open: bool) -> (u16, usize) {
    let (_, table, _) = split(body, top_open);
    (table.y + 1, table.height.saturating_sub(1) as usize)
}

/// `absent`: the watched table has no column for this level's dimension.
pub fn render(
    view: &DrillView,
    top: &TopState,
    absent: bool,
    theme: Theme,
    body: Rect,
    buf: &mut Buffer,
) {
    let top_open = *top != TopState::Closed;
    let (crumb, table, lower) = split(body, top_open);
    breadcrumb(view, absent, theme, crumb, buf);
    rows(view, theme, table, buf);
    if top_open {
        top_requests(top, view.window.label(), theme, lower, buf);
    } else if let Some(chart) = &view.chart {
        chart_pane(chart, view.loaded_from.is_some(), theme, lower, buf);
    }
}

/// "support_qa › user_4812 › by model  24h  cost  sort ▼spend  /48_"
fn breadcrumb(view: &DrillView, absent: bool, theme: Theme, area: Rect, buf: &mut Buffer) {
    let mut spans = vec![Span::styled(" ", theme.muted())];
    if view.path.is_empty() {
        spans.push(Span::styled("all", theme.muted()));
    }
    for (i, (_, name)) in view.path.iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled(" › ", theme.muted()));
        }
        spans.push(Span::styled(text::clean(name, 24), theme.title()));
    }
    spans.push(Span::styled(" › ", theme.muted()));
    spans.push(Span::styled(format!("by {}", view.dim), theme.key()));
    spans.push(Span::styled("  metric ", theme.muted()));
    spans.push(Span::styled(view.metric.label(), theme.value()));
    if view.building {
        spans.push(Span::styled("  building…", theme.key()));
    }
    if let Some(from) = view
        .loaded_from
        .filter(|_| view.window_pending || view.baseline_pending)
    {
        // What "…" waits for, said before anything optional.
        let what = if view.window_pending {
            "this window"
        } else {
            "the change's baseline"
        };
        spans.push(Span::styled(
            format!(
                "  {LOADING} {what} waits for older history (in from {})",
                from.format("%b %-d %H:%M UTC")
            ),
            theme.muted(),
        ));
    }
    if absent {
        // Said before anything optional, so it survives a narrow terminal.
        spans.push(Span::styled(
            format!(
                "  no {} column in this table: every row is (none)",
                view.dim
            ),
            theme.warn(),
        ));
    }
    if view.editing || !view.filter.is_empty() {
        spans.push(Span::styled("  /", theme.key()));
        spans.push(Span::raw(text::clean(&view.filter, 24)));
        if view.editing {
            spans.push(Span::styled("_", theme.key()));
        }
        spans.push(Span::styled(
            format!(" {}/{}", view.order.len(), view.rows.len()),
            theme.muted(),
        ));
    }
    // The mark's legend, right after the crumbs where it fits.
    if view.parent.computed > 0 {
        let room = (area.width as usize).saturating_sub(spans_width(&spans) + 2);
        if let Some(legend) = format::computed_legend(view.parent.computed)
            .into_iter()
            .find(|l| text::width(l) <= room)
        {
            spans.push(Span::styled(format!("  {legend}"), theme.muted()));
        }
    }
    Paragraph::new(Line::from(spans)).render(area, buf);
}

fn money(m: Option<Money>) -> String {
    m.map(Money::display_usd).unwrap_or_else(|| "—".into())
}

/// Whether the column shows a cost (marked where the price list computed it).
fn is_cost(col: Col) -> bool {
    matches!(col, Col::Spend | Col::PerRequest | Col::Per1k)
}

/// `marked`: some shown row's cost was computed (the cost columns keep room for the
/// mark).
fn cell_text(col: Col, r: &DrillRow, marked: bool) -> String {
    let cost = |text: String| format::cost_cell(text, r.agg.computed, marked);
    match col {
        Col::Name | Col::Spark => String::new(),
        Col::Spend => cost(r.agg.cost.display_usd()),
        Col::Requests => format::count(r.agg.requests),
        Col::PerRequest => cost(money(r.agg.cost_per_request())),
        Col::Per1k => cost(money(r.agg.cost_per_1k_tokens())),
        Col::Tokens => format::count(r.agg.tokens()),
        Col::Share => r.share.map(format::percent).unwrap_or_else(|| "—".into()),
        Col::Change => match (r.change, &r.prev) {
            (Some(c), _) => format::change(c),
            (None, Some(_)) if r.value.is_some_and(|v| v > 0.0) => "new".into(),
            _ => "—".into(),
        },
    }
}

fn fit_columns(
    view: &DrillView,
    shown: &[&DrillRow],
    names: &[String],
    avail: usize,
) -> Vec<(Col, usize)> {
    let spark_len = shown.iter().map(|r| r.spark.len()).max().unwrap_or(0);
    let name_title = view.dim.name().len() + 1;
    let name_want = names
        .iter()
        .map(|n| text::width(n))
        .max()
        .unwrap_or(0)
        .clamp(name_title, NAME_MAX);
    let keep = Col::of_metric(view.metric);
    let marked = shown.iter().any(|r| r.agg.computed > 0);
    let natural = |col: Col| -> usize {
        match col {
            Col::Name => name_want.min(16),
            Col::Spark => spark_len.clamp(col.title(view).len(), 30),
            _ => shown
                .iter()
                .map(|r| text::width(&cell_text(col, r, marked)))
                .max()
                .unwrap_or(0)
                .max(col.title(view).len() + 1)
                .min(12 + usize::from(marked && is_cost(col))),
        }
    };
    let cols: Vec<(Col, usize)> = ORDER
        .iter()
        .filter(|c| **c != Col::Spark || spark_len > 0)
        .map(|&c| (c, natural(c)))
        .collect();
    let drop_order = DROP.into_iter().filter(|c| *c != keep);
    format::shrink_columns(
        cols,
        drop_order,
        Col::Name,
        (name_want, NAME_MIN),
        avail,
        SPACING as usize,
    )
}

fn rows(view: &DrillView, theme: Theme, area: Rect, buf: &mut Buffer) {
    if area.height < 2 {
        return;
    }
    let page = area.height as usize - 1;
    let offset = view.offset.min(view.order.len().saturating_sub(1));
    // Only the visible rows are looked at: 100,000 users cost one page.
    let shown: Vec<&DrillRow> = (offset..(offset + page).min(view.order.len()))
        .filter_map(|i| view.row_at(i))
        .collect();
    if shown.is_empty() {
        let msg = if view.rows.is_empty() {
            format!(" No {} spent anything in this window.", view.dim)
        } else {
            format!(
                " No {} matches \"{}\".",
                view.dim,
                text::clean(&view.filter, 30)
            )
        };
        Paragraph::new(Span::styled(msg, theme.muted())).render(area, buf);
        return;
    }
    let names: Vec<String> = shown.iter().map(|r| text::sanitize(&r.name)).collect();
    let cols = fit_columns(view, &shown, &names, area.width as usize);
    let marked = shown.iter().any(|r| r.agg.computed > 0);
    let sort_col = Col::of_sort(view.sort, view.metric);
    let metric_col = Col::of_metric(view.metric);
    let header = Row::new(cols.iter().map(|&(col, _)| {
        let title = if col == Col::Name {
            view.dim.name().to_string()
        } else {
            col.title(view)
        };
        let title = if col == sort_col {
            let arrow = if view.reverse == (col == Col::Name) {
                "▼"
            } else {
                "▲"
            };
            format!("{arrow}{title}")
        } else {
            title
        };
        let style = if col == metric_col {
            theme.title()
        } else {
            theme.muted()
        };
        let line = Line::from(Span::styled(title, style));
        Cell::from(if right_aligned(col) {
            line.right_aligned()
        } else {
            line
        })
    }));
    let body = shown.iter().zip(&names).enumerate().map(|(i, (r, name))| {
        let selected = offset + i == view.selected;
        let cells = cols.iter().map(|&(col, w)| {
            let (content, style) = match col {
                Col::Name => (text::fit(name, w), Style::new()),
                _ if waits(col, view) => (LOADING.to_string(), theme.muted()),
                Col::Change => (cell_text(col, r, marked), theme.change(r.change)),
                Col::Spark => {
                    let style = theme.sparkline(false);
                    let style = if selected {
                        style.patch(theme.not_selected())
                    } else {
                        style
                    };
                    (format::spark_from_zero(&r.spark, w), style)
                }
                _ => (cell_text(col, r, marked), Style::new()),
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
        if selected {
            row.style(theme.selected())
        } else {
            row
        }
    });
    let widths = cols
        .iter()
        .map(|&(_, w)| Constraint::Length(w.min(u16::MAX as usize) as u16));
    Table::new(body, widths)
        .header(header)
        .column_spacing(SPACING)
        .render(area, buf);
}

fn right_aligned(col: Col) -> bool {
    !matches!(col, Col::Name | Col::Spark)
}

/// A figure that waits for the history.
const LOADING: &str = "…";

/// Whether a column's figures wait for the history: the window's when it starts
/// before the part that is in, the change's also when its baseline does.
fn waits(col: Col, view: &DrillView) -> bool {
    match col {
        Col::Name => false,
        Col::Change => view.window_pending || view.baseline_pending,
        _ => view.window_pending,
    }
}

/// `loading`: the history is not all in (the charts' older part fills in).
fn chart_pane(chart: &DrillChart, loading: bool, theme: Theme, area: Rect, buf: &mut Buffer) {
    if area.height < 2 {
        return;
    }
    let title = format!(
        " {} · {} ",
        text::clean(&chart.name, 30),
        chart.metric.label()
    );
    let mut title = vec![Span::styled(title, theme.title())];
    if loading {
        title.push(Span::styled(
            format!("{LOADING} older hours still loading "),
            theme.muted(),
        ));
    }
    let block = Block::new()
        .borders(Borders::TOP)
        .border_style(theme.border())
        .title(Line::from(title));
    let inner = block.inner(area);
    block.render(area, buf);
    let half = inner.width / 2;
    let panes = [
        (
            "h, hourly",
            &chart.hourly_48h,
            Rect {
                width: half.saturating_sub(1),
                ..inner
            },
        ),
        (
            "days, daily",
            &chart.daily_30d,
            Rect {
                x: inner.x + half,
                width: inner.width - half,
                ..inner
            },
        ),
    ];
    for (label, data, r) in panes {
        if r.width < 4 || r.height == 0 {
            continue;
        }
        let bars = Rect {
            y: r.y + 1,
            height: r.height - 1,
            ..r
        };
        // The newest values that fit, and a label that says how many.
        let shown = &data[data.len().saturating_sub(bars.width as usize)..];
        let label = format!("last {} {label}", shown.len());
        Paragraph::new(Span::styled(label, theme.muted())).render(Rect { height: 1, ..r }, buf);
        Sparkline::default()
            .data(shown)
            .style(theme.sparkline(false))
            .render(bars, buf);
    }
}

const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

fn path_text(path: &[(Dim, String)]) -> String {
    path.iter()
        .map(|(_, n)| text::clean(n, 24))
        .collect::<Vec<_>>()
        .join(" › ")
}

/// The most expensive requests behind the selection (or why there are none yet).
pub fn top_requests(top: &TopState, window: &str, theme: Theme, area: Rect, buf: &mut Buffer) {
    if area.height == 0 {
        return;
    }
    let path = match top {
        TopState::Closed => return,
        TopState::Loading { path, .. }
        | TopState::Ready { path, .. }
        | TopState::Failed { path, .. } => path,
    };
    // An anomaly's requests (`a`) are those since its onset, not the window's.
    let scope = match top.since() {
        Some(t) => format!("since {} UTC", t.format("%m-%d %H:%M")),
        None => window.to_string(),
    };
    let block = Block::new()
        .borders(Borders::TOP)
        .border_style(theme.border())
        .title(Span::styled(
            format!(" Most expensive requests: {} ({scope}) ", path_text(path)),
            theme.title(),
        ));
    let inner = block.inner(area);
    block.render(area, buf);
    match top {
        TopState::Closed => {}
        TopState::Loading { frame, .. } => {
            Paragraph::new(Line::from(vec![
                Span::styled(format!(" {} ", SPINNER[frame % SPINNER.len()]), theme.key()),
                Span::styled("fetching…  (Esc closes)", theme.muted()),
            ]))
            .render(inner, buf);
        }
        TopState::Failed { error, .. } => {
            Paragraph::new(Span::styled(
                format!(" could not fetch: {}", text::sanitize(error)),
                theme.bad(),
            ))
            .render(inner, buf);
        }
        TopState::Ready { rows, .. } if rows.is_empty() => {
            let what = if top.since().is_some() {
                " No requests since then."
            } else {
                " No requests in this window."
            };
            Paragraph::new(Span::styled(what, theme.muted())).render(inner, buf);
        }
        TopState::Ready { rows, .. } => {
            let header = Row::new(
                [
                    "time (UTC)",
                    "request",
                    "user",
                    "model",
                    "in tok",
                    "out tok",
                    "cost",
                ]
                .map(|t| {
                    let line = Line::from(t);
                    if matches!(t, "in tok" | "out tok" | "cost") {
                        Cell::from(line.right_aligned())
                    } else {
                        Cell::from(line)
                    }
                }),
            )
            .style(theme.muted());
            // Request ids are copied into other tools: never cut one short silently.
            let id_w = rows
                .iter()
                .map(|r| text::width(&text::clean(&r.request_id, 36)))
                .max()
                .unwrap_or(0)
                .max(7);
            // User and model share what is left, and end in "…" when cut.
            let fixed = 14 + id_w + 7 + 7 + 9 + 6 * SPACING as usize;
            let rest = (inner.width as usize).saturating_sub(fixed);
            let longest = |f: fn(&RequestRow) -> &str| {
                rows.iter()
                    .map(|r| text::width(&text::sanitize(f(r))))
                    .max()
                    .unwrap_or(0)
                    .min(30)
            };
            let (uw, mw) = (longest(|r| &r.user), longest(|r| &r.model));
            let user_w = uw.min(rest.saturating_sub(mw.min(rest / 2)));
            let model_w = rest.saturating_sub(user_w).min(30);
            let body = rows.iter().map(|r| {
                Row::new([
                    Cell::from(r.at.format("%m-%d %H:%M:%S").to_string()),
                    Cell::from(text::clean(&r.request_id, 36)),
                    Cell::from(text::clean(&r.user, user_w)),
                    Cell::from(text::clean(&r.model, model_w)),
                    Cell::from(Line::from(format::count(r.input_tokens)).right_aligned()),
                    Cell::from(Line::from(format::count(r.output_tokens)).right_aligned()),
                    Cell::from(Line::from(r.cost.display_usd()).right_aligned()),
                ])
            });
            let widths = [
                Constraint::Length(14),
                Constraint::Length(id_w as u16),
                Constraint::Length(user_w as u16),
                Constraint::Length(model_w as u16),
                Constraint::Length(7),
                Constraint::Length(7),
                Constraint::Length(9),
            ];
            Table::new(body, widths)
                .header(header)
                .column_spacing(SPACING)
                .render(inner, buf);
        }
    }
}
