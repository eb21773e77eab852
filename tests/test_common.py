"""scikit-learn's common estimator checks, over every skages estimator.

Each estimator appears as a small seeded instance; any check it is expected
to fail is listed with the reason. Behaviour those checks cannot reach (for
example because an estimator needs APOGEE-sized inputs) is tested on the right
data in the estimator's own test file.
"""

from __future__ import annotations

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from skages.encoder import SpectrumToPSDEncoder
from skages.forest import ProbabilisticForestRegressor
from skages.spectra import ContinuumNormalizer

# The common checks feed 1-10 features; the normaliser needs whole APOGEE spectra
# (its chips and continuum mask are defined on 7514 or 8575 pixels). What these
# checks assert is repeated on APOGEE-sized data in
# tests/test_spectra.py::test_common_check_semantics_on_apogee_sized_data.
_NEEDS_APOGEE_PIXELS = (
    "needs APOGEE spectra with 8575 or 7514 pixels per row; the common checks use 1-10 features"
)
_NORMALIZER_FAILS = [
    "check_fit_score_takes_y",
    "check_estimators_overwrite_params",
    "check_dont_overwrite_parameters",
    "check_estimators_fit_returns_self",
    "check_readonly_memmap_input",
    "check_n_features_in_after_fitting",
    "check_positive_only_tag_during_fit",
    "check_estimators_dtypes",
    "check_dtype_object",
    "check_pipeline_consistency",
    "check_estimators_pickle",
    "check_f_contiguous_array_estimator",
    "check_transformer_data_not_an_array",
    "check_transformer_general",
    "check_transformer_preserve_dtypes",
    "check_transformers_unfitted_stateless",
    "check_methods_sample_order_invariance",
    "check_methods_subset_invariance",
    "check_fit2d_1sample",
    "check_fit2d_1feature",
    "check_dict_unchanged",
    "check_fit_idempotent",
    "check_fit_check_is_fitted",
    "check_n_features_in",
    "check_fit2d_predict1d",
]

EXPECTED_FAILED_CHECKS: dict[type, dict[str, str]] = {
    ContinuumNormalizer: dict.fromkeys(_NORMALIZER_FAILS, _NEEDS_APOGEE_PIXELS),
    ProbabilisticForestRegressor: {
        "check_sample_weight_equivalence_on_dense_data": (
            "sample weights act through the weighted bootstrap, so a weight of 2 is not "
            "the same as repeating a row (as for sklearn's RandomForestRegressor)"
        ),
    },
}

ESTIMATORS = [
    ContinuumNormalizer(),
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
