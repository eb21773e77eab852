"""Writing and reading catalogues: FITS (with provenance cards), Parquet, CSV; read-back checks."""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from skages._version import __version__
from skages.catalogue._columns import (
    _ID_COLUMNS,
    CATALOGUE_FORMAT_VERSION,
    SIMULATED_FIELD,
    SIMULATED_TELESCOPE,
    _content_sha256,
    catalogue_columns,
)
from skages.catalogue._cuts import _FLAG_HELP, CatalogueFlag
from skages.io.sdss5 import SOURCE_ID_COLUMNS

_FORMATS = {
    ".fits": "fits",
    ".fit": "fits",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def _output_format(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in ("fits", "csv", "parquet"):
            raise ValueError(f"format must be 'fits', 'csv' or 'parquet'; got {fmt!r}")
        return fmt
    try:
        return _FORMATS[path.suffix.lower()]
    except KeyError:
        raise ValueError(
            f"cannot tell the catalogue format of {path} from its extension; use .fits, "
            ".csv or .parquet, or pass format="
        ) from None


_FITS_KEYS = {
    "skages_version": ("SKAGESV", "skages version that wrote this catalogue"),
    "catalogue_format": ("CATFMT", "skages catalogue format version"),
    "date": ("DATE", "UTC date of writing"),
    "model": ("MODEL", "age model file"),
    "model_sha256": ("MODELSHA", "SHA-256 of the model file"),
    "model_created": ("MODELDAT", "UTC creation date of the model"),
    "model_skages_version": ("MODELVER", "skages version that trained the model"),
    "spectra": ("SPECTRA", "spectra read"),
    "labels": ("LABELS", "label table read (allStar)"),
    "chunk_size": ("CHUNKSZ", "stars per chunk (forest MC draws depend on it)"),
    "n_rows": ("NROWS", "rows"),
    "n_latent": ("NLATENT", "rows with latent coordinates"),
    "n_ages": ("NAGES", "rows with ages"),
    "latent_logg_min": ("LGLATMIN", "latent: log g > this (dex)"),
    "latent_logg_max": ("LGLATMAX", "latent: log g < this (dex)"),
    "latent_snr_min": ("SNRLAT", "latent: SNREV > this"),
    "age_logg_min": ("LGAGEMIN", "ages: log g >= this (dex)"),
    "min_finite_fraction": ("MINFINIT", "usable spectrum: finite pixel fraction >= this"),
    "content_sha256": ("CATSHA", "SHA-256 of the table content (skages)"),
    "simulated": ("SIMULATD", "rows are simulated stars, not APOGEE data"),
    "training_rows": ("INTRAIN", "IN_TRAINING = 1 marks"),
}


#: The FITS COMMENT that a catalogue of a simulated survey carries.
_SIMULATED_NOTE = (
    "These rows are simulated stars (skages.datasets), not APOGEE observations. "
    f"TELESCOPE is {SIMULATED_TELESCOPE!r}, as DR17 lists APOKASC's Kepler-field stars; "
    f"FIELD is {SIMULATED_FIELD!r}, since the simulator gives no Kepler field; STARFLAG "
    "and ASPCAPFLAG are 0, as the simulator flags no star."
)


def _provenance(model_info, describe, cuts, chunk_size, counts) -> dict[str, Any]:
    prov = {
        "skages_version": __version__,
        "catalogue_format": CATALOGUE_FORMAT_VERSION,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": model_info["model"],
        "model_sha256": model_info["model_sha256"],
        "model_created": model_info.get("model_created", ""),
        "model_skages_version": model_info.get("model_skages_version", ""),
        "spectra": describe["spectra"],
        "labels": describe.get("labels", ""),
        "chunk_size": int(chunk_size),
        **counts,
    }
    if describe.get("simulated"):
        prov["simulated"] = True
    for key, value in cuts.to_dict().items():
        prov[key] = "none" if value is None else value
    for bit in CatalogueFlag:
        prov[f"flag_{bit.name.lower()}"] = f"{int(bit)}: {_FLAG_HELP[bit]}"
    return prov


def _table(
    columns: Mapping[str, np.ndarray], latent_dim: int, provenance: Mapping, ages: bool = True
):
    from astropy.table import Table

    spec = catalogue_columns(latent_dim, ages=ages)
    at = [n for n, _, _ in spec].index("FIELD") + 1
    spec[at:at] = [(n, None, SOURCE_ID_COLUMNS[n]) for n in SOURCE_ID_COLUMNS if n in columns]
    table = Table(
        [columns[name] for name, _, _ in spec], names=[n for n, _, _ in spec], copy=False
    )
    for name, unit, description in spec:
        if unit is not None:
            table[name].unit = unit
        table[name].description = description
    table.meta.update(provenance)
    return table


def _write_fits(table, path: Path) -> None:
    from astropy.io import fits

    plain = table.copy(copy_data=False)
    for name in plain.colnames:
        unit = plain[name].unit
        if unit is not None and "dex" in str(unit):  # FITS has no dex: unit goes in TCOMM
            plain[name].unit = None
    plain.meta.clear()
    hdu = fits.table_to_hdu(plain)
    for i, name in enumerate(table.colnames, start=1):
        comment = table[name].description or ""
        unit = table[name].unit
        if unit is not None and "dex" in str(unit):
            comment = f"[{unit}] {comment}"
        hdu.header[f"TCOMM{i}"] = comment[:68]
    for key, value in table.meta.items():
        if key.startswith("flag_"):
            continue
        card, comment = _FITS_KEYS[key]
        hdu.header[card] = (value, comment)
    for i, bit in enumerate(CatalogueFlag):
        hdu.header[f"FLAG{i}"] = (bit.name, f"{int(bit)}: {_FLAG_HELP[bit]}"[:47])
    if table.meta.get("simulated"):
        hdu.header.add_comment(_SIMULATED_NOTE)
    for card in _unit_comments(table):
        hdu.header.add_comment(card)
    hdu.header["EXTNAME"] = "AGES" if "LogAge" in table.colnames else "LATENT"
    primary = fits.PrimaryHDU()
    primary.header["ORIGIN"] = f"skages {__version__}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)  # long strings: CONTINUE
        fits.HDUList([primary, hdu]).writeto(path, checksum=True)


def _unit_comments(table) -> list[str]:
    """astropy's serialised-column COMMENT cards, which carry the dex units.

    FITS has no dex, so ``LogAge`` (dex(Gyr)) and ``LogAge_Error`` (dex) can have no
    TUNIT that other readers understand (a TUNIT of ``dex(Gyr)`` even breaks astropy's
    reader). astropy writes such units, and the column descriptions, into COMMENT
    cards that ``Table.read`` turns back into units; the table's first zero rows
    written to memory give those cards (their content does not depend on the rows).
    """
    import io

    from astropy.io import fits
    from astropy.table import QTable

    empty = QTable(table[:0], copy=True)
    empty.meta.clear()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the unit dex could not be saved in FITS"
        empty.write(buffer, format="fits")
    buffer.seek(0)
    with fits.open(buffer) as hdul:
        header = hdul[1].header
        return [str(c) for c in header["COMMENT"]] if "COMMENT" in header else []


def _write(table, path: Path, fmt: str) -> None:
    if fmt == "fits":
        _write_fits(table, path)
    elif fmt == "parquet":
        table.write(path, format="parquet")
    else:
        frame = table.to_pandas()
        frame.to_csv(path, index=False, na_rep="NaN", float_format=None)


def _sidecar(table) -> dict[str, Any]:
    return {
        "columns": [
            {"name": n, "unit": str(table[n].unit or ""), "description": table[n].description}
            for n in table.colnames
        ],
        "meta": dict(table.meta),
    }


def read_catalogue(path: str | os.PathLike, format: str | None = None):
    """Read a catalogue written by :func:`predict_catalogue`, with its units.

    Parameters
    ----------
    path : path-like
        A ``.fits``, ``.csv`` or ``.parquet`` catalogue.
    format : {"fits", "csv", "parquet"}, optional
        Overrides the extension.

    Returns
    -------
    astropy.table.Table
        The catalogue; ``LogAge`` in dex(Gyr), ``LogAge_Error`` in dex, ``Age`` and
        ``Age_Error`` in Gyr; ``meta`` holds the provenance (lower-case keys).
    """
    import astropy.units as u
    from astropy.table import Table

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"catalogue not found: {path}")
    fmt = _output_format(path, format)
    if fmt == "fits":
        from astropy.io import fits

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with fits.open(path, checksum=True) as hdul:
                ext = "AGES" if "AGES" in hdul else "LATENT"
                if ext not in hdul:
                    raise ValueError(
                        f"{path} is not a skages catalogue (no AGES or LATENT extension)"
                    )
                header = hdul[ext].header
                table = Table(hdul[ext].data, copy=True)
        damaged = [str(w.message) for w in caught if "sum" in str(w.message).lower()]
        if damaged:
            raise OSError(f"{path} is damaged: {damaged[0]}")
        for key, (card, _) in _FITS_KEYS.items():
            if card in header:
                table.meta[key] = header[card]
        for i, bit in enumerate(CatalogueFlag):
            if f"FLAG{i}" in header:
                table.meta[f"flag_{bit.name.lower()}"] = f"{int(bit)}: {_FLAG_HELP[bit]}"
    elif fmt == "parquet":
        table = Table.read(path, format="parquet")
    else:
        sidecar = path.with_name(path.name + ".json")
        info = json.loads(sidecar.read_text()) if sidecar.is_file() else {"columns": []}
        strings = {c: str for c in (*_ID_COLUMNS,)}
        frame = pd.read_csv(
            path,
            dtype=strings,
            keep_default_na=False,
            na_values=["NaN"],
            float_precision="round_trip",
        )
        for c in _ID_COLUMNS:
            if c in frame:
                frame[c] = frame[c].fillna("")
        table = Table.from_pandas(frame)
        for col in info["columns"]:
            if col["name"] in table.colnames:
                table[col["name"]].description = col["description"]
        table.meta.update(info.get("meta", {}))
    latent_dim = sum(1 for n in table.colnames if re.fullmatch(r"z\d+", n))
    ages = "LogAge" in table.colnames
    for name, unit, description in catalogue_columns(latent_dim, ages=ages):
        if name not in table.colnames:
            raise ValueError(f"{path} is not a skages catalogue: no column {name!r}")
        if unit is not None:
            table[name].unit = u.Unit(unit)
        table[name].description = description
        if table[name].dtype.kind in "SO":
            table[name] = table[name].astype(str)
    return table


def _verify(path: Path, fmt: str, columns: Mapping[str, np.ndarray], checksum: str) -> None:
    """Read the written catalogue back; raise if rows or content differ."""
    table = read_catalogue(path, fmt)
    n = len(next(iter(columns.values())))
    if len(table) != n:
        raise OSError(f"{path}: wrote {n} rows but {len(table)} read back")
    got = {name: np.asarray(table[name]) for name in columns}
    if _content_sha256(got) != checksum:
        bad = [
            name for name in columns
            if _content_sha256({name: got[name]}) != _content_sha256({name: columns[name]})
        ]  # fmt: skip
        raise OSError(f"{path}: the columns {bad} read back differ from what was written")
