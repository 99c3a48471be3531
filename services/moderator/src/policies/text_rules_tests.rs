//! Text rules: what a keyword, a wildcard, an allow phrase and a regex match, which rule
//! decides, and what a policy file may not hold.

use offpath_classifier::Normalizer;

use super::super::PolicySet;
use super::super::tests::manifests;
use super::*;

const FILE: &str = r#"
default = "chat"

[policies.chat.rules.taunts]
keywords = ["kys", "kill yourself", "neck*", "умри"]
allow = ["necklace", "neckties"]
action = "block"
category = "harassment"

[policies.chat.rules.promo]
keywords = ["*casino*", "free followers"]
regex = ['(?i)\bt\.me/\w+']
action = "flag"
category = "spam"

[policies.chat.rules.greetings]
keywords = ["good morning"]
action = "allow"

[policies.chat.rules.links]
links = { deny = ["evil.example", "*.scam.test"], max = 3 }
action = "flag"
category = "spam"

[policies.chat.rules.shouting]
density = { max_caps_ratio = 0.8, max_repeated = 12, max_emoji = 10, max_combining = 4, max_chars = 2000 }
action = "flag"

[policies.chat.rules.trial]
keywords = ["buy now"]
action = "block"
shadow = true

[policies.order.rules.flag_and_decide]
keywords = ["alpha"]
action = "flag"

[policies.order.rules.flag_then_models]
keywords = ["alpha", "beta"]
action = "flag"
then = "models"

[policies.order.rules.block_then_models]
keywords = ["gamma"]
action = "block"
then = "models"

[policies.shop.rules.only_ours]
links = { allow = ["shop.example"] }
action = "block"

[policies.plain]
"#;

fn set() -> PolicySet {
    PolicySet::parse(FILE, &manifests()).expect("the file is valid")
}

/// The id of the rule that decides `text` under `policy`, as the rules stage calls it.
fn decided(set: &PolicySet, policy: &str, text: &str) -> Option<(String, RuleAction)> {
    let rules = set.select("t", "r", Some(policy)).rules.text_rules();
    let normalised = Normalizer::new().second_view(text);
    rules
        .check(
            &message(text, &text.to_lowercase(), normalised.as_deref()),
            None,
        )
        .decided
        .map(|r| (r.id.clone(), r.action))
}

#[test]
fn keywords_wildcards_allow_phrases_and_regexes() {
    let set = set();
    let block = Some(("taunts".to_string(), RuleAction::Block));
    let flag = Some(("promo".to_string(), RuleAction::Flag));
    for (text, expected) in [
        ("kys nobody would miss you", &block),
        ("just KYS already", &block),
        ("go kill   yourself", &block),
        // Separators between a keyword's words (found in review), and none at all.
        ("kill-yourself", &block),
        ("kill_yourself now", &block),
        ("kill.yourself", &block),
        ("kill\u{200B}yourself", &block),
        ("killyourself", &block),
        // A keyword in another script keeps whole-word (Unicode) edges.
        ("просто умри уже", &block),
        ("умрите все", &None),
        ("neck yourself", &block),
        ("necking it", &block),
        // Disguised: the normaliser's view matches.
        ("k.y.s", &block),
        ("k y s", &block),
        ("ky$", &block),
        // Whole words only; allow phrases never count.
        ("my skills are kysmet", &None),
        ("a new necklace and neckties", &None),
        ("nice necklace, neck pain though", &block),
        ("best online casinos here", &flag),
        ("get free followers", &flag),
        ("join t.me/deals now", &flag),
        ("see you at 5?", &None),
    ] {
        assert_eq!(&decided(&set, "chat", text), expected, "{text:?}");
    }
    assert_eq!(
        decided(&set, "plain", "kys"),
        None,
        "another policy, no rules"
    );
}

/// Links are found with or without a scheme and judged by domain (subdomains included);
/// density bounds catch shouting, flooding, emoji walls and zalgo; shadow rules are
/// reported and decide nothing.
#[test]
fn links_density_and_shadow_rules() {
    let set = set();
    let links = Some(("links".to_string(), RuleAction::Flag));
    let loud = Some(("shouting".to_string(), RuleAction::Flag));
    for (text, expected) in [
        ("look at https://evil.example/win", &links),
        ("look at www.a.scam.test today", &links),
        ("see evil.example.org instead", &None),
        ("a.test b.test c.test d.test", &links),
        ("https://docs.rs/regex is good", &None),
        ("WHY DOES NOBODY ANSWER ME", &loud),
        ("OK", &None),
        ("nooooooooooooooooo", &loud),
        ("😀😀😀😀😀😀😀😀😀😀😀", &loud),
        ("z\u{301}\u{302}\u{303}\u{304}\u{305}algo", &loud),
    ] {
        assert_eq!(&decided(&set, "chat", text), expected, "{text:?}");
    }
    let rules = set.select("t", "r", Some("chat")).rules.text_rules();
    let checked = rules.check(&message("buy now!", "buy now!", None), None);
    assert!(checked.decided.is_none(), "a shadow rule decides nothing");
    let shadow: Vec<&str> = checked.shadow.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(shadow, ["trial"]);
    let only_ours = Some(("only_ours".to_string(), RuleAction::Block));
    assert_eq!(decided(&set, "shop", "https://shop.example/item/1"), None);
    assert_eq!(decided(&set, "shop", "cheaper at other.example"), only_ours);
}

