//! The series of the models in force ([`MODEL_INFO`]), set when models load or reload.

use super::*;

/// Sets [`MODEL_INFO`] to `value` for `models` (`+`-joined names and versions, as verdicts
/// name them) described by `manifests`. The sha256 comes from each model's manifest,
/// which the pool checked against the files when it loaded them. A reload sets the
/// replaced models' series to 0.
pub(crate) fn model_info(
    models: &offpath_protocol::ModelRef,
    manifests: &[offpath_classifier::Manifest],
    value: f64,
) {
    let sha256 = manifests
        .iter()
        .map(|m| {
            m.sha256
                .get(&m.file)
                .map(|s| s.chars().take(12).collect())
                .unwrap_or_else(|| "unknown".to_string())
        })
        .collect::<Vec<String>>()
        .join("+");
    metrics::gauge!(
        MODEL_INFO,
        "name" => models.name.clone(),
        "version" => models.version.clone(),
        "sha256" => sha256,
    )
    .set(value);
}
