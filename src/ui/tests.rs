//! Whole-screen tests on ratatui's `TestBackend`: snapshots of what the on-call
//! engineer sees, and specific facts about colours, safety and robustness.

use insta::{assert_debug_snapshot, assert_snapshot};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier};

use super::fixtures::{self, Fixture};
use super::{draw, render};

fn terminal(f: &Fixture, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test backend");
    terminal
        .draw(|frame| draw(frame, &f.screen()))
        .expect("draw");
    terminal
}

fn buffer(f: &Fixture, width: u16, height: u16) -> Buffer {
    terminal(f, width, height).backend().buffer().clone()
}

/// The text of row `y`, as a terminal shows it (the cell after a wide character
/// is covered by it).
fn row(buf: &Buffer, y: u16) -> String {
    let mut out = String::new();
    let mut covered = 0;
    for x in 0..buf.area.width {
        let cell = &buf[(x, y)];
        if covered == 0 {
            out.push_str(cell.symbol());
        }
        covered = covered
            .max(super::text::width(cell.symbol()))
            .saturating_sub(1);
    }
    out
}

/// The whole screen as text.
fn screen_text(buf: &Buffer) -> String {
    (0..buf.area.height)
        .map(|y| row(buf, y))
        .collect::<Vec<_>>()
        .join("\n")
}

