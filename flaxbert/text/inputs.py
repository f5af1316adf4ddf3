"""Turning what users pass as text (a string, a batch, a tuple of batches) into lists of `str`.

Bytes are text too, decoded as UTF-8: `tf.data` and TensorFlow Datasets yield strings as bytes.

The errors raised here are the pipeline's boundary checks: they name the offending item in the caller's terms,
so a wrong input fails here rather than deep inside the Rust tokenizer.
"""

from collections.abc import Sequence

import numpy as np


def as_texts(batch, what: str = "the batch") -> list[str]:
    """Checks a 1-D batch of texts (list, tuple or numpy array) and returns it as a list of `str`.

    Args:
        batch: the texts.
        what: how error messages name this batch, e.g. "segment 1".

    Returns:
        The texts as a new list, bytes decoded as UTF-8.

    Raises:
        TypeError: an item is not a string (`str`, or UTF-8 `bytes`).
        ValueError: the batch is not 1-D (for example a 2-D list given for sentence pairs) or is empty.
    """
    if isinstance(batch, np.ndarray):
        if batch.ndim != 1:
            raise ValueError(
                f"{what} must be a 1-D batch of strings, got a numpy array of shape {batch.shape}. "
                "For sentence pairs pass a tuple of two batches: (first_texts, second_texts)."
            )
        batch = batch.tolist()
    elif not isinstance(batch, Sequence) or isinstance(batch, (str, bytes)):
        raise TypeError(f"{what} must be a string or a list of strings, got {type(batch).__name__}.")
    texts = list(batch)
    if not texts:
        raise ValueError(f"{what} is empty: there is nothing to tokenize.")
    for i, text in enumerate(texts):
        if isinstance(text, (str, bytes)):
            texts[i] = as_text(text, f"item {i} of {what}")
            continue
        if isinstance(text, (list, tuple, np.ndarray)):
            raise ValueError(
                f"{what} is a 2-D list (item {i} is a {type(text).__name__}). "
                "For sentence pairs pass a tuple of batches, (first_texts, second_texts), not a list."
            )
        raise TypeError(f"item {i} of {what} is {type(text).__name__} ({text!r:.40}), expected str.")
    return texts


def as_text(text: str | bytes, what: str = "the input") -> str:
    """`text` as a `str`: itself, or UTF-8 `bytes` decoded (a ValueError naming `what` where they are not UTF-8, or
    where a `str` holds a lone surrogate, which no encoding can write and the Rust tokenizer refuses)."""
    if isinstance(text, str):
        if text.isascii():  # constant time in CPython: most text pays nothing more
            return text
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError(
                f"{what} is not valid Unicode text: it holds a lone surrogate ({text[error.start]!r} at character "
                f"{error.start}: {text[:40]!r}), as decoding with errors='surrogateescape' or a JSON \\u escape "
                "leaves; decode the source with its real encoding, or replace them: "
                "text.encode('utf-8', 'replace').decode('utf-8')."
            ) from None
        return text
    try:
        return text.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{what} is bytes that are not UTF-8 ({error.reason} at byte {error.start}: {text[:40]!r}); decode the "
            "text to str yourself with its real encoding."
        ) from None


def as_segments(x) -> tuple[list[list[str]], bool]:
    """Reads a preprocessor input: one string, a batch, or a tuple with one entry per segment.

    Args:
        x: a `str`; a 1-D batch of strings (list or numpy array); a tuple of such batches of equal size, one per
            segment, e.g. `(premises, hypotheses)`; or a tuple of strings (one unbatched example, several segments).
            A string may be UTF-8 `bytes` wherever a `str` may be.

    Returns:
        `(segments, batched)`: one list of texts per segment, all of the same length, and whether the input was batched.

    Raises:
        TypeError, ValueError: the input is none of the above; the messages say which part is wrong.
    """
    if isinstance(x, (str, bytes)):
        return [[as_text(x)]], False
    if not isinstance(x, tuple):
        return [as_texts(x)], True
    if not x:
        raise ValueError("got an empty tuple: pass one batch of strings per segment, e.g. (first_texts, second_texts).")
    if all(isinstance(part, (str, bytes)) for part in x):
        return [as_texts([part], f"segment {i}") for i, part in enumerate(x)], False
    if any(isinstance(part, (str, bytes)) for part in x):
        raise TypeError("a tuple input mixes strings and batches: give one string per segment or one batch each.")
    segments = [as_texts(part, f"segment {i}") for i, part in enumerate(x)]
    sizes = [len(texts) for texts in segments]
    if len(set(sizes)) > 1:
        raise ValueError(f"the segments of a tuple input must have the same number of texts, got sizes {sizes}.")
    return segments, True
