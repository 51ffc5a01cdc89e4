//! The help overlay: every key and what it does, straight from the keymap. In
//! columns where every description fits whole; else one column whose
//! descriptions wrap, scrolled by the move keys when taller than the screen.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Widget};

use super::text;
use super::theme::Theme;

/// Rows around the entries: the border (2) and the footer (a blank line and
/// the hint).
const CHROME: usize = 4;

/// How the entries are laid out in an area.
struct Layout {
    popup: Rect,
    columns: usize,
    /// Entries per column (one column: unused).
    per_column: usize,
    key_w: usize,
    /// Description width (wrapped to it in one column).
    text_w: usize,
}

fn layout(lines: &[(String, String)], area: Rect) -> Layout {
    let key_w = lines.iter().map(|(k, _)| text::width(k)).max().unwrap_or(0);
    let text_w = lines.iter().map(|(_, h)| text::width(h)).max().unwrap_or(0);
    // The popup may take the whole screen (it is modal): every row counts.
    let max_w = area.width as usize;
    let rows = (area.height as usize).saturating_sub(CHROME);
    let entry_w = 1 + key_w + 2 + text_w + 1;
    // The fewest columns that show every entry whole, without scrolling.
    for columns in 1..=3 {
        let per_column = lines.len().div_ceil(columns).max(1);
        if per_column <= rows && entry_w * columns + 2 <= max_w {
            let width = (entry_w * columns + 2) as u16;
            let height = (per_column + CHROME) as u16;
            return Layout {
                popup: centred(area, width, height),
                columns,
                per_column,
                key_w,
                text_w,
            };
        }
    }
    // One column, descriptions wrapped to the width, as tall as the screen allows.
    let width = (entry_w + 2).min(max_w).max(10) as u16;
    let text_w = (width as usize)
        .saturating_sub(2 + 1 + key_w + 2 + 1)
        .max(8);
    let total = wrapped(lines, text_w).len();
    let height = ((total + CHROME) as u16).min(area.height).max(3);
    Layout {
        popup: centred(area, width, height),
        columns: 1,
        per_column: lines.len(),
        key_w,
        text_w,
    }
}

fn centred(area: Rect, width: u16, height: u16) -> Rect {
    Rect {
        x: area.x + area.width.saturating_sub(width) / 2,
        y: area.y + area.height.saturating_sub(height) / 2,
        width,
        height,
    }
    .intersection(area)
}

/// One column's lines: (key or "", a piece of its description), descriptions
/// wrapped at word boundaries to `text_w` cells.
fn wrapped(lines: &[(String, String)], text_w: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, h) in lines {
        for (i, piece) in wrap(h, text_w).into_iter().enumerate() {
            out.push((if i == 0 { k.clone() } else { String::new() }, piece));
        }
    }
    out
}

/// Splits `s` into lines of at most `w` cells at spaces (a word longer than a
/// line is cut).
fn wrap(s: &str, w: usize) -> Vec<String> {
    let w = w.max(1);
    let mut out = Vec::new();
    let mut line = String::new();
    for word in s.split(' ') {
        let sep = usize::from(!line.is_empty());
        if text::width(&line) + sep + text::width(word) > w && !line.is_empty() {
            out.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
        while text::width(&line) > w {
            // A word longer than the line: split it where the line ends.
            let mut head = String::new();
            for c in line.chars() {
                if text::width(&head) + text::width(&c.to_string()) > w {
                    break;
                }
                head.push(c);
            }
            let rest: String = line.chars().skip(head.chars().count().max(1)).collect();
            out.push(head);
            line = rest;
        }
    }
    if !line.is_empty() || out.is_empty() {
        out.push(line);
    }
    out
}

/// How far the help scrolls in this area (0 when it fits), and its page.
pub fn scroll_limits(lines: &[(String, String)], area: Rect) -> (usize, usize) {
    let l = layout(lines, area);
    let shown = (l.popup.height as usize).saturating_sub(CHROME);
    if l.columns > 1 {
        return (0, shown.max(1));
    }
    let total = wrapped(lines, l.text_w).len();
    (total.saturating_sub(shown), shown.saturating_sub(1).max(1))
}

/// `scroll`: lines scrolled (one column); `move_keys` names the keys that scroll.
pub fn render(
    lines: &[(String, String)],
    scroll: usize,
    move_keys: &str,
    theme: Theme,
    area: Rect,
    buf: &mut Buffer,
) {
    let l = layout(lines, area);
    let popup = l.popup;
    Clear.render(popup, buf);
    let shown = (popup.height as usize).saturating_sub(CHROME);
    let (body, footer): (Vec<Line>, String) = if l.columns > 1 {
        (
            columns(lines, &l, theme),
            " any key closes this help".into(),
        )
    } else {
        let all = wrapped(lines, l.text_w);
        let max = all.len().saturating_sub(shown);
        let from = scroll.min(max);
        let body = all
            .iter()
            .skip(from)
            .take(shown)
            .map(|(k, h)| {
                let kw = l.key_w;
                Line::from(vec![
                    Span::styled(text::fit(&format!(" {k:<kw$}  "), kw + 3), theme.key()),
                    Span::styled(h.clone(), theme.value()),
                ])
            })
            .collect();
        let footer = if max > 0 {
            format!(
                " {} scroll ({}-{} of {} lines) · any other key closes",
                text::clean(move_keys, 12),
                from + 1,
                (from + shown).min(all.len()),
                all.len()
            )
        } else {
            " any key closes this help".into()
        };
        (body, footer)
    };
    let body: Vec<Line> = body
        .into_iter()
        .chain([
            Line::from(""),
            Line::from(Span::styled(
                text::fit(&footer, popup.width.saturating_sub(2) as usize),
                theme.muted(),
            )),
        ])
        .collect();
    Paragraph::new(body)
        .block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(theme.border())
                .title(Span::styled(" Keys ", theme.title())),
        )
        .render(popup, buf);
}

