"""Activation signatures: how a model's hidden layers group the test images.

For each chosen layer, the images' activations are reduced by PCA and clustered by k-means, the
number of clusters chosen by the silhouette over a range. A cluster is summarised by the share
of each class and group in it (its *purity*: the share of its majority). Following the images
from the clusters of one layer to those of the next gives *flows*, drawn as a Sankey diagram: a
model that learnt a shortcut sorts the images by the bias group early, and the flows show the
groups, not the classes, travelling together. An image that lands in a cluster dominated by the
other class, or far from its cluster's centroid for that cluster's spread (so far from every
centroid), is listed as an *anomaly*.

The activations come from :mod:`biaslab.explain.activations`; the Sankey diagram and the
anomalies' thumbnails are drawn by :mod:`biaslab.explain.signature_figures`. Everything here
takes arrays and DataFrames and returns them. Given a seed the results are deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from biaslab.data.columns import require_columns

N_INIT = 4  # k-means restarts per k (k-means++ starts): a bad start is rare after 4
# components kept at most when chosen by explained variance: k-means in hundreds of dimensions
# of near-noise costs minutes (5,000 images, 300 components: 3.4 s per fit) and separates
# nothing that the first 50 do not
MAX_COMPONENTS = 50
SILHOUETTE_SAMPLE = 2000  # the silhouette is O(N^2): above this many images, a seeded sample
REASONS = ("other_class", "far")  # the anomalies' reasons, in the order they are listed


# --- clustering one layer ----------------------------------------------------------------------

@dataclass(frozen=True)
class LayerClusters:
    """k-means on one layer: ``assign`` (N,) cluster ids, ``distance`` (N,) from the image to
    its cluster's centroid in the layer's own space (not the PCA scores: an image can be far
    in the directions PCA drops), ``components`` kept, their ``explained_variance`` share, the
    chosen ``k`` and ``silhouettes`` {k: score} of every k tried (NaN: not computable)."""

    assign: np.ndarray
    distance: np.ndarray
    components: int
    explained_variance: float
    k: int
    silhouettes: dict[int, float]


def _reduce(x: np.ndarray, components: int, variance: float,
            ) -> tuple[np.ndarray, int, float]:
    """PCA scores of ``x`` (N, F): ``components`` of them, or as many as explain ``variance``;
    with the number kept and the share of variance they explain.

    No standardisation: it would blow up channels that barely vary (dead ReLUs) to the same
    weight as the channels that carry the signal.
    """
    from sklearn.decomposition import PCA

    most = min(x.shape)
    if len(x) < 2 or not np.any(x.var(axis=0) > 1e-12 * max(1.0, float(np.abs(x).max()) ** 2)):
        return np.zeros((len(x), 1)), 0, 0.0  # a constant layer: one point, one cluster
    if components:
        keep = min(components, most)
    else:
        keep = variance if variance < 1 else most  # sklearn takes a fraction below 1 only
    # covariance_eigh: the F x F covariance's eigenvectors, much faster than the SVD of x when
    # there are more images than features (0.3 s instead of 1.8 s for 5,000 x 512); both exact
    solver = "covariance_eigh" if len(x) > x.shape[1] else "full"
    pca = PCA(n_components=keep, svd_solver=solver).fit(x)
    z = pca.transform(x)
    if not components and z.shape[1] > MAX_COMPONENTS:
        z = z[:, :MAX_COMPONENTS]
    kept = pca.explained_variance_ratio_[:z.shape[1]].sum()
    return z, z.shape[1], float(kept)


def _search(z: np.ndarray, k_min: int, k_max: int, seed: int) -> tuple[dict, dict]:
    """k-means fits of ``z`` for k in [k_min, k_max] (capped: 2 <= k <= N - 1 and at most
    the distinct points), and their silhouettes (NaN where k-means found a single cluster)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    top = min(k_max, len(np.unique(z, axis=0)), len(z) - 1)
    silhouettes: dict[int, float] = {}
    fits = {}
    for k in range(min(k_min, top), top + 1) if top >= 2 else ():
        fit = KMeans(n_clusters=k, n_init=N_INIT, random_state=seed).fit(z)
        found = len(np.unique(fit.labels_))
        sample = SILHOUETTE_SAMPLE if len(z) > SILHOUETTE_SAMPLE else None
        silhouettes[k] = float(silhouette_score(z, fit.labels_, sample_size=sample,
                                                random_state=seed)
                               ) if 2 <= found < len(z) else float("nan")
        fits[k] = fit
    return silhouettes, fits


