"""Figures of the activation signatures (:mod:`biaslab.explain.signatures`): the Sankey diagram
of the images' flows between the clusters of each layer, and thumbnails of the anomalies.

Each function returns a matplotlib Figure, drawn without pyplot: nothing global to close.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from biaslab.explain.signatures import REASONS, Signatures, sorted_values

NODE_WIDTH = 0.16  # of the distance between two layers' columns
GAP = 0.03  # between two nodes of a column, as a share of the figure's height


def sankey_layout(result: Signatures, color_by: str = "label",
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Where the Sankey diagram's nodes and bands go (coordinates: layer i at x = i, y in [0, 1]).

    Each column stacks a layer's clusters (cluster 0 on top), each ``size x scale`` high, where
    ``scale`` is the same for every column: the height of one image. A band carries the
    ``count`` images of one ``color_by`` value from cluster i to cluster j of the next layer,
    ``count x scale`` high at both ends, stacked in i by (j, value) and in j by (i, value), so
    the bands leaving (entering) a node fill it exactly.

    Returns
    -------
    nodes : layer, x, cluster, size, y0, y1, majority, purity
    bands : from_layer, from_cluster, to_layer, to_cluster, value, count, x0, x1, from_y0,
        from_y1, to_y0, to_y1
    """
    if color_by not in result.assignments:
        raise ValueError(f"color_by: {color_by!r} is not a column of the signatures; allowed: "
                         f"{', '.join(result.flows.columns[4:-1])}")
    layers = list(result.layers["layer"])
    n = len(result.assignments)
    most = int(result.layers["k"].max())
    scale = (1 - GAP * (most - 1)) / max(n, 1)
    nodes = result.clusters[["layer", "cluster", "size"]].copy()
    nodes["majority"] = result.clusters[f"{color_by}.majority"]
    nodes["purity"] = result.clusters[f"{color_by}.purity"]
    nodes.insert(1, "x", nodes["layer"].map({layer: i for i, layer in enumerate(layers)}))
    tops = []
    for _, part in nodes.groupby("layer", sort=False):  # in layer order, clusters sorted
        height = part["size"].sum() * scale + GAP * (len(part) - 1)
        top = 1 - (1 - height) / 2
        for size in part["size"]:
            tops.append(top)
            top -= size * scale + GAP
    nodes["y1"] = tops
    nodes["y0"] = nodes["y1"] - nodes["size"] * scale
    top_of = nodes.set_index(["layer", "cluster"])["y1"]
    bands = (result.flows.groupby(["from_layer", "from_cluster", "to_layer", "to_cluster",
                                   color_by], sort=False, dropna=False)["count"].sum()
             .reset_index().rename(columns={color_by: "value"}))
    bands["x0"] = bands["from_layer"].map({layer: i for i, layer in enumerate(layers)})
    bands["x1"] = bands["x0"] + 1
    for end, own, other in (("from", "from_cluster", "to_cluster"),
                            ("to", "to_cluster", "from_cluster")):
        layer = bands[f"{end}_layer"]
        order = bands.assign(v=bands["value"].astype(str)).sort_values(
            [f"{end}_layer", own, other, "v"], kind="stable")
        below = order.groupby([f"{end}_layer", own], sort=False)["count"].cumsum()
        tops_at = top_of.loc[list(zip(layer, bands[own], strict=True))].to_numpy()
        bands[f"{end}_y0"] = tops_at - below.reindex(bands.index).to_numpy() * scale
        bands[f"{end}_y1"] = bands[f"{end}_y0"] + bands["count"] * scale
    return nodes, bands


def _colors(values: list) -> dict:
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors
    return {v: palette[i % len(palette)] for i, v in enumerate(values)}


