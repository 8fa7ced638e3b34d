"""Keeps README.md and docs/ true (run by scripts/check-docs, which scripts/test calls).

Two checks:

1. Links. Every relative link in the Markdown files (inline `[text](target)`, images, reference
   definitions `[name]: target`, and `href`/`src` in HTML) must point at a file or directory that
   exists inside the repository. A link with an `#anchor` into a Markdown file must name a heading
   of that file, by GitHub's rules for heading anchors: the heading's text, lower-cased, with
   everything but letters, digits, spaces, `-` and `_` removed, spaces turned into `-`, and `-1`,
   `-2`, ... added to repeats. Links with a scheme (`https:`, `mailto:`) are not fetched.

2. Runnable blocks. A fenced block whose info string is `sh runnable` (or `bash runnable`) is run
   with `bash -euo pipefail` from the repository root, with the workspace's binaries
   (`$CARGO_TARGET_DIR/debug`, else `target/debug`, built by `cargo build --workspace --bins`)
   first on PATH. It must exit 0 within the time limit and leave `git status` as it found it
   (write scratch output under the ignored `out/`). A fenced `text output` block right after a
   runnable block holds lines its output must contain (compared with runs of spaces collapsed),
   so figures quoted from a command stay the command's. GitHub highlights `sh runnable` as `sh`:
   the mark does not show.

Blocks that need AWS, Docker or minutes of work stay unmarked; docs/testing.md ("Keeping the
docs true") names what exercises each of them.

Every problem is reported as `FILE:LINE: what is wrong`, and the exit status is 1 if there was one.
"""

import argparse
import difflib
import glob
import os
import re
import subprocess
import sys
import urllib.parse
from dataclasses import dataclass, field

FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*(.*?)[ \t]*$")
ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
# [text](target "title"); the text may hold one level of brackets (`[a [b] c](x)`).
INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>\n]*>|[^)\s]+)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)"
)
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]\n]+\]:[ \t]*(<[^>\n]*>|\S+)", re.MULTILINE)
HTML_LINK = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*\"([^\"]*)\"", re.IGNORECASE)
HTML_ANCHOR = re.compile(r"<a\b[^>]*?\b(?:name|id)\s*=\s*\"([^\"]*)\"", re.IGNORECASE)
SCHEME = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*:|//)")
SHELLS = ("sh", "bash", "shell")


@dataclass
class Block:
    """A fenced code block: `line` is the 1-based line of its opening fence."""

    line: int
    info: str
    body: str

    @property
    def words(self):
        return self.info.split()

    @property
    def runnable(self):
        return "runnable" in self.words[1:]

    @property
    def is_output(self):
        return self.words[1:2] == ["output"]


@dataclass
class Document:
    """A Markdown file split into prose (code blocks blanked, so line numbers hold) and blocks."""

    path: str
    prose: str
    blocks: list = field(default_factory=list)


def parse(path, text):
    """Separates fenced code blocks from prose. Code lines become empty prose lines."""
    prose, blocks = [], []
    fence, start, info, body = None, 0, "", []
    for number, line in enumerate(text.split("\n"), 1):
        if fence is None:
            opened = FENCE_OPEN.match(line)
            if opened and not (opened.group(1)[0] == "`" and "`" in opened.group(2)):
                fence, start, info, body = opened.group(1), number, opened.group(2), []
                prose.append("")
            else:
                prose.append(line)
        else:
            closing = line.strip()
            if (
                closing
                and set(closing) == {fence[0]}
                and len(closing) >= len(fence)
                and len(line) - len(line.lstrip(" ")) <= 3
            ):
                blocks.append(Block(start, info, "\n".join(body) + "\n"))
                fence = None
            else:
                body.append(line)
            prose.append("")
    if fence is not None:  # an unclosed fence runs to the end of the file, as CommonMark says
        blocks.append(Block(start, info, "\n".join(body) + "\n"))
    return Document(path, "\n".join(prose), blocks)


def blank_code_spans(prose):
    """Replaces inline code spans by spaces (newlines kept), so `[x](y)` in code is no link."""

    def blank(match):
        return re.sub(r"[^\n]", " ", match.group(0))

    return re.sub(r"(`+)(?:(?!\1).)+?\1", blank, prose, flags=re.DOTALL)


