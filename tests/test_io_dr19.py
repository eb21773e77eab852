"""SDSS-V DR19 files: mwmStar / mwmVisit, apStar 1.x, astraAllStarASPCAP and allStar-1.3.

No real DR19 file can be fetched here, so the files are built from the SDSS data model
(``../shared/data/sdss_datamodel``: HDU layout, column names and types, header keywords of
the DR19 sections) around the flux of the real DR17 apStar files of
``../shared/data/apogee_fixtures``. The proof: the same flux read as a DR17 apStar with a
DR17 allStar row and as a DR19 mwmStar with an astraAllStarASPCAP row gives the same
catalogue latents and ages.
"""

from __future__ import annotations

import logging
import re
import shutil

import numpy as np
import pytest
import yaml  # an astropy dependency
from astropy.io import fits
from astropy.table import Table

from skages.io import (
    read_apogee_spectra,
    read_apstar,
    read_labels,
    read_mwmstar,
    read_mwmvisit,
    read_normalized_spectra,
    spectra_to_survey,
)
from skages.io.apogee import _scan_spectrum_folder
from skages.io.sdss5 import ASPCAPFLAG_STAR_BAD, one_row_per_star
from skages.spectra import (
    DEFAULT_BAD_BITS,
    N_PIXELS_APSTAR,
    bad_pixel_mask,
    pixmask_from_astra_flags,
    remove_gaps,
)

STARS = ["2M19485057+5005279", "2M17335483-2753043"]
SDSS_IDS = [54392544, 62184413]
GAIA_IDS = [2086526411398117760, 4060785375046208256]


# ------------------------------------------------------------------ the data model


@pytest.fixture(scope="module")
def datamodel(shared_data):
    """DR19 sections of the SDSS data model (HDUs, columns, types, header keywords)."""
    folder = shared_data / "sdss_datamodel"
    out = {}
    for name in ("mwmStar", "mwmVisit", "astraAllStarASPCAP", "allStar", "apStar"):
        with open(folder / f"{name}.yaml") as f:
            out[name] = yaml.safe_load(f)["releases"]["DR19"]["hdus"]
    return out


def _fits_format(dm_type: str, n_pixels: int) -> str:
    """FITS TFORM of a data-model column type (``float32[8575]``, ``char[18]``, ...)."""
    match = re.fullmatch(r"(\w+)(?:\[(\d+)\])?", dm_type)
    base, size = match.group(1), match.group(2)
    # allStar's DR19 section types one column "int63" (a typo of int64)
    code = {"int64": "K", "int63": "K", "int32": "J", "int16": "I", "float32": "E",
            "float64": "D"}  # fmt: skip
    if base == "char":
        return f"{max(int(size or 1), 20)}A"
    if base == "bool":
        return f"{size or ''}L"
    if size is not None and int(size) in (0, 8575):  # a spectrum (0 in an empty example)
        return f"{n_pixels}{code[base]}"
    return f"{size or ''}{code[base]}"


def _table_hdu(hdu_model: dict, rows: list[dict], n_pixels: int = N_PIXELS_APSTAR):
    """A binary table with the data model's columns, in its order, holding ``rows``."""
    columns = []
    for name, spec in hdu_model["columns"].items():
        fmt = _fits_format(spec["type"], n_pixels)
        values = [row.get(name) for row in rows]
        if fmt.endswith("A"):
            array = np.array([v if v is not None else "" for v in values], dtype="U")
        else:
            dtype = {"K": np.int64, "J": np.int32, "I": np.int16, "E": np.float32,
                     "D": np.float64, "L": bool}[fmt[-1]]  # fmt: skip
            width = int(fmt[:-1]) if fmt[:-1] else None
            shape = (len(rows),) if width is None else (len(rows), width)
            array = np.zeros(shape, dtype=dtype)
            for i, v in enumerate(values):
                if v is not None:
                    array[i] = v
        columns.append(fits.Column(name=name, format=fmt, array=array))
    hdu = fits.BinTableHDU.from_columns(columns)
    for card in hdu_model.get("header", []):
        key = card["key"]
        if key in hdu.header or key.startswith(("TDIM", "CHECKSUM", "DATASUM")):
            continue
        hdu.header[key] = card["value"]
    return hdu


