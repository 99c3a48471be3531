//! What a console's list asks for: which entries ([`Filter`]) in which order ([`Order`]).

use super::{Entry, Status};

/// How a list is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Order {
    /// Agreed reports, then the model's flags and blocks, then other reports; oldest first
    /// within each.
    Queue,
    /// The most recently sent first.
    Newest,
}

/// What the console asks for.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Filter {
    /// `open` (the default: open and escalated), `decided` or `all`.
    pub(crate) status: Option<String>,
    pub(crate) tenant: Option<String>,
    pub(crate) room: Option<String>,
    /// `flag`, `block` or `report`.
    pub(crate) kind: Option<String>,
    /// The sender of the judged message (a report entry's: the reported message's sender):
    /// the console shows a sender's record beside an item.
    pub(crate) sender: Option<String>,
    /// The order of the list (the queue's when absent).
    pub(crate) order: Option<Order>,
    /// How many to return at most (the route's default when absent).
    pub(crate) limit: Option<usize>,
}

impl Filter {
    pub(super) fn keeps(&self, entry: &Entry) -> bool {
        let status = match self.status.as_deref().unwrap_or("open") {
            "all" => true,
            "decided" => entry.status == Status::Decided,
            _ => entry.status != Status::Decided,
        };
        let verdict = &entry.item.verdict;
        status
            && self.tenant.as_ref().is_none_or(|t| *t == verdict.tenant)
            && self.room.as_ref().is_none_or(|r| *r == verdict.room)
            && self.sender.as_ref().is_none_or(|s| *s == verdict.sender)
            && self
                .kind
                .as_ref()
                .is_none_or(|k| k == entry.item.kind.as_str())
    }
}
