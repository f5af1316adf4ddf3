"""BertTokenizer / DistilBertTokenizer: keras-hub's documented examples and the object's API."""

import json
import re

import jax.numpy as jnp
import numpy as np
import pytest

from flaxbert.text import BertTokenizer, DistilBertTokenizer

TOY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "quick", "brown", "fox", ".", "jump", "##ed", "##s"]


@pytest.fixture(scope="module")
def uncased(minilm_dir):
    """The real uncased BERT vocabulary with keras-hub's preset settings (lowercase, accents kept)."""
    return BertTokenizer(minilm_dir / "vocab.txt", lowercase=True)


def test_keras_hub_anchor_on_the_real_uncased_vocabulary(uncased):
    # REFERENCE.md §4.4: BertTokenizer.from_preset("bert_tiny_en_uncased")(["The quick brown fox."])
    assert uncased(["The quick brown fox."]) == [[1996, 4248, 2829, 4419, 1012]]
    assert uncased("The quick brown fox.") == [1996, 4248, 2829, 4419, 1012]


def test_special_token_ids_are_looked_up_by_string(uncased):
    assert (uncased.pad_token_id, uncased.oov_token_id, uncased.cls_token_id) == (0, 100, 101)
    assert (uncased.sep_token_id, uncased.mask_token_id) == (102, 103)
    assert (uncased.start_token_id, uncased.end_token_id) == (101, 102)
    shuffled = ["the", "[MASK]", "[SEP]", "fox", "[UNK]", "[CLS]", "[PAD]"]
    tokenizer = DistilBertTokenizer(shuffled)
    assert (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id) == (5, 2, 6)
    assert (tokenizer.mask_token_id, tokenizer.oov_token_id) == (1, 4)


def test_missing_special_tokens_are_named():
    with pytest.raises(ValueError, match=r"lacks the special token\(s\) \[SEP\], \[MASK\]"):
        BertTokenizer(["[PAD]", "[UNK]", "[CLS]", "the"])


def test_wordpiece_on_a_toy_vocabulary():
    tokenizer = BertTokenizer(TOY_VOCAB, lowercase=True)
    assert tokenizer(["The fox jumped.", "the foxs jumps", "the foxes", "THE"]) == [
        [5, 8, 10, 11, 9],
        [5, 8, 12, 10, 12],
        [5, 1],  # "foxes": "fox" then no "##es" -> the whole word is [UNK]
        [5],
    ]
    assert BertTokenizer(TOY_VOCAB)("THE fox") == [1, 8]  # cased: "THE" is not in the vocabulary


def test_batches_may_be_numpy_arrays(uncased):
    texts = np.array(["a fox", "the quick brown fox."])
    assert uncased(texts) == [uncased("a fox"), uncased("the quick brown fox.")]
    assert uncased(np.array(["a fox"], dtype=object)) == [[1037, 4419]]


def test_detokenize_joins_words_with_spaces(uncased):
    assert uncased.detokenize([1996, 4248, 2829, 4419, 1012]) == "the quick brown fox ."
    tokenizer = BertTokenizer(TOY_VOCAB)
    assert tokenizer.detokenize(np.array([[2, 5, 8, 10, 11, 3], [5, 6, 0, 0, 0, 0]])) == [
        "[CLS] the fox jumped [SEP]",
        "the quick [PAD] [PAD] [PAD] [PAD]",
    ]
    assert tokenizer.detokenize([]) == ""
    # jax arrays, as keras-hub's preprocessor hands them out: a 1-D one was taken for a batch (its scalars are
    # iterable) and failed inside jax
    assert tokenizer.detokenize(jnp.array([2, 5, 8, 3])) == "[CLS] the fox [SEP]"
    assert tokenizer.detokenize(jnp.array([[5, 8], [6, 0]])) == ["the fox", "quick [PAD]"]
    for ids, error in [("1996", r"ids must be a sequence of integer token ids, got str"), (5, "got int"),
                       (jnp.array(5), "ids must be a sequence of integer token ids, got ArrayImpl"),
                       (np.array(5), "got ndarray"),
                       (np.zeros((1, 1, 2), int), r"1-D sequence of integer token ids, got int64 \(1, 1, 2\)"),
                       ([5.7], "must be a 1-D sequence of integer token ids, got float64"),
                       ([5, 13], r"ids: ids outside the vocabulary's 0..12: e.g. \[13\]"), ([-1], r"e.g. \[-1\]"),
                       ([[5], [99]], r"row 1 of ids: ids outside")]:  # fmt: skip
        with pytest.raises((TypeError, ValueError), match=error):
            tokenizer.detokenize(ids)


