"""biaslab.config: every section parses, unknown keys and bad values fail naming the key."""

import dataclasses
import re

import pytest

from biaslab.config import (
    METHODS,
    SCHEMES,
    SECTIONS,
    SOURCES,
    BiasConfig,
    ConfigError,
    SplitConfig,
    load_params,
    load_section,
    parse_section,
)


@pytest.mark.parametrize("name", sorted(SECTIONS))
@pytest.mark.parametrize("raw", [None, {}])
def test_every_section_parses_its_defaults(name, raw):
    cfg = parse_section(name, raw)
    assert isinstance(cfg, SECTIONS[name])
    assert cfg == SECTIONS[name]()  # missing keys take the defaults


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_defaults_round_trip_through_a_raw_mapping(name):
    """A section written out with every default key is accepted as it is."""
    default = SECTIONS[name]()
    assert parse_section(name, dataclasses.asdict(default)) == default


def test_sections_are_frozen():
    cfg = parse_section("bias", {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.p0 = 0.5


def test_values_given_are_kept():
    cfg = parse_section("bias", {"kind": "none", "p0": 0, "p1": 1.0, "seed": 3})
    assert cfg == BiasConfig(kind="none", p0=0, p1=1.0, seed=3)


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_unknown_key_names_section_and_key(name):
    with pytest.raises(ConfigError, match=rf"{name}\.not_a_key = 1 is not allowed.*known key"):
        parse_section(name, {"not_a_key": 1})


def test_unknown_section():
    with pytest.raises(ConfigError, match=r"nosuch.*one of the sections data, prepare"):
        parse_section("nosuch", {})


def test_section_that_is_not_a_mapping():
    with pytest.raises(ConfigError, match=r"bias = \[1, 2\].*a mapping"):
        parse_section("bias", [1, 2])


@pytest.mark.parametrize(
    ("section", "key", "value", "type_name"),
    [
        ("bias", "p0", "x", "float"),
        ("bias", "p0", None, "float"),
        ("bias", "p0", True, "float"),  # bool is not a number here
        ("bias", "seed", 1.0, "int"),
        ("train", "epochs", 1.5, "int"),
        ("train", "epochs", True, "int"),
        ("train", "batch_size", "64", "int"),
        ("train", "lr", "1e-3", "float"),  # a quoted string stays a string
        ("train", "device", 0, "str"),
        ("prepare", "size", False, "int"),
        ("data", "negative", 1, "list"),
        ("data", "negative", [1, "7"], "list"),
        ("data", "positive", [True], "list"),
        ("split", "fractions", [0.6, 0.2, 0.2], "dict"),
        ("split", "fractions", {"train": "0.6", "val": 0.2, "test": 0.2}, "dict"),
        ("weights", "schemes", "none", "list"),
        ("evaluate", "n_boot", 10.0, "int"),
    ],
)
def test_wrong_type_names_key_and_expected_type(section, key, value, type_name):
    with pytest.raises(ConfigError, match=rf"{section}\.{key} = .* of type {type_name}"):
        parse_section(section, {key: value})


def test_int_is_accepted_where_float_is_expected():
    assert parse_section("bias", {"p0": 0, "p1": 1}).p1 == 1
    fractions = {"train": 1 / 2, "val": 1 / 4, "test": 1 / 4}
    assert parse_section("split", {"fractions": fractions}).fractions == fractions


@pytest.mark.parametrize("key", ["p0", "p1"])
@pytest.mark.parametrize("value", [-0.01, 1.01, float("nan"), float("inf")])
def test_probability_outside_unit_interval(key, value):
    with pytest.raises(ConfigError, match=rf"bias\.{key} = .*a probability in \[0, 1\]"):
        parse_section("bias", {key: value})


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_probability_bounds_are_allowed(value):
    assert parse_section("bias", {"p0": value}).p0 == value


@pytest.mark.parametrize(
    ("fractions", "total"),
    [
        ({"train": 0.6, "val": 0.2, "test": 0.3}, "1.1"),
        ({"train": 0.5, "val": 0.2, "test": 0.2}, "0.9"),
    ],
)
def test_split_fractions_must_sum_to_one(fractions, total):
    pattern = rf"split\.fractions.*summing to 1 \(they sum to {total}\)"
    with pytest.raises(ConfigError, match=pattern):
        parse_section("split", {"fractions": fractions})


def test_split_default_fractions_sum_to_one_despite_rounding():
    # 0.6 + 0.2 + 0.2 is 1.0000000000000002 in floating point
    assert SplitConfig().fractions == {"train": 0.6, "val": 0.2, "test": 0.2}


@pytest.mark.parametrize(
    "fractions",
    [
        {"train": 0.8, "val": 0.2},
        {"train": 0.6, "val": 0.2, "test": 0.1, "holdout": 0.1},
        {"train": 0.6, "valid": 0.2, "test": 0.2},
    ],
)
def test_split_fractions_need_exactly_train_val_test(fractions):
    with pytest.raises(ConfigError, match=r"split\.fractions.*exactly the keys train, val, test"):
        parse_section("split", {"fractions": fractions})


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.2])
def test_each_split_fraction_in_open_unit_interval(bad):
    fractions = {"train": 0.5, "val": 0.5, "test": bad}
    with pytest.raises(ConfigError, match=r"split\.fractions\.\w+ = .*a fraction in \(0, 1\)"):
        parse_section("split", {"fractions": fractions})


