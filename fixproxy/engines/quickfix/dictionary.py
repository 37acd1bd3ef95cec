"""The risk-desk session's data dictionary: quickfix's FIX44.xml with spec/admin-dictionary.xml merged in."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

#: The admin messages and fields (KillSwitchRequest/Report) as a quickfix dictionary fragment; the
#: native engine reads its message types from the same file.
SPEC_EXTENSION = Path(__file__).resolve().parents[3] / "spec" / "admin-dictionary.xml"


def build_dictionary(base: Path, out: Path, extension: Path = SPEC_EXTENSION) -> Path:
    """Write ``base`` (quickfix's FIX44.xml) with the admin messages and fields merged in."""
    tree = ET.parse(base)
    root = tree.getroot()
    ext = ET.parse(extension).getroot()
    messages, fields = _section(root, "messages", base), _section(root, "fields", base)
    known = {f.get("number"): f for f in fields}
    for field in _section(ext, "fields", extension):
        old = known.get(field.get("number"))
        if old is not None:
            fields.remove(old)
        fields.append(field)
    names = {m.get("msgtype") for m in messages}
    added = _section(ext, "messages", extension)
    for message in added:
        if message.get("msgtype") not in names:
            messages.append(message)
    msg_type = next(f for f in fields if f.get("number") == "35")
    for message in added:
        ET.SubElement(msg_type, "value", enum=message.get("msgtype", ""), description=message.get("name", "").upper())
    out.parent.mkdir(parents=True, exist_ok=True)
    tree.write(out, encoding="utf-8", xml_declaration=True)
    return out


def _section(root: ET.Element, name: str, path: Path) -> ET.Element:
    found = root.find(name)
    if found is None:
        raise ValueError(f"{path}: no <{name}> section: not a quickfix data dictionary")
    return found