def test_settings_must_be_booleans():
    for settings, error in [
        (dict(lowercase="no"), "lowercase must be True or False, got 'no'"),
        (dict(strip_accents="x"), "strip_accents must be True, False or None"),
        (dict(special_tokens_in_strings=1), "special_tokens_in_strings must be True or False"),
    ]:
        with pytest.raises(ValueError, match=error):
            BertTokenizer(TOY_VOCAB, **settings)
    assert BertTokenizer(TOY_VOCAB, lowercase=np.bool_(True), strip_accents=None).lowercase is True


def test_vocabulary_lookups(uncased):
    assert uncased.vocabulary_size() == 30522
    assert uncased.get_vocabulary()[1996] == "the"
    assert uncased.id_to_token(4419) == "fox"
    assert uncased.token_to_id("fox") == 4419
    assert uncased.token_to_id("##ing") == 2075
    with pytest.raises(ValueError, match="id 30522 is out of range"):
        uncased.id_to_token(30522)
    with pytest.raises(ValueError, match="'foxx' is not in the vocabulary"):
        uncased.token_to_id("foxx")


def test_special_tokens_in_strings():
    text = "the [SEP] fox"
    assert BertTokenizer(TOY_VOCAB)(text) == [5, 1, 1, 1, 8]  # "[", "sep", "]" are not in the vocabulary
    assert BertTokenizer(TOY_VOCAB, special_tokens_in_strings=True)(text) == [5, 3, 8]


def test_config_and_vocabulary_round_trip(tmp_path, uncased):
    path = uncased.save_vocabulary(tmp_path / "assets" / "vocabulary.txt")
    assert path.read_text(encoding="utf-8").splitlines()[:3] == ["[PAD]", "[unused0]", "[unused1]"]
    rebuilt = BertTokenizer(path, **json.loads(json.dumps(uncased.get_config())))
    assert rebuilt.get_config() == {"lowercase": True, "strip_accents": False, "special_tokens_in_strings": False}
    assert rebuilt.get_vocabulary() == uncased.get_vocabulary()
    texts = ["Crème brûlée [SEP] ĀĒĪ", "The quick brown fox."]
    assert rebuilt(texts) == uncased(texts)


CANNOT_KEEP = [("fox ", "ends in whitespace"), ("fox\u00a0", "ends in whitespace"), ("fo\nx", "holds a line break"),
               ("fo\rx", "holds a line break")]  # fmt: skip


@pytest.mark.parametrize(("token", "what"), CANNOT_KEEP)
def test_a_token_a_vocabulary_file_cannot_keep_is_refused_before_writing(tmp_path, token, what):
    """A vocabulary file is read with each line's trailing whitespace stripped (as keras-hub reads it), so "fox "
    came back as a second "fox" and took that string's id: a saved preset tokenized "fox" as another id, with no
    error. A line break inside a token moved every later id."""
    tokenizer = BertTokenizer([*TOY_VOCAB, token])
    with pytest.raises(ValueError, match=re.escape(f"token 13, {token!r}, {what}, which a one-token-per-line file")):
        tokenizer.save_vocabulary(tmp_path / "vocabulary.txt")
    assert not (tmp_path / "vocabulary.txt").exists()
    empty = BertTokenizer([*TOY_VOCAB, ""])  # an empty line reads back as it is
    saved = BertTokenizer(empty.save_vocabulary(tmp_path / "kept.txt"))
    assert saved.get_vocabulary() == empty.get_vocabulary()


