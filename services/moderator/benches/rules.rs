//! The rules stage alone (`cargo bench -p offpath-moderator --bench rules`): what the
//! moderator's screen does per request of a policy with text rules (lower-case, normalise,
//! check every rule), over the everyday-chat development set's 240 lines, for a policy of
//! realistic size (`realistic`: 5 rules, about 60 keywords, a link rule, a density rule,
//! a regex) and one at the file's limits (`largest`: 64 rules of 1,000 keywords and 1,000
//! allow phrases each, the worst a policy file may ask for), and the realistic policy with
//! five sender rules (`with_senders`: flood, repeats, strikes, first link, mentions) read
//! against the fullest history a moderator keeps of a sender (64 messages, 16 strikes),
//! copied per message as the stage copies it out of the book, plus a campaign rule over 32
//! near-duplicates, each message's MinHash signature computed as the stage computes it (the
//! campaign index's look-up is not in it). Messages per second of one
//! thread is messages per core-second.
//!
//! Run by the test suite (no `--bench` argument: criterion's test mode runs each routine
//! once), it checks that each case runs, not how fast.

use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use offpath_classifier::{Manifest, Normalizer};
use offpath_moderator::PolicySet;
use offpath_moderator::policies::text_rules::Message;
use offpath_moderator::policies::text_rules::campaign::{Near, Signature};
use offpath_moderator::policies::text_rules::sender::{Entry, Here, Recent, SenderView};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn manifests() -> Vec<Manifest> {
    ["minilm-insult", "profanity"]
        .iter()
        .map(|m| Manifest::load(&root().join("models").join(m)).expect("manifest"))
        .collect()
}

const REALISTIC: &str = r#"
default = "chat"

[policies.chat.rules.taunts]
keywords = ["kys", "kill yourself", "neck yourself", "go die", "unalive yourself",
  "nobody would miss you", "drink bleach", "hang yourself"]
action = "block"
category = "harassment"

[policies.chat.rules.slurs]
keywords = ["sl*r1", "sl*r2", "slur3*", "*slur4", "slur5", "slur6", "slur7", "slur8",
  "slur9", "slur10", "slur11", "slur12", "slur13", "slur14", "slur15", "slur16", "slur17",
  "slur18", "slur19", "slur20", "slur21", "slur22", "slur23", "slur24", "slur25"]
allow = ["slur1 reclaimed"]
action = "block"
category = "hate"

[policies.chat.rules.promo]
keywords = ["*casino*", "free followers", "free nitro", "crypto giveaway", "double your",
  "onlyfans", "dm me for", "cheap followers", "investment opportunity", "click here",
  "limited offer", "work from home", "earn $*", "promo code", "100% free", "act now",
  "risk free", "no credit check", "make money fast", "get rich", "buy followers",
  "forex signals", "pump and dump", "airdrop", "whatsapp me"]
regex = ['(?i)\b[\w.+-]+@[\w-]+\.(?:com|net|org)\b']
action = "flag"
category = "spam"

[policies.chat.rules.links]
links = { deny = ["bit.ly", "tinyurl.com", "grabify.link", "iplogger.org"], max = 5 }
action = "flag"
category = "spam"

[policies.chat.rules.density]
density = { max_chars = 2000, max_caps_ratio = 0.8, max_repeated = 15, max_emoji = 20, max_combining = 4 }
action = "flag"
"#;

/// A policy at the file's limits: 64 rules of 1,000 wildcard keywords and 1,000 allow
/// phrases.
fn largest() -> String {
    let keywords: Vec<String> = (0..1000).map(|i| format!("\"w{i}xq*zz{i}\"")).collect();
    let allow: Vec<String> = (0..1000).map(|i| format!("\"a{i}q yy{i}\"")).collect();
    let mut file = String::from("default = \"p\"\n");
    for r in 0..64 {
        file.push_str(&format!(
            "[policies.p.rules.r{r}]\nkeywords = [{}]\nallow = [{}]\naction = \"flag\"\n",
            keywords.join(","),
            allow.join(",")
        ));
    }
    file
}

