//! `offpath bench quality`: what the moderator decides on a labelled set of chat lines,
//! through a real nats-server and moderator process with the policy it is given (the
//! default: none, the built-in policy), as a chat platform would see it (issue 29).
//!
//! The set (default `models/eval/everyday-chat-2.tsv`, the one v4 was not chosen on;
//! `everyday-chat.tsv` too: written by hand, never trained on, and what each has been used
//! for: `models/eval/README.md`) holds harmful lines aimed at someone (label 1) and innocent
//! ones (label 0), each with a kind. Reported, per kind and overall: the share acted on
//! (flagged or blocked) and blocked; the harmful lines caught and the innocent lines
//! flagged; ROC-AUC of the highest acting label's score. Each figure is also given as if
//! the signal labels (`signal = true` in a manifest: insult, profanity) acted at their manifest's
//! `flag` threshold, as they did before they became signals: both from the same verdicts.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use offpath_classifier::Manifest;
use offpath_classifier::eval::roc_auc;
use offpath_protocol::{Action, Verdict};

use crate::cli::QualityArgs;
use crate::throughput::Pipeline;

/// One labelled line of the set.
struct Line {
    harmful: bool,
    kind: String,
    text: String,
}

/// Runs the set through a moderator and prints the report.
pub(crate) async fn run(args: QualityArgs) -> anyhow::Result<()> {
    let mut config = args.bench.moderator.clone();
    offpath_local::locate::complete_model_paths(&mut config.models, &mut config.ort_library)?;
    config.validate().map_err(crate::cli::Usage::problems)?;
    let lines = read_set(&args.set)?;
    let signals = signal_labels(&config.models)?;
    let texts: Vec<String> = lines.iter().map(|l| l.text.clone()).collect();
    let timeout = Duration::from_secs(args.bench.timeout_s);
    let mut pipeline = Pipeline::start(&args.bench.moderator_flags(), 1, 1, timeout)
        .await
        .context("starting nats-server and a moderator")?;
    let verdicts = pipeline.verdicts(&texts).await?;
    pipeline.stop();
    let unmoderated = verdicts
        .iter()
        .filter(|v| v.action == Action::Unmoderated)
        .count();
    if unmoderated > 0 {
        bail!(
            "{unmoderated} of {} lines got no verdict of a model",
            verdicts.len()
        );
    }
    println!(
        "{}: {} lines ({} harmful), policy {}",
        args.set.display(),
        lines.len(),
        lines.iter().filter(|l| l.harmful).count(),
        config
            .policies
            .as_ref()
            .map_or("built-in".to_string(), |p| p.display().to_string())
    );
    let judged: Vec<Judged> = lines
        .iter()
        .zip(&verdicts)
        .map(|(line, verdict)| Judged::new(line, verdict, &signals))
        .collect();
    print_kinds(&judged);
    print_totals(&judged, &signals);
    Ok(())
}

/// A line and what became of it.
struct Judged<'a> {
    line: &'a Line,
    /// Flagged or blocked.
    acted: bool,
    blocked: bool,
    /// Acted on, or a signal label at its `flag` threshold (as if signals acted).
    acted_with_signals: bool,
    /// The highest score of a label that acts (signals left out).
    score: f32,
    /// The verdict's `category`: the label that decided a flag or block.
    category: Option<String>,
}

impl<'a> Judged<'a> {
    fn new(line: &'a Line, verdict: &Verdict, signals: &[(String, f32)]) -> Self {
        let acted = matches!(verdict.action, Action::Flag | Action::Block);
        let signalled = signals
            .iter()
            .any(|(name, flag)| verdict.scores.get(name).is_some_and(|s| s >= flag));
        let score = verdict
            .scores
            .iter()
            .filter(|(name, _)| !signals.iter().any(|(s, _)| s == *name))
            .map(|(_, s)| *s)
            .fold(0.0, f32::max);
        Self {
            line,
            acted,
            blocked: verdict.action == Action::Block,
            acted_with_signals: acted || signalled,
            score,
            category: verdict.category.clone(),
        }
    }
}

/// One row per kind: lines, acted on, blocked, acted on as if signals acted, and the
/// categories that decided.
fn print_kinds(judged: &[Judged]) {
    let mut kinds: Vec<(bool, &str)> = judged
        .iter()
        .map(|j| (j.line.harmful, j.line.kind.as_str()))
        .collect();
    kinds.sort_by(|a, b| b.cmp(a));
    kinds.dedup();
    println!();
    println!(
        "| label | kind | lines | acted on | blocked | acted on, signals acting | decided by |"
    );
    println!("|---|---|---:|---:|---:|---:|---|");
    for (harmful, kind) in kinds {
        let rows: Vec<&Judged> = judged
            .iter()
            .filter(|j| j.line.harmful == harmful && j.line.kind == kind)
            .collect();
        let count = |f: fn(&Judged) -> bool| rows.iter().filter(|j| f(j)).count();
        let mut by = std::collections::BTreeMap::<&str, usize>::new();
        for category in rows.iter().filter_map(|j| j.category.as_deref()) {
            *by.entry(category).or_default() += 1;
        }
        let by: Vec<String> = by.iter().map(|(c, n)| format!("{c} {n}")).collect();
        println!(
            "| {} | {kind} | {} | {} | {} | {} | {} |",
            u8::from(harmful),
            rows.len(),
            count(|j| j.acted),
            count(|j| j.blocked),
            count(|j| j.acted_with_signals),
            by.join(", "),
        );
    }
}

