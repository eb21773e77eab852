"""Tests of the realism report's like-for-like sample (``benchmarks/bench_realism.py``).

The report judges issue 21's labels -> age row on simulated stars drawn like the real
sample (APOKASC-3 Gold x APOKASC-2): the same population cuts and the same number of
stars per state. These tests check that draw on a small seeded survey.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_realism as br


@pytest.fixture(scope="module")
def labels():
    return br.sim_labels_only(3000)


def test_gold_like_sample_has_the_real_samples_population_and_size(labels):
    sizes = {"RGB": 300, "RC": 200}
    like = br.gold_like_sample(labels, sizes)
    assert (like.evstate == "RGB").sum() == 300
    assert (like.evstate == "RC").sum() == 200
    assert like.log_age.notna().all()
    assert (like.alpha_m_true <= 0.12).all()
    assert like.mass_true.between(0.9, 1.8).all()
    assert like.index.is_unique
    # seeded: the same draw twice, another seed another draw
    assert like.index.equals(br.gold_like_sample(labels, sizes).index)
    assert not like.index.equals(br.gold_like_sample(labels, sizes, seed=1).index)


def test_gold_like_sample_says_when_the_survey_is_too_small(labels):
    n_rgb = int(
        (br.gold_like(labels) & labels.log_age.notna().to_numpy())[
            (labels.evstate == "RGB").to_numpy()
        ].sum()
    )
    with pytest.raises(ValueError, match=rf"{n_rgb} Gold-like RGB stars .* simulate more"):
        br.gold_like_sample(labels, {"RGB": n_rgb + 1, "RC": 1})


def test_real_sample_sizes_count_gold_stars_with_an_apokasc2_age_in_the_same_state(
    shared_data,
):
    import pandas as pd

    from skages.io import read_apokasc2

    sizes = br.real_labels_age_sizes(shared_data)
    gold = pd.read_csv(shared_data / "apokasc3" / "Table4_Apoor_RGB+RC_Gold.csv")
    a2 = read_apokasc2().to_pandas()
    aged = a2[np.isfinite(a2[["mass", "teff", "fe_h", "log_age"]].to_numpy()).all(axis=1)]
    pairs = set(zip(aged.kic, aged.evstate, strict=True))
    for state in ("RGB", "RC"):
        kic = gold.KIC[gold.Evol_State == state]
        assert sizes[state] == sum((k, state) in pairs for k in kic)
    assert sizes["RGB"] > 1000 and sizes["RC"] > 1000
