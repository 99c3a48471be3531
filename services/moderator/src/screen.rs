//! The rules stage: a request's policy's text rules (keywords, regexes) before the cache
//! and the models. A rule that matches decides the verdict, and no inference runs for it.
//! Lower-cases and normalises each text once, only when its policy has rules.

use offpath_classifier::Normalizer;
use offpath_protocol::{ModerationRequest, Verdict};

use crate::judge::Judge;

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

    /// The verdict of the text rule that decides `request`, if one does.
    pub(crate) fn check(&self, request: &ModerationRequest) -> Option<Verdict> {
        if !self.judge.has_text_rules(request) {
            return None;
        }
        let lowered = request.text.to_lowercase();
        let normalised = self.normalizer.second_view(&request.text);
        self.judge
            .by_rules(request, &lowered, normalised.as_deref())
    }
}