/// Among rules that match, the most severe prevails; among equals, one that decides over
/// one that lets the models run.
#[test]
fn a_deciding_rule_outranks_an_equal_one_that_runs_the_models() {
    let set = set();
    let prevailing = |text: &str| {
        let rules = set.select("t", "r", Some("order")).rules.text_rules();
        rules
            .check(&message(text, text, None), None)
            .decided
            .map(|r| (r.id.clone(), r.then))
    };
    assert_eq!(
        prevailing("alpha"),
        Some(("flag_and_decide".to_string(), Then::Decide))
    );
    assert_eq!(
        prevailing("beta"),
        Some(("flag_then_models".to_string(), Then::Models))
    );
    assert_eq!(
        prevailing("alpha gamma"),
        Some(("block_then_models".to_string(), Then::Models))
    );
}

/// The most severe matching rule decides: a greeting that taunts is blocked, a greeting
/// alone is allowed without the models.
#[test]
fn the_most_severe_rule_decides() {
    let set = set();
    assert_eq!(
        decided(&set, "chat", "good morning, kys"),
        Some(("taunts".to_string(), RuleAction::Block))
    );
    assert_eq!(
        decided(&set, "chat", "good morning all"),
        Some(("greetings".to_string(), RuleAction::Allow))
    );
}

/// Rules are part of the policy's version: adding one changes it; a policy without rules
/// keeps the version it had before rules existed.
#[test]
fn rules_change_the_version() {
    let with = set();
    let without = PolicySet::parse(
        "default = \"chat\"\n[policies.chat]\n[policies.plain]\n",
        &manifests(),
    )
    .expect("valid");
    let version = |s: &PolicySet, p: &str| s.select("t", "r", Some(p)).rules.version.clone();
    assert_ne!(version(&with, "chat"), version(&without, "chat"));
    assert_eq!(version(&with, "plain"), version(&without, "plain"));
}

/// What a rule may not be, each refused with where it is (so `offpath policy check` and a
/// reload refuse the file and keep the old one).
#[test]
fn bad_rules_are_refused() {
    let many: Vec<String> = (0..=MAX_KEYWORDS).map(|i| format!("\"w{i}\"")).collect();
    let long = "a".repeat(MAX_KEYWORD_CHARS + 1);
    let huge_regex = "\\\\w{1000}\\\\w{1000}\\\\w{1000}";
    let cases = [
        (
            "keywords = [\"kys\"]\naction = \"remove\"",
            "unknown variant",
        ),
        (
            "action = \"block\"",
            "none of keywords, regex, links, density, sender, campaign, account_younger_than_s",
        ),
        (
            "account_younger_than_s = 0\naction = \"flag\"",
            "account_younger_than_s: must be 1..=",
        ),
        (
            "sender = { per_s = 60 }\naction = \"block\"",
            "none of messages, repeats, strikes, links, mentions, first_link",
        ),
        (
            "sender = { messages = 5, per_s = 7200 }\naction = \"block\"",
            "per_s: 7200 is not within 1..=3600",
        ),
        (
            "campaign = { messages = 5, per_s = 3600 }\naction = \"block\"",
            "campaign.per_s: 3600 is not within 1..=600",
        ),
        (
            "campaign = { messages = 3, senders = 3, per_s = 600 }\naction = \"block\"",
            "campaign.senders: 3 must be below messages (3)",
        ),
        (
            "campaign = { messages = 300, per_s = 600 }\naction = \"block\"",
            "campaign.messages: must be 1..256",
        ),
        (
            "campaign = { messages = 5, per_s = 600, copies = 2 }\naction = \"block\"",
            "unknown field `copies`",
        ),
        (
            "sender = { messages = 64, per_s = 60 }\naction = \"block\"",
            "messages: must be below 64",
        ),
        (
            "sender = { strikes = 16, per_s = 60 }\naction = \"block\"",
            "strikes: must be below 16",
        ),
        (
            "sender = { messages = 5, per_s = 60, rooms = true }\naction = \"block\"",
            "unknown field",
        ),
        (
            &format!("keywords = [{}]\naction = \"flag\"", many.join(",")) as &str,
            "more than the 1000",
        ),
        (
            &format!("keywords = [\"{long}\"]\naction = \"flag\""),
            "more than 60",
        ),
        (
            "keywords = [\"***\"]\naction = \"flag\"",
            "no letter or digit",
        ),
        (
            &format!("regex = [\"{huge_regex}\"]\naction = \"flag\""),
            "exceeds size limit",
        ),
        (
            "regex = [\"(unclosed\"]\naction = \"flag\"",
            "unclosed group",
        ),
        (
            "keywords = [\"x\"]\naction = \"flag\"\ncategory = \"no spaces\"",
            ".category",
        ),
        (
            "keywords = [\"x\"]\naction = \"flag\"\nwhatever = 1",
            "unknown field",
        ),
        (
            "links = { deny = [\"not a domain\"] }\naction = \"flag\"",
            "is not a domain",
        ),
        ("links = {}\naction = \"flag\"", "none of deny, allow, max"),
        (
            "density = { max_caps_ratio = 1.5 }\naction = \"flag\"",
            "outside 0..1",
        ),
        ("density = {}\naction = \"flag\"", "no bound set"),
        (
            "keywords = [\"x\"]\naction = \"allow\"\nthen = \"models\"",
            "would never change a verdict",
        ),
    ];
    for (rule, problem) in cases {
        let file = format!("default = \"p\"\n[policies.p.rules.r1]\n{rule}\n");
        let problems = PolicySet::parse(&file, &manifests()).expect_err(rule);
        assert!(
            problems.iter().any(|p| p.contains(problem)),
            "{rule}: {problems:?}"
        );
    }
}

/// A message that mentions nobody, as the rules read it.
fn message<'a>(text: &'a str, lowered: &'a str, normalised: Option<&'a str>) -> Message<'a> {
    Message {
        text,
        lowered,
        normalised,
        mentions: 0,
        account_age_ms: None,
    }
}
