"""Bundled datasets load with the shapes and published facts of their sources."""

from __future__ import annotations

import pytest

from evalkit import EvalkitInputError, datasets

# Rows and columns as exported from metadat 1.2-0, nlme 3.1-162 and lme4 1.1-31.
SHAPES = {
    "raudenbush1985": (19, 10),
    "konstantopoulos2011": (56, 6),
    "bangertdrowns2004": (48, 16),
    "bcg": (13, 9),
    "kalaian1996": (67, 12),
    "hsb": (7185, 11),
    "penicillin": (144, 3),
    "cbpp": (56, 4),
}


@pytest.mark.parametrize(("name", "shape"), SHAPES.items())
def test_shapes(name: str, shape: tuple[int, int]) -> None:
    assert datasets.load(name).shape == shape
    assert datasets.citation(name)


def test_names_cover_the_bundle() -> None:
    assert datasets.names() == sorted(SHAPES)


def test_published_facts() -> None:
    hsb = datasets.load("hsb")
    assert hsb["school"].nunique() == 160  # Raudenbush & Bryk (2002): 160 schools
    assert hsb.groupby("school")["sector"].first().sum() == 70  # 70 Catholic schools
    konst = datasets.load("konstantopoulos2011")
    assert konst["district"].nunique() == 11  # 56 schools in 11 districts
    kalaian = datasets.load("kalaian1996")
    assert set(kalaian["outcome"]) == {"verbal", "math"}
    cbpp = datasets.load("cbpp")
    assert cbpp["herd"].nunique() == 15  # lme4 cbpp: 15 herds (export check below: sizes)
    assert cbpp["size"].sum() == 842


def test_unknown_dataset() -> None:
    with pytest.raises(EvalkitInputError, match="no bundled dataset 'nope'; available: "):
        datasets.load("nope")
