//! Keyword and allow lists compiled to regexes (whole words, `*` wildcards, the separators
//! the normaliser takes out between words), and a rule's own regexes: bounded in size.

use regex::RegexBuilder;

use super::{
    KEYWORDS_SIZE_LIMIT, MAX_KEYWORD_CHARS, MAX_KEYWORDS, MAX_REGEX_CHARS, MAX_REGEXES,
    REGEX_SIZE_LIMIT,
};
use regex::Regex;

/// Regexes matching any of `list` (keywords or allow phrases), case-insensitively: one
/// for phrases with ASCII edges and one for the rest, because a Unicode word boundary
/// makes the regex crate's fast engine give up on any non-ASCII text (measured ~30× slower
/// on such text), while an ASCII boundary does not. Empty for an empty list.
pub(super) fn phrases(key: &str, list: &[String], problems: &mut Vec<String>) -> Vec<Regex> {
    if list.len() > MAX_KEYWORDS {
        problems.push(format!(
            "{key}: {} entries, more than the {MAX_KEYWORDS} a rule may have",
            list.len()
        ));
        return Vec::new();
    }
    let (mut ascii, mut unicode) = (Vec::new(), Vec::new());
    for phrase in list {
        match pattern(phrase) {
            Ok((p, false)) => ascii.push(p),
            Ok((p, true)) => unicode.push(p),
            Err(why) => problems.push(format!("{key}: {phrase:?}: {why}")),
        }
    }
    [ascii, unicode]
        .into_iter()
        .filter(|alternatives| !alternatives.is_empty())
        .filter_map(|alternatives| {
            let joined = format!("(?i)(?:{})", alternatives.join("|"));
            RegexBuilder::new(&joined)
                .size_limit(KEYWORDS_SIZE_LIMIT)
                .build()
                .map_err(|e| problems.push(format!("{key}: too large to match ({})", one_line(&e))))
                .ok()
        })
        .collect()
}

/// Between the words of a keyword: white space or the separators the normaliser takes out
/// (`kill-yourself`, `kill_yourself`, `kill.yourself`), or nothing (the normalised
/// `killyourself`).
const BETWEEN_WORDS: &str = r"[\s._\-*/\\|,~+]*";

/// The regex of one keyword: whole words, `*` any run of characters but white space (at an
/// end: the word may go on; not Unicode `\w`, whose compiled class is so large that 1,000
/// wildcard keywords passed 16 MiB), between words [`BETWEEN_WORDS`]; and whether an edge
/// needs a Unicode word boundary (a non-ASCII letter there; an ASCII one takes an ASCII
/// boundary, so `kys` also matches glued to a Cyrillic letter: `жkys`).
fn pattern(phrase: &str) -> Result<(String, bool), String> {
    let phrase = phrase.trim().to_lowercase();
    let chars = phrase.chars().count();
    if chars > MAX_KEYWORD_CHARS {
        return Err(format!("{chars} characters, more than {MAX_KEYWORD_CHARS}"));
    }
    if !phrase.chars().any(char::is_alphanumeric) {
        return Err("no letter or digit: it would match almost anything".into());
    }
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let mut unicode = false;
    let mut boundary = |c: Option<char>, out: &mut String| {
        if word(c) {
            let ascii = c.is_some_and(|c| c.is_ascii());
            unicode |= !ascii;
            out.push_str(if ascii { r"(?-u:\b)" } else { r"\b" });
        }
    };
    let mut out = String::new();
    boundary(phrase.chars().next(), &mut out);
    let mut words = phrase.split_whitespace().peekable();
    while let Some(w) = words.next() {
        let parts: Vec<String> = w.split('*').map(regex::escape).collect();
        out.push_str(&parts.join(r"\S*"));
        if words.peek().is_some() {
            out.push_str(BETWEEN_WORDS);
        }
    }
    boundary(phrase.chars().last(), &mut out);
    Ok((out, unicode))
}

/// The rule's regexes, each bounded in length and compiled size.
pub(super) fn regexes(key: &str, list: &[String], problems: &mut Vec<String>) -> Vec<Regex> {
    if list.len() > MAX_REGEXES {
        problems.push(format!(
            "{key}: {} regexes, more than the {MAX_REGEXES} a rule may have",
            list.len()
        ));
        return Vec::new();
    }
    let mut compiled = Vec::new();
    for source in list {
        let chars = source.chars().count();
        if chars > MAX_REGEX_CHARS {
            problems.push(format!(
                "{key}: a regex of {chars} characters, more than {MAX_REGEX_CHARS}"
            ));
            continue;
        }
        match RegexBuilder::new(source)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
        {
            Ok(regex) => compiled.push(regex),
            Err(e) => problems.push(format!("{key}: {source:?}: {}", one_line(&e))),
        }
    }
    compiled
}

/// `regex`'s errors span several lines: keep them on one.
fn one_line(error: &regex::Error) -> String {
    error
        .to_string()
        .split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
