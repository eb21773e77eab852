"""
The paper's figures on a simulated survey
=========================================

This example trains the released encoder-decoder architecture on a small simulated
APOKASC-like survey and reproduces, at small scale, the figures of Leung et al.
(2023): PSD reconstructions (Fig. 3), PSDs decoded from latent points (Fig. 4), the
latent space (Fig. 5), the latent Jacobian (Fig. 6), abundances and seismic
parameters from the latent space (Figs. 7-8), red clump vs RGB (Fig. 9), ages
(Fig. 10) and ablations (Fig. 16). The encoder trains for a few epochs only, so
the numbers are far from the full-size run of :doc:`../user_guide/evaluation`,
made with ``skages demo``.
"""

# %%
# A small survey and a train/test split
# -------------------------------------
import matplotlib.pyplot as plt

from skages import plotting
from skages.datasets import make_apokasc
from skages.encoder import SpectrumToPSDEncoder
from skages.evaluation import evaluate_age_model, split_survey
from skages.forest import ProbabilisticForestRegressor
from skages.pipeline import fit_age_model

survey = make_apokasc(3000, random_state=0, n_jobs=2)
train, test = split_survey(survey, test_size=0.3, random_state=0)
print(
    f"{len(train.labels)} training stars, {int(train.labels.precise_age.sum())} with "
    f"precise ages; {len(test.labels)} held out"
)

# %%
# Two-stage training: the encoder on every spectrum-PSD pair but a fifth of the
# forest's stars' (held out to calibrate σ), then the forest on the stars with precise ages.
model = fit_age_model(
    train.spectra,
    train.psd,
    train.labels,
    encoder=SpectrumToPSDEncoder(max_epochs=12, random_state=0),
    forest=ProbabilisticForestRegressor(random_state=0),
    random_state=0,
)
report = evaluate_age_model(model, train, test, random_state=0)
print(report.summary())

# %%
# Fig. 3: PSD reconstructions of held-out stars
# ---------------------------------------------
report.figures["psd_reconstruction"]

# %%
# Fig. 4: PSDs decoded along the latent direction that tracks νmax
# ----------------------------------------------------------------
report.figures["psd_from_latent"]

# %%
# Fig. 5: the latent space, by state, νmax, [Fe/H] and excess Δν
# ---------------------------------------------------------------
report.figures["latent_space"]

# %%
# Fig. 6: which pixels move the latent space
# ------------------------------------------
from skages.pipeline import make_age_frame, spectrum_feature_names

encoder = model.named_steps["features"].named_transformers_["encoder"].estimator
pixels = make_age_frame(test.spectra[:20], test.labels.iloc[:20])[spectrum_feature_names()]
jacobian = encoder.latent_jacobian(pixels)
plotting.plot_latent_jacobian(jacobian)

# %%
# Figs. 7-8: abundances and seismic parameters from the latent space
# ------------------------------------------------------------------
report.figures["latent_abundances"]

# %%
report.figures["latent_seismic"]

# %%
# Fig. 9: red clump vs red-giant branch
# -------------------------------------
report.figures["state_confusion"]

# %%
# Fig. 10: ages of held-out stars with precise seismic ages
# ---------------------------------------------------------
report.figures["ages"]

# %%
# Fig. 16: ablations and baselines
# --------------------------------
report.figures["ablation"]

# %%
# Calibration of the age uncertainties, and [α/M] leakage
# -------------------------------------------------------
report.figures["z_scores"]

# %%
report.figures["alpha_leakage"]
plt.show()
