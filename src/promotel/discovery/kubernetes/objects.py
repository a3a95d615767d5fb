"""Kubernetes objects as the API's JSON gives them, read leniently.

The reflectors keep the objects as the decoded JSON (not the client's generated models), and the role
builders read fields that may be missing, null or of another type than the API documents: each
accessor here answers an empty value then, so that a malformed object gives fewer labels rather than
an exception in a reflector thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["JSONObject", "get_list", "get_map", "get_str", "is_set", "object_key"]

JSONObject = Mapping[str, Any]


def get_map(data: object, key: str) -> JSONObject:
    value = data.get(key) if isinstance(data, Mapping) else None
    return value if isinstance(value, Mapping) else {}


def get_list(data: object, key: str) -> list[JSONObject]:
    value = data.get(key) if isinstance(data, Mapping) else None
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def get_str(data: object, key: str) -> str:
    value = data.get(key) if isinstance(data, Mapping) else None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return str(value)
    return ""


def is_set(data: object, key: str) -> bool:
    """Whether a pointer field of Go's API types is set (the key is there and not null)."""
    return isinstance(data, Mapping) and data.get(key) is not None


def object_key(obj: JSONObject) -> str:
    """``namespace/name``, or ``name`` for cluster-scoped objects (client-go's MetaNamespaceKeyFunc)."""
    meta = get_map(obj, "metadata")
    namespace, name = get_str(meta, "namespace"), get_str(meta, "name")
    return f"{namespace}/{name}" if namespace else name
