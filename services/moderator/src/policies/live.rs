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
    /// The bucket's value in force (resolved again when the models change).
    bucket_text: Option<String>,
    /// The models' manifests the set was resolved against (replaced by a model reload).
    manifests: Arc<Vec<Manifest>>,
    /// Their versions as verdicts name them (`2+1.9.1`).
    models_version: String,
    /// The set in force before the last model reload and its models' versions: batches
    /// still running on the replaced models are decided by the rules written for them.
    previous: Option<(String, Arc<PolicySet>)>,
}

/// The policy set in force and what a change needs.
pub(crate) struct LivePolicies {
    state: RwLock<InForce>,
    file: Option<PathBuf>,
    /// When other policies or models were last put in force (0: none since start).
    changed_ms: std::sync::atomic::AtomicU64,
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
                bucket_text: None,
                models_version: crate::pool::models_of(&manifests).version,
                manifests: Arc::new(manifests),
                previous: None,
            }),
            file: config.policies.clone(),
            changed_ms: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// When other policies or models were last put in force, ms since the epoch (0: never
    /// since this process started): the brake's "push".
    pub(crate) fn changed_ms(&self) -> u64 {
        self.changed_ms.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn changed(&self) {
        let now = offpath_protocol::now_ms();
        self.changed_ms
            .store(now, std::sync::atomic::Ordering::Relaxed);
    }

    /// The set in force now.
    pub(crate) fn current(&self) -> Arc<PolicySet> {
        Arc::clone(&self.read().set)
    }

    /// The set that decides on scores made by models at `version` (a verdict's
    /// `model.version`): the set in force, or, for a batch that ran on the models a reload
    /// replaced, the set that was in force with them.
    pub(crate) fn for_models(&self, version: &str) -> Arc<PolicySet> {
        let state = self.read();
        match &state.previous {
            Some((previous, set)) if state.models_version != version && previous == version => {
                Arc::clone(set)
            }
            _ => Arc::clone(&state.set),
        }
    }

    /// Whether `value` is the bucket value in force (or was refused last time it came).
    pub(crate) fn is_bucket_value_in_force(&self, value: &[u8]) -> bool {
        let digest: [u8; 32] = sha2::Sha256::digest(value).into();
        let state = self.read();
        state.source == Source::Bucket && state.bucket_digest == Some(digest)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, InForce> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The manifests of the models in force.
    pub(crate) fn manifests(&self) -> Arc<Vec<Manifest>> {
        Arc::clone(&self.read().manifests)
    }

    /// The policies in force resolved again against other models' `manifests` (their
    /// source again: the bucket's value, the file, or the built-in policy).
    pub(crate) fn resolve_with(&self, manifests: &[Manifest]) -> Result<PolicySet, String> {
        let (source, text) = {
            let state = self.read();
            (state.source, state.bucket_text.clone())
        };
        match (source, text, &self.file) {
            (Source::Bucket, Some(text), _) => {
                PolicySet::parse(&text, manifests).map_err(|problems| problems.join("; "))
            }
            (Source::File, _, Some(path)) => {
                PolicySet::load(path, manifests).map_err(|e| e.to_string())
            }
            _ => Ok(PolicySet::builtin(manifests)),
        }
    }

    /// A model reload: the models' new `manifests` and the policies in force resolved
    /// against them ([`Self::resolve_with`]).
    pub(crate) fn replace_models(&self, manifests: Vec<Manifest>, set: PolicySet) {
        let (old, source) = {
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            let version = crate::pool::models_of(&manifests).version;
            let old_version = std::mem::replace(&mut state.models_version, version);
            state.manifests = Arc::new(manifests);
            let old = std::mem::replace(&mut state.set, Arc::new(set));
            state.previous = Some((old_version, Arc::clone(&old)));
            (old, state.source)
        };
        self.changed();
        m::policies(&self.current(), Some(&old), source);
    }

    /// SIGHUP: reads the `--policies` file again; puts it in force unless the bucket's value
    /// is, in which case the file is only checked.
    pub(crate) fn reload_file(&self) -> Result<(), String> {
        let Some(path) = &self.file else {
            info!("SIGHUP: no --policies file to read again; nothing changed");
            return Ok(());
        };
        let set = match PolicySet::load(path, &self.manifests()) {
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
        let previous = {
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            if state.bucket_digest == digest {
                return Ok(());
            }
            std::mem::replace(&mut state.bucket_digest, digest)
        };
        let result = self.put_bucket_value(value);
        if result.is_err() {
            // Not handled: the same value is tried again when it comes again (pushed
            // again, say, once this host holds the model versions it pins).
            self.state
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .bucket_digest = previous;
        }
        result
    }

    fn put_bucket_value(&self, value: Option<&[u8]>) -> Result<(), String> {
        let manifests = self.manifests();
        let Some(bytes) = value else {
            let (set, source) = match &self.file {
                Some(path) => match PolicySet::load(path, &manifests) {
                    Ok(set) => (set, Source::File),
                    Err(err) => return self.refused(Source::Bucket, err.to_string()),
                },
                None => (PolicySet::builtin(&manifests), Source::Builtin),
            };
            self.state
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .bucket_text = None;
            self.apply(set, source, Source::Bucket);
            return Ok(());
        };
        let parsed = std::str::from_utf8(bytes)
            .map_err(|e| format!("the value is not UTF-8: {e}"))
            .and_then(|text| {
                let set = PolicySet::parse(text, &manifests).map_err(|p| p.join("; "))?;
                Ok((set, text.to_string()))
            });
        match parsed {
            Ok((set, text)) => {
                self.state
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .bucket_text = Some(text);
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
        if *old != *self.current() {
            self.changed();
        }
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
