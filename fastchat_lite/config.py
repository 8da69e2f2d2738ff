"""Dataclass configs as the one source of truth for CLI flags, YAML files and defaults.

Each field carries its default and ``metadata={"help": ...}``; :func:`add_dataclass_arguments`
turns the fields into ``--flags``, :func:`build_config` merges defaults < YAML < CLI, and
:func:`config_to_argv` is the inverse: the flags that rebuild a given config in a child process.

A field whose type is itself a dataclass is a *section*: a command made of parts (``serve
local`` runs a controller, a worker, an API) composes their configs instead of copying their
fields. A section's fields become options of the parent under their own names, one flat
namespace for flags and YAML keys, except those listed in the section field's
``metadata["parent_sets"]`` (the parent decides them, e.g. each part's port).

A numeric field may carry its allowed range in ``metadata``: ``"min"``/``"max"`` (inclusive)
and ``"gt"`` (strictly greater). A flag out of range is an argparse error (exit 2) naming the
flag and the range; a YAML value out of range raises :class:`FastChatLiteError` the same way.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from fastchat_lite.errors import FastChatLiteError

T = TypeVar("T")


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """(scalar type, is_list) for an annotation like ``int``, ``str | None``, ``list[str]``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _base_type(args[0]) if len(args) == 1 else (str, False)
    if origin in (list, tuple):
        args = typing.get_args(annotation)
        return (args[0] if args else str), True
    return annotation, False


def _str2bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _range_text(metadata: Any) -> str:
    """The allowed range of a numeric field, e.g. ">= 1" or "> 0 and <= 1"; "" if none."""
    parts = [f"{op} {metadata[key]}" for key, op in (("gt", ">"), ("min", ">="), ("max", "<="))
             if key in metadata]  # fmt: skip
    return " and ".join(parts)


def _in_range(value: Any, metadata: Any) -> bool:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return True  # None means "off"; other types are not range-checked
    if value != value:  # NaN compares False with everything: never in a range
        return not _range_text(metadata)
    return (
        ("gt" not in metadata or value > metadata["gt"])
        and ("min" not in metadata or value >= metadata["min"])
        and ("max" not in metadata or value <= metadata["max"])
    )


def _ranged(kind: type, metadata: Any) -> Any:
    """An argparse ``type`` parsing ``kind`` and refusing values outside the field's range."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}") from None
        if not _in_range(value, metadata):
            raise argparse.ArgumentTypeError(f"must be {_range_text(metadata)}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def check_ranges(config: Any, source: str = "config") -> None:
    """Raise :class:`FastChatLiteError` naming the option for a value outside its
    ``metadata`` range (``min``/``max``/``gt``); configs built in code are checked too."""
    for option in _options(type(config)).values():
        value = option.value(config)
        values = value if isinstance(value, (list, tuple)) else [value]
        bad = [v for v in values if not _in_range(v, option.field.metadata)]
        if bad:
            raise FastChatLiteError(
                f"{source}: {option.name} ({option.flag}) must be "
                f"{_range_text(option.field.metadata)}, got {bad[0]!r}"
            )


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


@dataclasses.dataclass(frozen=True)
class _Option:
    """One flag / YAML key: field ``name`` of the config, or of its section ``section``."""

    name: str
    section: str | None
    field: dataclasses.Field
    annotation: Any
    default: Any

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def on_cli(self) -> bool:
        return self.field.metadata.get("cli") is not False

    def value(self, config: Any) -> Any:
        owner = config if self.section is None else getattr(config, self.section)
        return getattr(owner, self.name)


def _options(cls: type) -> dict[str, _Option]:
    """Option name -> option, in field order, sections flattened (see the module docstring)."""
    options: dict[str, _Option] = {}

    def add(option: _Option) -> None:
        if option.name in options:  # a bug in the config classes, not a user error
            raise TypeError(f"{cls.__name__}: option {option.name!r} is defined twice")
        options[option.name] = option

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if not dataclasses.is_dataclass(hints[f.name]):
            add(_Option(f.name, None, f, hints[f.name], _default(f)))
            continue
        section_default = _default(f)
        section_hints = typing.get_type_hints(hints[f.name])
        parent_sets = set(f.metadata.get("parent_sets", ()))
        for sub in dataclasses.fields(hints[f.name]):
            if sub.init and sub.name not in parent_sets:
                default = getattr(section_default, sub.name)
                add(_Option(sub.name, f.name, sub, section_hints[sub.name], default))
    return options


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add a ``--field-name`` option for every option of dataclass ``cls`` (default: unset);
    a section's options go in an argument group named after it."""
    groups: dict[str | None, Any] = {None: parser}
    for option in _options(cls).values():
        if not option.on_cli:
            continue
        if option.section not in groups:
            groups[option.section] = parser.add_argument_group(f"{option.section} options")
        kind, is_list = _base_type(option.annotation)
        help_text = f"{option.field.metadata.get('help', '')} (default: {option.default!r})"
        kwargs: dict[str, Any] = {"dest": option.name, "default": argparse.SUPPRESS}
        kwargs["help"] = help_text
        if kind is bool:
            kwargs.update(type=_str2bool, nargs="?", const=True, metavar="BOOL")
        elif is_list:
            kwargs.update(type=_ranged(kind, option.field.metadata), nargs="*")
        else:
            kind = kind if kind in (int, float, str) else str
            ranged = kind is not str and _range_text(option.field.metadata)
            kwargs["type"] = _ranged(kind, option.field.metadata) if ranged else kind
            if "choices" in option.field.metadata:
                kwargs["choices"] = option.field.metadata["choices"]
        groups[option.section].add_argument(option.flag, **kwargs)


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """``--config YAML`` plus one flag per option of ``cls``: what every command that reads a
    config dataclass offers (pass ``args.config`` to :func:`build_config`)."""
    parser.add_argument("--config", metavar="YAML", help="options from a YAML file (flags win)")
    add_dataclass_arguments(parser, cls)


