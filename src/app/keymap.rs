//! Keys as data: one table says which key does what and how the help screen
//! describes it, so the help can never disagree with the keys.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    Down,
    Up,
    First,
    Last,
    TogglePause,
    RefreshNow,
    ToggleHelp,
    CloseOverlay,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Char(char),
    Ctrl(char),
    Code(KeyCode),
}

#[derive(Debug, Clone, Copy)]
pub struct Binding {
    keys: &'static [Key],
    /// How the keys are written on the help screen.
    pub label: &'static str,
    pub action: Action,
    pub help: &'static str,
}

pub const KEYMAP: &[Binding] = &[
    Binding {
        keys: &[Key::Char('q'), Key::Ctrl('c')],
        label: "q  Ctrl-C",
        action: Action::Quit,
        help: "quit",
    },
    Binding {
        keys: &[Key::Code(KeyCode::Down), Key::Char('j')],
        label: "↓  j",
        action: Action::Down,
        help: "next feature",
    },
    Binding {
        keys: &[Key::Code(KeyCode::Up), Key::Char('k')],
        label: "↑  k",
        action: Action::Up,
        help: "previous feature",
    },
    Binding {
        keys: &[Key::Code(KeyCode::Home), Key::Char('g')],
        label: "Home  g",
        action: Action::First,
        help: "first feature",
    },
    Binding {
        keys: &[Key::Code(KeyCode::End), Key::Char('G')],
        label: "End  G",
        action: Action::Last,
        help: "last feature",
    },
    Binding {
        keys: &[Key::Char('p')],
        label: "p",
        action: Action::TogglePause,
        help: "pause / resume (rows are still read; the screen catches up)",
    },
    Binding {
        keys: &[Key::Char('r')],
        label: "r",
        action: Action::RefreshNow,
        help: "read new rows now",
    },
    Binding {
        keys: &[Key::Char('?')],
        label: "?",
        action: Action::ToggleHelp,
        help: "show / hide this help",
    },
    Binding {
        keys: &[Key::Code(KeyCode::Esc)],
        label: "Esc",
        action: Action::CloseOverlay,
        help: "close this help",
    },
];

impl Key {
    fn matches(&self, ev: &KeyEvent) -> bool {
        let ctrl = ev.modifiers.contains(KeyModifiers::CONTROL);
        match *self {
            Key::Char(c) => !ctrl && ev.code == KeyCode::Char(c),
            Key::Ctrl(c) => ctrl && ev.code == KeyCode::Char(c),
            Key::Code(code) => ev.code == code,
        }
    }
}

pub fn action_for(ev: &KeyEvent) -> Option<Action> {
    KEYMAP
        .iter()
        .find(|b| b.keys.iter().any(|k| k.matches(ev)))
        .map(|b| b.action)
}

/// (keys, description) lines for the help screen.
pub fn help_lines() -> Vec<(&'static str, &'static str)> {
    KEYMAP.iter().map(|b| (b.label, b.help)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_binding_is_reachable_and_unique() {
        for b in KEYMAP {
            for k in b.keys {
                let ev = match *k {
                    Key::Char(c) => KeyEvent::from(KeyCode::Char(c)),
                    Key::Ctrl(c) => KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL),
                    Key::Code(code) => KeyEvent::from(code),
                };
                assert_eq!(action_for(&ev), Some(b.action), "{k:?} of {}", b.label);
            }
        }
        assert_eq!(help_lines().len(), KEYMAP.len());
        assert_eq!(action_for(&KeyEvent::from(KeyCode::Char('x'))), None);
    }
}
