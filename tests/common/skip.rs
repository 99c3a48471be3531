//! A test that cannot run here (a tool is missing) skips only where a skip is allowed. In
//! CI (`CI` set) and under `scripts/test` (which sets `OFFPATH_SCRIPTS_TEST`) a skip fails
//! the test: the suite must not pass by not running. A developer's machine may opt out with
//! `OFFPATH_ALLOW_SKIP=1`; the output says so either way.

/// Set by `scripts/test`: the README's test command, where every test must run.
pub(crate) const SCRIPTS_TEST: &str = "OFFPATH_SCRIPTS_TEST";
/// `OFFPATH_ALLOW_SKIP=1` lets a test skip in CI or under `scripts/test`.
pub(crate) const ALLOW_SKIP: &str = "OFFPATH_ALLOW_SKIP";

/// What a test that cannot run does, given the environment `var` reads.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Skip {
    /// Skip, printing this line.
    Allowed(String),
    /// Fail with this message.
    Refused(String),
}

/// The rule, over an environment lookup (`std::env::var` in tests, a table in its own).
pub(crate) fn decide(reason: &str, var: impl Fn(&str) -> Option<String>) -> Skip {
    let set = |name: &str| var(name).is_some_and(|value| !value.is_empty());
    let strict = ["CI", SCRIPTS_TEST].into_iter().find(|name| set(name));
    let allowed = var(ALLOW_SKIP).as_deref() == Some("1");
    match (strict, allowed) {
        (Some(name), false) => Skip::Refused(format!(
            "{reason}: this test cannot run, and a skip fails when {name} is set (install what \
             it needs, or set {ALLOW_SKIP}=1 to let it skip)"
        )),
        (Some(name), true) => Skip::Allowed(format!(
            "SKIPPED: {reason} ({name} is set, but so is {ALLOW_SKIP}=1)"
        )),
        (None, _) => Skip::Allowed(format!(
            "SKIPPED: {reason} (this fails in CI and under scripts/test unless {ALLOW_SKIP}=1)"
        )),
    }
}

/// Skips (prints `SKIPPED: …`; the caller then returns) or panics, as [`decide`] says for
/// this process's environment.
pub(crate) fn skip_or_fail(reason: &str) {
    match decide(reason, |name| std::env::var(name).ok()) {
        Skip::Allowed(line) => eprintln!("{line}"),
        Skip::Refused(message) => panic!("{message}"),
    }
}
