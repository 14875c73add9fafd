"""What the explain stage costs, and how close its occlusion comes to the model's own speed.

    .venv/bin/python -m benchmarks.explain                       # resnet18, 256x256, the device
    .venv/bin/python -m benchmarks.explain --model small_cnn --size 32 --test 360

In one run, on a model with random weights (the cost does not depend on them) and random test
images (``--test`` of them, S and the label drawn at random), with params.yaml's ``explain``
defaults (windows of 1/8 of the side moved by 1/16: 450 occluded copies per 2-channel image):

- **the limit**: the model's plain forward passes, images per second, ``explain.batch_size`` at a
  time, on a tensor already on the device;
- **occlusion**: occluded copies per second for 1 and 2 x ``--maps`` images, as a ratio to the
  limit (1: the batching costs nothing; captum builds the copies), and the ratio of the two
  times (2: the cost grows linearly with the images);
- **the stage**: ``explain_model`` (maps, the bias share, robustness probes, activation
  signatures) with ``per_cell`` 1 and 2, and the seconds each extra mapped image adds.

The stage's cost is about: mapped images x 450 copies / limit (occlusion), plus the test images
x (conditions + 3) / limit (scores, share tiles, probes, signatures), plus fixed work (k-means,
figures).
"""

import argparse
import time

import numpy as np
import pandas as pd
import torch

from biaslab.config import ExplainConfig
from biaslab.data.bias import BiasSpec, model_inputs
from biaslab.explain import attribution as attr
from biaslab.explain.pipeline import explain_model
from biaslab.model.architectures import build_model
from biaslab.model.devices import pick_device


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def forward_rate(model, x: torch.Tensor, batch: int, device) -> float:
    """Images per second of plain forward passes of ``batch`` images (``x`` repeated), after
    a warm-up pass, for at least 2 s: what the model alone can do, the occlusion's ceiling."""
    x = x.repeat(-(-batch // len(x)), 1, 1, 1)[:batch].to(device)
    passes = 0
    with torch.no_grad():
        model(x)
        sync(device)
        start = time.perf_counter()
        while passes == 0 or time.perf_counter() - start < 2.0:
            model(x)
            sync(device)
            passes += 1
    return passes * batch / (time.perf_counter() - start)


def occlusion_seconds(model, x: np.ndarray, cfg: ExplainConfig, device) -> float:
    window, stride = attr.occlusion_geometry(*x.shape[2:], cfg.occlusion_window,
                                             cfg.occlusion_stride)
    sync(device)
    start = time.perf_counter()
    attr.occlusion(model, x, window=window, stride=stride, batch_size=cfg.batch_size,
                   device=device)
    sync(device)
    return time.perf_counter() - start


def test_set(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    """Random uint8 images and a test split with a random label and S."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
    frame = pd.DataFrame({"row": np.arange(n), "split": "test",
                          "label": rng.integers(0, 2, n), "s": rng.integers(0, 2, n)})
    return pixels, frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--maps", type=int, default=2, help="images of the occlusion timing")
    parser.add_argument("--test", type=int, default=64, help="test images of the stage")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()
    device = torch.device(pick_device(args.device, key="--device"))
    cfg = ExplainConfig()
    torch.manual_seed(0)
    model = build_model(args.model, 2).eval().to(device)
    bias = BiasSpec(kind="noise_channel")
    pixels, frame = test_set(max(args.test, 2 * args.maps), args.size)
    x = torch.from_numpy(model_inputs(pixels, frame["row"].to_numpy(), frame["s"].to_numpy(),
                                      bias))  # as the stage builds them: 2 channels
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, " \
        f"{torch.get_num_threads()} threads"
    print(f"{args.model} at {args.size}x{args.size}, 2 channels, on {name}")

    limit = forward_rate(model, x, cfg.batch_size, device)
    print(f"  limit (plain forward passes):      {limit:8.1f} images/s")

    window, stride = attr.occlusion_geometry(args.size, args.size, cfg.occlusion_window,
                                             cfg.occlusion_stride)
    copies = attr.n_windows((2, args.size, args.size), window, stride)
    occlusion_seconds(model, x[:1].numpy(), cfg, device)  # warm-up: imports, first passes
    times = {n: occlusion_seconds(model, x[:n].numpy(), cfg, device)
             for n in (args.maps, 2 * args.maps)}
    for n, took in times.items():
        rate = n * copies / took
        print(f"  occlusion, {n:3d} images ({copies} copies each): {took:7.2f} s, "
              f"{took / n:6.2f} s/image, {rate:8.1f} copies/s = {rate / limit:4.2f} x the limit")
    print(f"  linear: time of {2 * args.maps} / time of {args.maps}: "
          f"{times[2 * args.maps] / times[args.maps]:.2f} (2 is linear)")

    stage = {}
    for per_cell in (1, 2):
        config = cfg.model_copy(update={"per_cell": per_cell})
        sync(device)
        start = time.perf_counter()
        result = explain_model(model, model_name=args.model, pixels=pixels,
                               test=frame.iloc[:args.test], bias=bias, group_columns=["s"],
                               attributes=["s"], config=config, device=device)
        sync(device)
        stage[per_cell] = (time.perf_counter() - start, len(result.selection))
        print(f"  stage, per_cell {per_cell}: {stage[per_cell][0]:7.2f} s, "
              f"{stage[per_cell][1]} images mapped, {args.test} test images")
    (t1, n1), (t2, n2) = stage[1], stage[2]
    if n2 > n1:
        print(f"  each extra mapped image:           {(t2 - t1) / (n2 - n1):7.2f} s")


if __name__ == "__main__":
    main()