/// Several columns, every description whole (the layout checked they fit).
fn columns(lines: &[(String, String)], l: &Layout, theme: Theme) -> Vec<Line<'static>> {
    let col_w = 1 + l.key_w + 2 + l.text_w + 1;
    (0..l.per_column)
        .map(|row| {
            let mut spans = Vec::new();
            for col in 0..l.columns {
                let Some((k, h)) = lines.get(col * l.per_column + row) else {
                    continue;
                };
                let kw = l.key_w;
                let key = format!(" {k:<kw$}  ");
                let pad = col_w.saturating_sub(text::width(&key) + text::width(h));
                spans.push(Span::styled(key, theme.key()));
                spans.push(Span::styled(h.clone(), theme.value()));
                if col + 1 < l.columns {
                    spans.push(Span::raw(" ".repeat(pad)));
                }
            }
            Line::from(spans)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render_text(lines: &[(String, String)], scroll: usize, area: Rect) -> Vec<String> {
        let mut buf = Buffer::empty(area);
        render(lines, scroll, "↑↓", Theme::new(false), area, &mut buf);
        (0..area.height)
            .map(|y| {
                (0..area.width)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect()
    }

    /// Every entry as the screen shows it, over every scroll position: (key,
    /// description with its wrapped lines joined).
    fn read_entries(lines: &[(String, String)], area: Rect) -> Vec<(String, String)> {
        let key_w = lines.iter().map(|(k, _)| text::width(k)).max().unwrap();
        let (max, page) = scroll_limits(lines, area);
        let mut by_index: Vec<Option<String>> = Vec::new();
        let mut scroll = 0;
        loop {
            let rows = render_text(lines, scroll, area);
            let top = rows.iter().position(|r| r.contains(" Keys ")).unwrap();
            let left = rows[top].chars().position(|c| c == '┌').unwrap();
            for (i, r) in rows[top + 1..].iter().enumerate() {
                let inner: String = r.chars().skip(left + 1).collect();
                let inner = inner.trim_end().trim_end_matches('│').trim_end();
                if inner.is_empty() {
                    break; // the blank line before the footer
                }
                let at = scroll.min(max) + i;
                if by_index.len() <= at {
                    by_index.resize(at + 1, None);
                }
                by_index[at] = Some(inner.to_string());
            }
            if scroll >= max {
                break;
            }
            scroll += page;
        }
        let mut entries: Vec<(String, String)> = Vec::new();
        for row in by_index.into_iter().map(|r| r.expect("every line seen")) {
            let key: String = row.chars().skip(1).take(key_w).collect();
            let desc: String = row.chars().skip(key_w + 3).collect();
            let (key, desc) = (key.trim().to_string(), desc.trim().to_string());
            if key.is_empty() {
                let last = entries.last_mut().expect("a key first");
                last.1.push(' ');
                last.1.push_str(&desc);
            } else {
                entries.push((key, desc));
            }
        }
        entries
    }

    #[test]
    fn lists_every_key_and_survives_tiny_areas() {
        let lines = crate::app::keymap::Keymap::default().help_lines();
        // Wide: one column, every help text whole on its line, no scrolling.
        let area = Rect::new(0, 0, 140, lines.len() as u16 + 6);
        let text = render_text(&lines, 0, area).join("\n");
        for (k, h) in &lines {
            assert!(text.contains(k) && text.contains(h), "{k} {h}:\n{text}");
        }
        assert_eq!(scroll_limits(&lines, area).0, 0);
        for (w, h) in [(0, 0), (5, 3), (12, 4)] {
            let area = Rect::new(0, 0, w, h);
            let mut buf = Buffer::empty(area);
            render(&lines, 3, "↑↓", Theme::new(true), area, &mut buf);
            let _ = scroll_limits(&lines, area);
        }
    }

    /// At 80x24 the descriptions were cut (issue 16 item 20): now every key and
    /// every word of its description is on screen, wrapped, scrolling where the
    /// list is taller than the screen.
    #[test]
    fn at_80x24_every_description_is_readable_scrolling() {
        let lines = crate::app::keymap::Keymap::default().help_lines();
        for (w, h) in [(80, 24), (100, 30), (120, 36)] {
            let area = Rect::new(0, 0, w, h);
            let entries = read_entries(&lines, area);
            assert_eq!(entries, lines, "at {w}x{h}");
            let shown = render_text(&lines, 0, area).join("\n");
            assert!(!shown.contains('…'), "nothing cut at {w}x{h}:\n{shown}");
        }
        let area = Rect::new(0, 0, 80, 24);
        let (max, _) = scroll_limits(&lines, area);
        assert!(max > 0, "taller than 80x24: it scrolls");
        let first = render_text(&lines, 0, area).join("\n");
        assert!(first.contains("↑↓ scroll (1-"), "{first}");
        let last = render_text(&lines, usize::MAX, area).join("\n");
        assert!(last.contains("show / hide this help"), "{last}");
    }
}