fn lines() -> Vec<String> {
    let set = std::fs::read_to_string(root().join("models/eval/everyday-chat-2.tsv"))
        .expect("models/eval/everyday-chat-2.tsv");
    let lines: Vec<String> = set
        .lines()
        .skip(1)
        .filter_map(|l| l.splitn(3, '\t').nth(2).map(String::from))
        .collect();
    // In the suite's test mode, a few lines are enough to show the case runs.
    if std::env::args().any(|a| a == "--bench") {
        lines
    } else {
        lines.into_iter().take(8).collect()
    }
}

fn rules(c: &mut Criterion) {
    let manifests = manifests();
    let lines = lines();
    let normalizer = Normalizer::new();
    let mut group = c.benchmark_group("rules");
    group.throughput(Throughput::Elements(lines.len() as u64));
    let bench = std::env::args().any(|a| a == "--bench");
    let with_senders = format!("{REALISTIC}{SENDER_RULES}");
    let cases: Vec<(&str, String)> = if bench {
        vec![
            ("realistic", REALISTIC.to_string()),
            ("largest", largest()),
            ("with_senders", with_senders),
        ]
    } else {
        vec![
            ("realistic", REALISTIC.to_string()),
            ("with_senders", with_senders),
        ]
    };
    let history = fullest_history();
    // 32 near-duplicates from 16 senders within the last 32 s.
    let near: Vec<(u64, u64)> = (0..32).map(|k| (10_000_000 - k * 1000, k % 16)).collect();
    for (name, file) in cases {
        let set = PolicySet::parse(&file, &manifests).expect("a valid policy file");
        let rules = set.select("acme", "lobby", None).rules.text_rules();
        let senders = rules.count_senders();
        // The stage copies the sender's history out of the book for each message.
        let view = |i: usize, similar: &str| {
            senders.then(|| SenderView {
                near: Near {
                    campaign: Signature::of(similar).map(|s| format!("{:016x}", s.0[0])),
                    members: near.clone(),
                },
                recent: history.clone(),
                here: Here {
                    at_ms: 10_000_000 + i as u64,
                    room: 1,
                    text: i as u64,
                    links: 0,
                },
            })
        };
        let hits = lines
            .iter()
            .enumerate()
            .filter(|(i, l)| {
                let n = normalizer.second_view(l);
                let lowered = l.to_lowercase();
                let sender = view(*i, n.as_deref().unwrap_or(&lowered));
                rules
                    .check(
                        &message(l, &l.to_lowercase(), n.as_deref()),
                        sender.as_ref(),
                    )
                    .decided
                    .is_some()
            })
            .count();
        eprintln!(
            "rules/{name}: {hits} of {} lines matched a rule",
            lines.len()
        );
        group.bench_function(name, |b| {
            b.iter(|| {
                for (i, line) in lines.iter().enumerate() {
                    let lowered = line.to_lowercase();
                    let normalised = normalizer.second_view(line);
                    let sender = view(i, normalised.as_deref().unwrap_or(&lowered));
                    let message = message(line, &lowered, normalised.as_deref());
                    std::hint::black_box(rules.check(&message, sender.as_ref()));
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, rules);
criterion_main!(benches);

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

/// Five sender rules and a campaign rule, bounds a flood passes and a person chatting does not (appended to
/// [`REALISTIC`]'s policy).
const SENDER_RULES: &str = r#"
[policies.chat.rules.flood]
sender = { messages = 20, per_s = 30 }
action = "block"

[policies.chat.rules.copy_paste]
sender = { repeats = 4, per_s = 600, room = true }
action = "flag"

[policies.chat.rules.strikes]
sender = { strikes = 2, per_s = 600 }
action = "block"

[policies.chat.rules.link_drop]
sender = { first_link = true, per_s = 3600 }
action = "flag"

[policies.chat.rules.mention_flood]
sender = { mentions = 20, per_s = 60 }
action = "block"

[policies.chat.rules.campaign]
campaign = { messages = 50, senders = 5, per_s = 600 }
action = "block"
"#;

/// The most a moderator keeps of one sender: 64 messages a minute apart (two rooms,
/// distinct texts) and 16 strikes, all within the hour before the lines' times.
fn fullest_history() -> Recent {
    let entry = |i: u64| Entry {
        at_ms: 10_000_000 - 3_600_000 + (i + 1) * 55_000,
        room: i % 2,
        text: 1_000 + i,
        id: i,
        links: 0,
        mentions: 0,
    };
    Recent {
        messages: (0..64).map(entry).collect(),
        strikes: (0..16).map(entry).collect(),
    }
}
