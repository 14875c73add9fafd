"""The training engine: architectures, recipes, augmentation, resume after a kill, DDP."""

import os
import re
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from biaslab.config import ConfigError, TrainConfig, parse_section
from biaslab.data.bias import BiasSpec
from biaslab.model.architectures import MODELS, build_model
from biaslab.model.batches import TrainData
from biaslab.model.checkpoint import load_bias, load_checkpoint, save_checkpoint
from biaslab.model.predict import predict_scores
from biaslab.model.train import augment, degenerate, fit, per_sample_loss
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


def _full_state_dict_bytes(tmp_path):
    import torchvision

    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "full.pth")
    return (tmp_path / "full.pth").read_bytes()


@pytest.mark.parametrize("content", [
    lambda tmp: np.random.default_rng(0).bytes(4096),  # random bytes
    lambda tmp: b"resnet18 weights: see the course page\n",  # a text file
    lambda tmp: _full_state_dict_bytes(tmp)[:50_000],  # a truncated download
    lambda tmp: b"",  # an empty file
], ids=["random", "text", "truncated", "empty"])
def test_corrupt_pretrained_file_is_one_clear_error_naming_it(tmp_path, content):
    path = tmp_path / "bad.pth"
    path.write_bytes(content(tmp_path))
    with pytest.raises(ValueError, match=r"train\.pretrained: .*bad\.pth is not readable by "
                       r"torch\.load .*expected a torchvision state dict saved with torch\.save"):
        build_model("resnet18", 1, pretrained=str(path))


def test_pretrained_file_holding_something_else_than_a_state_dict_says_so(tmp_path):
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    with pytest.raises(ValueError, match=r"tensor\.pth holds a Tensor, not a state dict"):
        build_model("resnet18", 1, pretrained=str(tmp_path / "tensor.pth"))


def test_built_models_know_their_input_channels():
    assert build_model("small_cnn", 2, width=4).in_channels == 2
    assert build_model("resnet18", 1).in_channels == 1


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
    messages = []
    curves = fit(pixels, train, val, config, log=messages.append).curves
    assert len(curves) == 3  # the first epoch sets the best, two more without improvement
    assert messages == ["early stop: no better val_loss for 2 epochs"]


@pytest.mark.parametrize("empty", ["train", "val"])
def test_fit_without_train_or_val_rows_is_one_error_naming_the_split(empty):
    pixels, train, val = _tiny()
    none = TrainData(np.arange(0), np.zeros(0, np.int8), None)
    train, val = (none, val) if empty == "train" else (train, none)
    with pytest.raises(ValueError, match=rf"^the {empty} split has no rows: training needs "
                       r"images in both train and val"):
        fit(pixels, train, val, TrainConfig(epochs=1, width=4))


def test_weighted_sampler_trains_only_on_rows_it_can_draw():
    pixels, train, val = _tiny()
    # weight 0 on every negative: the sampler never draws one, so the model learns "always 1"
    train.weights, train.sampler = (train.labels == 1).astype(float), True
    config = TrainConfig(epochs=3, lr=0.01, width=4)
    curves = fit(pixels, train, val, config).curves
    assert curves["val_acc"].iloc[-1] == pytest.approx(val.labels.mean())
    # as loss weights instead, the same zero weights give the same outcome by another path
    train.sampler = False
    curves_loss = fit(pixels, train, val, config).curves
    assert curves_loss["val_acc"].iloc[-1] == pytest.approx(val.labels.mean())


class _Killed(Exception):
    """Stands for a SIGKILL right after an epoch's report (and its checkpoint)."""


def _kill_at(epoch):
    def on_epoch(row):
        if row["epoch"] == epoch:
            raise _Killed
    return on_epoch


def _assert_same_model(a, b):
    for (key, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), key


