//! Keys as data: one table says which key does what and how the help screen
//! describes it, so the help can never disagree with the keys. The `[keys]` section
//! of the config replaces the keys of any action by name.

use std::collections::BTreeMap;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    Down,
    Up,
    PageDown,
    PageUp,
    First,
    Last,
    Drill,
    Back,
    Pivot,
    Window1h,
    Window24h,
    Window7d,
    Window30d,
    WindowMonth,
    NextMetric,
    NextSort,
    ReverseSort,
    Filter,
    TopRequests,
    Anomaly,
    AnomalyLog,
    TogglePause,
    RefreshNow,
    ToggleHelp,
    Acknowledge,
    Silence,
    SilenceUntil,
    ListSilences,
    LiftSilence,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Ctrl(char),
    Code(KeyCode),
}

/// One action, its config name, its default keys and its help text.
#[derive(Debug, Clone, Copy)]
pub struct Binding {
    /// The name under `[keys]` in the config.
    pub name: &'static str,
    pub action: Action,
    keys: &'static [Key],
    pub help: &'static str,
}

const fn b(
    name: &'static str,
    action: Action,
    keys: &'static [Key],
    help: &'static str,
) -> Binding {
    Binding {
        name,
        action,
        keys,
        help,
    }
}

use Key::{Char, Code, Ctrl};

