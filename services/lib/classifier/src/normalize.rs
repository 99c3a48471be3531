//! Normalisation: undoes the tricks chat users play on a model that reads plain words.
//!
//! Rules, in order, word by word (a word is a run of non-whitespace; the whitespace between
//! words is kept as it was, except inside joined spaced letters):
//!
//! 1. Characters: invisible format characters (zero-width space/joiners, bidi controls, soft
//!    hyphen, variation selectors, tag characters) are removed; fancy alphabets, fullwidth and
//!    enclosed letters become plain ones (the `decancer` table, one character at a time);
//!    accents on Latin letters and combining marks on Latin letters are removed; everything
//!    is lower-cased. Cyrillic and Greek letters become their Latin look-alikes **only in a
//!    word that also has Latin letters** (`іdіот` → `idiot`); a wholly Cyrillic or Greek word
//!    stays as written, and other scripts (CJK, Arabic, Hebrew, Devanagari …) and emoji are
//!    left alone, their combining marks included.
//! 2. Links and handles (`://`, `www.`, a leading `@` or `#`) are left as they are.
//! 3. Leetspeak: in a word of at least three letters and look-alikes, one a letter,
//!    `0 1 3 4 5 7 @ $ !` become `o i e a s t a s i` (`1d10t` → `idiot`, `5h17` → `shit`);
//!    numbers (`555`, `2`) have no letter, and a number with a short suffix (`1st`, `10am`,
//!    `90s`, `24h`) stays.
//! 4. Separators inside a word (`-`, `_`, `.`, `*`, `~`, `·`) between letters are removed
//!    (`id-iot` → `idiot`), unless every part is a known word and the joined one is not
//!    (`well-known` stays).
//! 5. Stretched letters: a run of three or more of one letter becomes one letter, or two when
//!    only the doubled spelling is a known word (`idiooooot` → `idiot`, `fooool` → `fool`);
//!    doubles are never touched.
//! 6. Spaced letters: three or more single letters in a row are joined (`y o u  i d i o t` →
//!    `you idiot`), with the punctuation marks spaced out among them (`y o u ' r e` →
//!    `you're`, `i d i o t !` → `idiot!`); wider gaps are word breaks, and without them the
//!    known words split a run of letters only (`y o u i d i o t` → `you idiot`). Letters
//!    with separators between them count as spaced too, and a separator between letters of
//!    a run is dropped (`y.o u   i_d. i o*t` → `you idiot`); such a word outside a run of
//!    three loses its separators (`o_o` → `oo`). Not: masking (`f**k`), two-letter dotted
//!    abbreviations (`e.g.`), letters of other scripts. A run of more than 64 letters
//!    without wide gaps is left as written.
//!
//! 7. Repeats: a word said three or more times in a row is kept once (`hello hello hello`
//!    → `hello`), so padding cannot drown an insult.
//!
//! "Known word" means the lexicon given to [`Normalizer::with_words`] (the policy uses the
//! token model's own vocabulary); without one, rules 4 and 5 always join and shorten to one.
//!
//! Rule 1 is in `chars`, the parts of rules 2–5 that need no lexicon in `word`; the
//! lexicon, rules 4–7 and the reassembly of the text are here.

mod chars;
mod word;

use std::collections::HashSet;

use chars::fold_chars;
use word::{is_link, is_separator, leet, runs, separated_letters, split_core};

/// Longest run of spaced letters that the lexicon segments (the search takes
/// `MAX_SEGMENTED × MAX_WORD` lookups); a longer run without wide gaps is left as written
/// (padding with single letters must not glue an insult into one long unknown word), each
/// word with separators between its letters joined.
const MAX_SEGMENTED: usize = 64;
/// Longest word tried while segmenting.
const MAX_WORD: usize = 24;
/// Most stretched runs in one word whose one-or-two spellings are tried against the
/// lexicon (2^n candidates); further runs shorten to one letter.
const MAX_STRETCH_CHOICES: usize = 4;

/// The normaliser; cheap to clone only without a lexicon (build it once per policy).
#[derive(Debug, Clone, Default)]
pub struct Normalizer {
    words: HashSet<String>,
}

impl Normalizer {
    /// A normaliser without a lexicon.
    pub fn new() -> Self {
        Self::default()
    }

    /// A normaliser that knows `words` (lower-case, as the text will be after rule 1).
    pub fn with_words<S: Into<String>>(words: impl IntoIterator<Item = S>) -> Self {
        Self {
            words: words.into_iter().map(Into::into).collect(),
        }
    }

