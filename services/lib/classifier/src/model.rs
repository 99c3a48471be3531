//! One model: its manifest, an ONNX Runtime session and, for token models, a tokenizer.
//!
//! `Session::run` takes `&mut self`, so a `Model` belongs to one inference thread.

use std::path::Path;

use ort::session::{RunOptions, Session, builder::GraphOptimizationLevel};
use ort::value::Tensor;
use tokenizers::{Tokenizer, TruncationParams};

use crate::batch::plan_batches;
use crate::error::ClassifierError;
use crate::manifest::{Manifest, ModelKind};
use crate::runtime::environment;

/// Tokens shared by consecutive windows of a long text (see [`Model::prepare_windows`]):
/// as long as an insulting phrase ("you are a pathetic idiot" is 6), so one is whole in
/// some window.
pub const WINDOW_OVERLAP: usize = 8;

/// ONNX Runtime graph optimisation level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Optimization {
    /// No graph optimisation.
    Disable,
    /// Constant folding, redundant-node elimination.
    Basic,
    /// Plus fusions (attention, GELU, layer norm).
    Extended,
    /// Everything (layout optimisations too).
    #[default]
    All,
}

/// Session options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// Threads one inference may use.
    pub intra_threads: usize,
    /// Graph optimisation level.
    pub optimization: Optimization,
    /// Check every file's sha256 against the manifest at load.
    pub verify_checksums: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            intra_threads: 1,
            optimization: Optimization::All,
            verify_checksums: true,
        }
    }
}

