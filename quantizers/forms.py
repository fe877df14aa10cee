"""The admin's instance form: one typed input per configuration setting, all derived from the engine.

The inputs come from `dataclasses.fields(QuantizationConfig)` and its type hints (an enum is a select of its
members, a bool a checkbox, an int or float a number, `X | None` may stay blank, a tuple of names is comma-separated
text, a mapping is JSON); the help texts are the engine's field descriptions (the API schema shows the same).
The form only collects the values: it builds the configuration dict and lets the engine
(`QuantizationConfig.from_dict`) judge it, showing a `ConfigError` on the field it names. The admin saves through
the services.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from collections.abc import Mapping
from typing import Any

from django import forms

from engine import ConfigError, QuantizationConfig

from .models import QuantizerInstance

NAMES_HELP = "Comma-separated; a JSON list when a name holds a comma."


class NamesField(forms.CharField):
    """A list of names as comma-separated text (a JSON list when a name itself holds a comma)."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            if any("," in str(name) for name in value):
                return json.dumps(list(value))
            return ", ".join(str(name) for name in value)
        return value

    def to_python(self, value: Any) -> list[str]:
        text = super().to_python(value)
        if not text:
            return []
        if text.startswith("["):
            try:
                names = json.loads(text)
            except ValueError:
                raise forms.ValidationError("Enter comma-separated names or a JSON list of names.") from None
            return names if isinstance(names, list) else [names]  # the engine judges the items
        # Empty items are kept: the engine refuses them with its own message.
        return [name.strip() for name in text.split(",")]


def _optional(hint: Any) -> tuple[Any, bool]:
    """(the type, whether None is allowed) of a hint such as `float | None`."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return hint, False


def config_field(name: str, hint: Any, help_text: str) -> forms.Field:
    """The form field for one configuration setting, from its type hint alone."""
    kind, optional = _optional(hint)
    origin = typing.get_origin(kind) or kind
    common: dict[str, Any] = {"required": not optional, "help_text": help_text}
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return forms.ChoiceField(choices=[(m, m) for m in kind.__members__], **common)
    if kind is bool:
        return forms.BooleanField(**{**common, "required": False})  # unchecked is False, not missing
    if kind is int:
        return forms.IntegerField(**common)
    if kind is float:
        return forms.FloatField(**common)
    if origin in (tuple, list):
        return NamesField(**{**common, "required": False, "help_text": " ".join(filter(None, (help_text,
                                                                                               NAMES_HELP)))})
    if isinstance(origin, type) and issubclass(origin, Mapping):
        return forms.JSONField(**{**common, "required": False}, widget=forms.Textarea(attrs={"rows": 3}))
    raise TypeError(f"no form field for configuration field {name}: {hint!r}")


def config_fields() -> dict[str, forms.Field]:
    hints = typing.get_type_hints(QuantizationConfig)
    descriptions = QuantizationConfig.field_help()
    return {f.name: config_field(f.name, hints[f.name], descriptions[f.name])
            for f in dataclasses.fields(QuantizationConfig)}


CONFIG_FIELDS: tuple[str, ...] = QuantizationConfig.field_names()


def initial_config(instance: QuantizerInstance | None) -> dict[str, Any]:
    """The engine's defaults for a new instance, the stored configuration (in full) for an existing one."""
    if instance is None or instance._state.adding:
        return QuantizationConfig().to_dict()
    try:
        return QuantizationConfig.from_dict(instance.config).to_dict()
    except (ConfigError, TypeError, ValueError):
        # Not expected (every stored config went through the engine); show what is there, the engine will judge.
        stored = instance.config if isinstance(instance.config, Mapping) else {}
        return {**QuantizationConfig().to_dict(), **stored}


class _InstanceFormBase(forms.ModelForm):
    class Meta:
        model = QuantizerInstance
        fields = ["instance_id"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Initial data given by the caller (the admin passes the add page's query string) wins over the config's.
        kwargs["initial"] = {**initial_config(kwargs.get("instance")), **(kwargs.get("initial") or {})}
        super().__init__(*args, **kwargs)

    def config_dict(self) -> dict[str, Any]:
        """The configuration the form collected, in `QuantizationConfig.from_dict`'s terms."""
        out: dict[str, Any] = {}
        for name in CONFIG_FIELDS:
            value = self.cleaned_data[name]
            if isinstance(self.fields[name], forms.JSONField) and value is None:
                value = {}  # a blank mapping is an empty one
            out[name] = value
        return out

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if any(name in self.errors for name in CONFIG_FIELDS):
            return cleaned  # a value could not even be read; the engine has nothing to judge yet
        try:
            QuantizationConfig.from_dict(self.config_dict())
        except ConfigError as exc:
            self.add_error(exc.field if exc.field in self.fields else None, exc.message)
        return cleaned


# A class built from the engine's field list (the metaclass collects the declared fields).
InstanceForm = type(_InstanceFormBase)("InstanceForm", (_InstanceFormBase,), {
    "__module__": __name__, "__doc__": "An instance id and one input per configuration setting.", **config_fields()
})
