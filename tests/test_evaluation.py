"""The evaluation report: structure, the measures by hand, figures and files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from skages.encoder import SpectrumToPSDEncoder
from skages.evaluation import (
    age_metrics,
    alpha_sensitivity,
    evaluate_age_model,
    latent_classification,
    latent_regression,
    split_survey,
)
from skages.forest import ProbabilisticForestRegressor
from skages.pipeline import fit_age_model


@pytest.fixture(scope="module")
def report(small_survey):
    train, test = split_survey(small_survey, test_size=0.3, random_state=0)
    model = fit_age_model(
        train.spectra,
        train.psd,
        train.labels,
        encoder=SpectrumToPSDEncoder(
            encoder_filters=(4, 8),
            hidden_units=8,
            decoder_filters=(4, 4),
            max_epochs=2,
            random_state=0,
        ),
        forest=ProbabilisticForestRegressor(n_estimators=20, random_state=0),
    )
    return evaluate_age_model(model, train, test, n_components=5), train, test


def test_split_keeps_the_mix(small_survey):
    train, test = split_survey(small_survey, test_size=0.3, random_state=1)
    n = len(small_survey.labels)
    assert len(train.labels) + len(test.labels) == n
    assert len(test.labels) == pytest.approx(0.3 * n, abs=1)
    assert train.spectra.shape[0] == len(train.labels) and test.psd.shape[0] == len(test.labels)
    ids = set(train.labels["apogee_id"]) | set(test.labels["apogee_id"])
    assert len(ids) == n  # disjoint and complete
    frac = lambda lab: (lab["evstate"] == "RC").mean()  # noqa: E731
    assert frac(train.labels) == pytest.approx(frac(test.labels), abs=0.05)


def test_report_structure_and_files(report, tmp_path):
    rep, _, test = report
    m = rep.metrics
    assert {"latent", "oracle", "mass oracle", "direct", "latent_vs_true_age"} <= set(m["ages"])
    assert any(k.startswith("ablation") for k in m["ages"])
    assert set(m["ages"]["latent"]) >= {"all"}
    assert m["n_test"] == len(test.labels)
    assert m["n_test_aged"] == int(
        (test.labels["precise_age"] & test.labels["log_age"].notna()).sum()
    )
    assert set(m["abundances"]) == {"fe_h", "alpha_m", "c_n"}
    assert set(m["seismic"]) == {"numax", "dnu", "excess_dnu"}
    assert 0 <= m["state"]["accuracy"] <= 1
    assert np.sum(m["state"]["confusion"]) == len(test.labels)
    assert set(m["state"]["references"]) == {"psd", "labels"}
    assert all(0.5 <= acc <= 1 for acc in m["state"]["references"].values())
    assert {"latent", "direct"} == set(m["alpha_sensitivity"])
    assert "latent age scatter / oracle scatter" in m["goal_checks"]
    assert "[α/M] R² beyond what νmax, Δν and state imply" in m["goal_checks"]
    assert 0 <= m["abundances"]["alpha_m"]["r2_from_seismology"] <= 1
    assert {"ages", "psd_reconstruction", "latent_space", "state_confusion", "z_scores"} <= set(
        rep.figures
    )
    path = rep.write(tmp_path / "report")
    text = path.read_text()
    assert "# skages evaluation report" in text and "figures/ages.png" in text
    for name in rep.figures:
        assert (tmp_path / "report" / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert saved["ages"]["latent"]["all"]["n"] == m["ages"]["latent"]["all"]["n"]


def test_age_metrics_by_hand():
    y = np.log10([1.0, 2.0, 4.0, 8.0, 3.0, 5.0])
    ratio = np.array([1.1, 0.8, 1.0, 1.3, 0.9, 1.05])
    p = y + np.log10(ratio)
    states = ["RGB", "RGB", "RGB", "RC", "RC", "RC"]
    out = age_metrics(y, p, evstate=states)
    from astropy.stats import mad_std

    assert out["all"]["scatter_pct"] == pytest.approx(100 * mad_std(ratio))
    assert out["RGB"]["n"] == 3
    assert out["RC"]["bias_gyr"] == pytest.approx(np.median(10 ** p[3:] - 10 ** y[3:]))


def test_alpha_sensitivity_tells_a_reader_of_alpha_lines(small_survey):
    from skages.datasets import counterfactual_spectra

    spectra, labels = small_survey.spectra[:60], small_survey.labels.iloc[:60]
    shifted = counterfactual_spectra(spectra, labels, alpha_m=0.1)
    change = np.nanmax(np.abs(shifted - spectra), axis=0)
    # α lines (Mg, Si, Ca, Ti, and OH everywhere) move, by > 0.3 % in a minority of pixels
    assert 0.01 < (change > 3e-3).mean() < 0.6
    iron = np.nanmax(np.abs(counterfactual_spectra(spectra, labels, fe_h=0.1) - spectra), axis=0)
    assert (change > 3e-3).mean() < (iron > 3e-3).mean()  # iron lines are everywhere
    np.testing.assert_array_equal(np.isnan(shifted), np.isnan(spectra))
    changed = change > 0
    # a "model" that reads the α lines, and one that reads a pixel no α line touches
    alpha_pixel = int(np.nanargmax(np.nanmean(np.abs(shifted - spectra), axis=0)))
    quiet_pixel = int(np.flatnonzero(~changed & np.isfinite(spectra).all(axis=0))[0])
    reads_alpha = alpha_sensitivity(
        lambda s: -5 * np.nan_to_num(s[:, alpha_pixel]), spectra, labels
    )
    blind = alpha_sensitivity(lambda s: s[:, quiet_pixel], spectra, labels)
    assert reads_alpha["significance"] > 10 and reads_alpha["derivative"] > 0
    assert blind["derivative"] == 0 and blind["mean"] == 0
    with pytest.raises(ValueError, match="cannot shift"):
        counterfactual_spectra(spectra, labels, age=1.0)
    with pytest.raises(ValueError, match="true-label columns"):
        counterfactual_spectra(spectra, labels.drop(columns="alpha_m_true"), alpha_m=0.1)


def test_latent_regression_and_classification_learn_signal():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(800, 3))
    target = 2 * z[:, 0] + rng.normal(0, 0.1, 800)
    noise_only = rng.normal(size=800)
    good = latent_regression(z[:600], target[:600], z[600:], target[600:])
    bad = latent_regression(z[:600], noise_only[:600], z[600:], noise_only[600:])
    assert good["r2"] > 0.9 and bad["r2"] < 0.05
    states = np.where(z[:, 1] > 0, "RC", "RGB")
    cls = latent_classification(z[:600], states[:600], z[600:], states[600:])
    assert cls["accuracy"] > 0.9 and cls["labels"] == ["RGB", "RC"]
