//! The help overlay: every key and what it does, straight from the keymap.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Widget};

use super::theme::Theme;

pub fn render(lines: &[(&str, &str)], theme: Theme, area: Rect, buf: &mut Buffer) {
    let key_w = lines
        .iter()
        .map(|(k, _)| super::text::width(k))
        .max()
        .unwrap_or(0) as u16;
    let text_w = lines
        .iter()
        .map(|(_, h)| super::text::width(h))
        .max()
        .unwrap_or(0) as u16;
    let width = (key_w + text_w + 7)
        .min(area.width.saturating_sub(2))
        .max(10);
    let height = (lines.len() as u16 + 4)
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
    let body: Vec<Line> = lines
        .iter()
        .map(|(k, h)| {
            Line::from(vec![
                Span::styled(format!(" {k:<w$}  ", w = key_w as usize), theme.key()),
                Span::styled(h.to_string(), theme.value()),
            ])
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
        let lines = crate::app::keymap::help_lines();
        let area = Rect::new(0, 0, 100, 30);
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
        for (w, h) in [(0, 0), (5, 3), (12, 4)] {
            let area = Rect::new(0, 0, w, h);
            let mut buf = Buffer::empty(area);
            render(&lines, Theme::new(true), area, &mut buf);
        }
    }
}
