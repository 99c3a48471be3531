//! One model: its manifest, an ONNX Runtime session and, for token models, a tokenizer.
//!
//! `Session::run` takes `&mut self`, so a `Model` belongs to one inference thread.

use std::path::Path;

use ort::session::{RunOptions, Session};
use ort::value::{TensorElementType, ValueType};
use tokenizers::Tokenizer;

use crate::batch::plan_batches;
use crate::error::ClassifierError;
use crate::manifest::{Manifest, ModelKind};

mod session;
mod tensors;
mod windows;

pub use session::{Optimization, SessionConfig};
use session::{build_session, load_tokenizer};

/// Tokens shared by consecutive windows of a long text (see [`Model::prepare_windows`]):
/// as long as an insulting phrase ("you are a pathetic idiot" is 6), so one is whole in
/// some window.
pub const WINDOW_OVERLAP: usize = 8;

/// A text made ready for one model: token ids and mask, or the text itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    /// Token ids and attention mask (kind `token_ids`).
    Tokens {
        /// Token ids.
        ids: Vec<i64>,
        /// Attention mask.
        mask: Vec<i64>,
        /// The text the ids were made from, for a model with a `text` input (else `None`):
        /// the text whole, up to its last token kept when truncated, or a window's span;
        /// NUL characters replaced.
        text: Option<String>,
    },
    /// The text (kind `string`), NUL characters replaced (a C string cannot hold them).
    Text(String),
}

impl Prepared {
    /// Length used for batching: tokens, or bytes of text.
    pub fn len(&self) -> usize {
        match self {
            Prepared::Tokens { ids, .. } => ids.len(),
            Prepared::Text(text) => text.len(),
        }
    }

    /// Whether there is nothing to score.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A loaded model.
pub struct Model {
    manifest: Manifest,
    session: Session,
    tokenizer: Option<Tokenizer>,
    /// The same tokenizer without truncation, for windows over long texts.
    untruncated: Option<Tokenizer>,
    max_column: usize,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.manifest.name)
            .finish_non_exhaustive()
    }
}

impl Model {
    /// Loads the model in `dir` through its manifest.
    pub fn load(dir: &Path, config: &SessionConfig) -> Result<Self, ClassifierError> {
        let manifest = Manifest::load(dir)?;
        if config.verify_checksums {
            manifest.verify_checksums()?;
        }
        let path = manifest.path(&manifest.file);
        let session = build_session(&path, config).map_err(|detail| ClassifierError::Session {
            path: path.clone(),
            detail,
        })?;
        let tokenizer = match &manifest.tokenizer {
            Some(file) => Some(load_tokenizer(&manifest.path(file), manifest.max_tokens)?),
            None => None,
        };
        let max_column = manifest.labels.iter().map(|l| l.column).max().unwrap_or(0);
        let untruncated = tokenizer.as_ref().map(|t| {
            let mut t = t.clone();
            // Cannot fail without truncation parameters to check.
            let _ = t.with_truncation(None);
            t
        });
        let model = Self {
            manifest,
            session,
            tokenizer,
            untruncated,
            max_column,
        };
        model.check_tensors()?;
        Ok(model)
    }

