//! Every style the screen uses, in one place.
//!
//! With colour, the palette is the 16 basic ANSI colours (they survive SSH, tmux and
//! 16-colour terminals, and follow the user's terminal theme). Without colour
//! (`NO_COLOR`), every style falls back to modifiers only (bold, dim, reversed), so the
//! screen still reads; no style ever sets a foreground or background colour then.

use ratatui::style::{Color, Modifier, Style};

/// Ratio of spend to budget at which a gauge turns yellow.
pub const WARN_RATIO: f64 = 0.8;
/// Ratio of spend to budget at which a gauge turns red.
pub const OVER_RATIO: f64 = 1.0;
/// Change against the 7-day average above which the change cell is red (+50%).
pub const CHANGE_ALERT: f64 = 0.5;

/// How severe a value is; picks a colour (or a modifier without colour).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Good,
    Warn,
    Bad,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    color: bool,
}

impl Theme {
    pub fn new(color: bool) -> Self {
        Theme { color }
    }

    fn pick(self, color: Style, plain: Style) -> Style {
        if self.color { color } else { plain }
    }

    /// The app name and pane titles.
    pub fn title(self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }
    /// Headline numbers.
    pub fn value(self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }
    /// Labels, units, separators and column headers.
    pub fn muted(self) -> Style {
        self.pick(
            Style::new().fg(Color::DarkGray),
            Style::new().add_modifier(Modifier::DIM),
        )
    }
    /// Pane borders when nothing is wrong.
    pub fn border(self) -> Style {
        self.pick(Style::new().fg(Color::DarkGray), Style::new())
    }
    /// The anomaly pane's border when it lists something.
    pub fn alert_border(self) -> Style {
        self.pick(
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            Style::new().add_modifier(Modifier::BOLD),
        )
    }
    /// The anomaly pane's title when it lists something.
    pub fn alert_title(self) -> Style {
        self.pick(
            Style::new()
                .fg(Color::Black)
                .bg(Color::Red)
                .add_modifier(Modifier::BOLD),
            Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED),
        )
    }
    pub fn level(self, level: Level) -> Style {
        match level {
            Level::Good => self.pick(Style::new().fg(Color::Green), Style::new()),
            Level::Warn => self.pick(
                Style::new().fg(Color::Yellow),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Level::Bad => self.pick(
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
                Style::new().add_modifier(Modifier::BOLD),
            ),
        }
    }
    pub fn good(self) -> Style {
        self.level(Level::Good)
    }
    pub fn warn(self) -> Style {
        self.level(Level::Warn)
    }
    pub fn bad(self) -> Style {
        self.level(Level::Bad)
    }
    /// Spend against budget: green under 80%, yellow under 100%, red from 100% on.
    pub fn budget_level(ratio: f64) -> Level {
        if ratio.is_nan() || ratio >= OVER_RATIO {
            Level::Bad
        } else if ratio >= WARN_RATIO {
            Level::Warn
        } else {
            Level::Good
        }
    }
    /// The unfilled part of a gauge.
    pub fn gauge_empty(self) -> Style {
        self.pick(
            Style::new().fg(Color::DarkGray),
            Style::new().add_modifier(Modifier::DIM),
        )
    }
    /// Change against the 7-day average: red above +50%, green when down.
    pub fn change(self, change: Option<f64>) -> Style {
        match change {
            Some(c) if c.is_nan() => self.muted(),
            Some(c) if c > CHANGE_ALERT => self.bad(),
            Some(c) if c < 0.0 => self.good(),
            Some(_) => Style::new(),
            None => self.muted(),
        }
    }
    /// The selected feature row (everything but its sparkline).
    pub fn selected(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }
    /// Undoes `selected` on the sparkline cell, so its bars keep their shape.
    pub fn not_selected(self) -> Style {
        Style::new().remove_modifier(Modifier::REVERSED)
    }
    /// The name and marker of a feature an anomaly names.
    pub fn anomalous(self) -> Style {
        self.bad()
    }
    pub fn sparkline(self, anomalous: bool) -> Style {
        match (self.color, anomalous) {
            (true, true) => Style::new().fg(Color::Red),
            (true, false) => Style::new().fg(Color::Cyan),
            (false, _) => Style::new(),
        }
    }
    /// The connection badge at the left of the status bar.
    pub fn badge(self, level: Level) -> Style {
        let bg = match level {
            Level::Good => Color::Green,
            Level::Warn => Color::Yellow,
            Level::Bad => Color::Red,
        };
        self.pick(
            Style::new()
                .fg(Color::Black)
                .bg(bg)
                .add_modifier(Modifier::BOLD),
            Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED),
        )
    }
    /// A key in the key hint.
    pub fn key(self) -> Style {
        self.pick(
            Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
            Style::new().add_modifier(Modifier::BOLD),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_levels_switch_at_80_and_100_percent() {
        assert_eq!(Theme::budget_level(0.0), Level::Good);
        assert_eq!(Theme::budget_level(0.799), Level::Good);
        assert_eq!(Theme::budget_level(0.8), Level::Warn);
        assert_eq!(Theme::budget_level(0.999), Level::Warn);
        assert_eq!(Theme::budget_level(1.0), Level::Bad);
        assert_eq!(Theme::budget_level(f64::INFINITY), Level::Bad);
        assert_eq!(Theme::budget_level(f64::NAN), Level::Bad);
    }

    #[test]
    fn no_color_styles_never_set_a_colour() {
        let t = Theme::new(false);
        let all = [
            t.title(),
            t.value(),
            t.muted(),
            t.border(),
            t.alert_border(),
            t.alert_title(),
            t.good(),
            t.warn(),
            t.bad(),
            t.gauge_empty(),
            t.change(Some(3.0)),
            t.change(Some(-0.5)),
            t.change(None),
            t.selected(),
            t.anomalous(),
            t.sparkline(true),
            t.badge(Level::Bad),
            t.key(),
        ];
        for s in all {
            assert_eq!(s.fg, None, "{s:?}");
            assert_eq!(s.bg, None, "{s:?}");
        }
    }
}