/// First position of `needle` on row `y`, as a cell x.
fn find_in_row(buf: &Buffer, y: u16, needle: &str) -> Option<u16> {
    let cells: Vec<&str> = (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect();
    let first = needle.chars().next()?.to_string();
    (0..cells.len())
        .find(|&x| cells[x] == first && cells[x..].concat().starts_with(needle))
        .map(|x| x as u16)
}

/// (x, y) of the first cell whose text starts `needle` anywhere on screen.
fn find(buf: &Buffer, needle: &str) -> Option<(u16, u16)> {
    (0..buf.area.height).find_map(|y| find_in_row(buf, y, needle).map(|x| (x, y)))
}

// ---- snapshots: the screens themselves ----

#[test]
fn realistic_80x24() {
    assert_snapshot!(terminal(&fixtures::realistic(), 80, 24).backend());
}

#[test]
fn realistic_160x48() {
    assert_snapshot!(terminal(&fixtures::busy_status(), 160, 48).backend());
}

#[test]
fn realistic_120x32() {
    assert_snapshot!(terminal(&fixtures::realistic(), 120, 32).backend());
}

#[test]
fn empty_no_budget_80x24() {
    assert_snapshot!(terminal(&fixtures::empty(), 80, 24).backend());
}

#[test]
fn over_budget_80x24() {
    assert_snapshot!(terminal(&fixtures::over_budget(), 80, 24).backend());
}

#[test]
fn forecast_interval_100x30() {
    assert_snapshot!(terminal(&fixtures::forecast_interval(), 100, 30).backend());
}

#[test]
fn forecast_gauge_marks_the_interval_and_the_budget() {
    let buf = buffer(&fixtures::forecast_interval(), 100, 30);
    let y = 2;
    let line = row(&buf, y);
    // Filled to the low end, ▓ to the forecast, ▒ to the high end, │ at the budget.
    for c in ["█", "▓", "▒", "│"] {
        assert!(line.contains(c), "{c} in {line}");
    }
    let budget = find_in_row(&buf, y, "│").unwrap();
    let high = line.rfind('▒').unwrap();
    assert!(line.find('│').unwrap() < high, "{line}");
    assert_eq!(buf[(budget, y)].fg, Color::Red);
    assert!(row(&buf, 0).contains("runs out Nov 29"), "{}", row(&buf, 0));
    assert!(
        row(&buf, 1).contains("$18,110-$21,640 80%"),
        "{}",
        row(&buf, 1)
    );
}

#[test]
fn many_anomalies_80x24() {
    assert_snapshot!(terminal(&fixtures::many_anomalies(), 80, 24).backend());
}

#[test]
fn many_anomalies_120x40() {
    assert_snapshot!(terminal(&fixtures::many_anomalies(), 120, 40).backend());
}

#[test]
fn disconnected_80x24() {
    assert_snapshot!(terminal(&fixtures::disconnected(), 80, 24).backend());
}

#[test]
fn first_chunk_80x24() {
    assert_snapshot!(terminal(&fixtures::first_chunk(), 80, 24).backend());
}

#[test]
fn mid_backfill_80x24() {
    assert_snapshot!(terminal(&fixtures::mid_backfill(), 80, 24).backend());
}

#[test]
fn mid_backfill_200x50() {
    assert_snapshot!(terminal(&fixtures::mid_backfill(), 200, 50).backend());
}

#[test]
fn late_backfill_120x36() {
    assert_snapshot!(terminal(&fixtures::late_backfill(), 120, 36).backend());
}

#[test]
fn backfilling_80x24() {
    assert_snapshot!(terminal(&fixtures::backfilling(), 80, 24).backend());
}

#[test]
fn hostile_names_100x30() {
    assert_snapshot!(terminal(&fixtures::hostile(), 100, 30).backend());
}

#[test]
fn minimum_size_40x10() {
    assert_snapshot!(terminal(&fixtures::realistic(), 40, 10).backend());
}

#[test]
fn too_small_30x8() {
    assert_snapshot!(terminal(&fixtures::realistic(), 30, 8).backend());
}

/// Under NO_COLOR the snapshot includes every cell's style: the styles column must
/// show only modifiers, never a colour.
#[test]
fn no_color_80x24_styles() {
    assert_debug_snapshot!(buffer(&fixtures::no_color(), 80, 24));
}

// ---- facts ----

#[test]
fn the_header_says_month_spend_burn_forecast_and_days() {
    let buf = buffer(&fixtures::realistic(), 80, 24);
    let top = screen_text(&buf);
    for s in [
        "Nov 2026, UTC",
        "day 13.1 of 30",
        "$8,412",
        "$640.61",
        "$19,218",
        "(run rate)",
        "budget $20,000/month",
    ] {
        assert!(top.contains(s), "missing {s:?} in\n{top}");
    }
}

#[test]
fn gauges_are_green_under_80_yellow_under_100_and_red_over() {
    // Realistic: month-to-date 42% (green), forecast 96% (yellow).
    let buf = buffer(&fixtures::realistic(), 80, 24);
    let y = 2;
    let spent = find_in_row(&buf, y, "█").expect("spent gauge");
    assert_eq!(buf[(spent, y)].fg, Color::Green);
    let forecast = find_in_row(&buf, y, "forecast").expect("forecast gauge") + 9;
    assert_eq!(buf[(forecast, y)].symbol(), "█");
    assert_eq!(buf[(forecast, y)].fg, Color::Yellow);

    // Over budget: both red, and the text says so without colour.
    let buf = buffer(&fixtures::over_budget(), 80, 24);
    let spent = find_in_row(&buf, y, "█").expect("spent gauge");
    assert_eq!(buf[(spent, y)].fg, Color::Red);
    let forecast = find_in_row(&buf, y, "forecast").expect("forecast gauge") + 9;
    assert_eq!(buf[(forecast, y)].fg, Color::Red);
    assert!(row(&buf, y).contains("112% OVER"), "{}", row(&buf, y));
    assert!(row(&buf, y).contains("256% OVER"), "{}", row(&buf, y));
}

#[test]
fn without_a_budget_the_header_names_the_setting() {
    let buf = buffer(&fixtures::empty(), 80, 24);
    assert!(row(&buf, 2).contains("no budget set (budget.monthly_usd)"));
    assert!(find(&buf, "█").is_none(), "no gauge without a budget");
}

#[test]
fn change_is_red_above_50_percent_and_green_when_down() {
    let buf = buffer(&fixtures::realistic(), 120, 32);
    let (x, y) = find(&buf, "+312%").expect("support_qa change");
    assert_eq!(buf[(x, y)].fg, Color::Red);
    let (x, y) = find(&buf, "+64%").expect("agent_planner change");
    assert_eq!(buf[(x, y)].fg, Color::Red);
    let (x, y) = find(&buf, "+7%").expect("summarize_email change");
    assert_eq!(buf[(x, y)].fg, Color::Reset);
    let (x, y) = find(&buf, "-41%").expect("search_rerank change");
    assert_eq!(buf[(x, y)].fg, Color::Green);
}

#[test]
fn the_selected_row_is_reversed_and_anomalous_rows_are_marked() {
    let mut f = fixtures::realistic();
    f.selected = 1;
    let buf = buffer(&f, 120, 32);
    let (x, y) = find(&buf, "code_review_bot").expect("selected row");
    assert!(buf[(x, y)].modifier.contains(Modifier::REVERSED));
    let (x, y) = find(&buf, "support_qa").expect("anomalous row");
    assert!(!buf[(x, y)].modifier.contains(Modifier::REVERSED));
    assert_eq!(buf[(x, y)].fg, Color::Red);
    assert_eq!(buf[(x - 2, y)].symbol(), "!");
    // The sparkline keeps its shape on the selected row.
    let spark = (0..buf.area.width)
        .rev()
        .find(|&sx| "▁▂▃▄▅▆▇█".contains(buf[(sx, y + 1)].symbol()));
    let sx = spark.expect("sparkline on the selected row");
    assert!(!buf[(sx, y + 1)].modifier.contains(Modifier::REVERSED));
}

#[test]
fn the_selection_scrolls_into_view() {
    let mut f = fixtures::realistic();
    f.selected = 6; // the last of 7 rows, in a table too short for all
    let buf = buffer(&f, 80, 14);
    let (x, y) = find(&buf, "embeddings_b").expect("selected row is visible");
    assert!(buf[(x, y)].modifier.contains(Modifier::REVERSED));
}

#[test]
fn the_anomaly_pane_is_highlighted_only_when_it_lists_something() {
    let buf = buffer(&fixtures::realistic(), 80, 24);
    let (x, y) = find(&buf, " ! 1 ANOMALY ").expect("anomaly title");
    assert_eq!(buf[(x, y)].bg, Color::Red);
    assert_eq!(buf[(79, y)].symbol(), "─");
    assert_eq!(buf[(79, y)].fg, Color::Red, "border turns red");
    assert!(find(&buf, "support_qa jumped 320%").is_some());
    assert!(find(&buf, "observed $41.20 vs expected $9.80 (4.2x)").is_some());
    assert!(find(&buf, "of it: model gpt-4.1 $38.70 94%").is_some());

    let mut quiet = fixtures::realistic();
    quiet.overview.anomalies.clear();
    quiet
        .overview
        .features
        .iter_mut()
        .for_each(|r| r.anomalous = false);
    let buf = buffer(&quiet, 80, 24);
    let (x, y) = find(&buf, "No anomalies").expect("calm pane");
    assert_eq!(buf[(x, y)].fg, Color::Green);
    assert_eq!(buf[(79, y - 1)].fg, Color::DarkGray, "border stays quiet");
}

#[test]
fn anomalies_that_do_not_fit_are_counted() {
    let buf = buffer(&fixtures::many_anomalies(), 80, 16);
    let text = screen_text(&buf);
    assert!(text.contains(" ! 3 ANOMALIES "), "{text}");
    // The key that opens the full list, not a log nothing opens (issue 16 item 12).
    assert!(text.contains("more: n opens the anomaly log"), "{text}");
}

/// Issue 16 item 12: nine anomalies at 120x40 leave every feature in view; the
/// pane names the key of the full list, which shows all nine.
#[test]
fn nine_anomalies_leave_the_features_in_view_and_the_log_lists_them_all() {
    let f = fixtures::nine_anomalies();
    let text = screen_text(&buffer(&f, 120, 40));
    for feature in &f.overview.features {
        assert!(text.contains(&feature.name), "{}:\n{text}", feature.name);
    }
    assert!(text.contains("more: n opens the anomaly log"), "{text}");
    assert!(!text.contains("feature_5 jumped"), "{text}");
    // The log, over the body, scrolled to its end: the last anomaly in full.
    let mut screen = f.screen();
    let (max, _) =
        super::anomalies::log_scroll_limits(&f.overview.anomalies, Rect::new(0, 3, 120, 36));
    screen.anomaly_log = Some(max);
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    terminal.draw(|frame| draw(frame, &screen)).unwrap();
    let log = screen_text(terminal.backend().buffer());
    assert!(
        log.contains("Anomaly log: 9 now, most severe first"),
        "{log}"
    );
    assert!(log.contains("feature_5 jumped 320%"), "{log}");
    assert!(log.contains("Esc closes"), "{log}");
    // At 80x24 nothing is cut: long lines wrap (the first anomaly's contributors).
    screen.anomaly_log = Some(0);
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    terminal.draw(|frame| draw(frame, &screen)).unwrap();
    let log = screen_text(terminal.backend().buffer());
    assert!(log.contains("tenant acme-corp $29.00 70%"), "{log}");
    assert!(
        log.contains("keep firing a while after their anomaly clears"),
        "{log}"
    );
    // ... and every anomaly can be scrolled to.
    let (max, _) =
        super::anomalies::log_scroll_limits(&f.overview.anomalies, Rect::new(0, 3, 80, 20));
    screen.anomaly_log = Some(max);
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    terminal.draw(|frame| draw(frame, &screen)).unwrap();
    let log = screen_text(terminal.backend().buffer());
    assert!(log.contains("feature_5 jumped 320%"), "{log}");
}

/// Issue 16 item 10: at 80 columns the alert count and Slack's state show; the
/// desktop state is one word where there is room, never the D-Bus error; the
/// anomaly pane says what it counts against the alerts.
#[test]
fn the_alert_count_and_slack_show_at_80_columns_and_the_counts_are_explained() {
    let f = fixtures::nine_anomalies();
    let buf = buffer(&f, 80, 24);
    let status = row(&buf, 23);
    for s in [" Live ", "alerts: 18 firing", "Slack off", "? help"] {
        assert!(status.contains(s), "missing {s:?} in {status:?}");
    }
    let text = screen_text(&buf);
    assert!(!text.contains("D-Bus"), "{text}");
    assert!(text.contains("! 9 ANOMALIES NOW"), "{text}");
    assert!(text.contains("18 alerts firing"), "{text}");
    let buf = buffer(&f, 200, 50);
    let status = row(&buf, 49);
    for s in [
        "alerts: 18 firing, 2 pending",
        "Slack off (set BURNRATE_SLACK_WEBHOOK_URL)",
        "desktop: off",
        "q quit",
    ] {
        assert!(status.contains(s), "missing {s:?} in {status:?}");
    }
    assert!(!status.contains("D-Bus"), "{status}");
    let text = screen_text(&buf);
    assert!(
        text.contains("18 alerts firing, incl. held after clearing and monitor health (L)"),
        "{text}"
    );
    // Fewer alerts than anomalies: said why too.
    let mut fewer = fixtures::nine_anomalies();
    fewer.status.alerts_firing = Some(5);
    let text = screen_text(&buffer(&fewer, 200, 50));
    assert!(
        text.contains("5 alerts firing: a name's spikes share one; new ones pend first (L)"),
        "{text}"
    );
}

#[test]
fn the_status_bar_reports_health_freshness_and_keys() {
    let buf = buffer(&fixtures::realistic(), 80, 24);
    let status = row(&buf, 23);
    for s in [" Live ", "updated 2s ago", "41 ev/s", "? help"] {
        assert!(status.contains(s), "missing {s:?} in {status:?}");
    }
    assert_eq!(buf[(0, 23)].bg, Color::Green);
    assert!(!status.contains("lag"), "a 1-second lag is not news");

    let buf = buffer(&fixtures::busy_status(), 160, 48);
    let status = row(&buf, 47);
    for s in [
        " PAUSED ",
        "db.internal:5432/billing",
        "37 rejected",
        "lag 42s",
        "id overlap (best effort)",
        "q quit  ↑↓ select  r refresh  ? help",
    ] {
        assert!(status.contains(s), "missing {s:?} in {status:?}");
    }
    let (x, _) = find(&buf, "id overlap").expect("mode");
    assert_eq!(
        buf[(x, 47)].fg,
        Color::Yellow,
        "a best-effort tail is a warning"
    );
}

#[test]
fn a_disconnection_says_how_old_the_data_is_and_why() {
    let buf = buffer(&fixtures::disconnected(), 80, 24);
    let status = row(&buf, 23);
    assert!(
        status.starts_with(" DISCONNECTED  — data as of 03:07:52 UTC: could not connect"),
        "{status:?}"
    );
    assert_eq!(buf[(1, 23)].bg, Color::Red);
    assert!(!status.contains('\t'));
    // Wide enough, the whole error shows, on one line.
    let buf = buffer(&fixtures::disconnected(), 240, 30);
    assert!(
        row(&buf, 29).contains("TCP/IP connections on port 5432?"),
        "{}",
        row(&buf, 29)
    );
    assert!(row(&buf, 29).contains("updated 4m ago"));
}

#[test]
fn backfill_shows_progress_instead_of_a_blank_screen() {
    let buf = buffer(&fixtures::backfilling(), 80, 24);
    let text = screen_text(&buf);
    // Days of history, not six-hour chunks counted as days (issue 16 item 18).
    assert!(
        text.contains("Loading the last 35 days of history"),
        "{text}"
    );
    assert!(text.contains("19%"), "{text}");
    assert!(text.contains("Backfilling 19%"), "{text}");
    assert!(!text.contains("27/142"), "{text}");
    // What the header knows without the history, and nothing it does not.
    assert!(text.contains("Nov 2026, UTC  day 13.1 of 30"), "{text}");
    assert!(text.contains("budget $20,000/month"), "{text}");
    for bad in ["$0.00", "no budget set", "()", "day 0.0 of 0"] {
        assert!(!text.contains(bad), "{bad}: {text}");
    }
    assert!(
        !text.contains("Spend by feature"),
        "panes wait for the history"
    );
}

#[test]
fn no_color_sets_no_colour_anywhere() {
    for (name, mut f) in fixtures::all() {
        f.color = false;
        for (w, h) in [(80, 24), (160, 48), (30, 8)] {
            let buf = buffer(&f, w, h);
            for cell in &buf.content {
                assert_eq!(
                    (cell.fg, cell.bg),
                    (Color::Reset, Color::Reset),
                    "{name} {w}x{h}: {cell:?}"
                );
            }
        }
    }
    // And the screen still reads: the selection and the alert use modifiers.
    let buf = buffer(&fixtures::no_color(), 80, 24);
    let (x, y) = find(&buf, "support_qa").expect("selected row");
    assert!(buf[(x, y)].modifier.contains(Modifier::REVERSED));
    let (x, y) = find(&buf, " ! 1 ANOMALY ").expect("anomaly title");
    assert!(
        buf[(x, y)]
            .modifier
            .contains(Modifier::REVERSED | Modifier::BOLD)
    );
}

#[test]
fn hostile_text_never_reaches_the_terminal() {
    let f = fixtures::hostile();
    for (w, h) in [(80, 24), (100, 30), (200, 60), (40, 10)] {
        let buf = buffer(&f, w, h);
        for cell in &buf.content {
            for c in cell.symbol().chars() {
                assert!(
                    !c.is_control(),
                    "{w}x{h}: control U+{:04X} in a cell",
                    c as u32
                );
                assert!(
                    !matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200b}'..='\u{200f}' | '\u{feff}'),
                    "{w}x{h}: U+{:04X} in a cell",
                    c as u32
                );
            }
        }
        let text = screen_text(&buf);
        assert!(!text.contains('\x1b'), "ESC reached the buffer");
        assert!(!text.contains("pwned"), "an OSC payload was drawn");
        assert!(!text.contains("[2J"), "a CSI's parameters were drawn");
        assert!(
            !text.contains("evil.example"),
            "a hyperlink target was drawn"
        );
    }
    // Names stay recognisable, and the tampering stays visible.
    let text = screen_text(&buffer(&f, 200, 60));
    assert!(text.contains("evil\u{FFFD}gpj.exe"), "{text}");
    assert!(text.contains("admin\u{FFFD}x\u{FFFD}"), "{text}");
    assert!(text.contains("click me"), "{text}");
    assert!(text.contains("(none)"), "an empty name reads (none)");
    assert!(text.contains("DISCONNECTED  — data as of"), "{text}");
}

