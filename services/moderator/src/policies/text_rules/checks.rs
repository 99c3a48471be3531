//! A text rule's non-word conditions: links (found by `linkify`, judged by domain) and
//! density (length, capitals, repeated characters, emoji, stacked combining marks).

use serde::Deserialize;

/// Domains one rule may list (deny and allow together).
pub const MAX_DOMAINS: usize = 1000;

/// `[…rules.<id>.links]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LinksText {
    /// Domains whose links match (a domain matches itself and its subdomains).
    #[serde(default)]
    deny: Vec<String>,
    /// When not empty: a link to any other domain matches.
    #[serde(default)]
    allow: Vec<String>,
    /// More links than this in one message matches.
    max: Option<usize>,
}

/// `[…rules.<id>.density]` as written: each set bound is a condition, and any one passed
/// matches.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct Density {
    /// More characters than this.
    max_chars: Option<usize>,
    /// A larger share of capitals among the letters, in a text of at least 8 letters.
    max_caps_ratio: Option<f32>,
    /// The same character more times in a row than this.
    max_repeated: Option<usize>,
    /// More emoji (pictographs) than this.
    max_emoji: Option<usize>,
    /// More combining marks stacked on one character than this (zalgo text).
    max_combining: Option<usize>,
    /// More users mentioned than this (the request's `mentions`, contract v1.4).
    max_mentions: Option<usize>,
}

/// Compiled link conditions.
#[derive(Debug, Default)]
pub(crate) struct Links {
    deny: Vec<String>,
    allow: Vec<String>,
    max: Option<usize>,
}

impl Links {
    /// Checks `text` (`key` says where in the file, for problems).
    pub(crate) fn compile(key: &str, text: &LinksText, problems: &mut Vec<String>) -> Self {
        let mut domains = |list: &[String], which: &str| -> Vec<String> {
            list.iter()
                .filter_map(|d| {
                    let d = d.trim().trim_start_matches("*.").to_lowercase();
                    let ok = !d.is_empty()
                        && d.len() <= 253
                        && d.contains('.')
                        && d.chars()
                            .all(|c| c.is_alphanumeric() || c == '.' || c == '-');
                    if !ok {
                        problems.push(format!("{key}.{which}: {d:?} is not a domain"));
                    }
                    ok.then_some(d)
                })
                .collect()
        };
        let links = Self {
            deny: domains(&text.deny, "deny"),
            allow: domains(&text.allow, "allow"),
            max: text.max,
        };
        if links.deny.len() + links.allow.len() > MAX_DOMAINS {
            problems.push(format!("{key}: more than {MAX_DOMAINS} domains"));
        }
        if links.deny.is_empty() && links.allow.is_empty() && links.max.is_none() {
            problems.push(format!(
                "{key}: none of deny, allow, max: it would match nothing"
            ));
        }
        links
    }

    /// Whether a link of `text` is denied, not allowed, or there are too many.
    pub(crate) fn matches(&self, text: &str) -> bool {
        for (seen, link) in finder().links(text).enumerate() {
            if self.max.is_some_and(|max| seen + 1 > max) {
                return true;
            }
            let Some(domain) = domain(link.as_str()) else {
                continue;
            };
            let under = |list: &[String]| {
                list.iter().any(|d| {
                    domain == *d
                        || domain
                            .strip_suffix(d.as_str())
                            .is_some_and(|s| s.ends_with('.'))
                })
            };
            if under(&self.deny) || (!self.allow.is_empty() && !under(&self.allow)) {
                return true;
            }
        }
        false
    }
}

/// Finds links with or without a scheme (`https://a.example/x`, `www.a.example`, `t.me/x`).
fn finder() -> linkify::LinkFinder {
    let mut finder = linkify::LinkFinder::new();
    finder.url_must_have_scheme(false);
    finder.kinds(&[linkify::LinkKind::Url]);
    finder
}

/// How many links `text` holds, as link rules find them.
pub(crate) fn count_links(text: &str) -> usize {
    finder().links(text).count()
}

/// The lower-cased host of a link as linkify found it (`https://a.b/c`, `a.b/c`, `a.b:80`).
fn domain(link: &str) -> Option<String> {
    let rest = link.split_once("://").map_or(link, |(_, rest)| rest);
    let host = rest.split(['/', '?', '#']).next()?;
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = host.split(':').next()?.trim_end_matches('.');
    (!host.is_empty()).then(|| host.to_lowercase())
}

