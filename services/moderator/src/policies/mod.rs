//! Named moderation policies: which models' labels count for a message, at which
//! thresholds, with which action, chosen per tenant, room or request.
//!
//! A policy file (TOML, `--policies`, checked by `offpath policy check`) is parsed
//! ([`file`]) and resolved against the manifests of the loaded models into a [`PolicySet`]:
//! every policy lists every label of its models with a threshold and an action. Without a
//! file the moderator runs one built-in policy, `default`, with the manifests' thresholds
//! (what it did before policies existed). Inference scores every label of every loaded
//! model; a policy only decides on them, so the spam-wave cache holds scores, never
//! decisions, and serves every policy.
//!
//! Selection, most specific first: the request's `policy` field when the file defines it;
//! the tenant's room rule; the tenant's policy; the file's `default`. A request naming a
//! policy the file does not define is judged by the policy selection would give without
//! the field, and counted (`offpath_moderator_policy_fallbacks_total{reason="unknown_policy"}`):
//! a moderator with an older file than its transports still moderates everything.
//!
//! [`LivePolicies`] holds the set in force; SIGHUP reads the file again ([`live`]), and the
//! fleet's policy bucket is watched ([`bucket`]).

mod bucket;
mod file;
mod live;
#[cfg(test)]
mod tests;
pub mod text_rules;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use offpath_classifier::policy::Decider;
use offpath_classifier::{Assessment, Decision, Manifest};
use sha2::Digest;

pub(crate) use bucket::{Bucket, Change};
pub use file::PolicyFileError;
pub(crate) use live::{LivePolicies, Source};

/// Name of the policy a moderator without a policy file applies.
pub const BUILTIN_POLICY: &str = "default";

/// What a label does to a message once its score reaches a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelAction {
    /// `flag` at the flag threshold, `block` at the block threshold (the default).
    Block,
    /// Never blocks: a score at either threshold flags (a human looks instead).
    Flag,
    /// Scored and reported, never acted on.
    Ignore,
}

impl LabelAction {
    fn as_str(self) -> &'static str {
        match self {
            LabelAction::Block => "block",
            LabelAction::Flag => "flag",
            LabelAction::Ignore => "ignore",
        }
    }
}

/// One label of a policy, resolved: thresholds from the file or the model's manifest.
#[derive(Debug, Clone, PartialEq)]
struct LabelRule {
    name: String,
    flag: f32,
    block: f32,
    action: LabelAction,
}

impl LabelRule {
    fn decision(&self, score: f32) -> Decision {
        let reached = if score >= self.block {
            Decision::Block
        } else if score >= self.flag {
            Decision::Flag
        } else {
            Decision::Allow
        };
        match self.action {
            LabelAction::Block => reached,
            LabelAction::Flag => reached.min(Decision::Flag),
            LabelAction::Ignore => Decision::Allow,
        }
    }
}

/// One named policy, resolved against the loaded models.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// The policy's name (a subject-safe token).
    pub name: String,
    /// First 12 hex digits of the SHA-256 of the resolved rules and the versions of the
    /// models they read: changes whenever a threshold, an action or a model changes, and is
    /// the same on every moderator with the same file and models.
    pub version: String,
    labels: Vec<LabelRule>,
    /// Whether blocked messages go to the review queue too (flagged ones always do).
    review_blocked: bool,
    /// Keyword and regex rules checked before the models.
    text_rules: Arc<text_rules::TextRules>,
}

impl Rules {
    fn new(
        name: &str,
        models: &[&Manifest],
        mut labels: Vec<LabelRule>,
        review_blocked: bool,
        text_rules: text_rules::TextRules,
    ) -> Self {
        // Sorted, so the order of `--model` or of a policy's `models` changes no version.
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        let mut models: Vec<String> = models
            .iter()
            .map(|m| format!("{}@{}", m.name, m.version))
            .collect();
        models.sort();
        let mut canonical = format!("policy {name}\n");
        for model in &models {
            canonical.push_str(&format!("model {model}\n"));
        }
        for label in &labels {
            canonical.push_str(&format!(
                "label {} {} {:e} {:e}\n",
                label.name,
                label.action.as_str(),
                label.flag,
                label.block
            ));
        }
        if review_blocked {
            // Only when set: the versions of policies without it stay what they were.
            canonical.push_str("review blocked\n");
        }
        // Empty for a policy without rules: its version stays what it was.
        canonical.push_str(&text_rules.canonical);
        let digest = sha2::Sha256::digest(canonical.as_bytes());
        let version = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        Self {
            name: name.to_string(),
            version,
            labels,
            review_blocked,
            text_rules: Arc::new(text_rules),
        }
    }

    /// The policy's keyword and regex rules, checked before the models.
    pub fn text_rules(&self) -> &text_rules::TextRules {
        &self.text_rules
    }

    /// The labels this policy acts on (not `ignore`), with the decisions each can make:
    /// `flag`, and `block` unless its action is `flag`.
    pub fn acting_labels(&self) -> impl Iterator<Item = (&str, &'static [&'static str])> {
        self.labels.iter().filter_map(|l| match l.action {
            LabelAction::Block => Some((l.name.as_str(), &["flag", "block"][..])),
            LabelAction::Flag => Some((l.name.as_str(), &["flag"][..])),
            LabelAction::Ignore => None,
        })
    }

    /// Whether the messages this policy blocks go to the review queue too.
    pub fn reviews_blocked(&self) -> bool {
        self.review_blocked
    }

    /// The decision on `scores` (every label of every loaded model): the most severe of
    /// this policy's labels, and the label that made it; only its labels are kept in the
    /// result. A label without a
    /// score (a model that produced none) decides nothing.
    pub fn decide(&self, scores: &BTreeMap<String, f32>) -> Assessment {
        let mut kept = BTreeMap::new();
        let mut decider = Decider::default();
        for label in &self.labels {
            if let Some(&score) = scores.get(&label.name) {
                decider.add(&label.name, label.decision(score), score);
                kept.insert(label.name.clone(), score);
            }
        }
        let (decision, decided_by) = decider.finish();
        Assessment {
            scores: kept,
            decision,
            decided_by,
            spans: Default::default(),
        }
    }
}

