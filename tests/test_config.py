"""biaslab.config: every section parses, unknown keys and bad values fail naming the key."""

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from ruamel.yaml import YAML

from biaslab.config import (
    METHODS,
    SCHEMES,
    SECTIONS,
    SOURCES,
    BiasConfig,
    ConfigError,
    Params,
    SplitConfig,
    TrainConfig,
    as_dict,
    load_config,
    load_params,
    load_section,
    params_schema,
    parse_params,
    parse_section,
    schema_text,
)

REPO = Path(__file__).resolve().parents[1]


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
    assert parse_section(name, as_dict(default)) == default


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


# ---------------------------------------------------------------- unknown keys anywhere
@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"bias": {"p_1": 1}}, "bias.p_1 = 1 is not allowed; expected a known key of bias "
                               "(did you mean p1?)"),
        ({"train": {"batchsize": 8}}, "train.batchsize = 8 is not allowed; expected a known "
                                      "key of train (did you mean batch_size?)"),
        ({"trian": {"lr": 0.1}}, "trian = {'lr': 0.1} is not allowed; expected a known section "
                                 "(did you mean train?)"),
        ({"data": {"options": {"fnding": "x"}}}, "data.fnding = 'x' is not allowed; expected a "
                                                 "known key of data (did you mean finding?)"),
    ],
)
def test_unknown_key_anywhere_suggests_the_closest_name(raw, message):
    with pytest.raises(ConfigError) as info:
        parse_params(raw)
    assert str(info.value) == "params.yaml: " + message


def test_unknown_key_without_a_close_name_lists_the_known_keys():
    with pytest.raises(ConfigError, match=r"bias\.zzz = 1 .*of bias: kind, p0, p1, seed, "
                                          r"patch_size, patch_position, patch_value$"):
        parse_params({"bias": {"zzz": 1}})
    with pytest.raises(ConfigError, match=r"zzz = 1 .*a known section: data, prepare, bias"):
        parse_params({"zzz": 1})


def test_nested_data_options_are_checked_as_the_flat_keys():
    assert parse_section("data", {"options": {"negative": [2]}}).negative == [2]
    with pytest.raises(ConfigError, match=r"data\.negative = \[10\] .*digits 0\.\.9"):
        parse_section("data", {"options": {"negative": [10]}})


def test_load_section_validates_the_whole_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  epochs: 3\nbias:\n  p_1: 0.5\n")
    with pytest.raises(ConfigError, match=r"bias\.p_1 = 0\.5 .*did you mean p1"):
        load_section("train", path)
    path.write_text("train:\n  epochs: 3\nbais:\n  p1: 0.5\n")
    with pytest.raises(ConfigError, match=r"bais = .*did you mean bias"):
        load_section("train", path)


def test_empty_section_takes_its_defaults(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("bias:\ntrain:\n  epochs: 3\n")
    assert load_section("bias", path) == BiasConfig()
    assert load_config(path).train.epochs == 3


# ---------------------------------------------------------------- values
FLOAT_FIELDS = [
    (name, key)
    for name, cls in SECTIONS.items()
    for key, field in cls.model_fields.items()
    if "float" in str(field.annotation) and "list" not in str(field.annotation)
    and "dict" not in str(field.annotation)
]


def test_float_fields_are_found():
    assert ("train", "lr") in FLOAT_FIELDS and ("train", "focal_alpha") in FLOAT_FIELDS
    assert len(FLOAT_FIELDS) >= 15


@pytest.mark.parametrize(("name", "key"), FLOAT_FIELDS)
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_every_float_field_rejects_infinity_and_nan(name, key, value):
    with pytest.raises(ConfigError, match=rf"^params\.yaml: {name}\.{key} = {value!r} is not "
                                          r"allowed; expected [^;]+$"):
        parse_section(name, {key: value})


@pytest.mark.parametrize(
    ("section", "raw", "pattern"),
    [
        ("data", {"age_bins": [40, float("inf")]}, r"data\.age_bins = \[40, inf\]"),
        ("split", {"fractions": {"train": float("nan"), "val": 0.5, "test": 0.5}},
         r"split\.fractions\.train = nan"),
    ],
)
def test_floats_inside_lists_and_mappings_must_be_finite(section, raw, pattern):
    with pytest.raises(ConfigError, match=pattern):
        parse_section(section, raw)


def test_infinity_from_yaml_is_rejected(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  lr: .inf\n")
    with pytest.raises(ConfigError, match=r"^params\.yaml: train\.lr = inf is not allowed; "
                                          r"expected a finite number > 0$"):
        load_section("train", path)


SEEDED = [name for name, cls in SECTIONS.items() if "seed" in cls.model_fields]


def test_seeded_sections_are_found():
    assert set(SEEDED) == {"bias", "split", "weights", "postprocess", "evaluate", "explain"}


@pytest.mark.parametrize("name", SEEDED)
def test_negative_seed_names_key_and_value(name):
    with pytest.raises(ConfigError) as info:
        parse_section(name, {"seed": -1})
    assert str(info.value) == (f"params.yaml: {name}.seed = -1 is not allowed; "
                               "expected an integer >= 0")


def test_direct_construction_raises_the_same_one_line_error():
    with pytest.raises(ConfigError) as info:
        TrainConfig(lr=-1.0, seeds=[-2])
    assert str(info.value) == ("params.yaml: train.lr = -1.0 is not allowed; expected a finite "
                               "number > 0 (and 1 more: train.seeds)")
    with pytest.raises(ConfigError, match=r"train\.epochs = 1\.5 .*of type int"):
        TrainConfig(epochs=1.5)


def test_all_bad_keys_are_counted_in_one_line():
    with pytest.raises(ConfigError) as info:
        parse_params({"bias": {"seed": -1}, "train": {"lr": "x", "epochs": 1.5}})
    message = str(info.value)
    assert message.startswith("params.yaml: bias.seed = -1 is not allowed; expected an integer")
    assert message.endswith("(and 2 more: train.epochs, train.lr)")
    assert "\n" not in message


def test_a_section_round_trips_through_as_dict():
    config = TrainConfig(lr=0.01, focal_alpha=0.25, epochs=3)
    assert as_dict(config)["lr"] == 0.01
    assert TrainConfig(**as_dict(config)) == config  # how a checkpoint's config is rebuilt


def test_methods_are_the_threshold_registry():
    from biaslab.fairness import thresholds

    assert METHODS == tuple(thresholds.METHODS)


# ---------------------------------------------------------------- YAML as DVC reads it
@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("split:\n  use_source: yes\n", r"split\.use_source = 'yes' .*of type bool"),  # YAML 1.2
        ("bias:\n  p0: 0.1\n  p0: 0.2\n", r"not valid YAML: found duplicate key \"p0\".*line 3"),
    ],
)
def test_yaml_1_2_strictness(tmp_path, text, pattern):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=pattern):
        load_config(path)


