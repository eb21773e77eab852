"""astroNN model folders: reading the published format, writing it, and agreement with astroNN.

The reference folder ``../shared/data/astronn_model/`` was written by astroNN 1.1.0 itself
(``../shared/tools/astronn_fixture.py``), with what astroNN computed from it in
``astronn_outputs.npz``; these tests need no TensorFlow.
"""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

from skages.encoder import SpectrumToPSDEncoder
from skages.io import read_astronn_model, write_astronn_model

TOL = 1e-5


@pytest.fixture(scope="module")
def reference(shared_data):
    folder = shared_data / "astronn_model" / "astroNN_VEncoderDecoder"
    outputs = dict(np.load(shared_data / "astronn_model" / "astronn_outputs.npz"))
    return folder, outputs


@pytest.fixture(scope="module")
def loaded(reference):
    folder, _ = reference
    return SpectrumToPSDEncoder.from_astronn(folder, output_std=True)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A small skages-trained encoder (astroNN's layer structure) and its folder."""
    rng = np.random.default_rng(0)
    X = 1 + 0.02 * rng.standard_normal((48, 64))
    X[3, 5] = np.nan
    psd = rng.standard_normal((48, 16))
    enc = SpectrumToPSDEncoder(
        latent_dim=3,
        encoder_filters=(4, 6),
        encoder_kernel_size=4,
        hidden_units=5,
        decoder_filters=(4, 3),
        decoder_kernel_size=6,
        max_epochs=2,
        batch_size=16,
        random_state=0,
    ).fit(X, psd=psd)
    folder = tmp_path_factory.mktemp("astronn") / "astroNN_VEncoderDecoder"
    enc.to_astronn(folder)
    return enc, folder, X


def test_architecture_and_scaler_come_from_the_folder(reference, loaded):
    folder, _ = reference
    params = json.loads((folder / "astroNN_model_parameter.json").read_text())
    assert loaded.latent_dim == params["latent"] == 5
    assert tuple(loaded.encoder_filters) == tuple(params["filternum"][:2])
    assert tuple(loaded.decoder_filters) == tuple(params["filternum"][2:])
    assert (loaded.encoder_kernel_size, loaded.decoder_kernel_size) == tuple(params["filterlen"])
    assert loaded.hidden_units == params["hidden"][0]
    assert loaded.pool_size == params["pool_length"]
    assert loaded.n_features_in_ == params["input"]["input"][0]
    assert loaded.n_psd_ == params["labels"]["output"]
    np.testing.assert_array_equal(loaded.mean_, np.ravel(params["input_mean"]["input"]))
    np.testing.assert_array_equal(loaded.scale_, np.ravel(params["input_std"]["input"]))
    assert loaded.lr == pytest.approx(2e-6) and loaded.n_iter_ == 2  # hyperparameter.txt


def test_latents_equal_astronn_predict_encoder(reference, loaded):
    _, out = reference
    z = loaded.transform(out["spectra"])
    assert np.abs(z[:, :5] - out["z_mean"]).max() < TOL
    assert np.abs(z[:, 5:] - out["z_std"]).max() < TOL
    # not trivially equal: the latents differ from star to star
    assert out["z_mean"].std(axis=0).min() > 0.01


def test_decode_equals_astronn_predict_decoder(reference, loaded):
    _, out = reference
    assert np.abs(loaded.decode(out["z_mean"]) - out["psd_decoded"]).max() < TOL
    assert np.abs(loaded.decode(out["z_grid"]) - out["psd_grid"]).max() < TOL
    assert np.abs(out["psd_grid"]).max() > 0.5  # of order one: every layer matters


def test_jacobian_equals_astronn_jacobian_latent(reference, loaded):
    _, out = reference
    J = loaded.latent_jacobian(out["spectra"][out["jacobian_rows"]])
    scale = np.abs(out["jacobian_flux"]).max()
    assert np.abs(J - out["jacobian_flux"]).max() < TOL * scale


def test_loss_terms_equal_astronn_training_step(reference):
    folder, out = reference
    X, target, weight = out["spectra"], out["psd_target"], out["psd_weight"]
    rec = -SpectrumToPSDEncoder.from_astronn(folder, beta=0.0).score(
        X, psd=target, psd_weight=weight
    )
    kl = -SpectrumToPSDEncoder.from_astronn(folder).score(
        X, psd=target, psd_weight=np.zeros_like(weight)
    )
    assert rec == pytest.approx(float(out["reconstruction_loss"]), rel=TOL)
    assert kl == pytest.approx(float(out["kl_loss"]), rel=TOL)


def _h5_layout(path):
    layout = {}
    with h5py.File(path, "r") as f:
        f["model_weights"].visititems(
            lambda name, obj: layout.__setitem__(name, getattr(obj, "shape", None))
        )
        names = [str(n) for n in f["model_weights"].attrs["layer_names"]]
    return layout, names


def test_round_trip_reference_folder(reference, loaded, tmp_path):
    folder, out = reference
    written = loaded.to_astronn(tmp_path / "astroNN_VEncoderDecoder")
    assert sorted(p.name for p in written.iterdir()) == sorted(p.name for p in folder.iterdir())
    # same HDF5 keys and shapes as the file astroNN wrote
    assert _h5_layout(written / "model_weights.h5") == _h5_layout(folder / "model_weights.h5")
    theirs = json.loads((folder / "astroNN_model_parameter.json").read_text())
    ours = json.loads((written / "astroNN_model_parameter.json").read_text())
    assert sorted(ours) == sorted(theirs)
    for key in ("filternum", "filterlen", "hidden", "input", "labels", "latent", "pool_length"):
        assert ours[key] == theirs[key]
    with h5py.File(written / "model_weights.h5") as a, h5py.File(folder / "model_weights.h5") as b:
        ca, cb = (json.loads(h.attrs["model_config"]) for h in (a, b))
        assert ca == cb  # the same Keras model configuration astroNN writes
        np.testing.assert_array_equal(
            a["model_weights/dense/dense/kernel:0"], b["model_weights/dense/dense/kernel:0"]
        )
    back = SpectrumToPSDEncoder.from_astronn(written, output_std=True)
    np.testing.assert_array_equal(back.transform(out["spectra"]), loaded.transform(out["spectra"]))
    np.testing.assert_array_equal(back.decode(out["z_grid"]), loaded.decode(out["z_grid"]))


def test_round_trip_skages_trained_encoder(tiny_folder):
    enc, folder, X = tiny_folder
    back = SpectrumToPSDEncoder.from_astronn(folder)
    np.testing.assert_array_equal(back.transform(X), enc.transform(X))
    np.testing.assert_array_equal(back.latent_jacobian(X[:3]), enc.latent_jacobian(X[:3]))
    Z = np.random.default_rng(1).standard_normal((5, 3))
    np.testing.assert_array_equal(back.decode(Z), enc.decode(Z))
    state = {k: v.numpy() for k, v in enc.net_.module_.state_dict().items()}
    for k, v in back.net_.module_.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), state[k])
    model = read_astronn_model(folder)
    assert model.weights["encoder_conv1/kernel"].shape == (4, 4, 6)  # Keras (k, in, out)
    assert model.weights["decoder_conv1/kernel"].shape == (6, 3, 4)  # Keras (k, out, in)
    assert model.training["max_epochs"] == 2 and model.training["n_train"] == 48
    assert back.batch_size == 16


