//! WCAG 2 contrast of a style sheet's text colours against the backgrounds they are drawn
//! on, read from the CSS alone (no browser). Which background a text sits on is guessed
//! from the selectors, generously, so that a doubtful pair is checked rather than skipped:
//! a rule's `color` is checked against its own background when it declares one, else
//! against the page's (`body`'s), white (the default of every box, inputs included) and
//! the background of every rule whose selector names one of the classes, ids or elements
//! of its own (`.msg.mine`'s tint for `.msg .state`). A rule with a background and no
//! `color` is checked with the text colour it inherits (`body`'s, or a rule's naming one of
//! its classes). Colours are `#rgb` or `#rrggbb` (others are not read: say them so).

/// A text colour on a background that fails: where, the two colours and the ratio.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pair {
    /// The selector of the rule that sets the text colour (or the background).
    pub(crate) selector: String,
    pub(crate) text: String,
    pub(crate) background: String,
    pub(crate) ratio: f64,
}

/// One style rule: its selector and the colours it declares.
#[derive(Debug, Clone)]
struct Rule {
    selector: String,
    color: Option<String>,
    background: Option<String>,
}

/// The WCAG 2 contrast ratio of two `#rgb`/`#rrggbb` colours (1 to 21).
pub(crate) fn ratio(a: &str, b: &str) -> f64 {
    let (la, lb) = (luminance(a), luminance(b));
    let (hi, lo) = if la > lb { (la, lb) } else { (lb, la) };
    (hi + 0.05) / (lo + 0.05)
}

/// Relative luminance (WCAG 2): sRGB channels linearised, weighted.
fn luminance(hex: &str) -> f64 {
    let hex = hex.trim_start_matches('#');
    let full: String = if hex.len() == 3 {
        hex.chars().flat_map(|c| [c, c]).collect()
    } else {
        hex.to_string()
    };
    let channel = |at: usize| {
        let c = f64::from(u8::from_str_radix(&full[at..at + 2], 16).expect("a hex colour")) / 255.0;
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * channel(0) + 0.7152 * channel(2) + 0.0722 * channel(4)
}

/// Every text colour of `css` on each background it may sit on whose ratio is below
/// `minimum`, and how many pairs were checked.
pub(crate) fn failing(css: &str, minimum: f64) -> (Vec<Pair>, usize) {
    let rules = rules(css);
    let body = rules.iter().find(|r| r.selector == "body");
    let page = body.and_then(|r| r.background.clone());
    let body_text = body.and_then(|r| r.color.clone()).unwrap_or("#000".into());
    let mut checked = 0;
    let mut failing = Vec::new();
    let mut check = |selector: &str, text: &str, background: &str| {
        checked += 1;
        let ratio = ratio(text, background);
        if ratio < minimum {
            failing.push(Pair {
                selector: selector.to_string(),
                text: text.to_string(),
                background: background.to_string(),
                ratio,
            });
        }
    };
    for rule in &rules {
        let related = |field: fn(&Rule) -> Option<&String>| -> Vec<String> {
            rules
                .iter()
                .filter(|other| shares_a_name(&other.selector, &rule.selector))
                .filter_map(|other| field(other).cloned())
                .collect()
        };
        match (&rule.color, &rule.background) {
            (Some(text), Some(background)) => check(&rule.selector, text, background),
            (Some(text), None) => {
                let mut grounds = related(|r| r.background.as_ref());
                grounds.extend(page.clone());
                grounds.push("#fff".into());
                for background in grounds {
                    check(&rule.selector, text, &background);
                }
            }
            (None, Some(background)) => {
                let mut texts = related(|r| r.color.as_ref());
                texts.push(body_text.clone());
                for text in texts {
                    check(&rule.selector, &text, background);
                }
            }
            (None, None) => {}
        }
    }
    (failing, checked)
}

/// Whether two selectors name a class, id or element in common (`.msg.mine` and
/// `.msg .state`: `msg`).
fn shares_a_name(a: &str, b: &str) -> bool {
    let names = |s: &str| -> Vec<String> {
        s.split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_' || c == '.' || c == '#'))
            .flat_map(|compound| {
                compound
                    .split_inclusive(['.', '#'])
                    .map(|n| n.trim_end_matches(['.', '#']).to_string())
                    .collect::<Vec<_>>()
            })
            .filter(|n| !n.is_empty())
            .collect()
    };
    let theirs = names(b);
    names(a).iter().any(|n| theirs.contains(n))
}

/// The innermost `selector { declarations }` blocks of `css` (inside `@media` too), with
/// comments removed; a selector list (`a, b`) is one rule per selector.
fn rules(css: &str) -> Vec<Rule> {
    let mut text = String::new();
    let mut rest = css;
    while let Some(start) = rest.find("/*") {
        text.push_str(&rest[..start]);
        rest = rest[start..]
            .find("*/")
            .map_or("", |end| &rest[start + end + 2..]);
    }
    text.push_str(rest);
    let mut rules = Vec::new();
    let mut head_start = 0;
    let mut open: Option<usize> = None;
    for (at, c) in text.char_indices() {
        match c {
            '{' => {
                head_start = open.map_or(head_start, |o| o + 1);
                open = Some(at);
            }
            '}' => {
                if let Some(o) = open.take() {
                    let head = text[head_start..o].trim();
                    let head = head.rsplit(['}', ';']).next().unwrap_or(head).trim();
                    let body = &text[o + 1..at];
                    for selector in head.split(',') {
                        rules.push(rule(selector.trim(), body));
                    }
                }
                head_start = at + 1;
            }
            _ => {}
        }
    }
    rules
}

fn rule(selector: &str, body: &str) -> Rule {
    let mut color = None;
    let mut background = None;
    for declaration in body.split(';') {
        let Some((name, value)) = declaration.split_once(':') else {
            continue;
        };
        let hex = value
            .split_whitespace()
            .find(|w| w.starts_with('#'))
            .map(|w| w.trim_end_matches(['!', ',']).to_ascii_lowercase());
        match name.trim() {
            "color" => color = hex,
            "background" | "background-color" => background = hex,
            _ => {}
        }
    }
    Rule {
        selector: selector.to_string(),
        color,
        background,
    }
}
