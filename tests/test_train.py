"""The training engine: architectures, recipes, augmentation, resume after a kill, DDP."""

import os
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from biaslab.config import ConfigError, TrainConfig, parse_section
from biaslab.models import MODELS, build_model
from biaslab.train import TrainData, augment, fit, per_sample_loss
from tests.conftest import ROOT, VENV_BIN

SCRIPT = ROOT / "tests" / "train_script.py"


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("channels", [1, 2])
def test_every_architecture_trains_a_step(name, channels):
    torch.manual_seed(0)
    size = 64 if name == "alexnet" else 32  # alexnet's pooling needs at least 64x64
    model = build_model(name, channels, width=4)
    x, y = torch.randn(2, channels, size, size), torch.tensor([0.0, 1.0])
    logits = model(x)
    assert logits.shape == (2,)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
    loss.backward()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    optimizer.step()
    assert torch.isfinite(loss)


def test_pretrained_weights_load_from_a_local_file_and_gray_is_the_rgb_mean(tmp_path):
    import torchvision

    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    model = build_model("resnet18", 2, pretrained=str(tmp_path / "resnet18.pth"))
    conv = model.net.conv1.weight
    torch.testing.assert_close(conv[:, 0], reference.conv1.weight.mean(dim=1))
    assert torch.all(conv[:, 1] == 0)  # the bias channel starts unlearnt
    torch.testing.assert_close(model.net.layer1[0].conv1.weight, reference.layer1[0].conv1.weight)


def test_missing_pretrained_file_says_what_to_put_where(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train\.pretrained: .*nope\.pth not found.*put"):
        build_model("resnet34", 1, pretrained=str(tmp_path / "nope.pth"))


def test_unknown_model_and_bad_recipe_values_are_config_errors():
    with pytest.raises(ConfigError, match=r"train\.model = 'vgg'.*resnet18"):
        parse_section("train", {"model": "vgg"})
    with pytest.raises(ConfigError, match=r"train\.loss = 'hinge'.*bce, focal"):
        parse_section("train", {"loss": "hinge"})
    with pytest.raises(ConfigError, match=r"train\.focal_alpha = 1\.5"):
        parse_section("train", {"focal_alpha": 1.5})


def test_focal_loss_reduces_to_bce_at_gamma_zero_and_discounts_easy_examples():
    logits, y = torch.tensor([3.0, -2.0, 0.1]), torch.tensor([1.0, 0.0, 0.0])
    bce = per_sample_loss(TrainConfig(loss="bce"))(logits, y)
    torch.testing.assert_close(per_sample_loss(TrainConfig(loss="focal", focal_gamma=0.0))(
        logits, y), bce)
    focal = per_sample_loss(TrainConfig(loss="focal", focal_gamma=2.0))(logits, y)
    assert torch.all(focal < bce)
    ratio = focal / bce
    assert ratio[0] < ratio[2]  # the easy example is discounted most


def test_augment_keeps_shape_is_reproducible_and_only_moves_pixels():
    x = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).reshape(2, 1, 8, 8)
    a = augment(x, torch.Generator().manual_seed(1))
    b = augment(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b)
    # reflect padding + crop only rearranges values of the image
    assert set(a[0].flatten().tolist()) <= set(x[0].flatten().tolist())


def _tiny(n=120, seed=0):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (n, 8, 8), dtype=np.uint8)
    labels = (pixels[:, :4].mean((1, 2)) > pixels[:, 4:].mean((1, 2))).astype(np.int8)
    rows = np.arange(n)
    return pixels, TrainData(rows[:80], labels[:80], None), TrainData(rows[80:], labels[80:], None)


def test_early_stopping_stops_when_validation_loss_stalls():
    pixels, train, val = _tiny()
    config = TrainConfig(epochs=10, lr=1e-12, patience=2, width=4)  # lr ~0: val loss cannot drop
    _, curves = fit(pixels, train, val, config, log=lambda m: None)
    assert len(curves) == 3  # the first epoch sets the best, two more without improvement


def test_weighted_sampler_trains_only_on_rows_it_can_draw():
    pixels, train, val = _tiny()
    # weight 0 on every negative: the sampler never draws one, so the model learns "always 1"
    train.weights, train.sampler = (train.labels == 1).astype(float), True
    config = TrainConfig(epochs=3, lr=0.01, width=4)
    model, curves = fit(pixels, train, val, config, log=lambda m: None)
    assert curves["val_acc"].iloc[-1] == pytest.approx(val.labels.mean())
    # as loss weights instead, the same zero weights give the same outcome by another path
    train.sampler = False
    _, curves_loss = fit(pixels, train, val, config, log=lambda m: None)
    assert curves_loss["val_acc"].iloc[-1] == pytest.approx(val.labels.mean())


def _run_script(out, *extra, env=None, **popen):
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    return subprocess.Popen([sys.executable, str(SCRIPT), str(out), *extra], env=env,
                            stderr=subprocess.PIPE, text=True, **popen)


def test_killed_training_resumes_and_ends_like_an_uninterrupted_run(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    straight.mkdir(), resumed.mkdir()
    ckpt = resumed / "resume.pt"
    assert _run_script(straight).wait() == 0

    proc = _run_script(resumed, "--checkpoint", str(ckpt))
    for line in proc.stderr:  # kill it hard once it is past epoch 3
        if line.startswith("epoch 3/"):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and ckpt.is_file()
    assert not (resumed / "model-0.pt").exists()

    again = _run_script(resumed, "--checkpoint", str(ckpt))
    log = again.stderr.read()
    assert again.wait() == 0 and "resuming from" in log
    a, b = torch.load(straight / "model-0.pt"), torch.load(resumed / "model-0.pt")
    for key in a:
        assert torch.equal(a[key], b[key]), key
    curves_a, curves_b = (pd.read_csv(d / "curves-0.csv").drop(columns="img_per_s")
                          for d in (straight, resumed))
    pd.testing.assert_frame_equal(curves_a, curves_b)


def test_ddp_on_two_cpu_processes_keeps_replicas_identical(tmp_path):
    torchrun = os.path.join(VENV_BIN, "torchrun")
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", str(SCRIPT), str(tmp_path),
         "--epochs", "2"],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = torch.load(tmp_path / "model-0.pt"), torch.load(tmp_path / "model-1.pt")
    for key in a:
        assert torch.equal(a[key], b[key]), key
    curves = pd.read_csv(tmp_path / "curves-0.csv")
    assert len(curves) == 2 and np.isfinite(curves["train_loss"]).all()


def test_gpu_benchmark_code_path_runs_on_the_cpu():
    sys.path.insert(0, str(ROOT))
    from benchmarks.train import gpu_figures

    figures = gpu_figures(batch=2, steps=1, size=64, device="cpu")
    # resnet34 training step at 64x64 gray: about 3 x 0.3 GFLOP per image
    assert 1e9 < figures["flops_per_step"] / 2 < 5e9 and figures["img_per_s"] > 0