/// A text made ready for one model: token ids and mask, or the text itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    /// Token ids and attention mask (kind `token_ids`).
    Tokens {
        /// Token ids.
        ids: Vec<i64>,
        /// Attention mask.
        mask: Vec<i64>,
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

    fn check_tensors(&self) -> Result<(), ClassifierError> {
        let m = &self.manifest;
        let mismatch = |detail: String| ClassifierError::ModelMismatch {
            model: m.name.clone(),
            detail,
        };
        let inputs: Vec<&str> = self.session.inputs().iter().map(|i| i.name()).collect();
        let outputs: Vec<&str> = self.session.outputs().iter().map(|o| o.name()).collect();
        let wanted: Vec<&str> = [
            &m.inputs.input_ids,
            &m.inputs.attention_mask,
            &m.inputs.text,
        ]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
        let mut sorted_inputs = inputs.clone();
        sorted_inputs.sort_unstable();
        let mut sorted_wanted = wanted.clone();
        sorted_wanted.sort_unstable();
        if sorted_inputs != sorted_wanted {
            return Err(mismatch(format!(
                "graph inputs {inputs:?}, manifest {wanted:?}"
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

    /// Tokenizes (or copies) one text for this model.
    pub fn prepare(&self, text: &str) -> Result<Prepared, ClassifierError> {
        Ok(match self.encode(text)? {
            Some(encoding) => tokens(&encoding),
            None => Prepared::Text(text.replace('\0', " ")),
        })
    }

    /// What a token model reads of `text`: the text whole (as [`Model::prepare`] gives it)
    /// when it fits in `max_tokens`, else windows of `window` tokens (special tokens
    /// included), each sharing [`WINDOW_OVERLAP`] tokens with the next, the last one ending
    /// at the text's end. A window much shorter than `max_tokens` keeps one insult from
    /// drowning in the mean over hundreds of harmless tokens (measured: "you stupid idiot"
    /// then 250 × "hello " scores 0.06 in one 256-token window). A string model reads the
    /// whole text: one item.
    pub fn prepare_windows(
        &self,
        text: &str,
        window: usize,
    ) -> Result<Vec<Prepared>, ClassifierError> {
        let whole = self.prepare(text)?;
        let Some(tokenizer) = &self.tokenizer else {
            return Ok(vec![whole]);
        };
        if whole.len() < self.manifest.max_tokens {
            return Ok(vec![whole]);
        }
        let encode = |text: &str, special: bool| {
            tokenizer
                .encode(text, special)
                .map_err(|e| ClassifierError::Tokenize {
                    model: self.manifest.name.clone(),
                    detail: e.to_string(),
                })
        };
        // The frame every text gets ([CLS] … [SEP] for BERT): the empty text's tokens.
        let frame = encode("", true)?.get_ids().to_vec();
        let (prefix, suffix) = frame.split_at(frame.len().min(1));
        let room = self.manifest.max_tokens.saturating_sub(frame.len());
        if room <= WINDOW_OVERLAP {
            return Ok(vec![whole]);
        }
        let content = self.untruncated(text)?;
        let width = window
            .saturating_sub(frame.len())
            .clamp(WINDOW_OVERLAP + 1, room);
        let step = width - WINDOW_OVERLAP;
        let mut starts: Vec<usize> = (0..content.len().saturating_sub(width))
            .step_by(step)
            .collect();
        starts.push(content.len().saturating_sub(width));
        Ok(starts
            .into_iter()
            .map(|start| {
                let end = (start + width).min(content.len());
                let ids: Vec<i64> = prefix
                    .iter()
                    .chain(&content[start..end])
                    .chain(suffix)
                    .map(|&id| i64::from(id))
                    .collect();
                let mask = vec![1; ids.len()];
                Prepared::Tokens { ids, mask }
            })
            .collect())
    }

    /// Every token of `text`, no special tokens, no truncation.
    fn untruncated(&self, text: &str) -> Result<Vec<u32>, ClassifierError> {
        let Some(tokenizer) = &self.untruncated else {
            return Ok(Vec::new());
        };
        tokenizer
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| ClassifierError::Tokenize {
                model: self.manifest.name.clone(),
                detail: e.to_string(),
            })
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
                .map_err(|e| ClassifierError::Tokenize {
                    model: self.manifest.name.clone(),
                    detail: e.to_string(),
                }),
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
        let inputs = self.tensors(batch).map_err(&failed)?;
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

    fn tensors(
        &self,
        batch: &[&Prepared],
    ) -> ort::Result<
        Vec<(
            std::borrow::Cow<'static, str>,
            ort::session::SessionInputValue<'static>,
        )>,
    > {
        let m = &self.manifest;
        match m.kind {
            ModelKind::TokenIds => {
                let width = batch.iter().map(|p| p.len()).max().unwrap_or(0).max(1);
                let mut ids = vec![0_i64; batch.len() * width];
                let mut mask = vec![0_i64; batch.len() * width];
                for (row, item) in batch.iter().enumerate() {
                    if let Prepared::Tokens { ids: i, mask: k } = item {
                        ids[row * width..row * width + i.len()].copy_from_slice(i);
                        mask[row * width..row * width + k.len()].copy_from_slice(k);
                    }
                }
                let shape = [batch.len(), width];
                Ok(vec![
                    (
                        name_of(&m.inputs.input_ids),
                        Tensor::from_array((shape, ids))?.into(),
                    ),
                    (
                        name_of(&m.inputs.attention_mask),
                        Tensor::from_array((shape, mask))?.into(),
                    ),
                ])
            }
            ModelKind::String => {
                let texts: Vec<String> = batch
                    .iter()
                    .map(|p| match p {
                        Prepared::Text(t) => t.clone(),
                        Prepared::Tokens { .. } => String::new(),
                    })
                    .collect();
                let tensor = Tensor::from_string_array(([batch.len()], texts.as_slice()))?;
                Ok(vec![(name_of(&m.inputs.text), tensor.into())])
            }
        }
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

/// One encoding's ids and mask.
fn tokens(encoding: &tokenizers::Encoding) -> Prepared {
    Prepared::Tokens {
        ids: encoding.get_ids().iter().map(|&id| i64::from(id)).collect(),
        mask: encoding
            .get_attention_mask()
            .iter()
            .map(|&m| i64::from(m))
            .collect(),
    }
}

fn name_of(name: &Option<String>) -> std::borrow::Cow<'static, str> {
    std::borrow::Cow::Owned(name.clone().unwrap_or_default())
}

/// Builds a session; ort's builder errors are not `Send`, so they leave as strings.
fn build_session(path: &Path, config: &SessionConfig) -> Result<Session, String> {
    let env = environment().map_err(|e| e.to_string())?;
    let level = match config.optimization {
        Optimization::Disable => GraphOptimizationLevel::Disable,
        Optimization::Basic => GraphOptimizationLevel::Level1,
        Optimization::Extended => GraphOptimizationLevel::Level2,
        Optimization::All => GraphOptimizationLevel::All,
    };
    let build = || -> ort::Result<Session> {
        Session::builder(env)?
            .with_optimization_level(level)?
            .with_intra_threads(config.intra_threads.max(1))?
            .with_inter_threads(1)?
            .commit_from_file(path)
    };
    build().map_err(|e| e.to_string())
}

fn load_tokenizer(path: &Path, max_tokens: usize) -> Result<Tokenizer, ClassifierError> {
    let error = |detail: String| ClassifierError::Tokenizer {
        path: path.to_path_buf(),
        detail,
    };
    let mut tokenizer = Tokenizer::from_file(path).map_err(|e| error(e.to_string()))?;
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: max_tokens,
            ..Default::default()
        }))
        .map_err(|e| error(e.to_string()))?;
    Ok(tokenizer)
}