#[test]
fn long_names_are_cut_to_the_column_with_an_ellipsis() {
    let buf = buffer(&fixtures::hostile(), 100, 30);
    let text = screen_text(&buf);
    assert!(text.contains("xxxxxxx…"), "{text}");
    assert!(
        !text.contains(&"x".repeat(60)),
        "a 500-character name is cut"
    );
    assert!(text.contains("翻訳サービス"), "{text}");
}

#[test]
fn empty_data_draws_placeholders() {
    let buf = buffer(&fixtures::empty(), 80, 24);
    let text = screen_text(&buf);
    for s in [
        "No spend recorded yet.",
        "No anomalies",
        "No spend this week.",
        "No requests in 30 days.",
        "Connecting…",
        "no data yet",
    ] {
        assert!(text.contains(s), "missing {s:?} in\n{text}");
    }
}

#[test]
fn a_too_small_terminal_says_so() {
    let buf = buffer(&fixtures::realistic(), 39, 24);
    assert!(screen_text(&buf).contains("too small"));
    let buf = buffer(&fixtures::realistic(), 80, 9);
    assert!(screen_text(&buf).contains("too small"));
    let buf = buffer(&fixtures::realistic(), 40, 10);
    assert!(!screen_text(&buf).contains("too small"));
}

#[test]
fn the_80x24_screen_keeps_every_pane() {
    let buf = buffer(&fixtures::realistic(), 80, 24);
    let text = screen_text(&buf);
    for s in [
        "Spend by feature",
        "ANOMALY",
        "Top 5 cost drivers",
        "Cost per request, 30 days",
        "$/req",
        "last 24h",
    ] {
        assert!(text.contains(s), "missing {s:?} in\n{text}");
    }
    // Every feature row is there.
    for name in [
        "support_qa",
        "code_review_bot",
        "agent_planner",
        "summarize_email",
        "search_rerank",
        "translate_ui",
    ] {
        assert!(text.contains(name), "missing {name:?} in\n{text}");
    }
}