def test_write_refuses_to_overwrite(tiny_folder):
    enc, folder, _ = tiny_folder
    with pytest.raises(FileExistsError, match="overwrite=True"):
        enc.to_astronn(folder)
    model = read_astronn_model(folder)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_astronn_model(model, folder)
    assert write_astronn_model(model, folder, overwrite=True) == folder


def test_to_astronn_rejects_other_architectures():
    rng = np.random.default_rng(0)
    enc = SpectrumToPSDEncoder(
        latent_dim=2,
        encoder_filters=(2, 2, 2),
        hidden_units=3,
        decoder_filters=(2, 2),
        decoder_kernel_size=4,
        max_epochs=1,
        random_state=0,
    ).fit(1 + 0.01 * rng.standard_normal((20, 64)), psd=rng.standard_normal((20, 16)))
    with pytest.raises(ValueError, match="2 encoder and 2 decoder convolutions"):
        enc.to_astronn("never-written")


def _copy(folder, tmp_path):
    dest = tmp_path / "model"
    shutil.copytree(folder, dest)
    return dest


def test_missing_folder_and_files(tiny_folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SpectrumToPSDEncoder.from_astronn(tmp_path / "nowhere")
    dest = _copy(tiny_folder[1], tmp_path)
    (dest / "model_weights.h5").unlink()
    with pytest.raises(FileNotFoundError, match=r"model_weights\.h5 missing"):
        read_astronn_model(dest)


def test_other_model_type_is_named(tiny_folder, tmp_path):
    dest = _copy(tiny_folder[1], tmp_path)
    file = dest / "astroNN_model_parameter.json"
    params = json.loads(file.read_text())
    params["id"] = "ApogeeBCNN"
    file.write_text(json.dumps(params))
    with pytest.raises(ValueError, match=r"astroNN_model_parameter.json describes .*ApogeeBCNN"):
        read_astronn_model(dest)


def test_wrong_shape_names_the_dataset(tiny_folder, tmp_path):
    dest = _copy(tiny_folder[1], tmp_path)
    with h5py.File(dest / "model_weights.h5", "a") as f:
        key = "model_weights/z_mean/z_mean/kernel:0"
        del f[key]
        f[key] = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"\.h5: .*z_mean/kernel:0 has shape \(4, 3\)"):
        read_astronn_model(dest)


