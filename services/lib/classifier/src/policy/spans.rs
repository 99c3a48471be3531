//! Where in a text a label scored highest: the window of a long text, or, for a text the
//! model reads whole whose label reached its flag threshold, the best of short windows
//! read again for that purpose only (the scores stay the whole text's).

use std::collections::BTreeMap;

use crate::{ClassifierError, Model, Prepared, RunOptions, manifest::Label, plan_batches};

/// Tokens per window (special tokens included) when locating the part of a short text
/// that scored highest: about ten words, a sentence of chat.
pub const SPAN_WINDOW_TOKENS: usize = 16;

/// Most short windows read to locate one part: a text read whole (at most 254 content
/// tokens) makes 41; a text as sent behind a short normalised view may make more, and is
/// then not located.
pub const MAX_SPAN_WINDOWS: usize = 48;

/// The part of a text that scored highest on a label: a byte range of the text as sent,
/// and that part's own score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextSpan {
    /// First byte (a character boundary).
    pub start: usize,
    /// One past the last byte (a character boundary).
    pub end: usize,
    /// The label's score on this part alone.
    pub score: f32,
}

/// How batches are cut and runs stopped.
#[derive(Clone, Copy)]
pub(super) struct Runs<'a> {
    pub max_batch: usize,
    pub max_padded_tokens: usize,
    pub options: Option<&'a RunOptions>,
}

/// Scores `prepared` in length-grouped batches: per owner (`owners[k]` owns item `k`, of
/// `n` owners), per label, the highest score and the item that gave it (`usize::MAX` and
/// NaN when none did; a NaN score never hides a number).
pub(super) fn best_items(
    model: &mut Model,
    prepared: &[Prepared],
    owners: &[usize],
    n: usize,
    runs: Runs<'_>,
) -> Result<Vec<Vec<(f32, usize)>>, ClassifierError> {
    let labels = model.manifest().labels.len();
    let mut best = vec![vec![(f32::NAN, usize::MAX); labels]; n];
    let lengths: Vec<usize> = prepared.iter().map(Prepared::len).collect();
    for group in plan_batches(&lengths, runs.max_batch, runs.max_padded_tokens) {
        let batch: Vec<&Prepared> = group.iter().map(|&k| &prepared[k]).collect();
        for (&k, row) in group.iter().zip(model.infer(&batch, runs.options)?) {
            for (b, s) in best[owners[k]].iter_mut().zip(row) {
                if !s.is_nan() && (b.0.is_nan() || s > b.0) {
                    *b = (s, k);
                }
            }
        }
    }
    Ok(best)
}

/// A text (or the window of one) whose labels (indexes into the model's labels) reached
/// their flag threshold: where they are located.
pub(super) struct Wanted<'t> {
    /// The text's index in the call.
    pub owner: usize,
    /// The text as sent, or the window of it where the labels scored highest.
    pub text: &'t str,
    /// Where `text` starts in the text as sent.
    pub offset: usize,
    /// Label indexes.
    pub labels: Vec<usize>,
}

impl<'t> Wanted<'t> {
    /// One per part: `(text index, start, end)` → label indexes, the parts of `texts`.
    pub(super) fn parts(
        by_part: BTreeMap<(usize, usize, usize), Vec<usize>>,
        texts: &[&'t str],
    ) -> Vec<Self> {
        by_part
            .into_iter()
            .map(|((owner, start, end), labels)| Wanted {
                owner,
                text: texts[owner].get(start..end).unwrap_or_default(),
                offset: start,
                labels,
            })
            .collect()
    }
}

/// A located span: the text's index in the call, the label, the span.
pub(super) type Found = (usize, Label, TextSpan);

/// Locates `wanted` labels in short windows of their texts: a label's span is its best
/// window when that reaches the label's flag threshold (else the harm is in the whole,
/// and the span stays what it was). A text of one short window gives none. Returns
/// `(owner, label, span)`, offsets in the text as sent, and how many windows were read.
pub(super) fn locate(
    model: &mut Model,
    wanted: &[Wanted<'_>],
    runs: Runs<'_>,
) -> Result<(Vec<Found>, usize), ClassifierError> {
    let mut prepared = Vec::new();
    let mut owners = Vec::new();
    let mut ranges = Vec::new();
    for (w, want) in wanted.iter().enumerate() {
        let windows =
            model.spanned_windows(want.text, SPAN_WINDOW_TOKENS, SPAN_WINDOW_TOKENS + 1)?;
        if windows.len() < 2 || windows.len() > MAX_SPAN_WINDOWS {
            continue;
        }
        for (p, range) in windows {
            prepared.push(p);
            owners.push(w);
            ranges.push(range);
        }
    }
    if prepared.is_empty() {
        return Ok((Vec::new(), 0));
    }
    let best = best_items(model, &prepared, &owners, wanted.len(), runs)?;
    let labels = &model.manifest().labels;
    let mut found = Vec::new();
    for (want, rows) in wanted.iter().zip(best) {
        for &l in &want.labels {
            let (score, k) = rows[l];
            if k != usize::MAX && score >= labels[l].flag {
                let (start, end) = ranges[k];
                let span = TextSpan {
                    start: want.offset + start,
                    end: want.offset + end,
                    score,
                };
                found.push((want.owner, labels[l].clone(), span));
            }
        }
    }
    Ok((found, prepared.len()))
}

/// Spans by label name.
pub type Spans = BTreeMap<String, TextSpan>;
