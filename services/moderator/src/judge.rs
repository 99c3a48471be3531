//! The judging stage: which policy judges a request, the verdict it gets on the models'
//! scores (or `unmoderated` without them), and the review-queue item a verdict makes.

use std::sync::Arc;

use offpath_classifier::{Assessment, Decision};
use offpath_protocol::{
    Action, ModelRef, ModerationRequest, PROTOCOL_VERSION, PolicyRef, ReviewItem, ReviewKind, Span,
    Verdict, now_ms, text_sha256,
};
use tracing::debug;

use crate::brake::{Brake, Judged};
use crate::metrics as m;
use crate::policies::LivePolicies;
use crate::policies::text_rules::{Message, RuleAction, Then};
use crate::pool::Pool;
use crate::senders::Senders;
use crate::work::{RuleNote, Screened};

/// Judges requests by the policies in force (replaced whole on a reload); the pool tells
/// which models are in force when a verdict has no assessment.
pub(crate) struct Judge {
    pool: Arc<Pool>,
    policies: Arc<LivePolicies>,
    senders: Arc<Senders>,
    brake: Brake,
}

impl Judge {
    /// A judge of the policies `policies` over the models of `pool`, sender rules counting
    /// what `senders` knows, automatic blocks held by `brake`.
    pub(crate) fn new(
        pool: Arc<Pool>,
        policies: Arc<LivePolicies>,
        senders: Arc<Senders>,
        brake: Brake,
    ) -> Self {
        Self {
            pool,
            policies,
            senders,
            brake,
        }
    }

    /// A stream request's verdict is settled: the brake may hold a block as a flag
    /// (`reason: "brake"`), and a block is its sender's strike, except a campaign rule's
    /// (a person may repeat a line that bots spread; the rule goes on blocking the copies).
    pub(crate) fn settled(&self, request: &ModerationRequest, verdict: &mut Verdict) {
        // (counts people, counts campaigns) of the rule that decided, if one did.
        let rule = verdict.rule.as_deref().and_then(|id| {
            let policies = self.policies.for_models(&verdict.model.version);
            let selection =
                policies.select(&request.tenant, &request.room, request.policy.as_deref());
            let rules = selection.rules.text_rules();
            let rule = rules.iter().find(|r| r.id == id)?;
            Some((rule.counts_people(), rule.counts_campaigns()))
        });
        let judged = Judged {
            action: verdict.action,
            exempt: rule.is_some_and(|(people, _)| people),
            pushed_ms: self.policies.changed_ms(),
        };
        // A block that already says why (a rule's, after the models failed) stays one.
        if verdict.reason.is_none() && self.brake.holds(&request.tenant, judged, now_ms()) {
            verdict.action = Action::Flag;
            verdict.reason = Some("brake".into());
        }
        if !rule.is_some_and(|(_, campaigns)| campaigns) {
            self.senders.strike(request, verdict);
        }
    }

    /// The verdict on `request`: decided by the policy in force on the assessment and the
    /// models that made it, or, without one, `unmoderated` by the models in force; raised
    /// to a text rule's action by its `note` (`then = "models"`) when that is more severe.
    pub(crate) fn verdict(
        &self,
        request: &ModerationRequest,
        assessed: Option<(&Assessment, &ModelRef)>,
        (inference_ms, reason): (u64, Option<&str>),
        note: Option<&RuleNote>,
    ) -> Verdict {
        let in_force;
        let (assessment, models) = match assessed {
            Some((assessment, models)) => (Some(assessment), models),
            None => {
                in_force = self.pool.models();
                (None, &*in_force)
            }
        };
        // The models scored every label; the request's policy decides on them (the cache
        // holds scores, so a cached assessment serves every policy).
        let policies = self.policies.for_models(&models.version);
        let selection = policies.select(&request.tenant, &request.room, request.policy.as_deref());
        if let Some(fallback) = selection.fallback {
            metrics::counter!(m::POLICY_FALLBACKS, "reason" => fallback.reason()).increment(1);
            debug!(id = %request.id, requested = ?request.policy, applied = %selection.rules.name,
                "request named an unknown policy");
        }
        let decided = assessment.map(|a| selection.rules.decide(&a.scores));
        let action = match decided.as_ref().map(|a| a.decision) {
            None => Action::Unmoderated,
            Some(Decision::Allow) => Action::Allow,
            Some(Decision::Flag) => Action::Flag,
            Some(Decision::Block) => Action::Block,
        };
        let category = decided.as_ref().and_then(|a| a.decided_by.clone());
        let span = span_of(assessment, category.as_deref());
        let policy = policies.from_file().then(|| PolicyRef {
            name: selection.rules.name.clone(),
            version: selection.rules.version.clone(),
        });
        let judged = decided.is_some();
        let verdict = RuleNote::apply(
            note,
            Verdict {
                action,
                scores: decided.map(|a| a.scores).unwrap_or_default(),
                queued_ms: now_ms()
                    .saturating_sub(request.sent_at_ms)
                    .saturating_sub(inference_ms),
                inference_ms,
                reason: reason.map(String::from),
                policy,
                category,
                span,
                ..blank(request, models)
            },
        );
        count(request, &selection.rules.name, &verdict, judged);
        verdict
    }