#[test]
fn never_panics_at_any_size_on_any_data() {
    for (name, f) in fixtures::all() {
        for w in (0..=90).step_by(3).chain([120, 160, 250, 500]) {
            for h in (0..=30).step_by(2).chain([48, 100]) {
                let result = std::panic::catch_unwind(|| buffer(&f, w, h));
                assert!(result.is_ok(), "{name} panicked at {w}x{h}");
            }
        }
    }
}

#[test]
fn renders_into_an_offset_area_and_a_zero_area() {
    let f = fixtures::realistic();
    let mut buf = Buffer::empty(Rect::new(0, 0, 100, 40));
    render(&f.screen(), Rect::new(10, 5, 80, 24), &mut buf);
    assert_eq!(buf[(9, 5)].symbol(), " ", "nothing drawn left of the area");
    assert!(row(&buf, 5).contains("burnrate"));
    render(&f.screen(), Rect::new(0, 0, 0, 0), &mut buf);
    render(&f.screen(), Rect::new(90, 30, 50, 50), &mut buf); // partly outside
}

// ---- the drill-down ----

#[test]
fn drill_users_80x24() {
    assert_snapshot!(terminal(&fixtures::drill_users(), 80, 24).backend());
}

#[test]
fn drill_users_160x48() {
    assert_snapshot!(terminal(&fixtures::drill_users(), 160, 48).backend());
}

