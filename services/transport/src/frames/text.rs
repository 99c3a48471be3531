//! The text rule: what of a `send` text reaches the room and the moderator.
//!
//! * **Refused** (`invalid_text`): C0 controls other than tab and line feed (carriage
//!   return included: browsers send `\n`), DEL and the C1 controls (U+0080–U+009F). They
//!   have no place in chat text; a terminal or a log viewer may act on them.
//! * **Stripped**, silently: bidirectional formatting controls (U+061C, U+200E, U+200F,
//!   U+202A–U+202E, U+2066–U+2069), which can make a message read differently from what it
//!   says ("Trojan Source"), and invisible characters that split words without showing
//!   (U+00AD soft hyphen, U+180E, U+200B zero-width space, U+2060–U+2064, U+206A–U+206F,
//!   U+FEFF, U+FFF9–U+FFFB), which let an insult slip past a classifier while reading the
//!   same to people.
//! * **Kept**: everything else, in particular U+200C ZWNJ and U+200D ZWJ (emoji sequences,
//!   Indic and Persian scripts), variation selectors and tag characters (flag emoji).
//!
//! The rule is applied once, when the frame is parsed, so members and the moderator see
//! the same text.

/// A character that makes a text refused, or `None`.
pub(crate) fn refused(text: &str) -> Option<char> {
    text.chars().find(|&c| is_refused(c))
}

/// `text` without the stripped characters (no copy when there is none).
pub(crate) fn strip(text: String) -> String {
    if text.chars().any(is_stripped) {
        text.chars().filter(|&c| !is_stripped(c)).collect()
    } else {
        text
    }
}

/// C0 controls but tab and line feed, DEL, C1 controls.
pub(crate) fn is_refused(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{8}' | '\u{b}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}

/// Bidirectional formatting controls and invisible word-splitters.
pub(crate) fn is_stripped(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{61c}'
            | '\u{180e}'
            | '\u{200b}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Controls are refused, bidi and invisible characters stripped, joiners kept.
    #[test]
    fn the_rule() {
        assert_eq!(refused("a\u{0}b"), Some('\u{0}'));
        assert_eq!(refused("a\rb"), Some('\r'));
        assert_eq!(refused("a\u{85}b"), Some('\u{85}'));
        assert_eq!(refused("tab\tand\nnewline"), None);
        assert_eq!(strip("id\u{200b}iot".into()), "idiot");
        assert_eq!(strip("\u{202e}txt.exe\u{202c}".into()), "txt.exe");
        assert_eq!(strip("\u{feff}\u{2066}x\u{2069}".into()), "x");
        let family = "👩\u{200d}👩\u{200d}👧";
        assert_eq!(strip(family.into()), family);
        let persian = "می\u{200c}خواهم";
        assert_eq!(strip(persian.into()), persian);
    }
}
