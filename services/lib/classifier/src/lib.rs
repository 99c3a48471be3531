//! offpath's models: load a model directory through its manifest (`model.toml`), turn
//! texts into tensors (the `tokenizers` crate for token models, a string tensor for graphs
//! that tokenize themselves), group a batch by length to cut padding, run ONNX Runtime
//! (loaded at run time from the bootstrap's shared library) and return per-label scores.
//! A [`policy`] combines labels of several models into one [`Decision`].
//!
//! Flow: [`init_runtime`] once per process → [`Model::load`] per inference thread →
//! [`Normalizer`] each text (the policy scores the normalised text when it differs,
//! [`Views`]) → [`Model::prepare_windows`] (the text whole, or overlapping windows when it
//! is longer than the model reads) → [`plan_batches`] by length → [`Model::infer`] each
//! batch (optionally with `RunOptions` a watchdog can terminate) → each label's worst
//! window → [`Assessment::combine`]. [`Model::prepare`] is the model function alone (what
//! the parity test checks against Python).
//! This crate knows nothing of NATS.

// Functions over 60 lines (clippy.toml) in anything but tests are refused (issue 28).
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

mod batch;
mod error;
pub mod eval;
mod manifest;
mod model;
mod normalize;
pub mod policy;
mod runtime;

pub use batch::plan_batches;
pub use error::ClassifierError;
pub use manifest::{Inputs, Label, Manifest, ModelKind, Output};
pub use model::{Model, Optimization, Prepared, SessionConfig, WINDOW_OVERLAP};
pub use normalize::Normalizer;
pub use ort::session::RunOptions;
pub use policy::{Assessment, Decision, Views};
pub use runtime::init_runtime;
