//! Moderation policy: combines the labels of one or more models into one decision.

use std::collections::BTreeMap;

use crate::manifest::Label;

mod spans;

pub use spans::{MAX_SPAN_WINDOWS, SPAN_WINDOW_TOKENS, Spans, TextSpan};
use spans::{Runs, Wanted, best_items, locate};

/// What a policy decided for one message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Decision {
    /// No label reached its `flag` threshold.
    #[default]
    Allow,
    /// Some label reached `flag`, none reached `block`.
    Flag,
    /// Some label reached its `block` threshold.
    Block,
}

impl Decision {
    /// Decision for one label's score at its thresholds (a [`Label::flag_only`] label
    /// never blocks; whether a [`Label::signal`] counts is the caller's).
    pub fn for_score(label: &Label, score: f32) -> Self {
        if score >= label.block && !label.flag_only {
            Decision::Block
        } else if score >= label.flag {
            Decision::Flag
        } else {
            Decision::Allow
        }
    }
}

/// Scores of every label of every model for one message, and the combined decision: the
/// most severe decision of any label that acts (a [`Label::signal`] is scored only, as in
/// the moderator's built-in policy). A score that is not a number blocks nothing and is
/// reported as 0 (it can only come from a broken model, which the caller counts).
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// Label → probability.
    pub scores: BTreeMap<String, f32>,
    /// The combined decision.
    pub decision: Decision,
    /// The label that decided a `Flag` or `Block`: of the labels whose own decision is the
    /// combined one, the one with the highest score; `None` on `Allow`.
    pub decided_by: Option<String>,
    /// Label → the part of the text as sent that scored highest on it, where the model
    /// could tell ([`Policy::assess`] says when); empty when the text decides as a whole.
    pub spans: Spans,
}

/// Finds the label that decided: fed every acting label's decision and score, it keeps
/// the most severe decision and, among its labels, the highest score. Borrows the names, so
/// a message that only allows costs no allocation.
#[derive(Debug, Default)]
pub struct Decider<'a> {
    decision: Decision,
    best: Option<(f32, &'a str)>,
}

impl<'a> Decider<'a> {
    /// One acting label's decision on its score.
    pub fn add(&mut self, name: &'a str, decision: Decision, score: f32) {
        if decision == Decision::Allow || decision < self.decision {
            return;
        }
        let higher = self.best.is_none_or(|(best, _)| score > best);
        if decision > self.decision || higher {
            self.decision = decision;
            self.best = Some((score, name));
        }
    }

    /// The combined decision and the label that decided it.
    pub fn finish(self) -> (Decision, Option<String>) {
        (self.decision, self.best.map(|(_, name)| name.to_string()))
    }
}

impl Assessment {
    /// Combines `(label, score)` pairs.
    pub fn combine<'a>(pairs: impl IntoIterator<Item = (&'a Label, f32)>) -> Self {
        let mut scores = BTreeMap::new();
        let mut decider = Decider::default();
        for (label, score) in pairs {
            let score = if score.is_finite() {
                score.clamp(0.0, 1.0)
            } else {
                0.0
            };
            if !label.signal {
                decider.add(&label.name, Decision::for_score(label, score), score);
            }
            scores.insert(label.name.clone(), score);
        }
        let (decision, decided_by) = decider.finish();
        Self {
            scores,
            decision,
            decided_by,
            spans: Spans::new(),
        }
    }
}

/// How a text is looked at: as written, normalised ([`crate::Normalizer`]), or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Views {
    /// The text as written only.
    Raw,
    /// The normalised text instead of the text as written, when they differ (a clean text
    /// costs only the normaliser). The default: on the train-split obfuscation set it kept
    /// ≥ 0.92 of plain-caught insults caught under every transform, and flagged ≤ 0.04 of
    /// clean texts, where `Both` kept the raw view's false positives (disguised clean
    /// texts: 0.13 flagged with inner hyphens, 0.15 mixed; `tests/obfuscation.rs`).
    #[default]
    Normalised,
    /// Both, each label's score the higher of the two; the normalised view is scored only
    /// when it differs.
    Both,
}

/// Tokens per window of a text longer than the model reads (special tokens included).
/// Short on purpose: the insult model averages over its tokens, so three insulting words
/// among 20 harmless ones already score below the flag threshold (measured: 0.97 alone,
/// 0.11 with 8 words either side); 32-token windows caught a hostile passage anywhere in
/// 800 words of chatter where 64 and 256 did not. The price, on the 61 train comments of
/// 256 tokens or more: 14 of 57 clean ones flagged (7 with 64, 3 with 256, 1 truncated).
pub const DEFAULT_WINDOW_TOKENS: usize = 32;

