"""``cert-system.yaml``: what a person supplies to the report (the tool cannot know it).

``cert init`` writes :data:`SYSTEM_TEMPLATE`; :func:`load_system` reads and checks it, with errors
as ``file:line: field: problem``. Every field is optional: what is left empty is shown as
missing in the report's Annex IV index, never filled in by the tool.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["SYSTEM_TEMPLATE", "SystemFileError", "load_system"]

SYSTEM_TEMPLATE = """\
# cert-system.yaml: what only a person can say about the AI system, for the pytest-cert report.
# The report never calls the system "compliant" and signs nothing; fields left empty are listed
# as missing in its Annex IV index. Check clause references against the Official Journal.

system:
  name: ""                 # Annex IV 1: name of the AI system
  version: ""              # version of this release
  provider: ""             # name and address of the provider
  intended_purpose: ""     # Annex IV 1(a)
  deployment: ""           # how it is placed on the market or put into service

people:                    # Annex IV 2(g): who is responsible for the validation report
  - name: ""
    role: ""               # e.g. "ML lead, signs the validation report"

development: ""            # Annex IV 2(a): methods, third-party models used and why
human_oversight: ""        # Annex IV 2(e)
cybersecurity: ""          # Annex IV 2(h)

test_data:                 # Annex IV 2(g)
  provenance: ""           # where the test questions and references come from
  representativeness: ""   # why they represent the intended use

accuracy_declaration:      # Art. 13(3)(b)(ii), 15(3): the level stated in the instructions for use
  - preset: general        # the measurement preset (metric and threshold) it refers to
    declared_pass_rate:    # share of answers at or above the threshold you declare, in [0, 1]

metrics_rationale: ""      # Annex IV 4: why these metrics and thresholds fit the purpose
known_limitations: ""      # Art. 13(3)(b)(iii)
risk_management: ""        # Annex IV 5: where the risk management documentation is
standards_applied: []      # Annex IV 7
post_market_plan: ""       # Annex IV 9: the post-market monitoring plan (Art. 72)

logging:                   # Art. 12, 19: how long trace files are kept (at least six months)
  retention_days: 183
  location: ""             # where the trace files are stored

declaration_of_conformity: # Annex V; the report lists the items, a person fills and signs them
  reference: ""            # where the signed declaration is kept
"""

_STR = "a text"
# field -> (kind, nested spec); kinds: "str", "int", "float01", "list[str]", "map", "list[map]"
_SPEC: dict[str, Any] = {
    "system": (
        "map",
        {"name": "str", "version": "str", "provider": "str", "intended_purpose": "str", "deployment": "str"},
    ),
    "people": ("list[map]", {"name": "str", "role": "str"}),
    "development": "str",
    "human_oversight": "str",
    "cybersecurity": "str",
    "test_data": ("map", {"provenance": "str", "representativeness": "str"}),
    "accuracy_declaration": ("list[map]", {"preset": "str", "declared_pass_rate": "float01"}),
    "metrics_rationale": "str",
    "known_limitations": "str",
    "risk_management": "str",
    "standards_applied": "list[str]",
    "post_market_plan": "str",
    "logging": ("map", {"retention_days": "int", "location": "str"}),
    "declaration_of_conformity": ("map", {"reference": "str"}),
}


class SystemFileError(ValueError):
    """A system metadata file that cannot be used: ``file:line: field: problem``."""


def _fail(path: str, node: Any, field: str, problem: str) -> SystemFileError:
    line = node.start_mark.line + 1 if node is not None else 1
    return SystemFileError(f"{path}:{line}: {field}: {problem}")


def _scalar(path: str, node: Any, field: str, kind: str) -> Any:
    import yaml

    if not isinstance(node, yaml.ScalarNode):
        raise _fail(path, node, field, f"expected {_STR if kind == 'str' else 'a number'}")
    value = yaml.SafeLoader("").construct_object(node, deep=True)  # the node's resolved type
    if kind == "str":
        if value is None:
            return ""
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise _fail(path, node, field, "expected a text")
        return str(value)
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _fail(path, node, field, f"expected a whole number >= 0, got {value!r}")
        return value
    if value is None:
        return None  # left empty: not declared
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise _fail(path, node, field, f"expected a number in [0, 1], got {value!r}")
    return float(value)


def _check(path: str, node: Any, field: str, spec: Any) -> Any:
    import yaml

    if isinstance(spec, str):
        if spec == "list[str]":
            if isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null"):
                return []
            if not isinstance(node, yaml.SequenceNode):
                raise _fail(path, node, field, "expected a list of texts")
            return [_scalar(path, item, f"{field}[{i}]", "str") for i, item in enumerate(node.value)]
        return _scalar(path, node, field, spec)
    kind, fields = spec
    if kind == "list[map]":
        if isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null"):
            return []
        if not isinstance(node, yaml.SequenceNode):
            raise _fail(path, node, field, "expected a list of entries")
        return [_check(path, item, f"{field}[{i}]", ("map", fields)) for i, item in enumerate(node.value)]
    if not isinstance(node, yaml.MappingNode):
        raise _fail(path, node, field, f"expected a mapping with {', '.join(fields)}")
    out = {}
    for key_node, value_node in node.value:
        key = key_node.value
        name = f"{field}.{key}" if field else key
        if key not in fields:
            raise _fail(path, key_node, name, f"unknown field; known: {', '.join(fields)}")
        out[key] = _check(path, value_node, name, fields[key])
    return out


def load_system(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a ``cert-system.yaml``; raise :class:`SystemFileError` naming file, line and field."""
    import yaml

    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SystemFileError(f"{where}: cannot read: {exc}") from exc
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise SystemFileError(f"{where}:{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if root is None:
        return {}
    data = _check(where, root, "", ("map", _SPEC))
    return dict(data) if isinstance(data, Mapping) else {}