impl Density {
    /// Problems with the bounds as written.
    pub(crate) fn check(&self, key: &str, problems: &mut Vec<String>) {
        if let Some(ratio) = self.max_caps_ratio
            && !(0.0..1.0).contains(&ratio)
        {
            problems.push(format!("{key}.max_caps_ratio: {ratio} is outside 0..1"));
        }
        let none = [
            self.max_chars,
            self.max_repeated,
            self.max_emoji,
            self.max_combining,
            self.max_mentions,
        ]
        .iter()
        .all(Option::is_none)
            && self.max_caps_ratio.is_none();
        if none {
            problems.push(format!("{key}: no bound set: it would match nothing"));
        }
    }

    /// Whether `text`, which mentions `mentions` users, passes any bound.
    pub(crate) fn matches(&self, text: &str, mentions: usize) -> bool {
        let over = |bound: Option<usize>, value: usize| bound.is_some_and(|b| value > b);
        if over(self.max_mentions, mentions) {
            return true;
        }
        let counts = Counts::of(text);
        over(self.max_chars, counts.chars)
            || over(self.max_repeated, counts.longest_run)
            || over(self.max_emoji, counts.emoji)
            || over(self.max_combining, counts.most_stacked)
            || self.max_caps_ratio.is_some_and(|ratio| {
                counts.letters >= 8 && counts.capitals as f32 > ratio * counts.letters as f32
            })
    }
}

/// What density bounds read of a text, in one pass.
#[derive(Debug, Default, PartialEq)]
struct Counts {
    chars: usize,
    letters: usize,
    capitals: usize,
    longest_run: usize,
    emoji: usize,
    most_stacked: usize,
}

impl Counts {
    fn of(text: &str) -> Self {
        let mut counts = Counts::default();
        let (mut previous, mut run, mut stacked) = (None, 0, 0);
        for c in text.chars() {
            counts.chars += 1;
            if c.is_alphabetic() {
                counts.letters += 1;
                counts.capitals += usize::from(c.is_uppercase());
            }
            run = if previous == Some(c) { run + 1 } else { 1 };
            counts.longest_run = counts.longest_run.max(run);
            previous = Some(c);
            stacked = if is_combining(c) { stacked + 1 } else { 0 };
            counts.most_stacked = counts.most_stacked.max(stacked);
            counts.emoji += usize::from(is_pictograph(c));
        }
        counts
    }
}

/// Combining marks of the blocks zalgo text draws from: Combining Diacritical Marks and
/// their Extended and Supplement blocks, for Symbols, and Half Marks.
fn is_combining(c: char) -> bool {
    matches!(c, '\u{0300}'..='\u{036F}' | '\u{1AB0}'..='\u{1AFF}' | '\u{1DC0}'..='\u{1DFF}'
        | '\u{20D0}'..='\u{20FF}' | '\u{FE20}'..='\u{FE2F}')
}

/// Pictographs as emoji keyboards send them: Miscellaneous Symbols and Dingbats, and the
/// supplementary planes' emoji blocks (modifiers, joiners and variation selectors are not
/// counted).
fn is_pictograph(c: char) -> bool {
    matches!(c, '\u{2600}'..='\u{27BF}' | '\u{1F000}'..='\u{1F2FF}' | '\u{1F300}'..='\u{1F5FF}'
        | '\u{1F600}'..='\u{1F64F}' | '\u{1F680}'..='\u{1F6FF}' | '\u{1F900}'..='\u{1FAFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        let c = Counts::of("HELLO wooorld 😀😀 z\u{0301}\u{0302}\u{0303}");
        assert_eq!((c.letters, c.capitals, c.longest_run), (13, 5, 3));
        assert_eq!((c.emoji, c.most_stacked), (2, 3));
    }

    #[test]
    fn domains() {
        for (link, host) in [
            ("https://Sub.Example.com/a?b", "sub.example.com"),
            ("example.com", "example.com"),
            ("http://user@evil.io:8080/x", "evil.io"),
            ("t.me/deals", "t.me"),
        ] {
            assert_eq!(domain(link).as_deref(), Some(host));
        }
    }
}