def heading_text(raw):
    """The text GitHub renders for a heading's inline Markdown."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", raw)
    text = re.sub(r"<[^>]+>", "", text)
    text = text.replace("`", "")
    return re.sub(r"(?<!\w)_+|_+(?!\w)", "", text)


def github_slug(raw):
    """A heading's anchor without the repeat suffix: lower case, letters, digits, - and _ kept."""
    text = heading_text(raw).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(document):
    """Every anchor a reader can link to in a document: its headings' slugs and HTML anchors."""
    found, seen = set(), {}
    lines = document.prose.split("\n")
    for index, line in enumerate(lines):
        heading = ATX_HEADING.match(line)
        text = None
        if heading:
            text = heading.group(2) or ""
        elif (
            index > 0
            and SETEXT_UNDERLINE.match(line)
            and lines[index - 1].strip()
            and not ATX_HEADING.match(lines[index - 1])
            and not lines[index - 1].lstrip().startswith(("-", "*", "+", "|", ">"))
        ):
            text = lines[index - 1]
        if text is None:
            continue
        slug = github_slug(text)
        repeat = seen.get(slug, 0)
        seen[slug] = repeat + 1
        found.add(slug if repeat == 0 else f"{slug}-{repeat}")
    found.update(HTML_ANCHOR.findall(document.prose))
    return found


def links(document):
    """(line, target) for every link of the document's prose."""
    prose = blank_code_spans(document.prose)
    found = []
    for pattern in (INLINE_LINK, REFERENCE_DEF, HTML_LINK):
        for match in pattern.finditer(prose):
            target = match.group(1)
            if target.startswith("<") and target.endswith(">"):
                target = target[1:-1]
            line = prose.count("\n", 0, match.start(1)) + 1
            found.append((line, target))
    return sorted(found)


class Checker:
    def __init__(self, root):
        self.root = os.path.realpath(root)
        self.problems = []
        self.cache = {}

    def problem(self, path, line, message):
        self.problems.append(f"{os.path.relpath(path, self.root)}:{line}: {message}")

    def document(self, path):
        path = os.path.realpath(path)
        if path not in self.cache:
            with open(path, encoding="utf-8") as handle:
                self.cache[path] = parse(path, handle.read())
        return self.cache[path]

    def check_links(self, path):
        """Checks one file's relative links; returns how many it checked."""
        document = self.document(path)
        count = 0
        for line, target in links(document):
            if not target or SCHEME.match(target):
                continue
            count += 1
            file_part, _, anchor = target.partition("#")
            file_part = urllib.parse.unquote(file_part)
            if not file_part:
                resolved = document.path
            elif file_part.startswith("/"):
                resolved = os.path.join(self.root, file_part.lstrip("/"))
            else:
                resolved = os.path.join(os.path.dirname(document.path), file_part)
            resolved = os.path.realpath(resolved)
            if os.path.commonpath([resolved, self.root]) != self.root:
                self.problem(path, line, f"link to {target}: points outside the repository")
                continue
            if not os.path.exists(resolved):
                missing = os.path.relpath(resolved, self.root)
                self.problem(path, line, f"link to {target}: {missing} does not exist")
                continue
            if anchor and resolved.endswith(".md") and os.path.isfile(resolved):
                known = anchors(self.document(resolved))
                if urllib.parse.unquote(anchor).lower() not in known:
                    near = difflib.get_close_matches(anchor, sorted(known), n=1)
                    hint = f" (did you mean #{near[0]}?)" if near else ""
                    self.problem(
                        path,
                        line,
                        f"link to {target}: {os.path.relpath(resolved, self.root)} has no heading "
                        f"with the anchor #{anchor}{hint}",
                    )
        return count

    def runnable_blocks(self, path):
        """(block, expected output block or None) for the file's runnable blocks."""
        document = self.document(path)
        found = []
        for index, block in enumerate(document.blocks):
            if not block.runnable:
                if block.is_output and (index == 0 or not document.blocks[index - 1].runnable):
                    self.problem(
                        path, block.line, "a `text output` block must follow a runnable block"
                    )
                continue
            if block.words[0] not in SHELLS:
                language = block.words[0]
                self.problem(
                    path, block.line, f"runnable block in `{language}`: only sh or bash blocks run"
                )
                continue
            following = document.blocks[index + 1] if index + 1 < len(document.blocks) else None
            found.append((block, following if following and following.is_output else None))
        return found

    def run_block(self, path, block, expected, env, timeout):
        before = git_status(self.root)
        try:
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", block.body],
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as timed_out:
            output = timed_out.output or ""
            if isinstance(output, bytes):
                output = output.decode(errors="replace")
            self.problem(
                path,
                block.line,
                f"runnable block ran past {timeout} s\n{shown(block.body, output)}",
            )
            return False
        if result.returncode != 0:
            self.problem(
                path,
                block.line,
                f"runnable block failed with exit status {result.returncode}\n"
                f"{shown(block.body, result.stdout)}",
            )
            return False
        after = git_status(self.root)
        if after != before:
            changed = sorted(set(after.splitlines()) ^ set(before.splitlines()))
            self.problem(
                path,
                block.line,
                "runnable block changed the work tree (write under out/ instead): "
                + ", ".join(changed),
            )
            return False
        if expected is not None:
            lines = [squeeze(line) for line in result.stdout.splitlines()]
            for offset, wanted in enumerate(expected.body.splitlines(), 1):
                if wanted.strip() and not any(squeeze(wanted) in line for line in lines):
                    self.problem(
                        path,
                        expected.line + offset,
                        f"the runnable block at line {block.line} no longer prints this line: "
                        f"{wanted.strip()}\n{shown(block.body, result.stdout)}",
                    )
                    return False
        return True


