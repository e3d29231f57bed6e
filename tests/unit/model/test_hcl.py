"""The variable-file reader: values, positions, and syntax errors with their offsets."""

from __future__ import annotations

import json

import pytest

from tenantctl.model.hcl import HclSyntaxError, SourceFile, dumps_hcl_string, parse_hcl, parse_json

SEED = """# the seed format
clients = [
  {
    name = "client01"
    databases = { db1 = true, db2 = true, db3 = false }
    allowed_ips = ["109.241.200.168/32"]
    rds_iam_auth = true
  },
]
"""


def test_seed_format_values() -> None:
    root = parse_hcl(SEED)
    assert root.plain() == {"clients": [{
        "name": "client01", "databases": {"db1": True, "db2": True, "db3": False},
        "allowed_ips": ["109.241.200.168/32"], "rds_iam_auth": True,
    }]}


def test_every_value_keeps_line_and_column() -> None:
    source = SourceFile("clients.tfvars", SEED)
    tenant = parse_hcl(SEED).value["clients"].value[0]
    assert str(source.location(tenant.pos)) == "clients.tfvars:3:3"
    assert str(source.location(tenant.value["name"].pos)) == "clients.tfvars:4:12"
    assert str(source.location(tenant.key_pos["databases"])) == "clients.tfvars:5:5"
    assert str(source.location(tenant.value["databases"].key_pos["db3"])) == "clients.tfvars:5:43"
    assert str(source.location(tenant.value["allowed_ips"].value[0].pos)) == "clients.tfvars:6:20"


def test_comments_numbers_escapes_heredoc_and_trailing_commas() -> None:
    text = (
        "/* block\ncomment */ a = -1.5e2 // tail\n"
        "b = \"tab\\tquote\\\" uni\\u00e9 $${literal}\"\n"
        "c = [1, 2,]\n"
        "d = { \"quoted key\" = null, e: 3 }\n"
        "f = <<-EOT\n    one\n      two\n    EOT\n"
    )
    assert parse_hcl(text).plain() == {
        "a": -150.0, "b": 'tab\tquote" unié ${literal}', "c": [1, 2], "d": {"quoted key": None, "e": 3},
        "f": "one\n  two\n",
    }


@pytest.mark.parametrize(
    ("text", "pos", "message"),
    [
        ('x = "${var.a}"', 5, "template interpolation is not allowed in a variable file (write `$${` for a "
                              "literal `${`)"),
        ("x = var.a", 4, "`var` is not a literal value: variable files hold only literals (strings must be quoted)"),
        ("x = [1 2]", 7, "expected `,` or `]` in list, found '2]'"),
        ("x {\n}", 2, "blocks are not allowed in a variable file (did you mean `x = {`?)"),
        ("x = { a = 1, a = 2 }", 13, "key `a` appears twice in this object"),
        ('x = "abc\n"', 4, 'unterminated string (strings end with `"` on the same line)'),
        ("x = 1\n/* open", 6, "unterminated /* comment"),
        ("x = [1, 2", 4, "list opened here is never closed with `]`"),
        ("x = 1\nx = 2", 6, "`x` is defined twice in this file"),
        ('x = "\\q"', 5, "invalid escape sequence `\\q` in string"),
        ("x = ", 4, "expected a value, found end of file"),
        ("= 1", 0, "expected a variable name, found '= 1'"),
    ],
)
def test_syntax_errors_name_the_offset(text: str, pos: int, message: str) -> None:
    with pytest.raises(HclSyntaxError) as raised:
        parse_hcl(text)
    assert (raised.value.pos, raised.value.message) == (pos, message)


def test_json_matches_hcl() -> None:
    doc = {"clients": [{"name": "a", "databases": {"x": True}, "allowed_ips": ["1.2.3.4/32"], "n": 2.5}]}
    assert parse_json(json.dumps(doc, indent=2)).plain() == doc


def test_json_top_level_must_be_an_object() -> None:
    with pytest.raises(HclSyntaxError, match="must hold one JSON object"):
        parse_json("[1, 2]")


def test_json_keeps_interpolation_literally() -> None:
    assert parse_json('{"a": "${x}"}').plain() == {"a": "${x}"}


def test_dumps_string_round_trips() -> None:
    for value in ['plain', 'quote " and \\ back', "${not} %{template}", "é"]:
        assert parse_hcl(f"x = {dumps_hcl_string(value)}").plain() == {"x": value}


def _peak_rss_mib_of(code: str) -> float:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return float(done.stdout.strip())


_MEASURE = """
import resource
from tenantctl.model.hcl import parse_hcl
text = 'big = "' + 'x' * {size} + '\\\\n' * {escapes} + '"\\n' + '# comment\\n' * {comments}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
node = parse_hcl(text)
assert len(node.value["big"].value) == {size} + {escapes}
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


def test_memory_is_linear_in_the_file_size() -> None:
    # 20 MB of string, 1M escapes and 500k comment lines: the old regular expressions needed gigabytes.
    grown = _peak_rss_mib_of(_MEASURE.format(size=20_000_000, escapes=1_000_000, comments=500_000))
    assert grown < 200, f"parsing ~27 MB grew the process by {grown:.0f} MiB"


def test_nesting_is_limited_with_a_located_error() -> None:
    deep = "x = " + "[" * 500 + "]" * 500 + "\n"
    with pytest.raises(HclSyntaxError, match="nested more than 64 levels") as raised:
        parse_hcl(deep)
    assert raised.value.pos == 4 + 64
    with pytest.raises(HclSyntaxError, match="nested more than 64 levels"):
        parse_json('{"x": ' + "[" * 500 + "]" * 500 + "}")
    assert parse_hcl("x = " + "[" * 60 + "]" * 60).value["x"].kind == "list"


@pytest.mark.parametrize("text", ['tag = "a\x00b"', 'tag = "a\\u0000b"', 'tag = "bell\\u0007"', 'tag = "\x1b[2J"',
                                  "tag = <<EOT\nraw \x00 nul\nEOT\n"])
def test_control_characters_are_rejected(text: str) -> None:
    with pytest.raises(HclSyntaxError, match="control character U\\+00"):
        parse_hcl(text)
    assert parse_hcl('ok = "tab\\tand\\nnewline"').value["ok"].value == "tab\tand\nnewline"


def test_a_backslash_before_the_end_of_line_leaves_the_string_open() -> None:
    with pytest.raises(HclSyntaxError, match="unterminated string"):
        parse_hcl('x = "abc\\\n"')
    with pytest.raises(HclSyntaxError, match="unterminated string"):
        parse_hcl('x = "abc\\')
    assert parse_hcl('x = "a\\"b\\\\"').value["x"].value == 'a"b\\'
