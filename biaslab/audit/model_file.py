"""A model file to audit: loaded, wrapped so that it takes biaslab's inputs, and scored.

Three kinds of file (:func:`load_model`):

- a **TorchScript** file (``torch.jit.script(model).save(FILE)`` or ``torch.jit.trace``), read by
  ``torch.jit.load``;
- an **ONNX** file (``.onnx``), run by onnxruntime on the CPU;
- a **torchvision architecture** name plus a **state dict** (``torch.save(model.state_dict(),
  FILE)``), loaded weights-only into ``torchvision.models.ARCH(num_classes=...)``.

Each becomes a :class:`ModelFile`, a torch module that takes what biaslab's own models take,
the prepared grayscale images normalised to [-1, 1] (:func:`biaslab.data.bias.model_inputs`,
shape (B, 1, H, W)), and returns one logit per image, so that every tool of
:mod:`biaslab.explain` applies to it unchanged. On the way in, the images are brought to what
the model expects (:class:`InputSpec`): back to [0, 1], repeated to 3 channels when it takes
RGB, then normalised as ``(x - mean) / std`` per channel (torchvision's ``Normalize``). On the
way out, the model's output becomes the logit of the positive class: the one logit itself
(``logit``), or, for a model with several outputs (``index:K``), the log-odds of the softmax
probability of class K,

.. math:: \\operatorname{logit} p_K = z_K - \\log \\sum_{j \\neq K} e^{z_j},

which is :math:`z_1 - z_0` for two classes. A file that does not load, an output that does not
have the shape the option says, or inputs of the wrong channel count or size stop the audit
with one line naming the file and what was expected: a probe batch goes through the model
when it is loaded.

Attribution: hooks (Grad-CAM's on a layer, deconvolution's on the ReLUs) need a Python torch
module, so they apply to an architecture plus state dict only (:attr:`ModelFile.hookable`):
a TorchScript module refuses forward hooks, and its ReLUs are compiled away from the backward
hooks (captum's deconvolution silently gives the plain gradient there); ONNX has no gradient
at all. Occlusion and the robustness probes need forward passes only and apply to all three.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

KINDS = ("torchscript", "onnx", "state_dict")
PROBE = 2  # images in the batch that checks a model when it is loaded


@dataclass(frozen=True)
class InputSpec:
    """What the model expects: ``size`` x ``size`` images of ``channels`` channels (1, or 3:
    the grayscale image repeated), normalised as ``(x - mean) / std`` with x in [0, 1] (one
    value, or one per channel), and its ``output``: ``logit`` (one logit per image) or
    ``index:K`` (several outputs, class K the positive one, softmax)."""

    size: int = 224
    channels: int = 1
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    output: str = "logit"

    def __post_init__(self) -> None:
        if not 8 <= self.size <= 1024:
            raise ValueError(f"--input-size: expected an integer in [8, 1024], got {self.size}")
        if self.channels not in (1, 3):
            raise ValueError(f"--channels: expected 1 or 3, got {self.channels}")
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, self.channels) or not np.isfinite(values).all():
                raise ValueError(f"--{name}: expected one number or {self.channels} (one per "
                                 f"channel, --channels {self.channels}), got {list(values)}")
        if not all(s > 0 for s in self.std):
            raise ValueError(f"--std: expected numbers > 0, got {list(self.std)}")
        self.positive  # noqa: B018 - checks the output's spelling

    @property
    def positive(self) -> int | None:
        """K of ``index:K``; None for ``logit``."""
        if self.output == "logit":
            return None
        head, _, k = self.output.partition(":")
        if head != "index" or not k.isdigit():
            raise ValueError(f"--output: expected logit or index:K (K the positive class's "
                             f"index among the outputs, e.g. index:1), got {self.output!r}")
        return int(k)


class _Onnx(nn.Module):
    """An onnxruntime session as a torch module: forward passes only (no gradient), on the
    CPU; a model whose batch dimension is fixed at 1 is run image by image."""

    def __init__(self, session, source: str):
        super().__init__()
        self.session, self.source = session, source
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"{source}: the ONNX model takes {len(inputs)} inputs "
                             f"({', '.join(i.name for i in inputs)}); expected one, the images")
        self.name, self.shape = inputs[0].name, list(inputs[0].shape)
        self.one_at_a_time = self.shape[:1] == [1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().float().cpu().numpy()
        parts = np.split(array, len(array)) if self.one_at_a_time else [array]
        out = [self.session.run(None, {self.name: part})[0] for part in parts if len(part)]
        return torch.from_numpy(np.concatenate(out)).to(x.device)


class ModelFile(nn.Module):
    """A loaded model file that takes biaslab's inputs (B, 1, H, W) in [-1, 1] and returns the
    positive class's logit (B,).

    ``net``: the model as loaded; ``kind``: one of :data:`KINDS`; ``source``: the file, named
    in errors; ``hookable``: whether Grad-CAM and deconvolution apply (a Python torch module);
    ``why_not``: why they do not, otherwise.
    """

    def __init__(self, net: nn.Module, spec: InputSpec, kind: str, source: str):
        super().__init__()
        self.net, self.spec, self.kind, self.source = net, spec, kind, source
        self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32)[:, None, None])
        self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float32)[:, None, None])

    @property
    def hookable(self) -> bool:
        return self.kind == "state_dict"

    @property
    def why_not(self) -> str:
        return {"torchscript": "a TorchScript module cannot be hooked (its layers are compiled)",
                "onnx": "an ONNX model runs without gradients",
                "state_dict": ""}[self.kind]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x + 1.0) / 2.0  # biaslab's [-1, 1] back to [0, 1]
        if self.spec.channels == 3:
            x = x.expand(-1, 3, -1, -1)
        return self.logit(self.net((x - self.mean) / self.std))

    def logit(self, out) -> torch.Tensor:
        """The model's output (B, ...) as the positive class's logit (B,)."""
        k = self.spec.positive
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        if k is None:
            if not isinstance(out, torch.Tensor) or out.dim() not in (1, 2) or (
                    out.dim() == 2 and out.shape[1] != 1):
                raise ValueError(f"{self.source}: the output has shape {shape}; --output logit "
                                 "expects one logit per image, (N,) or (N, 1): with several "
                                 "outputs give --output index:K, K the positive class")
            return out.reshape(-1).float()
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] <= max(k, 1):
            raise ValueError(f"{self.source}: the output has shape {shape}; --output index:{k} "
                             f"expects (N, C), C > {max(k, 1)} class scores (logits, softmax "
                             "applied)")
        out = out.float()
        others = torch.cat([out[:, :k], out[:, k + 1:]], dim=1)
        return out[:, k] - torch.logsumexp(others, dim=1)


def load_model(path: str | Path, spec: InputSpec, *, arch: str | None = None) -> ModelFile:
    """Load ``path`` as :func:`ModelFile` and check it on a probe batch.

    Parameters
    ----------
    path : the file: ONNX when it ends in ``.onnx``, a state dict with ``arch``, else TorchScript.
    spec : what the model expects.
    arch : a torchvision architecture (``resnet18``, ``densenet121``, ...) that ``path``'s state
        dict fits.

    Raises
    ------
    FileNotFoundError : no file at ``path``.
    ValueError : a file that does not load, inputs the model does not take (channels, size) or
        an output that does not fit ``spec.output``; one line naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--model-file: {path} not found")
    source = str(path)
    if arch is not None:
        kind, net = "state_dict", _state_dict_model(path, arch)
    elif path.suffix.lower() == ".onnx":
        kind, net = "onnx", _onnx_model(path, spec)
    else:
        kind, net = "torchscript", _torchscript_model(path)
    model = ModelFile(net, spec, kind, source).eval()
    probe = torch.zeros(PROBE, 1, spec.size, spec.size)
    try:
        with torch.no_grad():
            logits = model(probe)
    except ValueError:
        raise
    except Exception as exc:  # whatever the model raises on inputs it does not take
        first = (str(exc).strip().splitlines() or [""])[-1][:300]
        raise ValueError(
            f"{source}: the model fails on {spec.channels}-channel {spec.size}x{spec.size} "
            f"images (--channels {spec.channels}, --input-size {spec.size}): "
            f"{type(exc).__name__}: {first}") from None
    if logits.shape != (PROBE,):
        raise ValueError(f"{source}: {PROBE} images gave {tuple(logits.shape)} logits; expected "
                         "one per image")
    return model


