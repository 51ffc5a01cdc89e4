//! The status bar (bottom line): is the data live, how fresh, how fast, and which
//! keys do what. Segments are dropped, least important first, when the line is
//! too narrow; the connection state and a disconnection's error always stay.

use chrono::{DateTime, Utc};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::theme::{Level, Theme};
use super::{format, spans_width, text};
use crate::app::progress::days_text;
use crate::app::view::{AlertPartKind, BackfillProgress, StatusView};
use crate::model::{Connection, TailMode};

/// Watermark lag shown from this many seconds on.
const LAG_SHOWN_SECS: i64 = 5;
/// Refresh age that turns the age yellow, then red.
const STALE_WARN_SECS: i64 = 30;
const STALE_BAD_SECS: i64 = 300;
/// Cells a disconnection's error keeps (or all of it if shorter), whatever else must go.
const ERROR_KEEP: usize = 48;

const SEP: &str = " │ ";

/// Cells an answer to a key keeps at least when it is cut to fit.
const ANSWER_MIN: usize = 12;

struct Segment {
    /// Lower is more important.
    priority: u8,
    spans: Vec<Span<'static>>,
    /// Cut to the room left rather than dropped (one span).
    cut_to_fit: bool,
    /// A shorter form, used where the whole does not fit.
    short: Option<Vec<Span<'static>>>,
}