def test_newer_keras_layout_is_refused(tiny_folder, tmp_path):
    dest = _copy(tiny_folder[1], tmp_path)
    with h5py.File(dest / "model_weights.h5", "a") as f:
        f.attrs["keras_version"] = "3.3.3"
    with pytest.raises(ValueError, match=r"written by Keras 3\.3\.3"):
        read_astronn_model(dest)


def test_architecture_parameters_may_not_be_overridden(tiny_folder):
    with pytest.raises(TypeError, match="latent_dim"):
        SpectrumToPSDEncoder.from_astronn(tiny_folder[1], latent_dim=4)


def test_normalised_labels_are_refused(tiny_folder, tmp_path):
    dest = _copy(tiny_folder[1], tmp_path)
    file = dest / "astroNN_model_parameter.json"
    params = json.loads(file.read_text())
    params["labels_std"] = {"output": [2.0]}
    file.write_text(json.dumps(params))
    with pytest.raises(ValueError, match=r"labels_std is not 1\.0"):
        read_astronn_model(dest)


# ------------------------------------------------------------ pipeline and command line


@pytest.fixture(scope="module")
def survey_file(small_survey, tmp_path_factory):
    from skages.io import write_survey

    return write_survey(tmp_path_factory.mktemp("survey") / "train.h5", small_survey)


def test_grid_search_over_the_forest_on_the_published_encoder(reference, small_survey):
    import sklearn
    from sklearn.model_selection import GridSearchCV

    from skages.forest import ProbabilisticForestRegressor
    from skages.pipeline import make_age_frame, make_age_pipeline

    folder, _ = reference
    enc = SpectrumToPSDEncoder.from_astronn(folder, output_std=True)
    before = {k: v.clone() for k, v in enc.net_.module_.state_dict().items()}
    lab = small_survey.labels
    aged = np.isfinite(lab["log_age"].to_numpy())
    X = make_age_frame(small_survey.spectra, lab).to_numpy()[aged]
    y, y_err = lab["log_age"].to_numpy()[aged], lab["log_age_err"].to_numpy()[aged]
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = make_age_pipeline(
            enc, ProbabilisticForestRegressor(n_estimators=8, random_state=0), freeze_encoder=True
        )
        search = GridSearchCV(pipe, {"forest__min_samples_leaf": [1, 20]}, cv=2)
        search.fit(X, y, y_err=y_err)
        mean, std = search.best_estimator_.predict(X[:5], return_std=True)
    assert search.best_params_["forest__min_samples_leaf"] in (1, 20)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert np.isfinite(mean).all() and (std > 0).all()
    features = search.best_estimator_[0].transform(X[:5])
    np.testing.assert_array_equal(
        features[[f"encoder__z{k}" for k in range(5)]].to_numpy(),
        np.asarray(enc.transform(X[:5, :7514]))[:, :5],
    )
    for k, v in enc.net_.module_.state_dict().items():
        assert v.equal(before[k]), k  # the search never refitted the encoder


