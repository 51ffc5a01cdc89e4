//! Making untrusted text safe to draw, and fitting it to a column.
//!
//! Every name and message on the screen comes from the database (feature, user and
//! model names, PostgreSQL error text) or from text built around such names. A row
//! can hold anything: escape sequences that clear the screen or retitle the terminal,
//! control bytes, bidi overrides that reverse what follows ("Trojan Source"),
//! invisible characters that make two different names look the same. `sanitize`
//! neutralises all of them before anything is drawn:
//!
//! - ANSI/ECMA-48 escape sequences (CSI, OSC, DCS, SOS, PM, APC, two-byte escapes,
//!   and their C1 forms) are removed whole, including their parameters;
//! - line breaks and tabs become one space;
//! - any other control character (C0, DEL, C1) and every bidi embedding, override or
//!   isolate (U+202A-202E, U+2066-2069) becomes U+FFFD, so tampering stays visible;
//! - invisible characters (zero-width space/joiners, LRM/RLM, BOM, word joiner, soft
//!   hyphen, tag characters, ...) are dropped.
//!
//! `fit` then truncates by display width (wide CJK characters count 2) with "…".

use unicode_width::UnicodeWidthChar;

/// What a neutralised control character or bidi control is shown as.
pub const REPLACEMENT: char = '\u{FFFD}';
/// Marks a truncated text.
pub const ELLIPSIS: char = '…';

/// Removes escape sequences, replaces control and bidi characters, drops invisible
/// characters. The result never contains a character below U+0020, DEL, a C1
/// control, a bidi control or a zero-width character.
pub fn sanitize(s: &str) -> String {
    #[derive(PartialEq)]
    enum State {
        Text,
        /// After ESC.
        Escape,
        /// After ESC and intermediate bytes (0x20-0x2F), waiting for the final byte.
        EscapeIntermediate,
        /// Inside a control sequence: parameters and intermediates until a final byte.
        Csi,
        /// Inside OSC, DCS, SOS, PM or APC: until BEL, ST (ESC \) or C1 ST.
        Str,
        /// ESC seen inside a string.
        StrEscape,
    }

    let mut out = String::with_capacity(s.len());
    let mut state = State::Text;
    let mut chars = s.chars();
    let mut pending: Option<char> = None;
    while let Some(c) = pending.take().or_else(|| chars.next()) {
        match state {
            State::Text => match c {
                '\u{1b}' => state = State::Escape,
                '\u{9b}' => state = State::Csi,
                '\u{90}' | '\u{98}' | '\u{9d}' | '\u{9e}' | '\u{9f}' => state = State::Str,
                '\t' | '\n' | '\r' | '\u{0b}' | '\u{0c}' | '\u{85}' | '\u{2028}' | '\u{2029}' => {
                    if !out.ends_with(' ') {
                        out.push(' ');
                    }
                }
                c if is_invisible(c) => {}
                c if c.is_control() || is_bidi_control(c) => out.push(REPLACEMENT),
                c => out.push(c),
            },
            State::Escape => match c {
                '[' => state = State::Csi,
                ']' | 'P' | 'X' | '^' | '_' => state = State::Str,
                '\u{20}'..='\u{2f}' => state = State::EscapeIntermediate,
                '\u{30}'..='\u{7e}' => state = State::Text,
                _ => {
                    // Not an escape sequence after all (ESC ESC, ESC + non-ASCII):
                    // drop the ESC, look at this character again as text.
                    state = State::Text;
                    pending = Some(c);
                }
            },
            State::EscapeIntermediate => match c {
                '\u{20}'..='\u{2f}' => {}
                '\u{30}'..='\u{7e}' => state = State::Text,
                _ => {
                    state = State::Text;
                    pending = Some(c);
                }
            },
            State::Csi => match c {
                '\u{20}'..='\u{3f}' => {}
                '\u{40}'..='\u{7e}' => state = State::Text,
                _ => {
                    // A malformed sequence ends here; what follows is text again.
                    state = State::Text;
                    pending = Some(c);
                }
            },
            State::Str => match c {
                '\u{07}' | '\u{9c}' => state = State::Text,
                '\u{1b}' => state = State::StrEscape,
                _ => {}
            },
            State::StrEscape => {
                // ESC \ ends the string; ESC anything-else ends it too (as terminals
                // do) and starts a new escape sequence.
                if c == '\\' {
                    state = State::Text;
                } else {
                    state = State::Escape;
                    pending = Some(c);
                }
            }
        }
    }
    if out.is_empty() && !s.is_empty() && s.chars().any(|c| !is_invisible(c)) {
        // Nothing printable survived (a name that was only an escape sequence):
        // show that something was there rather than an empty cell.
        out.push(REPLACEMENT);
    }
    out
}

