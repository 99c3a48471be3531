//! The rules stage: a request's policy's text rules (keywords, regexes, links, density)
//! before the cache and the models. A rule that matches decides the verdict, and no
//! inference runs for it; or (`then = "models"`) it goes with the request as a note, and
//! the verdict is at least the rule's.
//! Lower-cases and normalises each text once, only when its policy has rules.

use offpath_classifier::Normalizer;
use offpath_protocol::ModerationRequest;

use crate::judge::Judge;
use crate::work::Screened;

/// Checks requests against their policy's text rules.
pub(crate) struct Screen {
    judge: std::sync::Arc<Judge>,
    normalizer: Normalizer,
}

impl Screen {
    /// A stage asking `judge` for each request's policy and verdict. The normaliser has
    /// no lexicon (the models' vocabulary lives on the inference threads): it folds
    /// look-alike characters, leetspeak, separators and spaced letters, and leaves
    /// stretched words as written.
    pub(crate) fn new(judge: std::sync::Arc<Judge>) -> Self {
        Self {
            judge,
            normalizer: Normalizer::new(),
        }
    }

    /// What the request's policy's text rules make of `request`; `counted`: a stream
    /// request, recorded as its sender's message (sender rules count only those).
    pub(crate) fn check(&self, request: &ModerationRequest, counted: bool) -> Screened {
        self.judge.by_rules(request, counted, |text| {
            (text.to_lowercase(), self.normalizer.second_view(text))
        })
    }
}
