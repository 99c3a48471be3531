//! Every way a model can be wrong gives a typed error, never a panic.

mod common;

use std::path::{Path, PathBuf};

use offpath_classifier::{ClassifierError, Model, SessionConfig, init_runtime};

/// A copy of `models/<name>` in a temporary directory, with `edit` applied to its manifest.
fn copy_model(name: &str, edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = common::root().join("models").join(name);
    for entry in std::fs::read_dir(&source).expect("model dir") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.path().join(path.file_name().expect("name"))).expect("copy");
    }
    let manifest = dir.path().join("model.toml");
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    std::fs::write(&manifest, edit(text)).expect("write manifest");
    dir
}

fn load(dir: &Path) -> Result<Model, ClassifierError> {
    common::runtime();
    Model::load(dir, &SessionConfig::default())
}

/// A missing ONNX Runtime library is a `Runtime` error naming the path.
#[test]
fn missing_runtime_library() {
    let err = init_runtime(&PathBuf::from("/nonexistent/libonnxruntime.so")).expect_err("fails");
    assert!(matches!(err, ClassifierError::Runtime { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/libonnxruntime.so"));
}

/// A directory without a manifest, or with a broken one, is reported as such.
#[test]
fn missing_or_invalid_manifest() {
    let empty = tempfile::tempdir().expect("tempdir");
    assert!(matches!(
        load(empty.path()),
        Err(ClassifierError::ManifestMissing { .. })
    ));
    type Edit = fn(String) -> String;
    let cases: [(&str, Edit); 4] = [
        ("not toml", |_| "this is = = not toml".into()),
        ("unknown key", |t| format!("surprise = 1\n{t}")),
        ("flag above block", |t| {
            // the thresholds are rebuilt values: lower whatever `block` is below any flag
            t.lines()
                .map(|l| {
                    if l.starts_with("block = ") {
                        "block = 0.0"
                    } else {
                        l
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
        }),
        ("no labels", |t| {
            t.split("[[labels]]").next().unwrap_or_default().to_string() + "[sha256]\n"
        }),
    ];
    for (name, edit) in cases {
        let dir = copy_model("profanity", edit);
        let err = load(dir.path()).expect_err(name);
        assert!(
            matches!(err, ClassifierError::ManifestInvalid { .. }),
            "{name}: {err:?}"
        );
    }
}

/// A model file that differs from its manifest's sha256 is refused.
#[test]
fn checksum_mismatch() {
    let dir = copy_model("profanity", |t| t);
    let onnx = dir.path().join("model.onnx");
    let mut bytes = std::fs::read(&onnx).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&onnx, bytes).expect("write");
    let err = load(dir.path()).expect_err("tampered");
    assert!(
        matches!(err, ClassifierError::ChecksumMismatch { .. }),
        "{err:?}"
    );
    std::fs::remove_file(&onnx).expect("remove");
    assert!(matches!(
        load(dir.path()),
        Err(ClassifierError::FileMissing { .. })
    ));
}

/// A file that is not an ONNX model (checksums skipped) is a `Session` error.
#[test]
fn corrupt_model_file() {
    let dir = copy_model("profanity", |t| t);
    std::fs::write(dir.path().join("model.onnx"), b"not a model").expect("write");
    common::runtime();
    let config = SessionConfig {
        verify_checksums: false,
        ..SessionConfig::default()
    };
    let err = Model::load(dir.path(), &config).expect_err("corrupt");
    assert!(matches!(err, ClassifierError::Session { .. }), "{err:?}");
}

/// Tensor names that the graph does not have are a `ModelMismatch` at load.
#[test]
fn mismatching_tensor_names() {
    let dir = copy_model("profanity", |t| {
        t.replace("text = \"text\"", "text = \"message\"")
    });
    let err = load(dir.path()).expect_err("mismatch");
    assert!(
        matches!(err, ClassifierError::ModelMismatch { .. }),
        "{err:?}"
    );
}

/// For the ensemble: a manifest naming a `text` input the graph lacks, one that leaves the
/// graph's `text` input unnamed, and one naming a token input as `text` are each a
/// `ModelMismatch` at load that says which input; an item prepared without its text is a
/// `ModelMismatch` when scoring, not a panic.
#[test]
fn text_input_mismatches() {
    type Edit = fn(String) -> String;
    let cases: [(&str, Edit, &str); 3] = [
        (
            "renamed",
            |t| t.replace("text = \"text\"", "text = \"message\""),
            "inputs.text = \"message\"",
        ),
        (
            "unnamed",
            |t| t.replace("text = \"text\"", ""),
            "graph input \"text\"",
        ),
        (
            "token input",
            |t| t.replace("text = \"text\"", "text = \"input_ids\""),
            "inputs.text",
        ),
    ];
    for (name, edit, says) in cases {
        let dir = copy_model("minilm-insult", edit);
        let err = load(dir.path()).expect_err(name);
        assert!(
            matches!(err, ClassifierError::ModelMismatch { .. }) && err.to_string().contains(says),
            "{name}: {err}"
        );
    }
    let mut model = common::model("minilm-insult");
    let textless = offpath_classifier::Prepared::Tokens {
        ids: vec![101, 7592, 102],
        mask: vec![1, 1, 1],
        text: None,
    };
    let err = model.infer(&[&textless], None).expect_err("no text");
    assert!(
        matches!(err, ClassifierError::ModelMismatch { .. }),
        "{err:?}"
    );
}

/// A label column outside the output tensor is a `WrongShape` when scoring.
#[test]
fn wrong_output_shape() {
    let dir = copy_model("profanity", |t| t.replace("column = 1", "column = 7"));
    let mut model = load(dir.path()).expect("loads");
    let err = model.score(&["hello"]).expect_err("column 7 of [1, 2]");
    assert!(matches!(err, ClassifierError::WrongShape { .. }), "{err:?}");
}

/// Hostile text (NUL bytes, lone control characters, 1 MiB) is scored, not a crash.
#[test]
fn hostile_text_is_scored() {
    let huge = "ab ".repeat(350_000);
    let texts = [
        "nul\0inside",
        "\u{1}\u{2}\u{7f}",
        "\u{202e}reversed",
        huge.as_str(),
        "",
    ];
    for name in ["profanity", "minilm-insult"] {
        let mut model = common::model(name);
        let scores = model.score(&texts).expect("scores");
        assert_eq!(scores.len(), texts.len());
        assert!(
            scores.iter().flatten().all(|s| (0.0..=1.0).contains(s)),
            "{name}: {scores:?}"
        );
    }
}
