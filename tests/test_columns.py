"""biaslab.config.columns: every column a param names, checked once the index exists.

The keys are enumerated from the config models (the ``names_columns`` mark), so a key added
later is checked, and tested here, without being listed anywhere.
"""

import pytest
from pydantic import Field, create_model

from biaslab.config import SECTIONS, EvaluateConfig, Params, parse_params
from biaslab.config.columns import (
    SEP,
    check_columns,
    checked_params,
    column_keys,
    evaluated_attributes,
    named_columns,
)
from biaslab.config.fields import names_columns

BAD = "no_such_column"
# the digits index after bias (prepare's columns, bias's s)
DIGITS = ["row", "image_id", "label", "patient_id", "source", "digit", "s"]
WHERE = "the index (after bias)"
# keys whose params need more than the column to be valid (a composition needs its value,
# share and a size; a criterion its figure and a bound); a new key of that kind fails
# test_a_bad_column_stops_the_run until it gets its line here
CONTEXT = {
    "split.train_composition.attribute": {"split": {
        "train_size": 10, "train_composition": {"attribute": BAD, "value": "F", "share": 0.5}}},
    "report.criteria[].attributes": {"report": {"criteria": [
        {"figure": "disparate_impact", "min": 0.8, "attributes": [BAD]}]}},
    # several findings need a source with findings; the index names each label_FINDING
    "data.findings": {"data": {"source": "csv", "root": "x", "findings": [BAD]}},
}
KEYS = [key for key, _ in column_keys(Params)]


def bad_params(key: str):
    """Valid params whose ``key`` names the column :data:`BAD` (a list of it, where a list)."""
    if key in CONTEXT:
        return parse_params(CONTEXT[key])
    section, field = key.split(".")
    default = SECTIONS[section].model_fields[field].get_default(call_default_factory=True)
    return parse_params({section: {field: [BAD] if isinstance(default, list) else BAD}})


def test_the_keys_found_include_every_key_known_to_name_columns():
    assert {"data.attributes", "data.findings", "split.stratify",
            "split.train_composition.attribute", "audit.attributes", "weights.groups",
            "weights.column", "postprocess.groups", "evaluate.groups",
            "report.criteria[].attributes"} <= set(KEYS)


@pytest.mark.parametrize("key", KEYS)
def test_a_bad_column_stops_the_run(key):
    params = bad_params(key)
    shown = key.replace("[]", "[0]")
    column = dict(column_keys(Params))[key].prefix + BAD  # data.findings: label_BAD
    with pytest.raises(ValueError) as err:
        check_columns(params, DIGITS, where=WHERE)
    message = str(err.value)
    assert "\n" not in message
    assert f"{shown}: " in message and f"'{column}'" in message
    # the columns there are, or the attributes evaluate compares
    assert str(DIGITS) in message or "evaluate compares ['s']" in message


def test_the_message_names_the_key_the_column_and_the_columns_there_are():
    params = parse_params({"evaluate": {"groups": ["sex"]}})
    with pytest.raises(ValueError) as err:
        check_columns(params, DIGITS, where=WHERE)
    assert str(err.value) == (f"evaluate.groups: column 'sex' not in the index (after bias); "
                              f"columns: {DIGITS}")


def test_several_bad_keys_in_one_line():
    params = parse_params({"evaluate": {"groups": ["s", "sex"]}, "weights": {"groups": ["age"]},
                           "audit": {"attributes": ["view", "sex"]}})
    with pytest.raises(ValueError) as err:
        check_columns(params, DIGITS, where=WHERE)
    assert str(err.value) == (
        "audit.attributes: columns 'view', 'sex', weights.groups: column 'age', "
        f"evaluate.groups: column 'sex' not in the index (after bias); columns: {DIGITS}")


def test_the_defaults_and_valid_columns_pass():
    check_columns(Params(), DIGITS)
    check_columns(parse_params({"evaluate": {"groups": ["s", "digit"]},
                                "report": {"criteria": [{"figure": "auc_gap", "max": 0.1,
                                                         "attributes": [f"s{SEP}digit"]}]}}),
                  DIGITS)


def test_s_counts_while_bias_will_draw_it():
    check_columns(Params(), [c for c in DIGITS if c != "s"], where="the index")


def test_without_s_only_the_keys_whose_stage_drops_it_may_name_it():
    none = {"bias": {"kind": "none"}}
    columns = [c for c in DIGITS if c != "s"]
    strict = {"weights": {"groups": ["digit"]}, "postprocess": {"groups": ["digit"]},
              "evaluate": {"groups": ["digit"]}}
    # split.stratify and audit.attributes keep their default s: their stages leave it out
    check_columns(parse_params({**none, **strict}), columns)
    with pytest.raises(ValueError) as err:
        check_columns(parse_params({**none, **strict, "evaluate": {"groups": ["s"]}}), columns)
    assert str(err.value).startswith("evaluate.groups: column 's' not in the index; "
                                     "bias.kind: none draws no s; columns: ")


def test_criteria_attributes_are_those_evaluate_compares():
    assert evaluated_attributes(["s", "sex"], True) == ["s", "sex", "s&sex"]
    assert evaluated_attributes(["s", "sex"], False) == ["s", "sex"]
    assert evaluated_attributes(["s"], True) == ["s"]
    params = {"evaluate": {"groups": ["s", "digit"], "intersect": False},
              "report": {"criteria": [{"figure": "auc_gap", "max": 0.1,
                                       "attributes": ["s&digit"]}]}}
    with pytest.raises(ValueError, match=r"^report\.criteria\[0\]\.attributes: attribute "
                                         r"'s&digit' not among those evaluate compares "
                                         r"\['s', 'digit'\]$"):
        check_columns(parse_params(params), DIGITS)


def test_the_intersection_is_joined_as_evaluate_joins_it():
    from biaslab.data.group_keys import SEP as GROUP_SEP

    assert SEP == GROUP_SEP


def test_a_new_key_is_checked_once_marked():
    """Marking a field (issue 20's, 21's keys) is the whole work: found, checked, depended on."""
    marked = create_model("EvaluateMore", __base__=EvaluateConfig, slices=(
        names_columns(list[str]), Field(["digit"], description="more columns")))
    params = create_model("ParamsMore", __base__=Params, evaluate=(
        marked, Field(default_factory=marked, description="evaluate")))
    assert "evaluate.slices" in [key for key, _ in column_keys(params)]
    assert "evaluate.slices" in checked_params(params)
    instance = params(evaluate=marked(slices=["nope"]))
    assert ("evaluate.slices", ["nope"]) in [(k, n) for k, _, n in named_columns(instance)]
    with pytest.raises(ValueError, match=r"^evaluate\.slices: column 'nope' not in"):
        check_columns(instance, DIGITS)


def test_null_and_empty_values_name_no_column():
    assert [k for k, _, _ in named_columns(Params())] == [
        "split.stratify", "audit.attributes", "weights.groups", "postprocess.groups",
        "evaluate.groups"]
