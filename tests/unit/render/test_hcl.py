from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenantctl.render import hcl


def test_string_escapes_quotes_backslashes_and_template_sequences() -> None:
    assert hcl.string('a"b\\c') == '"a\\"b\\\\c"'
    assert hcl.string("${var.x} %{if}") == '"$${var.x} %%{if}"'
    assert hcl.string("line\nbreak\ttab") == '"line\\nbreak\\ttab"'


def test_number_is_integer_when_whole_and_exact_otherwise() -> None:
    assert hcl.number(4.0) == "4"
    assert hcl.number(16) == "16"
    assert hcl.number(0.5) == "0.5"
    with pytest.raises(ValueError):
        hcl.number(float("nan"))


def test_literal_covers_scalars_and_lists() -> None:
    assert hcl.literal(None) == "null"
    assert hcl.literal(True) == "true"
    assert hcl.literal(["a", "b"]) == '["a", "b"]'
    assert hcl.literal(()) == "[]"
    with pytest.raises(TypeError):
        hcl.literal({"a": 1})


def test_key_quotes_only_when_not_a_plain_identifier() -> None:
    assert hcl.key("tenant") == "tenant"
    assert hcl.key("managed-by") == '"managed-by"'
    assert hcl.key("aws:SourceIp") == '"aws:SourceIp"'


def test_label_keeps_safe_characters_and_fixes_the_first() -> None:
    assert hcl.label("db1") == "db1"
    assert hcl.label("shared-01") == "shared-01"
    assert hcl.label("a.b c") == "a_b_c"
    assert hcl.label("1st") == "_1st"


def test_canonical_layout_aligns_runs_of_single_line_attributes() -> None:
    text = 'resource "x" "y" {\n  a = 1\n  long_name = 2\n  tags = {\n    k = "v"\n    kk = "w"\n  }\n  z = 3\n}\n'
    assert hcl.canonical_layout(text) == (
        'resource "x" "y" {\n'
        "  a         = 1\n"
        "  long_name = 2\n"
        "  tags = {\n"
        '    k  = "v"\n'
        '    kk = "w"\n'
        "  }\n"
        "  z = 3\n"
        "}\n"
    )


def test_canonical_layout_blank_lines_and_comments_end_a_run() -> None:
    text = "b {\n  a = 1\n\n  bbb = 2\n  # note\n  cc = 3\n}"
    assert hcl.canonical_layout(text) == "b {\n  a = 1\n\n  bbb = 2\n  # note\n  cc = 3\n}\n"


def test_canonical_layout_removes_stray_blank_lines_and_trailing_space() -> None:
    text = "\n\nb {\n\n  a = 1   \n\n\n  c = 2\n\n}\n\n\n"
    assert hcl.canonical_layout(text) == "b {\n  a = 1\n\n  c = 2\n}\n"


def test_canonical_layout_leaves_comparisons_and_for_arrows_alone() -> None:
    text = "x = {\n  for k, v in m : k => v\n}\ny = a == b\n"
    assert hcl.canonical_layout(text) == text


def _unescape(body: str) -> str:
    """Inverse of hcl.escape, following HCL's string-literal rules."""
    out, i = [], 0
    simple = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t"}
    while i < len(body):
        if body[i] == "\\":
            out.append(simple[body[i + 1]])
            i += 2
        elif body.startswith(("$${", "%%{"), i):
            out.append(body[i] + "{")
            i += 3
        else:
            assert not body.startswith(("${", "%{"), i), f"live template sequence at {i}: {body!r}"
            out.append(body[i])
            i += 1
    return "".join(out)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('ab$%{}"\\\n\t\r ')), max_size=40))
def test_escape_round_trips_and_leaves_no_template_sequence(text: str) -> None:
    assert _unescape(hcl.escape(text)) == text


_KEYS = st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True) | st.from_regex(r'"[a-z:-]{1,8}"', fullmatch=True)
_LINE = st.one_of(
    st.tuples(_KEYS, st.sampled_from(['"v"', "1", "var.x", "[]", "{}"])).map(lambda kv: f"{kv[0]} = {kv[1]}"),
    st.just(""),
    st.just("# note"),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_LINE, max_size=12), st.lists(_LINE, max_size=6))
def test_canonical_layout_is_idempotent(outer: list[str], inner: list[str]) -> None:
    body = "\n".join(f"  {line}" for line in outer)
    nested = "\n".join(f"    {line}" for line in inner)
    text = f'resource "a" "b" {{\n{body}\n  tags = {{\n{nested}\n  }}\n}}\n'
    once = hcl.canonical_layout(text)
    assert hcl.canonical_layout(once) == once
    assert "\n\n\n" not in once and once.endswith("}\n")
