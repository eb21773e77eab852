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


def test_the_released_architecture_is_encoded_in_chunks_here(released):
    """Which path the tests above exercised on this CPU (the batched one where the kernels
    are position-invariant, else one row per call; both bit-identical)."""
    from skages import _ved_infer

    enc = released[0]
    chunk = _ved_infer.encode_chunk(enc.net_.module_, torch.device("cpu"))
    invariant = _ved_infer.position_invariant(enc.net_.module_, INFERENCE_CHUNK)
    assert chunk == (INFERENCE_CHUNK if invariant else 1)


class _PositionDependent(torch.nn.Module):
    """A stand-in whose arithmetic differs with the row's position in the chunk."""

    n_pixels = 16

    def encode(self, x):
        mean = x[:, :2].sum(1, keepdim=True).repeat(1, 2)
        mean = mean + 1e-6 * torch.arange(len(x))[:, None]
        return mean, mean


def test_the_position_check_catches_a_position_dependent_kernel():
    from skages import _ved_infer

    assert not _ved_infer.position_invariant(_PositionDependent(), 8)


def test_encoding_falls_back_to_one_row_per_call(released, monkeypatch, threads):
    from skages import _ved_infer

    enc, X, _, _ = released
    monkeypatch.setattr(_ved_infer, "_CHUNK_CHECKED", {})
    monkeypatch.setattr(_ved_infer, "position_invariant", lambda module, n: False)
    assert _ved_infer.encode_chunk(enc.net_.module_, torch.device("cpu")) == 1
    threads(2)
    batch = enc.transform(X[:40])
    for position in (0, 9, 39):
        np.testing.assert_array_equal(
            batch[position], enc.transform(X[position : position + 1])[0]
        )