#[test]
fn drill_filtered_80x24() {
    assert_snapshot!(terminal(&fixtures::drill_filtered(), 80, 24).backend());
}

#[test]
fn drill_top_requests_80x24() {
    assert_snapshot!(terminal(&fixtures::drill_top(), 80, 24).backend());
}

#[test]
fn drill_top_requests_160x48() {
    assert_snapshot!(terminal(&fixtures::drill_top(), 160, 48).backend());
}

#[test]
fn drill_loading_80x24() {
    assert_snapshot!(terminal(&fixtures::drill_loading(), 80, 24).backend());
}

// ---- costs computed from the price list ----

#[test]
fn priced_120x32() {
    assert_snapshot!(terminal(&fixtures::priced(), 120, 32).backend());
}

#[test]
fn drill_priced_120x32() {
    assert_snapshot!(terminal(&fixtures::drill_priced(), 120, 32).backend());
}

#[test]
fn computed_costs_are_marked_only_where_they_are_and_explained() {
    let buf = buffer(&fixtures::priced(), 160, 48);
    let text = screen_text(&buf);
    assert!(
        text.contains("≈ cost computed from the price list for 11.4k requests"),
        "{text}"
    );
    let (_, y) = find(&buf, "support_qa").expect("support_qa row");
    let support = row(&buf, y);
    assert!(
        support.contains("$41.20≈") && support.contains("$187.40≈") && support.contains("$1,062≈"),
        "{support}"
    );
    let (_, y) = find(&buf, "code_review_bot").expect("code_review_bot row");
    assert!(!row(&buf, y).contains('≈'), "{}", row(&buf, y));
    // summarize_email: only its 7-day cost (and the 7-day unit costs) are computed.
    let (_, y) = find(&buf, "summarize_email").expect("summarize_email row");
    let summarize = row(&buf, y);
    assert!(
        summarize.contains("$318.90≈") && !summarize.contains("$22.47≈"),
        "{summarize}"
    );
    // The drivers pane marks the driver whose cost was priced.
    let drivers: Vec<String> = (0..buf.area.height)
        .map(|y| row(&buf, y))
        .filter(|r| {
            (r.contains(" feature ") && r.contains("support_qa")) || r.contains("claude-sonnet-4")
        })
        .collect();
    assert!(
        drivers
            .iter()
            .any(|r| r.contains("support_qa") && r.contains('≈'))
            && drivers
                .iter()
                .any(|r| r.contains("claude-sonnet-4") && !r.contains('≈'))
            && drivers.len() == 2,
        "{drivers:?}"
    );
    // Nothing computed: no mark and no legend.
    let plain = screen_text(&buffer(&fixtures::realistic(), 160, 48));
    assert!(
        !plain.contains('≈') && !plain.contains("price list"),
        "{plain}"
    );

    let drill = screen_text(&buffer(&fixtures::drill_priced(), 160, 48));
    assert!(
        drill.contains("≈ cost computed from the price list for 127 requests"),
        "{drill}"
    );
    assert_eq!(
        drill
            .lines()
            .filter(|l| l.contains("user_") && l.contains('≈'))
            .count(),
        3,
        "{drill}"
    );
}

