"""Readers of APOGEE files: apStar and aspcapStar spectra (one or many) and allStar.

Single spectra (:func:`read_apstar`, :func:`read_aspcapstar`) come back as an
:class:`ApogeeSpectrum`: plain NumPy arrays on the 8575-pixel apStar grid plus the
star's header information. Many spectra (:func:`read_apogee_spectra`) come back
stacked in a :class:`~sklearn.utils.Bunch`. :func:`read_allstar` returns an
:class:`astropy.table.Table` with lower-case column names and units.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from numbers import Integral
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.utils import Bunch

from skages.io._apogee_common import (  # noqa: F401 (re-exported: public home is here)
    _SENTINEL,
    ALLSTAR_COLUMNS,
    ApogeeSpectrum,
    _as_str_array,
    _fits_open,
    _header_value,
    _names_the_file,
    _native,
    read_allstar,
)
from skages.spectra import N_PIXELS_APSTAR

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike

# --------------------------------------------------------------------------------------
# FITS helpers
# --------------------------------------------------------------------------------------

#: TELESCOP values of APOGEE spectra (2.5-m at APO and LCO, 1-m at APO).
_APOGEE_TELESCOPES = {"apo25m", "lco25m", "apo1m"}


def _check_not_other_survey(path: Path, header: Any, what: str) -> None:
    telescope = _header_value(header, "TELESCOP")
    mission = _header_value(header, "MISSION", "INSTRUME")
    if telescope is not None and str(telescope).lower() not in _APOGEE_TELESCOPES:
        raise ValueError(
            f"{path} is not an APOGEE {what} file: its TELESCOP is {telescope!r} "
            f"(APOGEE files come from {sorted(_APOGEE_TELESCOPES)})"
        )
    if mission is not None and "apogee" not in str(mission).lower():
        raise ValueError(
            f"{path} is not an APOGEE {what} file: its MISSION/INSTRUME is {mission!r}"
        )


def _image(hdul: Any, index: int, path: Path, what: str, role: str) -> np.ndarray:
    hdu = hdul[index]
    if not hdu.is_image or hdu.data is None:
        raise ValueError(
            f"{path} is not an APOGEE {what} file: HDU {index} should be the {role} image, "
            f"found {type(hdu).__name__} with no image data"
        )
    data = np.asarray(hdu.data)
    if data.shape[-1] != N_PIXELS_APSTAR:
        raise ValueError(
            f"{path}: HDU {index} ({role}) has {data.shape[-1]} pixels per row (shape "
            f"{data.shape}); an APOGEE {what} file has {N_PIXELS_APSTAR} (apStar grid)"
        )
    return data


def _check_wavelength_keywords(path: Path, header: Any, what: str) -> None:
    crval = _header_value(header, "CRVAL1")
    cdelt = _header_value(header, "CDELT1")
    if (crval is not None and cdelt is not None) and not (
        np.isclose(float(crval), 4.179) and np.isclose(float(cdelt), 6e-6)
    ):
        raise ValueError(
            f"{path}: wavelength grid CRVAL1={crval}, CDELT1={cdelt} is not the APOGEE "
            f"{what} grid (log10 λ/Å = 4.179 + 6e-6 · i)"
        )


def _apogee_id(path: Path, header: Any, table: Any, what: str) -> str:
    value = _header_value(header, "APOGEE_ID", "OBJID", "OBJ", "OBJECT")
    if value is None and table is not None and "APOGEE_ID" in table.columns.names:
        value = table["APOGEE_ID"][0]
        value = value.decode() if isinstance(value, bytes) else str(value)
        value = value.strip() or None
    if value is None:
        raise ValueError(
            f"{path} is not an APOGEE {what} file: no APOGEE_ID / OBJID in its headers"
        )
    return str(value)


def _select_row(data: np.ndarray, visit: Any, n_visits: int | None, path: Path) -> np.ndarray:
    if data.ndim == 1:
        rows = data[None, :]
    elif data.ndim == 2:
        rows = data
    else:
        raise ValueError(f"{path}: expected 1-D or 2-D spectra, found shape {data.shape}")
    n_rows = rows.shape[0]
    if visit == "combined":
        return rows[0]
    if visit == "global":
        return rows[1 if n_rows > 1 else 0]
    if isinstance(visit, Integral) and not isinstance(visit, bool):
        n_ind = n_rows - 2 if n_rows > 2 else 1
        if n_visits is not None and n_rows > 2:
            n_ind = min(n_ind, n_visits)
        if not 0 <= visit < n_ind:
            raise ValueError(
                f"visit must be 'combined', 'global' or a visit number from 0 to {n_ind - 1} "
                f"for {path}; got {visit}"
            )
        return rows[visit + 2] if n_rows > 2 else rows[0]
    raise ValueError(f"visit must be 'combined', 'global' or an int; got {visit!r}")


@_names_the_file("apStar")
def read_apstar(
    path: PathLike, *, visit: Literal["combined", "global"] | int = "combined"
) -> ApogeeSpectrum:
    """Read an APOGEE apStar file (combined and per-visit spectra of one star).

    Parameters
    ----------
    path : str or path-like
        An ``apStar-*.fits`` file: HDU 1 flux, 2 uncertainty, 3 APOGEE_PIXMASK on
        the 8575-pixel apStar grid, one row per spectrum.
    visit : {"combined", "global"} or int, default="combined"
        Which spectrum: the pixel-weighted combination (row 0), the globally
        weighted combination (row 1), or visit ``k`` (0-based; row ``k + 2``).
        A single-visit file has one row, which serves all three.

    Returns
    -------
    ApogeeSpectrum
        ``flux`` and ``flux_err`` in 1e-17 erg s⁻¹ cm⁻² Å⁻¹, ``bitmask`` int32.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is not FITS, is damaged or truncated, comes from another survey (e.g. a
        Kepler light curve), lacks the flux / uncertainty / bitmask HDUs, has the wrong
        pixel count, or is an aspcapStar file. The message names the file.
    """
    path = Path(path)
    with _fits_open(path, "apStar") as hdul:
        header = hdul[0].header
        _check_not_other_survey(path, header, "apStar")
        if len(hdul) < 4:
            raise ValueError(
                f"{path} is not an APOGEE apStar file: it has {len(hdul)} HDU(s); expected flux, "
                "uncertainty and bitmask images in HDUs 1-3"
            )
        flux = _image(hdul, 1, path, "apStar", "flux")
        err = _image(hdul, 2, path, "apStar", "uncertainty")
        mask = _image(hdul, 3, path, "apStar", "bitmask")
        if mask.dtype.kind not in "iu":
            raise ValueError(
                f"{path}: HDU 3 holds {mask.dtype} values, not an integer bitmask; this looks "
                "like an aspcapStar file (use read_aspcapstar)"
            )
        if not (flux.shape == err.shape == mask.shape):
            raise ValueError(
                f"{path}: flux, uncertainty and bitmask HDUs differ in shape: "
                f"{flux.shape}, {err.shape}, {mask.shape}"
            )
        _check_wavelength_keywords(path, hdul[1].header, "apStar")
        n_visits = _header_value(header, "NVISITS")
        n_visits = int(n_visits) if n_visits is not None else None
        if mask.dtype.kind == "i" and mask.dtype.itemsize < 4:
            mask = mask.view(mask.dtype.str.replace("i", "u"))  # bit 15 stays bit 15
        snr = _header_value(header, "SNR")
        telescope = _header_value(header, "TELESCOP")
        if telescope is None:  # DR19 (apred 1.x) headers lack it: apStar-1.3-apo25m-<obj>
            match = _DR19_APSTAR_NAME.match(path.name)
            telescope = match.group("telescope") if match else None
        return ApogeeSpectrum(
            flux=_native(_select_row(flux, visit, n_visits, path), np.float32),
            flux_err=_native(_select_row(err, visit, n_visits, path), np.float32),
            bitmask=_native(_select_row(mask, visit, n_visits, path), np.int32),
            apogee_id=_apogee_id(path, header, None, "apStar"),
            telescope=telescope,
            field=_header_value(header, "FIELD"),
            snr=float(snr) if snr is not None else float("nan"),
            n_visits=n_visits,
            kind="apStar",
            path=path,
            header=header.copy(),
        )


@_names_the_file("aspcapStar")
def read_aspcapstar(path: PathLike) -> ApogeeSpectrum:
    """Read an APOGEE aspcapStar file (ASPCAP's normalised spectrum of one star).

    Parameters
    ----------
    path : str or path-like
        An ``aspcapStar-*.fits`` file: HDU 1 normalised flux, 2 uncertainty, 3
        best-fitting model on the 8575-pixel apStar grid; HDU 4 the ASPCAP table.

    Returns
    -------
    ApogeeSpectrum
        Dimensionless ``flux``, ``flux_err`` and ``model``; ``bitmask`` is None.
        ``telescope`` comes from the header or the ASPCAP table (None if neither has it).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is not FITS, is damaged or truncated, comes from another survey, lacks
        HDUs 1-3, has the wrong pixel count, or is an apStar file. The message names the
        file.
    """
    path = Path(path)
    with _fits_open(path, "aspcapStar") as hdul:
        header = hdul[0].header
        _check_not_other_survey(path, header, "aspcapStar")
        if len(hdul) < 4:
            raise ValueError(
                f"{path} is not an APOGEE aspcapStar file: it has {len(hdul)} HDU(s); expected "
                "flux, uncertainty and model images in HDUs 1-3 and the ASPCAP table in HDU 4"
            )
        flux = _image(hdul, 1, path, "aspcapStar", "flux")
        err = _image(hdul, 2, path, "aspcapStar", "uncertainty")
        model = _image(hdul, 3, path, "aspcapStar", "model")
        if model.dtype.kind in "iu":
            raise ValueError(
                f"{path}: HDU 3 is an integer array (a bitmask), not a model spectrum; this looks "
                "like an apStar file (use read_apstar)"
            )
        if flux.ndim != 1 or flux.shape != err.shape:
            raise ValueError(
                f"{path}: an aspcapStar file holds one spectrum; found flux {flux.shape}, "
                f"uncertainty {err.shape}"
            )
        _check_wavelength_keywords(path, hdul[1].header, "aspcapStar")
        table = hdul[4].data if len(hdul) > 4 and hdul[4].is_image is False else None
        telescope = _header_value(header, "TELESCOP")
        if telescope is None and table is not None and "TELESCOPE" in table.columns.names:
            value = table["TELESCOPE"][0]
            telescope = (
                value.decode() if isinstance(value, bytes) else str(value)
            ).strip() or None
        n_visits = _header_value(header, "NVISITS")
        snr = _header_value(header, "SNR")
        return ApogeeSpectrum(
            flux=_native(flux, np.float32),
            flux_err=_native(err, np.float32),
            bitmask=None,
            apogee_id=_apogee_id(path, header, table, "aspcapStar"),
            telescope=telescope,
            field=_header_value(header, "FIELD"),
            snr=float(snr) if snr is not None else float("nan"),
            n_visits=int(n_visits) if n_visits is not None else None,
            kind="aspcapStar",
            path=path,
            header=header.copy(),
            model=_native(model, np.float32),
        )


@_names_the_file("APOGEE spectrum")
def _detect_kind(path: Path) -> str:
    """The file's kind from its content: HDU 3 an integer image (apStar), a float image
    (aspcapStar), or an SDSS-V Astra table file (mwmStar / mwmVisit)."""
    from skages.io.sdss5 import mwm_kind

    with _fits_open(path, "APOGEE spectrum") as hdul:
        kind = mwm_kind(hdul)
        if kind is not None:
            return kind
        if len(hdul) > 3 and hdul[3].is_image and hdul[3].data is not None:
            return "apStar" if hdul[3].data.dtype.kind in "iu" else "aspcapStar"
    raise ValueError(
        f"{path} is not an apStar, aspcapStar, mwmStar or mwmVisit file: it has no image in "
        "HDU 3 and no SDSS-V (V_ASTRA, SDSS_ID) primary header"
    )


#: Kinds of spectrum file read_apogee_spectra reads.
SPECTRUM_KINDS = ("apStar", "aspcapStar", "mwmStar", "mwmVisit")
#: Kinds whose files carry an APOGEE_PIXMASK (the others are ASPCAP-normalised).
_KINDS_WITH_PIXMASK = ("apStar", "mwmStar", "mwmVisit")


def _read_one(path: Path, kind: str, visit: Any) -> ApogeeSpectrum:
    from skages.io.sdss5 import read_mwmstar, read_mwmvisit

    if kind == "apStar":
        return read_apstar(path, visit=visit)
    if kind == "aspcapStar":
        return read_aspcapstar(path)
    if kind == "mwmStar":
        return read_mwmstar(path)
    return read_mwmvisit(path, visit=visit if isinstance(visit, Integral) else 0)


def read_apogee_spectra(
    paths: Iterable[PathLike],
    *,
    kind: Literal["auto", "apStar", "aspcapStar", "mwmStar", "mwmVisit"] = "auto",
    visit: Literal["combined", "global"] | int = "combined",
    on_error: Literal["raise", "nan"] = "raise",
    verbose: bool = False,
) -> Bunch:
    """Read many apStar / aspcapStar / SDSS-V mwmStar files into stacked arrays.

    Parameters
    ----------
    paths : iterable of str or path-like
        Files to read, in the order of the output rows.
    kind : {"auto", "apStar", "aspcapStar", "mwmStar", "mwmVisit"}, default="auto"
        File type; ``"auto"`` decides per file from its content (HDU 3 integer image =
        apStar, float image = aspcapStar, ``V_ASTRA`` / ``SDSS_ID`` primary header =
        mwmStar or mwmVisit).
    visit : {"combined", "global"} or int, default="combined"
        apStar row to read (see :func:`read_apstar`); for mwmVisit files an int picks
        the visit row (else the first).
    on_error : {"raise", "nan"}, default="raise"
        An unreadable or invalid file raises, or (``"nan"``) gives a row of NaN
        flux, an empty id and an entry in ``errors`` (logged as a warning).
    verbose : bool, default=False
        Show a progress bar on stderr.

    Returns
    -------
    Bunch
        ``flux``, ``flux_err`` float32 (n_files, 8575) in each file's unit;
        ``bitmask`` int32 (n_files, 8575), zero where the file has none
        (aspcapStar, failed files); ``continuum`` float32 (n_files, 8575), Astra's
        NMF continuum of mwmStar / mwmVisit files (NaN for the others); ``apogee_id``,
        ``telescope``, ``field``, ``sdss_id`` (object arrays of str, ``""`` if
        unknown), ``snr`` float (n_files,),
        ``kind`` (object array), ``paths`` (list of Path), ``errors`` (dict
        row -> message of the files that failed).
    """
    if on_error not in ("raise", "nan"):
        raise ValueError(f"on_error must be 'raise' or 'nan'; got {on_error!r}")
    if kind not in ("auto", *SPECTRUM_KINDS):
        raise ValueError(f"kind must be 'auto' or one of {SPECTRUM_KINDS}; got {kind!r}")
    from tqdm.auto import tqdm

    paths = [Path(p) for p in paths]
    n = len(paths)
    out = Bunch(
        flux=np.full((n, N_PIXELS_APSTAR), np.nan, dtype=np.float32),
        flux_err=np.full((n, N_PIXELS_APSTAR), np.nan, dtype=np.float32),
        bitmask=np.zeros((n, N_PIXELS_APSTAR), dtype=np.int32),
        continuum=np.full((n, N_PIXELS_APSTAR), np.nan, dtype=np.float32),
        apogee_id=np.full(n, "", dtype=object),
        telescope=np.full(n, "", dtype=object),
        field=np.full(n, "", dtype=object),
        sdss_id=np.full(n, "", dtype=object),
        snr=np.full(n, np.nan),
        kind=np.full(n, "", dtype=object),
        paths=paths,
        errors={},
    )
    for i, path in enumerate(tqdm(paths, disable=not verbose, desc="spectra", unit="file")):
        try:
            this_kind = _detect_kind(path) if kind == "auto" else kind
            spec = _read_one(path, this_kind, visit)
        except Exception as exc:  # the readers name the file; anything else, too
            if on_error == "raise":
                raise
            out.errors[i] = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
            logger.warning("could not read %s: %s", path, exc)
            continue
        out.flux[i] = spec.flux
        out.flux_err[i] = spec.flux_err
        if spec.bitmask is not None:
            out.bitmask[i] = spec.bitmask
        if spec.continuum is not None:
            out.continuum[i] = spec.continuum
        out.sdss_id[i] = "" if spec.sdss_id is None else str(spec.sdss_id)
        out.apogee_id[i] = spec.apogee_id
        out.telescope[i] = spec.telescope or ""
        out.field[i] = spec.field or ""
        out.snr[i] = spec.snr
        out.kind[i] = spec.kind
    if out.errors:
        logger.warning("%d of %d spectrum files could not be read", len(out.errors), n)
    return out


# --------------------------------------------------------------------------------------
# Folders of spectra, DR17 normalisation: the one reading path of ``skages predict``'s
# folder input and of ``skages spectra``
# --------------------------------------------------------------------------------------

_ID_IN_NAME = re.compile(r"(?:^|-)((?:2M|AP)\d{8}[+-]\d{7})(?:-\d{5})?$")
#: DR19 (apred 1.x) apStar names: apStar-{apred}-{telescope}-{obj}[-{mjd}].fits
_DR19_APSTAR_NAME = re.compile(r"^apStar-(?P<apred>[^-]+)-(?P<telescope>apo25m|lco25m|apo1m)-")
_TELESCOPES = ("apo25m", "lco25m", "apo1m")


def _scan_mwm(path: Path) -> tuple[str, str, str] | None:
    """(kind, SDSS_ID, APOGEE id) of an SDSS-V Astra spectrum file; None if it is none."""
    from astropy.io import fits

    from skages.io.sdss5 import mwm_kind

    with fits.open(path, memmap=True) as hdul:
        kind = mwm_kind(hdul)
        if kind is None:
            return None
        header = hdul[0].header
        sdss_id = str(header.get("SDSS_ID") or "").strip()
        apogee_id = str(header.get("APOGEEID") or header.get("APOGEE_ID") or "").strip()
    return kind, sdss_id, apogee_id


def _sdss_id_of(path: Path) -> str:
    """The SDSS_ID of an SDSS-V Astra spectrum file; "" for any other (or unreadable) file."""
    try:
        found = _scan_mwm(path)
    except Exception:  # unreadable: reading it later flags the row
        return ""
    return found[1] if found else ""


def _scan_spectrum_folder(folder: Path) -> pd.DataFrame:
    """Spectrum files under ``folder`` with their APOGEE_ID, telescope, field and SDSS_ID.

    DR17 apStar / aspcapStar and DR19 apStar files are found by name (id, telescope and
    field from the name and the ``<telescope>/<field>/`` folders, else from the header);
    SDSS-V mwmStar files by their content (a ``V_ASTRA`` / ``SDSS_ID`` primary header),
    whatever their name. mwmVisit files (single visits) are left out: the coadd is read.
    """
    rows = []
    n_visit_files = 0
    for path in sorted(folder.rglob("*.fits")) + sorted(folder.rglob("*.fits.gz")):
        name = path.name.removesuffix(".gz").removesuffix(".fits")
        kind = (
            "aspcapStar"
            if name.startswith("aspcapStar")
            else "apStar"
            if name.startswith("apStar")
            else None
        )
        sdss_id = ""
        if kind is None:  # perhaps an SDSS-V Astra file: its content says
            try:
                found = _scan_mwm(path)
            except Exception as exc:  # any damage: astropy raises many kinds
                if name.startswith("mwmStar"):
                    logger.warning("cannot read the header of %s (%s); file skipped", path, exc)
                continue
            if found is None:
                continue
            kind, sdss_id, apogee_id = found
            if kind == "mwmVisit":
                n_visit_files += 1
                continue
            rows.append((apogee_id, "", "", sdss_id, kind, str(path)))
            continue
        match = _ID_IN_NAME.search(name)
        apogee_id, telescope, field = (match.group(1) if match else ""), "", ""
        dr19 = _DR19_APSTAR_NAME.match(name) if kind == "apStar" else None
        parts = path.relative_to(folder).parts
        if dr19 is not None:  # DR19 folders are <telescope>/<healpix group>/<healpix>/
            telescope = dr19.group("telescope")
        elif len(parts) >= 3 and parts[-3] in _TELESCOPES:
            telescope, field = parts[-3], parts[-2]
        if not apogee_id or not telescope:
            try:
                from astropy.io import fits

                header = fits.getheader(path)
                apogee_id = apogee_id or str(header.get("APOGEE_ID") or header.get("OBJID") or "")
                telescope = telescope or str(header.get("TELESCOP") or "")
                field = field or str(header.get("FIELD") or "")
            except Exception as exc:  # any damage: astropy raises many kinds
                if not apogee_id:  # no star to attach it to
                    logger.warning("cannot read the header of %s (%s); file skipped", path, exc)
                    continue
                # the star is known from the name: reading the file later flags the row
        row = (apogee_id.strip(), telescope.strip(), field.strip(), sdss_id, kind, str(path))
        rows.append(row)
    if n_visit_files:
        logger.info("%s: %d mwmVisit file(s) left out (the mwmStar coadds are read)", folder,
                    n_visit_files)  # fmt: skip
    frame = pd.DataFrame(
        rows, columns=["APOGEE_ID", "TELESCOPE", "FIELD", "SDSS_ID", "kind", "path"]
    )
    # an apStar and an aspcapStar file of the same star and field are one observation:
    # keep the apStar (raw flux, normalised here as for DR17)
    frame["rank"] = (frame["kind"] != "apStar").astype(int)
    frame = frame.sort_values(["SDSS_ID", "APOGEE_ID", "FIELD", "rank", "path"], kind="stable")
    n_files = len(frame)
    frame = frame.drop_duplicates(["SDSS_ID", "APOGEE_ID", "FIELD"], keep="first")
    if len(frame) < n_files:
        logger.info("%s: %d duplicate spectrum files ignored", folder, n_files - len(frame))
    return frame.drop(columns="rank").reset_index(drop=True)


def _keys(frame: pd.DataFrame, cols: Sequence[str]) -> tuple[pd.Series, np.ndarray]:
    """Joined key strings of some columns, and whether every part is known."""
    parts = [frame[c].astype(str).replace("-1", "") for c in cols]  # -1: an unknown id
    known = np.logical_and.reduce([(p != "").to_numpy() for p in parts])
    key = parts[0].str.cat(parts[1:], sep="\x00") if len(parts) > 1 else parts[0]
    return key.reset_index(drop=True), known


def _match_rows(catalogue: pd.DataFrame, spectra: pd.DataFrame, what: str) -> np.ndarray:
    """For each catalogue row, the row of ``spectra`` of the same star (-1: none).

    Where both sides have an ``SDSS_ID`` column (SDSS-V), stars are first matched on
    SDSS_ID and telescope, then on SDSS_ID alone where the spectra hold one observation
    of that star. Then on APOGEE_ID, telescope and field where both sides know them,
    then on APOGEE_ID and telescope, then on APOGEE_ID alone where the spectra hold
    only one observation of that star; an APOGEE_ID match whose two sides both know
    an SDSS_ID is kept only if those agree.
    """
    from skages._labels import warn_ambiguous_rows, warn_duplicate_rows

    out = np.full(len(catalogue), -1, dtype=np.int64)
    steps = [["APOGEE_ID", "TELESCOPE", "FIELD"], ["APOGEE_ID", "TELESCOPE"], ["APOGEE_ID"]]
    sdss = "SDSS_ID" in catalogue and "SDSS_ID" in spectra
    if sdss:
        steps = [["SDSS_ID", "TELESCOPE"], ["SDSS_ID"], *steps]
        cat_sid, cat_sid_known = _keys(catalogue, ["SDSS_ID"])
        spec_sid, spec_sid_known = _keys(spectra, ["SDSS_ID"])
    for cols in steps:
        spec_key, spec_known = _keys(spectra, cols)
        if len(cols) == 3:  # the same star, telescope and field twice: name them
            warn_duplicate_rows(spec_key, spec_known, what)
        cat_key, cat_known = _keys(catalogue, cols)
        if len(cols) == 1:  # a star observed more than once cannot be told apart by id
            spec_known &= ~spec_key.duplicated(keep=False).to_numpy()
        todo = np.flatnonzero((out < 0) & cat_known)
        if todo.size == 0 or not spec_known.any():
            continue
        positions = pd.Series(np.flatnonzero(spec_known), index=spec_key[spec_known].to_numpy())
        positions = positions[~positions.index.duplicated(keep="first")]
        found = positions.index.get_indexer(cat_key.to_numpy()[todo])
        hit = found >= 0
        if sdss and cols[0] == "APOGEE_ID":  # two known, different SDSS_IDs: not one star
            rows = positions.to_numpy()[np.maximum(found, 0)]
            both = cat_sid_known[todo] & spec_sid_known[rows]
            hit &= ~both | (cat_sid.to_numpy()[todo] == spec_sid.to_numpy()[rows])
        out[todo[hit]] = positions.to_numpy()[found[hit]]
    # rows of a star with several spectra that nothing above could tell apart: name them
    cat_id, cat_id_known = _keys(catalogue, ["APOGEE_ID"])
    spec_id, spec_id_known = _keys(spectra, ["APOGEE_ID"])
    several = spec_id[spec_id_known & spec_id.duplicated(keep=False).to_numpy()]
    left = (out < 0) & cat_id_known & cat_id.isin(set(several)).to_numpy()
    warn_ambiguous_rows(cat_id[left], what)
    logger.info(
        "%s: %d of %d catalogue rows have a spectrum", what, int((out >= 0).sum()), len(out)
    )
    return out


def read_normalized_spectra(
    paths: Sequence[PathLike],
    *,
    bad_pixel_fill: float = np.nan,
    continuum: Literal["dr17", "astra_nmf"] = "dr17",
) -> Bunch:
    """Read apStar / aspcapStar / mwmStar files and continuum-normalise them as for DR17.

    Each file is read with :func:`read_apogee_spectra` (``on_error="nan"``: a file that
    cannot be read becomes a NaN row, named in the log and in ``errors``); flux <= 0 is
    masked; the spectra are normalised with :func:`skages.spectra.continuum_normalize`
    (apStar and SDSS-V mwmStar / mwmVisit with their PIXMASK, aspcapStar without) and
    the gaps removed. This is the path both ``skages predict`` (a folder of files) and
    :func:`spectra_to_survey` read spectra through.

    Parameters
    ----------
    paths : sequence of path-like
        Files, in the order of the output rows.
    bad_pixel_fill : float, default=NaN
        Value of pixels whose PIXMASK marks them bad, in flux and error (NaN: masked).
    continuum : {"dr17", "astra_nmf"}, default="dr17"
        ``"dr17"``: the paper's normalisation, for every kind. ``"astra_nmf"``: mwmStar /
        mwmVisit spectra are divided by Astra's NMF continuum instead (PIXMASK-bad
        pixels set to ``bad_pixel_fill``); not what the published model was trained on,
        kept for comparisons. Other kinds still get the DR17 normalisation.

    Returns
    -------
    Bunch
        ``spectra``, ``spectra_err`` float32 (n, 7514), continuum-normalised
        (dimensionless; NaN where masked or unreadable); ``bitmask`` int32 (n, 7514),
        APOGEE_PIXMASK without the gaps (0 for aspcapStar and failed files);
        ``apogee_id``, ``telescope``, ``field``, ``kind`` (object arrays), ``snr``,
        ``paths`` and ``errors`` (dict row -> message) from :func:`read_apogee_spectra`.
    """
    from skages.spectra import bad_pixel_mask, continuum_normalize, remove_gaps

    if continuum not in ("dr17", "astra_nmf"):
        raise ValueError(f"continuum must be 'dr17' or 'astra_nmf'; got {continuum!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy FITS header chatter
        data = read_apogee_spectra(list(paths), on_error="nan")
    n = len(data.paths)
    flux = data.flux.copy()
    with np.errstate(invalid="ignore"):
        flux[flux <= 0] = np.nan  # ASPCAP's zeros and negative flux are not data
    bitmask = remove_gaps(data.bitmask)
    width = bitmask.shape[-1]
    spectra = np.full((n, width), np.nan, dtype=np.float32)
    spectra_err = np.full((n, width), np.nan, dtype=np.float32)
    is_ap = np.isin(data.kind.astype(str), _KINDS_WITH_PIXMASK)
    nmf = np.zeros(n, dtype=bool)
    if continuum == "astra_nmf":
        nmf = np.isin(data.kind.astype(str), ("mwmStar", "mwmVisit"))
        with np.errstate(invalid="ignore", divide="ignore"):
            cont = np.where(data.continuum[nmf] > 0, data.continuum[nmf], np.nan)
            norm = flux[nmf] / cont
            err = data.flux_err[nmf] / cont
        bad = bad_pixel_mask(data.bitmask[nmf])
        norm[bad] = bad_pixel_fill
        err[bad] = bad_pixel_fill
        spectra[nmf] = remove_gaps(norm)
        spectra_err[nmf] = remove_gaps(err)
    for select, mask in ((is_ap & ~nmf, data.bitmask), (~is_ap, None)):
        if not select.any():
            continue
        norm, err = continuum_normalize(
            flux[select],
            data.flux_err[select],
            None if mask is None else mask[select],
            fill_value=bad_pixel_fill,
            on_failure="nan",
        )
        spectra[select] = norm
        spectra_err[select] = err
    skip = ("flux", "flux_err", "bitmask", "continuum")
    out = Bunch(**{k: v for k, v in data.items() if k not in skip})
    out.update(spectra=spectra, spectra_err=spectra_err, bitmask=bitmask.astype(np.int32))
    return out


#: Bits of the ``spectrum_flag`` label of a spectra survey (0: nothing to report).
SPECTRUM_FILE_FAILED = 1
#: the allStar row has no spectrum file in the folder (NaN spectrum)
SPECTRUM_NO_FILE = 2
#: the file was read but its continuum could not be fitted (NaN spectrum)
SPECTRUM_NOT_NORMALISED = 4


def _spectra_chunk(paths: Sequence[str], bad_pixel_fill: float) -> Bunch:
    """Read and normalise some files; failures are returned (the caller logs them)."""
    have = [i for i, p in enumerate(paths) if p]
    logger.disabled = True  # in a worker process its records would reach no handler
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unfitted continua are flagged per row
            data = read_normalized_spectra([paths[i] for i in have], bad_pixel_fill=bad_pixel_fill)
    finally:
        logger.disabled = False
    n = len(paths)
    width = data.spectra.shape[1] if have else 7514
    out = Bunch(
        spectra=np.full((n, width), np.nan, np.float32),
        spectra_err=np.full((n, width), np.nan, np.float32),
        bitmask=np.zeros((n, width), np.int32),
        apogee_id=np.full(n, "", dtype=object),
        telescope=np.full(n, "", dtype=object),
        field=np.full(n, "", dtype=object),
        sdss_id=np.full(n, "", dtype=object),
        snr=np.full(n, np.nan),
        flag=np.where([bool(p) for p in paths], 0, SPECTRUM_NO_FILE).astype(np.int64),
        errors={},
    )
    if have:
        idx = np.asarray(have)
        names = ("spectra", "spectra_err", "bitmask", "apogee_id", "telescope", "field", "sdss_id")
        for name in names:
            out[name][idx] = data[name]
        out.snr[idx] = data.snr
        for i, message in data.errors.items():
            out.flag[idx[i]] |= SPECTRUM_FILE_FAILED
            out.errors[paths[idx[i]]] = message
        unfitted = np.isnan(data.spectra).all(axis=1) & ~np.isin(
            np.arange(len(have)), list(data.errors)
        )
        out.flag[idx[unfitted]] |= SPECTRUM_NOT_NORMALISED
    return out


def spectra_to_survey(
    spectra: PathLike | Sequence[PathLike],
    output: PathLike,
    *,
    allstar: PathLike | None = None,
    bad_pixel_fill: float = np.nan,
    n_jobs: int | None = None,
    chunk_size: int = 256,
    resume: bool = True,
    overwrite: bool = False,
    verbose: bool = False,
) -> Bunch:
    """A folder of APOGEE apStar / aspcapStar files -> an HDF5 spectra survey.

    Spectra are read and normalised as for DR17 by :func:`read_normalized_spectra` (the
    reading path of ``skages predict``), in parallel, and written ``chunk_size`` stars
    at a time with :class:`~skages.io.SurveyWriter`: arrays ``spectra``,
    ``spectra_err`` (continuum-normalised, NaN = masked) and ``bitmask``; a killed run
    resumes from its last written chunk.

    With ``allstar``, rows follow the allStar file: each allStar row that has a file
    in the folder (matched on APOGEE_ID, telescope and field, as ``skages predict``
    does), in allStar order, with the allStar labels (``apogee_id``, ``telescope``,
    ``field``, ``teff``, ``logg``, ``fe_h``, ``alpha_m`` and their errors, ``snrev``,
    ``starflag``, ``aspcapflag``) and the file's header ``snr``. Without it, rows
    follow the sorted file names, with the labels of the headers (``apogee_id``,
    ``telescope``, ``field``, ``snr``). A ``spectrum_flag`` label says what went wrong
    (1: unreadable file, named in the log; 4: continuum not fitted); such rows are NaN.

    Parameters
    ----------
    spectra : folder or sequence of paths
        A DR17-layout folder (``<telescope>/<field>/apStar-*.fits``, any depth), a DR19
        folder (apStar-1.x, mwmStar files), or files.
    output : path-like
        The survey file (``*.h5``).
    allstar : path-like, optional
        Label table: an APOGEE DR17 allStar, or the SDSS-V DR19 astraAllStarASPCAP or
        allStar-1.3 (:func:`skages.io.read_labels`; rows then also matched on
        ``sdss_id``, and the labels carry ``sdss_id`` and ``gaia_dr3_source_id``).
    bad_pixel_fill : float, default=NaN
        Value of the pixels PIXMASK marks bad.
    n_jobs : int, optional
        Worker processes (joblib); None means 1. The output does not depend on it.
    chunk_size : int, default=256
        Stars per written chunk.
    resume : bool, default=True
        Continue ``<output>.partial`` of an interrupted run with the same input.
    overwrite : bool, default=False
        Replace an existing complete ``output``.
    verbose : bool, default=False
        Progress bar (tqdm, stderr).

    Returns
    -------
    Bunch
        ``path``, ``n_stars``, ``n_failed`` (NaN rows written in this run),
        ``errors`` (dict file -> message), ``n_resumed``, ``n_allstar_without_file``,
        ``n_files_not_in_allstar``.
    """
    import h5py
    from joblib import delayed
    from tqdm.auto import tqdm

    from skages._workers import _parallel
    from skages.io.survey import SurveyWriter

    output = Path(output)
    if isinstance(spectra, (str, os.PathLike)) and Path(spectra).is_dir():
        files = _scan_spectrum_folder(Path(spectra))
        if files.empty:
            raise ValueError(f"{spectra} holds no apStar*.fits, aspcapStar*.fits or mwmStar files")
    else:
        items = [spectra] if isinstance(spectra, (str, os.PathLike)) else list(spectra)
        for item in items:
            if not Path(item).is_file():
                raise FileNotFoundError(f"no such spectrum file or folder: {item}")
        files = pd.DataFrame(
            {
                "APOGEE_ID": "",
                "TELESCOPE": "",
                "FIELD": "",
                "SDSS_ID": [_sdss_id_of(Path(p)) for p in items],
                "path": [str(p) for p in items],
            }
        )
    n_not_in_allstar = n_no_file = 0
    if allstar is not None:
        from skages.io.sdss5 import read_labels

        table = read_labels(allstar)
        labels = table.to_pandas()
        for c in ("apogee_id", "telescope", "field"):
            labels[c] = [str(v).strip() for v in table[c]]
        id_cols = [c for c in ("apogee_id", "telescope", "field", "sdss_id") if c in labels]
        keys = pd.DataFrame({c.upper(): [str(v).strip() for v in table[c]] for c in id_cols})
        match = _match_rows(keys, files, str(spectra))
        n_no_file = int((match < 0).sum())
        n_not_in_allstar = int(len(files) - np.unique(match[match >= 0]).size)
        keep = np.flatnonzero(match >= 0)
        labels = labels.iloc[keep].reset_index(drop=True)
        paths = files["path"].to_numpy()[match[keep]].astype(str)
        if n_no_file:
            logger.info("%s: %d allStar rows have no spectrum file", allstar, n_no_file)
        if n_not_in_allstar:
            logger.warning(
                "%s: %d spectrum file(s) match no allStar row and are left out",
                spectra,
                n_not_in_allstar,
            )
        if keep.size == 0:
            raise ValueError(f"no spectrum file in {spectra} matches a row of {allstar}")
    else:
        labels = None
        paths = files["path"].to_numpy().astype(str)
    ids = (
        labels["apogee_id"].to_numpy().astype(str)
        if labels is not None
        else np.array([Path(p).name for p in paths])
    )
    key_name = "apogee_id" if labels is not None else "file"
    partial = output.with_name(output.name + ".partial")
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} already exists; pass overwrite=True to replace it")
    if resume and partial.exists():
        try:
            with h5py.File(partial, "r") as h5:
                n = int(h5.attrs.get("n_stars", 0))
                stored = h5[f"labels/{key_name}"][:n].astype(str) if n else np.zeros(0, str)
        except (OSError, KeyError) as exc:
            raise ValueError(
                f"cannot resume {partial} ({exc}); delete it and start again"
            ) from exc
        if stored.size > ids.size or not np.array_equal(stored, ids[: stored.size]):
            raise ValueError(
                f"cannot resume {partial}: its {stored.size} stars are not the first stars of "
                "this input (different files or allStar?); delete it or give the same input"
            )
    units = {"snr": ""}
    if labels is not None:
        units.update({c: str(table[c].unit) for c in table.colnames if table[c].unit is not None})
    writer = SurveyWriter(
        output,
        units=units,
        metadata={
            "spectra": str(spectra)[:500],
            "allstar": None if allstar is None else str(allstar),
            "normalisation": "skages.spectra.continuum_normalize (APOGEE DR17)",
            "n_stars_planned": int(paths.size),
        },
        overwrite=overwrite,
        resume=resume,
    )
    done = writer.n_stars
    step = max(1, min(32, chunk_size))
    tasks = [(a, min(a + step, paths.size)) for a in range(done, paths.size, step)]
    errors: dict[str, str] = {}
    n_failed = 0
    pending: list[tuple[int, Bunch]] = []

    def flush() -> None:
        nonlocal n_failed
        if not pending:
            return
        a = pending[0][0]
        parts = [b for _, b in pending]
        b = a + sum(len(p.flag) for p in parts)
        cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k != "errors"}
        if labels is not None:
            rows = labels.iloc[a:b].reset_index(drop=True).copy()
            rows["snr"] = cat["snr"]
        else:  # the header's ids, else those of the file name and folder
            found = files.iloc[a:b]
            rows = pd.DataFrame({"file": ids[a:b]})
            for col in ("apogee_id", "telescope", "field", "sdss_id"):
                read = cat[col].astype(str)
                value = np.where(read != "", read, found[col.upper()].to_numpy(str))
                if col != "sdss_id" or (files["SDSS_ID"] != "").any():  # SDSS-V files only
                    rows[col] = value
            rows["snr"] = cat["snr"]
        rows["spectrum_flag"] = cat["flag"]
        writer.append(
            labels=rows,
            spectra=cat["spectra"],
            spectra_err=cat["spectra_err"],
            bitmask=cat["bitmask"],
        )
        n_failed += int((cat["flag"] != 0).sum())
        pending.clear()

    # absolute paths: reused worker processes keep the working folder they started in
    absolute = [os.path.abspath(p) for p in paths]
    bar = tqdm(total=paths.size, initial=done, disable=not verbose, desc="spectra", unit="star")
    try:
        results = _parallel(n_jobs, return_as="generator")(
            delayed(_spectra_chunk)(absolute[a:b], bad_pixel_fill) for a, b in tasks
        )
        for (a, _), part in zip(tasks, results, strict=True):
            errors.update(part.errors)
            for file, message in part.errors.items():
                logger.warning("could not read %s: %s", file, message)
            pending.append((a, part))
            if sum(len(p.flag) for _, p in pending) >= chunk_size:
                flush()
            bar.update(len(part.flag))
        flush()
    except BaseException:
        bar.close()
        writer.abort()
        raise
    bar.close()
    path = writer.close()
    if errors:
        logger.warning("%s: %d spectrum file(s) could not be read (NaN rows)", output, len(errors))
    return Bunch(
        path=path,
        n_stars=int(paths.size),
        n_failed=n_failed,
        errors=errors,
        n_resumed=done,
        n_allstar_without_file=n_no_file,
        n_files_not_in_allstar=n_not_in_allstar,
    )


# --------------------------------------------------------------------------------------
# Catalogues: allStar, APOKASC-2
# --------------------------------------------------------------------------------------