    /// What the request's policy's text rules make of it ([`TextRules::check`] on the text,
    /// and on what `views` gives of a text: it lower-cased and its normalised form when that
    /// differs): a verdict with no scores and the models in force named, a note, or
    /// nothing. Counted per rule. A stream request is recorded as its sender's message
    /// first (its signature is taken from its normalised view: of its first
    /// [`SIMILAR_BYTES`] only, when the policy has no rules).
    pub(crate) fn by_rules(
        &self,
        request: &ModerationRequest,
        counted: bool,
        views: impl FnOnce(&str) -> (String, Option<String>),
    ) -> Screened {
        let models = self.pool.models();
        let policies = self.policies.for_models(&models.version);
        let selection = policies.select(&request.tenant, &request.room, request.policy.as_deref());
        let rules = selection.rules.text_rules();
        // The views, once: near-duplicates of every counted message are found by its
        // normalised text.
        let recording = counted && self.senders.records();
        if rules.is_empty() && !recording {
            return Screened::Passed;
        }
        let (lowered, normalised) = views(read(&request.text, !rules.is_empty()));
        let similar = normalised.as_deref().unwrap_or(&lowered);
        let sender = recording
            .then(|| {
                self.senders
                    .message(request, similar, rules.count_senders())
            })
            .flatten();
        if rules.is_empty() {
            return Screened::Passed;
        }
        let message = message_of(request, &lowered, normalised.as_deref());
        let checked = rules.check(&message, sender.as_ref());
        count_shadow(&selection.rules.name, &checked.shadow);
        let Some(rule) = checked.decided else {
            return Screened::Passed;
        };
        let action = action_of(rule.action);
        let policy = selection.rules.name.clone();
        metrics::counter!(m::RULE_HITS, "policy" => policy.clone(), "rule" => rule.id.clone(),
            "action" => action.as_str())
        .increment(1);
        let category = rule.category.clone().filter(|_| action != Action::Allow);
        if rule.then == Then::Models {
            return Screened::Noted(RuleNote {
                rule: rule.id.clone(),
                action,
                category,
            });
        }
        let verdict = Verdict {
            action,
            queued_ms: now_ms().saturating_sub(request.sent_at_ms),
            policy: policies.from_file().then(|| PolicyRef {
                name: selection.rules.name.clone(),
                version: selection.rules.version.clone(),
            }),
            category,
            rule: Some(rule.id.clone()),
            counts: sender
                .as_ref()
                .map(|view| rule.counts(view))
                .filter(|counts| !counts.is_empty()),
            campaign: sender
                .filter(|_| rule.counts_campaigns())
                .and_then(|view| view.near.campaign),
            ..blank(request, &models)
        };
        count(request, &policy, &verdict, true);
        Screened::Decided(Box::new(verdict))
    }

    /// The review-queue item of `verdict` on `request`: a flagged message goes to a
    /// person, and a blocked one when its policy says `review_blocked`. A member's report
    /// always does, whatever the model said, as an item whose verdict names the reported
    /// message (so a reviewer's decision acts on it); no verdict is published for it.
    pub(crate) fn review_of(
        &self,
        request: &ModerationRequest,
        verdict: &Verdict,
    ) -> Option<ReviewItem> {
        if let Some(report) = &request.report {
            let mut verdict = verdict.clone();
            verdict.id = report.message_id.clone();
            let mut item = ReviewItem::new(
                ReviewKind::Report,
                &verdict,
                &request.text,
                report.message_sent_at_ms,
            );
            item.report = Some(report.clone());
            item.context = request.context.clone();
            return Some(item);
        }
        let kind = match verdict.action {
            Action::Flag => ReviewKind::Flag,
            Action::Block if self.reviews_blocked(request, verdict) => ReviewKind::Block,
            _ => return None,
        };
        let mut item = ReviewItem::new(kind, verdict, &request.text, request.sent_at_ms);
        item.context = request.context.clone();
        Some(item)
    }

