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
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::PolicySet;
use crate::metrics as m;
use crate::policies::{Bucket, Change, LivePolicies};
use crate::pool::Pool;

/// What changes the models and policies in force: SIGHUP and the fleet's policy bucket.
/// Every change goes through `files`' lock, one at a time.
pub(crate) struct Reloader {
    pool: Arc<Pool>,
    policies: Arc<LivePolicies>,
    files: tokio::sync::Mutex<ModelFiles>,
    bucket: Bucket,
}

impl Reloader {
    /// Reloads `pool`'s models from `files`' directories and `policies` from their file
    /// and from `bucket`.
    pub(crate) fn new(
        pool: Arc<Pool>,
        policies: Arc<LivePolicies>,
        files: ModelFiles,
        bucket: Bucket,
    ) -> Self {
        Self {
            pool,
            policies,
            files: tokio::sync::Mutex::new(files),
            bucket,
        }
    }
}

/// Puts the fleet's policies in force before the first request, when the bucket has a
/// value ([`Bucket::read_current`]).
pub(crate) async fn read_bucket(reloader: &Arc<Reloader>) {
    if let Some(change) = reloader.bucket.read_current().await {
        apply_bucket_value(reloader, change).await;
    }
}

/// Follows the policy bucket until `stop` turns true, putting each change in force in
/// the order it came.
pub(crate) async fn follow_bucket(reloader: Arc<Reloader>, stop: watch::Receiver<bool>) {
    let (changes, mut received) = mpsc::channel(1);
    let watch = reloader.bucket.watch(stop, changes);
    let apply = async {
        while let Some(change) = received.recv().await {
            apply_bucket_value(&reloader, change).await;
        }
    };
    tokio::join!(watch, apply);
}

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
/// text, from the bucket) when given. The caller holds the `model_files` lock: every change
/// of models or policies goes through it, one at a time.
async fn reload(
    reloader: &Reloader,
    files: &mut ModelFiles,
    policies: Option<&str>,
) -> Result<Outcome, String> {
    let outcome = try_reload(reloader, files, policies).await;
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

/// Puts a policy bucket value in force (`None`: cleared). When it pins model versions that
/// are not loaded, loads them first (with its text as the policies). Runs as a task of its
/// own: a watcher that stops meanwhile must not cut a reload in half.
async fn apply_bucket_value(reloader: &Arc<Reloader>, change: Change) {
    let reloader = Arc::clone(reloader);
    let task = tokio::spawn(async move {
        let mut files = reloader.files.lock().await;
        if let Some(text) = change.as_deref()
            && !pins_satisfied(&reloader, text)
        {
            info!("the fleet's policies pin other model versions: reloading the models");
            // A refusal leaves the value to be refused by the policies, which counts it too.
            let _ = reload(&reloader, &mut files, Some(text)).await;
        }
        // Refusals are counted and logged by the policies.
        let _ = reloader
            .policies
            .apply_bucket_value(change.as_deref().map(str::as_bytes));
    });
    if let Err(err) = task.await {
        warn!("applying the policy bucket's value failed: {err}");
    }
}

/// Whether every model version `text` pins is loaded.
fn pins_satisfied(reloader: &Reloader, text: &str) -> bool {
    let loaded = reloader.policies.manifests();
    PolicySet::pins(text).iter().all(|(name, version)| {
        loaded
            .iter()
            .any(|m| &m.name == name && &m.version == version)
    })
}

async fn try_reload(
    reloader: &Reloader,
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
        None => reloader.policies.resolve_with(&manifests)?,
    };
    let expected = crate::pool::models_of(&manifests);
    let replaced = (reloader.pool.models(), reloader.policies.manifests());
    let loading = Arc::clone(&reloader.pool);
    let wanted = expected.clone();
    let next = tokio::task::spawn_blocking(move || loading.load(Some(&wanted)))
        .await
        .map_err(|e| format!("loading the models: {e}"))?
        .map_err(|e| e.to_string())?;
    // The rules first: a batch still running on the replaced models is decided by the
    // rules written for them, one on the new models by the new rules.
    m::model_info(&replaced.0, &replaced.1, 0.0);
    m::model_info(&expected, &manifests, 1.0);
    reloader.policies.replace_models(manifests, set);
    reloader.pool.install(next);
    files.loaded = found;
    info!(
        model = %expected.name,
        version = %expected.version,
        replaced = %replaced.0.version,
        "models reloaded; the old threads exit after their batches"
    );
    Ok(Outcome::Applied)
}

/// What SIGHUP does: the models first, then the `--policies` file. When the policy bucket
/// holds a value that is not in force (one refused for pinning models this host did not
/// hold yet), the models are loaded for it and it is put in force; otherwise the policies
/// in force are resolved against the new models.
async fn hangup(reloader: &Reloader) {
    let mut files = reloader.files.lock().await;
    let pending = match reloader.bucket.value().await {
        Some(text) if !reloader.policies.is_bucket_value_in_force(text.as_bytes()) => Some(text),
        _ => None,
    };
    // Refusals are counted and logged by the reloads themselves.
    match pending.as_deref() {
        Some(text) => {
            let _ = reload(reloader, &mut files, Some(text)).await;
            let _ = reloader.policies.apply_bucket_value(Some(text.as_bytes()));
        }
        _ => {
            let _ = reload(reloader, &mut files, None).await;
        }
    }
    let _ = reloader.policies.reload_file();
}

/// Listens for SIGHUP from the moment it is called (a SIGHUP before a handler exists would
/// end the process: the moderator makes this first, before its models load); `None` when
/// the signal cannot be listened for (it cannot fail on Unix in practice).
pub(crate) fn listen() -> Option<Signal> {
    match signal(SignalKind::hangup()) {
        Ok(hangups) => Some(hangups),
        Err(err) => {
            warn!("cannot listen for SIGHUP, models and policies will not be reloaded: {err}");
            None
        }
    }
}

/// Handles every SIGHUP ([`hangup`]) until `stop` turns true.
pub(crate) async fn reload_on_sighup(
    reloader: Arc<Reloader>,
    hangups: Option<Signal>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(mut hangups) = hangups else { return };
    loop {
        let end = tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => true,
            received = hangups.recv() => received.is_none(),
        };
        if end {
            return;
        }
        hangup(&reloader).await;
    }
}
