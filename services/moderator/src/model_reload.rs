//! Model hot reload. On SIGHUP the moderator reads its model directories (`--model`) again,
//! and so it does when the fleet's policy bucket gets a policy file that pins model versions
//! (`[models]`) other than the ones loaded: a fleet changes models together, and each
//! moderator puts the new models and the policies written for them in force in one step.
//! When a model's `model.toml` changed, it loads the new models on a new generation of
//! inference threads beside the running one ([`crate::pool::Pool::reload`]), resolves the
//! policies in force against them, and then switches: batches formed from then on run on
//! the new models, the old threads finish the batches they hold and exit. Every verdict
//! names the models that made it; the spam-wave cache never serves the old models'
//! assessments. Requests are neither dropped nor repeated: they wait in the batcher as
//! usual while the new models load.
//!
//! Refused, with the models in force kept, a log line and
//! `offpath_moderator_model_reloads_total{outcome="refused"}`: a directory without a valid
//! manifest, files that do not match their manifest, models the policies in force cannot
//! resolve against (a label they name is gone), and a changed `model.toml` whose model
//! kept its version (a verdict names a model by name and version: the same pair must
//! always mean the same model). To change models, put the new files in place (a new
//! directory swapped in by renaming a symlink is atomic) and send SIGHUP.

use std::path::PathBuf;
use std::sync::Arc;

use offpath_classifier::Manifest;
use sha2::Digest;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::PolicySet;
use crate::metrics as m;
use crate::pipeline::Shared;

/// What a model directory held when it was last loaded: name, version and the digest of
/// its `model.toml` (which holds the sha256 of every file the model reads).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    name: String,
    version: String,
    manifest: [u8; 32],
}

/// The model directories and what was last loaded from them (one reload at a time: the
/// SIGHUP handler and the bucket watcher share it behind a lock).
pub(crate) struct ModelFiles {
    dirs: Vec<PathBuf>,
    loaded: Vec<Fingerprint>,
}

impl ModelFiles {
    /// What `dirs` hold now (read when the moderator loads its models).
    pub(crate) fn read(dirs: &[PathBuf]) -> Self {
        let loaded = read(dirs).map(|(_, f)| f).unwrap_or_default();
        Self {
            dirs: dirs.to_vec(),
            loaded,
        }
    }
}

/// The manifests of `dirs` and their fingerprints.
fn read(dirs: &[PathBuf]) -> Result<(Vec<Manifest>, Vec<Fingerprint>), String> {
    dirs.iter()
        .map(|dir| {
            let path = dir.join("model.toml");
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let manifest = Manifest::load(dir).map_err(|e| e.to_string())?;
            let fingerprint = Fingerprint {
                name: manifest.name.clone(),
                version: manifest.version.clone(),
                manifest: sha2::Sha256::digest(&bytes).into(),
            };
            Ok((manifest, fingerprint))
        })
        .collect::<Result<Vec<_>, String>>()
        .map(|pairs| pairs.into_iter().unzip())
}

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// New models are in force.
    Applied,
    /// Every `model.toml` is the one loaded: nothing to do.
    Unchanged,
}

/// Reads the model directories again and, when they changed, puts the new models in force
/// with the policies in force resolved against them, or with `policies` (a policy file's
/// text, from the bucket) when given.
pub(crate) async fn reload(
    shared: &Arc<Shared>,
    policies: Option<&str>,
) -> Result<Outcome, String> {
    let mut files = shared.model_files.lock().await;
    let outcome = try_reload(shared, &mut files, policies).await;
    let label = match &outcome {
        Ok(Outcome::Applied) => "applied",
        Ok(Outcome::Unchanged) => "unchanged",
        Err(why) => {
            warn!("model reload refused, the models in force are kept: {why}");
            "refused"
        }
    };
    metrics::counter!(m::MODEL_RELOADS, "outcome" => label).increment(1);
    outcome
}

/// A policy bucket value about to be applied: when it pins model versions that are not
/// loaded, loads them first ([`reload`] with its text). Nothing happens otherwise; a
/// refusal leaves the value to be refused by the policies, which counts it too.
pub(crate) async fn follow_pins(shared: &Arc<Shared>, value: Option<&[u8]>) {
    let Some(text) = value.and_then(|v| std::str::from_utf8(v).ok()) else {
        return;
    };
    let pins = PolicySet::pins(text);
    let loaded = shared.policies.manifests();
    let satisfied = pins.iter().all(|(name, version)| {
        loaded
            .iter()
            .any(|m| &m.name == name && &m.version == version)
    });
    if !satisfied {
        info!(
            ?pins,
            "the fleet's policies pin other model versions: reloading the models"
        );
        let _ = reload(shared, Some(text)).await;
    }
}

async fn try_reload(
    shared: &Arc<Shared>,
    files: &mut ModelFiles,
    policies: Option<&str>,
) -> Result<Outcome, String> {
    let (manifests, found) = read(&files.dirs)?;
    if let Some(text) = policies {
        for (name, version) in PolicySet::pins(text) {
            let held = manifests
                .iter()
                .find(|m| m.name == name)
                .map(|m| m.version.as_str());
            if held != Some(version.as_str()) {
                return Err(format!(
                    "the policies pin {name} {version:?}; this host's model directories hold {}",
                    held.map_or("no such model".to_string(), |v| format!("version {v:?}"))
                ));
            }
        }
    }
    if found == files.loaded {
        info!("the model files are the ones in force");
        return Ok(Outcome::Unchanged);
    }
    for (old, new) in files.loaded.iter().zip(&found) {
        if old.name == new.name && old.version == new.version && old.manifest != new.manifest {
            return Err(format!(
                "{}'s model.toml changed but its version ({}) did not: give changed models \
                 a new version, verdicts name a model by it",
                new.name, new.version
            ));
        }
    }
    // Before loading anything: the policies must resolve against the new models.
    let set = match policies {
        Some(text) => PolicySet::parse(text, &manifests).map_err(|p| p.join("; "))?,
        None => shared.policies.resolve_with(&manifests)?,
    };
    let replaced = (shared.pool.models(), shared.policies.manifests());
    let loading = Arc::clone(shared);
    let models = tokio::task::spawn_blocking(move || loading.pool.reload())
        .await
        .map_err(|e| format!("loading the models: {e}"))?
        .map_err(|e| e.to_string())?;
    m::model_info(&replaced.0, &replaced.1, 0.0);
    m::model_info(&models, &manifests, 1.0);
    shared.policies.replace_models(manifests, set);
    files.loaded = found;
    info!(
        model = %models.name,
        version = %models.version,
        replaced = %replaced.0.version,
        "models reloaded; the old threads exit after their batches"
    );
    Ok(Outcome::Applied)
}

/// On every SIGHUP until `stop` turns true: the models first (the policies in force are
/// resolved against the new ones), then the `--policies` file. Without a way to listen for
/// the signal (it cannot fail on Unix in practice), says so and returns.
pub(crate) async fn reload_on_sighup(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(err) => {
            warn!("cannot listen for SIGHUP, models and policies will not be reloaded: {err}");
            return;
        }
    };
    loop {
        let end = tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => true,
            received = hangups.recv() => received.is_none(),
        };
        if end {
            return;
        }
        // Refusals are counted and logged by the reloads themselves.
        let reloaded = reload(&shared, None).await;
        let _ = shared.policies.reload_file();
        if reloaded == Ok(Outcome::Applied) {
            // A bucket value refused for pinning models this host did not hold yet may
            // resolve now.
            crate::policies::read_current(&shared).await;
        }
    }
}
