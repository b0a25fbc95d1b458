"""The versioned layout of ``accuracy.json`` and its validation.

Layout (``schema_version`` 1).  Floats that are not finite are written as ``null`` (NaN) or the strings
``"inf"`` / ``"-inf"`` (see :func:`encode_float`), so the file is strict JSON::

    {
      "schema": "loss-stability-suite/accuracy",
      "schema_version": 1,
      "created": "2026-...Z",                      # UTC time of the run
      "environment": {"torch": ..., "cuda": ... | null, "gpus": [...], "cpu": ...,
                      "cpu_capability": "AVX2" | ... | null (torch's CPU kernel dispatch),
                      "torch_threads": int (torch's intra-op threads: how a CPU sum is split),
                      "subnormals": {"cpu" (, "cuda"): {dtype: "kept" | "flushed" | "flushed in part (k of n)"}},
                      # what torch's kernels did with subnormals in this process (suite.fp_environment)
                      "compile_arithmetic": {device: [problem, ...]},  # with a compile mode only: what compiling
                      # left in the calling thread's arithmetic (flush-to-zero), given back by the suite
                      "python": ...,
                      "platform": ..., "numpy": ..., "mpmath": ..., "suite": ..., "suite_commit": ... | null},
      "options": {"cases": [...], "dtypes": [...], "devices": [...], "modes": [...], "quick": bool,
                  "plugins": [...], "grid": "quick" | "full" | "custom",
                  "search": {"examples": int (0: no search), "seed": int},
                  "jobs": int (case/dtype jobs run side by side),
                  "resumed_jobs": int (jobs reused from an interrupted run's checkpoint: --resume),
                  "missing": {"jobs": ["case dtype", ...], "probe_groups": ["case device dtype stage", ...]},
                  # what a report written with --saved-only from an unfinished run lacks (empty: complete)
                  "bad_input_devices": [...]},  # where --bad-inputs probed (empty: not run; absent: older)
      "cases": {name: {"family", "description", "main_input", "main_kind", "plugin": module | null,
                       "grid": {dtype: {"samples": int, "shape": [...]}}}},
      "results": [                                   # one per case/dtype/device/mode/reduction/quantity
        {"key": "case/dtype/device/mode/reduction/quantity", "case", "dtype", "device", "mode",
         "reduction", "quantity", "elements": int, "budget": ulps, "error": torch's exception | null,
         "labels": {label: count, ... every label},
         "histogram": {"0", "<=0.5", "<=1", "<=2", "<=4", "<=16", ">16"},  # ULP error buckets
         "max_ulp": float, "max_ulp_at": point | null, "max_bits": float, "max_bits_at": point | null,
         "algorithmic": {"max_ulp": float, "over_budget": int},          # judged against the budget
         "ill_conditioned": {"count": int, "max_ulp": float}}           # inherent error excused
      ],
      "findings": [                                  # each distinct problem, see suite.report.findings
        {"id", "key" (the result's), "case", "dtype", "device", "mode", "reduction", "quantity",
         "kind": "label" | "ulp_excess", "label", "count", "input": main input name,
         "region": {"low", "high", "values": distinct main-input values in it},
         "others": {input: {"values": [...]} | {"low", "high"}},
         "worst": point, "description", "reproducer": Python source,
         "attribution": "known: <id>" | "new" | "new (search)"}   # "new (search)": a search record's element
      ],
      "safe_ranges": [
        {"case", "dtype", "device", "mode", "input", "kind", "center", "low", "high",
         "limits": {"low": why | null, "high": why | null}, "status": "range" | "whole_grid" | "none"}
      ],
      "rounding_bias": [                     # suite.bias, one per case/dtype/device/mode/quantity (absent: older)
        {"case", "dtype", "device", "mode", "quantity", "mean": signed ULPs (negative: toward zero),
         "stderr": float | "inf", "elements": int (inexact, within budget), "toward_zero": fraction,
         "biased": bool}
      ],
      "search": [                            # targeted search, one per case/dtype/device/reduction/quantity
        {"key" (as a result's, mode "eager"), "case", "dtype", "device", "mode",
         "reduction", "quantity", "examples": int, "seed": int,
         "algorithmic_ulp": float,                   # of the worst element found (inf, or null for NaN)
         "score": float,                             # the search's target: the same, capped at 1e30
         "bits": float,                              # the search's second target: the batch's largest
         "label": str,                               #   bits of error; the worst element's label
         "unexplained": bool,                        # failing and explained by no known deviation
         "attribution": null (passes) | "known: <id>" | "new (search)" (also a finding),
         "inputs": {name: nested lists}, "index": [...],   # the whole batch and the element in it
         "worst": point, "reproducer": Python source}
      ],
      "comparisons": {                               # absent in reports written before it existed
        "notes": [...],                              # what the sections cannot show (no CUDA, eager only)
        "modes": [comparison], "devices": [comparison],   # mode vs eager, device vs CPU (suite.compare)
        "autocast": [{"case", "dtype", "device", "reduction", "result_dtype" | null, "error" | null}],
        "probes": [...], "promotion": [...]}         # with --bad-inputs (suite.probes, suite.promotion)
    }

A *point* is ``{"inputs": {name: value or [row values]}, "element": j, "got", "exact", "ulp_error",
"bits_error", "label"}``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from suite import atomic
from suite.cases.base import REDUCTION_DIVISORS
from suite.dtypes import FORMATS
from suite.errors import UsageError
from suite.modes import MODES
from suite.selection import SUPPORTED_DEVICE_TYPES

SCHEMA_NAME = "loss-stability-suite/accuracy"
SCHEMA_VERSION = 1
#: Attribution of a failing worst input of the targeted search that no known deviation explains.
SEARCH_ATTRIBUTION = "new (search)"

_NUMBER: tuple[type, ...] = (int, float, str, type(None))  # an encode_float value
_TOP_LEVEL = {"schema": str, "schema_version": int, "created": str, "environment": dict, "options": dict,
              "cases": dict, "results": list, "findings": list, "safe_ranges": list, "search": list}
_RESULT: dict[str, type | tuple[type, ...]] = {
    "key": str, "case": str, "dtype": str, "device": str, "mode": str, "reduction": str, "quantity": str,
    "elements": int, "labels": dict, "histogram": dict, "budget": (int, float), "max_ulp": _NUMBER,
    "algorithmic": dict}
_FINDING = {"id": str, "key": str, "case": str, "dtype": str, "label": str, "kind": str, "count": int,
            "reproducer": str, "attribution": str, "description": str}
_Fields = dict[str, type | tuple[type, ...]]
_FINDING_REGION: _Fields = {"low": _NUMBER, "high": _NUMBER, "values": int}
_ALGORITHMIC: _Fields = {"max_ulp": _NUMBER, "over_budget": int}
_SAFE: _Fields = {"case": str, "dtype": str, "device": str, "input": str, "status": str, "low": _NUMBER,
                  "high": _NUMBER, "limits": dict}
_SEARCH: dict[str, type | tuple[type, ...]] = {
    "key": str, "case": str, "dtype": str, "device": str, "mode": str, "reduction": str, "quantity": str,
    "examples": int, "seed": int, "bits": (int, float), "label": str, "unexplained": bool, "inputs": dict,
    "index": list, "worst": dict, "reproducer": str}
_BIAS: _Fields = {"case": str, "dtype": str, "device": str, "mode": str, "quantity": str, "mean": (int, float),
                  "stderr": _NUMBER, "elements": int, "toward_zero": (int, float), "biased": bool}
_COMPARISONS = {"notes": list, "modes": list, "devices": list, "autocast": list}
_MISSING = {"jobs": list, "probe_groups": list}
_SEARCH_NULLABLE: dict[str, type | tuple[type, ...]] = {"algorithmic_ulp": _NUMBER, "attribution": (str, type(None))}
#: The fields a result's (and a search record's) key joins, in order.
KEY_FIELDS = ("case", "dtype", "device", "mode", "reduction", "quantity")


def key_of(*fields: str) -> str:
    """The key of a result: its :data:`KEY_FIELDS` joined by ``/``."""
    return "/".join(fields)


def _check_key(record: Mapping[str, Any], where: str, source: str) -> None:
    """A key that names other fields than the record's would match the wrong result in a diff, and a dtype,
    mode, reduction or device that the suite does not have would be compared as if it were one of its own.
    Cases and quantities are not checked: a plugin adds cases, and gradients named after their inputs."""
    expected = key_of(*(str(record[f]) for f in KEY_FIELDS))
    if record["key"] != expected:
        raise UsageError(f"{source}: {where} has key {record['key']!r} but its fields say {expected!r}")
    known = {"dtype": FORMATS, "mode": MODES, "reduction": REDUCTION_DIVISORS}
    for field, names in known.items():
        if record[field] not in names:
            raise UsageError(f"{source}: {where} has {field} {record[field]!r}, which is none of {', '.join(names)}")
    if str(record["device"]).partition(":")[0] not in SUPPORTED_DEVICE_TYPES:
        raise UsageError(f"{source}: {where} has device {record['device']!r}, of none of the types "
                         f"{', '.join(SUPPORTED_DEVICE_TYPES)}")


def encode_float(value: float | None) -> float | str | None:
    """A float as strict JSON: itself when finite, ``null`` for NaN, ``"inf"``/``"-inf"`` for infinities."""
    if value is None or math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return float(value)


def decode_float(value: Any) -> float:
    """Inverse of :func:`encode_float` (``null`` reads as NaN)."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not (isinstance(value, (int, float)) or value in ("inf", "-inf")):
        raise UsageError(f"{value!r} is not a number, \"inf\", \"-inf\" or null")
    return float(value)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join("null" if k is type(None) else k.__name__ for k in kinds)


