//! Shared by the classifier's tests: the repository's models and the bootstrap's ONNX
//! Runtime.

#![allow(dead_code)] // each test binary uses a different subset

pub(crate) mod data;

use std::path::PathBuf;

use offpath_classifier::{Model, SessionConfig, init_runtime};

/// The repository root.
pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

/// `$ORT_DYLIB_PATH`, else the bootstrap's `.tools/lib/libonnxruntime.so`.
pub(crate) fn ort_library() -> PathBuf {
    std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".tools/lib/libonnxruntime.so"))
}

/// Loads ONNX Runtime once; panics with the install command when it is missing.
pub(crate) fn runtime() {
    if let Err(err) = init_runtime(&ort_library()) {
        panic!("{err}; run scripts/bootstrap first (installs ONNX Runtime into .tools/)");
    }
}

/// Loads `models/<name>` with default session options.
pub(crate) fn model(name: &str) -> Model {
    runtime();
    Model::load(&root().join("models").join(name), &SessionConfig::default())
        .unwrap_or_else(|err| panic!("loading model {name}: {err}"))
}
