"""Tests of skages.encoder.SpectrumToPSDEncoder and its torch side, skages._ved."""

from __future__ import annotations

import io
import logging
import re
import warnings

import joblib
import numpy as np
import pytest
import sklearn
import torch
import torch.nn.functional as F
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from skorch.callbacks import Callback
from torch import nn

from skages._ved import VariationalEncoderDecoder, VEDNet, tf_same_padding, ved_loss
from skages.encoder import PSDNotRoutedWarning, SpectrumToPSDEncoder

RELEASED_PARAMETERS = 1_045_595
TINY = dict(
    latent_dim=2,
    encoder_filters=(4, 4),
    encoder_kernel_size=4,
    hidden_units=8,
    decoder_filters=(4,),
    decoder_kernel_size=6,
    batch_size=32,
)


# ----------------------------------------------------------------------------------------
# small seeded spectrum -> PSD pairs
# ----------------------------------------------------------------------------------------
def _make_pairs(n, n_pixels=96, n_psd=48, seed=0):
    """Spectra whose line depths follow νmax, and log PSDs with an envelope at νmax.

    νmax (µHz) is log-uniform in [20, 220]. The log PSD is a power-law background plus a
    Gaussian bump (in log frequency) at νmax, with noise. Six spectral lines deepen or
    weaken with log νmax (surface-gravity-like), six others vary at random (abundance-like
    nuisance), on a continuum of 1 with 0.5 % noise.
    """
    rng = np.random.default_rng(seed)
    log_numax = rng.uniform(np.log(20.0), np.log(220.0), n)
    t = (log_numax - np.log(66.0)) / 0.7
    log_freq = np.log(np.geomspace(2.0, 270.0, n_psd))
    log_psd = (
        2.0
        - 0.8 * log_freq[None, :]
        + 3.0 * np.exp(-0.5 * ((log_freq[None, :] - log_numax[:, None]) / 0.2) ** 2)
        + 0.1 * rng.standard_normal((n, n_psd))
    )
    pix = np.arange(n_pixels)
    centres = np.linspace(4, n_pixels - 5, 12)
    signs = np.array([1, -1, 1, -1, 1, -1])
    depth = np.empty((n, 12))
    depth[:, :6] = 0.3 + 0.12 * t[:, None] * signs
    depth[:, 6:] = 0.3 + 0.12 * rng.standard_normal((n, 6))
    profiles = np.exp(-0.5 * ((pix[None, :] - centres[:, None]) / 1.5) ** 2)
    spectra = 1.0 - depth @ profiles + 0.005 * rng.standard_normal((n, n_pixels))
    return spectra.astype(np.float32), log_psd.astype(np.float32), log_numax


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Behaviour tests on one thread: with two, a busy neighbour on the 2-core CI machine
    stalls every OpenMP barrier and tiny networks run ten times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pairs():
    return _make_pairs(160)


@pytest.fixture(scope="module")
def fitted(pairs):
    X, psd, _ = pairs
    return SpectrumToPSDEncoder(**TINY, max_epochs=3, random_state=0).fit(X, psd=psd)