/// The default keys, in the order the help lists them.
pub const KEYMAP: &[Binding] = &[
    b("quit", Action::Quit, &[Char('q'), Ctrl('c')], "quit"),
    b(
        "down",
        Action::Down,
        &[Code(KeyCode::Down), Char('j')],
        "next row",
    ),
    b(
        "up",
        Action::Up,
        &[Code(KeyCode::Up), Char('k')],
        "previous row",
    ),
    b(
        "page_down",
        Action::PageDown,
        &[Code(KeyCode::PageDown), Ctrl('d')],
        "one page down",
    ),
    b(
        "page_up",
        Action::PageUp,
        &[Code(KeyCode::PageUp), Ctrl('u')],
        "one page up",
    ),
    b(
        "first",
        Action::First,
        &[Code(KeyCode::Home), Char('g')],
        "first row",
    ),
    b(
        "last",
        Action::Last,
        &[Code(KeyCode::End), Char('G')],
        "last row",
    ),
    b(
        "drill",
        Action::Drill,
        &[Code(KeyCode::Enter), Code(KeyCode::Right), Char('l')],
        "drill into the row (feature > user > model > tenant > region, then its requests)",
    ),
    b(
        "back",
        Action::Back,
        &[
            Code(KeyCode::Esc),
            Code(KeyCode::Backspace),
            Code(KeyCode::Left),
            Char('h'),
        ],
        "back up one level (or close a pane)",
    ),
    b(
        "pivot",
        Action::Pivot,
        &[Char('d')],
        "break this level down by the next dimension",
    ),
    b(
        "window_1h",
        Action::Window1h,
        &[Char('1')],
        "window: this hour",
    ),
    b(
        "window_24h",
        Action::Window24h,
        &[Char('2')],
        "window: 24 hours",
    ),
    b(
        "window_7d",
        Action::Window7d,
        &[Char('3')],
        "window: 7 days",
    ),
    b(
        "window_30d",
        Action::Window30d,
        &[Char('4')],
        "window: 30 days",
    ),
    b(
        "window_month",
        Action::WindowMonth,
        &[Char('5')],
        "window: month to date",
    ),
    b(
        "metric",
        Action::NextMetric,
        &[Char('m')],
        "metric: cost, requests, tokens, cost/request, cost/1k tokens",
    ),
    b(
        "sort",
        Action::NextSort,
        &[Char('s')],
        "sort by the next column",
    ),
    b(
        "reverse",
        Action::ReverseSort,
        &[Char('S')],
        "reverse the sort",
    ),
    b(
        "filter",
        Action::Filter,
        &[Char('/')],
        "filter rows by name as you type",
    ),
    b(
        "top_requests",
        Action::TopRequests,
        &[Char('t')],
        "most expensive requests behind the selected row",
    ),
    b(
        "anomaly",
        Action::Anomaly,
        &[Char('a')],
        "drill into the next anomaly (its feature, user or model)",
    ),
    b(
        "anomaly_log",
        Action::AnomalyLog,
        &[Char('n')],
        "every anomaly now, in full, scrollable (Esc closes)",
    ),
    b(
        "acknowledge",
        Action::Acknowledge,
        &[Char('A')],
        "acknowledge the selected alert: no repeats until it resolves",
    ),
    b(
        "silence",
        Action::Silence,
        &[Char('z')],
        "silence the selected alert 1h; again within 10 s: 4h, then 24h",
    ),
    b(
        "silence_until",
        Action::SilenceUntil,
        &[Char('Z')],
        "silence the selected alert until HH:MM or for a duration (90m)",
    ),
    b(
        "list_silences",
        Action::ListSilences,
        &[Char('L')],
        "the alerts and silences pane (Esc closes)",
    ),
    b(
        "lift_silence",
        Action::LiftSilence,
        &[Char('U')],
        "lift the pane's selected silence, else the alert's or the newest",
    ),
    b(
        "pause",
        Action::TogglePause,
        &[Char('p')],
        "pause / resume (rows are still read; the screen catches up)",
    ),
    b(
        "refresh",
        Action::RefreshNow,
        &[Char('r')],
        "read new rows now",
    ),
    b(
        "help",
        Action::ToggleHelp,
        &[Char('?')],
        "show / hide this help",
    ),
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

    /// "q", "Ctrl-c", "Enter", "PageUp", ...: how the config and the help write it.
    pub fn label(&self) -> String {
        match *self {
            Key::Char(' ') => "Space".into(),
            Key::Char(c) => c.to_string(),
            Key::Ctrl(c) => format!("Ctrl-{c}"),
            Key::Code(code) => match code {
                KeyCode::Down => "↓".into(),
                KeyCode::Up => "↑".into(),
                KeyCode::Left => "←".into(),
                KeyCode::Right => "→".into(),
                KeyCode::PageDown => "PgDn".into(),
                KeyCode::PageUp => "PgUp".into(),
                KeyCode::Backspace => "Backspace".into(),
                KeyCode::F(n) => format!("F{n}"),
                other => format!("{other:?}"),
            },
        }
    }

    /// Parses a key as written in the config: a single character, `Ctrl-x`, or a
    /// name (Enter, Esc, Backspace, Tab, Space, Up, Down, Left, Right, PageUp,
    /// PageDown, Home, End, Delete, Insert, F1..F12).
    pub fn parse(s: &str) -> Result<Key, String> {
        let mut chars = s.chars();
        if let (Some(c), None) = (chars.next(), chars.next()) {
            return if c.is_control() {
                Err(format!("{s:?} is a control character"))
            } else {
                Ok(Key::Char(c))
            };
        }
        if let Some(rest) = s.strip_prefix("Ctrl-").or_else(|| s.strip_prefix("ctrl-")) {
            let mut chars = rest.chars();
            if let (Some(c), None) = (chars.next(), chars.next())
                && c.is_ascii_alphanumeric()
            {
                return Ok(Key::Ctrl(c.to_ascii_lowercase()));
            }
        }
        let code = match s.to_ascii_lowercase().as_str() {
            "enter" | "return" => KeyCode::Enter,
            "esc" | "escape" => KeyCode::Esc,
            "backspace" => KeyCode::Backspace,
            "tab" => KeyCode::Tab,
            "space" => return Ok(Key::Char(' ')),
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "pageup" | "pgup" => KeyCode::PageUp,
            "pagedown" | "pgdn" => KeyCode::PageDown,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            "delete" | "del" => KeyCode::Delete,
            "insert" | "ins" => KeyCode::Insert,
            f if f.starts_with('f')
                && f[1..].parse::<u8>().is_ok_and(|n| (1..=12).contains(&n)) =>
            {
                KeyCode::F(f[1..].parse().unwrap_or(1))
            }
            _ => {
                return Err(format!(
                    "unknown key {s:?}: use one character, Ctrl-x, or Enter, Esc, Backspace, \
                     Tab, Space, Up, Down, Left, Right, PageUp, PageDown, Home, End, F1..F12"
                ));
            }
        };
        Ok(Key::Code(code))
    }
}