def squeeze(text):
    return " ".join(text.split())


def shown(body, output, tail=40):
    lines = output.rstrip("\n").split("\n") if output.strip() else []
    cut = lines[-tail:]
    return (
        "  block:\n"
        + "".join(f"    {line}\n" for line in body.rstrip("\n").split("\n"))
        + f"  output{' (last %d lines)' % tail if len(lines) > tail else ''}:\n"
        + "".join(f"    {line}\n" for line in cut)
    ).rstrip("\n")


def git_status(root):
    result = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    return result.stdout


def default_files(root):
    files = [os.path.join(root, "README.md")]
    files += sorted(glob.glob(os.path.join(root, "docs", "**", "*.md"), recursive=True))
    return [path for path in files if os.path.isfile(path)]


def binaries_dir(root):
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(root, "target")
    return os.path.join(os.path.abspath(target), "debug")


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="scripts/check-docs",
        description="Checks the relative links of README.md and docs/*.md and runs their "
        "`sh runnable` blocks.",
    )
    parser.add_argument(
        "files", nargs="*", help="Markdown files (default: README.md, docs/**/*.md)"
    )
    parser.add_argument("--links-only", action="store_true", help="check links, run nothing")
    parser.add_argument("--list", action="store_true", help="list the runnable blocks, run nothing")
    parser.add_argument("--timeout", type=int, default=300, help="seconds a block may run (300)")
    parser.add_argument("--root", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    root = args.root or subprocess.run(
        ["git", "rev-parse", "--show-toplevel"],
        cwd=os.path.dirname(os.path.abspath(__file__)),
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    ).stdout.strip()
    checker = Checker(root)
    files = [os.path.abspath(path) for path in args.files] or default_files(checker.root)

    link_count = sum(checker.check_links(path) for path in files)
    blocks = [
        (path, block, expected)
        for path in files
        for block, expected in checker.runnable_blocks(path)
    ]

    if args.list:
        for path, block, _ in blocks:
            print(f"{os.path.relpath(path, checker.root)}:{block.line}:")
            print("".join(f"    {line}\n" for line in block.body.rstrip("\n").split("\n")), end="")
    elif not args.links_only and blocks:
        bins = binaries_dir(checker.root)
        if not os.path.isfile(os.path.join(bins, "framefleet")):
            checker.problems.append(
                f"check-docs: no framefleet binary in {bins}: run `cargo build --workspace --bins` "
                "first (the runnable blocks use the workspace's binaries)"
            )
        else:
            env = dict(os.environ, PATH=bins + os.pathsep + os.environ.get("PATH", ""))
            for path, block, expected in blocks:
                where = f"{os.path.relpath(path, checker.root)}:{block.line}"
                print(f"check-docs: running {where}", file=sys.stderr)
                checker.run_block(path, block, expected, env, args.timeout)

    ran = "listed" if args.list else ("not run" if args.links_only else "run")
    summary = (
        f"{len(files)} files, {link_count} relative links, {len(blocks)} runnable blocks {ran}"
    )
    if checker.problems:
        for problem in checker.problems:
            print(problem, file=sys.stderr)
        print(f"check-docs: {len(checker.problems)} problem(s) in {summary}", file=sys.stderr)
        return 1
    print(f"check-docs: ok: {summary}")
    return 0