/// Bidi embeddings, overrides and isolates: they reorder the text that follows.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Characters that draw nothing (or nothing reliable) and only serve to hide or
/// disguise text.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'                      // soft hyphen
            | '\u{034f}'                // combining grapheme joiner
            | '\u{061c}'                // Arabic letter mark
            | '\u{115f}'..='\u{1160}'   // Hangul fillers
            | '\u{17b4}'..='\u{17b5}'   // Khmer inherent vowels
            | '\u{180b}'..='\u{180f}'   // Mongolian variation selectors, vowel separator
            | '\u{200b}'..='\u{200f}'   // zero-width space, ZWNJ, ZWJ, LRM, RLM
            | '\u{2060}'..='\u{2064}'   // word joiner, invisible operators
            | '\u{206a}'..='\u{206f}'   // deprecated format characters
            | '\u{3164}'                // Hangul filler
            | '\u{feff}'                // BOM / zero-width no-break space
            | '\u{ffa0}'                // halfwidth Hangul filler
            | '\u{fff9}'..='\u{fffb}'   // interlinear annotation
            | '\u{1d173}'..='\u{1d17a}' // musical format characters
            | '\u{e0000}'..='\u{e007f}' // tag characters ("ASCII smuggling")
    )
}

/// Display width in terminal cells (control characters count 0; sanitise first).
pub fn width(s: &str) -> usize {
    s.chars().map(|c| c.width().unwrap_or(0)).sum()
}

/// Truncates to at most `max` cells, ending in "…" when anything was cut.
pub fn fit(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_string();
    }
    cut(s, max)
}

