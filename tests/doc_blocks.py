"""The command blocks of the README and the docs, and what the tests do with each.

Every fenced block of README.md and docs/*.md has a language; each shell block (``bash``,
``sh``, ``shell``, ``console``) is preceded by an HTML comment (invisible on the site and on
GitHub) that says what the tests do with it:

``<!-- doctest: run NAME -->``
    ``tests/test_documented_commands.py::test_block_NAME`` (``-`` as ``_``) runs it as written,
    in a fresh copy of the repository. Blocks that share a NAME hold the same commands (their
    comments may differ) and run once.
``<!-- doctest: run NAME; skip "LINE" (REASON) -->``
    the same, without the command LINE (its text without the comment), for REASON; several
    ``; skip`` clauses may follow.
``<!-- doctest: check (REASON) -->``
    not run, for REASON: each command, a ``biaslab`` one, is parsed by biaslab's own parser
    (a sweep is also planned and its settings validated, as before it queues anything).
``<!-- doctest: skip (REASON) -->``
    not run, for REASON (a GPU, a real cluster, Docker, a server of the reader's own).

The comment is the line before the fence, or ends it (in a list item, where a line of its own
would end the item before the block).

A shell block without a comment fails the tests: a new command cannot go untested unnoticed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

SHELL = {"bash", "sh", "shell", "console"}
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)")
# alone on the line before the fence, or at its end (in a list item, a line of its own would end
# the item before the block)
COMMENT = re.compile(r"<!--\s*doctest:\s*(?P<body>.*?)\s*-->\s*$")
RUN = re.compile(r"run (?P<name>[a-z0-9-]+)(?P<skips>(?:; skip \"[^\"]+\" \([^)]+\))*)$")
SKIP_LINE = re.compile(r"; skip \"(?P<line>[^\"]+)\" \((?P<reason>[^)]+)\)")
EXEMPT = re.compile(r"(?P<kind>check|skip) \((?P<reason>.+)\)$")


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language and text, and its doctest comment."""

    path: str  # relative to the repository root
    line: int  # of the opening fence, from 1
    lang: str
    text: str  # dedented to the fence
    kind: str = ""  # run, check, skip; "" for no comment
    name: str = ""  # of a run block
    reason: str = ""  # of check and skip
    skipped: dict[str, str] = field(default_factory=dict)  # command line -> reason

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    def commands(self) -> list[str]:
        """The block's commands, one per line (continuations joined), comments dropped."""
        return [cmd for cmd in (_strip_comment(line) for line in _logical_lines(self.text))
                if cmd]

    def script(self) -> str:
        """The block as a bash script, without its skipped lines; a skipped line that is not
        in the block is an error (the comment went stale)."""
        lines, found = [], set()
        for line in _logical_lines(self.text):
            command = _strip_comment(line)
            if command in self.skipped:
                found.add(command)
                continue
            lines.append(line)
        missing = set(self.skipped) - found
        if missing:
            raise ValueError(f"{self.where}: its doctest comment skips {sorted(missing)}, "
                             "which the block does not hold")
        return "\n".join(lines) + "\n"


def _logical_lines(text: str) -> list[str]:
    """The lines of ``text``, a line ending in a backslash joined with the next."""
    lines, current = [], ""
    for raw in text.splitlines():
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        lines.append(current + raw)
        current = ""
    if current:
        lines.append(current)
    return lines


def _strip_comment(line: str) -> str:
    """``line`` without its ``#`` comment and outer spaces."""
    return line[:_comment_start(line)].strip()


def _comment_start(line: str) -> int:
    """Where the shell comment of ``line`` starts (a ``#`` at a word's start, unquoted)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return i
    return len(line)


def parse_comment(body: str) -> dict:
    """The fields of a doctest comment's ``body``; ValueError for a malformed one."""
    if match := RUN.fullmatch(body):
        skipped = {m["line"].strip(): m["reason"] for m in SKIP_LINE.finditer(match["skips"])}
        return {"kind": "run", "name": match["name"], "skipped": skipped}
    if match := EXEMPT.fullmatch(body):
        return {"kind": match["kind"], "reason": match["reason"].strip()}
    raise ValueError(f"doctest comment {body!r}: expected 'run NAME', 'run NAME; skip \"LINE\" "
                     "(REASON)', 'check (REASON)' or 'skip (REASON)'")


def blocks_of(text: str, path: str) -> list[Block]:
    """The fenced blocks of the markdown ``text``; ValueError for a malformed doctest comment
    or an unclosed fence."""
    lines, blocks, i = text.splitlines(), [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        end = next((j for j in range(i + 1, len(lines))
                    if lines[j].strip() == fence and lines[j].startswith(indent)), None)
        if end is None:
            raise ValueError(f"{path}:{i + 1}: a fence that is never closed")
        body = "\n".join(line[len(indent):] if line.startswith(indent) else line.lstrip()
                         for line in lines[i + 1:end])
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        fields = {}
        if comment := COMMENT.search(before):
            try:
                fields = parse_comment(comment["body"])
            except ValueError as exc:
                raise ValueError(f"{path}:{i}: {exc}") from None
        blocks.append(Block(path, i + 1, opening["lang"], body, **fields))
        i = end + 1
    return blocks


def documented_blocks(root: Path) -> list[Block]:
    """Every fenced block of README.md and docs/*.md under ``root``, read now."""
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    return [block for page in pages
            for block in blocks_of(page.read_text(), str(page.relative_to(root)))]


def problems(blocks: list[Block]) -> list[str]:
    """What is wrong with ``blocks``: a fence without a language, a shell block without a
    doctest comment, a comment on a block that is not shell, run blocks of one name whose
    commands differ."""
    found, by_name = [], {}
    for block in blocks:
        if not block.lang:
            found.append(f"{block.where}: a fence without a language (bash, text, ...)")
        elif block.lang in SHELL and not block.kind:
            found.append(f"{block.where}: a {block.lang} block without a doctest comment "
                         "(tests/doc_blocks.py says which)")
        elif block.lang not in SHELL and block.kind:
            found.append(f"{block.where}: a doctest comment on a {block.lang} block")
        if block.kind == "run":
            by_name.setdefault(block.name, []).append(block)
    for name, same in by_name.items():
        if len({tuple(b.commands()) for b in same}) > 1:
            found.append(f"run {name}: {', '.join(b.where for b in same)} hold different "
                         "commands")
    return found
