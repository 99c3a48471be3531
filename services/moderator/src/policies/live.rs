//! The policies in force, replaced whole while the moderator runs. Two sources:
//!
//! * the fleet's policy bucket ([`super::bucket`]): its value, while there is one, is in
//!   force; deleting it goes back to the file (or the built-in policy);
//! * the `--policies` file, read again on SIGHUP: put in force when the bucket holds no
//!   value, otherwise only checked (the fleet's policies outrank one host's file, so a
//!   stray SIGHUP cannot split a fleet).
//!
//! A text that does not resolve is refused and the policies in force are kept; a counter
//! moves and a log line says why. A verdict is decided with the set in force when it is
//! made, so a change drops or repeats no request.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use offpath_classifier::Manifest;
use sha2::Digest;
use tokio::sync::watch;
use tracing::{info, warn};

use super::PolicySet;
use crate::metrics as m;

/// Where the policies in force came from (the `source` label of the policy metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The built-in policy (no file, no bucket value).
    Builtin,
    /// The `--policies` file.
    File,
    /// The fleet's policy bucket.
    Bucket,
}

impl Source {
    /// Every source, for metrics that exist from the start.
    pub(crate) const ALL: [Source; 3] = [Source::Builtin, Source::File, Source::Bucket];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Source::Builtin => "builtin",
            Source::File => "file",
            Source::Bucket => "bucket",
        }
    }
}

/// The set in force, where it came from, and the digest of the last bucket value handled
/// (a watch that starts again replays the current value: the same text is not handled
/// twice, whatever its revision, so a bucket made anew with revisions from 1 still counts).
struct InForce {
    set: Arc<PolicySet>,
    source: Source,
    bucket_digest: Option<[u8; 32]>,
}

/// The policy set in force and what a change needs.
pub(crate) struct LivePolicies {
    state: RwLock<InForce>,
    manifests: Vec<Manifest>,
    file: Option<PathBuf>,
}

impl LivePolicies {
    /// The configuration's policies (its file, or the built-in policy).
    pub(crate) fn new(config: &crate::Config) -> Result<Self, crate::ModeratorError> {
        let manifests = config.manifests()?;
        let (set, source) = match &config.policies {
            Some(path) => (PolicySet::load(path, &manifests)?, Source::File),
            None => (PolicySet::builtin(&manifests), Source::Builtin),
        };
        m::policies(&set, None, source);
        Ok(Self {
            state: RwLock::new(InForce {
                set: Arc::new(set),
                source,
                bucket_digest: None,
            }),
            manifests,
            file: config.policies.clone(),
        })
    }

    /// The set in force now.
    pub(crate) fn current(&self) -> Arc<PolicySet> {
        Arc::clone(&self.read().set)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, InForce> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// SIGHUP: reads the `--policies` file again; puts it in force unless the bucket's value
    /// is, in which case the file is only checked.
    pub(crate) fn reload_file(&self) -> Result<(), String> {
        let Some(path) = &self.file else {
            info!("SIGHUP: no --policies file to read again; nothing changed");
            return Ok(());
        };
        let set = match PolicySet::load(path, &self.manifests) {
            Ok(set) => set,
            Err(err) => return self.refused(Source::File, err.to_string()),
        };
        if self.read().source == Source::Bucket {
            info!(
                "SIGHUP: {} is valid; the policy bucket's value stays in force (delete it to \
                 use the file)",
                path.display()
            );
            return Ok(());
        }
        self.apply(set, Source::File, Source::File);
        Ok(())
    }

    /// Puts a policy file's text from the bucket in force (refused when it is not UTF-8 or
    /// does not resolve against this moderator's models); `None` (the value was deleted)
    /// goes back to the `--policies` file, or the built-in policy without one. A value
    /// already handled is skipped.
    pub(crate) fn apply_bucket_value(&self, value: Option<&[u8]>) -> Result<(), String> {
        let digest: Option<[u8; 32]> = value.map(|v| sha2::Sha256::digest(v).into());
        if self.read().bucket_digest == digest {
            return Ok(());
        }
        self.state
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .bucket_digest = digest;
        let Some(bytes) = value else {
            let (set, source) = match &self.file {
                Some(path) => match PolicySet::load(path, &self.manifests) {
                    Ok(set) => (set, Source::File),
                    Err(err) => return self.refused(Source::Bucket, err.to_string()),
                },
                None => (PolicySet::builtin(&self.manifests), Source::Builtin),
            };
            self.apply(set, source, Source::Bucket);
            return Ok(());
        };
        let parsed = std::str::from_utf8(bytes)
            .map_err(|e| format!("the value is not UTF-8: {e}"))
            .and_then(|text| {
                PolicySet::parse(text, &self.manifests).map_err(|problems| problems.join("; "))
            });
        match parsed {
            Ok(set) => {
                self.apply(set, Source::Bucket, Source::Bucket);
                Ok(())
            }
            Err(why) => self.refused(Source::Bucket, why),
        }
    }

    /// Puts `set` (from `source`) in force; the reload counter is labelled with its `cause`
    /// (a deleted bucket value counts as the bucket's, whatever set it brings back).
    fn apply(&self, set: PolicySet, source: Source, cause: Source) {
        let names: Vec<String> = set
            .policies()
            .map(|p| format!("{}@{}", p.name, p.version))
            .collect();
        let old = {
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            state.source = source;
            std::mem::replace(&mut state.set, Arc::new(set))
        };
        m::policies(&self.current(), Some(&old), source);
        metrics::counter!(m::POLICY_RELOADS, "source" => cause.as_str(), "outcome" => "applied")
            .increment(1);
        info!(
            cause = cause.as_str(),
            in_force = source.as_str(),
            policies = %names.join(","),
            "policies changed"
        );
    }

    fn refused(&self, source: Source, why: String) -> Result<(), String> {
        metrics::counter!(m::POLICY_RELOADS, "source" => source.as_str(), "outcome" => "refused")
            .increment(1);
        warn!(
            source = source.as_str(),
            "policy change refused, the policies in force are kept: {why}"
        );
        Err(why)
    }
}

/// Reads the policy file again on every SIGHUP until `stop` turns true. Without a way to
/// listen for the signal (it cannot fail on Unix in practice), says so and returns.
pub(crate) async fn reload_on_sighup(live: Arc<LivePolicies>, mut stop: watch::Receiver<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(err) => {
            warn!("cannot listen for SIGHUP, policies will not be reloaded: {err}");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            received = hangups.recv() => {
                if received.is_none() {
                    return;
                }
                // Refusals are counted and logged by the reload itself.
                let _ = live.reload_file();
            }
        }
    }
}
