"""The built-in presets table (`flaxbert.presets.registry`) is keras-hub's, and the one REFERENCE §7.3 writes down.

Loading a built-in preset reads its config from the download, so a wrong row here would not show in any output: it
shows in `TextClassifier.presets`, in the Kaggle mirror hint and in the architecture check, and only these tests
compare it with its sources."""

import re

from flaxbert.presets.registry import PRESETS


def _keras_hub_presets(keras_hub) -> dict:
    """keras-hub's own table of its BERT and DistilBERT presets (their Kaggle handles and published sizes)."""
    from keras_hub.src.models.bert.bert_presets import backbone_presets as bert
    from keras_hub.src.models.distil_bert.distil_bert_presets import backbone_presets as distil_bert

    return {**bert, **distil_bert}


def test_every_preset_has_keras_hubs_handle_size_and_architecture(keras_hub):
    theirs = _keras_hub_presets(keras_hub)
    assert set(PRESETS) <= set(theirs), sorted(set(PRESETS) - set(theirs))
    for name, preset in PRESETS.items():
        listed = theirs[name]
        assert preset.kaggle_handle == listed["kaggle_handle"], name
        assert preset.params == listed["metadata"]["params"], name
        assert preset.architecture == listed["metadata"]["path"], name


def _reference_rows(text: str) -> dict[str, list[str]]:
    """REFERENCE §7.3's presets table: {name: its cells}, a `…/` handle written out from its family's prefix."""
    section = text[text.index("### 7.3") :]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        name = re.fullmatch(r"`(\w+)`", cells[0]) if len(cells) == 12 else None
        if name is None:
            if rows and not line.startswith("|"):
                break  # the table has ended
            continue
        handle = cells[1].strip("`")
        family = "distil_bert" if name[1].startswith("distil_bert") else "bert"
        cells[1] = handle.replace("…/", f"kaggle://keras/{family}/keras/")
        rows[name[1]] = cells
    return rows


def test_every_preset_is_the_row_reference_writes_down(reference_doc):
    rows = _reference_rows(reference_doc)
    assert set(rows) == set(PRESETS)
    for name, preset in PRESETS.items():
        handle, layers, hidden, heads, ffn, vocab, positions, segments, lowercase, params, hf = rows[name][1:]
        config = preset.backbone
        assert preset.kaggle_handle == handle, name
        shape = (config.num_layers, config.hidden_dim, config.num_heads, config.intermediate_dim)
        assert shape == (int(layers), int(hidden), int(heads), int(ffn)), name
        assert (config.vocabulary_size, config.max_sequence_length) == (int(vocab), int(positions)), name
        assert getattr(config, "num_segments", None) == (None if segments == "–" else int(segments)), name
        assert preset.lowercase == {"yes": True, "no": False}[lowercase], name
        assert preset.params == int(params.split()[0].replace(",", "")), name
        task = re.search(r"num_classes=(\d+)", hf)
        assert preset.num_classes == (int(task[1]) if task else None), name
        assert preset.hf_equivalent == (None if task else hf.strip("`")), name
