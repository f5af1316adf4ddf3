"""Token ids equal transformers' on the real uncased vocabulary: all of SST-2 and a corpus of hard cases.

The references are transformers' `BertTokenizer` (Rust-backed in transformers 5) and its pure-Python
`BertTokenizerLegacy` (the slow tokenizer of transformers 4), configured like flaxbert: lower-casing, with accents
kept (keras-hub presets), following lower-casing (`None`, HF checkpoints) or stripped.
"""

import csv
import random
import warnings

import pytest

from flaxbert.text import BertTokenizer

pytestmark = pytest.mark.parity

# Texts that stress the edges of BERT tokenization.
HARD_CASES = [
    # empty and whitespace only
    "",
    " ",
    "   \t\n  ",
    "\u00a0\u2003\u3000",  # no-break, em and ideographic spaces: spaces here and in HF, not in keras-hub
    # mixed case and numbers
    "The Quick BROWN fOx",
    "iPhone McDonald's NASA's GPUs",
    "3.14159 1,000,000 -42 +7 1e-5 0x1F 2nd 21st",
    "Call 555-0199 at 10:30pm on 2024-02-29!",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz 0123456789",
    # accents, precomposed and decomposed
    "café naïve résumé façade jalapeño Zoë coöperate",
    "CAFÉ NAÏVE RÉSUMÉ",
    "Ångström Øresund Łódź Škoda Dvořák",
    "cafe\u0301 re\u0301sume\u0301 n\u0303",  # combining marks after the letter
    "\u0301\u0300 leading combining marks",
    "Straße GROSSE Maß ß ẞ",
    "İstanbul ıI",  # dotted and dotless i
    "ﬁne ﬂour ﬀ",  # ligatures
    "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
    "Ⅻ ① ½ ² ™ ℃",
    # Greek, Cyrillic, Arabic, Hebrew, Devanagari, Thai, Korean, Japanese kana
    "Αθήνα ΑΘΗΝΑ σοφία ΣΟΦΊΑ",
    "Москва МОСКВА ёлка Ёлка",
    "مرحبا بالعالم",
    "שלום עולם",
    "नमस्ते दुनिया",
    "สวัสดีครับ",
    "안녕하세요 세계",
    "こんにちは カタカナ ｶﾀｶﾅ",
    # CJK ideographs (split one by one), extension blocks and compatibility ideographs
    "我爱自然语言处理。",
    "東京タワーは333メートルです",
    "中文English混合text",
    "\U00020000\U0002a700\U0002b740\U0002b820 \uf900\uf901 \U0002f800",
    "\u3400\u4dbf\u9fff",
    # emoji and symbols
    "I love it 😍😍😍!!!",
    "👍🏽 👨‍👩‍👧‍👦 🇺🇸 ❤️ ☺",
    "© ® § ¶ † ‡ • … ‰ € £ ¥ ₹ ¢",
    "→ ← ↑ ↓ ⇒ ∀ ∃ ∑ ∏ √ ∞ ≈ ≠ ≤ ≥",
    # control, format and zero-width characters
    "tab\there\nnew line\r\ncarriage",
    "bell\x07char nul\x00char del\x7fchar esc\x1b[0m",
    "zero\u200bwidth\u200cnon\u200djoiner",
    "soft\u00adhyphen word\u2060joiner \ufeffbom",
    "bidi \u202eoverride\u202c and \u200fmark",
    "replacement \ufffd char",
    "private use \ue000\uf8ff",
    "line\u2028separator paragraph\u2029separator",
    "\x85next line \x0bvertical tab \x0cform feed",
    # punctuation runs and ASCII symbols
    "!!!???...,,,;;;:::",
    "wait...what?!?! (really) [yes] {no} <maybe>",
    "\"quoted\" 'single' `back` ``sst'' -- --- —— – ‘curly’ “double”",
    "a+b=c; x*y/z; 50% off; #hashtag @user $5 ^caret ~tilde |pipe \\back _under",
    "e-mail: john.doe+test@example.com http://example.com/path?q=1&r=2#frag",
    "¿Qué? ¡Olé! «guillemets» ‹single› „low“ 『』「」【】〈〉《》",
    "can't won't it's they're y'all o'clock rock'n'roll",
    "...",
    "-",
    # long words (WordPiece gives up past 100 characters)
    "a" * 99,
    "a" * 100,
    "a" * 101,
    "b" * 250 + " short words after",
    "é" * 60,  # 60 characters, 120 UTF-8 bytes
    "supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "x" * 40 + "." + "y" * 70,  # punctuation splits a long run into short words
    # words that fall apart into pieces or into [UNK]
    "unaffable tokenization preprocessing hyperparameterization",
    "qwxzvbnm zzzzzzzz xyzzy plugh",
    "Ʃƺǂ ȸȹ ɐɑɒ",
    # special-token-looking strings (matched or split according to the setting under test)
    "[CLS] hello [SEP] world [PAD] [MASK] [UNK]",
    "[cls] lower-case brackets [sep]",
    "##suffix ## #",
    # SST-2 style
    "it 's a charming and often affecting journey . ",
    "the movie is n't -lrb- quite -rrb- as good as ` the original ' .",
    "  leading and trailing spaces  ",
]