def _primary(hdu_model: dict, **values) -> fits.PrimaryHDU:
    primary = fits.PrimaryHDU()
    for card in hdu_model.get("header", []):
        key = card["key"]
        if key in primary.header or key in ("COMMENT", "CHECKSUM", "DATASUM"):
            continue
        if card["value"] is not None:
            primary.header[key] = card["value"]
    for key, value in values.items():
        if value is None:
            primary.header.remove(key, ignore_missing=True)
        else:
            primary.header[key] = value
    return primary


def _dr17(shared_data, i: int):
    return read_apstar(shared_data / "apogee_fixtures" / f"apStar-dr17-{STARS[i]}.fits")


def _mwm_row(spec, i: int, *, telescope="apo25m", snr=None, continuum=None) -> dict:
    err = spec.flux_err.astype(np.float64)
    with np.errstate(divide="ignore", over="ignore"):
        ivar = err**-2.0
    ivar[~np.isfinite(ivar)] = 0  # Astra: ivar = err**-2, non-finite -> 0
    return {
        "sdss_id": SDSS_IDS[i],
        "release": "sdss5",
        "filetype": "apStar",
        "v_astra": "0.6.0",
        "apred": "1.3",
        "obj": STARS[i],
        "telescope": telescope,
        "n_visits": spec.n_visits or 1,
        "snr": spec.snr if snr is None else snr,
        "wavelength": spec.wavelength,
        "flux": spec.flux,
        "ivar": ivar,
        "pixel_flags": spec.bitmask.astype(np.float32),
        "continuum": np.full(N_PIXELS_APSTAR, np.nanmedian(spec.flux)) if continuum is None
        else continuum,
    }  # fmt: skip


def write_mwm(
    path,
    datamodel,
    *,
    apo=(),
    lco=(),
    boss=(),
    product="mwmStar",
    sdss_id=None,
    apogee_id=None,
    gaia=None,
    n_pixels=N_PIXELS_APSTAR,
):
    """An mwmStar / mwmVisit file of the DR19 data model with the given APOGEE rows."""
    dm = datamodel[product]
    primary = _primary(dm["hdu0"], SDSS_ID=sdss_id, APOGEEID=apogee_id, GAIA3_ID=gaia,
                       GAIA2_ID=gaia)  # fmt: skip
    hdus = [
        primary,
        _table_hdu(dm["hdu1"], list(boss)),
        _table_hdu(dm["hdu2"], []),
        _table_hdu(dm["hdu3"], list(apo), n_pixels),
        _table_hdu(dm["hdu4"], list(lco), n_pixels),
    ]
    hdus[3].header["EXTNAME"], hdus[4].header["EXTNAME"] = "APOGEE/APO", "APOGEE/LCO"
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


def _mwmstar_of(shared_data, datamodel, folder, i, **kw):
    spec = _dr17(shared_data, i)
    return write_mwm(
        folder / f"mwmStar-0.6.0-{SDSS_IDS[i]}.fits",
        datamodel,
        apo=[_mwm_row(spec, i, **kw)],
        sdss_id=SDSS_IDS[i],
        apogee_id=STARS[i],
        gaia=GAIA_IDS[i],
    )


def write_astra_aspcap(path, datamodel, rows: list[dict]):
    """An astraAllStarASPCAP file: HDU 1 BOSS (empty), HDU 2 APOGEE with ``rows``."""
    dm = datamodel["astraAllStarASPCAP"]
    hdus = [_primary(dm["hdu0"]), _table_hdu(dm["hdu1"], []), _table_hdu(dm["hdu2"], rows)]
    hdus[1].header["INSTRMNT"] = "BOSS"
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


LABELS = {"teff": [4712.0, 4410.0], "logg": [2.71, 2.35], "fe_h": [-0.12, 0.08],
          "alpha_m": [0.03, 0.11], "snr": [137.5, 154.2]}  # fmt: skip


