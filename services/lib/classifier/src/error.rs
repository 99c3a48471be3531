//! Everything that can go wrong loading or running a model, as one typed error.

use std::path::PathBuf;

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ClassifierError {
    /// The ONNX Runtime shared library could not be loaded (missing, unreadable, too old).
    #[error("cannot load the ONNX Runtime library {path}: {detail}")]
    Runtime {
        /// The library path that was tried.
        path: PathBuf,
        /// The loader's explanation.
        detail: String,
    },
    /// A model was loaded before [`crate::init_runtime`].
    #[error("ONNX Runtime is not initialised: call offpath_classifier::init_runtime first")]
    RuntimeNotInitialised,
    /// The model directory has no readable manifest.
    #[error("cannot read the model manifest {path}: {source}")]
    ManifestMissing {
        /// The manifest path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The manifest is not valid.
    #[error("invalid model manifest {path}: {detail}")]
    ManifestInvalid {
        /// The manifest path.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A file the manifest names is missing or unreadable.
    #[error("model file {path} is missing or unreadable: {source}")]
    FileMissing {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file's sha256 differs from the manifest's.
    #[error("model file {path} does not match its manifest (sha256 {actual}, expected {expected})")]
    ChecksumMismatch {
        /// The file.
        path: PathBuf,
        /// The manifest's sha256.
        expected: String,
        /// The file's sha256.
        actual: String,
    },
    /// The tokenizer file could not be parsed.
    #[error("cannot load tokenizer {path}: {detail}")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// The parser's explanation.
        detail: String,
    },
    /// ONNX Runtime rejected the model file.
    #[error("ONNX Runtime cannot load model {path}: {detail}")]
    Session {
        /// The model file.
        path: PathBuf,
        /// ONNX Runtime's explanation.
        detail: String,
    },
    /// The model's tensors do not match the manifest (names, kinds).
    #[error("model {model} does not match its manifest: {detail}")]
    ModelMismatch {
        /// Model name.
        model: String,
        /// What differs.
        detail: String,
    },
    /// Tokenizing a text failed.
    #[error("tokenizing for model {model} failed: {detail}")]
    Tokenize {
        /// Model name.
        model: String,
        /// The tokenizer's explanation.
        detail: String,
    },
    /// Inference failed or was cancelled (`RunOptions::terminate`).
    #[error("inference with model {model} failed: {detail}")]
    Inference {
        /// Model name.
        model: String,
        /// ONNX Runtime's explanation.
        detail: String,
    },
    /// The output tensor has a shape the manifest does not allow.
    #[error("model {model} returned output of shape {shape:?}, expected [{rows}, >{column}]")]
    WrongShape {
        /// Model name.
        model: String,
        /// The shape received.
        shape: Vec<usize>,
        /// Expected rows (batch size).
        rows: usize,
        /// Highest label column the manifest reads.
        column: usize,
    },
}