#[test]
fn drill_no_color_80x24_styles() {
    let mut f = fixtures::drill_users();
    f.color = false;
    let buf = buffer(&f, 80, 24);
    for cell in &buf.content {
        assert_eq!(cell.fg, Color::Reset, "{cell:?}");
        assert_eq!(cell.bg, Color::Reset, "{cell:?}");
    }
    // The selection still reads: reversed.
    let (x, y) = find(&buf, "user_7919").expect("the selected row is shown");
    assert!(buf[(x, y)].modifier.contains(Modifier::REVERSED));
}

#[test]
fn the_drill_down_shows_the_path_window_metric_and_every_column_when_wide() {
    let text = screen_text(&buffer(&fixtures::drill_users(), 160, 48));
    for s in [
        "support_qa › by user",
        "window 24h",
        "metric cost",
        "▼spend",
        "requests",
        "$/req",
        "$/1k tok",
        "share",
        "vs prev",
        "trend",
        "user_4812",
        "+420%",
        "new",
        "last 48 h, hourly",
        "last 30 days, daily",
    ] {
        assert!(text.contains(s), "missing {s:?} in\n{text}");
    }
}

#[test]
fn a_30_day_window_says_its_change_is_against_the_days_before_it() {
    use crate::app::drill::Window;
    use crate::app::view::Baseline;
    let mut f = fixtures::drill_users();
    let d = f.drill.as_mut().unwrap();
    d.window = Window::Days30;
    d.baseline = Baseline::HoursBefore {
        hours: 7 * 24,
        window_hours: 30 * 24,
    };
    let text = screen_text(&buffer(&f, 160, 48));
    assert!(text.contains("window 30d"), "{text}");
    assert!(
        text.contains("vs 7d") && !text.contains("vs prev"),
        "{text}"
    );
    f.drill.as_mut().unwrap().window = Window::MonthToDate;
    let text = screen_text(&buffer(&f, 80, 24));
    assert!(text.contains("window MTD"), "{text}");
    assert!(text.contains("budget $20,000/month"), "{text}");
}

#[test]
fn only_the_visible_page_of_a_long_table_is_drawn() {
    let f = fixtures::drill_users();
    let text = screen_text(&buffer(&f, 80, 24));
    let last = f
        .drill
        .as_ref()
        .and_then(|d| d.row_at(399))
        .unwrap()
        .clone();
    assert!(
        !text.contains(&last.name),
        "row 400 is not on the first page"
    );
    let mut f = f;
    if let Some(d) = f.drill.as_mut() {
        d.offset = 390;
        d.selected = 399;
    }
    let text = screen_text(&buffer(&f, 80, 24));
    assert!(text.contains(&last.name), "{text}");
}

#[test]
fn drill_geometry_matches_what_is_drawn() {
    let f = fixtures::drill_users();
    for (w, h) in [(80, 24), (160, 48), (60, 12)] {
        let (y, rows) = super::drill_table_area(w, h, false);
        let buf = buffer(&f, w, h);
        let first = f.drill.as_ref().and_then(|d| d.row_at(0)).unwrap();
        assert!(row(&buf, y).contains(&first.name), "{w}x{h}: row {y}");
        let below = f.drill.as_ref().and_then(|d| d.row_at(rows)).unwrap();
        assert!(!screen_text(&buf).contains(&below.name), "{w}x{h}");
        let last_shown = f.drill.as_ref().and_then(|d| d.row_at(rows - 1)).unwrap();
        assert!(row(&buf, y + rows as u16 - 1).contains(&last_shown.name));
    }
}

#[test]
fn hostile_names_in_the_drill_down_never_reach_the_terminal() {
    let f = fixtures::drill_hostile();
    for (w, h) in [(80, 24), (160, 48), (40, 10)] {
        let buf = buffer(&f, w, h);
        for cell in &buf.content {
            for c in cell.symbol().chars() {
                assert!(!c.is_control(), "{w}x{h}: control U+{:04X}", c as u32);
            }
        }
        let text = screen_text(&buf);
        assert!(
            !text.contains("pwned") && !text.contains("evil.example"),
            "{text}"
        );
    }
    let text = screen_text(&buffer(&f, 160, 48));
    assert!(
        text.contains("zzz…"),
        "long names end in an ellipsis:\n{text}"
    );
}