def _astra_row(i: int, **over) -> dict:
    row = {
        "sdss_id": SDSS_IDS[i],
        "sdss4_apogee_id": STARS[i],
        "gaia_dr3_source_id": GAIA_IDS[i],
        "release": "sdss5",
        "obj": STARS[i],
        "telescope": "apo25m",
        "snr": LABELS["snr"][i],
        "teff": LABELS["teff"][i],
        "e_teff": 60.0,
        "logg": LABELS["logg"][i],
        "e_logg": 0.03,
        "fe_h": LABELS["fe_h"][i],
        "e_fe_h": 0.01,
        "m_h_atm": LABELS["fe_h"][i] + 0.01,
        "e_m_h_atm": 0.01,
        "alpha_m_atm": LABELS["alpha_m"][i],
        "e_alpha_m_atm": 0.01,
        "spectrum_flags": 4 * i,
        "result_flags": 0,
        "flag_bad": False,
        "flag_warn": False,
    }
    row.update(over)
    return row


def write_dr17_allstar(path, order):
    table = Table()
    table["APOGEE_ID"] = [STARS[i] for i in order]
    table["TELESCOPE"] = ["apo25m"] * len(order)
    table["FIELD"] = [""] * len(order)
    for col, key, err in [("TEFF", "teff", 60.0), ("LOGG", "logg", 0.03),
                          ("FE_H", "fe_h", 0.01), ("ALPHA_M", "alpha_m", 0.01)]:  # fmt: skip
        table[col] = np.array([LABELS[key][i] for i in order], dtype=np.float32)
        table[f"{col}_ERR"] = np.full(len(order), err, dtype=np.float32)
    table["SNREV"] = np.array([LABELS["snr"][i] for i in order], dtype=np.float32)
    table["STARFLAG"] = np.array([4 * i for i in order], dtype=np.int64)
    table["ASPCAPFLAG"] = np.zeros(len(order), dtype=np.int64)
    table.write(path)
    return path


# ------------------------------------------------------------------------ readers


def test_mwmstar_holds_the_apstar_spectrum(shared_data, datamodel, tmp_path):
    spec = _dr17(shared_data, 0)
    path = _mwmstar_of(shared_data, datamodel, tmp_path, 0)
    mwm = read_mwmstar(path)
    assert (mwm.kind, mwm.sdss_id, mwm.gaia_dr3_source_id) == ("mwmStar", SDSS_IDS[0], GAIA_IDS[0])
    assert (mwm.apogee_id, mwm.telescope) == (STARS[0], "apo25m")
    np.testing.assert_array_equal(mwm.bitmask, spec.bitmask)
    good = np.isfinite(spec.flux_err) & (spec.flux_err > 0)
    np.testing.assert_array_equal(mwm.flux[good], spec.flux[good])
    np.testing.assert_allclose(mwm.flux_err[good], spec.flux_err[good], rtol=1e-6)
    assert np.isnan(mwm.flux[~good]).all() and np.isinf(mwm.flux_err[~good]).all()
    # detected from the content: a renamed file is still an mwmStar
    renamed = tmp_path / "some_star.fits"
    shutil.copy(path, renamed)
    both = read_apogee_spectra([renamed, shared_data / "apogee_fixtures" / path.name.replace(
        f"mwmStar-0.6.0-{SDSS_IDS[0]}", f"apStar-dr17-{STARS[0]}")])  # fmt: skip
    assert list(both.kind) == ["mwmStar", "apStar"]
    assert list(both.sdss_id) == [str(SDSS_IDS[0]), ""]
    np.testing.assert_array_equal(both.bitmask[0], both.bitmask[1])