def test_fit_age_model_on_a_frozen_encoder(reference, small_survey):
    from skages.forest import ProbabilisticForestRegressor
    from skages.pipeline import fit_age_model, make_age_frame, spectrum_feature_names

    enc = SpectrumToPSDEncoder.from_astronn(reference[0])
    model = fit_age_model(
        small_survey.spectra,
        None,
        small_survey.labels,
        encoder=enc,
        forest=ProbabilisticForestRegressor(n_estimators=8, random_state=0),
        freeze_encoder=True,
    )
    assert enc.output_std is False  # the caller's encoder is left as it was
    inner = model[0].named_transformers_["encoder"].estimator
    frame = make_age_frame(small_survey.spectra, small_survey.labels)[spectrum_feature_names()]
    np.testing.assert_array_equal(
        np.asarray(inner.transform(frame.iloc[:4]))[:, :5],
        enc.transform(small_survey.spectra[:4]),
    )
    with pytest.raises(ValueError, match="already fitted"):
        fit_age_model(
            small_survey.spectra,
            None,
            small_survey.labels,
            encoder=SpectrumToPSDEncoder(),
            freeze_encoder=True,
        )


def test_cli_train_on_the_published_encoder_then_encode(reference, survey_file, tmp_path):
    from skages.catalogue import read_catalogue
    from skages.cli import main
    from skages.io import read_survey

    folder, _ = reference
    model = tmp_path / "model.skops"
    argv = ["-q", "train", "--encoder", str(folder), "--survey", str(survey_file)]
    assert main([*argv, "--n-estimators", "8", "--output", str(model)]) == 0
    assert main([*argv, "--max-epochs", "3", "--output", str(tmp_path / "x.joblib")]) == 1
    out = tmp_path / "latent.fits"
    assert main(["-q", "encode", "--model", str(folder), "--spectra", str(survey_file),
                 "--output", str(out), "--no-cuts"]) == 0  # fmt: skip
    table = read_catalogue(out)
    assert "LogAge" not in table.colnames
    assert [c for c in table.colnames if c.startswith("z")] == [
        *(f"z{k}" for k in range(5)),
        *(f"z{k}_Error" for k in range(5)),
    ]
    for name in table.colnames:
        assert table[name].description, name
    assert str(table["z0"].unit) == "" and table["z0"].unit is not None
    spectra = read_survey(survey_file).spectra
    expected = SpectrumToPSDEncoder.from_astronn(folder, output_std=True).transform(spectra)
    got = np.column_stack(
        [table[f"z{k}"] for k in range(5)] + [table[f"z{k}_Error"] for k in range(5)]
    )
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    # the skages model trained on top of it encodes the same
    out2 = tmp_path / "latent2.fits"
    assert main(["-q", "encode", "--model", str(model), "--spectra", str(survey_file),
                 "--output", str(out2), "--no-cuts"]) == 0  # fmt: skip
    np.testing.assert_array_equal(np.asarray(read_catalogue(out2)["z3"]), np.asarray(table["z3"]))


def test_masked_fill_astronn_feeds_the_magic_number(tiny_folder):
    enc, folder, X = tiny_folder
    astro = SpectrumToPSDEncoder.from_astronn(folder, masked_fill="astronn")
    masked = X[:4].copy()
    masked[:, [3, 40]] = np.nan
    # astroNN puts -9999 into the standardised input: the flux that standardises to it
    magic = X[:4].copy()
    magic[:, [3, 40]] = astro.mean_[[3, 40]] - 9999.0 * astro.scale_[[3, 40]]
    np.testing.assert_allclose(astro.transform(masked), astro.transform(magic), atol=1e-4)
    # skages' default (the training mean) is another answer, and far closer to unmasked
    default = SpectrumToPSDEncoder.from_astronn(folder).transform(masked)
    clean = enc.transform(X[:4])
    assert np.abs(default - clean).max() < np.abs(astro.transform(masked) - clean).max()


