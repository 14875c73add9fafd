"""Random relabellings of the groups, as counts: the draws behind a permutation test's null
distribution (:mod:`biaslab.fairness.significance`).

Every statistic of the test is a function of each group's histogram of image codes
``(2 y + ŷ) * bins + score bin``. Units with the same histogram are interchangeable, so a
permutation only decides how many units of each type go to each group: a random contingency
table with fixed margins (units per group, units per type), drawn exactly as a chain of
hypergeometric draws, vectorised over the permutations (:func:`draw_table`), or, with many
types, by shuffling the labels of the units and counting each unit's codes directly.

Units relabelled whole (a single image, or a patient whose images are all in one group) are
sorted into strata of units that may trade places (:func:`whole_unit_strata`); each stratum is
drawn once per chunk of permutations (:func:`draw_stratum`) and counted into each training
seed's histograms (:func:`count_stratum`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import sparse

from biaslab.fairness.bootstrap import patient_types


class Stratum(NamedTuple):
    """Units relabelled whole among themselves, by type (units alike under every seed)."""

    members: np.ndarray  # units of each type, (types,)
    sizes: np.ndarray  # units of each group, (groups,)
    types: list  # per seed: each type's histogram of codes, sparse (types, codes)
    # per seed, the units in type order as (unit, code, count) triples of their histograms
    # (unit None: one code each, in order; count None: all 1), to count shuffled units
    # directly; None: the relabellings are counted as a table of units per group and type
    entries: list | None


def whole_unit_strata(units, codes, code, label, n_groups, n_codes) -> list[Stratum]:
    """Strata of units relabelled whole, each unit typed by its codes under every seed.

    The stratum of a unit is the set of labels of its images (all units in one without
    ``label``); units with the same histogram of codes under every seed (``code``: (seeds,
    images)) are one type.
    """
    # A type is the joint histogram over the seeds, not one per seed: a relabelling moves a
    # unit's images under every seed at once, so only units alike under all seeds are
    # interchangeable. For DI, SPD and the label-only gaps the joint types stay few (at most
    # 2^(m+1) for single images), and the cheap hypergeometric chain stays. With binned
    # scores they are nearly as many as the units: draw_stratum then shuffles the units' labels
    # (the same cost for any number of seeds) and each seed's histograms are counted from the
    # units directly, m x units, rather than through a (groups x types) table that would cost
    # m x groups x types.
    if len(units) == 0:
        return []
    n_seeds = len(code)
    units = pd.factorize(units)[0]
    single = units.max() + 1 == len(units)
    signature = np.zeros(units.max() + 1, dtype=np.int64)
    if label is not None:
        np.bitwise_or.at(signature, units, 1 << label)  # 1: negatives, 2: positives, 3: both
    group = np.zeros(units.max() + 1, dtype=np.int64)
    group[units] = codes
    offsets = np.arange(n_seeds) * n_codes  # seed s's codes are the columns s * n_codes + code
    strata = []
    for sig in np.unique(signature):
        mine = signature[units] == sig
        if single:  # one image per unit: its codes (one per seed) are its type
            kinds, members = _joint_codes(code[:, mine], n_codes)
            types = sparse.csr_matrix(
                (np.ones(kinds.size), (kinds + offsets).ravel(),
                 np.arange(0, kinds.size + 1, n_seeds)), shape=(len(kinds), n_seeds * n_codes))
        else:
            types, members = patient_types(np.tile(units[mine], n_seeds),
                                           (code[:, mine] + offsets[:, None]).ravel(),
                                           n_seeds * n_codes)
        sizes = np.bincount(group[signature == sig], minlength=n_groups)
        strata.append(_stratum(types, members, sizes, n_seeds, n_codes))
    return strata


def _joint_codes(code: np.ndarray, n_codes: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct columns of ``code`` (seeds, n), in lexicographic order, (kinds, seeds), and
    how many columns each has."""
    # one integer per column, its codes read as digits base n_codes (a 1-D unique is far
    # faster than np.unique(axis=0)); digits that would overflow are ranked first
    key, n_keys, ranked = np.zeros(code.shape[1], dtype=np.int64), 1, False
    for row in code:
        if n_keys * n_codes >= 2**62:
            kept, key = np.unique(key, return_inverse=True)
            n_keys, ranked = len(kept), True
        key, n_keys = key * n_codes + row, n_keys * n_codes
    if ranked:
        _, first, members = np.unique(key, return_index=True, return_counts=True)
        return code[:, first].T, members
    kinds, members = np.unique(key, return_counts=True)
    return (kinds[:, None] // n_codes ** np.arange(len(code))[::-1]) % n_codes, members


def _stratum(types, members, sizes, n_seeds: int, n_codes: int) -> Stratum:
    """A stratum from its joint types (types, seeds x codes), and how to count its draws."""
    by_seed = [types[:, s * n_codes:(s + 1) * n_codes].tocsr() for s in range(n_seeds)]
    # shuffled units counted directly cost their (unit, code) pairs; counted into a table
    # first, a unit each and then the table times the types
    pairs = (np.diff(types.indptr) * members).sum()
    if _few_types(members, sizes) or pairs > members.sum() + len(sizes) * types.nnz:
        return Stratum(members, sizes, by_seed, None)
    type_of = np.repeat(np.arange(len(members)), members)
    entries = []
    for t in by_seed:
        rows = t[type_of]  # (units, codes): each unit's histogram
        per_unit = np.diff(rows.indptr)
        unit = None if (per_unit == 1).all() else np.repeat(np.arange(len(type_of)), per_unit)
        count = None if (rows.data == 1).all() else rows.data
        entries.append((unit, rows.indices.astype(np.int64), count))
    return Stratum(members, sizes, by_seed, entries)


def draw_stratum(st: Stratum, b: int, rng, base: np.ndarray, n_codes: int) -> np.ndarray:
    """``b`` relabellings of a stratum: a table (b, groups, types) of units per group and
    type, or with ``st.entries`` the first histogram cell (b, units) of each unit's new group
    (``base`` + group x ``n_codes``; computed once for all seeds)."""
    if st.entries is None:
        return draw_table(st.members, st.sizes, b, rng)
    first = _shuffled_labels(st.members, st.sizes, b, rng).astype(np.int64)
    first *= n_codes
    first += base
    return first


def count_stratum(st: Stratum, draw: np.ndarray, s: int, n_codes: int) -> np.ndarray:
    """Seed ``s``'s histograms (b x groups, codes) of a stratum's relabelled units."""
    n_rows = len(draw) * len(st.sizes)
    if st.entries is None:  # (codes, types) @ (types, b x groups)
        return (st.types[s].T @ draw.reshape(n_rows, -1).T).T
    unit, code, count = st.entries[s]
    flat = draw + code if unit is None else draw[:, unit] + code  # (b, pairs)
    weights = None if count is None else np.broadcast_to(count, flat.shape).ravel()
    return np.bincount(flat.ravel(), weights=weights,
                       minlength=n_rows * n_codes).reshape(n_rows, n_codes)


def _few_types(members: np.ndarray, sizes: np.ndarray) -> bool:
    """Whether a chain of hypergeometric draws is cheaper than shuffling the units."""
    return (len(sizes) - 1) * (len(members) - 1) * 64 <= members.sum()


def draw_table(members: np.ndarray, sizes: np.ndarray, b: int, rng) -> np.ndarray:
    """``b`` random tables (b, groups, types) of units per group and type, margins fixed.

    Giving the ``sizes.sum()`` units random group labels (``sizes[g]`` of group g) makes the
    counts of each type in each group a multivariate hypergeometric table. Few types: drawn
    as a chain of hypergeometric draws, group by group, type by type (vectorised over the b
    tables); many types: the labels are shuffled over the units and counted.
    """
    n_groups, n_types = len(sizes), len(members)
    table = np.zeros((b, n_groups, n_types), dtype=np.int64)
    if _few_types(members, sizes):
        left = np.broadcast_to(members, (b, n_types)).copy()  # units of each type not placed
        for g in range(n_groups - 1):
            need = np.full(b, sizes[g])
            after = left.sum(1)  # then: units left of the types after k
            for k in range(n_types - 1):
                after -= left[:, k]
                x = rng.hypergeometric(left[:, k], after, need)
                table[:, g, k], need = x, need - x
                left[:, k] -= x
            table[:, g, -1] = need
            left[:, -1] -= need
        table[:, -1] = left
        return table
    type_of = np.repeat(np.arange(n_types), members)
    labels = _shuffled_labels(members, sizes, b, rng)
    flat = (np.arange(b)[:, None] * n_groups + labels) * n_types + type_of
    return np.bincount(flat.ravel(), minlength=b * n_groups * n_types).reshape(table.shape)


def _shuffled_labels(members: np.ndarray, sizes: np.ndarray, b: int, rng) -> np.ndarray:
    """``b`` random group labels (b, units) of the units, in type order, ``sizes[g]`` of g."""
    # the smallest integers shuffle fastest (half the time of int64), into a C-ordered array
    # (permuted alone returns a Fortran-ordered one, slow to read row by row): the same draws
    labels = np.repeat(np.arange(len(sizes), dtype=np.min_scalar_type(len(sizes))), sizes)
    out = np.empty((b, members.sum()), dtype=labels.dtype)
    return rng.permuted(np.broadcast_to(labels, out.shape), axis=1, out=out)
