//! A policy's text rules (issue 30): keyword lists with wildcards and allow lists, and
//! regexes, checked before the models. A rule that matches decides the message (`allow`,
//! `flag` or `block`) and the models do not run.
//!
//! ```toml
//! [policies.chat.rules.self_harm_taunts]
//! keywords = ["kys", "kill yourself", "neck*"]  # whole words; `*`: any non-space run
//! allow = ["skills"]                     # phrases that never count as a keyword match
//! regex = ['(?i)\bk+\s*y+\s*s+\b']       # Rust regex syntax, linear time
//! action = "block"                       # allow | flag | block
//! category = "harassment"                # what the verdict names (optional)
//! ```
//!
//! Keywords and allow phrases match the text lower-cased and, when it differs, its
//! normalised form (the obfuscation normaliser's: `k.y.s`, `k y s` and `kуs` with a
//! Cyrillic `у` match `kys`); regexes match the text as written. Several rules matching:
//! the most severe decides (`block` over `flag` over `allow`), the first by name among
//! equals.

use std::collections::BTreeMap;

use offpath_protocol::subject::is_valid_token;

pub mod campaign;
mod checks;
pub mod sender;
mod words;

use campaign::CampaignLimits;
pub use checks::MAX_DOMAINS;
pub(crate) use checks::count_links;
use checks::{Density, Links, LinksText};
use regex::Regex;
use sender::{SenderLimits, SenderView};
use serde::Deserialize;
use words::{phrases, regexes};

/// Longest account age a new-account rule may name: ten years, in seconds.
const MAX_ACCOUNT_AGE_S: u64 = 10 * 366 * 24 * 3600;
/// Rules one policy may have.
pub const MAX_RULES: usize = 64;
/// Keywords (and allow phrases) one rule may have, as Discord AutoMod allows.
pub const MAX_KEYWORDS: usize = 1000;
/// Characters of one keyword or allow phrase.
pub const MAX_KEYWORD_CHARS: usize = 60;
/// Regexes one rule may have.
pub const MAX_REGEXES: usize = 10;
/// Characters of one regex.
pub const MAX_REGEX_CHARS: usize = 260;
/// Bytes of one compiled regex (`regex`'s own bound; a bigger one is refused).
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Bytes of one rule's compiled keyword list.
const KEYWORDS_SIZE_LIMIT: usize = 16 << 20;

/// A rule as written in the policy file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleText {
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    regex: Vec<String>,
    links: Option<LinksText>,
    density: Option<Density>,
    sender: Option<SenderLimits>,
    campaign: Option<CampaignLimits>,
    /// Only for accounts younger than this, in seconds, as the platform vouches
    /// (`account_created_ms`, contract v1.4); a rule with nothing else matches every
    /// message of such an account.
    account_younger_than_s: Option<u64>,
    action: RuleAction,
    category: Option<String>,
    /// Counted when it matches, never acted on.
    #[serde(default)]
    shadow: bool,
    /// What follows a match: the rule decides, or the models run too.
    #[serde(default)]
    then: Then,
}

/// What follows a rule's match.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Then {
    /// The rule's action is the verdict; the models do not run.
    #[default]
    Decide,
    /// The models run; the verdict is the more severe of theirs and the rule's, and names
    /// the rule when the rule's action prevailed (a reason, not a shortcut).
    Models,
}

/// What a matching rule does to the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    /// Allowed without the models.
    Allow,
    /// Kept and sent to the review queue.
    Flag,
    /// Removed.
    Block,
}

impl RuleAction {
    /// The wire and metric name.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleAction::Allow => "allow",
            RuleAction::Flag => "flag",
            RuleAction::Block => "block",
        }
    }
}

/// One compiled rule.
#[derive(Debug)]
pub struct TextRule {
    /// The rule's name in the file (a subject-safe token).
    pub id: String,
    /// What it does when it matches.
    pub action: RuleAction,
    /// The category its verdicts name, if any.
    pub category: Option<String>,
    /// Counted when it matches, never acted on.
    pub shadow: bool,
    /// Whether the models run after a match.
    pub then: Then,
    keywords: Vec<Regex>,
    allow: Vec<Regex>,
    regexes: Vec<Regex>,
    links: Option<Links>,
    density: Option<Density>,
    sender: Option<SenderLimits>,
    campaign: Option<CampaignLimits>,
    account_younger_than_s: Option<u64>,
}

