"""A train step that fails on the device (out of memory): the classifier keeps what it held before the fit; a
validation that does keeps what the fit trained, and each error says which batch size to lower."""

import json
import os
import subprocess
import sys
import textwrap

# A fresh process with 8 GB of address space: a batch of 2048 rows of 512 tokens asks XLA for ~13 GB at run time (the
# step compiles; its buffers cannot be allocated), after a fit of batch 2 trained the classifier.
_CHILD = textwrap.dedent(
    """
    import json, resource
    resource.setrlimit(resource.RLIMIT_AS, (8 * 2**30, 8 * 2**30))
    import jax, numpy as np, optax
    import flaxbert

    def build():
        backbone = flaxbert.BertBackbone(200, 2, 2, 16, 32, max_sequence_length=512, seed=0)
        classifier = flaxbert.BertTextClassifier(backbone, num_classes=2, seed=1)
        classifier.compile(optimizer=optax.sgd(0.1))  # stateless: a new optimizer state equals a continued one
        return classifier

    def leaves(classifier):
        return [np.array(leaf) for leaf in jax.tree.leaves(classifier.params)]

    x = {"token_ids": np.arange(1, 33).reshape(4, 8), "segment_ids": np.zeros((4, 8), int),
         "padding_mask": np.ones((4, 8), int)}
    y = np.array([0, 1, 0, 1])
    large = {"token_ids": np.ones((2048, 512), int), "segment_ids": np.zeros((2048, 512), int),
             "padding_mask": np.ones((2048, 512), int)}
    classifier, reference = build(), build()
    for each in (classifier, reference):
        each.fit(x, y, batch_size=2, verbose=0, seed=0)
    before, logits = leaves(classifier), classifier.predict(x, verbose=0)
    try:
        classifier.fit(large, np.arange(2048) % 2, batch_size=2048, verbose=0)
        error = None
    except Exception as caught:
        error = [type(caught).__name__, str(caught), getattr(caught, "__notes__", [])]
    unchanged = all(np.array_equal(a, b) for a, b in zip(before, leaves(classifier), strict=True))
    same_logits = np.array_equal(classifier.predict(x, verbose=0), logits)
    # not counted: the next fit takes the default seed of a second fit (1), as the reference's does
    for each in (classifier, reference):
        each.fit(x, y, batch_size=2, verbose=0)
    as_second = all(np.array_equal(a, b) for a, b in zip(leaves(reference), leaves(classifier), strict=True))
    trained = float(np.abs(classifier.predict(x, verbose=0) - logits).max())
    # The validation runs out of memory, after the epoch's steps trained: they are kept
    before = leaves(classifier)
    try:
        classifier.fit(x, y, batch_size=2, verbose=0, validation_data=(large, np.arange(2048) % 2),
                       validation_batch_size=2048)
        validation_notes = None
    except Exception as caught:
        validation_notes = getattr(caught, "__notes__", [])
    kept = not all(np.array_equal(a, b) for a, b in zip(before, leaves(classifier), strict=True))
    print(json.dumps({"error": error, "unchanged": unchanged, "same_logits": same_logits, "as_second": as_second,
                      "trained": trained, "validation_notes": validation_notes, "kept": kept}))
    """
)


def test_a_step_out_of_device_memory_leaves_the_classifier_as_it_was():
    """It used to take the failed step's arrays, which hold the error: reading its params, predict and every later
    fit raised the out-of-memory error again, and the params trained before were lost."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device
    done = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    kind, message, notes = result["error"]
    assert kind == "JaxRuntimeError" and "RESOURCE_EXHAUSTED" in message
    assert notes == [
        "flaxbert: a train step of batch_size=2048 did not fit in device memory; fit again with a smaller "
        "batch_size (or a bfloat16 dtype). The classifier holds the params it had before this fit."
    ]
    assert result["unchanged"] and result["same_logits"]
    assert result["as_second"] and result["trained"] > 0  # and it trains on, the failed fit uncounted
    # A validation out of memory was said to be the train step's, and the trained params said to be dropped.
    assert result["validation_notes"] == [
        "flaxbert: validating in batches of validation_batch_size=2048 did not fit in device memory; fit again with "
        "a smaller validation_batch_size (with a checkpoint_dir, the run resumes at this validation). The classifier "
        "holds the params of the steps it trained."
    ]
    assert result["kept"]