# "[UNK]" as a transformers folder declares it (vocabulary.read_hf_tokenizer): a special added token, matched whole in
# text as transformers does (keras-hub splits it)
UNK_ADDED_TOKEN = {"content": "[UNK]", "special": True, "normalized": False}


def _read_sst2(path):
    with open(path, newline="", encoding="utf-8") as f:
        return [row["sentence"] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


@pytest.fixture(scope="module")
def sst2_sentences(shared_data):
    sentences = _read_sst2(shared_data / "sst2" / "train.tsv") + _read_sst2(shared_data / "sst2" / "dev.tsv")
    assert len(sentences) == 67_349 + 872
    return sentences


def _transformers_ids(vocab_file, texts, *, legacy, strip_accents, split_special_tokens=True, lowercase=True):
    from transformers import BertTokenizer as FastBertTokenizer
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    settings = dict(do_lower_case=lowercase, strip_accents=strip_accents, split_special_tokens=split_special_tokens)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sequences longer than the model's 512 positions
        if legacy:
            reference = BertTokenizerLegacy(str(vocab_file), **settings)
        else:
            reference = FastBertTokenizer(vocab=str(vocab_file), **settings)
        return reference(texts, add_special_tokens=False)["input_ids"]


def _first_difference(texts, ours, theirs):
    return next(((text, a, b) for text, a, b in zip(texts, ours, theirs, strict=True) if a != b), None)


@pytest.mark.parametrize("strip_accents", [False, None, True])
def test_sst2_ids_equal_transformers(minilm_dir, sst2_sentences, strip_accents):
    vocab_file = minilm_dir / "vocab.txt"
    ours = BertTokenizer(vocab_file, lowercase=True, strip_accents=strip_accents)(sst2_sentences)
    theirs = _transformers_ids(vocab_file, sst2_sentences, legacy=False, strip_accents=strip_accents)
    assert _first_difference(sst2_sentences, ours, theirs) is None
    # SST-2 has accented words, so the accent setting is exercised: they are [UNK] when kept, pieces when stripped.
    accented = [i for i, text in enumerate(sst2_sentences) if "é" in text]
    assert len(accented) > 20
    assert any(100 in ours[i] for i in accented) == (strip_accents is False)


@pytest.mark.parametrize("strip_accents", [False, None])
def test_sst2_ids_equal_transformers_python_tokenizer(minilm_dir, sst2_sentences, strip_accents):
    vocab_file = minilm_dir / "vocab.txt"
    ours = BertTokenizer(vocab_file, lowercase=True, strip_accents=strip_accents)(sst2_sentences)
    theirs = _transformers_ids(vocab_file, sst2_sentences, legacy=True, strip_accents=strip_accents)
    assert _first_difference(sst2_sentences, ours, theirs) is None


# transformers 5's BertTokenizerLegacy ignores split_special_tokens (it always matches "[SEP]" in text), so it is
# compared with special_tokens_in_strings only.
@pytest.mark.parametrize(
    ("legacy", "special_tokens_in_strings"),
    [(False, False), (False, True), (True, True)],
    ids=["transformers", "transformers-special", "transformers-python-special"],
)
@pytest.mark.parametrize("strip_accents", [False, None, True])
def test_hard_cases_equal_transformers(minilm_dir, strip_accents, legacy, special_tokens_in_strings):
    vocab_file = minilm_dir / "vocab.txt"
    tokenizer = BertTokenizer(vocab_file, lowercase=True, strip_accents=strip_accents,
                              special_tokens_in_strings=special_tokens_in_strings,
                              added_tokens=[UNK_ADDED_TOKEN])  # fmt: skip
    ours = tokenizer(HARD_CASES)
    theirs = _transformers_ids(
        vocab_file,
        HARD_CASES,
        legacy=legacy,
        strip_accents=strip_accents,
        split_special_tokens=not special_tokens_in_strings,
    )
    assert _first_difference(HARD_CASES, ours, theirs) is None
    assert ([101, 7592, 102, 2088, 0, 103, 100] in ours) == special_tokens_in_strings  # "[CLS] hello [SEP] world ..."


def test_hard_cases_equal_transformers_cased(minilm_dir):
    vocab_file = minilm_dir / "vocab.txt"
    ours = BertTokenizer(vocab_file)(HARD_CASES)
    theirs = _transformers_ids(vocab_file, HARD_CASES, legacy=False, strip_accents=False, lowercase=False)
    assert _first_difference(HARD_CASES, ours, theirs) is None


def test_hard_cases_reach_the_edges(minilm_dir):
    """The corpus is not vacuous: it hits [UNK], the 100-character limit, empty output and accent handling."""
    tokenizer = BertTokenizer(minilm_dir / "vocab.txt", lowercase=True)
    ids = dict(zip(HARD_CASES, tokenizer(HARD_CASES), strict=True))
    assert ids[""] == ids["   \t\n  "] == []
    assert ids["a" * 100] == [13360] + [11057] * 48 + [2050]  # "aaa", 48 x "##aa", "##a"
    assert ids["a" * 101] == [100]  # over 100 characters: the whole word is [UNK]
    assert ids["zero\u200bwidth\u200cnon\u200djoiner"] == tokenizer("zerowidthnonjoiner")
    assert ids["我爱自然语言处理。"] == tokenizer("我 爱 自 然 语 言 处 理 。")
    stripped = BertTokenizer(minilm_dir / "vocab.txt", lowercase=True, strip_accents=True)
    assert stripped("café naïve") == tokenizer("cafe naive") != tokenizer("café naïve")


def _random_texts(vocab_file, count: int, seed: int) -> list[str]:
    """`count` seeded strings of vocabulary words (some upper-cased, "##" dropped), special token strings and spaces,
    glued to code points from every plane up to U+2FFFF: ASCII controls, Latin with accents, combining marks,
    punctuation of every script, CJK, private use, emoji; no surrogates (a Python `str` may hold one; UTF-8 text
    cannot)."""
    rng = random.Random(seed)
    words = [w.removeprefix("##") for w in vocab_file.read_text(encoding="utf-8").splitlines() if w[:1] != "["]

    def piece() -> str:
        r = rng.random()
        if r < 0.5:
            word = rng.choice(words)
            return word.upper() if r < 0.15 else word
        if r < 0.57:
            return " "
        if r < 0.6:
            return rng.choice(["[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]", "[sep]"])
        code = rng.randrange(0x3000) if r < 0.85 else rng.randrange(0x3000, 0x10000 if r < 0.97 else 0x30000)
        return "" if 0xD800 <= code < 0xE000 else chr(code)

    return ["".join(piece() for _ in range(rng.randrange(30))) for _ in range(count)]


# Every setting a BERT tokenizer takes: lowercase with accents kept (keras-hub), following lowercase (transformers'
# default), stripped; cased; special tokens matched in text or split.
@pytest.mark.parametrize(
    ("lowercase", "strip_accents", "special_tokens_in_strings"),
    [(True, False, False), (True, None, False), (True, True, False), (False, False, False), (False, None, False),
     (True, None, True), (False, False, True)],
)  # fmt: skip
def test_random_texts_equal_transformers(minilm_dir, lowercase, strip_accents, special_tokens_in_strings):
    """2,000 random strings per setting, beyond the cases anyone thought of. flaxbert builds its tokenizer from the
    `tokenizers` library's BERT parts, as transformers' default (Rust-backed) `BertTokenizer` does: this holds how the
    two are put together (normaliser options, special tokens matched or split, added tokens) on text nobody
    picked. Session 49 held seeds 0-5 (2,000 strings each, these 7 settings: 84,000 tokenizations) equal.
    transformers' pure-Python tokenizer is not the reference here: it differs from its own Rust one on ~1.5% of such
    strings of assigned characters, at 69 characters the two classify or normalise differently (U+037E GREEK
    QUESTION MARK, punctuation added in Unicode 13-14, Arabic format marks)."""
    vocab_file = minilm_dir / "vocab.txt"
    texts = _random_texts(vocab_file, 2000, seed=0)
    assert sum(map(len, texts)) > 2000 * 40  # not vacuous: ~50 characters a string on average
    tokenizer = BertTokenizer(vocab_file, lowercase=lowercase, strip_accents=strip_accents,
                              special_tokens_in_strings=special_tokens_in_strings,
                              added_tokens=[UNK_ADDED_TOKEN])  # fmt: skip
    ours = tokenizer(texts)
    theirs = _transformers_ids(vocab_file, texts, legacy=False, strip_accents=strip_accents, lowercase=lowercase,
                               split_special_tokens=not special_tokens_in_strings)  # fmt: skip
    assert _first_difference(texts, ours, theirs) is None
    # not vacuous: the strings reach [UNK] (a word with a character outside the vocabulary) and thousands of pieces,
    # word-initial and "##" ones
    seen = {i for ids in ours for i in ids}
    assert sum(ids.count(100) for ids in ours) > 1000 and len(seen) > 1500
    assert sum(tokenizer.id_to_token(i).startswith("##") for i in seen) > 200
    # "[CLS]", "[SEP]" and "[MASK]" typed in the text are their ids exactly where they are matched, not split
    assert ({101, 102, 103} <= seen) == special_tokens_in_strings