impl TextRule {
    /// Whether it matches: a keyword in `lowered` or `normalised` outside the allow
    /// phrases, or in `text` as written a regex, a link or a density bound, or a bound of
    /// what the sender did lately (`sender`).
    fn matches(&self, message: &Message<'_>, sender: Option<&SenderView>) -> bool {
        let Message {
            text,
            lowered,
            normalised,
            mentions,
            account_age_ms,
        } = *message;
        if let Some(young) = self.account_younger_than_s {
            let is_young = account_age_ms.is_some_and(|age| age < young.saturating_mul(1000));
            if !is_young {
                return false;
            }
            if self.matches_nothing_else() {
                return true;
            }
        }
        let keyword = |view: &str| {
            if self.keywords.is_empty() {
                return false;
            }
            let mut view = std::borrow::Cow::Borrowed(view);
            for allow in &self.allow {
                if let std::borrow::Cow::Owned(cleared) = allow.replace_all(&view, " ") {
                    view = std::borrow::Cow::Owned(cleared);
                }
            }
            self.keywords.iter().any(|k| k.is_match(&view))
        };
        keyword(lowered)
            || normalised.is_some_and(keyword)
            || self.regexes.iter().any(|r| r.is_match(text))
            || self.links.as_ref().is_some_and(|l| l.matches(text))
            || self
                .density
                .as_ref()
                .is_some_and(|d| d.matches(text, mentions))
            || self
                .sender
                .as_ref()
                .zip(sender)
                .is_some_and(|(limits, view)| limits.matches(view))
            || self
                .campaign
                .as_ref()
                .zip(sender)
                .is_some_and(|(limits, view)| limits.matches_view(view))
    }

    /// Whether it counts what senders did (sender or campaign rules): its blocks neither
    /// trip the brake nor are held by it.
    pub fn counts_people(&self) -> bool {
        self.sender.is_some() || self.campaign.is_some()
    }

    /// Whether it counts near-duplicate campaigns (its verdicts then name the campaign).
    pub fn counts_campaigns(&self) -> bool {
        self.campaign.is_some()
    }

    /// Whether the rule has no condition but the account's age.
    fn matches_nothing_else(&self) -> bool {
        self.keywords.is_empty()
            && self.regexes.is_empty()
            && self.links.is_none()
            && self.density.is_none()
            && self.sender.is_none()
            && self.campaign.is_none()
    }
}

/// A message as the rules read it.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The text as written.
    pub text: &'a str,
    /// It lower-cased.
    pub lowered: &'a str,
    /// Its normalised form, when that differs.
    pub normalised: Option<&'a str>,
    /// How many users it mentions (contract v1.4).
    pub mentions: usize,
    /// How old the sender's account was when it was sent, if the platform vouched.
    pub account_age_ms: Option<u64>,
}

/// A policy's rules, by name; compared by what was written.
#[derive(Debug, Default)]
pub struct TextRules {
    rules: Vec<TextRule>,
    /// The rules as written, in a canonical form: the policy version digests it.
    pub(super) canonical: String,
}

impl PartialEq for TextRules {
    fn eq(&self, other: &Self) -> bool {
        self.canonical == other.canonical
    }
}

impl TextRules {
    /// Whether there are none (the stage then costs nothing, not even the normaliser).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether a rule counts what the sender did or near-duplicates (the stage then looks
    /// the sender up).
    pub fn count_senders(&self) -> bool {
        self.rules.iter().any(TextRule::counts_people)
    }

    /// The rules, by name.
    pub fn iter(&self) -> impl Iterator<Item = &TextRule> {
        self.rules.iter()
    }