def test_observatory_choice_and_visits(shared_data, datamodel, tmp_path):
    spec = _dr17(shared_data, 1)
    low = _mwm_row(spec, 1, telescope="apo25m", snr=50.0)
    high = _mwm_row(spec, 1, telescope="lco25m", snr=80.0)
    high["flux"] = spec.flux * 2
    path = write_mwm(tmp_path / "mwmStar-x.fits", datamodel, apo=[low], lco=[high],
                     sdss_id=SDSS_IDS[1], apogee_id=STARS[1])  # fmt: skip
    assert read_mwmstar(path).telescope == "lco25m"  # the higher S/N
    assert read_mwmstar(path, observatory="apo").telescope == "apo25m"
    with pytest.raises(ValueError, match="observatory must be"):
        read_mwmstar(path, observatory="north")
    visits = write_mwm(tmp_path / "mwmVisit-x.fits", datamodel, product="mwmVisit",
                       apo=[low | {"mjd": 59000, "field": "K21"}, high | {"mjd": 59001}],
                       sdss_id=SDSS_IDS[1], apogee_id=STARS[1])  # fmt: skip
    second = read_mwmvisit(visits, visit=1)
    assert second.kind == "mwmVisit" and second.field is None
    np.testing.assert_array_equal(second.flux[np.isfinite(second.flux)],
                                  (spec.flux * 2)[np.isfinite(second.flux)])  # fmt: skip
    assert read_mwmvisit(visits).field == "K21"
    with pytest.raises(ValueError, match="visit must be a visit number from 0 to 1"):
        read_mwmvisit(visits, visit=2)
    with pytest.raises(ValueError, match="is an mwmVisit file, not mwmStar"):
        read_mwmstar(visits)
    assert read_apogee_spectra([visits], visit=1).kind[0] == "mwmVisit"


def test_dr19_apstar_is_read_and_found_in_its_folder(shared_data, tmp_path):
    """apStar 1.x: float64 flux, int64 bitmask, no TELESCOP, healpix folders, -MJD names."""
    src = shared_data / "apogee_fixtures" / f"apStar-dr17-{STARS[0]}.fits"
    folder = tmp_path / "apStar" / "apo25m" / "10" / "10105"
    folder.mkdir(parents=True)
    dest = folder / f"apStar-1.3-apo25m-{STARS[0]}-59380.fits"
    with fits.open(src) as hdul:
        hdul[0].header["APRED"] = "1.3"
        for key in ("TELESCOP", "FIELD", "APOGEE_ID"):
            hdul[0].header.remove(key, ignore_missing=True)
        hdul[0].header["OBJID"] = STARS[0]
        hdul.writeto(dest)
    dr19, dr17 = read_apstar(dest), read_apstar(src)
    assert dr19.telescope == "apo25m" and dr19.apogee_id == STARS[0]
    np.testing.assert_array_equal(dr19.flux, dr17.flux)
    files = _scan_spectrum_folder(tmp_path / "apStar")
    assert files[["APOGEE_ID", "TELESCOPE", "FIELD"]].values.tolist() == [[STARS[0], "apo25m", ""]]


def test_pixel_flags_map_to_the_dr17_pixmask():
    bits = np.array([0, 1, 2**12, 2**16 + 2**3, 2**13], dtype=np.float32)
    mask = pixmask_from_astra_flags(bits)
    assert mask.dtype == np.int32 and mask.tolist() == [0, 1, 4096, 65544, 8192]
    assert bad_pixel_mask(mask, DEFAULT_BAD_BITS).tolist() == [False, True, True, True, False]
    for bad, message in [(np.nan, "not whole"), (-1.0, "not whole"), (2.5, "not whole"),
                         (float(2**20), "bits above 16")]:  # fmt: skip
        with pytest.raises(ValueError, match=message):
            pixmask_from_astra_flags(np.array([0.0, bad], dtype=np.float32))


# ----------------------------------------------------------------------- bad files


