"""A row's latent and PSD are bit-identical whatever batch it comes in (issue 25).

Inference runs in fixed-size padded chunks (``skages._ved.INFERENCE_CHUNK`` spectra,
``DECODE_CHUNK`` latent points), so that every matrix product has the same shape and
the BLAS kernels make the same choices whatever the number of rows; these tests check on
the machine at hand that the arithmetic is then also the same at every position of a
chunk, in a batch of 1,000, with one or two torch threads. Random (seeded) weights on the
released architecture: the products are as large as in the published model.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skages._ved import DECODE_CHUNK, INFERENCE_CHUNK
from skages.encoder import SpectrumToPSDEncoder

N_BATCH = 1000
# first, inside and at the edges of a chunk and of a 512-row streaming block, last
POSITIONS = (0, 1, INFERENCE_CHUNK - 1, INFERENCE_CHUNK, 333, 511, 512, 513, 998, 999)


@pytest.fixture(scope="module")
def released():
    rng = np.random.default_rng(25)
    X = (1 + 0.03 * rng.standard_normal((N_BATCH, 7514))).astype(np.float32)
    X[rng.random(X.shape) < 0.002] = np.nan  # masked pixels
    enc = SpectrumToPSDEncoder(max_epochs=0, output_std=True, random_state=3)
    enc.fit(X[:64], psd=rng.standard_normal((64, 2092)).astype(np.float32))
    Z = rng.standard_normal((N_BATCH, 5)).astype(np.float32)
    return enc, X, Z, rng.permutation(N_BATCH)


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield lambda n: torch.set_num_threads(n)
    torch.set_num_threads(before)


def test_chunks_are_fixed_size_and_larger_than_one_row():
    # the speed of batched inference (benchmarks/bench_encoder.py) comes from chunks of
    # several rows; one row per call would make these tests trivially true
    assert INFERENCE_CHUNK > 1 and DECODE_CHUNK > 1


@pytest.mark.parametrize("n_threads", [1, 2])
def test_latent_of_a_row_in_a_batch_of_1000_equals_the_row_alone(released, threads, n_threads):
    enc, X, _, order = released
    threads(n_threads)
    batch = enc.transform(X)
    assert batch.shape == (N_BATCH, 10)
    for position in POSITIONS:
        np.testing.assert_array_equal(
            batch[position], enc.transform(X[position : position + 1])[0]
        )
    # every row at another position (and another chunk neighbourhood)
    np.testing.assert_array_equal(enc.transform(X[order]), batch[order])
    # a shorter batch: another number of padded rows in the last chunk
    np.testing.assert_array_equal(enc.transform(X[3:490]), batch[3:490])


def test_latents_do_not_depend_on_the_thread_count(released, threads):
    enc, X, _, _ = released
    rows = slice(0, 200)
    threads(1)
    one = enc.transform(X[rows])
    threads(2)
    two = enc.transform(X[rows])
    np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_decoded_psd_of_a_point_does_not_depend_on_its_batch(released, threads, n_threads):
    enc, _, Z, order = released
    threads(n_threads)
    rows = order[:300]  # a batch of 300 latent points, each at another position
    batch = enc.decode(Z[rows])
    for position in (0, 1, DECODE_CHUNK - 1, DECODE_CHUNK, 150, 299):
        np.testing.assert_array_equal(
            batch[position], enc.decode(Z[rows[position] : rows[position] + 1])[0]
        )
    np.testing.assert_array_equal(enc.decode(Z[np.sort(rows)]), batch[np.argsort(rows)])
