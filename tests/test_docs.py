"""The documentation: the parameter reference generated from the models, the README's links.

The reference (docs/parameters.md) is generated at build time by docs/hooks/params_reference.py
from ``biaslab.config.Params``; these tests walk the models on their own and check that every
field of every section is listed, and that a field the reference lacks is caught.
"""

import importlib.util
import re
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel, Field, create_model

from biaslab.config import Params

ROOT = Path(__file__).resolve().parents[1]
HOOK = ROOT / "docs/hooks/params_reference.py"


def load_hook():
    spec = importlib.util.spec_from_file_location("params_reference", HOOK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hook = load_hook()


def model_keys(params: type[BaseModel]) -> list[str]:
    """Every section.key of ``params``, walked here rather than by the hook under test; the
    items of a list of models (report.criteria) as section.key[].field."""
    keys = []
    for name, section in params.model_fields.items():
        for key, info in section.annotation.model_fields.items():
            keys.append(f"{name}.{key}")
            items = typing.get_args(info.annotation)  # list[Model]: its items' fields
            if items and isinstance(items[0], type) and issubclass(items[0], BaseModel):
                keys += [f"{name}.{key}[].{sub}" for sub in items[0].model_fields]
    return keys


def unlisted(params: type[BaseModel], markdown: str) -> list[str]:
    """The keys of ``params`` that have no row in ``markdown``."""
    rows = set(re.findall(r"^\| `([^`]+)` \|", markdown, flags=re.M))
    return [key for key in model_keys(params) if key not in rows]


def with_extra_field(params: type[BaseModel]) -> type[BaseModel]:
    """``params`` with one more field in its bias section (bias.extra_knob)."""
    bias = params.model_fields["bias"].annotation
    bigger = create_model("BiasPlus", __base__=bias, extra_knob=(
        int, Field(3, ge=0, description="a key the real models do not have")))
    return create_model("ParamsPlus", __base__=params, bias=(
        bigger, Field(default_factory=bigger, description="the injected bias S")))


def test_the_reference_lists_every_field_of_every_section():
    markdown = hook.render_reference(Params)
    assert unlisted(Params, markdown) == []
    sections = re.findall(r"^## (\w+) \{#\1\}$", markdown, flags=re.M)
    assert sections == list(Params.model_fields)
    assert "report.criteria[].figure" in model_keys(Params)  # nested models are walked too


def test_a_field_the_reference_lacks_is_caught():
    plus = with_extra_field(Params)
    # the reference of the real models lacks the new field: the check names it
    assert unlisted(plus, hook.render_reference(Params)) == ["bias.extra_knob"]
    # generated from the bigger model, it lists it, with its default, bounds and description
    markdown = hook.render_reference(plus)
    assert unlisted(plus, markdown) == []
    assert ("| `bias.extra_knob` | `3` | integer ≥ 0 | a key the real models do not have |"
            in markdown.splitlines())


def test_rows_say_default_allowed_values_and_meaning():
    lines = hook.render_reference(Params).splitlines()
    row = next(line for line in lines if line.startswith("| `bias.p0` |"))
    assert row == "| `bias.p0` | `0.3` | number in [0, 1] | P(S=1 \\| y=0) |"
    row = next(line for line in lines if line.startswith("| `train.model` |"))
    assert "one of `small_cnn`, `alexnet`, `resnet18`, `resnet34`, `resnet50`" in row
    row = next(line for line in lines if line.startswith("| `report.criteria[].figure` |"))
    assert "| required |" in row and "`flip_rate`" in row


def test_where_params_yaml_differs_from_a_default_the_reference_says_so():
    from biaslab.config import load_params

    values = load_params(ROOT / "params.yaml")
    lines = hook.render_reference(Params, values).splitlines()
    assert sum("(params.yaml:" in line for line in lines) == 0  # one set of defaults
    values["split"] = {**values["split"], "train_size": 500}
    lines = hook.render_reference(Params, values).splitlines()
    row = next(line for line in lines if line.startswith("| `split.train_size` |"))
    assert "`auto` (params.yaml: `500`)" in row
    assert sum("(params.yaml:" in line for line in lines) == 1


def test_keys_that_name_columns_say_they_are_checked():
    lines = hook.render_reference(Params).splitlines()
    checked = {re.match(r"\| `([^`]+)` \|", line)[1] for line in lines
               if "checked by split before any training" in line}
    assert {"evaluate.groups", "split.stratify", "weights.column",
            "report.criteria[].attributes", "split.train_composition"} <= checked
    assert "split.train_size" not in checked
    row = next(line for line in lines if line.startswith("| `split.train_composition` |"))
    assert "its attribute names columns of the index" in row


def test_every_field_has_a_description():
    assert hook.missing_descriptions(Params) == []
    bare = create_model("ParamsBare", __base__=Params, bias=(
        create_model("BiasBare", __base__=Params.model_fields["bias"].annotation,
                     undocumented=(int, 1)), Field(default=None)))
    assert hook.missing_descriptions(bare) == ["bias.undocumented"]


class _Page:
    def __init__(self, src_uri):
        self.file = type("File", (), {"src_uri": src_uri})()


def test_the_hook_fills_the_parameters_page():
    page = (ROOT / "docs" / hook.PAGE).read_text()
    assert page.count(hook.MARKER) == 1
    config = {"config_file_path": str(ROOT / "mkdocs.yml")}
    built = hook.on_page_markdown(page, _Page(hook.PAGE), config, None)
    assert hook.MARKER not in built
    assert unlisted(Params, built) == []
    assert hook.on_page_markdown("x", _Page("index.md"), config, None) == "x"  # others untouched


def test_readme_is_a_page_whose_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert any(link.startswith("docs/") for link in local)
    assert [link for link in local if not (ROOT / link).exists()] == []


@pytest.mark.slow
def test_the_site_builds_strictly(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    if mkdocs is None:
        pytest.skip("mkdocs is not installed")
    done = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True,
                          env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "site/parameters/index.html").exists()