def test_checkpoint_of_the_same_fingerprint_is_resumed_and_ends_like_a_straight_run(tmp_path):
    pixels, train, val = _tiny()
    config, ckpt = TrainConfig(epochs=3, lr=0.01, width=4), tmp_path / "resume.pt"
    straight = fit(pixels, train, val, config)
    with pytest.raises(_Killed):
        fit(pixels, train, val, config, checkpoint=ckpt, fingerprint="a", on_epoch=_kill_at(2))
    messages = []
    resumed = fit(pixels, train, val, config, checkpoint=ckpt, fingerprint="a",
                  log=messages.append)
    assert messages == [f"resuming from {ckpt} after epoch 2"]
    _assert_same_model(straight.model, resumed.model)
    pd.testing.assert_frame_equal(straight.curves.drop(columns="img_per_s"),
                                  resumed.curves.drop(columns="img_per_s"))


def test_checkpoint_of_another_fingerprint_is_ignored_and_overwritten(tmp_path):
    pixels, train, val = _tiny()
    config, ckpt = TrainConfig(epochs=3, lr=0.01, width=4), tmp_path / "resume.pt"
    # a run killed while training on other data (the labels flipped), as after a bias change
    other = TrainData(train.rows, 1 - train.labels, None)
    with pytest.raises(_Killed):
        fit(pixels, other, val, config, checkpoint=ckpt, fingerprint="a", on_epoch=_kill_at(2))
    messages = []
    fresh = fit(pixels, train, val, config, checkpoint=ckpt, fingerprint="b",
                log=messages.append)
    assert messages == [f"checkpoint {ckpt} was made from other inputs/params/code: "
                        "starting afresh"]
    _assert_same_model(fit(pixels, train, val, config).model, fresh.model)
    state = torch.load(ckpt, weights_only=False)
    assert state["fingerprint"] == "b" and state["epoch"] == 3


def test_checkpoint_of_other_train_params_is_ignored(tmp_path):
    pixels, train, val = _tiny()
    ckpt = tmp_path / "resume.pt"
    with pytest.raises(_Killed):
        fit(pixels, train, val, TrainConfig(epochs=3, lr=0.01, width=4), checkpoint=ckpt,
            on_epoch=_kill_at(2))
    messages = []
    fit(pixels, train, val, TrainConfig(epochs=3, lr=0.02, width=4), checkpoint=ckpt,
        log=messages.append)
    assert messages == [f"checkpoint {ckpt} was made from other inputs/params/code: "
                        "starting afresh"]


def test_a_model_that_cannot_learn_is_flagged_and_one_that_learns_is_not():
    pixels, train, val = _tiny()
    # every image the same: nothing separates the labels, the scores cannot spread
    blank = fit(np.zeros_like(pixels), train, val, TrainConfig(epochs=2, lr=0.01, width=4))
    assert blank.degenerate.startswith("validation scores are nearly constant")
    # lr ~ 0 for one epoch: the untrained model puts every image in one class
    frozen = fit(pixels, train, val, TrainConfig(epochs=1, lr=1e-12, width=4))
    assert frozen.degenerate.startswith("the model predicts class")
    # 9 steps in all: too few for the default warm-up and weight average, plain Adam learns
    learnt = fit(pixels, train, val, TrainConfig(epochs=3, lr=0.01, width=4, scheduler="none",
                                                 ema=0.0))
    assert learnt.degenerate is None and learnt.curves["val_acc"].iloc[-1] > 0.7


@pytest.mark.parametrize(("logits", "labels", "accs", "reason"), [
    ([0.0, 0.0, 0.0, 0.0], [0, 1, 0, 1], [0.5], r"nearly constant \(std 0 < 0\.001\)"),
    ([1.0, 2.0, 3.0, 0.5], [0, 1, 0, 1], [0.5], r"predicts class 1 for every validation image"),
    ([-1.0, -2.0, -3.0, -0.5], [0, 1, 1, 1], [0.25], r"predicts class 0 for every"),
    ([-1.0, 2.0, 3.0, -0.5], [0, 0, 0, 1], [0.25, 0.25, 0.25], r"val_acc 0\.250 in all 3 "
     "epochs, no better than always predicting the majority class"),
    ([np.nan, 1.0, 2.0, -1.0], [0, 1, 0, 1], [0.5], r"not finite: training diverged"),
])
def test_degenerate_names_the_sign(logits, labels, accs, reason):
    assert re.search(reason, degenerate(np.array(logits), np.array(labels), accs))