    /// The model's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The graph's inputs are exactly the ones the manifest names (a graph input the
    /// manifest does not feed would fail every run; a named one the graph lacks, too), the
    /// `text` input is a string tensor, and the output exists.
    fn check_tensors(&self) -> Result<(), ClassifierError> {
        let m = &self.manifest;
        let mismatch = |detail: String| ClassifierError::ModelMismatch {
            model: m.name.clone(),
            detail,
        };
        let inputs = self.session.inputs();
        let names: Vec<&str> = inputs.iter().map(|i| i.name()).collect();
        let outputs: Vec<&str> = self.session.outputs().iter().map(|o| o.name()).collect();
        let wanted = [
            ("input_ids", &m.inputs.input_ids),
            ("attention_mask", &m.inputs.attention_mask),
            ("text", &m.inputs.text),
        ];
        for (key, name) in wanted {
            let Some(name) = name else { continue };
            let Some(input) = inputs.iter().find(|i| i.name() == name) else {
                return Err(mismatch(format!(
                    "the manifest's inputs.{key} = {name:?} is not an input of the graph \
                     (graph inputs {names:?})"
                )));
            };
            let string = matches!(
                input.dtype(),
                ValueType::Tensor {
                    ty: TensorElementType::String,
                    ..
                }
            );
            if (key == "text") != string {
                return Err(mismatch(format!(
                    "graph input {name:?} (inputs.{key}) is {}",
                    input.dtype()
                )));
            }
        }
        let fed: Vec<&str> = wanted.iter().filter_map(|(_, n)| n.as_deref()).collect();
        if let Some(extra) = names.iter().find(|n| !fed.contains(n)) {
            return Err(mismatch(format!(
                "graph input {extra:?} is not named in the manifest's [inputs] {fed:?}"
            )));
        }
        if !outputs.contains(&m.output.name.as_str()) {
            return Err(mismatch(format!(
                "graph outputs {outputs:?} lack {}",
                m.output.name
            )));
        }
        Ok(())
    }

    /// Tokenizes (or copies) one text for this model. A token model with a `text` input
    /// also keeps the text the ids were made from: all of it, or, when the tokenizer
    /// truncated it, up to the end of the last token kept (so both inputs read the same
    /// span, and a huge text costs the graph's string ops no more than its tokens do).
    pub fn prepare(&self, text: &str) -> Result<Prepared, ClassifierError> {
        Ok(match self.encode(text)? {
            Some(encoding) => {
                let end = if encoding.get_overflowing().is_empty() {
                    text.len()
                } else {
                    last_token_end(&encoding)
                };
                tokens(
                    &encoding,
                    self.wants_text().then(|| span_text(text, (0, end))),
                )
            }
            None => Prepared::Text(text.replace('\0', " ")),
        })
    }

    /// Whether this token model reads the text its ids were made from.
    fn wants_text(&self) -> bool {
        self.manifest.kind == ModelKind::TokenIds && self.manifest.inputs.text.is_some()
    }

    fn tokenize_error(&self, e: impl std::fmt::Display) -> ClassifierError {
        ClassifierError::Tokenize {
            model: self.manifest.name.clone(),
            detail: e.to_string(),
        }
    }

