//! offpath's models: load a model directory through its manifest (`model.toml`), turn
//! texts into tensors (the `tokenizers` crate for token models, a string tensor for graphs
//! that tokenize themselves), group a batch by length to cut padding, run ONNX Runtime
//! (loaded at run time from the bootstrap's shared library) and return per-label scores.
//! A [`policy`] combines labels of several models into one [`Decision`].
//!
//! Flow: [`init_runtime`] once per process → [`Model::load`] per inference thread →
//! [`Model::prepare`] each text → [`plan_batches`] by length → [`Model::infer`] each batch
//! (optionally with `RunOptions` a watchdog can terminate) → [`Assessment::combine`].
//! This crate knows nothing of NATS.

mod batch;
mod error;
mod manifest;
mod model;
pub mod policy;
mod runtime;

pub use batch::plan_batches;
pub use error::ClassifierError;
pub use manifest::{Inputs, Label, Manifest, ModelKind, Output};
pub use model::{Model, Optimization, Prepared, SessionConfig};
pub use ort::session::RunOptions;
pub use policy::{Assessment, Decision};
pub use runtime::init_runtime;