def cluster_layer(x: np.ndarray, *, pca_components: int = 0, pca_variance: float = 0.9,
                  k_range: Sequence[int] = (2, 8), seed: int = 0,
                  order_by: np.ndarray | None = None) -> LayerClusters:
    """PCA, then k-means for each k in ``k_range`` (inclusive); keep the best silhouette.

    The silhouette of a clustering is the mean over images of (b - a) / max(a, b), a the mean
    distance to the image's own cluster, b to the nearest other (Rousseeuw 1987); ties go to
    the smaller k. k is capped below the number of distinct points. Cluster ids are renumbered
    by the mean of ``order_by`` (e.g. the labels: cluster 0 is the most negative), then by size,
    so that they read the same in every run.
    """
    from threadpoolctl import threadpool_limits

    k_min, k_max = k_range
    if not 2 <= k_min <= k_max:
        raise ValueError(f"explain.k_range: expected 2 <= k_min <= k_max, got {list(k_range)}")
    x = np.asarray(x, dtype=np.float64)
    # One thread: BLAS's and OpenMP's threads spin-wait on a busy machine; on two busy cores
    # the PCA and 21 k-means fits of 360 images took 2 s with them, 0.2 s on one, and those of
    # 5,000 images minutes. It also makes the results independent of the number of cores.
    with threadpool_limits(limits=1):
        z, components, explained = _reduce(x, pca_components, pca_variance)
        silhouettes, fits = _search(z, k_min, k_max, seed)
    scored = [k for k in silhouettes if not np.isnan(silhouettes[k])]
    if not scored:  # too few distinct points: one cluster
        return LayerClusters(np.zeros(len(z), dtype=np.int64),
                             np.linalg.norm(x - x.mean(axis=0), axis=1), components, explained,
                             1, silhouettes)
    k = max(scored, key=lambda k: (silhouettes[k], -k))
    fit = fits[k]
    labels = fit.labels_
    centroids = np.stack([x[labels == c].mean(axis=0) for c in range(k)])
    distance = np.linalg.norm(x - centroids[labels], axis=1)
    key = np.zeros(len(z)) if order_by is None else np.asarray(order_by, dtype=np.float64)
    ranks = sorted(range(k), key=lambda c: (key[labels == c].mean(), -np.sum(labels == c),
                                            tuple(fit.cluster_centers_[c])))
    renumber = np.empty(k, dtype=np.int64)
    renumber[ranks] = np.arange(k)
    return LayerClusters(renumber[labels], distance, components, explained, k, silhouettes)


def robust_z(values: np.ndarray) -> np.ndarray:
    """(v - median) / (1.4826 MAD): a z-score that the outliers it looks for do not inflate.

    1.4826 MAD estimates the standard deviation of normal data (Iglewicz & Hoaglin 1993); with
    MAD = 0 (over half the values equal) the standard deviation is used, and 0 without spread.
    """
    values = np.asarray(values, dtype=np.float64)
    median = np.median(values)
    scale = 1.4826 * np.median(np.abs(values - median))
    if scale <= 0:
        scale = values.std()
    return (values - median) / scale if scale > 0 else np.zeros_like(values)


# --- the signatures of every layer -------------------------------------------------------------

@dataclass(frozen=True)
class Signatures:
    """The activation signatures of a model on a set of images (all DataFrames).

    - ``layers``: layer, features, components, explained_variance, k, silhouette;
    - ``silhouettes``: layer, k, silhouette (every k tried);
    - ``clusters``: layer, cluster, size, share, mean_distance, then for ``label`` and each
      group attribute A: ``A.majority``, ``A.purity`` and ``A=V``, the share of value V;
    - ``flows``: from_layer, from_cluster, to_layer, to_cluster, label, the groups, count:
      images of that class and group moving from one cluster to the next layer's;
    - ``anomalies``: position, row, layer, cluster, reason, distance, z, label, the groups,
      cluster_label, cluster_purity;
    - ``assignments``: position, row, label, the groups, then each layer's cluster id.
    """

    layers: pd.DataFrame
    silhouettes: pd.DataFrame
    clusters: pd.DataFrame
    flows: pd.DataFrame
    anomalies: pd.DataFrame
    assignments: pd.DataFrame


def sorted_values(column: pd.Series) -> list:
    """The values of ``column``, missing ones left out, in the same order in every run: by
    type, then by value (a column may mix numbers and text)."""
    return sorted(column.dropna().unique().tolist(), key=lambda v: (str(type(v)), v))


def _cluster_table(layer: str, fit: LayerClusters, meta: pd.DataFrame,
                   attrs: list[str]) -> pd.DataFrame:
    records = []
    values = {attr: sorted_values(meta[attr]) for attr in attrs}
    for c in range(fit.k):
        inside = fit.assign == c
        rec = {"layer": layer, "cluster": c, "size": int(inside.sum()),
               "share": float(inside.mean()), "mean_distance": float(fit.distance[inside].mean())}
        for attr in attrs:
            counts = meta.loc[inside, attr].value_counts()
            # the most frequent value, the first in sorted order on a tie
            top = max(values[attr], key=lambda v: (counts.get(v, 0), -values[attr].index(v)))
            rec[f"{attr}.majority"] = top
            rec[f"{attr}.purity"] = counts.get(top, 0) / inside.sum()
            rec.update({f"{attr}={v}": counts.get(v, 0) / inside.sum() for v in values[attr]})
        records.append(rec)
    return pd.DataFrame(records)