def _torchscript_model(path: Path) -> nn.Module:
    try:
        with warnings.catch_warnings():  # torch.jit.load's deprecation notice
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        hint = "save one with torch.jit.script(model).save(FILE) or torch.jit.trace"
        if _is_state_dict(path):
            hint = "it holds a state dict: give --arch, the torchvision architecture it fits"
        raise ValueError(f"{path}: not a TorchScript file torch.jit.load can read "
                         f"({type(exc).__name__}); {hint}; or an ONNX file named *.onnx") from None


def _is_state_dict(path: Path) -> bool:
    try:
        return isinstance(torch.load(path, map_location="cpu", weights_only=True), dict)
    except Exception:
        return False


def _onnx_model(path: Path, spec: InputSpec) -> nn.Module:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: its warnings are not the user's business
    try:
        session = onnxruntime.InferenceSession(str(path), options,
                                               providers=["CPUExecutionProvider"])
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ValueError(f"{path}: not an ONNX model onnxruntime can load ({type(exc).__name__}: "
                         f"{first})") from None
    net = _Onnx(session, str(path))
    shape = net.shape
    if len(shape) != 4:
        raise ValueError(f"{path}: the ONNX model's input {net.name!r} has shape {shape}; "
                         "expected images (N, C, H, W)")
    if isinstance(shape[1], int) and shape[1] != spec.channels:
        raise ValueError(f"{path}: the ONNX model takes {shape[1]}-channel images, not "
                         f"{spec.channels} (--channels {spec.channels}); give --channels "
                         f"{shape[1]}" if shape[1] in (1, 3) else "")
    fixed = [d for d in shape[2:] if isinstance(d, int)]
    if fixed and fixed != [spec.size] * len(fixed):
        raise ValueError(f"{path}: the ONNX model takes {shape[2]}x{shape[3]} images, not "
                         f"{spec.size}x{spec.size}; give --input-size {fixed[0]}")
    return net


