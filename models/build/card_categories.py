"""The model card's section on the harm categories (issue 29): where each category's
training data came from, its held-out figures, and what it does by default."""

import categories

MEANING = {
    "harassment": "an insult, demeaning remark or harassment aimed at someone in the "
                  "conversation, with or without a rough word (\"nobody here wants you, leave\")",
    "threat": "a threat of violence against someone, veiled ones included",
    "hate": "an attack on people for a protected identity (race, ethnicity, religion, "
            "nationality, gender, sexual orientation, disability)",
    "sexual": "sexual content or solicitation between adults (nothing here covers minors: "
              "that needs hash matching and rules, not this model)",
    "self_harm": "encouraging someone else to hurt or kill themselves (\"kys\"); such a line "
                 "is harassment too",
    "self_harm_intent": "the writer saying they want to hurt or kill themselves: a platform "
                        "routes this to support, not removal",
    "spam": "unsolicited promotion, scams, phishing (one message alone; the sender side "
            "is the rules issue's)",
}


def pct(x):
    return "–" if x is None else f"{100 * x:.1f}%"


def auc(q):
    return f"{q['roc_auc']:.4f}" if "roc_auc" in q else "–"


def section(info):
    """Markdown for figures.json's `categories` ({"train": …, "held_out": …})."""
    train, held = info["train"], info["held_out"]
    rows = []
    for name in categories.CATEGORIES:
        t = train[name]
        src = t["sources"]
        e = held.get("eval_categories", {}).get(name, {})
        default = "flag and block" if t["blocks"] else "flag only"
        rows.append(
            f"| `{name}` | {src['kaggle']:,} Kaggle + {src['harm.tsv']:,} written | {t['negatives']:,} "
            f"| {t['oof_roc_auc']:.4f} | {auc(e)} | {pct(e.get('recall_at_flag'))} / "
            f"{pct(e.get('negatives_over_flag'))} | {t['flag']} / {t['block']} | {default} |")
    k = held["kaggle_test"]
    ch = train["harassment_char"]
    meanings = "\n".join(f"* `{n}`: {MEANING[n]}." for n in categories.CATEGORIES)
    return f"""## Harm categories (v4, v5: issue 29)

Columns 1–{len(categories.CATEGORIES)} of `probabilities`, one logistic-regression head per
category (`models/build/categories.py`) on what the graph already computes for the insult
column — the quantized MiniLM embedding and the ensemble's stacked insult logit — and on the
logit of a second character 1–5-gram model trained for harassment on all the training rows
below (`LogisticRegression(C={ch['C']})`, {ch['vocab']:,} n-grams, 5-fold out-of-fold
ROC-AUC {ch['oof_roc_auc']:.4f}; the heads train on its out-of-fold logits, and on the
insult stack's out-of-fold logits for the Kaggle rows, never on in-sample ones). They cost
one more n-gram pass and one [386 × {len(categories.CATEGORIES)}] MatMul per text and depend
on the text's row alone. That design was chosen on 5-fold out-of-fold figures of the
training rows only, among three: the embedding and stack logit alone (ROC-AUC on the written
lines 0.893, Kaggle rows 0.903), with the second char model (0.923, 0.907), and a one-layer
MLP head (0.932, 0.898).

{meanings}

Training data: Kaggle `train.csv` (its `Insult` label is `harassment`: the competition's
insults are aimed at a participant; its non-insults are negatives for every category) and
lines written for the purpose by an AI assistant, kept apart from every evaluation set
(`models/build/train/README.md`): `harm.tsv` (positives per category, harassment without a
rough word among them) and `innocent.tsv` (hard negatives: rough words not aimed at
anyone, self-deprecation, works and third parties, compliments, idioms, talk about
violence, identities, health, support, links). C by 5-fold out-of-fold ROC-AUC. `flag`:
`harassment` where 2% of its negatives among the written chat lines score above (out of
fold); the six flag-only categories share one budget (v5): one false-positive rate for all
of them, the largest at which at most {pct(train['joint']['flag_only_budget'])} of the
{train['joint']['innocent_rows']:,} innocent written chat lines reach any of their
thresholds, out of fold ({train['joint']['per_category_fpr'] * 100:.2f}% each; every category
together, `harassment` included, flags {pct(train['joint']['innocent_flagged_oof'])} of
those lines out of fold). `block` where 0.5% of a category's chat-line negatives score
above, never below `flag`. v4 fitted each flag-only category at 2% alone: they added up, and
7 of v4's 12 innocent flags on `models/eval/everyday-chat-2.tsv` came from them. v4's first build counted the Kaggle comments among those
negatives too: they are easy negatives for every category but harassment, and set the
flag-only categories' thresholds so low that, on `models/eval/everyday-chat.tsv` through
the pipeline, 17 of 120 innocent lines were flagged by them (10 of them support-seeking
lines, by `self_harm_intent`). That set was seen then; the rule was changed once, and
`models/eval/everyday-chat-2.tsv`, written afterwards, measures the result.

Held out: `models/eval/categories.tsv`, written by another assistant session from the
category definitions alone, without seeing the training lines or any model output
(`models/eval/categories.md`), scored by each build after its thresholds were fixed. v4 was
built four times on 2026-12-07; what changed between builds came from elsewhere (the
threshold rule from `everyday-chat.tsv`, added innocent lines from a reviewer's probes),
but this set's figures were seen each time.

| category | positives (train) | negatives (train) | out-of-fold ROC-AUC | held-out ROC-AUC | held-out recall / negatives flagged, at `flag` | `flag` / `block` | by default |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

On the Kaggle test split (2,647 comments labelled by the competition, scored once):
`harassment` ROC-AUC {k['harassment']['roc_auc']:.4f}, recall at `flag`
{pct(k['harassment']['recall_at_flag'])}, precision {pct(k['harassment']['precision_at_flag'])};
the insult ensemble's column {k['insult']['roc_auc']:.4f}.

Known weaknesses of v4, from probes written by hand (not an evaluation set; v5 trains on
more plans and farewells, and its flag-only thresholds are higher): short plans and
farewells can reach a flag-only category ("see you tomorrow": `threat` 0.55; "wanna hang out
this weekend": `sexual` 0.19), and swearing at one's own lot reaches `harassment`'s flag
threshold ("fuck my life" 0.71, below its block threshold). A frozen sentence embedding with
linear heads tells who is addressed only so far: see the held-out everyday figures in
`models/eval/README.md` and the issue's note.

**Only `harassment` blocks by default**: it alone has held-out data labelled by others (the
Kaggle test split). Every other category was trained and measured on lines written by
assistants, which are cleaner and more alike than real chat, so its held-out figures are an
upper bound: it flags (a person decides) and blocks only where a policy opts in
(`labels.<name> = {{ action = "block" }}`). `insult` is a signal since v4: it reads words,
not whom they are aimed at; `harassment` reads its score and decides.
"""