def sankey_figure(result: Signatures, color_by: str = "label"):
    """The Sankey (alluvial) diagram of the images' flows between the clusters of each layer.

    Columns are the layers, nodes their clusters (heights proportional to sizes, coloured by
    the majority ``color_by`` value, darker when purer), bands the flows of each ``color_by``
    value (:func:`sankey_layout`). Each band's artist has the gid ``band:I``, I its row in the
    layout's bands. Returns a matplotlib Figure.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle

    nodes, bands = sankey_layout(result, color_by)
    layers = list(result.layers["layer"])
    colors = _colors(sorted_values(result.assignments[color_by]))
    fig = Figure(figsize=(max(5.0, 2.4 * len(layers)), 4.6))
    ax = fig.add_subplot()
    half = NODE_WIDTH / 2
    xs = np.linspace(0, 1, 32)
    ease = xs * xs * (3 - 2 * xs)  # smoothstep: flat where the band meets its nodes
    for i, band in enumerate(bands.itertuples()):
        x = band.x0 + half + xs * (1 - 2 * half)
        lower = band.from_y0 + (band.to_y0 - band.from_y0) * ease
        upper = band.from_y1 + (band.to_y1 - band.from_y1) * ease
        ax.fill_between(x, lower, upper, color=colors.get(band.value, "0.6"), alpha=0.45,
                        linewidth=0, gid=f"band:{i}")
    for node in nodes.itertuples():
        ax.add_patch(Rectangle((node.x - half, node.y0), NODE_WIDTH, node.y1 - node.y0,
                               facecolor=colors.get(node.majority, "0.6"),
                               alpha=0.35 + 0.65 * node.purity, edgecolor="k", linewidth=0.5))
        if node.y1 - node.y0 > 0.04:
            ax.text(node.x, (node.y0 + node.y1) / 2,
                    f"c{node.cluster}: n={node.size}\n{node.purity:.0%} {color_by}={node.majority}",
                    ha="center", va="center", fontsize=6,
                    bbox={"facecolor": "white", "alpha": 0.7, "pad": 1, "linewidth": 0})
    for i, row in enumerate(result.layers.itertuples()):
        ax.text(i, 1.02, f"{row.layer}\nk = {row.k}", ha="center", va="bottom", fontsize=8)
    ax.legend(handles=[Patch(color=c, alpha=0.6, label=f"{color_by} = {v}")
                       for v, c in colors.items()],
              loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=len(colors), fontsize=8,
              frameon=False)
    ax.set(xlim=(-0.5, len(layers) - 0.5), ylim=(0, 1.1))
    ax.axis("off")
    return fig


def anomaly_figure(anomalies: pd.DataFrame, images: np.ndarray, n: int = 16, columns: int = 8):
    """Thumbnails of up to ``n`` anomalous images, those flagged in most layers first.

    ``images`` (N, H, W) or (N, C, H, W), in the order of the signatures' images (an anomaly's
    ``position``); channel 0 is shown. Returns a matplotlib Figure, or None with no anomaly.
    """
    from matplotlib.figure import Figure

    if anomalies.empty or n <= 0:
        return None
    images = np.asarray(images)
    ranked = (anomalies.groupby("position", sort=True)
              .agg(flags=("z", "size"), z=("z", "max")).reset_index()
              .sort_values(["flags", "z", "position"], ascending=[False, False, True]).head(n))
    groups = [c for c in anomalies.columns[anomalies.columns.get_loc("label") + 1:]
              if c not in ("cluster_label", "cluster_purity")]
    cols = min(columns, len(ranked))
    rows = -(-len(ranked) // cols)
    fig = Figure(figsize=(1.35 * cols, 1.75 * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, pos in zip(axes, ranked["position"], strict=False):
        flags = anomalies[anomalies["position"] == pos]
        first = flags.iloc[0]
        image = images[pos]
        ax.imshow(image[0] if image.ndim == 3 else image, cmap="gray")
        who = " ".join([f"y={first['label']}", *(f"{g}={first[g]}" for g in groups)])
        # how many layers flagged it, for each reason: "other_class x3, far x1"
        why = ", ".join(f"{reason} x{count:.0f}" for reason, count in
                        flags["reason"].value_counts().reindex(REASONS).dropna().items())
        ax.set_title(f"row {first['row']}\n{who}\n{why}", fontsize=6)
    for ax in axes:
        ax.axis("off")
    return fig