def _state_dict_model(path: Path, arch: str) -> nn.Module:
    import torchvision

    from biaslab.model.architectures import load_torch_dict

    known = torchvision.models.list_models(module=torchvision.models)
    if arch not in known:
        import difflib

        close = difflib.get_close_matches(arch, known, n=3)
        raise ValueError(f"--arch {arch!r}: not a torchvision classification architecture"
                         + (f"; did you mean {', '.join(close)}?" if close else ""))
    expected = (f"expected a state dict of torchvision.models.{arch}, saved with "
                f"torch.save(model.state_dict(), '{path}')")
    state = load_torch_dict(path, holds="a state dict", expected=expected, key="--model-file")
    state = state.get("state_dict", state) if isinstance(state.get("state_dict"), dict) else state
    state = {k.removeprefix("module."): v for k, v in state.items()}  # saved from DataParallel
    last = [v for k, v in state.items() if k.endswith(".weight") and getattr(v, "ndim", 0) == 2]
    net = getattr(torchvision.models, arch)(weights=None,
                                            **({"num_classes": last[-1].shape[0]} if last else {}))
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        lines = [s.strip() for s in str(exc).splitlines() if s.strip()]
        raise ValueError(f"{path} does not fit --arch {arch}: "
                         f"{'; '.join(lines[1:3]) or lines[0]}"[:400]) from None
    return net


def gradcam_layer(model: ModelFile, name: str | None = None) -> nn.Module:
    """The layer Grad-CAM reads: the module ``name`` of the loaded model, or by default the
    last one whose output is still an image (4-D, both sides > 1; e.g. a resnet's
    ``layer4``, a densenet's ``features``), found on a probe batch."""
    modules = dict(model.net.named_modules())
    if name is not None:
        if name not in modules:
            shown = ", ".join(list(n for n in modules if n)[-8:])
            raise ValueError(f"--gradcam-layer {name!r}: {model.source} has no such module; "
                             f"its last ones: {shown}")
        return modules[name]
    seen: list[tuple[str, tuple]] = []
    hooks = [m.register_forward_hook(
        lambda _m, _i, out, n=n: seen.append((n, tuple(getattr(out, "shape", ())))))
        for n, m in modules.items() if n]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 1, model.spec.size, model.spec.size))
    finally:
        for hook in hooks:
            hook.remove()
    images = [n for n, s in seen if len(s) == 4]
    spatial = [n for n, s in seen if len(s) == 4 and min(s[2:]) > 1]
    if not images:
        raise ValueError(f"{model.source}: no layer with an image-shaped output for Grad-CAM")
    return modules[(spatial or images)[-1]]


def score(model: ModelFile, images: Callable[[int, int], np.ndarray], n: int, *,
          batch_size: int = 64, device: str | torch.device = "cpu",
          progress: Callable[[int], None] | None = None) -> np.ndarray:
    """The logit of each of ``n`` images, in batches: (n,) float64.

    ``images(start, stop)`` gives the model inputs of images ``start`` to ``stop``
    (:func:`biaslab.data.bias.model_inputs`); ``progress`` is called with the images done
    after each batch.
    """
    model = model.to(device).eval()
    out = np.empty(n, dtype=np.float64)
    with torch.no_grad():
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            x = torch.from_numpy(images(start, stop)).to(device)
            out[start:stop] = model(x).double().cpu().numpy()
            if progress:
                progress(stop - start)
    if not np.isfinite(out).all():
        bad = np.flatnonzero(~np.isfinite(out))
        raise ValueError(f"{model.source}: the model gave no finite logit for {len(bad)} "
                         f"image(s) (the first: image {bad[0] + 1})")
    return out


def parse_numbers(text: str | Sequence[float], option: str) -> tuple[float, ...]:
    """``"0.485,0.456,0.406"`` -> a tuple of floats; ``option`` names it in the error."""
    if not isinstance(text, str):
        return tuple(float(v) for v in text)
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"{option}: expected numbers separated by commas, got {text!r}") from None
