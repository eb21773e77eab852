"""The evaluation report: structure, the measures by hand, figures and files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from skages.catalogue import CatalogueCuts
from skages.encoder import SpectrumToPSDEncoder
from skages.evaluation import (
    age_metrics,
    alpha_sensitivity,
    coverage_table,
    decoder_numax_check,
    evaluate_age_model,
    latent_classification,
    latent_regression,
    split_survey,
)
from skages.forest import ProbabilisticForestRegressor
from skages.pipeline import fit_age_model, make_age_frame


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
    return (
        evaluate_age_model(model, train, test, n_components=5, cuts=CatalogueCuts()),
        train,
        test,
        model,
    )


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
    rep, _, test, _ = report
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
    # the [α/M] a seismic latent space holds anyway, simulated and real, is stated
    r2 = m["abundances"]["alpha_m"]["r2_from_seismology"]
    assert f"predict [α/M] with R² = {r2:.3f}" in text and "APOKASC-2 stars 0.44" in text
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


# ------------------------------------------------------------ the report as read


def _render_tables(markdown: str):
    """Each rendered table of a Markdown text: a list of rows of cell texts."""
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(markdown)
    tables, rows, row, inline = [], None, None, False
    for tok in tokens:
        if tok.type == "table_open":
            rows = []
        elif tok.type == "table_close":
            tables.append(rows)
        elif tok.type == "tr_open":
            row = []
        elif tok.type == "tr_close":
            rows.append(row)
        elif tok.type in ("th_open", "td_open"):
            inline = True
        elif tok.type == "inline" and inline:
            row.append(tok.content.replace("\\|", "|").replace("\\\\", "\\"))
            inline = False
    return tables


def test_rendered_report_tables_are_whole_and_first_compare_with_the_paper(report):
    pytest.importorskip("markdown_it")
    from markdown_it import MarkdownIt

    rep = report[0]
    text = rep.to_markdown()
    tables = _render_tables(text)
    assert len(tables) >= 6
    for table in tables:  # every row has every column (an unescaped | would add or drop some)
        assert len({len(row) for row in table}) == 1, table
    # the first table, right after the title, is this model against the paper
    headings = [t.content for t in MarkdownIt("commonmark").parse(text) if t.type == "inline"]
    assert headings[2] == "This model vs the paper"
    paper = tables[0]
    assert paper[0] == ["quantity", "this model", "Leung et al. (2023)"]
    m = rep.metrics
    expected = {
        "RGB age scatter": (f"{m['ages']['latent']['RGB']['scatter_pct']:.3g} %", "22 %"),
        "RC age scatter": (f"{m['ages']['latent']['RC']['scatter_pct']:.3g} %", "11 %"),
        "RC vs RGB accuracy from the latent space": (
            f"{100 * m['state']['accuracy']:.3g} %",
            "94 %",
        ),
        "νmax scatter from the latent space": (
            f"{m['seismic']['numax']['scatter']:.3g} %",
            "10 %",
        ),
        "Δν scatter from the latent space": (f"{m['seismic']['dnu']['scatter']:.3g} %", "7 %"),
        "age z-score width": (f"{m['ages']['latent']['all']['z_width']:.3g}", "0.75"),
    }
    assert {row[0]: tuple(row[1:]) for row in paper[1:]} == expected
    # the goals whose names hold a | keep their target and met columns
    goals = next(t for t in tables if t[0] == ["goal", "value", "target", "met"])
    leakage = [row for row in goals if "|d log age / d[α/M]|" in row[0]]
    assert len(leakage) == 2 and all(row[3] in ("yes", "no") for row in leakage)


def test_report_speaks_in_labels_and_tabulates_the_confusion(report):
    pytest.importorskip("markdown_it")
    rep = report[0]
    text = rep.to_markdown()
    for code in ("fe_h", "alpha_m", "c_n", "excess_dnu", "latent_vs_true_age", "rows true"):
        assert code not in text
    tables = _render_tables(text)
    latent = next(t for t in tables if t[0] == ["quantity", "R²", "scatter"])
    assert [row[0] for row in latent[1:]] == [
        "[Fe/H]",
        "[α/M]",
        "[C/N]",
        "νmax",
        "Δν",
        "excess Δν",
    ]
    confusion = next(t for t in tables if t[0][0] == "true \\ predicted")
    assert confusion[0][1:] == ["RGB", "RC"]
    counts = [[int(c) for c in row[1:]] for row in confusion[1:]]
    assert counts == rep.metrics["state"]["confusion"]


def test_each_missed_goal_and_figure_miss_gets_a_sentence(report):
    import copy

    from skages.evaluation import EvaluationReport

    metrics = copy.deepcopy(report[0].metrics)
    for goal in metrics["goal_checks"].values():
        goal["met"] = True
    metrics["psd_from_latent"] = {"stated": [10.0, 100.0], "obtained": [10.5, 99.0], "n": [5, 5]}
    metrics["z_score_median"] = 0.02
    for state in ("RGB", "RC"):
        metrics["ages"]["latent"][state]["bias_pct"] = 1.0
    quiet = EvaluationReport(metrics).figure_notes()
    assert not any("Missed" in n or "missed" in n for n in quiet)
    metrics["goal_checks"]["RC vs RGB accuracy"]["met"] = False
    metrics["psd_from_latent"]["obtained"] = [30.0, 40.0]
    metrics["z_score_median"] = -0.4
    notes = EvaluationReport(metrics).figure_notes()
    assert any(n.startswith("Missed (state_confusion.png): RC vs RGB accuracy") for n in notes)
    assert any("psd_from_latent.png" in n and "(missed)" in n for n in notes)
    assert any("z_scores.png" in n and "-0.40" in n and "younger" in n for n in notes)
    assert "What the figures show" in EvaluationReport(metrics).to_markdown()


class _EnvelopeDecoder:
    """A stand-in encoder whose decoded PSD has its envelope at νmax = 10**z[0] µHz."""

    def decode(self, z):
        from skages.seismology import frequency_grid

        f = frequency_grid()
        numax = 10 ** np.asarray(z)[:, :1]
        width = 0.66 * numax**0.88 / 2.355
        return np.log1p(3 * np.exp(-0.5 * ((f - numax) / width) ** 2))


def test_latent_numax_track_states_and_finds_the_numax_of_each_bin():
    from skages.evaluation import latent_numax_track

    rng = np.random.default_rng(0)
    numax = 10 ** rng.uniform(1, 2.3, 400)
    z = np.column_stack([np.log10(numax), rng.normal(size=400)])
    track = latent_numax_track(_EnvelopeDecoder(), z, numax, n_points=5)
    stated, got = np.array(track["stated"]), np.array(track["obtained"])
    assert len(stated) == 5 and sum(track["n"]) >= 390
    assert stated[0] < 15 and stated[-1] > 120  # spans the data's range, not its middle
    np.testing.assert_allclose(got, stated, rtol=0.1)
    # a latent space blind to νmax decodes one envelope everywhere
    blind = latent_numax_track(_EnvelopeDecoder(), np.zeros_like(z) + 1.5, numax, n_points=5)
    assert np.ptp(blind["obtained"]) < 1 and np.ptp(blind["stated"]) > 100


def test_figures_carry_labels_units_and_no_duplicate(report):
    from matplotlib.colors import LogNorm

    rep = report[0]
    figs = rep.figures
    assert {"latent_pairs_state", "latent_pairs_numax"} <= set(figs)
    ablation_names = [t.get_text() for t in figs["ablation"].axes[0].get_yticklabels()]
    assert len(ablation_names) == len(set(ablation_names))
    assert sum("latent + Teff + [Fe/H]" in n and "[α/M]" not in n for n in ablation_names) == 1
    ages = figs["ages"].axes
    assert [ax.get_title() for ax in ages] == ["RGB and RC", "RGB", "RC"]
    for ax in ages:
        assert all("bias" in t.get_text() for t in ax.get_legend().get_texts())
        assert len(ax.xaxis.get_minorticklocs()) > 5
    numax_panel = next(ax for ax in figs["latent_space"].axes if ax.get_title() == "νmax (µHz)")
    assert isinstance(numax_panel.collections[0].norm, LogNorm)
    for name in ("latent_abundances", "latent_seismic"):
        for ax in figs[name].axes:
            assert ax.get_xlabel().endswith(("(dex)", "(µHz)")), ax.get_xlabel()
    legend = [t.get_text() for t in figs["psd_from_latent"].axes[0].get_legend().get_texts()]
    assert all(t.startswith("meant ") and ", has " in t for t in legend)


def test_z_score_bins_are_regular_and_centred_on_zero():
    from skages.plotting import plot_z_scores

    rng = np.random.default_rng(3)
    t = rng.normal(0.6, 0.2, 300)
    ax = plot_z_scores(t, t + rng.normal(0.05, 0.1, 300), np.full(300, 0.1))
    patches = ax.patches
    widths = np.array([p.get_width() for p in patches])
    lefts = np.array([p.get_x() for p in patches])
    np.testing.assert_allclose(widths, widths[0])
    centres = lefts + widths / 2
    assert np.min(np.abs(centres)) < 1e-9  # one bin centred on z = 0
    assert centres[0] == pytest.approx(-centres[-1])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    median = next(label for label in labels if label.startswith("median "))
    assert float(median.split()[1]) == pytest.approx(0.5, abs=0.15) and "biased high" in median


def test_coverage_table_by_hand():
    y = np.zeros(8)
    pred = np.array([0.5, -0.5, 1.5, -1.5, 2.5, 0.1, np.nan, 0.0])
    std = np.ones(8)
    groups = np.array(["RGB"] * 4 + ["RC"] * 4)
    table = coverage_table(y, pred, std, groups=groups)
    assert list(table.index) == ["all", "RC", "RGB"]
    assert table.loc["all", "n"] == 7  # the NaN prediction is skipped
    assert table.loc["RGB", "within_1"] == 0.5 and table.loc["RGB", "within_2"] == 1.0
    assert table.loc["RC", "within_1"] == pytest.approx(2 / 3)
    # the reference errors enter in quadrature: errors of sqrt(3) halve every z
    wide = coverage_table(y, pred, std, np.full(8, np.sqrt(3.0)))
    assert wide.loc["all", "within_1"] == pytest.approx(6 / 7)
    with pytest.raises(ValueError, match="non-negative"):
        coverage_table(y, pred, -std)


def test_coverage_table_quantile_intervals_by_hand():
    y = np.zeros(4)
    pred = np.array([0.5, -0.5, 1.5, 3.0])
    std = np.ones(4)
    # asymmetric intervals: wide below the prediction, narrow above
    q = pred[:, None] + np.array([-4.0, -2.0, 0.2, 0.4])
    table = coverage_table(y, pred, std, quantiles=q)
    # the reference (0) lies in [pred - 2, pred + 0.2] for the first and third stars,
    # in [pred - 4, pred + 0.4] for all but the second (0.5 above its prediction)
    assert table.loc["all", "in_68"] == 0.5 and table.loc["all", "in_95"] == 0.75
    # a reference error of sqrt(3) halves each offset in units of σ (-0.25, 0.25,
    # -0.75, -1.5): the fourth star enters the 68 % interval, the second the 95 %
    wide = coverage_table(y, pred, std, np.full(4, np.sqrt(3.0)), quantiles=q)
    assert wide.loc["all", "in_68"] == 0.75 and wide.loc["all", "in_95"] == 1.0
    narrow = pred[:, None] + np.array([-0.6, -0.55, 0.55, 0.6])
    inner = coverage_table(y, pred, std, np.full(4, np.sqrt(3.0)), quantiles=narrow)
    assert inner.loc["all", "in_68"] == 0.5  # z = ±0.25 inside ±0.55, not 0.75 or 1.5
    with pytest.raises(ValueError, match=r"quantiles must have shape \(4, 4\)"):
        coverage_table(y, pred, std, quantiles=q[:, :2])


def test_decoder_numax_check(small_survey):
    from skages.seismology import estimate_numax

    encoder = SpectrumToPSDEncoder(
        encoder_filters=(4, 8), hidden_units=8, decoder_filters=(4, 4), max_epochs=2,
        random_state=0,
    ).fit(small_survey.spectra[:200], psd=small_survey.psd[:200])  # fmt: skip
    spectra = small_survey.spectra[200:230]
    decoded = encoder.predict_psd(spectra)
    same = decoder_numax_check(encoder, spectra, psd=decoded)
    assert same["mismatch_rate"] == 0.0
    np.testing.assert_allclose(same["log_ratio"], 0.0, atol=1e-12)
    observed = decoder_numax_check(encoder, spectra, psd=small_survey.psd[200:230])
    np.testing.assert_allclose(
        observed["numax_observed"], estimate_numax(small_survey.psd[200:230])
    )
    assert observed["mismatch"].mean() == pytest.approx(observed["mismatch_rate"])
    doubled = decoder_numax_check(encoder, spectra, numax=2 * same["numax_decoded"])
    assert doubled["mismatch"].all()
    with pytest.raises(ValueError, match="exactly one"):
        decoder_numax_check(encoder, spectra)


def test_report_states_coverage_and_what_the_cuts_date(report):
    rep, _, test, model = report
    m = rep.metrics
    coverage = m["coverage"]
    assert coverage["all"]["n"] == m["n_test_aged"]
    assert {"RGB", "RC"} <= set(coverage)
    for c in coverage.values():
        assert 0 <= c["within_1"] <= c["within_2"] <= 1
        assert 0 <= c["in_68"] <= c["in_95"] <= 1  # the forest's quantile intervals
    cuts = m["catalogue_cuts"]
    assert cuts["scored"]["n"] == m["n_test_aged"]
    logg = test.labels["logg"].to_numpy()
    snr = test.labels["snr"].to_numpy()
    aged = np.isfinite(test.labels["log_age"].to_numpy()) & test.labels["precise_age"].to_numpy()
    expect = aged & (logg >= 2.5) & (logg > 1.5) & (logg < 3.6) & (snr > 30)
    assert cuts["dated"]["n"] == int(expect.sum())
    assert cuts["dated"]["n_RC"] + cuts["dated"]["n_RGB"] == cuts["dated"]["n"]
    text = rep.to_markdown()
    assert "## Coverage of the uncertainties" in text
    assert f"{100 * coverage['RC']['in_95']:.1f}" in text.split("## Coverage")[1]
    assert f"{cuts['dated']['n']} of the {cuts['scored']['n']} scored stars" in text
    assert "reliability" in rep.figures
    # a simulated survey also scores every held-out star against its true age
    true = m["coverage_true_age"]
    assert true["all"]["n"] == len(test.labels) > coverage["all"]["n"]
    mean, std = model.predict(make_age_frame(test.spectra, test.labels), return_std=True)
    table = coverage_table(test.labels["log_age_true"], mean, std, groups=test.labels["evstate"])
    for state in ("all", "RGB", "RC"):
        assert true[state]["within_1"] == pytest.approx(table.loc[state, "within_1"])
        assert true[state]["n"] == table.loc[state, "n"]
    assert f"Against the true (simulated) ages of all {len(test.labels)} held-out" in text
    assert f"{100 * true['RGB']['within_2']:.1f}" in text.split("true (simulated) ages of")[1]