def test_bad_dr19_files_get_one_clear_error(shared_data, datamodel, tmp_path):
    spec = _dr17(shared_data, 0)
    row = _mwm_row(spec, 0)
    empty = write_mwm(tmp_path / "empty.fits", datamodel, sdss_id=1, apogee_id=STARS[0])
    with pytest.raises(ValueError, match=r"empty.fits is an mwmStar without spectra: its "
                       r"APOGEE HDUs 3 \(APO\) and 4 \(LCO\) are empty"):  # fmt: skip
        read_mwmstar(empty)
    boss_row = {"sdss_id": 1, "telescope": "apo25m", "snr": 20.0}
    boss = write_mwm(tmp_path / "boss.fits", datamodel, boss=[boss_row], sdss_id=1)
    with pytest.raises(ValueError, match=r"boss.fits is a BOSS-only mwmStar"):
        read_mwmstar(boss)
    with pytest.raises(ValueError, match="APOGEE/LCO HDU 4 is empty"):
        read_mwmstar(_mwmstar_of(shared_data, datamodel, tmp_path, 0), observatory="lco")
    short = {k: (v[:8000] if isinstance(v, np.ndarray) and v.size == N_PIXELS_APSTAR else v)
             for k, v in row.items()}  # fmt: skip
    wrong = write_mwm(tmp_path / "short.fits", datamodel, apo=[short], sdss_id=1, n_pixels=8000)
    with pytest.raises(ValueError, match=r"short.fits: HDU 3 .* has 8000 pixels; an APOGEE "
                       "mwmStar spectrum has 8575"):  # fmt: skip
        read_mwmstar(wrong)
    no_id = write_mwm(tmp_path / "noid.fits", datamodel, apo=[row | {"sdss_id": 0}],
                      sdss_id=-1)  # fmt: skip
    with pytest.raises(ValueError, match=r"noid.fits: no sdss_id"):
        read_mwmstar(no_id)
    flags = write_mwm(tmp_path / "flags.fits", datamodel, sdss_id=1,
                      apo=[row | {"pixel_flags": np.full(N_PIXELS_APSTAR, 0.5)}])  # fmt: skip
    with pytest.raises(ValueError, match=r"flags.fits: HDU 3: pixel_flags: .* not whole"):
        read_mwmstar(flags)
    # in a batch, each bad file is one NaN row named in ``errors``
    data = read_apogee_spectra([empty, boss, wrong, no_id], on_error="nan")
    assert sorted(data.errors) == [0, 1, 2, 3] and np.isnan(data.flux).all()


# ---------------------------------------------------------------------- label tables


def test_astra_aspcap_labels_map_to_the_dr17_columns(datamodel, tmp_path, caplog):
    rows = [
        _astra_row(0, release="dr17", snr=90.0, telescope="apo25m"),
        _astra_row(1),
        _astra_row(0, snr=120.0, telescope="lco25m", teff=4700.0),  # the best of star 0
        _astra_row(0, snr=120.0, telescope="apo25m", release="dr17"),  # tie: sdss5 first
        _astra_row(1, sdss_id=0, sdss4_apogee_id="", obj="2M00000000+0000000"),  # no id
        _astra_row(1, sdss_id=77, flag_bad=True, result_flags=5, teff=np.nan),
    ]
    path = write_astra_aspcap(tmp_path / "allStar.fits", datamodel, rows)  # name misleads
    caplog.set_level(logging.INFO, logger="skages.io.sdss5")
    table = read_labels(path)
    assert table.meta["format"] == "astraAllStarASPCAP"
    assert "1 row(s) have no sdss_id" in caplog.text
    assert list(table["sdss_id"]) == [SDSS_IDS[1], SDSS_IDS[0], -1, 77]  # the file's order
    assert list(table["telescope"]) == ["apo25m", "lco25m", "apo25m", "apo25m"]
    assert list(table["apogee_id"]) == [STARS[1], STARS[0], "2M00000000+0000000", STARS[1]]
    assert table["teff"][1] == 4700.0 and np.isnan(table["teff"][3])
    assert str(table["teff"].unit) == "K" and str(table["fe_h"].unit) == "dex"
    np.testing.assert_allclose(table["alpha_m"][0], LABELS["alpha_m"][1], rtol=1e-6)
    np.testing.assert_allclose(table["m_h"][0], LABELS["fe_h"][1] + 0.01, rtol=1e-6)
    np.testing.assert_allclose(table["snrev"][1], 120.0)
    assert list(table["gaia_dr3_source_id"][:2]) == [GAIA_IDS[1], GAIA_IDS[0]]
    assert list(table["aspcapflag"]) == [0, 0, 0, 1 << ASPCAPFLAG_STAR_BAD]
    assert table["result_flags"][3] == 5 and list(table["starflag"][:2]) == [4, 0]
    everything = read_labels(path, one_per_star=False)
    assert len(everything) == 6
    keep = one_row_per_star(everything)
    assert keep.tolist() == [1, 2, 4, 5]


