"""The base of every params.yaml section's model: frozen, strict, no unknown key.

Each field's default is the value in the repository's params.yaml (one set of defaults for the
stages and the CLI; a test keeps them equal) and its description documents the key, in the JSON
schema too (``params.schema.json``). Values are strict: an int is not a bool, a float field
takes an int but not a quoted "0.1", and floats are finite.
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from biaslab.config.errors import to_config_error


class Section(BaseModel):
    """A params.yaml section; built directly (``TrainConfig(lr=0.01)``), a bad value raises
    the same one-line :class:`~biaslab.config.errors.ConfigError` as in params.yaml."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    def __init__(self, **values: Any) -> None:
        # pydantic calls this too when it validates a section inside Params: the ConfigError
        # raised here then reaches to_config_error, which keeps its lines
        try:
            super().__init__(**values)
        except ValidationError as exc:
            # imported late: the root model imports every section's module, and so this one
            from biaslab.config.params import Params

            name = next(k for k, f in Params.model_fields.items() if f.annotation is type(self))
            raise to_config_error(exc, values, type(self), (name,)) from None