def _check_fields(item: Any, fields: Mapping[str, type | tuple[type, ...]], where: str, source: str) -> None:
    if not isinstance(item, dict):
        raise UsageError(f"{source}: {where} is not an object")
    for name, kind in fields.items():
        if name not in item:
            raise UsageError(f"{source}: {where} lacks field {name!r}")
        value = item[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in kinds):
            raise UsageError(f"{source}: {where} field {name!r} should be {_kind_name(kind)}")


def _check_number(value: Any, where: str, source: str) -> None:
    """An :func:`encode_float` value: a number, ``"inf"``, ``"-inf"`` or null."""
    try:
        decode_float(value)
    except UsageError:
        raise UsageError(f"{source}: {where} should be a number, \"inf\", \"-inf\" or null") from None


def _check_search(record: Any, where: str, source: str) -> None:
    """A search record: its fields, an encoded float as ``algorithmic_ulp``, a known attribution."""
    _check_fields(record, _SEARCH, where, source)
    _check_fields(record, _SEARCH_NULLABLE, where, source)
    _check_key(record, where, source)
    _check_number(record["algorithmic_ulp"], f"{where} field 'algorithmic_ulp'", source)
    attribution = record["attribution"]
    if attribution is not None and not (attribution == SEARCH_ATTRIBUTION or attribution.startswith("known: ")):
        raise UsageError(f"{source}: {where} field 'attribution' should be null, \"known: <id>\" or "
                         f"\"{SEARCH_ATTRIBUTION}\"")
    if (attribution == SEARCH_ATTRIBUTION) != record["unexplained"]:
        raise UsageError(f"{source}: {where} is unexplained exactly when attributed \"{SEARCH_ATTRIBUTION}\"")


