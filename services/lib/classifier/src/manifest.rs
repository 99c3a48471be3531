//! `model.toml`: what a model directory holds and how to read its tensors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::ClassifierError;

/// How text reaches the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// `input_ids` + `attention_mask` (int64 [batch, seq]) from a `tokenizer.json`, and
    /// optionally `text` (string [batch]): the texts the ids were made from.
    TokenIds,
    /// One string tensor [batch]; the graph tokenizes itself.
    String,
}

/// Input tensor names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inputs {
    /// Token ids (kind `token_ids`).
    pub input_ids: Option<String>,
    /// Attention mask (kind `token_ids`).
    pub attention_mask: Option<String>,
    /// Text: the input of kind `string`; optional for kind `token_ids`, where it is fed,
    /// row for row, the text each row's token ids were made from (the normalised view when
    /// the policy normalised it, a window's own text for a long text read in windows).
    pub text: Option<String>,
}

/// The output tensor holding probabilities, float [batch, columns].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Output {
    /// Tensor name.
    pub name: String,
}

/// One label the model scores, with its thresholds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Label {
    /// Label name, e.g. `insult`; becomes a key of the verdict's `scores`.
    pub name: String,
    /// Column of the output tensor.
    pub column: usize,
    /// Score at or above which a message is flagged.
    pub flag: f32,
    /// Score at or above which a message is blocked.
    pub block: f32,
    /// A signal, not a verdict: scored and reported in every verdict, acted on only by a
    /// policy that opts in (`labels.<name> = { action = "flag" }` or `"block"`). Profanity
    /// is one: "damn, that was close" is no harm, and most chat that swears is not aimed
    /// at anyone (issue 29).
    #[serde(default)]
    pub signal: bool,
    /// Flags, never blocks, unless a policy opts in (`labels.<name> = { action = "block" }`):
    /// a score at either threshold sends the message to a person. For categories whose
    /// model card has no held-out data labelled by others to back an automatic removal
    /// (issue 29: threat, hate, sexual, self-harm, spam).
    #[serde(default)]
    pub flag_only: bool,
}

/// A parsed and validated `model.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Model name.
    pub name: String,
    /// Model version.
    pub version: String,
    /// Input kind.
    pub kind: ModelKind,
    /// ONNX file, relative to the directory.
    pub file: String,
    /// Tokenizer file (kind `token_ids`), relative to the directory.
    pub tokenizer: Option<String>,
    /// Longest token sequence (kind `token_ids`); 0 for string models.
    pub max_tokens: usize,
    /// Most texts per ONNX Runtime run; absent: a whole batch in one run. `1` for a model
    /// whose scores would otherwise depend on the other rows of the run (int8 *dynamic*
    /// quantization computes activation scales over the whole input tensor, padding
    /// included), so that a verdict depends on its text alone.
    #[serde(default)]
    pub rows_per_run: Option<usize>,
    /// Input tensor names.
    pub inputs: Inputs,
    /// Output tensor.
    pub output: Output,
    /// Scored labels.
    pub labels: Vec<Label>,
    /// File name → sha256 (hex) of every file the model needs.
    pub sha256: BTreeMap<String, String>,
    /// The directory the manifest was read from.
    #[serde(skip)]
    pub dir: PathBuf,
}

impl Manifest {
    /// Reads and validates `<dir>/model.toml`.
    pub fn load(dir: &Path) -> Result<Self, ClassifierError> {
        let path = dir.join("model.toml");
        let text =
            std::fs::read_to_string(&path).map_err(|source| ClassifierError::ManifestMissing {
                path: path.clone(),
                source,
            })?;
        let invalid = |detail: String| ClassifierError::ManifestInvalid {
            path: path.clone(),
            detail,
        };
        let mut manifest: Manifest = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        manifest.dir = dir.to_path_buf();
        manifest.validate().map_err(invalid)?;
        Ok(manifest)
    }

    fn validate(&self) -> Result<(), String> {
        if self.labels.is_empty() {
            return Err("no [[labels]]".into());
        }
        if self.rows_per_run == Some(0) {
            return Err("rows_per_run must be at least 1".into());
        }
        for label in &self.labels {
            let ok = |t: f32| (0.0..=1.0).contains(&t);
            if !ok(label.flag) || !ok(label.block) || label.flag > label.block {
                return Err(format!(
                    "label {}: need 0 <= flag <= block <= 1",
                    label.name
                ));
            }
        }
        match self.kind {
            ModelKind::TokenIds => {
                if self.inputs.input_ids.is_none() || self.inputs.attention_mask.is_none() {
                    return Err(
                        "kind token_ids needs inputs.input_ids and inputs.attention_mask".into(),
                    );
                }
                // Below a handful of tokens the special tokens alone exceed the limit.
                if self.tokenizer.is_none() || !(8..=8192).contains(&self.max_tokens) {
                    return Err(
                        "kind token_ids needs a tokenizer and 8 <= max_tokens <= 8192".into(),
                    );
                }
            }
            ModelKind::String if self.inputs.text.is_none() => {
                return Err("kind string needs inputs.text".into());
            }
            ModelKind::String => {}
        }
        let mut needed = vec![&self.file];
        needed.extend(self.tokenizer.as_ref());
        match needed
            .iter()
            .find(|f| !self.sha256.contains_key(f.as_str()))
        {
            Some(file) => Err(format!("no sha256 for {file}")),
            None => Ok(()),
        }
    }

    /// Path of a file named in the manifest.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Checks every file's sha256 against the manifest.
    pub fn verify_checksums(&self) -> Result<(), ClassifierError> {
        for (file, expected) in &self.sha256 {
            let path = self.path(file);
            let bytes = std::fs::read(&path).map_err(|source| ClassifierError::FileMissing {
                path: path.clone(),
                source,
            })?;
            let actual = hex(&Sha256::digest(&bytes));
            if !actual.eq_ignore_ascii_case(expected) {
                return Err(ClassifierError::ChecksumMismatch {
                    path,
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