/// The keys in effect: the defaults with the config's overrides.
#[derive(Debug, Clone)]
pub struct Keymap {
    entries: Vec<(Action, Vec<Key>, &'static str)>,
}

impl Default for Keymap {
    fn default() -> Self {
        Keymap {
            entries: KEYMAP
                .iter()
                .map(|b| (b.action, b.keys.to_vec(), b.help))
                .collect(),
        }
    }
}

impl Keymap {
    /// The defaults with every action named in `overrides` bound to the given keys
    /// instead. Unknown actions, unknown keys and a key bound to two actions are
    /// errors that name the action and the key.
    pub fn with_overrides(overrides: &BTreeMap<String, Vec<String>>) -> Result<Keymap, String> {
        let mut map = Keymap::default();
        for (name, keys) in overrides {
            let Some(i) = KEYMAP.iter().position(|b| b.name == *name) else {
                let names: Vec<&str> = KEYMAP.iter().map(|b| b.name).collect();
                return Err(format!(
                    "keys.{name}: no such action (actions: {})",
                    names.join(", ")
                ));
            };
            if keys.is_empty() {
                return Err(format!("keys.{name}: give at least one key"));
            }
            map.entries[i].1 = keys
                .iter()
                .map(|k| Key::parse(k).map_err(|e| format!("keys.{name}: {e}")))
                .collect::<Result<_, _>>()?;
        }
        for (i, (_, keys, _)) in map.entries.iter().enumerate() {
            for k in keys {
                if let Some(j) = map.entries[..i]
                    .iter()
                    .position(|(_, ks, _)| ks.contains(k))
                {
                    return Err(format!(
                        "keys: {} is bound to both {} and {}",
                        k.label(),
                        KEYMAP[j].name,
                        KEYMAP[i].name
                    ));
                }
            }
        }
        Ok(map)
    }

    pub fn action_for(&self, ev: &KeyEvent) -> Option<Action> {
        self.entries
            .iter()
            .find(|(_, keys, _)| keys.iter().any(|k| k.matches(ev)))
            .map(|(a, _, _)| *a)
    }

    /// (keys, description) lines for the help screen.
    pub fn help_lines(&self) -> Vec<(String, String)> {
        self.entries
            .iter()
            .map(|(_, keys, help)| {
                let label: Vec<String> = keys.iter().map(Key::label).collect();
                (label.join("  "), help.to_string())
            })
            .collect()
    }

    /// The status bar's hints for the keys in effect.
    pub fn hints(&self) -> super::view::KeyHints {
        let (up, down) = (self.first_key(Action::Up), self.first_key(Action::Down));
        let select = if up == "↑" && down == "↓" {
            "↑↓".to_string()
        } else {
            format!("{up}/{down}")
        };
        super::view::KeyHints {
            quit: self.first_key(Action::Quit),
            select,
            refresh: self.first_key(Action::RefreshNow),
            help: self.first_key(Action::ToggleHelp),
            anomaly_log: self.first_key(Action::AnomalyLog),
            alerts: self.first_key(Action::ListSilences),
        }
    }

    /// The first key of an action, for hints ("Enter drill").
    pub fn first_key(&self, action: Action) -> String {
        self.entries
            .iter()
            .find(|(a, _, _)| *a == action)
            .and_then(|(_, keys, _)| keys.first())
            .map(Key::label)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(k: Key) -> KeyEvent {
        match k {
            Key::Char(c) => KeyEvent::from(KeyCode::Char(c)),
            Key::Ctrl(c) => KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL),
            Key::Code(code) => KeyEvent::from(code),
        }
    }