/// Most windows read per view of one text, by default: 192 windows of 32 tokens cover
/// 30 + 191 × 22 = 4,232 tokens, more than the 16 KiB request limit holds in English
/// (about 4 bytes a token), at most 6,144 padded tokens (12 runs at the 512-token budget).
pub const DEFAULT_MAX_WINDOWS: usize = 192;

/// What the last [`Policy::assess`] call did beyond one look per text and model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ViewStats {
    /// Texts whose normalised view was scored.
    pub normalised: usize,
    /// Windows beyond the first, over all views and models.
    pub extra_windows: usize,
    /// Views longer than the window bound: their middle windows were not read.
    pub capped: usize,
    /// Short windows read to locate flagged labels' spans (they change no score).
    pub span_windows: usize,
}

/// A moderation policy: several models, each scoring its labels, combined per message.
/// Belongs to one inference thread (models need `&mut` to run).
#[derive(Debug)]
pub struct Policy {
    models: Vec<crate::Model>,
    max_batch: usize,
    max_padded_tokens: usize,
    views: Views,
    max_windows: usize,
    window_tokens: usize,
    normalizer: crate::Normalizer,
    stats: ViewStats,
    locate: bool,
}

impl Policy {
    /// A policy over `models`. Each model's share of a batch is split into length-grouped
    /// sub-batches of at most `max_batch` texts and `max_padded_tokens` padded tokens.
    /// Texts are looked at in [`Views::Normalised`], long ones in up to [`DEFAULT_MAX_WINDOWS`]
    /// windows of [`DEFAULT_WINDOW_TOKENS`]; the normaliser knows the first token model's vocabulary.
    pub fn new(models: Vec<crate::Model>, max_batch: usize, max_padded_tokens: usize) -> Self {
        let words = models
            .iter()
            .map(crate::Model::vocabulary_words)
            .find(|w| !w.is_empty())
            .unwrap_or_default();
        Self {
            models,
            max_batch: max_batch.max(1),
            max_padded_tokens: max_padded_tokens.max(1),
            views: Views::default(),
            max_windows: DEFAULT_MAX_WINDOWS,
            window_tokens: DEFAULT_WINDOW_TOKENS,
            normalizer: crate::Normalizer::with_words(words),
            stats: ViewStats::default(),
            locate: true,
        }
    }

    /// The same policy looking at texts in `views`.
    pub fn with_views(mut self, views: Views) -> Self {
        self.views = views;
        self
    }

    /// The same policy reading at most `max_windows` windows (at least 1) per view of a
    /// text: the first `max_windows - 1` and the last.
    pub fn with_max_windows(mut self, max_windows: usize) -> Self {
        self.max_windows = max_windows.max(1);
        self
    }

    /// The same policy reading texts longer than a model reads in windows of
    /// `window_tokens` tokens.
    pub fn with_window_tokens(mut self, window_tokens: usize) -> Self {
        self.window_tokens = window_tokens;
        self
    }