def validate(payload: Any, source: str = "accuracy.json") -> dict[str, Any]:
    """Check that ``payload`` is an accuracy report of this schema version; a UsageError (one line) names
    the first problem."""
    if not isinstance(payload, dict) or payload.get("schema") != SCHEMA_NAME:
        raise UsageError(f"{source} is not an accuracy report (no \"schema\": \"{SCHEMA_NAME}\")")
    version = payload.get("schema_version")
    if version != SCHEMA_VERSION:
        raise UsageError(f"{source} has schema version {version!r}; this suite reads version {SCHEMA_VERSION}")
    _check_fields(payload, _TOP_LEVEL, "the report", source)
    torch_version, devices = payload["environment"].get("torch", ""), payload["options"].get("devices", [])
    if not isinstance(torch_version, str):
        raise UsageError(f"{source}: environment field 'torch' should be str")
    if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
        raise UsageError(f"{source}: options field 'devices' should be a list of device names")
    keys: set[str] = set()
    for i, result in enumerate(payload["results"]):
        _check_fields(result, _RESULT, f"results[{i}]", source)
        _check_number(result["max_ulp"], f"results[{i}] field 'max_ulp'", source)
        _check_fields(result["algorithmic"], _ALGORITHMIC, f"results[{i}].algorithmic", source)
        _check_number(result["algorithmic"]["max_ulp"], f"results[{i}].algorithmic field 'max_ulp'", source)
        _check_key(result, f"results[{i}]", source)
        if result["key"] in keys:  # a diff matches results by key: a second one would hide the first
            raise UsageError(f"{source}: results[{i}] repeats the key {result['key']!r}")
        keys.add(result["key"])
    for i, finding in enumerate(payload["findings"]):
        _check_fields(finding, _FINDING, f"findings[{i}]", source)
        if finding.get("region"):  # a reduced value's finding has none (the whole grid)
            _check_fields(finding, {"input": str, "region": dict}, f"findings[{i}]", source)
            _check_fields(finding["region"], _FINDING_REGION, f"findings[{i}].region", source)
            for end in ("low", "high"):
                _check_number(finding["region"][end], f"findings[{i}].region field {end!r}", source)
    for i, safe in enumerate(payload["safe_ranges"]):
        _check_fields(safe, _SAFE, f"safe_ranges[{i}]", source)
        for end in ("low", "high"):
            _check_number(safe[end], f"safe_ranges[{i}] field {end!r}", source)
    for i, record in enumerate(payload["search"]):
        _check_search(record, f"search[{i}]", source)
    for i, record in enumerate(payload.get("rounding_bias", [])):  # absent from reports before it was measured
        _check_fields(record, _BIAS, f"rounding_bias[{i}]", source)
        _check_number(record["stderr"], f"rounding_bias[{i}] field 'stderr'", source)
    if "comparisons" in payload:
        _check_fields(payload["comparisons"], _COMPARISONS, "comparisons", source)
    if "missing" in payload["options"]:
        _check_fields(payload["options"]["missing"], _MISSING, "options.missing", source)
    return payload


def missing(payload: Mapping[str, Any]) -> dict[str, list[str]]:
    """What an incomplete report (``--saved-only`` after an unfinished run) lacks: its case/dtype jobs and
    bad-input probe groups; both empty for a complete report, and for one written before the field existed."""
    found = payload["options"].get("missing") or {}
    return {"jobs": list(found.get("jobs", [])), "probe_groups": list(found.get("probe_groups", []))}


def is_complete(payload: Mapping[str, Any]) -> bool:
    return not any(missing(payload).values())


def load(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate an ``accuracy.json`` (a report folder means its ``accuracy.json``)."""
    target = os.fspath(path)
    if os.path.isdir(target):
        target = os.path.join(target, "accuracy.json")
    return validate(atomic.read_json(target), target)
