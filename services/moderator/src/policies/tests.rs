use std::collections::BTreeMap;
use std::path::PathBuf;

use offpath_classifier::{Decision, Manifest};

use super::*;

/// The checkout's two models: minilm-insult (`insult`, a signal, `harassment` and the other
/// harm categories) and profanity (`profanity`, a signal).
pub(super) fn manifests() -> Vec<Manifest> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models");
    ["minilm-insult", "profanity"]
        .iter()
        .map(|m| Manifest::load(&root.join(m)).expect("manifest"))
        .collect()
}

const FILE: &str = r#"
default = "standard"

[policies.standard]

[policies.strict]
models = ["minilm-insult"]
labels.harassment = { flag = 0.2, block = 0.5 }

[policies.review]
labels.harassment = { action = "flag" }
labels.profanity = { action = "ignore" }

[policies.kids]
labels.profanity = { action = "block" }
labels.threat = { action = "block" }

[policies.words]
labels.insult = { flag = 0.3, block = 0.9 }

[tenants.acme]
policy = "strict"
rooms = { lobby = "review" }

[tenants.globex.rooms]
kids = "strict"
"#;

/// Scores of the labels these tests act on; every other label scores 0.
fn scores(harassment: f32, profanity: f32) -> BTreeMap<String, f32> {
    labelled(&[("harassment", harassment), ("profanity", profanity)])
}

fn labelled(pairs: &[(&str, f32)]) -> BTreeMap<String, f32> {
    let mut scores: BTreeMap<String, f32> = manifests()
        .iter()
        .flat_map(|m| &m.labels)
        .map(|l| (l.name.clone(), 0.0))
        .collect();
    for (name, score) in pairs {
        scores.insert(name.to_string(), *score);
    }
    scores
}

/// The manifest label called `name`.
fn label(name: &str) -> offpath_classifier::Label {
    manifests()
        .iter()
        .flat_map(|m| &m.labels)
        .find(|l| l.name == name)
        .cloned()
        .unwrap_or_else(|| panic!("no label {name}"))
}

fn set() -> PolicySet {
    PolicySet::parse(FILE, &manifests()).expect("valid file")
}

/// Selection, most specific first: the request's field, the tenant's room, the tenant,
/// the default; an unknown requested policy falls back to what the rest selects.
#[test]
fn selection_by_field_room_tenant_and_default() {
    let set = set();
    let cases = [
        // tenant, room, requested, expected policy, fallback
        ("acme", "lobby", None, "review", None),
        ("acme", "other", None, "strict", None),
        ("acme", "lobby", Some("standard"), "standard", None),
        ("globex", "kids", None, "strict", None),
        ("globex", "lobby", None, "standard", None),
        ("initech", "kids", None, "standard", None),
        ("initech", "x", Some("review"), "review", None),
        (
            "acme",
            "lobby",
            Some("nonexistent"),
            "review",
            Some(Fallback::UnknownPolicy),
        ),
        (
            "initech",
            "x",
            Some("nonexistent"),
            "standard",
            Some(Fallback::UnknownPolicy),
        ),
    ];
    for (tenant, room, requested, expected, fallback) in cases {
        let selection = set.select(tenant, room, requested);
        assert_eq!(
            (selection.rules.name.as_str(), selection.fallback),
            (expected, fallback),
            "{tenant}/{room}/{requested:?}"
        );
    }
}

/// A tenant with `allowed` may name only those policies: another is refused (counted as
/// `not_allowed`) and the tenant's own rules decide.
#[test]
fn a_tenant_names_only_what_it_is_allowed() {
    let text = format!("{FILE}\n[tenants.initech]\npolicy = \"strict\"\nallowed = [\"strict\"]\n");
    let set = PolicySet::parse(&text, &manifests()).expect("valid");
    let pick = |requested| {
        let s = set.select("initech", "lobby", Some(requested));
        (s.rules.name.as_str(), s.fallback)
    };
    assert_eq!(pick("strict"), ("strict", None));
    assert_eq!(pick("review"), ("strict", Some(Fallback::NotAllowed)));
    assert_eq!(pick("nope"), ("strict", Some(Fallback::UnknownPolicy)));
    let bad = format!("{FILE}\n[tenants.initech]\nallowed = [\"gone\"]\n");
    let problems = PolicySet::parse(&bad, &manifests())
        .expect_err("invalid")
        .join("\n");
    assert!(
        problems.contains("tenants.initech.allowed: no policy named \"gone\""),
        "{problems}"
    );
}

/// The order models are loaded in changes no version.
#[test]
fn versions_do_not_depend_on_model_order() {
    let forward = PolicySet::builtin(&manifests());
    let mut reversed_manifests = manifests();
    reversed_manifests.reverse();
    let reversed = PolicySet::builtin(&reversed_manifests);
    assert_eq!(
        forward.policies().next().map(|p| &p.version),
        reversed.policies().next().map(|p| &p.version)
    );
}