def _anomalies(layer: str, fit: LayerClusters, clusters: pd.DataFrame, meta: pd.DataFrame,
               groups: list[str], purity: float, z_max: float) -> pd.DataFrame:
    # each cluster's own scale: a spread-out cluster (the noise channel's images) would
    # otherwise make all of its images look far next to a tight one
    z = np.zeros(len(fit.assign))
    for c in range(fit.k):
        inside = fit.assign == c
        z[inside] = robust_z(fit.distance[inside])
    majority = clusters["label.majority"].to_numpy()[fit.assign]
    share = clusters["label.purity"].to_numpy()[fit.assign]
    labels = meta["label"].to_numpy()
    masks = {"other_class": (share >= purity) & (labels != majority), "far": z > z_max}
    parts = []
    for reason in REASONS:
        pos = np.flatnonzero(masks[reason])
        parts.append(pd.DataFrame({
            "position": pos, "row": meta["row"].to_numpy()[pos], "layer": layer,
            "cluster": fit.assign[pos], "reason": reason, "distance": fit.distance[pos],
            "z": z[pos], "label": labels[pos],
            **{g: meta[g].to_numpy()[pos] for g in groups},
            "cluster_label": majority[pos], "cluster_purity": share[pos],
        }).sort_values(["z", "position"], ascending=[False, True]))
    return pd.concat(parts, ignore_index=True)


def _flows(assignments: pd.DataFrame, layers: list[str], attrs: list[str]) -> pd.DataFrame:
    columns = ["from_layer", "from_cluster", "to_layer", "to_cluster", *attrs, "count"]
    parts = []
    for a, b in zip(layers, layers[1:], strict=False):
        # dropna=False: an image with a missing group still counts, so flows conserve sizes
        g = (assignments.groupby([a, b, *attrs], dropna=False, sort=True).size()
             .reset_index(name="count").rename(columns={a: "from_cluster", b: "to_cluster"}))
        parts.append(g.assign(from_layer=a, to_layer=b)[columns])
    return (pd.concat(parts, ignore_index=True) if parts
            else pd.DataFrame({c: [] for c in columns}).astype({"count": np.int64}))


def signatures(activations: Mapping[str, np.ndarray], meta: pd.DataFrame,
               groups: Sequence[str] = (), *, pca_components: int = 0, pca_variance: float = 0.9,
               k_range: Sequence[int] = (2, 8), seed: int = 0, anomaly_purity: float = 0.8,
               anomaly_z: float = 3.5) -> Signatures:
    """Cluster each layer's activations, summarise the clusters, the flows and the anomalies.

    Parameters
    ----------
    activations : ``{layer: (N, F) array}``
        (:func:`biaslab.explain.activations.layer_activations`), layers in order.
    meta : one row per image, in the order of the activations: ``label`` (0/1), the
        ``groups`` columns and optionally ``row`` (the image's id; default: its position).
    groups : group attributes summarised besides the label (e.g. ``["s"]``).
    pca_components, pca_variance, k_range, seed : see :func:`cluster_layer`.
    anomaly_purity : an image is an ``other_class`` anomaly when at least this share of its
        cluster has the other label.
    anomaly_z : an image is a ``far`` anomaly when the robust z-score (:func:`robust_z`, among
        the images of its cluster) of its distance to its centroid is above this.

    Returns
    -------
    Signatures
    """
    groups = list(groups)
    require_columns(meta, ["label", *groups], what="activation signatures' images")
    if not activations:
        raise ValueError("activations: expected at least one layer, got none")
    meta = meta.reset_index(drop=True)
    if "row" not in meta:
        meta = meta.assign(row=np.arange(len(meta)))
    for layer, x in activations.items():
        if np.ndim(x) != 2 or len(x) != len(meta):
            raise ValueError(f"activations[{layer!r}]: expected ({len(meta)}, F), one row per "
                             f"image, got shape {np.shape(x)}")
    attrs = ["label", *[g for g in groups if g != "label"]]
    layers = list(activations)
    assignments = meta[["row", *attrs]].copy()
    assignments.insert(0, "position", np.arange(len(meta)))
    summary, silhouettes, clusters, anomalies = [], [], [], []
    for layer in layers:
        fit = cluster_layer(activations[layer], pca_components=pca_components,
                            pca_variance=pca_variance, k_range=k_range, seed=seed,
                            order_by=meta["label"].to_numpy())
        assignments[layer] = fit.assign
        table = _cluster_table(layer, fit, meta, attrs)
        clusters.append(table)
        anomalies.append(_anomalies(layer, fit, table, meta, attrs[1:], anomaly_purity,
                                    anomaly_z))
        summary.append({"layer": layer, "features": np.shape(activations[layer])[1],
                        "components": fit.components,
                        "explained_variance": fit.explained_variance, "k": fit.k,
                        "silhouette": fit.silhouettes.get(fit.k, float("nan"))})
        silhouettes += [{"layer": layer, "k": k, "silhouette": s}
                        for k, s in fit.silhouettes.items()]
    return Signatures(
        layers=pd.DataFrame(summary),
        silhouettes=pd.DataFrame(silhouettes, columns=["layer", "k", "silhouette"]),
        clusters=pd.concat(clusters, ignore_index=True),
        flows=_flows(assignments, layers, attrs),
        anomalies=pd.concat(anomalies, ignore_index=True),
        assignments=assignments)