@pytest.mark.parametrize(
    ("section", "key", "value", "choices"),
    [
        ("data", "source", "nih_typo", SOURCES),
        ("bias", "kind", "patch_typo", ("none", "noise_channel")),
        ("train", "optimizer", "adamw", ("adam", "sgd")),
        ("train", "device", "mps", ("auto", "cpu", "cuda")),
        ("train", "model", "resnet", ("small_cnn",)),
    ],
)
def test_unknown_choice_names_value_and_choices(section, key, value, choices):
    pattern = rf"{section}\.{key} = '{value}' is not allowed; expected one of " + ", ".join(choices)
    with pytest.raises(ConfigError, match=pattern):
        parse_section(section, {key: value})


def test_unknown_scheme_names_value_and_choices():
    pattern = r"weights\.schemes = 'fair' is not allowed; expected one of " + ", ".join(SCHEMES)
    with pytest.raises(ConfigError, match=pattern):
        parse_section("weights", {"schemes": ["none", "fair"]})


def test_unknown_method_names_value_and_choices():
    pattern = r"postprocess\.methods = 'platt' is not allowed; expected one of " + ", ".join(
        METHODS)
    with pytest.raises(ConfigError, match=pattern):
        parse_section("postprocess", {"methods": ["platt"]})


@pytest.mark.parametrize(
    ("section", "key", "message"),
    [
        ("weights", "schemes", "a non-empty list of schemes"),
        ("postprocess", "methods", "a non-empty list of methods"),
        ("evaluate", "groups", "a non-empty list of attributes"),
    ],
)
def test_empty_lists_are_rejected(section, key, message):
    with pytest.raises(ConfigError, match=rf"{section}\.{key} = \[\].*{message}"):
        parse_section(section, {key: []})


def test_repeated_scheme_is_rejected():
    with pytest.raises(ConfigError, match=r"weights\.schemes.*without repeats"):
        parse_section("weights", {"schemes": ["none", "none"]})


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"negative": []}, "negative"),
        ({"positive": [10]}, "positive"),
        ({"negative": [-1]}, "negative"),
    ],
)
def test_digit_lists(raw, key):
    with pytest.raises(ConfigError, match=rf"data\.{key} = .*non-empty list of digits 0\.\.9"):
        parse_section("data", raw)


def test_negative_and_positive_digits_must_not_overlap():
    with pytest.raises(ConfigError, match=r"data\.positive = \[7\].*not also listed in data\."
                                          r"negative"):
        parse_section("data", {"negative": [1, 7], "positive": [7]})


@pytest.mark.parametrize(
    ("section", "raw", "key"),
    [
        ("prepare", {"size": 7}, "prepare.size"),
        ("prepare", {"size": 2048}, "prepare.size"),
        ("train", {"epochs": 0}, "train.epochs"),
        ("train", {"lr": -1e-3}, "train.lr"),
        ("train", {"width": 0}, "train.width"),
        ("train", {"weight_decay": -0.1}, "train.weight_decay"),
        ("audit", {"min_group_size": 0}, "audit.min_group_size"),
        ("evaluate", {"min_group_size": 0}, "evaluate.min_group_size"),
        ("evaluate", {"n_boot": -1}, "evaluate.n_boot"),
        ("evaluate", {"level": 1.0}, "evaluate.level"),
        ("evaluate", {"level": 0.4}, "evaluate.level"),
        ("evaluate", {"shift_p": 1.5}, "evaluate.shift_p"),
        ("postprocess", {"fixed_threshold": 2.0}, "postprocess.fixed_threshold"),
    ],
)
def test_out_of_range_values_name_their_key(section, raw, key):
    with pytest.raises(ConfigError, match=re.escape(key) + " = .* is not allowed"):
        parse_section(section, raw)


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_load_params_and_section(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("bias:\n  p0: 0.3\n  seed: 4\nsplit:\n  seed: 1\n")
    assert load_params(path) == {"bias": {"p0": 0.3, "seed": 4}, "split": {"seed": 1}}
    assert load_section("bias", path) == BiasConfig(p0=0.3, seed=4)
    assert load_section("train", path) == SECTIONS["train"]()  # absent section: defaults


def test_load_params_empty_file_is_empty(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("")
    assert load_params(path) == {}


def test_load_params_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml: file not found"):
        load_params(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bias: {p0: 0.1\nsplit: [\n", r"params\.yaml: not valid YAML"),
        ("- a\n- b\n", r"expected a mapping of sections, got list"),
    ],
)
def test_load_params_rejects_what_is_not_a_mapping_of_sections(tmp_path, text, message):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_params(path)


def test_load_section_reports_bad_value_from_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  epochs: 1.5\n")
    with pytest.raises(ConfigError, match=r"train\.epochs = 1\.5"):
        load_section("train", path)


def test_params_yaml_reads_exponent_floats_as_dvc_writes_them(tmp_path):
    # `dvc exp run -S train.lr=1e-3` writes 1e-3, which plain PyYAML (YAML 1.1) reads as a str
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  lr: 1e-3\n  epochs: 3\nbias:\n  p0: 2E-1\n")
    params = load_params(path)
    assert params["train"]["lr"] == 0.001 and params["bias"]["p0"] == 0.2
    assert parse_section("train", params["train"]).lr == 0.001
    assert isinstance(params["train"]["epochs"], int)


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_shift_p_must_leave_two_groups(p):
    with pytest.raises(ConfigError, match=r"evaluate\.shift_p = .* a probability in \(0, 1\)"):
        parse_section("evaluate", {"shift_p": p})