def test_allstar_13_and_dr17_allstar(datamodel, tmp_path, caplog):
    dm = datamodel["allStar"]
    rows = [{"apogee_id": STARS[0], "telescope": "apo25m", "rv_teff": 4800.0, "rv_logg": 2.6,
             "rv_feh": -0.2, "snr": 90.0, "starflag": 3, "sdss_id": SDSS_IDS[0],
             "gaia_sourceid": GAIA_IDS[0]}]  # fmt: skip
    path = tmp_path / "allStar-1.3-apo25m.fits"
    fits.HDUList([fits.PrimaryHDU(), _table_hdu(dm["hdu1"], rows)]).writeto(path)
    table = read_labels(path)
    assert table.meta["format"] == "allStar-1.3"
    assert "Doppler" in caplog.text
    assert (table["teff"][0], table["starflag"][0]) == (4800.0, 3)
    assert np.isnan(table["alpha_m"][0]) and table["gaia_dr3_source_id"][0] == GAIA_IDS[0]
    dr17 = write_dr17_allstar(tmp_path / "dr17.fits", [1, 0])
    table = read_labels(dr17)
    assert table.meta["format"] == "allStar-dr17" and "sdss_id" not in table.colnames
    assert list(table["apogee_id"]) == [STARS[1], STARS[0]]
    with pytest.raises(ValueError, match="is not a label table skages reads"):
        fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(Table({"x": [1]}))]).writeto(
            tmp_path / "other.fits"
        )
        read_labels(tmp_path / "other.fits")


# -------------------------------------------------------- the normalisation and folders


def test_nmf_continuum_is_an_option_never_the_default(shared_data, datamodel, tmp_path):
    spec = _dr17(shared_data, 0)
    cont = np.linspace(0.5, 1.5, N_PIXELS_APSTAR) * np.nanmedian(spec.flux)
    path = _mwmstar_of(shared_data, datamodel, tmp_path, 0, continuum=cont)
    apstar = shared_data / "apogee_fixtures" / f"apStar-dr17-{STARS[0]}.fits"
    default = read_normalized_spectra([path, apstar])
    np.testing.assert_allclose(default.spectra[0], default.spectra[1], rtol=1e-5)
    nmf = read_normalized_spectra([path, apstar], continuum="astra_nmf")
    good = ~bad_pixel_mask(remove_gaps(spec.bitmask))
    expected = remove_gaps(spec.flux / cont)
    np.testing.assert_allclose(nmf.spectra[0][good], expected[good], rtol=1e-6)
    assert np.isnan(nmf.spectra[0][~good]).all()
    np.testing.assert_array_equal(nmf.spectra[1], default.spectra[1])  # apStar: DR17 still
    with pytest.raises(ValueError, match="continuum must be"):
        read_normalized_spectra([path], continuum="nmf")


def test_folder_scan_finds_mwmstar_by_content(shared_data, datamodel, tmp_path, caplog):
    folder = tmp_path / "dr19"
    _mwmstar_of(shared_data, datamodel, folder / "star" / "44" / "25", 0)
    shutil.copy(_mwmstar_of(shared_data, datamodel, tmp_path, 1), folder / "renamed_star.fits")
    write_mwm(folder / "mwmVisit-0.6.0-1.fits", datamodel, product="mwmVisit", sdss_id=1,
              apo=[_mwm_row(_dr17(shared_data, 0), 0) | {"mjd": 59000}])  # fmt: skip
    Table({"x": [1]}).write(folder / "unrelated.fits")
    caplog.set_level(logging.INFO, logger="skages.io.apogee")
    files = _scan_spectrum_folder(folder)
    assert sorted(files["SDSS_ID"]) == sorted(str(i) for i in SDSS_IDS)
    assert set(files["kind"]) == {"mwmStar"} and set(files["APOGEE_ID"]) == set(STARS)
    assert "1 mwmVisit file(s) left out" in caplog.text


