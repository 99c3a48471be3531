//! The pieces of rules 2–5 that need no lexicon: links and handles, a word's core between
//! its punctuation, leetspeak (rule 3), separators, and runs of one letter.

pub(super) fn is_link(word: &str) -> bool {
    word.contains("://")
        || word.starts_with("www.")
        || (word.len() > 1 && (word.starts_with('@') || word.starts_with('#')))
}

pub(super) fn is_separator(c: char) -> bool {
    matches!(c, '-' | '_' | '.' | '*' | '~' | '·')
}

fn leet_letter(c: char) -> Option<char> {
    Some(match c {
        '0' => 'o',
        '1' => 'i',
        '3' => 'e',
        '4' => 'a',
        '5' => 's',
        '7' => 't',
        '@' => 'a',
        '$' => 's',
        '!' => 'i',
        _ => return None,
    })
}

/// `(leading punctuation, core, trailing punctuation)`: the core runs from the first letter,
/// digit, `@` or `$` to the last letter, digit or `$` (so `idiot!` keeps its `!`).
pub(super) fn split_core(word: &str) -> (&str, &str, &str) {
    let start = word
        .find(|c: char| c.is_alphanumeric() || c == '@' || c == '$')
        .unwrap_or(word.len());
    let end = word
        .rfind(|c: char| c.is_alphanumeric() || c == '$')
        .map(|i| i + word[i..].chars().next().map_or(1, char::len_utf8))
        .unwrap_or(start)
        .max(start);
    (&word[..start], &word[start..end], &word[end..])
}

/// A word that is single Latin letters, each apart from the next by one separator, as noisy
/// spaced-out text writes it (`y.o`, `i_d.`, `o*t`, or one letter and its punctuation,
/// `o.`): its letters and its trailing punctuation. `None` for any other word: two letters
/// side by side, a digit, leading punctuation, a link, one letter alone; two separators in
/// a row (masked swearing, `f**k`, `s--t`, reads better as written); a two-letter dotted
/// abbreviation (`e.g.`, `p.s.`, `a.m.`); other scripts (`я.`, `好.`).
pub(super) fn separated_letters(word: &str) -> Option<(Vec<char>, &str)> {
    let (lead, core, trail) = split_core(word);
    if !lead.is_empty() || is_link(word) {
        return None;
    }
    let mut letters = Vec::new();
    let mut after_letter = false;
    for c in core.chars() {
        if c.is_ascii_alphabetic() && !after_letter {
            letters.push(c);
            after_letter = true;
        } else if is_separator(c) && after_letter {
            after_letter = false;
        } else {
            return None;
        }
    }
    let abbreviation = letters.len() == 2
        && trail.starts_with('.')
        && !core.chars().any(|c| is_separator(c) && c != '.');
    let separated = letters.len() >= 2 || (letters.len() == 1 && !trail.is_empty());
    (separated && !abbreviation).then_some((letters, trail))
}

/// Rule 3 on a word's core.
pub(super) fn leet(core: &str) -> String {
    let letters = core.chars().filter(|c| c.is_alphabetic()).count();
    let leets = core.chars().filter(|&c| leet_letter(c).is_some()).count();
    if letters == 0 || leets == 0 || letters + leets < 3 || is_quantity(core) {
        return core.to_string();
    }
    core.chars().map(|c| leet_letter(c).unwrap_or(c)).collect()
}

/// A number with an ordinal or unit suffix: `1st`, `10am`, `100kg`, `90s`, `4k`.
fn is_quantity(core: &str) -> bool {
    const SUFFIXES: [&str; 30] = [
        "st", "nd", "rd", "th", "s", "am", "pm", "k", "m", "h", "d", "x", "g", "p", "kg", "km",
        "cm", "mm", "min", "ms", "mb", "gb", "tb", "ml", "hz", "fps", "yo", "yr", "yrs", "hrs",
    ];
    let suffix = core.trim_start_matches(|c: char| c.is_ascii_digit());
    suffix.len() < core.len() && SUFFIXES.contains(&suffix)
}

/// Runs of equal characters: `(char, length)`.
pub(super) fn runs(word: &str) -> Vec<(char, usize)> {
    let mut runs: Vec<(char, usize)> = Vec::new();
    for c in word.chars() {
        match runs.last_mut() {
            Some((last, n)) if *last == c => *n += 1,
            _ => runs.push((c, 1)),
        }
    }
    runs
}
