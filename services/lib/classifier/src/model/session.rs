//! Session options, and building a session and a tokenizer from a model directory's files.

use std::path::Path;

use ort::session::{Session, builder::GraphOptimizationLevel};
use tokenizers::{Tokenizer, TruncationParams};

use crate::error::ClassifierError;
use crate::runtime::environment;

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

/// Builds a session; ort's builder errors are not `Send`, so they leave as strings.
pub(super) fn build_session(path: &Path, config: &SessionConfig) -> Result<Session, String> {
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

pub(super) fn load_tokenizer(path: &Path, max_tokens: usize) -> Result<Tokenizer, ClassifierError> {
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