    /// The normalised text (see the module documentation for the rules).
    pub fn normalize(&self, text: &str) -> String {
        let mut pieces: Vec<Piece<'_>> = Vec::new();
        for (gap, word) in split_words(text) {
            let folded = fold_chars(word);
            match separated_letters(&folded) {
                // Rule 6 reads each letter as a piece of its own; a word of the piece
                // before (no gap) unless a run joins it.
                Some((letters, trail)) => {
                    let trail = (!trail.is_empty()).then(|| trail.to_string());
                    let parts = letters.into_iter().map(String::from).chain(trail);
                    for (k, part) in parts.enumerate() {
                        pieces.push(Piece {
                            gap: if k == 0 { gap } else { "" },
                            word: part,
                        });
                    }
                }
                None => pieces.push(Piece {
                    gap,
                    word: self.word(&folded),
                }),
            }
        }
        self.join_spaced(&drop_repeats(pieces))
    }

    /// The normalised text when it differs from the lower-cased text (both models fold
    /// case themselves), else `None`: a clean text needs no second look.
    pub fn second_view(&self, text: &str) -> Option<String> {
        let normalised = self.normalize(text);
        (normalised != text.to_lowercase()).then_some(normalised)
    }

    fn known(&self, word: &str) -> bool {
        self.words.contains(word)
    }

    /// Rules 2–5 on one character-folded word.
    fn word(&self, word: &str) -> String {
        if is_link(word) {
            return word.to_string();
        }
        let (lead, core, trail) = split_core(word);
        let core = leet(core);
        let core = self.unseparate(&core);
        let core = self.unstretch(&core);
        format!("{lead}{core}{trail}")
    }

    fn unseparate(&self, core: &str) -> String {
        let chars: Vec<char> = core.chars().collect();
        let inner = |i: usize| {
            is_separator(chars[i])
                && i > 0
                && i + 1 < chars.len()
                && chars[i - 1].is_alphabetic()
                && chars[i + 1].is_alphabetic()
        };
        if !(0..chars.len()).any(inner) {
            return core.to_string();
        }
        let joined: String = (0..chars.len())
            .filter(|&i| !inner(i))
            .map(|i| chars[i])
            .collect();
        let parts_known = core
            .split(is_separator)
            .filter(|p| !p.is_empty())
            .all(|p| self.known(p));
        if !self.words.is_empty() && parts_known && !self.known(&joined) {
            core.to_string()
        } else {
            joined
        }
    }

    fn unstretch(&self, core: &str) -> String {
        let runs = runs(core);
        let stretched: Vec<usize> = (0..runs.len())
            .filter(|&i| runs[i].1 >= 3 && runs[i].0.is_alphabetic())
            .collect();
        if stretched.is_empty() {
            return core.to_string();
        }
        // Each run's place among the stretched runs, looked up once (a search per run made
        // a 16 KiB word of short runs quadratic: 120 ms).
        let mut place = vec![None; runs.len()];
        for (k, &i) in stretched.iter().enumerate() {
            place[i] = Some(k);
        }
        let spell = |doubled: u32| -> String {
            let mut out = String::with_capacity(core.len());
            for (&(c, n), place) in runs.iter().zip(&place) {
                let keep = match *place {
                    Some(k) if k < MAX_STRETCH_CHOICES && doubled & (1 << k) != 0 => 2,
                    Some(_) => 1,
                    None => n,
                };
                out.extend(std::iter::repeat_n(c, keep));
            }
            out
        };
        // Without a lexicon no spelling is known: the first is the answer.
        let choices = if self.words.is_empty() {
            1
        } else {
            1_u32 << stretched.len().min(MAX_STRETCH_CHOICES)
        };
        (0..choices)
            .map(spell)
            .find(|w| self.known(w))
            .unwrap_or_else(|| spell(0))
    }

