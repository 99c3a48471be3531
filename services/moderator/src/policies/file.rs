//! The policy file: TOML parsed strictly (unknown keys are errors), then resolved against
//! the loaded models' manifests, collecting every problem with where it is.
//!
//! ```toml
//! default = "standard"                 # the policy when nothing more specific applies
//!
//! [policies.standard]                  # every label of every loaded model, manifest thresholds
//!
//! [policies.strict]
//! models = ["minilm-insult"]           # only these models' labels count (default: all)
//! labels.harassment = { flag = 0.2, block = 0.5 }
//!
//! [policies.review]
//! labels.harassment = { action = "flag" }  # never blocks; "ignore": scored, never acted on
//! review_blocked = true                # blocked messages go to the review queue too
//!
//! [tenants.acme]
//! policy = "strict"                    # the tenant's policy
//! rooms = { lobby = "standard" }       # a room's policy (exact names)
//! allowed = ["strict", "standard"]     # what its requests may name (default: any)
//!
//! [policies.chat.rules.taunts]          # keyword and regex rules before the models
//! keywords = ["kys", "kill yourself"]  # (see `text_rules`)
//! action = "block"
//!
//! [models]                             # optional: the model versions these rules are for
//! minilm-insult = "2"                  # (pushed to the bucket, a moderator with other
//!                                      # versions loads these from its model directories)
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use offpath_classifier::Manifest;
use offpath_protocol::subject::is_valid_token;
use serde::Deserialize;

use super::{LabelAction, PolicySet, Rules, TenantRules, manifest_rules};

