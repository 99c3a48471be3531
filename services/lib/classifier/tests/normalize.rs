//! The normaliser, rule by rule: input → normalised output, with the lexicon the policy
//! gives it (the insult model's vocabulary), and hostile inputs that must not panic.

mod common;

use offpath_classifier::Normalizer;

fn normalizer() -> Normalizer {
    Normalizer::with_words(common::model("minilm-insult").vocabulary_words())
}

/// Every rule, and what must stay as written (other scripts, emoji, links, numbers).
#[test]
fn table() {
    let n = normalizer();
    let cases: &[(&str, &str)] = &[
        // Case folded.
        ("You IDIOT", "you idiot"),
        // Homoglyphs: Cyrillic і, о, т in a Latin word; Greek ο, α too.
        ("іdіот", "idiot"),
        ("ѕtupіd mοrοn", "stupid moron"),
        // A wholly Cyrillic or Greek word stays (lower-cased); so does a Russian sentence.
        ("Привет, как дела?", "привет, как дела?"),
        ("Καλημέρα κόσμε", "καλημέρα κόσμε"),
        ("сор", "сор"),
        // Fancy alphabets, fullwidth, enclosed letters.
        ("𝔂𝓸𝓾 ｉｄｉｏｔ ⓘⓓⓘⓞⓣ", "you idiot idiot"),
        // Accents and stacked combining marks on Latin letters removed; ß is ss.
        ("naïve café", "naive cafe"),
        ("i\u{301}\u{302}\u{303}d\u{308}iot", "idiot"),
        ("Straße", "strasse"),
        // Zero-width and other invisible characters removed.
        (
            "id\u{200b}iot st\u{200d}u\u{2060}pid\u{feff}",
            "idiot stupid",
        ),
        ("\u{202e}toidi", "toidi"),
        // Leetspeak inside words; numbers stay.
        ("1d10t", "idiot"),
        ("h3ll0 w0rld", "hello world"),
        ("$h!t", "shit"),
        ("5h17 7h3 4ss", "shit the ass"),
        ("24h, 4k, 100kg", "24h, 4k, 100kg"),
        // The price: a name with a look-alike digit reads as leetspeak.
        ("mp3", "mpe"),
        ("you are an 1d10t!", "you are an idiot!"),
        ("call me at 555 1234", "call me at 555 1234"),
        ("2 cats", "2 cats"),
        ("the 1st of may, 10am", "the 1st of may, 10am"),
        ("90s music", "90s music"),
        // Inner separators removed; a compound of two known words keeps its hyphen.
        ("id-iot", "idiot"),
        ("s.t.u.p.i.d", "stupid"),
        ("well-known", "well-known"),
        ("555-1234", "555-1234"),
        // Stretched letters shortened; doubles kept; the known doubled spelling preferred.
        ("idiooooot", "idiot"),
        ("stuuuuupid", "stupid"),
        ("fooooool", "fool"),
        ("good fool", "good fool"),
        ("!!!!!!", "!!!!!!"),
        // Spaced letters joined; wide gaps are word breaks; the lexicon splits the rest.
        ("y o u  i d i o t", "you idiot"),
        ("y o u i d i o t", "you idiot"),
        (
            "Y o u ' r e  a n  i d i o t .  s e r i o u s l y",
            "you're an idiot. seriously",
        ),
        ("s h u t  u p ,  l o s e r ! !", "shut up, loser!!"),
        // With noise: separators between letters, dots with or without a space after.
        ("y.o u   i_d. i o*t", "you idiot"),
        ("u  r  a  l-o_s. e r", "u r a loser"),
        ("s-h-u-t  u.p", "shut up"),
        // Not: masked swearing, two-letter dotted abbreviations, other scripts.
        ("what a piece of s**t", "what a piece of s**t"),
        ("f__k off", "f__k off"),
        (
            "e.g. a dog, p.s. i love you, at 5 a.m. i left",
            "e.g. a dog, ps. i love you, at 5 am. i left",
        ),
        ("я. а. и.", "я. а. и."),
        // A mark before any letter starts no run; a lone mark in ordinary text stays apart.
        ("hey @ d a n , what ?", "hey @ dan, what ?"),
        ("you are a b i t c h", "you are a bitch"),
        ("a b", "a b"),
        // A word said three or more times is said once; twice stays.
        ("hello hello hello hello you idiot", "hello you idiot"),
        ("very very good, no no no", "very very good, no"),
        // Links, mentions and hashtags stay as written.
        (
            "see https://Example.com/1d10t",
            "see https://example.com/1d10t",
        ),
        ("@j0hn_doe #l33t", "@j0hn_doe #l33t"),
        // Other scripts and emoji untouched, Devanagari's vowel signs and virama included.
        ("你好世界 😀🎉", "你好世界 😀🎉"),
        ("नमस्ते", "नमस्ते"),
        ("مرحبا שלום", "مرحبا שלום"),
        // Whitespace kept as written.
        ("line one\n\nline  two", "line one\n\nline  two"),
        ("", ""),
    ];
    let mut wrong = Vec::new();
    for (input, want) in cases {
        let got = n.normalize(input);
        if got != *want {
            wrong.push(format!("{input:?} → {got:?}, want {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Padding with single letters cannot glue a dotted insult into one long unknown word: a
/// run of more than 64 letters without wide gaps is left as written, each dotted word joined.
#[test]
fn long_runs_of_letters_stay_apart() {
    let padding = "a ".repeat(58);
    let got = normalizer().normalize(&format!("{padding}y.o.u a.r.e a.n i.d.i.o.t"));
    assert_eq!(got, format!("{padding}you are an idiot"));
}

/// A clean text (only case to fold) needs no second view; a disguised one does.
#[test]
fn second_view_only_when_it_differs() {
    let n = normalizer();
    assert_eq!(n.second_view("Thanks a lot, see you Tomorrow!"), None);
    assert_eq!(n.second_view("Привет"), None);
    assert_eq!(n.second_view("you 1d10t").as_deref(), Some("you idiot"));
}

/// Hostile inputs finish quickly without panicking: huge runs, only combining marks, bidi
/// controls, long spaced runs, every kind of whitespace.
#[test]
fn hostile_inputs() {
    let n = normalizer();
    let inputs = [
        "a".repeat(100_000),
        "\u{301}".repeat(10_000),
        "x\u{301}".repeat(5_000),
        "\u{202e}\u{202d}\u{200f}\u{61c}".repeat(1_000),
        "a ".repeat(20_000),
        "a  b ".repeat(5_000),
        "1".repeat(10_000) + "a",
        "-".repeat(10_000),
        "\u{3000}\u{a0}\t\r\n\u{2028}".repeat(1_000),
        "@".repeat(1_000),
        "ᚠ\u{e0001}\u{fffd}\u{10ffff}\u{0}".repeat(100),
    ];
    let started = std::time::Instant::now();
    for input in &inputs {
        let out = n.normalize(input);
        assert!(out.len() <= 4 * input.len() + 16, "grew: {}", out.len());
    }
    assert_eq!(n.normalize(&"o".repeat(100_000)), "o");
    assert!(
        started.elapsed().as_secs() < 30,
        "took {:?}",
        started.elapsed()
    );
}

/// A 16 KiB word of short stretched runs (`aaab` × 4096) is normalised in linear time:
/// each run's place among the stretched ones was searched for per run and spelling
/// (quadratic: 120 ms for this word on the moderator's intake task, found in review). The
/// result is checked; the time is a benchmark's business, but a quadratic pass over 4096
/// runs × 16 spellings would still take seconds in a debug build.
#[test]
fn a_long_word_of_stretched_runs_is_normalised() {
    let word = "aaab".repeat(4096);
    for normalizer in [Normalizer::new(), Normalizer::with_words(["ab"])] {
        let out = normalizer.normalize(&word);
        assert_eq!(out, "ab".repeat(4096), "{}", &out[..16]);
    }
}