    /// The whole words of a token model's vocabulary (lower-case ASCII letters, no `##`
    /// pieces): the normaliser's lexicon. Empty for a string model.
    pub fn vocabulary_words(&self) -> Vec<String> {
        let Some(tokenizer) = &self.tokenizer else {
            return Vec::new();
        };
        tokenizer
            .get_vocab(false)
            .into_keys()
            .filter(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
            .collect()
    }

    fn encode(&self, text: &str) -> Result<Option<tokenizers::Encoding>, ClassifierError> {
        match (&self.manifest.kind, &self.tokenizer) {
            (ModelKind::TokenIds, Some(tokenizer)) => tokenizer
                .encode(text, true)
                .map(Some)
                .map_err(|e| self.tokenize_error(e)),
            _ => Ok(None),
        }
    }

    /// Runs one batch, padded to its longest member; one row of label scores per item, in
    /// manifest label order. `run_options` lets a watchdog terminate the run. A manifest
    /// with `rows_per_run` splits the batch into runs of at most that many rows (each
    /// padded to its own longest), so such a model's scores never depend on the neighbours.
    pub fn infer(
        &mut self,
        batch: &[&Prepared],
        run_options: Option<&RunOptions>,
    ) -> Result<Vec<Vec<f32>>, ClassifierError> {
        match self.manifest.rows_per_run {
            Some(rows) if batch.len() > rows => {
                let mut scores = Vec::with_capacity(batch.len());
                for run in batch.chunks(rows) {
                    scores.extend(self.run(run, run_options)?);
                }
                Ok(scores)
            }
            _ => self.run(batch, run_options),
        }
    }

    /// One ONNX Runtime run over `batch`, padded to its longest member.
    fn run(
        &mut self,
        batch: &[&Prepared],
        run_options: Option<&RunOptions>,
    ) -> Result<Vec<Vec<f32>>, ClassifierError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let name = self.manifest.name.clone();
        let failed = |e: ort::Error| ClassifierError::Inference {
            model: name.clone(),
            detail: e.to_string(),
        };
        let inputs = self.tensors(batch)?;
        let outputs = match run_options {
            Some(options) => self.session.run_with_options(inputs, options),
            None => self.session.run(inputs),
        }
        .map_err(&failed)?;
        let Some(value) = outputs.get(&self.manifest.output.name) else {
            return Err(ClassifierError::ModelMismatch {
                model: name,
                detail: format!("no output {}", self.manifest.output.name),
            });
        };
        let array = value.try_extract_array::<f32>().map_err(&failed)?;
        let shape = array.shape().to_vec();
        if shape.len() != 2 || shape[0] != batch.len() || shape[1] <= self.max_column {
            return Err(ClassifierError::WrongShape {
                model: name,
                shape,
                rows: batch.len(),
                column: self.max_column,
            });
        }
        Ok((0..batch.len())
            .map(|row| {
                self.manifest
                    .labels
                    .iter()
                    .map(|l| array[[row, l.column]])
                    .collect()
            })
            .collect())
    }

    /// Scores `texts` as one batch.
    pub fn score(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ClassifierError> {
        let prepared = texts
            .iter()
            .map(|t| self.prepare(t))
            .collect::<Result<Vec<_>, _>>()?;
        self.infer(&prepared.iter().collect::<Vec<_>>(), None)
    }

    /// Scores `texts` in length-grouped batches of at most `max_batch`; results in input
    /// order.
    pub fn score_grouped(
        &mut self,
        texts: &[&str],
        max_batch: usize,
    ) -> Result<Vec<Vec<f32>>, ClassifierError> {
        let prepared = texts
            .iter()
            .map(|t| self.prepare(t))
            .collect::<Result<Vec<_>, _>>()?;
        let lengths: Vec<usize> = prepared.iter().map(Prepared::len).collect();
        let mut scores = vec![Vec::new(); texts.len()];
        for group in plan_batches(&lengths, max_batch, usize::MAX) {
            let batch: Vec<&Prepared> = group.iter().map(|&i| &prepared[i]).collect();
            for (i, row) in group.iter().zip(self.infer(&batch, None)?) {
                scores[*i] = row;
            }
        }
        Ok(scores)
    }
}

/// One encoding's ids and mask, with the text they were made from.
fn tokens(encoding: &tokenizers::Encoding, text: Option<String>) -> Prepared {
    Prepared::Tokens {
        ids: encoding.get_ids().iter().map(|&id| i64::from(id)).collect(),
        mask: encoding
            .get_attention_mask()
            .iter()
            .map(|&m| i64::from(m))
            .collect(),
        text,
    }
}

/// Byte offset where the last non-special token of `encoding` ends (0 when there is none).
fn last_token_end(encoding: &tokenizers::Encoding) -> usize {
    encoding
        .get_offsets()
        .iter()
        .zip(encoding.get_special_tokens_mask())
        .filter(|(_, special)| **special == 0)
        .map(|(offsets, _)| offsets.1)
        .max()
        .unwrap_or(0)
}

/// `text[start..end]` (byte offsets from the tokenizer, which fall on character
/// boundaries; an empty text if they do not), NUL replaced: a string tensor element is a C
/// string.
fn span_text(text: &str, (start, end): (usize, usize)) -> String {
    text.get(start..end).unwrap_or_default().replace('\0', " ")
}
