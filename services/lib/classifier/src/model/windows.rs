//! Long texts in overlapping windows of tokens, each with the text it was made from.

use super::{Model, Prepared, WINDOW_OVERLAP, span_text};
use crate::error::ClassifierError;

/// A window and the byte range of the text it was made from.
pub(crate) type Spanned = (Prepared, (usize, usize));

impl Model {
    /// What a token model reads of `text`: the text whole (as [`Model::prepare`] gives it)
    /// when it fits in `max_tokens`, else windows of `window` tokens (special tokens
    /// included), each sharing [`WINDOW_OVERLAP`] tokens with the next, the last one ending
    /// at the text's end. A window much shorter than `max_tokens` keeps one insult from
    /// drowning in the mean over hundreds of harmless tokens (measured: "you stupid idiot"
    /// then 250 × "hello " scores 0.06 in one 256-token window). A model with a `text` input
    /// gets each window's own text: the span of `text` from its first token's start to its
    /// last token's end (the untruncated encoding's offsets). A string model reads the whole
    /// text: one item.
    pub fn prepare_windows(
        &self,
        text: &str,
        window: usize,
    ) -> Result<Vec<Prepared>, ClassifierError> {
        Ok(self
            .spanned_windows(text, window, self.manifest.max_tokens)?
            .into_iter()
            .map(|(prepared, _)| prepared)
            .collect())
    }

    /// [`Model::prepare_windows`], each window with the byte range of `text` it covers (the
    /// whole text when it is read whole), split when the text has `longer_than` tokens or
    /// more (special tokens included): the model's `max_tokens` for scoring, a window's
    /// length when locating the part of a short text that scored highest.
    pub(crate) fn spanned_windows(
        &self,
        text: &str,
        window: usize,
        longer_than: usize,
    ) -> Result<Vec<Spanned>, ClassifierError> {
        let whole = self.prepare(text)?;
        let Some(tokenizer) = &self.tokenizer else {
            return Ok(vec![(whole, (0, text.len()))]);
        };
        if whole.len() < longer_than.min(self.manifest.max_tokens) {
            return Ok(vec![(whole, (0, text.len()))]);
        }
        // The frame every text gets ([CLS] … [SEP] for BERT): the empty text's tokens.
        let frame = tokenizer
            .encode("", true)
            .map_err(|e| self.tokenize_error(e))?
            .get_ids()
            .to_vec();
        let (prefix, suffix) = frame.split_at(frame.len().min(1));
        let room = self.manifest.max_tokens.saturating_sub(frame.len());
        if room <= WINDOW_OVERLAP {
            return Ok(vec![(whole, (0, text.len()))]);
        }
        let content = self.untruncated(text)?;
        let ids = content.get_ids();
        let offsets = content.get_offsets();
        let width = window
            .saturating_sub(frame.len())
            .clamp(WINDOW_OVERLAP + 1, room);
        let step = width - WINDOW_OVERLAP;
        let mut starts: Vec<usize> = (0..ids.len().saturating_sub(width)).step_by(step).collect();
        starts.push(ids.len().saturating_sub(width));
        Ok(starts
            .into_iter()
            .map(|start| {
                let end = (start + width).min(ids.len());
                let window_ids: Vec<i64> = prefix
                    .iter()
                    .chain(&ids[start..end])
                    .chain(suffix)
                    .map(|&id| i64::from(id))
                    .collect();
                let span = offsets[start..end]
                    .first()
                    .zip(offsets[start..end].last())
                    .map_or((0, 0), |(first, last)| (first.0, last.1));
                let prepared = Prepared::Tokens {
                    mask: vec![1; window_ids.len()],
                    ids: window_ids,
                    text: self.wants_text().then(|| span_text(text, span)),
                };
                (prepared, span)
            })
            .collect())
    }

    /// Every token of `text`, no special tokens, no truncation (offsets in bytes of `text`).
    fn untruncated(&self, text: &str) -> Result<tokenizers::Encoding, ClassifierError> {
        let Some(tokenizer) = &self.untruncated else {
            return Ok(tokenizers::Encoding::default());
        };
        tokenizer
            .encode(text, false)
            .map_err(|e| self.tokenize_error(e))
    }
}
