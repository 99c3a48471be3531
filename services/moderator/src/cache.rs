//! Spam waves: identical short texts within a short window reuse one inference. Bounded in
//! entries and in text length, oldest evicted first; an entry older than the window is
//! never used, nor one the models in force did not make (after a model reload).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::sync::Arc;

use offpath_classifier::Assessment;

use offpath_protocol::ModelRef;

/// Longest text cached, in bytes: waves are short messages, and the bound keeps memory at
/// `capacity × 256` bytes of text.
pub(crate) const MAX_CACHED_TEXT: usize = 256;

/// Recent assessments by exact text.
pub(crate) struct VerdictCache {
    inner: Mutex<Inner>,
    ttl: Duration,
    capacity: usize,
}

struct Inner {
    entries: HashMap<String, (Assessment, Arc<ModelRef>, Instant)>,
    order: VecDeque<String>,
}

impl VerdictCache {
    /// A cache of at most `capacity` texts, each valid for `ttl` (0 disables it).
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Self {
        let inner = Inner {
            entries: HashMap::new(),
            order: VecDeque::new(),
        };
        Self {
            inner: Mutex::new(inner),
            ttl,
            capacity,
        }
    }

    /// The assessment of `text` if `models` made it within the window.
    pub(crate) fn get(&self, text: &str, models: &ModelRef) -> Option<Assessment> {
        if self.capacity == 0 || text.len() > MAX_CACHED_TEXT {
            return None;
        }
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (assessment, made_by, at) = inner.entries.get(text)?;
        (at.elapsed() <= self.ttl && **made_by == *models).then(|| assessment.clone())
    }

    /// Remembers the assessment of `text` by `models`.
    pub(crate) fn put(&self, text: &str, assessment: &Assessment, models: &Arc<ModelRef>) {
        if self.capacity == 0 || text.len() > MAX_CACHED_TEXT {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner
            .entries
            .insert(
                text.to_string(),
                (assessment.clone(), Arc::clone(models), Instant::now()),
            )
            .is_none()
        {
            inner.order.push_back(text.to_string());
        }
        while inner.order.len() > self.capacity {
            if let Some(oldest) = inner.order.pop_front() {
                inner.entries.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use offpath_classifier::Decision;

    fn models(version: &str) -> Arc<ModelRef> {
        Arc::new(ModelRef {
            name: "m".into(),
            version: version.into(),
        })
    }

    fn assessment() -> Assessment {
        Assessment {
            scores: [("insult".to_string(), 0.9)].into(),
            decision: Decision::Block,
            decided_by: Some("insult".to_string()),
            spans: Default::default(),
        }
    }

    /// Hits within the window, misses after it, evicts the oldest past capacity, skips
    /// long texts.
    #[test]
    fn bounded_and_windowed() {
        let m = models("1");
        let cache = VerdictCache::new(2, Duration::from_secs(60));
        cache.put("a", &assessment(), &m);
        cache.put("b", &assessment(), &m);
        assert!(cache.get("a", &m).is_some());
        cache.put("c", &assessment(), &m);
        assert!(cache.get("a", &m).is_none(), "oldest evicted");
        assert!(cache.get("c", &m).is_some());
        let long = "x".repeat(MAX_CACHED_TEXT + 1);
        cache.put(&long, &assessment(), &m);
        assert!(cache.get(&long, &m).is_none());
        let expired = VerdictCache::new(2, Duration::ZERO);
        expired.put("a", &assessment(), &m);
        std::thread::sleep(Duration::from_millis(2));
        assert!(expired.get("a", &m).is_none(), "outside the window");
    }

    /// An assessment made by other models (before a model reload) is never reused.
    #[test]
    fn keyed_by_the_models() {
        let cache = VerdictCache::new(8, Duration::from_secs(60));
        cache.put("you idiot", &assessment(), &models("1"));
        assert!(cache.get("you idiot", &models("1")).is_some());
        assert!(cache.get("you idiot", &models("2")).is_none());
    }

    /// The key is the exact text: a cached verdict's `text_sha256` (the digest of the
    /// request's own text) always names the text that was assessed. Texts that differ only
    /// in case, spacing or Unicode form are assessed on their own.
    #[test]
    fn keyed_by_the_exact_text() {
        let cache = VerdictCache::new(8, Duration::from_secs(60));
        let m = models("1");
        cache.put("you idiot", &assessment(), &m);
        assert!(cache.get("you idiot", &m).is_some());
        for other in [
            "You idiot",
            "you idiot ",
            "you  idiot",
            "you idi\u{f6}t",
            "you idio\u{308}t",
        ] {
            assert!(cache.get(other, &m).is_none(), "{other:?} shares an entry");
        }
    }
}
