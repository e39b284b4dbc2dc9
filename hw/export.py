"""Verilog and its companion files: the one place a component becomes text.

``strum generate`` writes ``DIR/strum_<kind>.v``, ``DIR/interface.json`` (Amaranth's
component metadata, plus the bit position of every payload field) and
``DIR/config.json``. The same component always gives the same bytes: internal
attributes (which carry source paths) are stripped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amaranth.back import verilog
from amaranth.hdl import Shape
from amaranth.lib import data, stream

from strum.quant.files import write_text

__all__ = ["FieldSpec", "payload_fields", "to_verilog", "interface", "write_design"]


@dataclass(frozen=True)
class FieldSpec:
    """Where a leaf field sits in a flat payload."""

    offset: int
    width: int
    signed: bool


def _as_layout(shape: Any):
    try:
        return data.Layout.cast(shape)
    except TypeError:
        return None


def payload_fields(shape: Any) -> dict[str, FieldSpec]:
    """Every leaf field of an Amaranth shape by path (``"act[3]"``, ``"weights[0].high[1]"``).

    A plain shape is one field with path ``""``; zero-width leaves are left out; union
    members overlap.
    """
    fields: dict[str, FieldSpec] = {}

    def visit(path: str, offset: int, member: Any) -> None:
        layout = _as_layout(member)
        if layout is None:
            leaf = Shape.cast(member)
            if leaf.width > 0:
                fields[path] = FieldSpec(offset, leaf.width, leaf.signed)
            return
        for key, field in layout:
            child = f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else key)
            visit(child, offset + field.offset, field.shape)

    visit("", 0, shape)
    return fields


def to_verilog(component, name: str) -> str:
    """Deterministic Verilog of a component, top module ``name``."""
    return verilog.convert(component, name=name, strip_internal_attrs=True)


def interface(component) -> dict:
    """Amaranth's component metadata, with the payload field positions of every stream."""
    metadata = component.metadata.as_json()
    payloads = {}
    for name, member in component.signature.members.items():
        if member.is_signature and isinstance(member.signature, stream.Signature):
            shape = member.signature.members["payload"].shape
            payloads[name] = {path: {"offset": spec.offset, "width": spec.width, "signed": spec.signed}
                              for path, spec in payload_fields(shape).items()}
    metadata["payload_fields"] = payloads
    return metadata


def write_design(component, kind: str, out_dir, config_json: dict) -> dict[str, Path]:
    """Write ``strum_<kind>.v``, ``interface.json`` and ``config.json`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"strum_{kind}"
    paths = {"verilog": out_dir / f"{name}.v", "interface": out_dir / "interface.json",
             "config": out_dir / "config.json"}
    write_text(paths["verilog"], to_verilog(component, name))
    write_text(paths["interface"], json.dumps(interface(component), indent=2, sort_keys=True) + "\n")
    write_text(paths["config"], json.dumps(config_json, indent=2, sort_keys=True) + "\n")
    return paths
