"""Dataclass configs as the one source of truth for CLI flags, YAML files and defaults.

Each field carries its default and ``metadata={"help": ...}``; :func:`add_dataclass_arguments`
turns the fields into ``--flags`` and :func:`build_config` merges defaults < YAML < CLI.
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


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add a ``--field-name`` option for every field of dataclass ``cls`` (default: unset)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init or f.metadata.get("cli") is False:
            continue
        kind, is_list = _base_type(hints[f.name])
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else f.default_factory()
            if f.default_factory is not dataclasses.MISSING
            else None
        )
        help_text = f"{f.metadata.get('help', '')} (default: {default!r})"
        flag = "--" + f.name.replace("_", "-")
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
        if kind is bool:
            kwargs.update(type=_str2bool, nargs="?", const=True, metavar="BOOL")
        elif is_list:
            kwargs.update(type=kind, nargs="*")
        else:
            kwargs["type"] = kind if kind in (int, float, str) else str
            if "choices" in f.metadata:
                kwargs["choices"] = f.metadata["choices"]
        parser.add_argument(flag, **kwargs)


def config_from_dict(cls: type[T], values: dict[str, Any], source: str = "config") -> T:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise FastChatLiteError(
            f"{source}: unknown option(s) {', '.join(unknown)}; see --help for the list"
        )
    return cls(**values)


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
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values.update({k: v for k, v in vars(args).items() if k in names})
    return config_from_dict(cls, values, source=config_path or "command line")


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