# ---------------------------------------------------------------- params.yaml and its schema
def _repo_params() -> dict:
    return load_params(REPO / "params.yaml")


def test_defaults_equal_the_values_in_params_yaml():
    """One set of defaults: the models' (the CLI's) are the repository's params.yaml. None is
    the digits task's alone: split.train_size is auto, 500 on the digits only."""
    defaults = Params()
    checked = 0
    for name, section in _repo_params().items():
        for key, value in section.items():
            if isinstance(value, list) and value and isinstance(value[0], dict):
                value = getattr(parse_section(name, {key: value}), key)  # report.criteria
            assert getattr(getattr(defaults, name), key) == value, f"{name}.{key}"
            checked += 1
    assert checked > 60


def test_repo_params_yaml_is_valid():
    assert load_config(REPO / "params.yaml") == Params()


def test_schema_file_is_up_to_date():
    """params.schema.json is generated: `python -m biaslab.config --schema > params.schema.json`."""
    assert (REPO / "params.schema.json").read_text() == schema_text()


def test_schema_documents_every_key():
    schema = params_schema()
    for name, section in schema["$defs"].items():
        for key, prop in section["properties"].items():
            assert prop.get("description"), f"{name}.{key}"


def test_schema_accepts_params_yaml_and_rejects_a_typo():
    schema = params_schema()
    params = YAML(typ="safe").load((REPO / "params.yaml").read_text())
    jsonschema.validate(params, schema)
    params["bias"]["p_1"] = 0.5
    with pytest.raises(jsonschema.ValidationError, match="p_1"):
        jsonschema.validate(params, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"train": {"lr": 0}}, schema)


def test_schema_command_prints_the_schema(monkeypatch, capsys):
    import runpy

    monkeypatch.setattr(sys, "argv", ["python -m biaslab.config", "--schema"])
    runpy.run_module("biaslab.config", run_name="__main__")
    assert capsys.readouterr().out == schema_text()


def test_schema_is_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(json.loads(schema_text()))


# ---------------------------------------------------------------- the params stage
def _params_stage(tmp_path, text):
    (tmp_path / "params.yaml").write_text(text)
    return subprocess.run([sys.executable, "-m", "stages.params", "--out", "data/params.ok"],
                          cwd=tmp_path, env={"PYTHONPATH": str(REPO), "PATH": ""},
                          capture_output=True, text=True, timeout=120)


def test_params_stage_stops_on_a_typo_with_one_line(tmp_path):
    done = _params_stage(tmp_path, "bias:\n  foo: 1\n")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == ("params: error: params.yaml: bias.foo = 1 is not allowed; expected a "
                           "known key of bias: kind, p0, p1, seed, patch_size, patch_position, "
                           "patch_value\n")
    assert not (tmp_path / "data" / "params.ok").exists()


def test_params_stage_writes_the_same_marker_for_any_valid_file(tmp_path, monkeypatch, capsys):
    from stages import params as stage

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["params", "--out", "data/params.ok"])
    markers = []
    for text in ["bias:\n  p0: 0.2\n", (REPO / "params.yaml").read_text()]:
        (tmp_path / "params.yaml").write_text(text)
        stage.main()
        markers.append((tmp_path / "data" / "params.ok").read_text())
    assert markers[0] == markers[1] != ""
    assert capsys.readouterr().out.startswith("params: params.yaml is valid")
