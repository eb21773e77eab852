"""scikit-learn's common estimator checks, over every skages estimator.

Each estimator appears as a small seeded instance; any check it is expected
to fail is listed with the reason. Behaviour those checks cannot reach (for
example because an estimator needs APOGEE-sized inputs) is tested on the right
data in the estimator's own test file.
"""

from __future__ import annotations

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from skages.applicability import ApplicabilityScore
from skages.encoder import SpectrumToPSDEncoder
from skages.forest import ProbabilisticForestRegressor
from skages.spectra import ContinuumNormalizer

# The common checks feed 1-10 features; APOGEE's layout needs whole spectra (its chips
# and continuum mask are defined on 7514 or 8575 pixels), so the checks run on the
# single-chip layout, which takes any width: the same code fits and divides the
# continuum. What the checks assert is repeated on APOGEE-sized data with the default
# layout in tests/test_spectra.py::test_common_check_semantics_on_apogee_sized_data.
# The checks' data include negative "fluxes", whose continuum is not positive: with
# on_failure="nan" such a row becomes NaN instead of an error, as in survey processing.
# Several checks use two features: a straight-line continuum (degree 1) fits them.
EXPECTED_FAILED_CHECKS: dict[type, dict[str, str]] = {
    ProbabilisticForestRegressor: {
        "check_sample_weight_equivalence_on_dense_data": (
            "sample weights act through the weighted bootstrap, so a weight of 2 is not "
            "the same as repeating a row (as for sklearn's RandomForestRegressor)"
        ),
    },
}

ESTIMATORS = [
    ContinuumNormalizer(layout="single", degree=1, on_failure="nan"),
    # a tiny architecture: the checks are about the estimator contract, not the released size
    SpectrumToPSDEncoder(
        latent_dim=2,
        encoder_filters=(2,),
        encoder_kernel_size=3,
        pool_size=1,
        hidden_units=4,
        decoder_filters=(2,),
        decoder_kernel_size=2,
        max_epochs=2,
        batch_size=16,
        random_state=0,
    ),
    ProbabilisticForestRegressor(n_estimators=20, random_state=0),
    ApplicabilityScore(n_neighbors=3),
]


# the checks' datasets are too small for out-of-bag calibration; the forest says so
@pytest.mark.filterwarnings("ignore:calibration skipped:UserWarning")
# the checks fit with a 1-D y and no psd; the encoder then warns that no PSD was routed
@pytest.mark.filterwarnings("ignore::skages.encoder.PSDNotRoutedWarning")
@parametrize_with_checks(
    ESTIMATORS, expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS.get(type(est), {})
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