@pytest.mark.parametrize(("logits", "labels", "accs"), [
    ([-1.0, 2.0, -3.0, 0.5], [0, 1, 0, 1], [0.75, 1.0]),  # learnt
    ([1.0, 2.0, 3.0, 0.5], [1, 1, 1, 1], [1.0]),  # one class only: all on one side is right
    ([-1.0, 2.0, -3.0, 0.5], [0, 1, 0, 1], [1.0, 1.0, 1.0]),  # perfect from the first epoch
    ([], [], []),  # no validation rows: nothing to judge
])
def test_degenerate_leaves_a_model_that_learnt_alone(logits, labels, accs):
    assert degenerate(np.array(logits), np.array(labels, dtype=int), accs) is None


def _run_script(out, *extra, env=None, **popen):
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    return subprocess.Popen([sys.executable, str(SCRIPT), str(out), *extra], env=env,
                            stderr=subprocess.PIPE, text=True, **popen)


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_gpu_benchmark_code_path_runs_on_the_cpu():
    sys.path.insert(0, str(ROOT))
    from benchmarks.train import gpu_figures

    figures = gpu_figures(batch=2, steps=1, size=64, device="cpu")
    # resnet34 training step at 64x64 gray: about 3 x 0.3 GFLOP per image
    assert 1e9 < figures["flops_per_step"] / 2 < 5e9 and figures["img_per_s"] > 0


def test_a_patch_shortcut_is_learnt_recorded_in_the_model_and_shown_again_by_predict(tmp_path):
    # images that say nothing about the label, S a copy of it shown as a white 2 x 2 patch
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 200, (120, 8, 8), dtype=np.uint8)
    labels = rng.integers(0, 2, 120).astype(np.int8)
    rows, bias = np.arange(120), BiasSpec(kind="patch", patch_size=2, patch_position="top_left")
    train = TrainData(rows[:80], labels[:80], labels[:80])
    # 6 steps in all: too few for the default recipe's warm-up and weight average, which this
    # test is not about (tests/test_train_recipe.py is)
    config = TrainConfig(epochs=3, lr=0.01, width=4, scheduler="none", ema=0.0)
    fitted = fit(pixels, train, TrainData(rows[80:], labels[80:], labels[80:]), config,
                 bias=bias)
    assert fitted.model.in_channels == 1 and train.in_channels(bias) == 1
    path = tmp_path / "model.pt"
    save_checkpoint(fitted.model, config, train.in_channels(bias), path, bias=bias)
    assert load_bias(path) == bias
    model, _ = load_checkpoint(path)
    test = pd.DataFrame({"row": rows[80:], "label": labels[80:], "split": "test",
                         "s": labels[80:]})
    scores = predict_scores(model, pixels, test, bias=load_bias(path))
    assert ((scores["score"] > 0.5) == test["label"]).mean() > 0.9  # through the patch alone
    assert (scores["score_s1"] > scores["score_s0"]).all()  # forcing the patch on raises all
    # the same model under another bias, or saved as another: one error each
    with pytest.raises(ValueError, match=r"^the model takes 1 input channel\(s\) but the inputs "
                       r"have 2 \(bias\.kind = noise_channel\): a model trained with another"):
        predict_scores(model, pixels, test, bias=BiasSpec())
    with pytest.raises(ValueError, match=r"^in_channels = 2, but bias\.kind = patch gives 1 "):
        save_checkpoint(fitted.model, config, 2, tmp_path / "other.pt", bias=bias)


def test_a_saved_model_without_a_recorded_bias(tmp_path):
    config = TrainConfig(width=4)
    save_checkpoint(build_model("small_cnn", 1, width=4), config, 1, tmp_path / "one.pt")
    assert load_bias(tmp_path / "one.pt") == BiasSpec(kind="none")
    save_checkpoint(build_model("small_cnn", 2, width=4), config, 2, tmp_path / "two.pt")
    with pytest.raises(ValueError, match=r"two\.pt: a model trained with the noise channel that "
                       r"does not record its bias \(bias\.seed unknown\); expected a model"):
        load_bias(tmp_path / "two.pt")