def test_keras_adam_is_the_keras_update():
    import torch

    from skages._optim import KerasAdam

    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(6) * scale for scale in (1e-6, 1e-6, 1e-3, 1.0)]
    w0 = rng.standard_normal(6)
    p = torch.nn.Parameter(torch.tensor(w0))
    opt = KerasAdam([p], lr=5e-4)
    # Keras 2.11+ Adam, written out (keras/optimizers/adam.py)
    w, m, v, lr, b1, b2, eps = w0.copy(), 0.0, 0.0, 5e-4, 0.9, 0.999, 1e-7
    for t, g in enumerate(grads, start=1):
        p.grad = torch.tensor(g)
        opt.step()
        m = m + (g - m) * (1 - b1)
        v = v + (g**2 - v) * (1 - b2)
        alpha = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
        w = w - alpha * m / (np.sqrt(v) + eps)
        np.testing.assert_allclose(p.detach().numpy(), w, rtol=0, atol=1e-12)
    # PyTorch's own Adam is another update for small gradients
    q = torch.nn.Parameter(torch.tensor(w0))
    torch_opt = torch.optim.Adam([q], lr=5e-4)
    q.grad = torch.tensor(grads[0])
    torch_opt.step()
    assert np.abs(q.detach().numpy() - w0).max() > 1.2 * 5e-4 * 0.24


def test_adam_parameter_selects_the_optimiser():
    import torch

    from skages._optim import KerasAdam

    rng = np.random.default_rng(0)
    X, psd = 1 + 0.01 * rng.standard_normal((16, 32)), rng.standard_normal((16, 8))
    small = dict(latent_dim=2, encoder_filters=(2, 2), hidden_units=2, decoder_filters=(2, 2),
                 decoder_kernel_size=4, max_epochs=1, random_state=0)  # fmt: skip
    keras = SpectrumToPSDEncoder(**small).fit(X, psd=psd)
    torch_ = SpectrumToPSDEncoder(adam="pytorch", **small).fit(X, psd=psd)
    assert type(keras.net_.optimizer_) is KerasAdam
    assert type(torch_.net_.optimizer_) is torch.optim.Adam
    with pytest.raises(ValueError, match="adam"):
        SpectrumToPSDEncoder(adam="sgd", **small).fit(X, psd=psd)


def test_drop_last_runs_astronn_steps_per_epoch():
    rng = np.random.default_rng(0)
    X, psd = 1 + 0.01 * rng.standard_normal((20, 32)), rng.standard_normal((20, 8))
    small = dict(latent_dim=2, encoder_filters=(2, 2), hidden_units=2, decoder_filters=(2, 2),
                 decoder_kernel_size=4, max_epochs=2, batch_size=8, random_state=0)  # fmt: skip
    kept = SpectrumToPSDEncoder(**small).fit(X, psd=psd)
    dropped = SpectrumToPSDEncoder(drop_last=True, **small).fit(X, psd=psd)
    sizes = [[b["train_batch_size"] for b in row["batches"]] for row in dropped.net_.history]
    assert sizes == [[8, 8], [8, 8]]  # 20 // 8 steps, as astroNN
    assert [len(row["batches"]) for row in kept.net_.history] == [3, 3]


@pytest.mark.parametrize("how", ["external link", "external storage"])
def test_weights_outside_the_model_file_are_refused(reference, tmp_path, how):
    import shutil

    import h5py

    folder = shutil.copytree(reference[0], tmp_path / "model")
    weights = folder / "model_weights.h5"
    other = tmp_path / "other.h5"
    with h5py.File(weights, "r+") as h5:
        names = []
        h5["model_weights"].visititems(
            lambda n, obj: names.append(n) if isinstance(obj, h5py.Dataset) else None
        )
        name = "model_weights/" + names[0]
        values = h5[name][()]
        del h5[name]
        if how == "external link":
            with h5py.File(other, "w") as o:
                o["w"] = values
            h5[name] = h5py.ExternalLink(str(other), "w")
        else:
            raw = tmp_path / "raw.bin"
            raw.write_bytes(values.astype("<f4").tobytes())
            h5.create_dataset(
                name, shape=values.shape, dtype="<f4", external=[(str(raw), 0, raw.stat().st_size)]
            )
    with pytest.raises(ValueError, match="self-contained") as info:
        read_astronn_model(folder)
    assert str(weights) in str(info.value) and "/" + name in str(info.value)
