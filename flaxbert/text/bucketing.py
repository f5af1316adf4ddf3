"""Length bucketing: pad a batch only as far as the smallest of a few fixed lengths that holds its longest row.

Short-text datasets (SST-2: 13 tokens on average) then do not pay for 128 or 512 positions, and jit still sees only a
handful of shapes. The fixed lengths are 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, ... (powers of two and
1.5 times powers of two, so above 16 a batch is padded to less than 1.5 times its longest row), capped at and always
including the preprocessor's `sequence_length`: 7 shapes for 128 and 11 for 512.
"""

import functools

SMALLEST_BUCKET = 16


@functools.cache
def bucket_lengths(sequence_length: int) -> tuple[int, ...]:
    """The padded lengths a batch can get when bucketing under `sequence_length`, ascending.

    Example:
        >>> bucket_lengths(128)
        (16, 24, 32, 48, 64, 96, 128)
        >>> bucket_lengths(100)
        (16, 24, 32, 48, 64, 96, 100)
    """
    lengths, power = [], SMALLEST_BUCKET
    while power < sequence_length:
        lengths += [n for n in (power, power * 3 // 2) if n < sequence_length]
        power *= 2
    return (*lengths, sequence_length)


def bucket_length(longest: int, sequence_length: int) -> int:
    """The smallest bucket length of `sequence_length` that holds a row of `longest` tokens.

    Raises:
        ValueError: `longest` exceeds `sequence_length` (rows must be truncated first).
    """
    if longest > sequence_length:
        raise ValueError(f"a row of {longest} tokens does not fit sequence_length={sequence_length}.")
    return next(n for n in bucket_lengths(sequence_length) if n >= longest)