def config_from_dict(cls: type[T], values: dict[str, Any], source: str = "config") -> T:
    """``cls`` from option name -> value (the flat namespace of flags and YAML keys)."""
    options = _options(cls)
    unknown = sorted(set(values) - set(options))
    if unknown:
        raise FastChatLiteError(
            f"{source}: unknown option(s) {', '.join(unknown)}; see --help for the list"
        )
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    for name, value in values.items():
        section = options[name].section
        if section is None:
            top[name] = value
        else:
            sections.setdefault(section, {})[name] = value
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in sections:
            top[f.name] = dataclasses.replace(_default(f), **sections[f.name])
    config = cls(**top)
    check_ranges(config, source)
    return config


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise FastChatLiteError(f"cannot read config {path}: {exc}") from None
    if not isinstance(data, dict):
        raise FastChatLiteError(f"config {path} must be a mapping of option: value")
    return data


def build_config(cls: type[T], args: argparse.Namespace, config_path: str | None = None) -> T:
    """Defaults, overridden by the YAML file, overridden by flags given on the command line."""
    values: dict[str, Any] = load_yaml(config_path) if config_path else {}
    names = _options(cls)
    values.update({k: v for k, v in vars(args).items() if k in names})
    return config_from_dict(cls, values, source=config_path or "command line")


def config_to_argv(config: Any) -> list[str]:
    """Flags that rebuild ``config`` through :func:`add_dataclass_arguments` and
    :func:`build_config`: one per option whose value differs from its default.

    Raises ValueError for a value no flag can express: None over a non-None default, a field
    marked ``cli: False``, or a list of several values one of which starts with "-".
    """
    argv: list[str] = []
    for option in _options(type(config)).values():
        value = option.value(config)
        if value == option.default:
            continue
        if value is None or not option.on_cli:
            raise ValueError(f"{type(config).__name__}.{option.name}={value!r} has no flag form")
        if isinstance(value, bool):
            argv += [option.flag, str(value).lower()]
        elif isinstance(value, (list, tuple)) and len(value) != 1:
            if any(str(item).startswith("-") for item in value):
                raise ValueError(f"{option.flag}: several values, one starting with '-'")
            argv += [option.flag, *map(str, value)]
        else:
            text = str(value[0] if isinstance(value, (list, tuple)) else value)
            # "--worker-secret -x" would read -x as a flag; "--worker-secret=-x" does not
            argv += [f"{option.flag}={text}"] if text.startswith("-") else [option.flag, text]
    return argv
