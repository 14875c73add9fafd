"""Checkpoints: the fingerprint a resume state is tied to, and the final model's file."""

import re

import numpy as np
import pytest
import torch

from biaslab.config import TrainConfig
from biaslab.model.architectures import build_model
from biaslab.model.checkpoint import digest, load_checkpoint, save_checkpoint


def test_digest_follows_contents_and_params_not_paths(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"\x00" * 100_000 + b"pixels")
    b.write_bytes(a.read_bytes())
    params = {"train": {"lr": 0.01}, "bias.seed": 0}
    key = digest([a], params)
    assert len(key) == 64 and digest([b], params) == key  # same bytes, other name
    b.write_bytes(b"\x00" * 100_000 + b"pixelS")
    assert digest([b], params) != key  # one byte changed
    assert digest([a], {**params, "bias.seed": 1}) != key
    assert digest([a, a], params) != key  # another input file


@pytest.mark.parametrize("channels", [1, 2])
def test_final_model_round_trips_with_its_channels_in_stable_bytes(tmp_path, channels):
    config = TrainConfig(width=4, epochs=2)
    torch.manual_seed(0)
    model = build_model("small_cnn", channels, width=4)
    save_checkpoint(model, config, channels, tmp_path / "model.pt")
    save_checkpoint(model, config, channels, tmp_path / "again.pt")
    # the same model gives the same bytes whatever the file is called: DVC sees no change
    assert (tmp_path / "model.pt").read_bytes() == (tmp_path / "again.pt").read_bytes()
    loaded, loaded_config = load_checkpoint(tmp_path / "model.pt")
    assert loaded.in_channels == channels and loaded_config == config and not loaded.training
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(
        (3, channels, 12, 12), dtype=np.float32))
    torch.testing.assert_close(loaded(x), model.eval()(x))


def _model_file(tmp_path, **changes):
    """A model.pt as save_checkpoint writes it, with ``changes`` to its dict."""
    path = tmp_path / "model.pt"
    save_checkpoint(build_model("small_cnn", 1, width=4), TrainConfig(width=4), 1, path)
    ckpt = torch.load(path, weights_only=True)
    torch.save({**ckpt, **changes}, path)
    return path


RERUN = (r"expected a model\.pt written by the train stage: rerun it "
         r"\(dvc repro train@SCHEME-SEED, "
         r"or biaslab train\) or fetch it \(dvc pull\)$")


@pytest.mark.parametrize(("write", "said"), [
    # what stands in for a model when it was not fetched or not copied whole
    (lambda p: p.write_bytes(b"version https://git-lfs.github.com/spec/v1\n"),
     r"model\.pt is not readable by torch\.load \(UnpicklingError\)"),
    (lambda p: p.write_bytes(b""), r"model\.pt is not readable by torch\.load \(EOFError\)"),
    (lambda p: p.write_bytes(_model_file(p.parent).read_bytes()[:3000]),
     r"model\.pt is not readable by torch\.load \(RuntimeError\)"),
    (lambda p: torch.save([1, 2], p), r"model\.pt holds a list, not a model saved by train"),
    # another program's file: a bare state dict, a config of another version, other weights
    (lambda p: torch.save(build_model("small_cnn", 1, width=4).state_dict(), p),
     r"model\.pt: no key\(s\) \['model', 'config', 'in_channels'\] \(a bare state dict"),
    (lambda p: _model_file(p.parent, config={"width": 4, "dropout": 0.5}),
     r"model\.pt: not a model this version can rebuild \(ConfigError: .*dropout"),
    (lambda p: _model_file(p.parent, in_channels=2),
     r"model\.pt: not a model this version can rebuild \(RuntimeError: Error\(s\) in loading "
     r"state_dict for SmallCNN: size mismatch"),
], ids=["lfs-pointer", "empty", "truncated", "a-list", "bare-state-dict", "other-config",
        "other-weights"])
def test_a_file_that_is_not_a_model_saved_by_train_is_one_error_naming_it(tmp_path, write, said):
    path = tmp_path / "model.pt"
    write(path)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path.parent))}/{said}.*; {RERUN}"):
        load_checkpoint(path)


def test_a_missing_model_file_says_what_writes_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"model\.pt: missing; {RERUN}"):
        load_checkpoint(tmp_path / "model.pt")
