//! The text rule: what of a `send` text reaches the room and the moderator.
//!
//! * **Refused** (`invalid_text`): C0 controls other than tab and line feed (carriage
//!   return included: browsers send `\n`), DEL and the C1 controls (U+0080–U+009F), the
//!   line and paragraph separators U+2028 and U+2029, and noncharacters (U+FDD0–U+FDEF and
//!   the last two code points of every plane). They have no place in chat text; a
//!   terminal, a log viewer or a JavaScript string may act on them. A text that was not
//!   empty and holds nothing but stripped characters is refused too.
//! * **Stripped**, silently: bidirectional formatting controls (U+061C, U+200E, U+200F,
//!   U+202A–U+202E, U+2066–U+2069), which can make a message read differently from what it
//!   says ("Trojan Source"), and invisible characters that split words without showing
//!   (U+00AD soft hyphen, U+180E, U+200B zero-width space, U+2060–U+2064, U+206A–U+206F,
//!   U+FEFF, U+FFF9–U+FFFB), blank look-alikes that render as nothing (U+034F, U+115F,
//!   U+1160, U+2800, U+3164, U+FFA0, the musical format characters U+1D173–U+1D17A), tag
//!   characters (U+E0000–U+E007F) anywhere but in a flag emoji (after U+1F3F4), and
//!   combining marks (U+0300–U+036F, U+1AB0–U+1AFF, U+1DC0–U+1DFF, U+20D0–U+20FF,
//!   U+FE20–U+FE2F) past the [`MAX_MARKS`]th in a row ("Zalgo" text that spills over
//!   other lines), which let an insult slip past a classifier or hide text while reading
//!   the same to people.
//! * **Kept**: everything else, in particular U+200C ZWNJ and U+200D ZWJ (emoji sequences,
//!   Indic and Persian scripts), variation selectors, and tag characters in flag emoji.
//!
//! The rule is applied once, when the frame is parsed, so members and the moderator see
//! the same text.

/// Combining marks kept in a row on one character (Vietnamese stacks two; more is noise).
pub(crate) const MAX_MARKS: usize = 8;

/// A character that makes a text refused, or `None`.
pub(crate) fn refused(text: &str) -> Option<char> {
    text.chars().find(|&c| is_refused(c))
}

/// `text` without the stripped characters (no copy when there is none: this runs on every
/// message's send path).
pub(crate) fn strip(text: String) -> String {
    // Built only from the first dropped character on, with the prefix before it.
    let mut kept: Option<String> = None;
    let mut flag = false;
    let mut marks = 0;
    for (i, c) in text.char_indices() {
        let tag = is_tag(c);
        let mark = is_combining_mark(c);
        marks = if mark { marks + 1 } else { 0 };
        let drop = is_stripped(c) || (tag && !flag) || (mark && marks > MAX_MARKS);
        flag = c == '\u{1f3f4}' || (flag && tag && c != '\u{e007f}');
        match (&mut kept, drop) {
            (None, true) => kept = Some(text[..i].to_string()),
            (Some(kept), false) => kept.push(c),
            (None, false) | (Some(_), true) => {}
        }
    }
    kept.unwrap_or(text)
}

/// A reported plaintext as it goes to moderation: refused characters become U+FFFD (a
/// report is not refused for what the sender put in it), stripped ones go.
pub(crate) fn for_review(text: &str) -> String {
    let replaced: String = text
        .chars()
        .map(|c| if is_refused(c) { '\u{fffd}' } else { c })
        .collect();
    strip(replaced)
}

/// C0 controls but tab and line feed, DEL, C1 controls, line and paragraph separators,
/// noncharacters.
pub(crate) fn is_refused(c: char) -> bool {
    let code = u32::from(c);
    matches!(c, '\u{0}'..='\u{8}' | '\u{b}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{fdd0}'..='\u{fdef}')
        || code & 0xfffe == 0xfffe
}

/// Bidirectional formatting controls, invisible word-splitters and blank look-alikes.
pub(crate) fn is_stripped(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{34f}'
            | '\u{61c}'
            | '\u{115f}'
            | '\u{1160}'
            | '\u{180e}'
            | '\u{200b}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}'
            | '\u{2800}'
            | '\u{3164}'
            | '\u{feff}'
            | '\u{ffa0}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{1d173}'..='\u{1d17a}'
    )
}

/// Tag characters: the hidden letters of subdivision flags (and of nothing else).
pub(crate) fn is_tag(c: char) -> bool {
    matches!(c, '\u{e0000}'..='\u{e007f}')
}

/// Combining marks of the blocks that stack on any letter.
pub(crate) fn is_combining_mark(c: char) -> bool {
    matches!(
        c,
        '\u{300}'..='\u{36f}'
            | '\u{1ab0}'..='\u{1aff}'
            | '\u{1dc0}'..='\u{1dff}'
            | '\u{20d0}'..='\u{20ff}'
            | '\u{fe20}'..='\u{fe2f}'
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
        // Refused: separators and noncharacters.
        assert_eq!(refused("a\u{2028}b"), Some('\u{2028}'));
        assert_eq!(refused("a\u{ffff}"), Some('\u{ffff}'));
        assert_eq!(refused("a\u{10ffff}"), Some('\u{10ffff}'));
        // Blank look-alikes go; a flag's tags stay, hidden tag letters elsewhere go.
        assert_eq!(strip("id\u{3164}iot\u{2800}".into()), "idiot");
        let scotland = "\u{1f3f4}\u{e0067}\u{e0062}\u{e0073}\u{e0063}\u{e0074}\u{e007f}";
        assert_eq!(strip(format!("hi {scotland}")), format!("hi {scotland}"));
        let hidden: String = "idiot"
            .chars()
            .map(|c| char::from_u32(0xe0000 + u32::from(c)).unwrap())
            .collect();
        assert_eq!(strip(format!("hi{hidden}")), "hi");
        // Vietnamese keeps its marks; Zalgo keeps MAX_MARKS of them.
        let vietnamese = "Vie\u{302}\u{323}t";
        assert_eq!(strip(vietnamese.into()), vietnamese);
        let zalgo = format!("a{}b", "\u{301}".repeat(1300));
        assert_eq!(strip(zalgo), format!("a{}b", "\u{301}".repeat(MAX_MARKS)));
    }
}