def test_spectra_survey_from_a_dr19_folder(shared_data, datamodel, tmp_path):
    from skages.io import SurveyReader

    folder = tmp_path / "dr19"
    for i in (0, 1):
        _mwmstar_of(shared_data, datamodel, folder, i)
    rows = [_astra_row(1), _astra_row(0), _astra_row(0, sdss_id=5)]  # 5: no such file
    labels = write_astra_aspcap(tmp_path / "astra.fits", datamodel, rows)
    res = spectra_to_survey(folder, tmp_path / "s.h5", allstar=labels)
    assert (res.n_stars, res.n_allstar_without_file) == (2, 1)
    with SurveyReader(res.path) as reader:
        found = reader.read_labels()
        spectra = reader.read("spectra")
    assert list(found["sdss_id"]) == [SDSS_IDS[1], SDSS_IDS[0]]
    assert list(found["gaia_dr3_source_id"]) == [GAIA_IDS[1], GAIA_IDS[0]]
    direct = read_normalized_spectra(
        [shared_data / "apogee_fixtures" / f"apStar-dr17-{STARS[i]}.fits" for i in (1, 0)]
    )
    np.testing.assert_allclose(spectra, direct.spectra, rtol=1e-5, atol=1e-6)


# ------------------------------------------- the proof: DR17 and DR19 give one catalogue


@pytest.fixture(scope="module")
def tiny_model(small_survey):
    """A small age model (encoder + forest), fitted once, seeded."""
    from skages.encoder import SpectrumToPSDEncoder
    from skages.forest import ProbabilisticForestRegressor
    from skages.pipeline import fit_age_model

    return fit_age_model(
        small_survey.spectra,
        small_survey.psd,
        small_survey.labels,
        encoder=SpectrumToPSDEncoder(
            encoder_filters=(4, 8),
            hidden_units=8,
            decoder_filters=(4, 4),
            max_epochs=1,
            random_state=0,
        ),
        forest=ProbabilisticForestRegressor(n_estimators=20, random_state=0),
        forest_stars="aged",
    )