    /// The same policy reading flagged texts again in short windows to locate their spans
    /// (`true`, the default) or not (`false`: only the windows of long texts give spans).
    pub fn with_located_spans(mut self, locate: bool) -> Self {
        self.locate = locate;
        self
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

    /// What the last [`Policy::assess`] did: normalised views and extra windows.
    pub fn last_stats(&self) -> ViewStats {
        self.stats
    }

    /// The views of every text: `(text index, view)`.
    fn views<'a>(&self, texts: &[&'a str]) -> Vec<(usize, std::borrow::Cow<'a, str>)> {
        use std::borrow::Cow;
        let mut views = Vec::with_capacity(texts.len());
        for (i, &text) in texts.iter().enumerate() {
            let normalised = match self.views {
                Views::Raw => None,
                Views::Normalised | Views::Both => self.normalizer.second_view(text),
            };
            if self.views == Views::Both || normalised.is_none() {
                views.push((i, Cow::Borrowed(text)));
            }
            views.extend(normalised.map(|n| (i, Cow::Owned(n))));
        }
        views
    }

    /// What model `m` reads of `views`: each view whole, or its windows (at most
    /// `max_windows`), with the view, byte range and split of each item.
    fn items(
        &self,
        m: usize,
        views: &[(usize, std::borrow::Cow<'_, str>)],
        stats: &mut ViewStats,
    ) -> Result<Items, crate::ClassifierError> {
        let model = &self.models[m];
        let mut items = Items::default();
        for (v, (i, view)) in views.iter().enumerate() {
            let max_tokens = model.manifest().max_tokens;
            let (windows, capped) = bounded(
                model.spanned_windows(view, self.window_tokens, max_tokens)?,
                self.max_windows,
            );
            stats.extra_windows += windows.len() - 1;
            stats.capped += usize::from(capped);
            let split = windows.len() > 1;
            for (p, range) in windows {
                items.owners.push(*i);
                items.prepared.push(p);
                items.places.push((v, range, split));
            }
        }
        Ok(items)
    }

    /// Scores every text with every model and combines the labels: each label's score is
    /// its highest over the text's views and windows. `run_options` lets a watchdog
    /// terminate the runs; any failure fails the whole call (the caller splits the batch to
    /// isolate a poison message).
    ///
    /// Each assessment also says where a label scored highest ([`Assessment::spans`]): the
    /// window of a text read in windows; and where the label reached the manifest's flag
    /// threshold, the best window of [`SPAN_WINDOW_TOKENS`] inside the text (or inside its
    /// worst window) when that reaches the threshold too. Those short windows are read for
    /// this only: they cost runs for flagged texts and change no score. Only the text as
    /// sent is located: where the normalised view scored highest, the text as sent is read
    /// in short windows (when its normalised view is read whole).
    pub fn assess(
        &mut self,
        texts: &[&str],
        run_options: Option<&crate::RunOptions>,
    ) -> Result<Vec<Assessment>, crate::ClassifierError> {
        use std::borrow::Cow;
        let views = self.views(texts);
        let mut stats = ViewStats {
            normalised: views
                .iter()
                .filter(|(_, v)| matches!(v, Cow::Owned(_)))
                .count(),
            ..ViewStats::default()
        };
        let runs = Runs {
            max_batch: self.max_batch,
            max_padded_tokens: self.max_padded_tokens,
            options: run_options,
        };
        let mut per_text: Vec<Vec<(Label, f32)>> = vec![Vec::new(); texts.len()];
        let mut spans = vec![Spans::new(); texts.len()];
        for m in 0..self.models.len() {
            let items = self.items(m, &views, &mut stats)?;
            let model = &mut self.models[m];
            let (prepared, owners, places) = (&items.prepared, &items.owners, &items.places);
            let best = best_items(model, prepared, owners, texts.len(), runs)?;
            let labels = &model.manifest().labels;
            // Flagged labels by the part of a text they are located in again.
            let mut wanted = BTreeMap::<(usize, usize, usize), Vec<usize>>::new();
            for (i, rows) in best.iter().enumerate() {
                for (l, (label, &(score, k))) in labels.iter().zip(rows).enumerate() {
                    per_text[i].push((label.clone(), score));
                    let Some(&(v, (start, end), split)) = places.get(k) else {
                        continue;
                    };
                    if matches!(views[v].1, Cow::Owned(_)) {
                        // The normalised view's offsets are not the sent text's: the text
                        // as sent is read in short windows instead. A text the normaliser
                        // only folded (an accent, a curly apostrophe) is located there; a
                        // disguised one reaches no threshold there, and has no span.
                        if !split && score >= label.flag && !label.signal && self.locate {
                            let whole = (i, 0, texts[i].len());
                            wanted.entry(whole).or_default().push(l);
                        }
                        continue;
                    }
                    if split {
                        let span = TextSpan { start, end, score };
                        spans[i].insert(label.name.clone(), span);
                    }
                    if score >= label.flag && !label.signal && self.locate {
                        wanted.entry((i, start, end)).or_default().push(l);
                    }
                }
            }
            let (found, read) = locate(model, &Wanted::parts(wanted, texts), runs)?;
            stats.span_windows += read;
            for (i, label, span) in found {
                spans[i].insert(label.name, span);
            }
        }
        self.stats = stats;
        Ok(per_text
            .iter()
            .zip(spans)
            .map(|(pairs, spans)| Assessment {
                spans,
                ..Assessment::combine(pairs.iter().map(|(l, s)| (l, *s)))
            })
            .collect())
    }
}

/// What one model reads of a call's texts.
#[derive(Default)]
struct Items {
    prepared: Vec<crate::Prepared>,
    /// The text each item belongs to.
    owners: Vec<usize>,
    /// Per item: its view, its byte range of the view, whether the view was split.
    places: Vec<(usize, (usize, usize), bool)>,
}

/// At most `max` windows: the first `max - 1` and the last (an insult at the end of a long
/// text is as likely as one at its start). Whether any were dropped.
fn bounded<T>(mut windows: Vec<T>, max: usize) -> (Vec<T>, bool) {
    if windows.len() <= max {
        return (windows, false);
    }
    let last = windows.pop();
    windows.truncate(max - 1);
    windows.extend(last);
    (windows, true)
}

#[cfg(test)]
mod tests;
