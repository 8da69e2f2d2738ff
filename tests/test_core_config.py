"""Config dataclasses are the one source of flags, YAML keys and defaults; sections compose
configs, and config_to_argv rebuilds a config in a child process."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import pytest

from fastchat_lite.config import add_dataclass_arguments, build_config, config_to_argv
from fastchat_lite.errors import FastChatLiteError


@dataclass
class Part:
    port: int = field(default=1, metadata={"help": "set by the whole"})
    name: str | None = field(default=None, metadata={"help": "a name"})
    tags: list[str] = field(default_factory=list, metadata={"help": "tags"})
    fast: bool = field(default=False, metadata={"help": "go fast"})
    ratio: float = field(default=0.5, metadata={"help": "a ratio"})


@dataclass
class Whole:
    host: str = field(default="127.0.0.1", metadata={"help": "bind"})
    part: Part = field(default_factory=Part, metadata={"parent_sets": ("port",)})


def _parse(cls: type, argv: list[str], config: str | None = None):
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, cls)
    return build_config(cls, parser.parse_args(argv), config)


def test_a_sections_fields_are_flags_of_the_parent_except_those_the_parent_sets():
    whole = _parse(Whole, ["--name", "w", "--tags", "a", "b", "--fast", "--ratio", "0.25"])
    assert whole.part == Part(name="w", tags=["a", "b"], fast=True, ratio=0.25)
    with pytest.raises(SystemExit):
        _parse(Whole, ["--port", "9"])  # the parent decides each part's port


def test_yaml_keys_are_the_flag_names_and_flags_win(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("host: 0.0.0.0\nname: from-yaml\nratio: 0.75\n")
    whole = _parse(Whole, ["--name", "from-flag"], str(path))
    assert (whole.host, whole.part.name, whole.part.ratio) == ("0.0.0.0", "from-flag", 0.75)
    path.write_text("nmae: typo\n")
    with pytest.raises(FastChatLiteError, match="nmae"):
        _parse(Whole, [], str(path))


@pytest.mark.parametrize(
    "part",
    [
        Part(),
        Part(name="x", tags=["one"], fast=True, ratio=2.0),
        Part(name="-starts-with-dash", tags=["a", "b", "c"]),
        Part(tags=["-x"]),
    ],
)
def test_config_to_argv_rebuilds_the_same_config(part):
    argv = config_to_argv(part)
    assert _parse(Part, argv) == part
    assert "--ratio" not in argv or part.ratio != Part().ratio  # defaults are not repeated


def test_config_to_argv_refuses_what_no_flag_can_say():
    with pytest.raises(ValueError, match="starting with '-'"):
        config_to_argv(Part(tags=["-a", "b"]))


def test_an_option_defined_twice_is_a_bug_in_the_classes():
    @dataclass
    class Clash:
        name: str = "a"
        part: Part = field(default_factory=Part)

    with pytest.raises(TypeError, match="twice"):
        _parse(Clash, [])