def test_dr17_and_dr19_files_give_the_same_catalogue(shared_data, datamodel, tiny_model, tmp_path):
    from skages.catalogue import CatalogueCuts, CatalogueFlag, predict_catalogue, read_catalogue

    dr17 = tmp_path / "dr17"
    dr17.mkdir()
    for star in STARS:
        name = f"apStar-dr17-{star}.fits"
        shutil.copy(shared_data / "apogee_fixtures" / name, dr17 / name)
    dr19 = tmp_path / "dr19"
    for i in (0, 1):
        _mwmstar_of(shared_data, datamodel, dr19 / "star" / str(i), i)
    boss_only = write_mwm(dr19 / "mwmStar-0.6.0-99.fits", datamodel, sdss_id=99,
                          boss=[{"sdss_id": 99, "telescope": "apo25m", "snr": 30.0}])  # fmt: skip
    assert boss_only.exists()
    order = [1, 0]
    allstar = write_dr17_allstar(tmp_path / "allStar-dr17.fits", order)
    astra = write_astra_aspcap(
        tmp_path / "astraAllStarASPCAP-0.6.0.fits",
        datamodel,
        [
            _astra_row(1),
            _astra_row(0, release="dr17", snr=20.0, teff=5500.0),  # a worse row: not chosen
            _astra_row(0),
            _astra_row(0, sdss_id=99, sdss4_apogee_id="", obj="2M99999999+9999999"),
        ],
    )
    cuts = CatalogueCuts.none()
    a = read_catalogue(
        predict_catalogue(tiny_model, dr17, tmp_path / "a.fits", labels=allstar, cuts=cuts).path
    )
    b = read_catalogue(
        predict_catalogue(tiny_model, dr19, tmp_path / "b.fits", labels=astra, cuts=cuts).path
    )
    assert len(a) == 2 and len(b) == 3
    # the labels file's order, with its ids and units
    assert list(b["APOGEE_ID"][:2]) == [STARS[i] for i in order] == list(a["APOGEE_ID"])
    assert list(b["SDSS_ID"]) == [SDSS_IDS[1], SDSS_IDS[0], 99]
    assert list(b["GAIA_DR3_SOURCE_ID"][:2]) == [GAIA_IDS[1], GAIA_IDS[0]]
    assert "SDSS_ID" not in a.colnames
    assert list(b["STARFLAG"][:2]) == list(a["STARFLAG"]) == [4, 0]
    assert b["z0"].unit == a["z0"].unit and b["Age"].unit == a["Age"].unit
    assert list(a["SKAGES_FLAG"]) == [0, 0] and list(b["SKAGES_FLAG"][:2]) == [0, 0]
    assert b["SKAGES_FLAG"][2] & CatalogueFlag.BAD_SPECTRUM  # the BOSS-only star: flagged
    assert np.isnan(b["z0"][2])
    latent = [f"z{k}" for k in range(5)]
    for name in latent:
        np.testing.assert_allclose(b[name][:2], a[name], rtol=0, atol=1e-5)
    assert np.isfinite(a["LogAge"]).all()
    np.testing.assert_allclose(b["LogAge"][:2], a["LogAge"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(b["LogAge_Error"][:2], a["LogAge_Error"], rtol=0, atol=1e-5)


def test_commands_work_on_a_dr19_folder_unchanged(
    shared_data, datamodel, tiny_model, tmp_path, capsys
):
    """``skages spectra`` and ``skages predict --labels astraAllStarASPCAP`` on mwmStar files."""
    from skages.catalogue import read_catalogue
    from skages.cli import main
    from skages.persistence import save_model

    model = save_model(tiny_model, tmp_path / "tiny.joblib")
    folder = tmp_path / "mwm"
    for i in (0, 1):
        _mwmstar_of(shared_data, datamodel, folder / str(i), i)
    labels = write_astra_aspcap(tmp_path / "astraAllStarASPCAP-0.6.0.fits", datamodel,
                                [_astra_row(0), _astra_row(1)])  # fmt: skip
    spec = tmp_path / "spec.h5"
    argv = ["-q", "spectra", "--allstar", str(labels), "--spectra", str(folder)]
    assert main([*argv, "--output", str(spec)]) == 0
    out = {}
    for name, spectra in (("folder", folder), ("survey", spec)):
        out[name] = tmp_path / f"{name}.fits"
        argv = ["-q", "predict", "--model", str(model), "--trust-joblib", "--spectra"]
        argv += [str(spectra), "--labels", str(labels), "--no-cuts", "-o", str(out[name])]
        assert main(argv) == 0, capsys.readouterr().err
    a, b = read_catalogue(out["folder"]), read_catalogue(out["survey"])
    assert list(a["SDSS_ID"]) == list(b["SDSS_ID"]) == SDSS_IDS
    assert list(a["GAIA_DR3_SOURCE_ID"]) == GAIA_IDS
    assert np.isfinite(a["LogAge"]).all()
    np.testing.assert_allclose(a["z0"], b["z0"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(a["LogAge"], b["LogAge"], rtol=0, atol=1e-5)


def test_spectra_survey_from_listed_files_keeps_the_sdss_id(shared_data, datamodel, tmp_path):
    from skages.io import SurveyReader

    mwm = _mwmstar_of(shared_data, datamodel, tmp_path, 1)
    apstar = shared_data / "apogee_fixtures" / f"apStar-dr17-{STARS[0]}.fits"
    res = spectra_to_survey([mwm, apstar], tmp_path / "s.h5")
    with SurveyReader(res.path) as reader:
        labels = reader.read_labels()
    assert list(labels["sdss_id"]) == [str(SDSS_IDS[1]), ""]
    assert list(labels["apogee_id"]) == [STARS[1], STARS[0]]
    dr17_only = spectra_to_survey([apstar], tmp_path / "t.h5")
    with SurveyReader(dr17_only.path) as reader:
        assert "sdss_id" not in reader.label_columns  # DR17 surveys are as before