    /// Whether the policy that decided `verdict` reviews what it blocks.
    fn reviews_blocked(&self, request: &ModerationRequest, verdict: &Verdict) -> bool {
        let set = self.policies.for_models(&verdict.model.version);
        let selection = set.select(&request.tenant, &request.room, request.policy.as_deref());
        selection.rules.reviews_blocked()
    }
}

/// Where the deciding `category` scored highest, as the model's assessment located it (the
/// policy's decision on its scores does not need to); none for a score that is no number
/// or an offset past what the contract carries.
fn span_of(assessment: Option<&Assessment>, category: Option<&str>) -> Option<Span> {
    let span = assessment?.spans.get(category?)?;
    if !span.score.is_finite() {
        return None;
    }
    Some(Span {
        start: u32::try_from(span.start).ok()?,
        end: u32::try_from(span.end).ok()?,
        score: span.score.clamp(0.0, 1.0),
    })
}

/// A verdict on `request` by `models` that decides nothing yet (`unmoderated`, no scores,
/// no time), bound to the exact text judged (a cached assessment is for the same exact
/// text: the cache is keyed by it).
fn blank(request: &ModerationRequest, models: &ModelRef) -> Verdict {
    Verdict {
        v: PROTOCOL_VERSION,
        id: request.id.clone(),
        tenant: request.tenant.clone(),
        room: request.room.clone(),
        sender: request.sender.clone(),
        action: Action::Unmoderated,
        scores: Default::default(),
        model: models.clone(),
        queued_ms: 0,
        inference_ms: 0,
        reason: None,
        text_sha256: Some(text_sha256(&request.text)),
        policy: None,
        review: None,
        category: None,
        span: None,
        rule: None,
        campaign: None,
        counts: None,
    }
}

/// Counts a verdict its policy made (`judged`: on the models' scores, or a rule's): by
/// policy and final action, its time since the request was sent, and the label that
/// decided (rules' categories are counted per rule instead).
fn count(request: &ModerationRequest, policy: &str, verdict: &Verdict, judged: bool) {
    if !judged && verdict.rule.is_none() {
        return;
    }
    let action = verdict.action.as_str();
    metrics::counter!(m::POLICY_VERDICTS, "policy" => policy.to_string(), "action" => action)
        .increment(1);
    let waited = now_ms().saturating_sub(request.sent_at_ms) as f64 / 1000.0;
    metrics::histogram!(m::POLICY_VERDICT_SECONDS, "policy" => policy.to_string()).record(waited);
    if let (None, Some(category)) = (&verdict.rule, &verdict.category) {
        metrics::counter!(m::VERDICT_CATEGORIES, "category" => category.clone(), "action" => action)
            .increment(1);
    }
}

/// Bytes of a text a signature is taken from when no rule reads the whole text (a bound
/// on the normaliser's work for every recorded message; a signature reads at most
/// [`crate::policies::text_rules::campaign::MAX_CHARS`] letters and digits anyway).
const SIMILAR_BYTES: usize = 2048;

/// What the views are taken of: the whole `text` when rules read it, else its first
/// [`SIMILAR_BYTES`] (to a character boundary).
fn read(text: &str, whole: bool) -> &str {
    if whole {
        text
    } else {
        &text[..text.floor_char_boundary(SIMILAR_BYTES)]
    }
}

/// `request` as text rules read it, with its lower-cased and normalised views.
fn message_of<'a>(
    request: &'a ModerationRequest,
    lowered: &'a str,
    normalised: Option<&'a str>,
) -> Message<'a> {
    Message {
        text: &request.text,
        lowered,
        normalised,
        mentions: request.mentions.len(),
        account_age_ms: request
            .account_created_ms
            .map(|created| request.sent_at_ms.saturating_sub(created)),
    }
}

/// The verdict's action for a rule's.
fn action_of(action: RuleAction) -> Action {
    match action {
        RuleAction::Allow => Action::Allow,
        RuleAction::Flag => Action::Flag,
        RuleAction::Block => Action::Block,
    }
}

/// Counts the shadow rules of `policy` that matched (counted, not acted on).
fn count_shadow(policy: &str, shadow: &[&crate::policies::text_rules::TextRule]) {
    for rule in shadow {
        metrics::counter!(m::RULE_SHADOW_HITS, "policy" => policy.to_string(),
            "rule" => rule.id.clone(), "action" => rule.action.as_str())
        .increment(1);
    }
}