    /// Rule 6 over the whole text (after rule 7), then reassembly with the original gaps.
    fn join_spaced(&self, pieces: &[Piece<'_>]) -> String {
        let mut out = String::new();
        let mut i = 0;
        while i < pieces.len() {
            let (end, letters) = self.run_at(pieces, i);
            if letters < 3 {
                out.push_str(pieces[i].gap);
                out.push_str(&pieces[i].word);
                i += 1;
                continue;
            }
            out.push_str(pieces[i].gap);
            let mut words: Vec<String> = vec![String::new()];
            for (k, piece) in pieces[i..end].iter().enumerate() {
                if k > 0 && is_wide(piece.gap) {
                    words.push(String::new());
                }
                // A separator between letters of one word is noise (`i_d. i o*t`).
                let next = pieces[i..end].get(k + 1);
                if piece.word.chars().all(is_separator)
                    && next.is_some_and(|n| is_letter(&n.word) && !is_wide(n.gap))
                {
                    continue;
                }
                if let Some(last) = words.last_mut() {
                    last.push_str(&piece.word);
                }
            }
            if words.len() == 1 && words[0].chars().count() > MAX_SEGMENTED {
                for (k, piece) in pieces[i..end].iter().enumerate() {
                    out.push_str(if k == 0 { "" } else { piece.gap });
                    out.push_str(&piece.word);
                }
                i = end;
                continue;
            }
            let words: Vec<String> =
                if words.len() == 1 && words[0].chars().all(char::is_alphabetic) {
                    self.segment(&words[0])
                } else {
                    words
                };
            out.push_str(&words.join(" "));
            i = end;
        }
        out
    }

    /// The run of spaced letters starting at piece `i`: where it ends and how many letters
    /// it holds. A run starts with a letter and goes on through letters and, one space
    /// after a letter, a punctuation mark that belongs to the word (`y o u ' r e` →
    /// `you're`, `i d i o t .` → `idiot.`): a mark left apart reads as a word of its own
    /// to the char n-gram models. A blank line ends it.
    fn run_at(&self, pieces: &[Piece<'_>], i: usize) -> (usize, usize) {
        let (mut end, mut letters) = (i, 0);
        while let Some(piece) = pieces.get(end) {
            let inside = end > i && !breaks(piece.gap);
            if is_letter(&piece.word) && (end == i || inside) {
                letters += 1;
            } else if !(inside && !is_wide(piece.gap) && is_word_mark(&piece.word)) {
                break;
            }
            end += 1;
        }
        (end, letters)
    }

    /// Splits a run of letters into the fewest known words; the run itself when it is known,
    /// or cannot be split.
    fn segment(&self, run: &str) -> Vec<String> {
        let chars: Vec<char> = run.chars().collect();
        if self.words.is_empty() || self.known(run) {
            return vec![run.to_string()];
        }
        // best[i]: fewest words covering chars[..i], and where the last word starts.
        let mut best: Vec<Option<(usize, usize)>> = vec![None; chars.len() + 1];
        best[0] = Some((0, 0));
        for end in 1..=chars.len() {
            for start in end.saturating_sub(MAX_WORD)..end {
                let Some((count, _)) = best[start] else {
                    continue;
                };
                let word: String = chars[start..end].iter().collect();
                let better = best[end].is_none_or(|(c, _)| count + 1 < c);
                if better && self.known(&word) {
                    best[end] = Some((count + 1, start));
                }
            }
        }
        let mut words = Vec::new();
        let mut end = chars.len();
        while end > 0 {
            let Some((_, start)) = best[end] else {
                return vec![run.to_string()];
            };
            words.push(chars[start..end].iter().collect());
            end = start;
        }
        words.reverse();
        words
    }
}

/// A word and the whitespace before it.
struct Piece<'a> {
    gap: &'a str,
    word: String,
}

/// Rule 7: a word said three or more times in a row is kept once (padding an insult with
/// hundreds of `hello`s drowns it in the model's mean over tokens). Single letters are left
/// to rule 6.
fn drop_repeats(pieces: Vec<Piece<'_>>) -> Vec<Piece<'_>> {
    let mut kept: Vec<Piece<'_>> = Vec::with_capacity(pieces.len());
    let mut run = 0;
    for piece in pieces {
        let repeat = kept.last().is_some_and(|last| last.word == piece.word);
        run = if repeat { run + 1 } else { 1 };
        if run == 3 && !is_letter(&piece.word) && !piece.word.is_empty() {
            kept.pop();
        }
        if run < 3 || is_letter(&piece.word) || piece.word.is_empty() {
            kept.push(piece);
        }
    }
    kept
}

/// `(whitespace before, word)` for every word; trailing whitespace becomes a last piece with
/// an empty word.
fn split_words(text: &str) -> Vec<(&str, &str)> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let word_start = rest
            .find(|c: char| !c.is_whitespace())
            .unwrap_or(rest.len());
        let (gap, tail) = rest.split_at(word_start);
        let word_end = tail.find(char::is_whitespace).unwrap_or(tail.len());
        let (word, after) = tail.split_at(word_end);
        pieces.push((gap, word));
        rest = after;
    }
    pieces
}

/// A gap that separates words even inside spaced letters: two or more whitespace
/// characters, or a line break.
fn is_wide(gap: &str) -> bool {
    gap.chars().count() >= 2 || gap.contains(['\n', '\r'])
}

/// A gap that ends a run of spaced letters altogether: a blank line.
fn breaks(gap: &str) -> bool {
    gap.matches('\n').count() >= 2
}

/// One punctuation mark that spaced-out text carries inside or after a word.
fn is_word_mark(word: &str) -> bool {
    let mut chars = word.chars();
    matches!(
        (chars.next(), chars.next()),
        (
            Some('\'' | '\u{2019}' | ',' | '.' | '!' | '?' | ';' | ':'),
            None
        )
    )
}

fn is_letter(word: &str) -> bool {
    let mut chars = word.chars();
    matches!((chars.next(), chars.next()), (Some(c), None) if c.is_alphabetic())
}