def test_from_preset_reads_an_hf_checkpoint_folder(minilm_dir, uncased):
    tokenizer = BertTokenizer.from_preset(minilm_dir)
    # tokenizer_config.json: do_lower_case true, strip_accents null (-> strip when lower-casing, as HF does)
    # transformers matches "[UNK]" typed in text as its other special tokens; keras-hub does not (it is no special
    # token there): a transformers folder has it as a special added token
    unk = {"content": "[UNK]", "special": True, "normalized": False, "single_word": False, "lstrip": False,
           "rstrip": False}  # fmt: skip
    assert tokenizer.get_config() == {"lowercase": True, "strip_accents": None, "special_tokens_in_strings": True,
                                      "added_tokens": [unk]}  # fmt: skip
    assert tokenizer("Crème [SEP]") == [13675, 21382, 102] == tokenizer("creme") + [102]
    assert tokenizer("a [UNK] b[UNK]c") == [1037, 100, 1038, 100, 1039]  # transformers' ids
    assert uncased("Crème [SEP]") == [100, 1031, 19802, 1033]  # keras-hub settings: accent kept, "[SEP]" split


def test_vocabulary_lines_lose_trailing_whitespace_as_in_keras_hub_and_transformers(tmp_path, keras_hub):
    """A vocab.txt line's trailing spaces, tabs, Unicode spaces and Windows line end are not part of its token, in
    keras-hub's `WordPieceTokenizer` and in transformers 5's `BertTokenizer` alike: "fox " is the token "fox", and a
    line of one no-break space is the empty token (which no text matches), keeping the ids after it."""
    import transformers

    lines = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "fox ", "jump\t", "\u00a0", "##ed\u3000", "."]
    (tmp_path / "vocab.txt").write_bytes("\r\n".join(lines).encode("utf-8") + b"\r\n")
    (tmp_path / "tokenizer_config.json").write_text('{"tokenizer_class": "BertTokenizer"}', encoding="utf-8")
    want = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "fox", "jump", "", "##ed", "."]
    keras = keras_hub.tokenizers.WordPieceTokenizer(vocabulary=str(tmp_path / "vocab.txt"), lowercase=True)
    assert BertTokenizer(tmp_path / "vocab.txt").get_vocabulary() == keras.get_vocabulary() == want
    hf, ours = transformers.AutoTokenizer.from_pretrained(str(tmp_path)), BertTokenizer.from_preset(tmp_path)
    assert ours.get_vocabulary() == hf.convert_ids_to_tokens(range(len(hf))) == want
    text = "The fox jumped."
    assert ours(text) == hf(text, add_special_tokens=False)["input_ids"] == [5, 6, 7, 9, 10]


def test_from_preset_with_only_tokenizer_json(tmp_path, minilm_dir):
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).write_bytes((minilm_dir / name).read_bytes())
    tokenizer = DistilBertTokenizer.from_preset(tmp_path)
    assert isinstance(tokenizer, DistilBertTokenizer)
    assert tokenizer.get_vocabulary() == BertTokenizer(minilm_dir / "vocab.txt").get_vocabulary()
    # a vocab with an id missing would move every later token onto its neighbour's id: refused
    saved = json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))
    del saved["model"]["vocab"]["[unused4]"]
    (tmp_path / "tokenizer.json").write_text(json.dumps(saved), encoding="utf-8")
    with pytest.raises(ValueError, match=r"the WordPiece ids in .*tokenizer.json are not 0..30520 without gaps"):
        DistilBertTokenizer.from_preset(tmp_path)


def test_from_preset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no vocab.txt or tokenizer.json"):
        BertTokenizer.from_preset(tmp_path)
    (tmp_path / "vocab.txt").write_text("\n".join(TOY_VOCAB) + "\n", encoding="utf-8")
    (tmp_path / "tokenizer_config.json").write_text('{"tokenize_chinese_chars": false}', encoding="utf-8")
    with pytest.raises(ValueError, match="tokenize_chinese_chars"):
        BertTokenizer.from_preset(tmp_path)


