//! The series of the policies in force, put on `/metrics` when a policy set is loaded.

use super::*;

/// Puts the series of every policy of `set` on `/metrics` ([`POLICY_VERDICTS`] at 0 for
/// each action, [`VERDICT_CATEGORIES`] for each label it acts on, [`POLICY_INFO`] at 1),
/// [`POLICY_FALLBACKS`] and [`POLICY_RELOADS`] at 0 for
/// each label value, [`POLICY_SOURCE`] for `in_force`; the [`POLICY_INFO`] of `replaced`
/// (the set before a reload) goes to 0.
pub(crate) fn policies(
    set: &crate::policies::PolicySet,
    replaced: Option<&crate::policies::PolicySet>,
    in_force: crate::policies::Source,
) {
    let info = |rules: &crate::policies::Rules| {
        metrics::gauge!(
            POLICY_INFO,
            "policy" => rules.name.clone(),
            "version" => rules.version.clone(),
        )
    };
    for rules in replaced.into_iter().flat_map(|old| old.policies()) {
        info(rules).set(0.0);
    }
    for rules in set.policies() {
        for action in POLICY_ACTIONS {
            metrics::counter!(POLICY_VERDICTS, "policy" => rules.name.clone(), "action" => *action)
                .increment(0);
        }
        let _ = metrics::histogram!(POLICY_VERDICT_SECONDS, "policy" => rules.name.clone());
        for (label, actions) in rules.acting_labels() {
            for action in actions {
                let category = label.to_string();
                metrics::counter!(VERDICT_CATEGORIES, "category" => category, "action" => *action)
                    .increment(0);
            }
        }
        for rule in rules.text_rules().iter() {
            let name = if rule.shadow {
                RULE_SHADOW_HITS
            } else {
                RULE_HITS
            };
            metrics::counter!(name, "policy" => rules.name.clone(), "rule" => rule.id.clone(),
                "action" => rule.action.as_str())
            .increment(0);
        }
        info(rules).set(1.0);
    }
    for fallback in crate::policies::Fallback::ALL {
        metrics::counter!(POLICY_FALLBACKS, "reason" => fallback.reason()).increment(0);
    }
    for source in crate::policies::Source::ALL {
        let value = if source == in_force { 1.0 } else { 0.0 };
        metrics::gauge!(POLICY_SOURCE, "source" => source.as_str()).set(value);
    }
    for source in [
        crate::policies::Source::File,
        crate::policies::Source::Bucket,
    ] {
        for outcome in ["applied", "refused"] {
            metrics::counter!(POLICY_RELOADS, "source" => source.as_str(), "outcome" => outcome)
                .increment(0);
        }
    }
}