#[test]
fn help_80x24() {
    let f = fixtures::drill_users();
    let lines = crate::app::keymap::Keymap::default().help_lines();
    let mut screen = f.screen();
    screen.help = Some(&lines);
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("test backend");
    terminal.draw(|frame| draw(frame, &screen)).expect("draw");
    assert_snapshot!(terminal.backend());
}

fn alerts_pane() -> crate::app::alerts::AlertsPane {
    use crate::alert::{Labels, Silence};
    use crate::app::alerts::{AlertsPane, PaneAlert};
    use crate::detect::Severity;
    let at = |s: &str| -> chrono::DateTime<chrono::Utc> { s.parse().unwrap() };
    let mut m1 = Labels::new();
    m1.insert("feature".into(), "support_qa".into());
    m1.insert("rule".into(), "spike_5m".into());
    let mut m2 = Labels::new();
    m2.insert("database".into(), "db.internal:5432/llm".into());
    m2.insert("rule".into(), "database_unreachable".into());
    AlertsPane {
        alerts: vec![
            PaneAlert {
                fingerprint: "0123456789abcdef".into(),
                matchers: m1.clone(),
                severity: Severity::Critical,
                rule: "spike_5m".into(),
                subject: "feature support_qa".into(),
                phase: "firing",
                since: Some(at("2026-11-28T09:12:00Z")),
                acked_by: Some("alice".into()),
                silenced_by: Some("3f2a9c1d".into()),
            },
            PaneAlert {
                fingerprint: "fedcba9876543210".into(),
                matchers: Labels::new(),
                severity: Severity::Warning,
                rule: "runaway_user".into(),
                subject: "user user_0591".into(),
                phase: "pending",
                since: Some(at("2026-11-28T09:40:00Z")),
                acked_by: None,
                silenced_by: None,
            },
        ],
        silences: vec![
            Silence {
                id: "3f2a9c1d".into(),
                matchers: m1,
                starts_at: at("2026-11-28T09:15:00Z"),
                ends_at: at("2026-11-28T13:15:00Z"),
                created_by: "alice".into(),
            },
            Silence {
                id: "8be01f77".into(),
                matchers: m2,
                starts_at: at("2026-11-28T09:30:00Z"),
                ends_at: at("2026-11-29T09:30:00Z"),
                created_by: "bob".into(),
            },
        ],
        selected: 1,
        now: at("2026-11-28T09:45:00Z"),
        tz: chrono_tz::Europe::Berlin,
    }
}

#[test]
fn alerts_and_silences_pane_100x30() {
    let f = fixtures::realistic();
    let pane = alerts_pane();
    let mut screen = f.screen();
    screen.alerts = Some(&pane);
    let mut terminal = Terminal::new(TestBackend::new(100, 30)).expect("test backend");
    terminal.draw(|frame| draw(frame, &screen)).expect("draw");
    let text = screen_text(terminal.backend().buffer());
    // Expiry in the billing time zone, what it matches, who set it, and which one
    // `U` lifts (the selected one is marked).
    assert!(
        text.contains("▶ 8be01f77  until 11-29 10:30 (23h 45m left)  by bob"),
        "{text}"
    );
    assert!(text.contains("· acked by alice, silenced"), "{text}");
    assert_snapshot!(terminal.backend());
}

#[test]
fn alerts_pane_without_silences_says_how_to_set_one() {
    let f = fixtures::realistic();
    let mut pane = alerts_pane();
    pane.silences.clear();
    pane.alerts.clear();
    let mut screen = f.screen();
    screen.alerts = Some(&pane);
    let buf = {
        let mut t = Terminal::new(TestBackend::new(80, 24)).expect("test backend");
        t.draw(|frame| draw(frame, &screen)).expect("draw");
        t.backend().buffer().clone()
    };
    let text = screen_text(&buf);
    assert!(
        text.contains("none: z or Z on an alert silences it"),
        "{text}"
    );
    assert!(text.contains("Alerts and silences"), "{text}");
}

#[test]
fn a_level_of_a_name_the_table_lacks_says_so() {
    for width in [80u16, 160] {
        let text = screen_text(&buffer(&fixtures::drill_absent(), width, 30));
        assert!(
            text.contains("no user column in this table"),
            "{width} columns:\n{text}"
        );
        assert!(text.contains("(none)"), "{text}");
    }
    let plain = screen_text(&buffer(&fixtures::drill_users(), 160, 30));
    assert!(!plain.contains("column in this table"), "{plain}");
}

