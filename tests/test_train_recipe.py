"""The stable recipe: cosine schedule with warm-up, weight average, BatchNorm statistics
recomputed, and the swing figure that flags an unstable run."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from biaslab.config import ConfigError, TrainConfig, parse_section
from biaslab.model.batches import TrainData
from biaslab.model.recipe import (
    MAX_SWING,
    averaged_model,
    cosine_factor,
    cosine_schedule,
    recompute_batchnorm,
    swing,
    unstable,
)
from biaslab.model.train import fit


def test_cosine_factor_warms_up_linearly_then_decays_to_zero():
    total, warmup = 20, 4
    factors = [cosine_factor(t, total, warmup) for t in range(total + 1)]
    assert factors[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert factors[4] == pytest.approx(1.0)  # the decay starts at the peak
    assert factors[12] == pytest.approx(0.5)  # half-way through the decay: cos(pi/2)
    assert factors[total] == pytest.approx(0.0)
    assert np.all(np.diff(factors[4:]) <= 0)  # monotone after warm-up
    assert cosine_factor(0, 10, 0) == pytest.approx(1.0)  # no warm-up: starts at the peak


def test_cosine_schedule_steps_the_optimizer_per_batch():
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.1)
    scheduler = cosine_schedule(optimizer, epochs=2, steps_per_epoch=5, warmup_epochs=0.4)
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    # warm-up of round(0.4 x 5) = 2 steps, then cosine over the 8 others
    expected = [0.05, 0.1] + [0.05 * (1 + math.cos(math.pi * k / 8)) for k in range(8)]
    assert lrs == pytest.approx(expected)


def test_averaged_model_is_the_exponential_moving_average_of_the_weights():
    model = nn.Linear(1, 1, bias=False)
    average = averaged_model(model, decay=0.5)
    expected = None
    for value in (1.0, 3.0, -2.0):
        with torch.no_grad():
            model.weight.fill_(value)
        average.update_parameters(model)
        # the first update copies the weights, each later one moves half-way towards them
        expected = value if expected is None else 0.5 * expected + 0.5 * value
        assert average.module.weight.item() == pytest.approx(expected)
    assert expected == pytest.approx(0.0)


def test_recompute_batchnorm_sets_the_exact_statistics_and_restores_the_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 1), nn.BatchNorm2d(3)).eval()
    x = torch.randn(64, 1, 4, 4) * 3 + 2
    recompute_batchnorm(model, (x[i:i + 16] for i in range(0, 64, 16)))
    features = model[0](x).detach()
    bn = model[1]
    # equal batches: the mean of the batch means is the mean over all inputs
    torch.testing.assert_close(bn.running_mean, features.mean((0, 2, 3)))
    # the unbiased variance of each batch, averaged (what BatchNorm records per batch)
    per_batch = torch.stack([features[i:i + 16].var((0, 2, 3), unbiased=False) * 256 / 255
                             for i in range(0, 64, 16)])
    torch.testing.assert_close(bn.running_var, per_batch.mean(0))
    assert bn.momentum == 0.1 and not model.training  # left as they were


def test_recompute_batchnorm_replaces_stale_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm1d(2))
    model.train()
    model(torch.randn(8, 2) + 100)  # stale running statistics of other inputs
    x = torch.randn(32, 2)
    recompute_batchnorm(model, [x])
    torch.testing.assert_close(model[0].running_mean, x.mean(0))
    assert model.training  # the flag it had


def test_swing_is_the_std_of_the_second_half_and_flags_above_the_bound():
    # the default run's seed 0 before the recipe: eval-mode val_bacc by epoch
    swinging = pd.DataFrame({"val_bacc": [0.70, 0.70, 0.78, 0.75, 0.75, 0.67, 0.81, 0.64,
                                          0.69, 0.57]})
    figure = swing(swinging)
    assert figure == pytest.approx(np.std([0.67, 0.81, 0.64, 0.69, 0.57], ddof=1))
    assert figure > MAX_SWING
    assert unstable(figure).startswith("val_bacc swings from epoch to epoch: std 0.088")
    steady = pd.DataFrame({"val_bacc": [0.5, 0.6, 0.7, 0.80, 0.90, 0.91, 0.90, 0.91]})
    assert swing(steady) == pytest.approx(np.std([0.90, 0.91, 0.90, 0.91], ddof=1))
    assert unstable(swing(steady)) is None
    assert swing(steady.head(3)) is None and unstable(None) is None  # too few epochs


def _tiny(n=160, seed=0):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (n, 8, 8), dtype=np.uint8)
    labels = (pixels[:, :4].mean((1, 2)) > pixels[:, 4:].mean((1, 2))).astype(np.int8)
    rows = np.arange(n)
    return pixels, TrainData(rows[:120], labels[:120], None), TrainData(rows[120:],
                                                                         labels[120:], None)


def test_fit_records_the_cosine_learning_rate_of_each_epochs_first_batch():
    pixels, train, val = _tiny()
    config = TrainConfig(epochs=4, batch_size=40, lr=0.01, width=4, warmup_epochs=1.0)
    curves = fit(pixels, train, val, config).curves
    # 3 batches an epoch, warm-up over the first 3: epoch 1 starts at lr / 3, epoch 2 at the
    # peak, then the cosine over the 9 remaining steps
    expected = [0.01 / 3, 0.01] + [0.005 * (1 + math.cos(math.pi * k / 9)) for k in (3, 6)]
    assert curves["lr"].tolist() == pytest.approx(expected)


def test_fit_keeps_the_weight_average_with_its_own_batchnorm_statistics():
    pixels, train, val = _tiny()
    base = dict(epochs=3, lr=0.01, width=4, batch_size=40)  # equal batches: exact means
    averaged = fit(pixels, train, val, TrainConfig(**base, ema=0.9)).model
    raw = fit(pixels, train, val, TrainConfig(**base, ema=0.0)).model
    # the same run (seed, shuffles), but the kept weights are the average, not the last ones
    weight = "features.0.weight"
    assert not torch.equal(averaged.state_dict()[weight], raw.state_dict()[weight])
    # the kept statistics are those of the kept weights over the training split
    from biaslab.data.bias import DEFAULT_BIAS, model_inputs
    x = torch.from_numpy(model_inputs(pixels, train.rows, None, DEFAULT_BIAS))
    features = averaged.features[0](x).detach()
    torch.testing.assert_close(averaged.features[1].running_mean, features.mean((0, 2, 3)),
                               atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("ema", 1.0, r"a number in \[0, 1\)"),
    ("ema", -0.1, r"a number in \[0, 1\)"),
    ("warmup_epochs", -1, "a finite number >= 0"),
    ("scheduler", "linear", "one of none, step, cosine"),
])
def test_recipe_keys_reject_what_they_cannot_use(key, value, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_section("train", {key: value})