/// Truncates to fewer than `max` cells and appends "…", whether or not `s` would
/// have fitted (for a text that goes on beyond what is shown).
pub fn cut(s: &str, max: usize) -> String {
    if max == 0 {
        return String::new();
    }
    let budget = max - 1; // room for the ellipsis
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > budget {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push(ELLIPSIS);
    out
}

/// `sanitize` then `fit`: the one call for a name from the database.
pub fn clean(s: &str, max: usize) -> String {
    fit(&sanitize(s), max)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// True if the text could change the terminal's state or hide/reorder text.
    fn is_harmful(c: char) -> bool {
        c.is_control() || is_bidi_control(c) || is_invisible(c)
    }

    #[test]
    fn plain_names_pass_unchanged() {
        for s in [
            "support_qa",
            "gpt-4o-mini",
            "alice@example.com",
            "翻訳サービス",
            "café",
            "a  b",
            "",
        ] {
            assert_eq!(sanitize(s), s);
        }
    }

    #[test]
    fn hostile_name_renders_harmlessly() {
        let hostile = "\x1b[2J\x1b]0;pwned\x07evil\u{202E}gpj.exe";
        let clean = sanitize(hostile);
        assert_eq!(clean, "evil\u{FFFD}gpj.exe");
        assert!(!clean.chars().any(is_harmful));
        assert!(
            !clean.contains("pwned"),
            "OSC payload must go with its sequence"
        );
        assert!(
            !clean.contains("[2J"),
            "CSI parameters must go with the ESC"
        );
    }

    #[test]
    fn csi_sequences_are_removed_whole() {
        assert_eq!(sanitize("\x1b[31mred\x1b[0m"), "red");
        assert_eq!(sanitize("\x1b[38;2;255;0;0mrgb\x1b[m"), "rgb");
        assert_eq!(sanitize("a\x1b[?1049hb"), "ab"); // alternate screen
        assert_eq!(sanitize("a\x1b[6nb"), "ab"); // cursor position report request
        assert_eq!(sanitize("a\u{9b}31mb"), "ab"); // C1 CSI
        // A malformed CSI ends at the first byte that cannot belong to it.
        assert_eq!(sanitize("a\x1b[12é"), "aé");
        // An unterminated CSI at the end leaves nothing behind.
        assert_eq!(sanitize("x\x1b[12;"), "x");
    }

    #[test]
    fn string_sequences_are_removed_with_their_payload() {
        // OSC terminated by BEL, by ST (ESC \) and by C1 ST.
        assert_eq!(sanitize("a\x1b]0;title\x07b"), "ab");
        assert_eq!(
            sanitize("a\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\b"),
            "alinkb"
        );
        assert_eq!(sanitize("a\x1b]52;c;ZXZpbA==\u{9c}b"), "ab"); // clipboard write
        assert_eq!(sanitize("a\u{9d}0;t\u{7}b"), "ab"); // C1 OSC
        // DCS, SOS, PM, APC.
        assert_eq!(sanitize("a\x1bPq#0;2;0;0;0\x1b\\b"), "ab");
        assert_eq!(
            sanitize("a\x1bXsos\x1b\\b\x1b^pm\x1b\\c\x1b_apc\x1b\\d"),
            "abcd"
        );
        // ESC inside a string ends it and starts a new sequence.
        assert_eq!(sanitize("a\x1b]0;t\x1b[31mb"), "ab");
        // An unterminated OSC swallows the rest, as a terminal would.
        assert_eq!(sanitize("name\x1b]0;forever"), "name");
        assert_eq!(sanitize("\x1b]0;only"), "\u{FFFD}");
    }

    #[test]
    fn two_byte_escapes_are_removed() {
        assert_eq!(sanitize("a\x1bcb"), "ab"); // RIS: full reset
        assert_eq!(sanitize("a\x1b7b\x1b8c"), "abc"); // save/restore cursor
        assert_eq!(sanitize("a\x1b(0b"), "ab"); // DEC line drawing charset
        assert_eq!(sanitize("a\x1b#8b"), "ab"); // DECALN: fill screen with E
        // ESC followed by something that is not an escape: just the ESC goes.
        assert_eq!(sanitize("a\x1b\x1b[1mb"), "ab");
        assert_eq!(sanitize("a\x1béb"), "aéb");
        assert_eq!(sanitize("end\x1b"), "end");
    }

    #[test]
    fn controls_are_replaced_and_breaks_become_spaces() {
        assert_eq!(
            sanitize("a\x07b\x08c\x00d\x7fe\u{85}f"),
            "a\u{FFFD}b\u{FFFD}c\u{FFFD}d\u{FFFD}e f"
        );
        assert_eq!(sanitize("a\u{80}b\u{9a}c"), "a\u{FFFD}b\u{FFFD}c");
        assert_eq!(sanitize("line one\r\n\tline two"), "line one line two");
        assert_eq!(sanitize("a\u{2028}b\u{2029}c"), "a b c");
        for c in (0u32..0x20).chain(0x7f..0xa0) {
            let ch = char::from_u32(c).unwrap_or('?');
            let s = format!("x{ch}y");
            assert!(!sanitize(&s).chars().any(|c| c.is_control()), "U+{c:04X}");
        }
    }

    #[test]
    fn bidi_controls_are_replaced_visibly() {
        for c in [
            '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}',
        ] {
            assert_eq!(
                sanitize(&format!("a{c}b")),
                "a\u{FFFD}b",
                "U+{:04X}",
                c as u32
            );
        }
    }

    #[test]
    fn invisible_characters_are_dropped() {
        for c in [
            '\u{200b}',
            '\u{200c}',
            '\u{200d}',
            '\u{200e}',
            '\u{200f}',
            '\u{feff}',
            '\u{2060}',
            '\u{ad}',
            '\u{e0041}',
            '\u{061c}',
        ] {
            assert_eq!(
                sanitize(&format!("ad{c}min")),
                "admin",
                "U+{:04X}",
                c as u32
            );
        }
        // A name made only of invisible characters stays empty, as it draws nothing.
        assert_eq!(sanitize("\u{200b}\u{feff}"), "");
    }

    #[test]
    fn output_never_contains_harmful_characters() {
        // Every character up to U+3000 plus the interesting high ranges, each wrapped
        // in escape bytes.
        let mut s = String::new();
        for c in (0u32..0x3000)
            .chain(0xfe00..0x10000)
            .chain(0xe0000..0xe0080)
        {
            if let Some(ch) = char::from_u32(c) {
                s.push(ch);
                s.push('\x1b');
                s.push('x');
            }
        }
        let out = sanitize(&s);
        assert!(!out.chars().any(is_harmful));
        assert!(!out.contains('\x1b'));
    }

    #[test]
    fn width_counts_cells() {
        assert_eq!(width("abc"), 3);
        assert_eq!(width("翻訳"), 4);
        assert_eq!(width("e\u{301}"), 1); // combining accent
        assert_eq!(width(""), 0);
    }

    #[test]
    fn fit_truncates_by_display_width_with_an_ellipsis() {
        assert_eq!(fit("support_qa", 10), "support_qa");
        assert_eq!(fit("support_qa", 11), "support_qa");
        assert_eq!(fit("support_qa", 9), "support_…");
        assert_eq!(fit("support_qa", 1), "…");
        assert_eq!(fit("support_qa", 0), "");
        assert_eq!(fit("", 0), "");
        // Wide characters: never split, never over the limit.
        assert_eq!(fit("翻訳サービス", 12), "翻訳サービス");
        assert_eq!(fit("翻訳サービス", 7), "翻訳サ…");
        assert_eq!(fit("翻訳サービス", 6), "翻訳…"); // 4 + 1, one cell left over
        for max in 0..20 {
            assert!(width(&fit("翻訳サービスsupport", max)) <= max);
        }
    }

    #[test]
    fn cut_always_ends_in_an_ellipsis() {
        assert_eq!(cut("abc", 3), "ab…");
        assert_eq!(cut("abc", 4), "abc…");
        assert_eq!(cut("abc", 1), "…");
        assert_eq!(cut("abc", 0), "");
    }

    #[test]
    fn clean_sanitises_then_fits() {
        let hostile = "\x1b[2J\x1b]0;pwned\x07evil\u{202E}gpj.exe";
        assert_eq!(clean(hostile, 8), "evil\u{FFFD}gp…");
        let long = "x".repeat(10_000);
        assert_eq!(width(&clean(&long, 20)), 20);
    }
}