#[test]
fn alerts_firing_in_the_shared_state_are_listed_at_once_and_marked() {
    use crate::alert::{Book, Evaluation, Hold, Observation, Policy};
    // A dashboard just opened: its own detector has found nothing yet, while the
    // shared state holds a firing spike (another copy's).
    let mut f = fixtures::realistic();
    let spike = f.overview.anomalies.remove(0);
    f.overview.anomalies.clear();
    let mut book = Book::default();
    book.step(
        &Evaluation {
            now: fixtures::now(),
            observations: vec![(Observation::from_anomaly(&spike), Hold::Confirmed)],
        },
        &Policy::default(),
    );
    let shared: Vec<_> = book
        .firing()
        .into_iter()
        .filter_map(crate::alert::shared_anomaly)
        .collect();
    f.status.shared_alerts = crate::alert::unconfirmed(&shared, &f.overview.anomalies);
    let text = screen_text(&buffer(&f, 120, 40));
    assert!(!text.contains("No anomalies"), "{text}");
    assert!(text.contains("! 1 ANOMALY"), "{text}");
    assert!(text.contains("[shared state] support_qa"), "{text}");

    // Once its own detector confirms it, it is listed once, unmarked.
    f.overview.anomalies = vec![spike];
    f.status.shared_alerts = crate::alert::unconfirmed(&shared, &f.overview.anomalies);
    let text = screen_text(&buffer(&f, 120, 40));
    assert!(!text.contains("[shared state]"), "{text}");
    assert!(text.contains("! 1 ANOMALY"), "{text}");
}

/// Issue 17: between the first chunk's arrival (or the history's end) and the
/// first overview built from it, the body shows the progress, never an empty
/// dashboard that says "No anomalies" or "No spend".
#[test]
fn no_empty_dashboard_before_the_first_build_from_the_history() {
    let mut f = fixtures::backfilling();
    let first = fixtures::first_chunk();
    f.backfill = first.backfill;
    f.status.connection = first.status.connection.clone();
    for f in [f, {
        let mut done = fixtures::backfilling();
        done.backfill = None;
        done.status.connection = crate::model::Connection::Live;
        done
    }] {
        let text = screen_text(&buffer(&f, 80, 24));
        assert!(text.contains("Loading"), "{text}");
        for bad in ["No anomalies", "No spend", "Spend by feature", "$0.00"] {
            assert!(!text.contains(bad), "{bad}: {text}");
        }
    }
}

/// A tall terminal lists more than five drivers rather than leaving rows blank,
/// and the title says how many it shows.
#[test]
fn a_tall_terminal_lists_more_cost_drivers() {
    let mut f = fixtures::realistic();
    for i in 0..12 {
        f.overview.top_drivers.push(crate::app::view::Driver {
            dim: crate::model::Dim::User,
            name: format!("end_user_{i:02}"),
            cost: crate::money::Money::from_dollars(20 - i),
            share: 0.01,
            computed_requests: 0,
        });
    }
    let n = f.overview.top_drivers.len();
    let text = screen_text(&buffer(&f, 200, 70));
    assert!(
        text.contains(&format!("Top {n} cost drivers this week")),
        "{text}"
    );
    assert!(text.contains("end_user_11"), "{text}");
    let short = screen_text(&buffer(&f, 80, 24));
    assert!(!short.contains("end_user_11"), "{short}");
}

/// While the month's rows load, the header shows the month's sum read at the
/// start (`SourceMsg::MonthSoFar`), marked as such, and what still waits.
#[test]
fn the_month_so_far_shows_while_the_month_loads() {
    let mut f = fixtures::mid_backfill();
    let before = screen_text(&buffer(&f, 80, 24));
    assert!(
        before.contains("month-to-date, burn and forecast … waiting"),
        "{before}"
    );
    if let Some(b) = f.backfill.as_mut() {
        b.month_so_far = Some(fixtures::usd("1712.58"));
    }
    let wide = screen_text(&buffer(&f, 200, 24));
    assert!(
        wide.contains("month-to-date $1,713 at start   burn and forecast … waiting for the history back to Nov 1"),
        "{wide}"
    );
    let narrow = screen_text(&buffer(&f, 80, 24));
    assert!(
        narrow.contains("month-to-date $1,713 at start   burn, forecast … history back to Nov 1"),
        "{narrow}"
    );
    // Before the first chunk's overview: the same figure.
    let mut first = fixtures::backfilling();
    if let Some(b) = first.backfill.as_mut() {
        b.month_so_far = Some(fixtures::usd("1712.58"));
    }
    let text = screen_text(&buffer(&first, 80, 24));
    assert!(text.contains("month-to-date $1,713 at start"), "{text}");
}

/// An alert firing without an anomaly (a source's health, such as no new rows)
/// is named in the calm anomaly pane, with the key that lists it: "No anomalies"
/// beside "alerts: 1 firing" left the on-call engineer guessing.
#[test]
fn a_calm_pane_names_alerts_firing_without_an_anomaly() {
    let mut f = fixtures::realistic();
    f.overview.anomalies.clear();
    f.status.shared_alerts.clear();
    let calm = screen_text(&buffer(&f, 100, 30));
    assert!(calm.contains(" No anomalies "), "{calm}");
    assert!(!calm.contains("other alert"), "{calm}");
    f.status.alerts_firing = Some(1);
    let text = screen_text(&buffer(&f, 100, 30));
    assert!(
        text.contains("No anomalies; 1 other alert firing (L lists it)"),
        "{text}"
    );
    // Where the pane is one row, its title says it.
    let mut one_row = 0;
    for height in 16..=24 {
        let small = screen_text(&buffer(&f, 80, height));
        if small.contains(" No anomalies; 1 other alert firing (L lists it) ─") {
            one_row += 1;
        } else if small.contains("No anomalies") {
            assert!(
                small.contains("1 other alert firing (L lists it)"),
                "{small}"
            );
        }
    }
    assert!(one_row > 0, "no height gave the one-row pane");
}