/// Thresholds and actions: a file's thresholds override the manifest's, `flag` never
/// blocks, `ignore` never acts, a signal label (profanity, insult) acts only where a policy
/// opts in (an action, or a threshold of its own), a flag-only category (threat) never
/// blocks unless a policy says so, the label that decided is named, and a policy keeps only
/// its models' labels.
#[test]
fn thresholds_and_actions_decide() {
    let set = set();
    let harassment = label("harassment");
    let profanity = label("profanity");
    let insult = label("insult");
    let threat = label("threat");
    assert!(insult.signal && profanity.signal && threat.flag_only);
    let decide = |policy: &str, harassment: f32, profanity: f32| {
        set.policies[policy].decide(&scores(harassment, profanity))
    };
    // standard = the manifests' thresholds.
    let blocked = decide("standard", harassment.block, 0.0);
    assert_eq!(blocked.decision, Decision::Block);
    assert_eq!(blocked.decided_by.as_deref(), Some("harassment"));
    assert_eq!(
        decide("standard", harassment.flag, 0.0).decision,
        Decision::Flag
    );
    // Profanity and insult are signals: scored, not acted on, unless a policy opts in.
    let sworn = decide("standard", 0.0, profanity.block);
    assert_eq!((sworn.decision, sworn.decided_by), (Decision::Allow, None));
    assert_eq!(sworn.scores["profanity"], profanity.block);
    let worded =
        |policy: &str, score: f32| set.policies[policy].decide(&labelled(&[("insult", score)]));
    assert_eq!(worded("standard", 1.0).decision, Decision::Allow);
    // A threshold set on a signal opts in (a v3 policy file's `labels.insult` keeps acting).
    assert_eq!(worded("words", 0.3).decision, Decision::Flag);
    assert_eq!(worded("words", 0.9).decision, Decision::Block);
    assert_eq!(
        decide("kids", 0.0, profanity.block).decision,
        Decision::Block
    );
    assert_eq!(decide("kids", 0.0, profanity.flag).decision, Decision::Flag);
    // A flag-only category flags at either threshold unless a policy lets it block.
    let threatened = |policy: &str| set.policies[policy].decide(&labelled(&[("threat", 1.0)]));
    assert_eq!(threatened("standard").decision, Decision::Flag);
    assert_eq!(threatened("standard").decided_by.as_deref(), Some("threat"));
    assert_eq!(threatened("kids").decision, Decision::Block);
    assert!(threat.block <= 1.0);
    // strict: minilm-insult only, lower harassment thresholds; profanity is not its label.
    let strict = decide("strict", 0.5, 1.0);
    assert_eq!(strict.decision, Decision::Block);
    assert!(!strict.scores.contains_key("profanity"));
    assert_eq!(decide("strict", 0.2, 1.0).decision, Decision::Flag);
    assert_eq!(decide("strict", 0.19, 1.0).decision, Decision::Allow);
    // review: harassment above block only flags; profanity is reported, never acted on.
    let review = decide("review", 1.0, 1.0);
    assert_eq!(review.decision, Decision::Flag);
    let every: usize = manifests().iter().map(|m| m.labels.len()).sum();
    assert_eq!(review.scores.len(), every);
    assert_eq!(decide("review", 0.0, 1.0).decision, Decision::Allow);
}

/// Versions are the same for the same rules and models, and differ when a threshold
/// changes; the built-in policy applies the manifests' thresholds to every label.
#[test]
fn versions_follow_the_rules() {
    let a = set();
    let b = set();
    assert_eq!(a.policies["strict"].version, b.policies["strict"].version);
    assert_eq!(a.policies["strict"].version.len(), 12);
    let changed =
        PolicySet::parse(&FILE.replace("block = 0.5", "block = 0.6"), &manifests()).expect("valid");
    assert_ne!(
        a.policies["strict"].version,
        changed.policies["strict"].version
    );
    assert_eq!(
        a.policies["review"].version,
        changed.policies["review"].version
    );

    let builtin = PolicySet::builtin(&manifests());
    assert!(!builtin.from_file());
    let selection = builtin.select("any", "room", Some("strict"));
    assert_eq!(selection.rules.name, BUILTIN_POLICY);
    assert_eq!(selection.fallback, Some(Fallback::UnknownPolicy));
    assert_eq!(
        selection.rules.decide(&scores(1.0, 0.0)).decision,
        Decision::Block
    );
    assert_eq!(
        selection.rules.decide(&scores(0.0, 1.0)).decision,
        Decision::Allow,
        "profanity alone is a signal in the built-in policy too"
    );
    assert_eq!(
        a.policies["standard"].labels,
        builtin.policies[BUILTIN_POLICY].labels
    );
}

