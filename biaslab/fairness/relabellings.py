"""Random relabellings of the groups, as counts: the draws behind a permutation test's null
distribution (:mod:`biaslab.fairness.significance`).

Every statistic of the test is a function of each group's histogram of image codes
``(2 y + ŷ) * bins + score bin``. Units with the same histogram are interchangeable, so a
permutation only decides how many units of each type go to each group: a random contingency
table with fixed margins (units per group, units per type), drawn exactly as a chain of
hypergeometric draws, vectorised over the permutations (:func:`draw_table`), or, with many
types, by shuffling the labels of the units.

Units relabelled whole (a single image, or a patient whose images are all in one group) are
sorted into strata of units that may trade places (:func:`whole_unit_strata`); each stratum is
drawn once per chunk of permutations (:func:`draw_stratum`). A table is counted into each
training seed's histograms as a product with the types (:func:`count_table`); the shuffled
units, and the images of the patients relabelled within themselves, are counted together, for
every seed and group at once, as one sparse product per slice of permutations
(:func:`count_columns`): each stored count of a unit's histogram costs one addition per
permutation and int64 word (several groups packed in one word), where a scatter of every image
under every seed cost several passes over a (permutations x images) index, for each seed.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import sparse

from biaslab.fairness.bootstrap import patient_types

# packed labels one product reads, in int64 words (2 MiB): they stay in the processor's cache
CACHE = 1 << 18


class Stratum(NamedTuple):
    """Units relabelled whole among themselves, by type (units alike under every seed)."""

    members: np.ndarray  # units of each type, (types,)
    sizes: np.ndarray  # units of each group, (groups,)
    types: list  # per seed: each type's histogram of codes, sparse (types, codes)
    # True: the units' labels are shuffled and the units counted one by one (count_columns);
    # False: the relabellings are drawn and counted as a table of units per group and type
    shuffled: bool


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
    table = _few_types(members, sizes) or pairs > members.sum() + len(sizes) * types.nnz
    return Stratum(members, sizes, by_seed, not table)


def draw_stratum(st: Stratum, b: int, rng) -> np.ndarray:
    """``b`` relabellings of a stratum: a table (b, groups, types) of units per group and
    type, or when ``st.shuffled`` the group labels (b, units) of its units in type order."""
    if st.shuffled:
        return _shuffled_labels(st.members, st.sizes, b, rng)
    return draw_table(st.members, st.sizes, b, rng)


def count_table(st: Stratum, table: np.ndarray, s: int) -> np.ndarray:
    """Seed ``s``'s histograms (b x groups, codes) of a stratum drawn as a table."""
    n_rows = len(table) * len(st.sizes)  # (codes, types) @ (types, b x groups)
    return (st.types[s].T @ table.reshape(n_rows, -1).T).T


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


class Columns(NamedTuple):
    """What is relabelled unit by unit, as columns: the units of the shuffled strata (in type
    order, as :func:`draw_stratum` labels them) and the images of the blocks.

    ``counts`` is the (seeds x codes, columns) matrix of each column's histogram of codes under
    every seed (seed s's codes are the rows s * n_codes + code), compressed by column;
    ``total`` its row sums, the histograms of all the columns together.
    """

    counts: sparse.csc_matrix
    total: np.ndarray


def unit_columns(whole: list[Stratum], block_code: np.ndarray, n_codes: int) -> Columns:
    """The columns of the shuffled strata and of the block images (``block_code``: (seeds,
    images), their codes)."""
    n_seeds = len(block_code)
    parts = []
    for st in whole:
        if st.shuffled:  # the joint histogram of each unit, in type order
            joint = sparse.hstack(st.types, format="csr")
            parts.append(joint[np.repeat(np.arange(len(st.members)), st.members)])
    n_block = block_code.shape[1]
    if n_block:  # one code per image and seed
        rows = np.repeat(np.arange(n_block), n_seeds)
        cols = (block_code + (np.arange(n_seeds) * n_codes)[:, None]).T.ravel()
        parts.append(sparse.csr_matrix((np.ones(len(rows), dtype=np.int64), (rows, cols)),
                                       shape=(n_block, n_seeds * n_codes)))
    if not parts:
        return Columns(sparse.csc_matrix((n_seeds * n_codes, 0), dtype=np.int64),
                       np.zeros(n_seeds * n_codes, dtype=np.int64))
    counts = sparse.vstack(parts, format="csr").T.tocsc().astype(np.int64)
    return Columns(counts, np.asarray(counts.sum(1)).ravel().astype(np.int64))


def count_columns(columns: Columns, labels: np.ndarray, n_groups: int) -> np.ndarray:
    """The histograms (b, groups, seeds x codes) of the columns relabelled by ``labels`` (b,
    columns): sum of the columns of each group, permutation by permutation.

    One sparse product for all the permutations and groups: the histograms are integer counts
    no larger than ``columns.total``, so several groups share one int64 word (group g of the
    word at bit ``bits * (g % per_word)``), and each permutation costs ``ceil((groups - 1) /
    per_word)`` products with the columns' counts instead of a scatter of every image under
    every seed. The last group is the total minus the others.
    """
    b = len(labels)
    total = columns.total
    bits = max(1, int(total.max(initial=0)).bit_length())
    per_word = max(1, 63 // bits)
    words = -(-(n_groups - 1) // per_word)
    place = np.zeros((n_groups, words), dtype=np.int64)  # what a column of group g adds
    for g in range(n_groups - 1):
        place[g, g // per_word] = 1 << (bits * (g % per_word))
    # the product streams the packed labels once per stored count: a slice of permutations
    # whose labels stay in the processor's cache costs a fraction of one that does not
    by_column = np.ascontiguousarray(labels.T)  # (columns, b)
    step = max(1, CACHE // max(1, len(by_column) * words))
    packed = np.empty((len(total), b, words), dtype=np.int64)
    for lo in range(0, b, step):
        part = place[by_column[:, lo:lo + step]]  # (columns, permutations, words)
        width = part.shape[1] * words
        packed[:, lo:lo + step] = (columns.counts @ part.reshape(len(part), width)).reshape(
            len(total), -1, words)
    hist = np.empty((b, n_groups, len(total)), dtype=np.int64)
    mask = (1 << bits) - 1
    for g in range(n_groups - 1):
        hist[:, g] = ((packed[:, :, g // per_word] >> (bits * (g % per_word))) & mask).T
    hist[:, -1] = total - hist[:, :-1].sum(1)
    return hist
