"""Safe XML for device payloads (ANPR pushes, POSLog): entity expansion and external references are refused."""

from __future__ import annotations

from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException


def local_name(tag: object) -> str:
    """An element tag without its namespace: vendors move the same element between namespaces."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def find_text(root: Element, name: str) -> str | None:
    """Text of the first element called ``name`` in any namespace (isapi.org, hikvision.com or none)."""
    for element in root.iter():
        if local_name(element.tag) == name:
            return (element.text or "").strip()
    return None


def parse_xml(document: bytes) -> Element:
    """An XML document parsed safely; DTD entities and external references are refused (ValueError)."""
    try:
        return SafeET.fromstring(document)
    except (ParseError, DefusedXmlException) as exc:
        raise ValueError(f"{type(exc).__name__}: {exc}") from exc