    /// The rule that decides `message` (`sender`: what its sender did, when known), if any
    /// matches, and the shadow rules that match.
    pub fn check(&self, message: &Message<'_>, sender: Option<&SenderView>) -> Checked<'_> {
        let mut checked = Checked::default();
        for rule in &self.rules {
            if rule.shadow {
                if rule.matches(message, sender) {
                    checked.shadow.push(rule);
                }
                continue;
            }
            // The most severe rule wins; among equals, one that decides, then the first.
            let outranks = |d: &TextRule| {
                (d.action, d.then == Then::Decide) >= (rule.action, rule.then == Then::Decide)
            };
            if checked.decided.is_some_and(outranks) {
                continue;
            }
            if rule.matches(message, sender) {
                checked.decided = Some(rule);
            }
        }
        checked
    }
}

/// What a policy's rules made of one text.
#[derive(Debug, Default)]
pub struct Checked<'a> {
    /// The rule that prevails, if any matched: it decides, or (`then = "models"`) sets the
    /// least the verdict will be.
    pub decided: Option<&'a TextRule>,
    /// The shadow rules that matched (counted, not acted on).
    pub shadow: Vec<&'a TextRule>,
}

impl RuleText {
    /// Records what is wrong with the rule `id` (`key` says where in the file) that
    /// compiling it does not find.
    fn check(&self, id: &str, key: &str, problems: &mut Vec<String>) {
        let text = self;
        if !is_valid_token(id) {
            problems.push(format!(
                "{key}: a rule name must be 1-64 characters of A-Z a-z 0-9 _ : @ = + ~ -"
            ));
        }
        if let Some(category) = &text.category
            && !is_valid_token(category)
        {
            problems.push(format!(
                "{key}.category: must be 1-64 characters of A-Z a-z 0-9 _ : @ = + ~ -"
            ));
        }
        if text.keywords.is_empty()
            && text.regex.is_empty()
            && text.links.is_none()
            && text.density.is_none()
            && text.sender.is_none()
            && text.campaign.is_none()
            && text.account_younger_than_s.is_none()
        {
            problems.push(format!(
                "{key}: none of keywords, regex, links, density, sender, campaign, \
                 account_younger_than_s: it would match nothing"
            ));
        }
        if text
            .account_younger_than_s
            .is_some_and(|s| s == 0 || s > MAX_ACCOUNT_AGE_S)
        {
            problems.push(format!(
                "{key}.account_younger_than_s: must be 1..={MAX_ACCOUNT_AGE_S} (ten years)"
            ));
        }
        if let Some(density) = &text.density {
            density.check(&format!("{key}.density"), problems);
        }
        if let Some(sender) = &text.sender {
            sender.check(&format!("{key}.sender"), problems);
        }
        if let Some(campaign) = &text.campaign {
            campaign.check(&format!("{key}.campaign"), problems);
        }
        if text.then == Then::Models && text.action == RuleAction::Allow {
            problems.push(format!(
                "{key}: action \"allow\" with then = \"models\" would never change a verdict"
            ));
        }
    }
}

/// Compiles a policy's rules (`at` is its key in the file); every problem is recorded.
pub(super) fn compile(
    at: &str,
    texts: &BTreeMap<String, RuleText>,
    problems: &mut Vec<String>,
) -> TextRules {
    if texts.len() > MAX_RULES {
        problems.push(format!(
            "{at}.rules: {} rules, more than the {MAX_RULES} a policy may have",
            texts.len()
        ));
    }
    let mut rules = Vec::new();
    let mut canonical = String::new();
    for (id, text) in texts {
        let key = format!("{at}.rules.{id}");
        text.check(id, &key, problems);
        let rule = TextRule {
            id: id.clone(),
            action: text.action,
            category: text.category.clone(),
            keywords: phrases(&format!("{key}.keywords"), &text.keywords, problems),
            allow: phrases(&format!("{key}.allow"), &text.allow, problems),
            regexes: regexes(&format!("{key}.regex"), &text.regex, problems),
            links: text
                .links
                .as_ref()
                .map(|l| Links::compile(&format!("{key}.links"), l, problems)),
            density: text.density.clone(),
            sender: text.sender.clone(),
            campaign: text.campaign.clone(),
            account_younger_than_s: text.account_younger_than_s,
            shadow: text.shadow,
            then: text.then,
        };
        // Every field as written (Debug), so any change changes the policy's version.
        canonical.push_str(&format!("rule {id} {text:?}\n"));
        rules.push(rule);
    }
    TextRules { rules, canonical }
}

#[cfg(test)]
#[path = "text_rules_tests.rs"]
mod tests;
