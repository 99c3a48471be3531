//! Moderation policy: combines the labels of one or more models into one decision.

use std::collections::BTreeMap;

use crate::manifest::Label;

/// What a policy decided for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Decision {
    /// No label reached its `flag` threshold.
    Allow,
    /// Some label reached `flag`, none reached `block`.
    Flag,
    /// Some label reached its `block` threshold.
    Block,
}

impl Decision {
    /// Decision for one label's score.
    pub fn for_score(label: &Label, score: f32) -> Self {
        if score >= label.block {
            Decision::Block
        } else if score >= label.flag {
            Decision::Flag
        } else {
            Decision::Allow
        }
    }
}

/// Scores of every label of every model for one message, and the combined decision: the
/// most severe decision of any label. A score that is not a number blocks nothing and is
/// reported as 0 (it can only come from a broken model, which the caller counts).
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// Label → probability.
    pub scores: BTreeMap<String, f32>,
    /// The combined decision.
    pub decision: Decision,
}

impl Assessment {
    /// Combines `(label, score)` pairs.
    pub fn combine<'a>(pairs: impl IntoIterator<Item = (&'a Label, f32)>) -> Self {
        let mut scores = BTreeMap::new();
        let mut decision = Decision::Allow;
        for (label, score) in pairs {
            let score = if score.is_finite() {
                score.clamp(0.0, 1.0)
            } else {
                0.0
            };
            decision = decision.max(Decision::for_score(label, score));
            scores.insert(label.name.clone(), score);
        }
        Self { scores, decision }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(name: &str, flag: f32, block: f32) -> Label {
        Label {
            name: name.into(),
            column: 0,
            flag,
            block,
        }
    }

    /// The most severe label wins; thresholds are inclusive; NaN counts as 0.
    #[test]
    fn most_severe_label_wins() {
        let insult = label("insult", 0.2, 0.4);
        let profanity = label("profanity", 0.5, 0.8);
        let a = Assessment::combine([(&insult, 0.1), (&profanity, 0.5)]);
        assert_eq!(a.decision, Decision::Flag);
        let a = Assessment::combine([(&insult, 0.4), (&profanity, 0.0)]);
        assert_eq!(a.decision, Decision::Block);
        let a = Assessment::combine([(&insult, f32::NAN), (&profanity, 0.1)]);
        assert_eq!(a.decision, Decision::Allow);
        assert_eq!(a.scores["insult"], 0.0);
    }
}

/// A moderation policy: several models, each scoring its labels, combined per message.
/// Belongs to one inference thread (models need `&mut` to run).
#[derive(Debug)]
pub struct Policy {
    models: Vec<crate::Model>,
    max_batch: usize,
    max_padded_tokens: usize,
}

impl Policy {
    /// A policy over `models`. Each model's share of a batch is split into length-grouped
    /// sub-batches of at most `max_batch` texts and `max_padded_tokens` padded tokens.
    pub fn new(models: Vec<crate::Model>, max_batch: usize, max_padded_tokens: usize) -> Self {
        Self {
            models,
            max_batch: max_batch.max(1),
            max_padded_tokens: max_padded_tokens.max(1),
        }
    }

    /// `name@version` of every model, joined with `+` (the verdict's model name).
    pub fn model_name(&self) -> String {
        let names: Vec<String> = self
            .models
            .iter()
            .map(|m| format!("{}@{}", m.manifest().name, m.manifest().version))
            .collect();
        names.join("+")
    }

    /// Scores every text with every model and combines the labels. `run_options` lets a
    /// watchdog terminate the runs; any failure fails the whole call (the caller splits the
    /// batch to isolate a poison message).
    pub fn assess(
        &mut self,
        texts: &[&str],
        run_options: Option<&crate::RunOptions>,
    ) -> Result<Vec<Assessment>, crate::ClassifierError> {
        let mut per_text: Vec<Vec<(Label, f32)>> = vec![Vec::new(); texts.len()];
        for model in &mut self.models {
            let prepared = texts
                .iter()
                .map(|t| model.prepare(t))
                .collect::<Result<Vec<_>, _>>()?;
            let lengths: Vec<usize> = prepared.iter().map(crate::Prepared::len).collect();
            let labels = model.manifest().labels.clone();
            let groups = crate::plan_batches(&lengths, self.max_batch, self.max_padded_tokens);
            for group in groups {
                let batch: Vec<&crate::Prepared> = group.iter().map(|&i| &prepared[i]).collect();
                for (&i, row) in group.iter().zip(model.infer(&batch, run_options)?) {
                    per_text[i].extend(labels.iter().cloned().zip(row));
                }
            }
        }
        Ok(per_text
            .iter()
            .map(|pairs| Assessment::combine(pairs.iter().map(|(l, s)| (l, *s))))
            .collect())
    }
}
