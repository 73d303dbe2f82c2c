"""Generate the ModelService CRD from the pydantic API types.

    python -m torchship_operator.crdgen > crds/torchship.dev_modelservices.yaml

Pydantic's JSON Schema is turned into a Kubernetes structural schema: `$ref`s are inlined,
`anyOf` with null (optional fields) collapses to the field's own schema, `anyOf` of integer and
string becomes `x-kubernetes-int-or-string`, free-form objects keep unknown fields, titles go,
and descriptions, defaults, enums, bounds, patterns and CEL rules stay.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from . import api

KEEP = {
    "type", "description", "default", "enum", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "minLength", "maxLength", "pattern", "minItems", "maxItems",
    "x-kubernetes-validations", "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string", "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
}  # fmt: skip


def _column(name: str, kind: str, path: str, priority: int = 0) -> dict[str, Any]:
    column = {"name": name, "type": kind, "jsonPath": path}
    return column | ({"priority": priority} if priority else {})


NAME_RULES = [
    api.rule(
        "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
        "a ModelService name must be a DNS label (lowercase letters, digits and '-', starting "
        "with a letter): it names its Service",
    ),
    api.rule(
        "size(self.metadata.name) <= 52",
        "a ModelService name is at most 52 characters: its revisions' Deployments add a suffix",
    ),
]

PRINTER_COLUMNS = [
    _column("Ready", "string", '.status.conditions[?(@.type=="Ready")].status'),
    # The Ready reason: the start phase (Downloading, Loading, ...) while pods come up.
    _column("Phase", "string", '.status.conditions[?(@.type=="Ready")].reason'),
    _column("Version", "string", ".spec.model.version"),
    _column("Replicas", "integer", ".status.readyReplicas"),
    _column("URL", "string", ".status.url"),
    _column("Age", "date", ".metadata.creationTimestamp"),
]


def structural(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """One JSON Schema node (from pydantic) as a structural schema node."""
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return structural(merged, defs)
    if "anyOf" in schema:
        variants = [v for v in schema["anyOf"] if v.get("type") != "null"]
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        if {v.get("type") for v in variants} == {"integer", "string"}:
            return {**_kept(rest), "x-kubernetes-int-or-string": True}
        if len(variants) != 1:
            raise ValueError(f"cannot express anyOf {variants} structurally")
        return structural({**variants[0], **rest}, defs)
    if "const" in schema:
        schema = {**schema, "enum": [schema["const"]]}
    out = _kept(schema)
    kind = schema.get("type")
    if kind == "object":
        if "properties" in schema:
            out["properties"] = {
                name: structural(prop, defs) for name, prop in schema["properties"].items()
            }
            if schema.get("required"):
                out["required"] = list(schema["required"])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            out["additionalProperties"] = structural(extra, defs)
        elif "properties" not in schema:
            out["x-kubernetes-preserve-unknown-fields"] = True
    elif kind == "array":
        out["items"] = structural(schema.get("items", {}), defs)
    elif "enum" in schema and "type" not in out:
        out["type"] = "string"
    if "default" in out and out["default"] is None:
        del out["default"]
    return out


def _kept(schema: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in schema.items() if k in KEEP}
    if "description" in out:  # docstrings wrap; `kubectl explain` rewraps
        out["description"] = " ".join(out["description"].split())
    if "maxLength" in out and "type" not in schema:
        out["type"] = "string"
    # JSON Schema's exclusive bounds are numbers (pydantic's gt/lt); OpenAPI v3's, which the
    # API server reads, are a flag on minimum/maximum.
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if not isinstance(out.get(exclusive, True), bool):
            out[bound] = out[exclusive]
            out[exclusive] = True
    return out


def openapi_schema(model: type[api.ApiModel]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return structural(schema, schema.get("$defs", {}))


def status_schema() -> dict[str, Any]:
    schema = openapi_schema(api.ModelServiceStatus)
    conditions = schema["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    return schema


def crd() -> dict[str, Any]:
    spec = openapi_schema(api.ModelServiceSpec)
    spec["description"] = " ".join((api.ModelServiceSpec.__doc__ or "").split())
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{api.PLURAL}.{api.GROUP}",
            "labels": {
                "app.kubernetes.io/name": "torchship",
                "app.kubernetes.io/part-of": "torchship",
            },
        },
        "spec": {
            "group": api.GROUP,
            "names": {
                "kind": api.KIND,
                "listKind": f"{api.KIND}List",
                "plural": api.PLURAL,
                "singular": api.KIND.lower(),
                "shortNames": ["msvc"],
                "categories": ["torchship"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A PyTorch model served by the torchship runtime.",
                            "required": ["spec"],
                            "x-kubernetes-validations": NAME_RULES,
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status_schema(),
                            },
                        }
                    },
                }
            ],
        },
    }


def render() -> str:
    header = "# Generated by `python -m torchship_operator.crdgen`; do not edit.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=100)


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