/// Harmful lines caught, innocent lines flagged, ROC-AUC: as decided, and as if signals
/// acted.
fn print_totals(judged: &[Judged], signals: &[(String, f32)]) {
    let share = |harmful: bool, f: fn(&Judged) -> bool| {
        let rows: Vec<&Judged> = judged
            .iter()
            .filter(|j| j.line.harmful == harmful)
            .collect();
        let hits = rows.iter().filter(|j| f(j)).count();
        format!(
            "{hits} of {} ({:.1}%)",
            rows.len(),
            100.0 * hits as f64 / rows.len().max(1) as f64
        )
    };
    let names: Vec<&str> = signals.iter().map(|(n, _)| n.as_str()).collect();
    println!();
    println!(
        "harmful caught (flag or block): {}; innocent flagged or blocked: {}; innocent \
         blocked: {}",
        share(true, |j| j.acted),
        share(false, |j| j.acted),
        share(false, |j| j.blocked)
    );
    println!(
        "as if the signal labels ({}) acted at their flag threshold: harmful caught {}; \
         innocent flagged or blocked {}",
        names.join(", "),
        share(true, |j| j.acted_with_signals),
        share(false, |j| j.acted_with_signals)
    );
    let scores: Vec<f32> = judged.iter().map(|j| j.score).collect();
    let labels: Vec<bool> = judged.iter().map(|j| j.line.harmful).collect();
    println!(
        "ROC-AUC of the highest acting label's score: {:.4}",
        roc_auc(&scores, &labels)
    );
}

/// The set's lines: a header, then `label<TAB>kind<TAB>text`.
fn read_set(path: &Path) -> anyhow::Result<Vec<Line>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the labelled set {}", path.display()))?;
    let mut lines = Vec::new();
    for (n, row) in text.lines().enumerate().skip(1) {
        if row.trim().is_empty() {
            continue;
        }
        let mut fields = row.splitn(3, '\t');
        let (Some(label), Some(kind), Some(text)) = (fields.next(), fields.next(), fields.next())
        else {
            bail!("{}:{}: not label<TAB>kind<TAB>text", path.display(), n + 1);
        };
        let harmful = match label {
            "1" => true,
            "0" => false,
            other => bail!(
                "{}:{}: label {other:?} is not 0 or 1",
                path.display(),
                n + 1
            ),
        };
        lines.push(Line {
            harmful,
            kind: kind.to_string(),
            text: text.to_string(),
        });
    }
    if lines.is_empty() {
        bail!("{}: no labelled lines", path.display());
    }
    Ok(lines)
}

/// The signal labels of the models, each with its manifest's `flag` threshold.
fn signal_labels(models: &[std::path::PathBuf]) -> anyhow::Result<Vec<(String, f32)>> {
    let mut signals = Vec::new();
    for dir in models {
        let manifest = Manifest::load(dir).with_context(|| format!("{}", dir.display()))?;
        signals.extend(
            manifest
                .labels
                .iter()
                .filter(|l| l.signal)
                .map(|l| (l.name.clone(), l.flag)),
        );
    }
    Ok(signals)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed sets parse: both labels, every line with a kind and a text.
    #[test]
    fn the_committed_sets_parse() {
        for set in [
            "everyday-chat.tsv",
            "everyday-chat-2.tsv",
            "everyday-chat-3.tsv",
        ] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../models/eval")
                .join(set);
            check_set(&path);
        }
    }

    fn check_set(path: &Path) {
        let lines = read_set(path).expect("the set");
        assert!(lines.len() >= 200, "{}", lines.len());
        assert!(lines.iter().any(|l| l.harmful) && lines.iter().any(|l| !l.harmful));
        assert!(
            lines
                .iter()
                .all(|l| !l.kind.is_empty() && !l.text.is_empty())
        );
    }

    /// A row without three fields, or with another label, is refused with its line number.
    #[test]
    fn a_bad_row_is_refused_with_where_it_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("set.tsv");
        std::fs::write(&path, "label\tkind\ttext\n1\taimed\tyou fool\n2\tx\ty\n").expect("write");
        let err = read_set(&path).err().expect("refused").to_string();
        assert!(err.contains("set.tsv:3: label \"2\""), "{err}");
        std::fs::write(&path, "label\tkind\ttext\n1 no tabs\n").expect("write");
        let err = read_set(&path).err().expect("refused").to_string();
        assert!(
            err.contains("set.tsv:2: not label<TAB>kind<TAB>text"),
            "{err}"
        );
    }
}