    #[test]
    fn every_binding_is_reachable_and_unique() {
        let map = Keymap::with_overrides(&BTreeMap::new()).expect("defaults are consistent");
        for b in KEYMAP {
            for k in b.keys {
                assert_eq!(
                    map.action_for(&event(*k)),
                    Some(b.action),
                    "{k:?} of {}",
                    b.name
                );
                assert_eq!(
                    Key::parse(
                        &k.label()
                            .replace('↓', "Down")
                            .replace('↑', "Up")
                            .replace('←', "Left")
                            .replace('→', "Right")
                            .replace("PgDn", "PageDown")
                            .replace("PgUp", "PageUp")
                    ),
                    Ok(*k)
                );
            }
        }
        assert_eq!(map.help_lines().len(), KEYMAP.len());
        assert_eq!(map.action_for(&KeyEvent::from(KeyCode::Char('x'))), None);
        assert_eq!(map.first_key(Action::Drill), "Enter");
    }

    #[test]
    fn overrides_replace_an_actions_keys_and_errors_name_the_key() {
        let o = BTreeMap::from([(
            "quit".to_string(),
            vec!["x".to_string(), "Ctrl-q".to_string()],
        )]);
        let map = Keymap::with_overrides(&o).unwrap();
        assert_eq!(map.action_for(&event(Key::Char('x'))), Some(Action::Quit));
        assert_eq!(map.action_for(&event(Key::Ctrl('q'))), Some(Action::Quit));
        assert_eq!(map.action_for(&event(Key::Char('q'))), None);
        assert!(map.help_lines()[0].0.contains("Ctrl-q"));
        let hints = map.hints();
        assert_eq!((hints.quit.as_str(), hints.select.as_str()), ("x", "↑↓"));
        let o = BTreeMap::from([
            ("up".to_string(), vec!["w".to_string()]),
            ("down".to_string(), vec!["Ctrl-n".to_string()]),
            ("refresh".to_string(), vec!["F5".to_string()]),
            ("help".to_string(), vec!["F1".to_string()]),
        ]);
        let hints = Keymap::with_overrides(&o).unwrap().hints();
        assert_eq!(
            (hints.select, hints.refresh, hints.help),
            ("w/Ctrl-n".into(), "F5".into(), "F1".into())
        );

        let bad = |k: &str, v: &str| {
            Keymap::with_overrides(&BTreeMap::from([(k.to_string(), vec![v.to_string()])]))
                .unwrap_err()
        };
        assert!(bad("quitt", "x").contains("keys.quitt: no such action"));
        assert!(bad("quit", "Hyper-x").contains("unknown key \"Hyper-x\""));
        assert!(bad("quit", "j").contains("j is bound to both quit and down"));
        assert!(
            Keymap::with_overrides(&BTreeMap::from([("quit".to_string(), vec![])]))
                .unwrap_err()
                .contains("at least one")
        );
        assert_eq!(Key::parse("F5"), Ok(Key::Code(KeyCode::F(5))));
        assert_eq!(Key::parse("space"), Ok(Key::Char(' ')));
    }

    #[test]
    fn the_shipped_config_documents_every_default_key() {
        let text = include_str!("../../config/burnrate.toml");
        let keys = text
            .split("\n[keys]\n")
            .nth(1)
            .expect("config/burnrate.toml has a [keys] section");
        for b in KEYMAP {
            let line = keys
                .lines()
                .find(|l| l.starts_with(&format!("# {} = ", b.name)))
                .unwrap_or_else(|| panic!("{} is not documented", b.name));
            let value = line.trim_start_matches('#').split('#').next().unwrap_or("");
            let doc: BTreeMap<String, Vec<String>> = toml::from_str(value).unwrap();
            let parsed: Vec<Key> = doc[b.name].iter().map(|k| Key::parse(k).unwrap()).collect();
            assert_eq!(parsed, b.keys, "{}", b.name);
        }
    }
}
