"""Parse the grounded story text and the chain-of-thought tables of StoryReasoning.

A story is a sequence of ``<gdi imageN> … </gdi>`` blocks, one per image, whose text carries
grounding tags: ``<gdo char1 obj2>`` (objects and characters), ``<gda char1>`` (actions) and
``<gdl bg1 lm1>`` (locations: backgrounds and landmarks). Tags may carry several ids, nest and
span line breaks. A frame's description is its block's text with every tag stripped.

The chain of thought has one ``## Image N`` section per image with ``### Characters``,
``### Objects`` and ``### Setting`` markdown tables; boxes are written ``x1,y1,x2,y2``.
"""

from __future__ import annotations

import re

GDI_BLOCK = re.compile(r"<gdi\s+image\s*(\d+)\s*>(.*?)</gdi\s*>", re.IGNORECASE | re.DOTALL)
# Any opening or closing grounding tag inside a block: <gdo …>, </gda>, <gdl …>, …
INNER_TAG = re.compile(r"<(/?)(gd[a-z]*)\b([^>]*)>", re.IGNORECASE)
TAG_KINDS = {"gdo": "object", "gda": "action", "gdl": "location"}

IMAGE_SECTION = re.compile(r"^##\s*Image\s+(\d+)\s*$", re.IGNORECASE | re.MULTILINE)
TABLE_SECTION = re.compile(r"^###\s*(.+?)\s*$", re.MULTILINE)
BOX = re.compile(r"^\s*\[?\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*\]?\s*$")


def normalize_whitespace(text: str) -> str:
    """Collapse every run of whitespace (unicode included) into one space and trim the ends."""
    return " ".join(text.split())


def strip_tags(block_text: str) -> str:
    """The plain text of a gdi block: grounding tags removed, whitespace normalised."""
    return normalize_whitespace(INNER_TAG.sub("", block_text))


def gdi_blocks(story: str) -> list[tuple[int, str]]:
    """Every ``<gdi imageN>`` block of ``story`` in the order written, as ``(N, raw inner text)``."""
    return [(int(number), body) for number, body in GDI_BLOCK.findall(story or "")]


def parse_frame_descriptions(story: str) -> dict[int, str]:
    """Map each image number N to the plain description of its ``<gdi imageN>`` block.

    Blocks are matched by N, not by position, so blocks written out of order still land on
    their image. When a number appears twice the first block wins (such a story fails the
    block-count check in :mod:`storylib.data.windows` anyway).
    """
    descriptions: dict[int, str] = {}
    for number, body in gdi_blocks(story):
        descriptions.setdefault(number, strip_tags(body))
    return descriptions


def parse_entities(story: str) -> list[dict]:
    """Every grounding tag of ``story`` as a dict, for the exploration notebook.

    Each entry: ``{"frame": N, "tag": "gdo", "kind": "object", "ids": ["char1", "obj2"],
    "text": "the plain text inside the tag"}``. Nested tags each yield an entry; the outer
    one's text includes the inner text. Unclosed tags are ignored.
    """
    entities: list[dict] = []
    for number, body in gdi_blocks(story):
        plain_parts: list[str] = []
        open_tags: list[tuple[str, list[str], int]] = []  # (tag, ids, index into plain_parts)
        position = 0
        for match in INNER_TAG.finditer(body):
            plain_parts.append(body[position : match.start()])
            position = match.end()
            closing, tag, attributes = match.group(1), match.group(2).lower(), match.group(3)
            if not closing:
                open_tags.append((tag, attributes.split(), len(plain_parts)))
                continue
            for depth in range(len(open_tags) - 1, -1, -1):
                if open_tags[depth][0] == tag:
                    _, ids, start = open_tags.pop(depth)
                    entities.append(
                        {
                            "frame": number,
                            "tag": tag,
                            "kind": TAG_KINDS.get(tag, "other"),
                            "ids": ids,
                            "text": normalize_whitespace("".join(plain_parts[start:])),
                        }
                    )
                    break
    return entities


def entity_kind(entity_id: str) -> str:
    """The kind an id names, from its prefix: ``char12`` → ``char``, ``bg1`` → ``bg``."""
    return re.sub(r"\d+$", "", entity_id) or entity_id


# --------------------------------------------------------------------------- chain of thought


def parse_box(cell: str) -> tuple[float, float, float, float] | None:
    """``"318,48,520,239"`` → ``(318, 48, 520, 239)``; anything else → ``None``."""
    match = BOX.match(cell or "")
    if not match:
        return None
    values = tuple(float(v) for v in match.groups())
    return tuple(int(v) if v.is_integer() else v for v in values)  # type: ignore[return-value]


def _table_rows(section: str) -> list[dict[str, str]]:
    """The rows of the first markdown table in ``section`` as header → cell dicts."""
    lines = [line.strip() for line in section.splitlines() if line.strip().startswith("|")]
    if len(lines) < 2:
        return []

    def cells_of(line: str) -> list[str]:
        return [cell.strip() for cell in line.strip().strip("|").split("|")]

    header = cells_of(lines[0])
    rows = []
    for line in lines[1:]:
        cells = cells_of(line)
        if all(set(cell) <= set("-: ") for cell in cells):  # the |---|---| separator
            continue
        rows.append(dict(zip(header, cells + [""] * (len(header) - len(cells)))))
    return rows


def parse_chain_of_thought(text: str) -> dict[int, dict[str, list[dict]]]:
    """Per image number, the rows of each ``### Section`` table (keys lower-cased section names).

    ``{1: {"characters": [{"Character ID": "char1", …, "box": (318, 48, 520, 239)}],
    "objects": [...], "setting": [...]}}``. A row's ``Bounding Box`` cell is parsed into
    ``"box"`` (``None`` when it is not four numbers).
    """
    result: dict[int, dict[str, list[dict]]] = {}
    headings = list(IMAGE_SECTION.finditer(text or ""))
    for index, heading in enumerate(headings):
        end = headings[index + 1].start() if index + 1 < len(headings) else len(text)
        body = text[heading.end() : end]
        sections: dict[str, list[dict]] = {}
        subheadings = list(TABLE_SECTION.finditer(body))
        for sub_index, sub in enumerate(subheadings):
            sub_end = subheadings[sub_index + 1].start() if sub_index + 1 < len(subheadings) else len(body)
            rows = _table_rows(body[sub.end() : sub_end])
            for row in rows:
                box_cell = next((v for k, v in row.items() if k.lower() == "bounding box"), None)
                if box_cell is not None:
                    row["box"] = parse_box(box_cell)
            sections[sub.group(1).strip().lower()] = rows
        result.setdefault(int(heading.group(1)), sections)
    return result
