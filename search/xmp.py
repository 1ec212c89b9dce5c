"""XMP sidecars: a tag as a keyword (``dc:subject``) that digiKam, darktable and Lightroom read.

The sidecar of ``photo.jpg`` is ``photo.jpg.xmp`` (digiKam's and darktable's name). An
existing sidecar keeps everything it holds: the keyword is added to its ``dc:subject`` bag
(made if missing), with its namespace prefixes kept. A sidecar that is not readable XMP is
left alone and reported, never overwritten.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

from search.files import atomic_write

X = "adobe:ns:meta/"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
DC = "http://purl.org/dc/elements/1.1/"
_HEAD = '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
_TAIL = '\n<?xpacket end="w"?>\n'


class SidecarError(Exception):
    """An existing sidecar that cannot be read as XMP."""


def sidecar_path(photo: str | Path) -> Path:
    photo = Path(photo)
    return photo.with_name(photo.name + ".xmp")


def _parse(data: bytes) -> ET.Element:
    """The root of an XMP document, registering its namespace prefixes so they survive."""
    try:
        for _event, (prefix, uri) in ET.iterparse(io.BytesIO(data), events=("start-ns",)):
            if prefix and not prefix.startswith("ns"):
                ET.register_namespace(prefix, uri)
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise SidecarError(f"not XML ({exc})") from None


def _new_root() -> ET.Element:
    root = ET.Element(f"{{{X}}}xmpmeta")
    ET.SubElement(root, f"{{{RDF}}}RDF")
    return root


def add_subject(photo: str | Path, keyword: str) -> bool:
    """Add ``keyword`` to the photo's sidecar; False if it was there already."""
    for prefix, uri in (("x", X), ("rdf", RDF), ("dc", DC)):
        ET.register_namespace(prefix, uri)
    path = sidecar_path(photo)
    root = _parse(path.read_bytes()) if path.exists() else _new_root()
    rdf = root if root.tag == f"{{{RDF}}}RDF" else root.find(f"{{{RDF}}}RDF")
    if rdf is None:
        raise SidecarError("no rdf:RDF element")
    description = None
    for candidate in rdf.findall(f"{{{RDF}}}Description"):
        if candidate.find(f"{{{DC}}}subject") is not None:
            description = candidate
            break
    if description is None:
        description = rdf.find(f"{{{RDF}}}Description")
    if description is None:
        description = ET.SubElement(rdf, f"{{{RDF}}}Description", {f"{{{RDF}}}about": ""})
    subject = description.find(f"{{{DC}}}subject")
    if subject is None:
        subject = ET.SubElement(description, f"{{{DC}}}subject")
    bag = subject.find(f"{{{RDF}}}Bag")
    if bag is None:
        bag = ET.SubElement(subject, f"{{{RDF}}}Bag")
    if keyword in [(li.text or "") for li in bag.findall(f"{{{RDF}}}li")]:
        return False
    ET.SubElement(bag, f"{{{RDF}}}li").text = keyword
    ET.indent(root, space=" ")
    with atomic_write(path, "w") as fh:
        fh.write(_HEAD + ET.tostring(root, encoding="unicode") + _TAIL)
    return True


def subjects(photo: str | Path) -> list[str]:
    """The keywords in a photo's sidecar (empty: none, or no sidecar)."""
    path = sidecar_path(photo)
    if not path.exists():
        return []
    root = _parse(path.read_bytes())
    return [li.text or "" for subject in root.iter(f"{{{DC}}}subject")
            for li in subject.iter(f"{{{RDF}}}li")]