# ----------------------------------------------------------------------------------------
# architecture
# ----------------------------------------------------------------------------------------
class _IndependentReference(nn.Module):
    """The released architecture written with stock torch layers, as the issue gives it."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(1, 32, 8, stride=2)
        self.c2 = nn.Conv1d(32, 64, 8, stride=2)
        self.fc = nn.Linear(939 * 64, 16)
        self.mu = nn.Linear(16, 5)
        self.lv = nn.Linear(16, 5)
        self.d0 = nn.Linear(5, 523 * 16)
        self.t1 = nn.ConvTranspose1d(16, 16, 32, stride=2, padding=15)
        self.t2 = nn.ConvTranspose1d(16, 16, 32, stride=2, padding=15)
        self.t3 = nn.ConvTranspose1d(16, 1, 32, stride=1)

    def load_from(self, m):
        pairs = [
            (self.c1, m.encoder_convs[0]),
            (self.c2, m.encoder_convs[1]),
            (self.fc, m.hidden),
            (self.mu, m.latent_mean),
            (self.lv, m.latent_logvar),
            (self.d0, m.decoder_input),
            (self.t1, m.decoder_convs[0]),
            (self.t2, m.decoder_convs[1]),
            (self.t3, m.output_conv),
        ]
        for mine, theirs in pairs:
            mine.load_state_dict(theirs.state_dict())

    def forward(self, x):
        h = F.relu(self.c1(F.pad(x[:, None], (3, 3))))
        h = F.relu(self.c2(F.pad(h, (3, 4))))
        h = F.max_pool1d(h, 2).transpose(1, 2).flatten(1)  # Keras flattens channels-last
        h = torch.tanh(self.fc(h))
        mu, lv = self.mu(h), self.lv(h)
        d = F.relu(self.d0(mu)).view(-1, 523, 16).transpose(1, 2)
        d = F.relu(self.t2(F.relu(self.t1(d))))
        return self.t3(d)[:, 0, 15 : 15 + 2092], mu, lv


def test_released_parameter_count():
    module = VariationalEncoderDecoder()
    assert sum(p.numel() for p in module.parameters()) == RELEASED_PARAMETERS
    # and the estimator builds that network for 7514-pixel spectra and 2092-pixel PSDs
    rng = np.random.default_rng(0)
    enc = SpectrumToPSDEncoder(max_epochs=0, random_state=0)
    enc.fit(1 + 0.01 * rng.standard_normal((3, 7514)), psd=rng.standard_normal((3, 2092)))
    assert sum(p.numel() for p in enc.net_.module_.parameters()) == RELEASED_PARAMETERS


def test_padding_and_lengths_at_every_layer():
    assert tf_same_padding(7514, 8, 2) == (3, 3, 3757)
    assert tf_same_padding(3757, 8, 2) == (3, 4, 1879)
    module = VariationalEncoderDecoder()
    expected = {
        "input": 7514,
        "encoder_conv0_padded_input": 7520,
        "encoder_conv0": 3757,
        "encoder_conv1_padded_input": 3764,
        "encoder_conv1": 1879,
        "pool": 939,
        "flatten": 60_096,
        "decoder_reshape": 523,
        "decoder_conv0": 1046,
        "decoder_conv1": 2092,
        "output_conv_full": 2123,
        "output": 2092,
    }
    assert module.layer_lengths() == expected
    # the lengths the layers actually produce (reference path, forward hooks)
    seen = {}
    hooks = [
        layer.register_forward_hook(lambda mod, inp, out, name=name: seen.update({name: out}))
        for name, layer in [
            ("c0", module.encoder_convs[0]),
            ("c1", module.encoder_convs[1]),
            ("d0", module.decoder_convs[0]),
            ("d1", module.decoder_convs[1]),
            ("out", module.output_conv),
        ]
    ]
    module.fast = False
    module.eval()
    with torch.no_grad():
        psd, mean, _ = module(torch.zeros(2, 7514))
    for h in hooks:
        h.remove()
    assert seen["c0"].shape == (2, 32, 3757)
    assert seen["c1"].shape == (2, 64, 1879)
    # transposed convolutions before the "same" crop: (length - 1) * 2 + 32
    assert seen["d0"].shape == (2, 16, (523 - 1) * 2 + 32)
    assert seen["d1"].shape == (2, 16, (1046 - 1) * 2 + 32)
    assert seen["out"].shape == (2, 1, 2123)
    assert psd.shape == (2, 2092) and mean.shape == (2, 5)


def test_glorot_uniform_init_and_zero_bias():
    module = VariationalEncoderDecoder(seed=3)
    w = module.hidden.weight
    bound = np.sqrt(6.0 / (60_096 + 16))
    largest = float(w.detach().abs().max())
    assert bound * 0.99 < largest <= bound  # uniform on [-bound, bound], filling it
    biases = [
        m.bias
        for m in module.modules()
        if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d, nn.Linear))
    ]
    assert len(biases) == 9 and all(not b.detach().any() for b in biases)
    again = VariationalEncoderDecoder(seed=3)
    assert torch.equal(again.decoder_convs[1].weight, module.decoder_convs[1].weight)


def test_fast_path_equals_independent_reference_on_released_architecture():
    torch.manual_seed(0)
    module = VariationalEncoderDecoder(seed=1).eval()
    ref = _IndependentReference().eval()
    ref.load_from(module)
    x = torch.randn(3, 7514)
    with torch.no_grad():
        ours = module(x)
        module.fast = False
        plain = module(x)
        theirs = ref(x)
    for a, b, c in zip(ours, plain, theirs, strict=True):
        scale = float(c.abs().max())
        assert float((a - c).abs().max()) < 1e-5 * scale
        assert float((b - c).abs().max()) < 1e-5 * scale


@pytest.mark.parametrize(
    "arch",
    [
        dict(),  # released
        dict(
            n_pixels=37,
            n_psd=13,
            encoder_filters=(3, 5, 4),
            encoder_kernel_size=5,
            pool_size=3,
            decoder_filters=(4, 2, 3),
            decoder_kernel_size=7,
            latent_dim=2,
            hidden_units=3,
        ),
        dict(  # oneDNN convolutions (>= 32 input channels) inside and at the end, pool 3
            n_pixels=150,
            n_psd=20,
            encoder_filters=(4, 32, 32, 6),
            encoder_kernel_size=5,
            pool_size=3,
            decoder_filters=(3,),
            decoder_kernel_size=4,
        ),
        dict(
            n_pixels=100,
            n_psd=50,
            encoder_filters=(20,),
            encoder_kernel_size=3,
            pool_size=1,
            decoder_filters=(3,),
            decoder_kernel_size=2,
        ),
    ],
)
def test_fast_gradients_equal_reference_gradients(arch):
    torch.manual_seed(0)
    module = VariationalEncoderDecoder(**arch, seed=2).eval()
    n = 3 if not arch else 7
    x = torch.randn(n, module.n_pixels, requires_grad=True)
    psd = torch.randn(n, module.n_psd)
    psd[0, :3] = float("nan")
    w = 1 + torch.rand(n, module.n_psd)
    grads = {}
    for fast in (True, False):
        module.fast = fast
        loss = ved_loss(*module(x), psd, w).mean()
        grads[fast] = torch.autograd.grad(loss, [x, *module.parameters()])
    for a, b in zip(grads[True], grads[False], strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max()))


# ----------------------------------------------------------------------------------------
# loss
# ----------------------------------------------------------------------------------------
def test_loss_equals_hand_computation_with_nan_mask_and_weights():
    psd_pred = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]])
    psd = torch.tensor([[1.5, float("nan"), 2.0], [0.5, 1.0, float("nan")]])
    weight = torch.tensor([[2.0, 7.0, 1.0], [1.0, 1.5, 9.0]])
    mean = torch.tensor([[0.5, -1.0], [0.0, 2.0]])
    logvar = torch.tensor([[0.0, np.log(4.0)], [-1.0, 0.0]], dtype=torch.float32)
    # star 0: 2 * 0.5**2 + 1 * 1**2 = 1.5; KL = -1/2 [(1 + 0 - 0.25 - 1) + (1 + ln4 - 1 - 4)]
    kl0 = -0.5 * ((1 - 0.25 - 1) + (1 + np.log(4.0) - 1 - 4))
    # star 1: 1 * 0 + 1.5 * 2**2 = 6; KL = -1/2 [(1 - 1 - 0 - e^-1) + (1 + 0 - 4 - 1)]
    kl1 = -0.5 * ((1 - 1 - np.exp(-1.0)) + (1 - 4 - 1))
    beta = 0.5
    expected = np.array([1.5 + beta * kl0, 6.0 + beta * kl1])
    got = ved_loss(psd_pred, mean, logvar, psd, weight, beta)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)
    net = VEDNet(VariationalEncoderDecoder, criterion=nn.MSELoss, beta=beta)
    y_true = torch.stack([psd, weight], dim=1)
    batch_loss = net.get_loss((psd_pred, mean, logvar), y_true)
    assert float(batch_loss) == pytest.approx(expected.mean(), rel=1e-6)


def test_chunked_training_step_equals_whole_batch_step():
    torch.manual_seed(0)
    X, psd, _ = _make_pairs(40)
    y = np.stack([psd, np.ones_like(psd)], axis=1)
    grads = {}
    for chunk in (None, 16):
        net = VEDNet(
            VariationalEncoderDecoder,
            criterion=nn.MSELoss,
            training_chunk=chunk,
            module__n_pixels=96,
            module__n_psd=48,
            module__encoder_filters=(16, 16),
            module__decoder_filters=(8,),
            module__seed=0,
        ).initialize()
        with torch.no_grad():  # σ ~ 1e-13: the reparametrisation noise plays no part
            net.module_.latent_logvar.bias.fill_(-60.0)
        step = net.train_step_single((torch.from_numpy(X), torch.from_numpy(y)))
        grads[chunk] = (
            [p.grad.clone() for p in net.module_.parameters()],
            float(step["loss"].detach()),
        )
    assert grads[None][1] == pytest.approx(grads[16][1], rel=1e-5)
    for a, b in zip(grads[None][0], grads[16][0], strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6 * float(b.abs().max()))


# ----------------------------------------------------------------------------------------
# it learns
# ----------------------------------------------------------------------------------------
def test_learns_psd_and_latent_predicts_numax():
    X, psd, log_numax = _make_pairs(600, seed=1)
    train, test = slice(0, 450), slice(450, None)
    enc = SpectrumToPSDEncoder(
        latent_dim=2,
        encoder_filters=(8, 8),
        encoder_kernel_size=4,
        hidden_units=16,
        decoder_filters=(8,),
        decoder_kernel_size=8,
        max_epochs=60,
        batch_size=32,
        lr=3e-3,
        random_state=0,
    ).fit(X[train], psd=psd[train])
    resid = ((enc.predict_psd(X[test]) - psd[test]) ** 2).sum(axis=1).mean()
    baseline = ((psd[train].mean(axis=0) - psd[test]) ** 2).sum(axis=1).mean()
    assert resid < 0.1 * baseline
    assert enc.loss_curve_[-1] < 0.2 * enc.loss_curve_[0]
    # νmax is a smooth (not necessarily linear) function of the latent point
    Z = enc.transform(X)
    knn = KNeighborsRegressor(10).fit(Z[train], log_numax[train])
    assert knn.score(Z[test], log_numax[test]) > 0.95


# ----------------------------------------------------------------------------------------
# scikit-learn integration
# ----------------------------------------------------------------------------------------
def test_pipeline_gridsearch_with_psd_routed(pairs):
    X, psd, log_numax = pairs
    with sklearn.config_context(enable_metadata_routing=True):
        enc = SpectrumToPSDEncoder(**TINY, max_epochs=2, random_state=0)
        enc.set_fit_request(psd=True)
        pipe = make_pipeline(enc, Ridge())
        search = GridSearchCV(pipe, {"spectrumtopsdencoder__latent_dim": [1, 3]}, cv=2)
        with warnings.catch_warnings():
            warnings.simplefilter("error", PSDNotRoutedWarning)
            search.fit(X, log_numax, psd=psd)
    best = search.best_estimator_[0]
    assert best.n_psd_ == psd.shape[1]  # the decoder was trained on the PSDs, not on y
    assert search.best_params_["spectrumtopsdencoder__latent_dim"] in (1, 3)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.predict(X).shape == (len(X),)


def test_gridsearch_scores_with_psd_routed_to_score(pairs):
    X, psd, _ = pairs
    with sklearn.config_context(enable_metadata_routing=True):
        enc = SpectrumToPSDEncoder(**TINY, max_epochs=2, random_state=0)
        enc.set_fit_request(psd=True).set_score_request(psd=True)
        search = GridSearchCV(enc, {"latent_dim": [1, 2]}, cv=2, refit=False)
        search.fit(X, psd=psd)
    scores = search.cv_results_["mean_test_score"]
    assert np.isfinite(scores).all() and (scores < 0).all()


def test_unrouted_psd_in_pipeline_warns(pairs):
    X, _, log_numax = pairs
    pipe = make_pipeline(SpectrumToPSDEncoder(**TINY, max_epochs=1, random_state=0), Ridge())
    with pytest.warns(PSDNotRoutedWarning, match="set_fit_request"):
        pipe.fit(X, log_numax)
    assert pipe[0].n_psd_ == 1


def test_direct_use_with_2d_y_equals_psd_keyword(pairs):
    X, psd, _ = pairs
    a = SpectrumToPSDEncoder(**TINY, max_epochs=2, random_state=0).fit(X, psd)
    b = SpectrumToPSDEncoder(**TINY, max_epochs=2, random_state=0).fit(
        X, np.zeros(len(X)), psd=psd
    )
    np.testing.assert_array_equal(a.transform(X), b.transform(X))


def test_same_seed_same_weights_and_latents(pairs, fitted):
    X, psd, _ = pairs
    again = SpectrumToPSDEncoder(**TINY, max_epochs=3, random_state=0).fit(X, psd=psd)
    for p, q in zip(
        fitted.net_.module_.parameters(), again.net_.module_.parameters(), strict=True
    ):
        assert torch.equal(p, q)
    np.testing.assert_array_equal(fitted.transform(X), again.transform(X))
    other = SpectrumToPSDEncoder(**TINY, max_epochs=3, random_state=1).fit(X, psd=psd)
    assert not np.allclose(fitted.transform(X), other.transform(X))


def test_results_do_not_depend_on_thread_count(pairs):
    X, psd, _ = pairs
    runs = {}
    for threads in (1, 2):  # 2: chunks run on a pool of two threads
        torch.set_num_threads(threads)
        try:
            enc = SpectrumToPSDEncoder(**TINY, max_epochs=2, random_state=0).fit(X, psd=psd)
            runs[threads] = (enc.transform(X), enc.latent_jacobian(X[:9]), enc.score(X, psd))
            assert torch.get_num_threads() == threads  # restored after the pool
        finally:
            torch.set_num_threads(1)
    for a, b in zip(runs[1], runs[2], strict=True):
        np.testing.assert_array_equal(a, b)


def test_torch_global_rng_untouched(pairs):
    X, psd, _ = pairs
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    SpectrumToPSDEncoder(**TINY, max_epochs=1, random_state=0).fit(X, psd=psd)
    assert torch.equal(torch.rand(3), expected)


def test_joblib_round_trip(pairs, fitted):
    X, _, _ = pairs
    buffer = io.BytesIO()
    joblib.dump(fitted, buffer)
    buffer.seek(0)
    loaded = joblib.load(buffer)
    np.testing.assert_array_equal(loaded.transform(X), fitted.transform(X))
    np.testing.assert_array_equal(loaded.predict_psd(X), fitted.predict_psd(X))
    assert loaded.loss_curve_ == fitted.loss_curve_
    assert len(loaded.net_.history) == len(fitted.net_.history)


def test_model_saved_from_cuda_loads_on_cpu_only_machine(pairs, fitted, monkeypatch):
    X, _, _ = pairs
    state = fitted.__getstate__()
    assert all(isinstance(v, np.ndarray) for v in state["_net_state"]["weights"].values())
    state["_net_state"]["device"] = "cuda:0"  # as pickled by a GPU-trained model
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    loaded = SpectrumToPSDEncoder.__new__(SpectrumToPSDEncoder)
    loaded.__setstate__(state)
    assert str(loaded.net_.device) == "cpu"
    np.testing.assert_array_equal(loaded.transform(X), fitted.transform(X))


def test_transform_output_std_names_and_set_output(pairs):
    pd = pytest.importorskip("pandas")
    X, psd, _ = pairs
    enc = SpectrumToPSDEncoder(**TINY, max_epochs=1, output_std=True, random_state=0)
    enc.fit(X, psd=psd)
    Z = enc.transform(X)
    assert Z.shape == (len(X), 4)
    assert enc.get_feature_names_out().tolist() == ["z0", "z1", "z0_std", "z1_std"]
    module = enc.net_.module_
    with torch.no_grad():
        x = enc._standardise(X[:5], torch.device("cpu"))
        mean, logvar = module.encode(x)
    np.testing.assert_allclose(Z[:5, :2], mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(Z[:5, 2:], np.exp(0.5 * logvar.numpy()), rtol=1e-5)
    frame = enc.set_output(transform="pandas").transform(
        pd.DataFrame(X, index=np.arange(len(X)) + 7)
    )
    assert list(frame.columns) == ["z0", "z1", "z0_std", "z1_std"]
    assert frame.index[0] == 7


def test_transform_is_deterministic_and_batch_independent(pairs, fitted):
    X, _, _ = pairs
    Z = fitted.transform(X)
    np.testing.assert_array_equal(Z, fitted.transform(X))
    np.testing.assert_array_equal(fitted.transform(X[37:41]), Z[37:41])
    assert Z.dtype == np.float32 and fitted.transform(X.astype(np.float64)).dtype == np.float64


def test_preprocessing_nan_and_clipping(pairs, fitted):
    X, _, _ = pairs
    x = X[:4].copy()
    x[:, 10] = np.nan
    filled = X[:4].copy()
    filled[:, 10] = fitted.mean_[10]
    np.testing.assert_allclose(fitted.transform(x), fitted.transform(filled), atol=1e-6)
    hot = X[:4].copy()
    hot[:, 20] = 5.0
    one = X[:4].copy()
    one[:, 20] = 1.0
    np.testing.assert_array_equal(fitted.transform(hot), fitted.transform(one))
    # statistics learnt without NaN pixels and after clipping
    Xn = X.copy()
    Xn[::2, 5] = np.nan
    Xn[1, 6] = 3.0
    enc = SpectrumToPSDEncoder(**TINY, max_epochs=0).fit(Xn, np.ones((len(X), 8)))
    assert enc.mean_[5] == pytest.approx(np.mean(X[1::2, 5]), rel=1e-5)
    col = X[:, 6].astype(np.float64).copy()
    col[1] = 1.0
    assert enc.scale_[6] == pytest.approx(col.std(), rel=1e-4)


def test_predict_decode_and_sampling(pairs, fitted):
    X, _, _ = pairs
    Z = fitted.transform(X[:5])
    np.testing.assert_allclose(fitted.decode(Z), fitted.predict_psd(X[:5]), rtol=1e-5, atol=1e-5)
    prior = fitted.sample_psd(6, random_state=0)
    assert prior.shape == (6, fitted.n_psd_)
    np.testing.assert_array_equal(prior, fitted.sample_psd(6, random_state=0))
    post = fitted.sample_psd(3, X=X[:5], random_state=np.random.default_rng(1))
    assert post.shape == (5, 3, fitted.n_psd_)
    draws = fitted.sample_latent(X[:5], 2000, random_state=0)
    assert draws.shape == (5, 2000, 2)
    mean, logvar = fitted._encode(X[:5])
    np.testing.assert_allclose(draws.mean(axis=1), mean, atol=5 * np.exp(0.5 * logvar).max() / 40)
    with pytest.raises(ValueError, match="latent_dim=2 columns"):
        fitted.decode(np.zeros((2, 3)))


def test_latent_jacobian_matches_finite_differences(pairs, fitted):
    X, _, _ = pairs
    x = X[:3].astype(np.float64)
    x[0, 7] = np.nan
    x[1, 9] = 2.5
    J = fitted.latent_jacobian(x)
    assert J.shape == (3, 2, X.shape[1])
    assert np.isnan(J[0, :, 7]).all() and np.isfinite(J[1]).all()
    assert (J[1, :, 9] == 0).all()
    # directional derivative along a random direction; the step is small because the
    # flux is divided by the pixel scatter (down to 0.005) before the ReLUs see it
    rng = np.random.default_rng(0)
    direction = rng.standard_normal(X.shape[1]) * 1e-5
    direction[[7, 9]] = 0.0
    numeric = (fitted.transform(x + direction) - fitted.transform(x - direction)) / 2
    analytic = np.einsum("ikj,j->ik", np.nan_to_num(J), direction)
    np.testing.assert_allclose(analytic, numeric, rtol=0.02, atol=2e-6)
    # and it is the gradient of the plain (reference) network through the standardisation
    module = fitted.net_.module_
    module.fast = False
    try:
        xt = torch.tensor(X[:2], requires_grad=True)
        mean, _ = module.encode((xt - fitted._mean_t) * fitted._inv_scale_t)
        (grad,) = torch.autograd.grad(mean[:, 1].sum(), xt)
    finally:
        module.fast = True
    np.testing.assert_allclose(
        fitted.latent_jacobian(X[:2])[:, 1],
        grad.numpy(),
        rtol=1e-4,
        atol=1e-5 * float(grad.abs().max()),
    )


def test_score_is_negative_deterministic_loss(pairs, fitted):
    X, psd, _ = pairs
    s = fitted.score(X, psd=psd)
    assert s == fitted.score(X, psd)
    module = fitted.net_.module_
    with torch.no_grad():
        out = module(fitted._standardise(X, torch.device("cpu")))
        expected = ved_loss(*out, torch.from_numpy(psd), torch.ones_like(out[0])).mean()
    assert s == pytest.approx(-float(expected), rel=1e-5)
    w = np.full(psd.shape[1], 2.0)
    assert fitted.score(X, psd=psd, psd_weight=w) < s


# ----------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------
def test_transform_before_fit():
    with pytest.raises(NotFittedError):
        SpectrumToPSDEncoder().transform(np.ones((2, 7514)))


def test_wrong_pixel_count(fitted):
    with pytest.raises(ValueError, match=r"X has 95 features.*expecting 96"):
        fitted.transform(np.ones((2, 95)))


def test_all_nan_rows(pairs, fitted):
    X, psd, _ = pairs
    bad = X.copy()
    bad[[3, 5]] = np.nan
    with pytest.raises(ValueError, match=r"X must have at least one finite pixel.*\[3, 5\]"):
        SpectrumToPSDEncoder(**TINY, max_epochs=1).fit(bad, psd=psd)
    with pytest.raises(ValueError, match=r"row\(s\) \[3, 5\] are entirely NaN"):
        fitted.transform(bad)
    bad_psd = psd.copy()
    bad_psd[2] = np.nan
    with pytest.raises(ValueError, match=r"psd must have at least one finite pixel.*\[2\]"):
        SpectrumToPSDEncoder(**TINY, max_epochs=1).fit(X, psd=bad_psd)


def test_infinite_input(pairs):
    X, psd, _ = pairs
    bad = X.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="Input X contains infinity"):
        SpectrumToPSDEncoder(**TINY, max_epochs=1).fit(bad, psd=psd)


def test_psd_shape_errors(pairs, fitted):
    X, psd, _ = pairs
    with pytest.raises(
        ValueError, match=r"psd must have one row per spectrum of X \(160 rows\), got 159"
    ):
        SpectrumToPSDEncoder(**TINY, max_epochs=1).fit(X, psd=psd[:-1])
    with pytest.raises(
        ValueError, match="psd must have the 48 pixels of the training PSDs, got 47"
    ):
        fitted.score(X, psd=psd[:, :-1])
    with pytest.raises(ValueError, match="psd must be 2-D"):
        SpectrumToPSDEncoder(**TINY, max_epochs=1).fit(X, psd=psd[..., None])
    with pytest.raises(ValueError, match="target y is None"):
        SpectrumToPSDEncoder(**TINY, max_epochs=1).fit(X)


def test_weight_errors(pairs):
    X, psd, _ = pairs
    enc = SpectrumToPSDEncoder(**TINY, max_epochs=1)
    w = np.ones_like(psd)
    w[4, 2] = -0.5
    with pytest.raises(ValueError, match="psd_weight must be non-negative, got 1 negative"):
        enc.fit(X, psd=psd, psd_weight=w)
    w[4, 2] = np.nan
    with pytest.raises(ValueError, match="psd_weight must be finite"):
        enc.fit(X, psd=psd, psd_weight=w)
    with pytest.raises(ValueError, match=r"psd_weight must have the shape of the PSDs"):
        enc.fit(X, psd=psd, psd_weight=np.ones((3, 48)))


def test_too_short_spectra_for_architecture():
    with pytest.raises(ValueError, match="too short for this encoder"):
        SpectrumToPSDEncoder(max_epochs=1).fit(np.ones((4, 3)), psd=np.ones((4, 5)))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_gpu_is_a_clear_error(pairs):
    X, psd, _ = pairs
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        SpectrumToPSDEncoder(**TINY, max_epochs=1, device="cuda").fit(X, psd=psd)


# ----------------------------------------------------------------------------------------
# training extras
# ----------------------------------------------------------------------------------------
def test_checkpoint_early_stopping_and_user_callbacks(pairs, tmp_path, monkeypatch):
    X, psd, _ = pairs
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)

    class _Count(Callback):
        def initialize(self):
            self.epochs_ = 0
            return self

        def on_epoch_end(self, net, **kwargs):
            self.epochs_ += 1

    enc = SpectrumToPSDEncoder(
        **TINY,
        max_epochs=3,
        early_stopping=True,
        validation_fraction=0.25,
        checkpoint_dir=tmp_path / "ckpt",
        callbacks=[("count", _Count())],
        random_state=0,
    ).fit(X, psd=psd)
    history = enc.net_.history
    assert "valid_loss" in history[-1]
    assert (tmp_path / "ckpt" / "params.pt").is_file()
    assert list(workdir.iterdir()) == []  # nothing written in the working directory
    assert dict(enc.net_.callbacks_)["count"].epochs_ == 3
    no_sched = SpectrumToPSDEncoder(**TINY, max_epochs=1, callbacks=[("lr_scheduler", None)])
    names = dict(no_sched.fit(X, psd=psd).net_.callbacks_)
    assert "lr_scheduler" not in names and "epoch_log" in names


def test_lr_schedule_is_the_released_one(pairs):
    X, psd, _ = pairs
    enc = SpectrumToPSDEncoder(**TINY, max_epochs=1).fit(X, psd=psd)
    sched = dict(enc.net_.callbacks_)["lr_scheduler"]
    assert sched.monitor == "train_loss"
    plateau = sched.lr_scheduler_
    assert plateau.factor == 0.5 and plateau.threshold == 5e-5
    assert plateau.threshold_mode == "abs" and plateau.min_lrs == [1e-10]
    # Keras patience=6: the rate is halved on the 6th epoch without improvement
    opt = plateau.optimizer
    plateau.step(1.0)
    for _ in range(5):
        plateau.step(1.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(5e-4)
    plateau.step(1.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(2.5e-4)


def test_verbose_logs_and_never_prints(pairs, capsys, caplog):
    X, psd, _ = pairs
    with caplog.at_level(logging.INFO, logger="skages.encoder"):
        SpectrumToPSDEncoder(**TINY, max_epochs=2, verbose=1, random_state=0).fit(X, psd=psd)
    captured = capsys.readouterr()
    assert captured.out == ""
    messages = [r.getMessage() for r in caplog.records]
    epochs = [m for m in messages if m.startswith("epoch ")]
    assert len(epochs) == 2
    # plain words, not a dict repr: "epoch 2/2  loss 273.5  lr 5e-4  (0.1 s)"
    assert re.fullmatch(r"epoch 2/2  loss [0-9.]+  lr 5e-4  \([0-9.]+ s\)", epochs[-1])
    assert sum(m.startswith("loss: ") for m in messages) == 1  # the loss explained once


# ----------------------------------------------------------------------------------------
# GPU
# ----------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fit_transform_and_cpu_reload(pairs, monkeypatch):
    X, psd, _ = pairs
    enc = SpectrumToPSDEncoder(**TINY, max_epochs=3, device="cuda", random_state=0)
    enc.fit(X, psd=psd)
    Z = enc.transform(X)
    assert np.isfinite(Z).all()
    buffer = io.BytesIO()
    joblib.dump(enc, buffer)
    buffer.seek(0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    loaded = joblib.load(buffer)
    assert str(loaded.net_.device) == "cpu"
    np.testing.assert_allclose(loaded.transform(X), Z, rtol=1e-4, atol=1e-5)


def test_a_rows_outputs_do_not_depend_on_its_batch():
    """Bit for bit: alone, first, last, in a shuffled batch, with 1 or 2 torch threads.

    On the released architecture, whose matrix products are large enough for BLAS
    kernels to round differently with the number of rows (1e-6 before inference ran
    one spectrum per call on the CPU)."""
    rng = np.random.default_rng(5)
    X = (1 + 0.03 * rng.standard_normal((11, 7514))).astype(np.float32)
    enc = SpectrumToPSDEncoder(max_epochs=0, output_std=True, random_state=0)
    enc.fit(X[:4], psd=rng.standard_normal((4, 2092)).astype(np.float32))
    Z = rng.standard_normal((11, 5)).astype(np.float32)
    row = 6
    order = rng.permutation(11)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        try:
            alone = enc.transform(X[row : row + 1])[0]
            first = enc.transform(X[[row, *range(row), *range(row + 1, 11)]])[0]
            last = enc.transform(X[[*range(row), *range(row + 1, 11), row]])[-1]
            shuffled = enc.transform(X[order])[np.flatnonzero(order == row)[0]]
            psd_alone = enc.decode(Z[row : row + 1])[0]
            psd_shuffled = enc.decode(Z[order])[np.flatnonzero(order == row)[0]]
        finally:
            torch.set_num_threads(1)
        if threads == 1:
            reference, psd_reference = alone, psd_alone
        for latent in (alone, first, last, shuffled):
            np.testing.assert_array_equal(latent, reference)
        for psd in (psd_alone, psd_shuffled):
            np.testing.assert_array_equal(psd, psd_reference)
