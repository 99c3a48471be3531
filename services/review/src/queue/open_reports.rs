//! The open report entries of the queue, counted by tenant and by first reporter, and the
//! bounds a new one must stay within ([`MAX_OPEN_PER_REPORTER`], [`MAX_OPEN_REPORTS_PER_TENANT`],
//! [`MAX_OPEN_REPORTS`]).

use std::collections::HashMap;

use super::{Entry, MAX_OPEN_PER_REPORTER, MAX_OPEN_REPORTS, MAX_OPEN_REPORTS_PER_TENANT, Status};

/// The open report entries, counted the ways the bounds need.
#[derive(Debug, Default)]
pub(super) struct OpenReports {
    all: std::collections::HashSet<String>,
    by_tenant: HashMap<String, std::collections::HashSet<String>>,
    by_reporter: HashMap<String, std::collections::HashSet<String>>,
}

impl OpenReports {
    /// Files `entry` as open or not.
    pub(super) fn track(&mut self, entry: &Entry) {
        let Some(report) = entry.item.report.as_ref() else {
            return;
        };
        let tenant = &entry.item.verdict.tenant;
        if entry.status == Status::Decided {
            self.all.remove(&entry.key);
            for (map, name) in [
                (&mut self.by_tenant, tenant),
                (&mut self.by_reporter, &report.reporter),
            ] {
                if let Some(keys) = map.get_mut(name) {
                    keys.remove(&entry.key);
                    if keys.is_empty() {
                        map.remove(name);
                    }
                }
            }
        } else {
            self.all.insert(entry.key.clone());
            self.by_tenant
                .entry(tenant.clone())
                .or_default()
                .insert(entry.key.clone());
            self.by_reporter
                .entry(report.reporter.clone())
                .or_default()
                .insert(entry.key.clone());
        }
    }

    /// Why a new open report entry of `tenant` started by `reporter` is refused, if it is.
    pub(super) fn refuses(&self, tenant: &str, reporter: &str) -> Option<usize> {
        let count = |map: &HashMap<String, std::collections::HashSet<String>>, k: &str| {
            map.get(k).map_or(0, std::collections::HashSet::len)
        };
        if count(&self.by_reporter, reporter) >= MAX_OPEN_PER_REPORTER {
            Some(0)
        } else if count(&self.by_tenant, tenant) >= MAX_OPEN_REPORTS_PER_TENANT {
            Some(1)
        } else if self.all.len() >= MAX_OPEN_REPORTS {
            Some(2)
        } else {
            None
        }
    }
}
