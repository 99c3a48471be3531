//! Rule 1, one character at a time: invisible characters removed, fancy alphabets and
//! accented Latin letters folded to plain lower-case ones, Cyrillic and Greek look-alikes
//! made Latin only inside a word that also has Latin letters.

use decancer::{Options, Translation};

/// Rule 1 on one word.
pub(super) fn fold_chars(word: &str) -> String {
    let mixed = word.chars().any(is_latin) && word.chars().any(is_greek_or_cyrillic);
    let mut out = String::with_capacity(word.len());
    // Whether a combining mark that follows belongs to a script whose marks carry meaning.
    let mut keep_marks = false;
    for c in word.chars() {
        if is_invisible(c) {
            continue;
        }
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
            keep_marks = false;
            continue;
        }
        if matches!(c, 'ß' | 'ẞ') {
            // decancer reads the sharp s as a "b".
            out.push_str("ss");
            keep_marks = false;
            continue;
        }
        if is_greek_or_cyrillic(c) && !mixed {
            out.extend(c.to_lowercase());
            keep_marks = true;
            continue;
        }
        let options = if is_greek_or_cyrillic(c) || is_latin(c) {
            Options::default()
        } else {
            Options::pure_homoglyph()
        };
        match decancer::cure_char(c, options) {
            Translation::Character(t) => {
                out.extend(t.to_lowercase());
                keep_marks = !t.is_ascii();
            }
            Translation::String(s) => {
                out.push_str(&s.to_lowercase());
                keep_marks = false;
            }
            Translation::None if keep_marks => out.push(c),
            Translation::None => {}
        }
    }
    out
}

/// Latin letters: ASCII, Latin-1 and Latin Extended-A/B, Latin Extended Additional, and
/// anything decancer reads as an ASCII letter (fancy alphabets, fullwidth).
fn is_latin(c: char) -> bool {
    c.is_ascii_alphabetic()
        || (matches!(c, '\u{c0}'..='\u{24f}' | '\u{1e00}'..='\u{1eff}') && c.is_alphabetic())
        || (!c.is_ascii()
            && !is_greek_or_cyrillic(c)
            && matches!(
                decancer::cure_char(c, Options::pure_homoglyph()),
                Translation::Character(t) if t.is_ascii_alphabetic()
            ))
}

fn is_greek_or_cyrillic(c: char) -> bool {
    matches!(c, '\u{370}'..='\u{3ff}' | '\u{1f00}'..='\u{1fff}' | '\u{400}'..='\u{52f}')
        && c.is_alphabetic()
}

/// Characters that render as nothing: removed wherever they are.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{34f}'
            | '\u{61c}'
            | '\u{115f}'
            | '\u{1160}'
            | '\u{17b4}'
            | '\u{17b5}'
            | '\u{180b}'..='\u{180f}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{3164}'
            | '\u{fe00}'..='\u{fe0f}'
            | '\u{feff}'
            | '\u{ffa0}'
            | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0000}'..='\u{e007f}'
            | '\u{e0100}'..='\u{e01ef}'
    )
}