/// Why a request was not judged by the policy it named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// The request named a policy this moderator's file does not define.
    UnknownPolicy,
    /// The request named a policy its tenant may not use (`[tenants.<t>] allowed`).
    NotAllowed,
}

impl Fallback {
    /// Every fallback, for metrics that exist from the start.
    pub const ALL: [Fallback; 2] = [Fallback::UnknownPolicy, Fallback::NotAllowed];

    /// Stable label for metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Fallback::UnknownPolicy => "unknown_policy",
            Fallback::NotAllowed => "not_allowed",
        }
    }
}

/// The policy chosen for one request.
#[derive(Debug, Clone, Copy)]
pub struct Selection<'a> {
    /// The rules that judge it.
    pub rules: &'a Rules,
    /// Set when the request named a policy that could not be used.
    pub fallback: Option<Fallback>,
}

/// A tenant's choices: its policy, its rooms' policies, and which policies its requests
/// may name (`None`: any).
#[derive(Debug, Clone, Default, PartialEq)]
struct TenantRules {
    policy: Option<String>,
    rooms: BTreeMap<String, String>,
    allowed: Option<Vec<String>>,
}

/// Every policy of a file (or the built-in one), and who uses which.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicySet {
    /// The policy when nothing more specific applies (also in `policies`).
    default: Rules,
    policies: BTreeMap<String, Rules>,
    tenants: BTreeMap<String, TenantRules>,
    from_file: bool,
}

impl PolicySet {
    /// The built-in policy: every label of every model at its manifest's thresholds.
    pub fn builtin(manifests: &[Manifest]) -> Self {
        let models: Vec<&Manifest> = manifests.iter().collect();
        let labels = manifest_rules(&models);
        let rules = Rules::new(BUILTIN_POLICY, &models, labels, false, Default::default());
        Self {
            default: rules.clone(),
            policies: [(BUILTIN_POLICY.to_string(), rules)].into(),
            tenants: BTreeMap::new(),
            from_file: false,
        }
    }

    /// Reads and resolves the policy file at `path` against `manifests`; every problem is
    /// reported, not only the first.
    pub fn load(path: &Path, manifests: &[Manifest]) -> Result<Self, PolicyFileError> {
        file::load(path, manifests)
    }

    /// Reads a policy file's text (bounded to the size a policy file may have).
    pub fn read(path: &Path) -> Result<String, PolicyFileError> {
        file::read(path)
    }

    /// The model versions a policy file's `text` pins in its `[models]` table (model name
    /// → version); empty when it pins none or is not TOML.
    pub fn pins(text: &str) -> BTreeMap<String, String> {
        file::pins(text)
    }

    /// Parses and resolves a policy file's text (see [`PolicySet::load`]).
    pub fn parse(text: &str, manifests: &[Manifest]) -> Result<Self, Vec<String>> {
        file::parse(text, manifests)
    }

    /// Whether the policies came from a file (verdicts then name their policy).
    pub fn from_file(&self) -> bool {
        self.from_file
    }

    /// Every policy, by name.
    pub fn policies(&self) -> impl Iterator<Item = &Rules> {
        self.policies.values()
    }

    /// Names of the tenants with rules of their own.
    pub fn tenants(&self) -> impl Iterator<Item = &str> {
        self.tenants.keys().map(String::as_str)
    }

    /// The policy for a request of `tenant` in `room` that named `requested`: the named
    /// one when it exists and the tenant may use it, else the tenant's room rule, the
    /// tenant's policy, the default.
    pub fn select(&self, tenant: &str, room: &str, requested: Option<&str>) -> Selection<'_> {
        let rules = self.tenants.get(tenant);
        let mut fallback = None;
        if let Some(name) = requested {
            let allowed = rules
                .and_then(|t| t.allowed.as_ref())
                .is_none_or(|allowed| allowed.iter().any(|a| a == name));
            match self.policies.get(name) {
                Some(rules) if allowed => {
                    return Selection {
                        rules,
                        fallback: None,
                    };
                }
                Some(_) => fallback = Some(Fallback::NotAllowed),
                None => fallback = Some(Fallback::UnknownPolicy),
            }
        }
        let configured = rules.and_then(|t| {
            t.rooms
                .get(room)
                .or(t.policy.as_ref())
                .and_then(|name| self.policies.get(name))
        });
        Selection {
            rules: configured.unwrap_or(&self.default),
            fallback,
        }
    }
}

/// Every label of `models` at its manifest's thresholds, acting normally.
fn manifest_rules(models: &[&Manifest]) -> Vec<LabelRule> {
    models
        .iter()
        .flat_map(|m| &m.labels)
        .map(|label| LabelRule {
            name: label.name.clone(),
            flag: label.flag,
            block: label.block,
            // A signal label is scored, and acted on only where a policy opts in; a
            // flag-only one goes to a person, never removed without a policy's say.
            action: if label.signal {
                LabelAction::Ignore
            } else if label.flag_only {
                LabelAction::Flag
            } else {
                LabelAction::Block
            },
        })
        .collect()
}