/// Largest policy file read, in bytes: a file this size holds thousands of rules; a bigger
/// one is a mistake (a wrong path, a log file).
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Why a policy file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyFileError {
    /// The file could not be read.
    #[error("cannot read policy file {path}: {detail}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// The file was read and is wrong: every problem found, each with where it is.
    #[error("policy file {path}: {}", problems.join("; "))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, one entry a problem.
        problems: Vec<String>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileText {
    default: String,
    /// Model name → the version the rules are for.
    #[serde(default)]
    models: BTreeMap<String, String>,
    #[serde(default)]
    policies: BTreeMap<String, PolicyText>,
    #[serde(default)]
    tenants: BTreeMap<String, TenantText>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyText {
    models: Option<Vec<String>>,
    /// Blocked messages go to the review queue too (flagged ones always do).
    #[serde(default)]
    review_blocked: bool,
    #[serde(default)]
    labels: BTreeMap<String, LabelText>,
    /// Keyword and regex rules checked before the models ([`super::text_rules`]).
    #[serde(default)]
    rules: BTreeMap<String, super::text_rules::RuleText>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelText {
    flag: Option<f32>,
    block: Option<f32>,
    action: Option<LabelAction>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantText {
    policy: Option<String>,
    #[serde(default)]
    rooms: BTreeMap<String, String>,
    allowed: Option<Vec<String>>,
}

/// Reads a policy file's text, refusing one larger than a policy file may be.
pub(super) fn read(path: &Path) -> Result<String, PolicyFileError> {
    let unreadable = |detail: String| PolicyFileError::Unreadable {
        path: path.to_path_buf(),
        detail,
    };
    let size = std::fs::metadata(path)
        .map_err(|e| unreadable(e.to_string()))?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(unreadable(format!(
            "{size} bytes, more than the {MAX_FILE_BYTES} a policy file may have"
        )));
    }
    std::fs::read_to_string(path).map_err(|e| unreadable(e.to_string()))
}

pub(super) fn load(path: &Path, manifests: &[Manifest]) -> Result<PolicySet, PolicyFileError> {
    let text = read(path)?;
    parse(&text, manifests).map_err(|problems| PolicyFileError::Invalid {
        path: path.to_path_buf(),
        problems,
    })
}

pub(super) fn parse(text: &str, manifests: &[Manifest]) -> Result<PolicySet, Vec<String>> {
    let file: FileText = toml::from_str(text).map_err(|e| vec![one_line(&e.to_string())])?;
    let mut problems = Vec::new();
    if file.policies.is_empty() {
        problems.push("no [policies.<name>] defined".to_string());
    }
    check_pins(&file.models, manifests, &mut problems);
    let mut policies = BTreeMap::new();
    for (name, policy) in &file.policies {
        if !is_valid_token(name) {
            problems.push(format!("policies.{name}: {}", token_rule("a policy name")));
        }
        if let Some(rules) = resolve(name, policy, manifests, &mut problems) {
            policies.insert(name.clone(), rules);
        }
    }
    if !file.policies.contains_key(&file.default) {
        problems.push(format!("default: no policy named {:?}", file.default));
    }
    let tenants = file
        .tenants
        .into_iter()
        .map(|(tenant, text)| {
            let rules = tenant_rules(&tenant, text, &file.policies, &mut problems);
            (tenant, rules)
        })
        .collect();
    match policies.get(&file.default) {
        Some(default) if problems.is_empty() => Ok(PolicySet {
            default: default.clone(),
            policies,
            tenants,
            from_file: true,
        }),
        _ => Err(problems),
    }
}

/// Each pinned model is loaded, at the pinned version.
fn check_pins(pins: &BTreeMap<String, String>, manifests: &[Manifest], problems: &mut Vec<String>) {
    for (name, version) in pins {
        match manifests.iter().find(|m| &m.name == name) {
            Some(m) if &m.version == version => {}
            Some(m) => problems.push(format!(
                "models.{name}: pinned to version {version:?}, but the model loaded is version {:?}",
                m.version
            )),
            None => {
                let loaded: Vec<&str> = manifests.iter().map(|m| m.name.as_str()).collect();
                problems.push(format!(
                    "models.{name}: no such model is loaded (loaded: {})",
                    loaded.join(", ")
                ));
            }
        }
    }
}

/// The model versions a policy file's text pins (`[models]`), read leniently: empty when
/// the text is not TOML or pins nothing (resolving it says what is wrong).
pub(super) fn pins(text: &str) -> BTreeMap<String, String> {
    let Ok(table) = text.parse::<toml::Table>() else {
        return BTreeMap::new();
    };
    let Some(toml::Value::Table(models)) = table.get("models") else {
        return BTreeMap::new();
    };
    models
        .iter()
        .filter_map(|(name, version)| Some((name.clone(), version.as_str()?.to_string())))
        .collect()
}

/// A tenant's rules, each policy it names checked against `defined`.
fn tenant_rules(
    tenant: &str,
    text: TenantText,
    defined: &BTreeMap<String, PolicyText>,
    problems: &mut Vec<String>,
) -> TenantRules {
    let at = format!("tenants.{tenant}");
    if !is_valid_token(tenant) {
        problems.push(format!("{at}: {}", token_rule("a tenant")));
    }
    let mut named: Vec<(String, &String)> = Vec::new();
    named.extend(text.policy.iter().map(|p| (format!("{at}.policy"), p)));
    for (room, policy) in &text.rooms {
        if !is_valid_token(room) {
            problems.push(format!("{at}.rooms.{room}: {}", token_rule("a room")));
        }
        named.push((format!("{at}.rooms.{room}"), policy));
    }
    for policy in text.allowed.iter().flatten() {
        named.push((format!("{at}.allowed"), policy));
    }
    for (key, policy) in named {
        if !defined.contains_key(policy) {
            problems.push(format!("{key}: no policy named {policy:?}"));
        }
    }
    TenantRules {
        policy: text.policy,
        rooms: text.rooms,
        allowed: text.allowed,
    }
}

/// One policy's rules: its models' labels at the manifests' thresholds, overridden by the
/// file's; `None` when a problem was recorded.
fn resolve(
    name: &str,
    policy: &PolicyText,
    manifests: &[Manifest],
    problems: &mut Vec<String>,
) -> Option<Rules> {
    let at = format!("policies.{name}");
    let before = problems.len();
    let models = chosen_models(&at, policy.models.as_deref(), manifests, problems);
    let mut labels = manifest_rules(&models);
    for (label, text) in &policy.labels {
        let key = format!("{at}.labels.{label}");
        let Some(rule) = labels.iter_mut().find(|r| &r.name == label) else {
            let known: Vec<&str> = labels.iter().map(|r| r.name.as_str()).collect();
            problems.push(format!(
                "{key}: unknown label (this policy's models score: {})",
                known.join(", ")
            ));
            continue;
        };
        for (which, value) in [("flag", text.flag), ("block", text.block)] {
            if let Some(value) = value
                && !(0.0..=1.0).contains(&value)
            {
                problems.push(format!("{key}.{which}: {value} is outside 0..=1"));
            }
        }
        rule.flag = text.flag.unwrap_or(rule.flag);
        rule.block = text.block.unwrap_or(rule.block);
        // A threshold set on a signal is an opt-in (why else set it): it acts, as every
        // label did before signals (`labels.insult = { flag = 0.25 }` of a v3 policy file
        // keeps acting on v4's signal `insult`).
        let opted_in = text.flag.is_some() || text.block.is_some();
        let default = if opted_in && rule.action == LabelAction::Ignore {
            LabelAction::Block
        } else {
            rule.action
        };
        rule.action = text.action.unwrap_or(default);
        if rule.flag > rule.block {
            problems.push(format!(
                "{key}: flag {} is above block {} (with the manifest's where not set)",
                rule.flag, rule.block
            ));
        }
    }
    let text_rules = super::text_rules::compile(&at, &policy.rules, problems);
    (problems.len() == before)
        .then(|| Rules::new(name, &models, labels, policy.review_blocked, text_rules))
}

/// The manifests of the models a policy names (every model when it names none).
fn chosen_models<'a>(
    at: &str,
    names: Option<&[String]>,
    manifests: &'a [Manifest],
    problems: &mut Vec<String>,
) -> Vec<&'a Manifest> {
    let Some(names) = names else {
        return manifests.iter().collect();
    };
    if names.is_empty() {
        problems.push(format!("{at}.models: empty (leave it out for every model)"));
    }
    let mut seen = BTreeSet::new();
    let mut chosen = Vec::new();
    for model in names {
        if !seen.insert(model) {
            problems.push(format!("{at}.models: {model:?} listed twice"));
            continue;
        }
        match manifests.iter().find(|m| &m.name == model) {
            Some(manifest) => chosen.push(manifest),
            None => {
                let loaded: Vec<&str> = manifests.iter().map(|m| m.name.as_str()).collect();
                problems.push(format!(
                    "{at}.models: unknown model {model:?} (loaded: {})",
                    loaded.join(", ")
                ));
            }
        }
    }
    chosen
}

fn token_rule(what: &str) -> String {
    format!("{what} must be 1-64 characters of A-Z a-z 0-9 _ : @ = + ~ -")
}

/// toml's errors quote the line and point at it over several lines: keep them on one.
fn one_line(text: &str) -> String {
    text.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '|' || c == '^' || c == ' '))
        .collect::<Vec<_>>()
        .join(" ")
}
