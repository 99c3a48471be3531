//! The policies in force, replaced whole while the moderator runs: on SIGHUP the
//! `--policies` file is read again, and whenever the fleet's policy bucket changes
//! (`offpath policy push`; [`super::bucket`]) its value is put in force; the latest change
//! wins. A text that does not resolve is refused and the policies in force are kept;
//! either way a counter moves and a log line says why.
//! A verdict is decided with the set in force when it is made, so a reload drops or
//! repeats no request: those decided before it keep the old policy, the rest get the new.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use offpath_classifier::Manifest;
use tokio::sync::watch;
use tracing::{info, warn};

use super::PolicySet;
use crate::metrics as m;

/// Where a new policy set came from (the `source` label of the reload counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The `--policies` file, read again on SIGHUP.
    File,
    /// The fleet's policy bucket.
    Bucket,
}

impl Source {
    /// Every source, for metrics that exist from the start.
    pub(crate) const ALL: [Source; 2] = [Source::File, Source::Bucket];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Source::File => "file",
            Source::Bucket => "bucket",
        }
    }
}

/// The policy set in force and what a reload needs.
pub(crate) struct LivePolicies {
    current: RwLock<Arc<PolicySet>>,
    manifests: Vec<Manifest>,
    file: Option<PathBuf>,
}

impl LivePolicies {
    /// The configuration's policies (its file, or the built-in policy).
    pub(crate) fn new(config: &crate::Config) -> Result<Self, crate::ModeratorError> {
        let manifests = config.manifests()?;
        let set = match &config.policies {
            Some(path) => PolicySet::load(path, &manifests)?,
            None => PolicySet::builtin(&manifests),
        };
        m::policies(&set, None);
        Ok(Self {
            current: RwLock::new(Arc::new(set)),
            manifests,
            file: config.policies.clone(),
        })
    }

    /// The set in force now.
    pub(crate) fn current(&self) -> Arc<PolicySet> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Reads the `--policies` file again and puts it in force, or keeps the set in force
    /// when it cannot be used (no file configured, unreadable, invalid).
    pub(crate) fn reload_file(&self) -> Result<(), String> {
        let Some(path) = &self.file else {
            return self.refused(Source::File, "no --policies file to read again".into());
        };
        match PolicySet::load(path, &self.manifests) {
            Ok(set) => {
                self.apply(set, Source::File);
                Ok(())
            }
            Err(err) => self.refused(Source::File, err.to_string()),
        }
    }

    /// Puts a policy file's text from the bucket in force (refused when it is not UTF-8
    /// or does not resolve against this moderator's models); `None` (the value was deleted)
    /// goes back to the `--policies` file, or the built-in policy without one.
    pub(crate) fn apply_bucket_value(&self, value: Option<&[u8]>) -> Result<(), String> {
        let set = match value {
            None => match &self.file {
                Some(path) => PolicySet::load(path, &self.manifests).map_err(|e| e.to_string()),
                None => Ok(PolicySet::builtin(&self.manifests)),
            },
            Some(bytes) => std::str::from_utf8(bytes)
                .map_err(|e| format!("the value is not UTF-8: {e}"))
                .and_then(|text| {
                    PolicySet::parse(text, &self.manifests).map_err(|problems| problems.join("; "))
                }),
        };
        match set {
            Ok(set) => {
                self.apply(set, Source::Bucket);
                Ok(())
            }
            Err(why) => self.refused(Source::Bucket, why),
        }
    }

    fn apply(&self, set: PolicySet, source: Source) {
        let names: Vec<String> = set
            .policies()
            .map(|p| format!("{}@{}", p.name, p.version))
            .collect();
        let old = {
            let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *current, Arc::new(set))
        };
        m::policies(&self.current(), Some(&old));
        metrics::counter!(m::POLICY_RELOADS, "source" => source.as_str(), "outcome" => "applied")
            .increment(1);
        info!(source = source.as_str(), policies = %names.join(","), "policies reloaded");
    }

    fn refused(&self, source: Source, why: String) -> Result<(), String> {
        metrics::counter!(m::POLICY_RELOADS, "source" => source.as_str(), "outcome" => "refused")
            .increment(1);
        warn!(
            source = source.as_str(),
            "policies not reloaded, the ones in force are kept: {why}"
        );
        Err(why)
    }
}

/// Reloads the policy file on every SIGHUP until `stop` turns true. Without a way to
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