/// Every problem of a bad file is named with where it is, all of them at once.
#[test]
fn bad_files_name_every_problem() {
    let cases: &[(&str, &[&str])] = &[
        (
            r#"
default = "missing"
[policies.a]
models = ["minilm-insult", "gpt-9"]
labels.insult = { flag = 0.9, block = 0.5 }
labels.toxicity = { flag = 0.1 }
[policies.b]
labels.profanity = { block = 1.5 }
labels.insult = { flag = nan }
[policies."bad name"]
[tenants.acme]
policy = "nope"
rooms = { lobby = "gone", "a.b" = "a" }
"#,
            &[
                "default: no policy named \"missing\"",
                "policies.a.models: unknown model \"gpt-9\" (loaded: minilm-insult, profanity)",
                "policies.a.labels.insult: flag 0.9 is above block 0.5",
                "policies.a.labels.toxicity: unknown label (this policy's models score: insult, harassment, threat,",
                "policies.b.labels.profanity.block: 1.5 is outside 0..=1",
                "policies.b.labels.insult.flag: NaN is outside 0..=1",
                "policies.bad name: a policy name must be",
                "tenants.acme.policy: no policy named \"nope\"",
                "tenants.acme.rooms.lobby: no policy named \"gone\"",
                "tenants.acme.rooms.a.b: a room must be",
            ],
        ),
        ("default = \"a\"\n", &["no [policies.<name>] defined"]),
        (
            "default = \"a\"\n[policies.a]\nthreshold = 3\n",
            &["unknown field `threshold`"],
        ),
        (
            "default = \"a\"\n[policies.a]\nlabels.insult = { action = \"delete\" }\n",
            &["unknown variant `delete`"],
        ),
        ("default = [", &["TOML parse error"]),
        (
            "default = \"a\"\n[policies.a]\nmodels = []\n",
            &["policies.a.models: empty"],
        ),
        (
            "default = \"a\"\n[policies.a]\n[models]\nprofanity = \"9\"\ngpt-9 = \"1\"\n",
            &[
                "models.profanity: pinned to version \"9\", but the model loaded is version \"1.9.1\"",
                "models.gpt-9: no such model is loaded (loaded: minilm-insult, profanity)",
            ],
        ),
    ];
    for (text, expected) in cases {
        let problems = PolicySet::parse(text, &manifests())
            .expect_err("invalid")
            .join("\n");
        for line in *expected {
            assert!(problems.contains(line), "{line:?} not in:\n{problems}");
        }
        assert_eq!(
            problems.lines().count(),
            problems.split('\n').count(),
            "one line each"
        );
    }
}

/// A missing, oversized or invalid file is a typed error naming the file.
#[test]
fn load_names_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.toml");
    let err = PolicySet::load(&missing, &manifests()).expect_err("missing");
    assert!(matches!(err, PolicyFileError::Unreadable { .. }), "{err}");
    let big = dir.path().join("big.toml");
    std::fs::write(&big, "#".repeat(2 * 1024 * 1024)).expect("write");
    let err = PolicySet::load(&big, &manifests()).expect_err("oversized");
    assert!(err.to_string().contains("more than"), "{err}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "default = \"x\"\n[policies.y]\n").expect("write");
    let err = PolicySet::load(&bad, &manifests()).expect_err("invalid");
    assert!(
        err.to_string()
            .contains("bad.toml: default: no policy named \"x\""),
        "{err}"
    );
}

/// `[models]` pins the versions a file's rules are for: read leniently (for deciding what to
/// load), and a file pinning the loaded versions resolves.
#[test]
fn files_pin_model_versions() {
    let text = "default = \"a\"\n[policies.a]\n[models]\nprofanity = \"1.9.1\"\n";
    assert_eq!(
        PolicySet::pins(text),
        BTreeMap::from([("profanity".to_string(), "1.9.1".to_string())])
    );
    assert!(PolicySet::parse(text, &manifests()).is_ok());
    assert!(PolicySet::pins(FILE).is_empty());
    assert!(PolicySet::pins("default = [").is_empty());
}

/// `review_blocked` is part of a policy's rules: it changes the version when set, and only
/// then (versions of files without it stay what they were).
#[test]
fn review_blocked_is_part_of_the_rules() {
    let plain = "default = \"a\"\n[policies.a]\n";
    let reviewed = "default = \"a\"\n[policies.a]\nreview_blocked = true\n";
    let explicit = "default = \"a\"\n[policies.a]\nreview_blocked = false\n";
    let rules = |text: &str| {
        let set = PolicySet::parse(text, &manifests()).expect("valid");
        let rules = set.select("t", "r", None).rules.clone();
        (rules.version.clone(), rules.reviews_blocked())
    };
    let (plain_version, plain_reviews) = rules(plain);
    let (reviewed_version, reviewed_reviews) = rules(reviewed);
    assert!(!plain_reviews && reviewed_reviews);
    assert_ne!(plain_version, reviewed_version);
    assert_eq!(rules(explicit), (plain_version, false));
}
