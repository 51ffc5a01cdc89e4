//! The help overlay: every key and what it does, straight from the keymap.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Widget};

use super::theme::Theme;

pub fn render(lines: &[(String, String)], theme: Theme, area: Rect, buf: &mut Buffer) {
    let key_w = lines
        .iter()
        .map(|(k, _)| super::text::width(k))
        .max()
        .unwrap_or(0);
    let text_w = lines
        .iter()
        .map(|(_, h)| super::text::width(h))
        .max()
        .unwrap_or(0);
    // One column if every key fits in the height, else as many columns as needed
    // (descriptions are cut to fit).
    let room = (area.height.saturating_sub(6) as usize).max(1);
    let columns = lines.len().div_ceil(room).max(1);
    let per_column = lines.len().div_ceil(columns).max(1);
    let entry_w = 1 + key_w + 2 + text_w + 1;
    let width = ((entry_w * columns + 2) as u16)
        .min(area.width.saturating_sub(2))
        .max(10);
    let height = (per_column as u16 + 4)
        .min(area.height.saturating_sub(2))
        .max(3);
    let popup = Rect {
        x: area.x + (area.width.saturating_sub(width)) / 2,
        y: area.y + (area.height.saturating_sub(height)) / 2,
        width,
        height,
    }
    .intersection(area);
    Clear.render(popup, buf);
    let col_w = (width.saturating_sub(2) as usize / columns).max(1);
    let body: Vec<Line> = (0..per_column)
        .map(|row| {
            let mut spans = Vec::new();
            for col in 0..columns {
                let Some((k, h)) = lines.get(col * per_column + row) else {
                    continue;
                };
                // Each column aligns to its own longest key.
                let kw = lines
                    .iter()
                    .skip(col * per_column)
                    .take(per_column)
                    .map(|(k, _)| super::text::width(k))
                    .max()
                    .unwrap_or(0);
                let key = format!(" {k:<kw$}  ");
                let left = col_w.saturating_sub(super::text::width(&key));
                spans.push(Span::styled(super::text::fit(&key, col_w), theme.key()));
                let help = super::text::fit(h, left.saturating_sub(1));
                let pad = left.saturating_sub(super::text::width(&help));
                spans.push(Span::styled(help, theme.value()));
                if col + 1 < columns {
                    spans.push(Span::raw(" ".repeat(pad)));
                }
            }
            Line::from(spans)
        })
        .chain([
            Line::from(""),
            Line::from(Span::styled(" any key closes this help", theme.muted())),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_every_key_and_survives_tiny_areas() {
        let lines = crate::app::keymap::Keymap::default().help_lines();
        // One column, every help text whole, where the keys fit the height (the
        // alert keys made the list 28 long).
        let area = Rect::new(0, 0, 100, lines.len() as u16 + 6);
        let mut buf = Buffer::empty(area);
        render(&lines, Theme::new(false), area, &mut buf);
        let text: String = (0..area.height)
            .map(|y| {
                (0..area.width)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
                    + "\n"
            })
            .collect();
        for (k, h) in &lines {
            assert!(text.contains(k) && text.contains(h), "{k} {h}:\n{text}");
        }
        // At 80x24 every key still shows (in two columns).
        let area = Rect::new(0, 0, 80, 24);
        let mut buf = Buffer::empty(area);
        render(&lines, Theme::new(false), area, &mut buf);
        let text: String = (0..area.height)
            .map(|y| {
                (0..area.width)
                    .map(|x| buf[(x, y)].symbol())
                    .collect::<String>()
                    + "\n"
            })
            .collect();
        for (k, _) in &lines {
            assert!(text.contains(k.as_str()), "{k}:\n{text}");
        }
        for (w, h) in [(0, 0), (5, 3), (12, 4)] {
            let area = Rect::new(0, 0, w, h);
            let mut buf = Buffer::empty(area);
            render(&lines, Theme::new(true), area, &mut buf);
        }
    }
}
