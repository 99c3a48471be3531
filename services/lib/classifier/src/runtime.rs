//! The process-wide ONNX Runtime: loaded once from a shared library path, kept for the
//! life of the process (ort allows one environment per process).

use std::path::Path;
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;

use crate::error::ClassifierError;

static ENVIRONMENT: OnceLock<Environment> = OnceLock::new();
static INIT: Mutex<()> = Mutex::new(());

/// Loads ONNX Runtime from `library` (`libonnxruntime.so.*`) and creates the environment.
/// Idempotent: later calls return the environment created by the first.
pub fn init_runtime(library: &Path) -> Result<&'static Environment, ClassifierError> {
    let runtime_error = |detail: String| ClassifierError::Runtime {
        path: library.to_path_buf(),
        detail,
    };
    // Checked on every call, so a wrong path is reported even after a good one was loaded.
    if !library.is_file() {
        return Err(runtime_error("no such file".into()));
    }
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env);
    }
    // Serialise first initialisations: ort refuses a second environment per process.
    let _guard = INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env);
    }
    let builder = ort::init_from(library).map_err(|e| runtime_error(e.to_string()))?;
    let env = builder
        .with_name("offpath")
        .build()
        .map_err(|e| runtime_error(e.to_string()))?;
    Ok(ENVIRONMENT.get_or_init(|| env))
}

/// The environment, if [`init_runtime`] succeeded.
pub(crate) fn environment() -> Result<&'static Environment, ClassifierError> {
    ENVIRONMENT
        .get()
        .ok_or(ClassifierError::RuntimeNotInitialised)
}
