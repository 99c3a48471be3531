//! Text rules: what a keyword, a wildcard, an allow phrase and a regex match, which rule
//! decides, and what a policy file may not hold.

use std::path::PathBuf;

use offpath_classifier::{Manifest, Normalizer};

use super::super::PolicySet;
use super::*;

fn manifests() -> Vec<Manifest> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models");
    ["minilm-insult", "profanity"]
        .iter()
        .map(|m| Manifest::load(&root.join(m)).expect("manifest"))
        .collect()
}

const FILE: &str = r#"
default = "chat"

[policies.chat.rules.taunts]
keywords = ["kys", "kill yourself", "neck*"]
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
        .check(text, &text.to_lowercase(), normalised.as_deref())
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
        ("action = \"block\"", "neither keywords nor regex"),
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
