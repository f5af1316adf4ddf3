"""benchmarks/sst2_epoch.py's flaxbert peers: what they train on and what they score. No model is built: a fake
classifier stands in."""

import sys
import types

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))  # the benchmarks import each other as top-level modules
import sst2_epoch  # noqa: E402


class _Classifier:
    def __init__(self):
        self.bucket, self.calls = None, []

    def fit(self, x, y, **kwargs):
        self.calls.append(("fit", x, list(y), kwargs["batch_size"], kwargs["group_by_length"]))

    def evaluate(self, x, y, **kwargs):
        self.calls.append(("evaluate", x, list(y)))
        return {"loss": 0.5, "accuracy": 0.75}


def test_the_flaxbert_peers_train_on_the_train_split_and_score_the_dev_split(monkeypatch):
    train, dev = (["a fine film", "dull"], [1, 0]), (["great", "bad", "ok"], [1, 0, 1])
    args = types.SimpleNamespace(preset="p", precision="float32", sequence_length=16, batch_size=4)
    for bucket, grouped in ((False, False), (True, False), (True, True)):
        classifier = _Classifier()
        monkeypatch.setattr(sst2_epoch, "flaxbert_classifier", lambda *_, c=classifier: c)
        result = sst2_epoch.run_flaxbert(args, train, dev, bucket=bucket, group_by_length=grouped)
        assert classifier.bucket is bucket
        assert classifier.calls == [("fit", train[0], train[1], 4, grouped), ("evaluate", dev[0], dev[1])]
        assert result["dev_accuracy"] == 0.75 and result["train_s"] == result["measured_s"] > 0