def test_truncation_on_the_left_is_refused(tmp_path, minilm_dir):
    """transformers keeps a long text's last tokens under truncation_side="left"; flaxbert keeps the first, so it
    says so instead of giving other ids."""
    (tmp_path / "vocab.txt").write_bytes((minilm_dir / "vocab.txt").read_bytes())
    (tmp_path / "tokenizer_config.json").write_text('{"truncation_side": "left"}', encoding="utf-8")
    with pytest.raises(ValueError, match="truncation_side='left', but flaxbert truncates on the right only"):
        BertTokenizer.from_preset(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text('{"truncation_side": "right"}', encoding="utf-8")
    assert BertTokenizer.from_preset(tmp_path)("Hello") == [7592]


UNK3 = ["[UNK]"] * 3
# name: (tokenizer.json normalizer edits, tokenizer_config.json, config.json (None: no file), transformers' tokens of
# "Café ÉCOLE Hello" in the uncased vocabulary)
CASE_FOLDERS = {
    "no configs: tokenizer.json's normalizer": ({"lowercase": False}, None, None, UNK3),
    "no class named: tokenizer.json's, not do_lower_case": ({"lowercase": False}, {"do_lower_case": True}, None, UNK3),
    "accents kept by tokenizer.json": ({"strip_accents": False}, {}, None, ["[UNK]", "[UNK]", "hello"]),
    "PreTrainedTokenizerFast": ({"lowercase": False}, {"tokenizer_class": "PreTrainedTokenizerFast"}, None, UNK3),
    "model_type names BertTokenizer: its defaults": ({"lowercase": False}, None, {"model_type": "bert"},
                                                     ["cafe", "ecole", "hello"]),
    "tokenizer_class: tokenizer_config.json's keys": ({"lowercase": True}, {"tokenizer_class": "BertTokenizer",
                                                                            "do_lower_case": False}, None, UNK3),
}  # fmt: skip


@pytest.mark.parametrize("case", CASE_FOLDERS)
def test_case_settings_are_read_where_transformers_reads_them(tmp_path, minilm_dir, case):
    """transformers 5 takes lower-casing and accents from tokenizer.json's normalizer when the folder names no
    tokenizer class, and from tokenizer_config.json (BertTokenizer's defaults for absent keys) when it names one."""
    from transformers import AutoTokenizer

    normalizer, tokenizer_config, model_config, tokens = CASE_FOLDERS[case]
    tokenizer_json = json.loads((minilm_dir / "tokenizer.json").read_text(encoding="utf-8"))
    tokenizer_json["normalizer"].update(normalizer)
    (tmp_path / "tokenizer.json").write_text(json.dumps(tokenizer_json), encoding="utf-8")
    for name, config in (("tokenizer_config.json", tokenizer_config), ("config.json", model_config)):
        if config is not None:
            (tmp_path / name).write_text(json.dumps(config), encoding="utf-8")
    reference = AutoTokenizer.from_pretrained(tmp_path)
    theirs = reference("Café ÉCOLE Hello", add_special_tokens=False)["input_ids"]
    assert reference.convert_ids_to_tokens(theirs) == tokens
    assert BertTokenizer.from_preset(tmp_path)("Café ÉCOLE Hello") == theirs


def test_a_tokenizer_json_without_bert_normalizer_is_refused(tmp_path, minilm_dir):
    tokenizer_json = json.loads((minilm_dir / "tokenizer.json").read_text(encoding="utf-8"))
    tokenizer_json["normalizer"] = {"type": "Lowercase"}
    (tmp_path / "tokenizer.json").write_text(json.dumps(tokenizer_json), encoding="utf-8")
    with pytest.raises(ValueError, match="normalizes text with Lowercase; flaxbert's BertTokenizer applies BERT's"):
        BertTokenizer.from_preset(tmp_path)


def test_non_string_items_are_named(uncased):
    with pytest.raises(TypeError, match=r"item 1 of the batch is int \(7\), expected str"):
        uncased(["a fox", 7])
    with pytest.raises(TypeError, match="must be a string or a list of strings, got int"):
        uncased(7)
    surrogate = json.loads('"caf\\ud800e"')  # as JSON escapes and errors="surrogateescape" decoding leave them
    with pytest.raises(ValueError, match=r"item 1 of the batch is not valid Unicode text: .*'\\ud800' at character 3"):
        uncased(["a fox", surrogate])
    with pytest.raises(ValueError, match="the input is not valid Unicode text"):
        uncased(surrogate)
    assert uncased("café") == uncased(["café"])[0]  # non-ASCII text passes the check


def test_a_tokenizer_class_other_than_berts_is_refused(tmp_path, minilm_dir):
    """transformers' BertJapaneseTokenizer (cl-tohoku's models) splits words into characters or by MeCab: read as a
    plain WordPiece folder, its ids were other than transformers'. BERT's tokenizer under another model's name loads."""
    from transformers import AutoTokenizer

    (tmp_path / "vocab.txt").write_bytes((minilm_dir / "vocab.txt").read_bytes())
    japanese = {"tokenizer_class": "BertJapaneseTokenizer", "word_tokenizer_type": "basic",
                "subword_tokenizer_type": "character"}  # fmt: skip
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(japanese), encoding="utf-8")
    theirs = AutoTokenizer.from_pretrained(tmp_path)("unaffable", add_special_tokens=False)["input_ids"]
    with pytest.raises(ValueError, match="tokenizer_class 'BertJapaneseTokenizer', which splits text otherwise"):
        BertTokenizer.from_preset(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text('{"tokenizer_class": ["BertTokenizer"]}', encoding="utf-8")
    with pytest.raises(ValueError, match=r"tokenizer_class must be a class name \(a string\), got \['BertTokenizer'\]"):
        BertTokenizer.from_preset(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text('{"tokenizer_class": "ElectraTokenizerFast"}', encoding="utf-8")
    ours = BertTokenizer.from_preset(tmp_path)("unaffable")
    assert ours == AutoTokenizer.from_pretrained(tmp_path)("unaffable", add_special_tokens=False)["input_ids"]
    assert ours != theirs  # character by character, there


TOKENIZER_JSON_EDITS = {
    "max_input_chars_per_word": ({"model": {"max_input_chars_per_word": 10}}, "sets max_input_chars_per_word=10"),
    "continuing_subword_prefix": ({"model": {"continuing_subword_prefix": "@@"}}, "continuing_subword_prefix='@@'"),
    "pre_tokenizer": ({"pre_tokenizer": {"type": "WhitespaceSplit"}}, "splits text into words with WhitespaceSplit"),
    "no post_processor": ({"post_processor": None}, "post_processor does not add .CLS. and .SEP. as BERT does"),
}


@pytest.mark.parametrize("edit", TOKENIZER_JSON_EDITS)
def test_a_tokenizer_json_that_differs_from_berts_is_refused(tmp_path, minilm_dir, edit):
    """Loaded as it is (no tokenizer class named), a tokenizer.json's WordPiece settings, word split and special
    tokens are transformers' ids: flaxbert's fixed BERT pipeline gave others for these (on "Supercalifragilistic
    fox!"), so it refuses them; BERT's own, a BertProcessing or a one-step Sequence of BertPreTokenizer, load."""
    from transformers import AutoTokenizer

    changes, message = TOKENIZER_JSON_EDITS[edit]
    tokenizer_json = json.loads((minilm_dir / "tokenizer.json").read_text(encoding="utf-8"))
    bert_ids = AutoTokenizer.from_pretrained(minilm_dir)("Supercalifragilistic fox!")["input_ids"]
    for key, value in changes.items():
        tokenizer_json[key] = {**tokenizer_json[key], **value} if key == "model" else value
    (tmp_path / "tokenizer.json").write_text(json.dumps(tokenizer_json), encoding="utf-8")
    assert AutoTokenizer.from_pretrained(tmp_path)("Supercalifragilistic fox!")["input_ids"] != bert_ids
    with pytest.raises(ValueError, match=message):
        BertTokenizer.from_preset(tmp_path)
    tokenizer_json = json.loads((minilm_dir / "tokenizer.json").read_text(encoding="utf-8"))
    tokenizer_json["post_processor"] = {"type": "BertProcessing", "sep": ["[SEP]", 102], "cls": ["[CLS]", 101]}
    tokenizer_json["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [{"type": "BertPreTokenizer"}]}
    (tmp_path / "tokenizer.json").write_text(json.dumps(tokenizer_json), encoding="utf-8")
    assert BertTokenizer.from_preset(tmp_path)("Supercalifragilistic fox!") == bert_ids[1:-1]


def test_vocab_txt_and_tokenizer_json_that_disagree_are_refused(tmp_path, minilm_dir):
    """transformers 5 tokenizes with tokenizer.json's ids; flaxbert read vocab.txt's, so a stale vocab.txt (two
    tokens swapped) gave other ids silently."""
    from transformers import AutoTokenizer

    vocabulary = (minilm_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    hello, world = vocabulary.index("hello"), vocabulary.index("world")
    vocabulary[hello], vocabulary[world] = "world", "hello"
    (tmp_path / "vocab.txt").write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
    (tmp_path / "tokenizer.json").write_bytes((minilm_dir / "tokenizer.json").read_bytes())
    assert AutoTokenizer.from_pretrained(tmp_path)("hello", add_special_tokens=False)["input_ids"] == [hello]
    with pytest.raises(ValueError, match=f"disagree \\('hello' is id {world} in vocab.txt but {hello} in tokenizer"):
        BertTokenizer.from_preset(tmp_path)
    (tmp_path / "vocab.txt").unlink()
    assert BertTokenizer.from_preset(tmp_path)("hello") == [hello]


def test_unk_typed_in_text_is_split_as_keras_hub_splits_it(keras_hub):
    """keras-hub's special_tokens_in_strings matches [CLS], [SEP], [PAD] and [MASK] whole, not the OOV token: flaxbert
    matched "[UNK]" too ([8, 1, 9] where keras-hub gives [8, 5, 7, 6, 9])."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[", "]", "unk", "a", "b", "s"]
    theirs = keras_hub.models.BertTokenizer(vocabulary=vocab, lowercase=True, special_tokens_in_strings=True)
    ours = BertTokenizer(vocab, lowercase=True, special_tokens_in_strings=True)
    for text in ("a [UNK] b", "a[UNK]b", "[SEP][SEP]", "[[SEP]]", "a[MASK]b", "[unk]"):
        assert ours(text) == [int(i) for i in theirs(text)], text


def test_a_pickled_or_copied_tokenizer_splits_what_the_original_splits(tmp_path, minilm_dir):
    """A folder saved with split_special_tokens: its special added tokens ("[UNK]", extra markers) are split in text.
    Pickled, the Rust tokenizer forgot that, and the copy matched them whole ([1037, 100, 1037], not transformers')."""
    import copy
    import pickle

    from transformers import AutoTokenizer

    (tmp_path / "vocab.txt").write_bytes((minilm_dir / "vocab.txt").read_bytes())
    config = {"tokenizer_class": "BertTokenizer", "split_special_tokens": True,
              "extra_special_tokens": ["<e>"]}  # fmt: skip
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    theirs = AutoTokenizer.from_pretrained(tmp_path)("a [UNK] <e> a", add_special_tokens=False)["input_ids"]
    tokenizer = BertTokenizer.from_preset(tmp_path)
    assert tokenizer("a [UNK] <e> a") == theirs and 100 not in theirs
    for copied in (pickle.loads(pickle.dumps(tokenizer)), copy.deepcopy(tokenizer)):
        assert type(copied) is BertTokenizer and copied("a [UNK] <e> a") == theirs
        assert copied.get_config() == tokenizer.get_config()


def test_a_large_batch_is_encoded_in_chunks_to_the_same_ids(monkeypatch):
    """Encodings hold token strings and masks besides the ids (~5 KB a sentence): a batch is encoded a chunk at a
    time, so a 100,000-sentence predict no longer holds all of them at once. The ids are the same."""
    from flaxbert.text import tokenizer as tokenizer_module

    tokenizer = BertTokenizer(TOY_VOCAB)
    texts = ["the quick brown fox", "jumped .", "", "foxes", "the the", "brown jumps ."] * 3
    whole = tokenizer(texts)
    monkeypatch.setattr(tokenizer_module, "_ENCODE_CHUNK", 4)
    assert tokenizer(texts) == whole and len(whole) == 18
    assert tokenizer(np.asarray(texts)) == whole
