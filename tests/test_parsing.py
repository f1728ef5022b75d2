"""Parsing of grounded stories and chain-of-thought tables, on hand-written strings."""

from storylib.data.parsing import (
    entity_kind,
    gdi_blocks,
    parse_box,
    parse_chain_of_thought,
    parse_entities,
    parse_frame_descriptions,
)

STORY = """<gdi image1>
In a sparse room filled with <gdo obj1>cardboard boxes</gdo>, <gdo char1>James</gdo>
<gda char1>enters</gda>   with a neutral look.
</gdi>
<gdi image2>The <gdl bg1 bg2 bg3>walls</gdl> close in on <gdo char1 char2>them</gdo>.</gdi>
"""


def test_descriptions_are_block_text_without_tags_and_with_normalised_whitespace():
    assert parse_frame_descriptions(STORY) == {
        1: "In a sparse room filled with cardboard boxes, James enters with a neutral look.",
        2: "The walls close in on them.",
    }


def test_blocks_are_matched_by_number_not_position():
    story = "<gdi image3>third</gdi><gdi image1>first</gdi><gdi image2>second</gdi>"
    assert parse_frame_descriptions(story) == {3: "third", 1: "first", 2: "second"}
    assert [number for number, _ in gdi_blocks(story)] == [3, 1, 2]


def test_nested_tags_line_breaks_and_unicode_are_handled():
    story = (
        "<gdi image1>\n\t<gdo char1>Zoë</gdo> <gda char1>walks\ninto <gdl lm1>the <gdo obj2>café</gdo>\n"
        "on the square</gdl></gda> — smiling\u00a0 at   <gdo char2 obj3>Łukasz</gdo>.\n</gdi>"
    )
    assert parse_frame_descriptions(story) == {1: "Zoë walks into the café on the square — smiling at Łukasz."}


def test_missing_and_duplicate_blocks_are_visible_to_the_count_check():
    story = "<gdi image1>a</gdi><gdi image1>b</gdi><gdi image4>c</gdi>"
    assert parse_frame_descriptions(story) == {1: "a", 4: "c"}  # first block of a number wins
    assert len(gdi_blocks(story)) == 3
    assert parse_frame_descriptions("no blocks at all") == {}
    assert parse_frame_descriptions("") == {}


def test_empty_block_gives_empty_description():
    assert parse_frame_descriptions("<gdi image1>  <gdo char1> </gdo>\n</gdi>") == {1: ""}


def test_entities_keep_ids_texts_and_nesting():
    story = "<gdi image2><gda char1>walks into <gdl bg1 lm1>the <gdo obj2>old</gdo> café</gdl></gda></gdi>"
    entities = parse_entities(story)
    assert entities == [
        {"frame": 2, "tag": "gdo", "kind": "object", "ids": ["obj2"], "text": "old"},
        {"frame": 2, "tag": "gdl", "kind": "location", "ids": ["bg1", "lm1"], "text": "the old café"},
        {"frame": 2, "tag": "gda", "kind": "action", "ids": ["char1"], "text": "walks into the old café"},
    ]


def test_entities_of_the_sample_story():
    entities = parse_entities(STORY)
    assert [(e["frame"], e["tag"], e["ids"], e["text"]) for e in entities] == [
        (1, "gdo", ["obj1"], "cardboard boxes"),
        (1, "gdo", ["char1"], "James"),
        (1, "gda", ["char1"], "enters"),
        (2, "gdl", ["bg1", "bg2", "bg3"], "walls"),
        (2, "gdo", ["char1", "char2"], "them"),
    ]
    assert [entity_kind(i) for i in ("char12", "obj3", "bg1", "lm20")] == ["char", "obj", "bg", "lm"]


CHAIN = """## Image 1
### Characters
| Character ID | Name | Description | Emotions | Actions | Narrative Function | Bounding Box |
|--------------|------|-------------|----------|---------|-------------------|--------------|
| char1 | James | Man with a neutral look | Calm | Enters | Initiates | 318,48,520,239 |

### Objects
| Object ID | Description | Function | Interaction | Narrative Function | Bounding Box |
|-----------|-------------|----------|-------------|--------------------|--------------|
| obj1 | Boxes | Storage | None | Setting | 0,100,120,239 |
| obj2 | Lamp | Light | None | Mood | not visible |

### Setting
| Setting Element | Description | Mood | Time | Narrative Function |
|-----------------|-------------|------|------|--------------------|
| bg1 | Room | Sterile | Day | Backdrop |

## Image 2
### Characters
| Character ID | Name | Description | Emotions | Actions | Narrative Function | Bounding Box |
|---|---|---|---|---|---|---|
| char1 | James | Man | Tense | Sits | Focus | 10, 20, 30, 40 |
"""


def test_chain_of_thought_tables_and_boxes():
    parsed = parse_chain_of_thought(CHAIN)
    assert sorted(parsed) == [1, 2]
    assert sorted(parsed[1]) == ["characters", "objects", "setting"]
    james = parsed[1]["characters"][0]
    assert james["Character ID"] == "char1" and james["Name"] == "James" and james["box"] == (318, 48, 520, 239)
    assert [row["box"] for row in parsed[1]["objects"]] == [(0, 100, 120, 239), None]
    assert parsed[1]["setting"][0]["Setting Element"] == "bg1" and "box" not in parsed[1]["setting"][0]
    assert parsed[2]["characters"][0]["box"] == (10, 20, 30, 40)
    assert parse_chain_of_thought("") == {}


def test_parse_box():
    assert parse_box("1,2,3,4") == (1, 2, 3, 4)
    assert parse_box("[1.5, 2, 3, 4]") == (1.5, 2, 3, 4)
    assert parse_box("1,2,3") is None