/// `backfill`: the history's progress while it loads.
pub fn render(
    status: &StatusView,
    backfill: Option<BackfillProgress>,
    now: DateTime<Utc>,
    theme: Theme,
    area: Rect,
    buf: &mut Buffer,
) {
    if area.is_empty() {
        return;
    }
    let w = area.width as usize;
    let (badge, level, error) = match &status.connection {
        Connection::Live => (" Live ".to_string(), Level::Good, None),
        Connection::Connecting => (" Connecting… ".to_string(), Level::Warn, None),
        // Once some history is in: how many days of how many (the history is read
        // newest first). Before: steps are six-hour chunks (days in the demo), the
        // share is what means something.
        Connection::Backfilling {
            done_steps,
            total_steps,
            ..
        } => (
            if let Some((from, days)) = backfill
                .and_then(|b| Some((b.loaded_from?, b.history_days)))
                .filter(|(_, days)| *days > 0)
            {
                let loaded = (now - from).num_seconds().max(0) as f64 / 86_400.0;
                format!(
                    " Backfilling {} ",
                    days_text(loaded.min(days as f64), days as f64)
                )
            } else if *total_steps == 0 {
                " Backfilling ".to_string()
            } else {
                format!(
                    " Backfilling {} ",
                    format::percent((*done_steps as f64 / *total_steps as f64).min(1.0))
                )
            },
            Level::Warn,
            None,
        ),
        Connection::Disconnected { error, since } => {
            let as_of = status.last_refresh.unwrap_or(*since);
            let detail = format!(
                " — data as of {} UTC: {}",
                as_of.format("%H:%M:%S"),
                text::sanitize(error).trim()
            );
            (" DISCONNECTED ".to_string(), Level::Bad, Some(detail))
        }
    };

    // In display order; fitted by priority.
    let mut segs = Vec::new();
    if status.paused {
        segs.push(Segment {
            cut_to_fit: false,
            short: None,
            priority: 1,
            spans: vec![Span::styled(" PAUSED ", theme.badge(Level::Warn))],
        });
    }
    let endpoint = text::clean(&status.endpoint, 40);
    if !endpoint.is_empty() {
        segs.push(Segment {
            cut_to_fit: false,
            short: None,
            priority: 6,
            spans: vec![Span::raw(endpoint)],
        });
    }
    let (age, age_level) = match status.last_refresh {
        Some(t) => {
            let secs = (now - t).num_seconds();
            let level = if secs >= STALE_BAD_SECS {
                Some(Level::Bad)
            } else if secs >= STALE_WARN_SECS {
                Some(Level::Warn)
            } else {
                None
            };
            (format::age(now, t), level)
        }
        None => (String::new(), None),
    };
    segs.push(Segment {
        cut_to_fit: false,
        short: None,
        priority: 2,
        spans: if age.is_empty() {
            vec![Span::styled("no data yet", theme.muted())]
        } else {
            vec![
                Span::styled("updated ", theme.muted()),
                Span::styled(age, age_level.map(|l| theme.level(l)).unwrap_or_default()),
            ]
        },
    });
    if status.rejected > 0 {
        segs.push(Segment {
            cut_to_fit: false,
            short: None,
            priority: 3,
            spans: vec![Span::styled(
                format!("{} rejected", format::count(status.rejected)),
                theme.warn(),
            )],
        });
    }
    // Which reasons, where there is room: a data problem says more than Slack's
    // or the desktop's set-up advice, the row count and the tail mode; less than
    // the alert count and the rate.
    if status.rejected > 0 && !status.rejected_by_reason.is_empty() {
        let detail: Vec<String> = status
            .rejected_by_reason
            .iter()
            .map(|(reason, n)| format!("{reason} {}", format::count(*n)))
            .collect();
        segs.push(Segment {
            cut_to_fit: false,
            short: None,
            priority: 6,
            spans: vec![Span::styled(detail.join(", "), theme.warn())],
        });
    }
    if let Some(lag) = status.watermark_lag_secs.filter(|l| *l > LAG_SHOWN_SECS) {
        segs.push(Segment {
            cut_to_fit: false,
            short: None,
            priority: 4,
            spans: vec![Span::styled(
                format!("lag {}", format::secs(lag)),
                theme.warn(),
            )],
        });
    }
    // Reading from a hot standby: how far it trails the primary (always shown: a
    // replica's numbers are only as fresh as its replay).
    if let Some(lag) = &status.replay_lag {
        let style = if lag.secs > LAG_SHOWN_SECS {
            theme.warn()
        } else {
            theme.muted()
        };
        segs.push(Segment {
            cut_to_fit: false,
            priority: 4,
            spans: vec![Span::styled(lag.short(), style)],
            short: Some(vec![Span::styled(format!("standby {}s", lag.secs), style)]),
        });
    }
    // The source's own words: a transaction held open, an overlap mode's limit.
    if let Some(note) = &status.source_note {
        segs.push(Segment {
            cut_to_fit: true,
            priority: 4,
            spans: vec![Span::styled(text::clean(note, 80), theme.warn())],
            short: None,
        });
    }
    // Alerts, each part fitted on its own: what fires and Slack's state right after
    // the age (they show at 80 columns), a problem (Slack misconfigured) cut rather
    // than dropped, desktop notifications in one word; the answer to a key (or the
    // silence prompt) comes right after the connection, cut rather than dropped.
    for part in &status.alerts {
        let (priority, cut_to_fit) = match part.kind {
            AlertPartKind::Answer => (1, true),
            AlertPartKind::Count => (2, false),
            AlertPartKind::Problem => (2, true),
            AlertPartKind::Slack => (3, false),
            // During an outage, where alerts go now matters as much as Slack's state:
            // it keeps its room beside the disconnection's error.
            AlertPartKind::State => (3, false),
            AlertPartKind::Desktop => (6, false),
        };
        let style = if part.problem {
            theme.level(Level::Bad)
        } else if matches!(part.kind, AlertPartKind::Count | AlertPartKind::Answer) {
            theme.warn()
        } else {
            theme.muted()
        };
        segs.push(Segment {
            cut_to_fit,
            priority,
            spans: vec![Span::styled(text::clean(&part.text, 160), style)],
            short: part
                .short
                .as_ref()
                .map(|t| vec![Span::styled(text::clean(t, 40), style)]),
        });
    }
    segs.push(Segment {
        cut_to_fit: false,
        short: None,
        priority: 5,
        spans: vec![
            Span::raw(format::rate(status.events_per_sec)),
            Span::styled(" ev/s", theme.muted()),
        ],
    });
    segs.push(Segment {
        cut_to_fit: false,
        short: None,
        priority: 8,
        spans: vec![
            Span::raw(format::count(status.rows_read)),
            Span::styled(" rows", theme.muted()),
        ],
    });
    // A best-effort tail can miss rows: worth more room than the row count.
    let mode = match status.mode {
        TailMode::IdOverlap | TailMode::KeysetOverlap | TailMode::WindowOverlap => Segment {
            cut_to_fit: false,
            short: None,
            priority: 4,
            spans: vec![Span::styled(status.mode.label(), theme.warn())],
        },
        _ => Segment {
            cut_to_fit: false,
            short: None,
            priority: 9,
            spans: vec![Span::styled(status.mode.label(), theme.muted())],
        },
    };
    segs.push(mode);

    // The keys in effect (`[keys]` may rebind them).
    let k = &status.keys;
    let key = |k: &str| Span::styled(text::clean(k, 12), theme.key());
    let label = |l: &'static str| Span::styled(l, theme.muted());
    let full_hint = vec![
        key(&k.quit),
        label(" quit  "),
        key(&k.select),
        label(" select  "),
        key(&k.refresh),
        label(" refresh  "),
        key(&k.help),
        label(" help"),
    ];
    let short_hint = vec![key(&k.help), label(" help")];

    let badge = vec![Span::styled(badge, theme.badge(level))];
    let error_w = error.as_ref().map_or(0, |e| text::width(e));
    let error_keep = error_w.min(ERROR_KEEP);
    let sep_w = text::width(SEP);
    let (short_w, full_w) = (spans_width(&short_hint), spans_width(&full_hint));

    // Pick segments by priority while they fit beside the badge, the error and a
    // short hint. Segments from the ev/s rate down (priority 5+) also yield to the
    // whole error; the full key hint counts as one more segment (priority 7).
    #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    enum Item {
        /// A segment, in its short form when it has one.
        Seg(usize),
        /// A kept segment's whole form instead of its short one: worth less than
        /// the segments three priorities down (so the alert count and Slack's
        /// state both show before either says more).
        Whole(usize),
        /// The full key hint (priority 7).
        Hint,
    }
    let mut used = spans_width(&badge) + error_keep + 1 + short_w;
    let mut keep = vec![false; segs.len()];
    let mut whole = vec![true; segs.len()];
    let mut full = false;
    let mut order: Vec<(u8, Item)> = Vec::new();
    for (i, seg) in segs.iter().enumerate() {
        order.push((seg.priority, Item::Seg(i)));
        if seg.short.is_some() {
            order.push((seg.priority.saturating_add(3), Item::Whole(i)));
        }
    }
    order.push((7, Item::Hint));
    order.sort();
    let width_of = |seg: &Segment, whole: bool| match (&seg.short, whole) {
        (Some(short), false) => spans_width(short),
        _ => spans_width(&seg.spans),
    };
    for (priority, item) in order {
        let reserve = if priority >= 5 {
            error_w - error_keep
        } else {
            0
        };
        match item {
            Item::Hint => {
                if used + full_w - short_w + reserve <= w {
                    used += full_w - short_w;
                    full = true;
                }
            }
            Item::Seg(i) => {
                whole[i] = segs[i].short.is_none();
                let need = sep_w + width_of(&segs[i], whole[i]);
                if used + need + reserve <= w {
                    used += need;
                    keep[i] = true;
                } else if segs[i].cut_to_fit {
                    let room = w.saturating_sub(used + sep_w + reserve);
                    if room >= ANSWER_MIN.min(need - sep_w) {
                        let seg = &mut segs[i];
                        let style = seg.spans.first().map(|s| s.style).unwrap_or_default();
                        let text: String = seg.spans.iter().map(|s| s.content.as_ref()).collect();
                        seg.spans = vec![Span::styled(text::fit(&text, room), style)];
                        used += sep_w + spans_width(&seg.spans);
                        keep[i] = true;
                    }
                }
            }
            Item::Whole(i) => {
                let extra = width_of(&segs[i], true).saturating_sub(width_of(&segs[i], false));
                if keep[i] && used + extra + reserve <= w {
                    used += extra;
                    whole[i] = true;
                }
            }
        }
    }
    for (seg, whole) in segs.iter_mut().zip(&whole) {
        if !whole && let Some(short) = seg.short.take() {
            seg.spans = short;
        }
    }
    let hint = if full {
        full_hint
    } else if used <= w {
        short_hint
    } else {
        used -= short_w + 1;
        Vec::new()
    };

    let mut line = badge;
    if let Some(error) = error {
        // The error takes whatever the kept segments leave, and at least ERROR_KEEP.
        let room = w.saturating_sub(used - error_keep);
        line.push(Span::styled(text::fit(&error, room), theme.bad()));
    }
    for (seg, _) in segs.into_iter().zip(&keep).filter(|(_, k)| **k) {
        line.push(Span::styled(SEP, theme.muted()));
        line.extend(seg.spans);
    }
    if !hint.is_empty() {
        let pad = w.saturating_sub(spans_width(&line) + spans_width(&hint));
        line.push(Span::raw(" ".repeat(pad.max(1))));
        line.extend(hint);
    }
    Line::from(line).render(area, buf);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::view::AlertPart;

    fn line(status: &StatusView, width: u16) -> String {
        let area = Rect::new(0, 0, width, 1);
        let mut buf = Buffer::empty(area);
        render(status, None, Utc::now(), Theme::new(false), area, &mut buf);
        (0..width)
            .map(|x| buf[(x, 0)].symbol().to_string())
            .collect()
    }

    #[test]
    fn a_standby_shows_its_replay_lag_at_80_columns() {
        let mut status = StatusView {
            endpoint: "replica.internal:5432/llm".into(),
            connection: Connection::Live,
            last_refresh: Some(Utc::now()),
            events_per_sec: 41.0,
            rows_read: 123_456,
            replay_lag: Some(crate::model::ReplayLag {
                secs: 0,
                unreplayed_bytes: 0,
                behind_primary_bytes: Some(4_096),
                last_replayed_commit: None,
            }),
            ..StatusView::default()
        };
        let caught_up = line(&status, 80);
        assert!(caught_up.contains("standby lag 0s"), "{caught_up}");
        status.replay_lag = Some(crate::model::ReplayLag {
            secs: 42,
            unreplayed_bytes: 3 << 20,
            behind_primary_bytes: Some(5 << 20),
            last_replayed_commit: None,
        });
        let behind = line(&status, 120);
        assert!(
            behind.contains("standby lag 42s, 5.0 MB behind"),
            "{behind}"
        );
        // Narrow: the short form keeps the seconds.
        let narrow = line(&status, 60);
        assert!(narrow.contains("standby 42s"), "{narrow}");
    }

    #[test]
    fn rejected_rows_show_their_reasons_where_there_is_room() {
        let status = StatusView {
            endpoint: "db:5432/llm".into(),
            connection: Connection::Live,
            last_refresh: Some(Utc::now()),
            rejected: 7,
            rejected_by_reason: vec![("non_finite_cost", 5), ("null_cost", 2)],
            ..StatusView::default()
        };
        let wide = line(&status, 200);
        assert!(
            wide.contains("7 rejected") && wide.contains("non_finite_cost 5, null_cost 2"),
            "{wide}"
        );
        // Narrow: the count stays, the reasons go first.
        let narrow = line(&status, 70);
        assert!(
            narrow.contains("7 rejected") && !narrow.contains("null_cost"),
            "{narrow}"
        );
    }

    #[test]
    fn the_answer_to_a_key_shows_on_an_80_column_terminal() {
        let mut status = StatusView {
            endpoint: "db.internal:5432/llm".into(),
            connection: Connection::Live,
            last_refresh: Some(Utc::now()),
            events_per_sec: 41.0,
            rows_read: 123_456,
            ..StatusView::default()
        };
        // A key's answer takes the room of lesser segments.
        status.alerts = vec![AlertPart::new(
            AlertPartKind::Answer,
            "silenced support_qa spike until 14:30 UTC",
        )];
        let l = line(&status, 80);
        assert!(
            l.contains("silenced support_qa spike until 14:30 UTC"),
            "{l}"
        );
        assert!(l.contains(" Live ") && l.contains("? help"), "{l}");
        // The silence prompt: what is typed stays, the help after it is cut.
        status.alerts = vec![AlertPart::new(
            AlertPartKind::Answer,
            "silence feature support_qa until: 14:3▏ (HH:MM UTC or 90m; Enter sets, Esc cancels)",
        )];
        let l = line(&status, 80);
        assert!(l.contains("silence feature support_qa until: 14:3▏"), "{l}");
        assert!(l.contains('…') && !l.contains("Esc cancels"), "{l}");
    }

    /// The alert count and Slack's state at 80 columns (issue 16 item 10): they come
    /// before the endpoint, the rate and the row count; desktop notifications take
    /// one word, where there is room.
    #[test]
    fn the_alert_count_and_slack_show_at_80_columns() {
        let summary = crate::app::alerts::AlertsSummary {
            firing: 18,
            pending: 2,
            shared: true,
            slack: "Slack off (set BURNRATE_SLACK_WEBHOOK_URL)".into(),
            desktop: Some(
                "desktop notifications unavailable: no D-Bus session bus (I/O error: No such \
                 file or directory (os error 2))"
                    .into(),
            ),
            ..Default::default()
        };
        let status = StatusView {
            endpoint: "db.internal:5432/llm".into(),
            connection: Connection::Live,
            last_refresh: Some(Utc::now()),
            events_per_sec: 41.0,
            rows_read: 123_456,
            rejected: 3,
            alerts: summary.parts(Utc::now()),
            ..StatusView::default()
        };
        let narrow = line(&status, 80);
        assert!(
            narrow.contains("alerts: 18 firing") && narrow.contains("Slack off"),
            "{narrow}"
        );
        assert!(
            narrow.contains(" Live ") && narrow.contains("? help"),
            "{narrow}"
        );
        assert!(!narrow.contains("D-Bus"), "{narrow}");
        let wide = line(&status, 200);
        for part in [
            "alerts: 18 firing, 2 pending",
            "Slack off (set BURNRATE_SLACK_WEBHOOK_URL)",
            "desktop: off",
            "db.internal:5432/llm",
            "41 ev/s",
            "q quit",
        ] {
            assert!(wide.contains(part), "{part}: {wide}");
        }
        assert!(
            !wide.contains("D-Bus") && !wide.contains("unavailable"),
            "{wide}"
        );
    }

    /// `[keys] quit = ["x"]` shows as "x quit", not "q quit" (issue 16 item 26).
    #[test]
    fn the_key_hints_follow_the_keymap() {
        let overrides = std::collections::BTreeMap::from([
            ("quit".to_string(), vec!["x".to_string()]),
            ("refresh".to_string(), vec!["F5".to_string()]),
            ("help".to_string(), vec!["F1".to_string()]),
        ]);
        let keymap = crate::app::keymap::Keymap::with_overrides(&overrides).unwrap();
        let status = StatusView {
            connection: Connection::Live,
            last_refresh: Some(Utc::now()),
            keys: keymap.hints(),
            ..StatusView::default()
        };
        let wide = line(&status, 120);
        assert!(
            wide.contains("x quit  ↑↓ select  F5 refresh  F1 help"),
            "{wide}"
        );
        assert!(
            !wide.contains("q quit") && !wide.contains("? help"),
            "{wide}"
        );
        let narrow = line(&status, 40);
        assert!(narrow.contains("F1 help"), "{narrow}");
    }

    #[test]
    fn a_disconnection_says_since_when_the_data_is() {
        let at = Utc::now() - chrono::Duration::seconds(30);
        let status = StatusView {
            connection: Connection::Disconnected {
                error: "cannot connect to PostgreSQL at db:5432".into(),
                since: Utc::now(),
            },
            last_refresh: Some(at),
            ..StatusView::default()
        };
        let text = line(&status, 120);
        assert!(
            text.contains("DISCONNECTED")
                && text.contains(&format!("data as of {} UTC", at.format("%H:%M:%S"))),
            "{text}"
        );
    }
}
