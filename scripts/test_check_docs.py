"""Tests of scripts/check_docs.py: GitHub's anchor rules, what counts as a link, and that broken
links and failing runnable blocks are reported with their file and line.

  python3 -m unittest discover -s scripts -p 'test_*.py'
"""

import contextlib
import io
import os
import subprocess
import sys
import tempfile
import textwrap
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_docs  # noqa: E402


def write(root, name, text):
    path = os.path.join(root, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(textwrap.dedent(text))
    return path


class Repo:
    """A scratch git repository holding Markdown files."""

    def __enter__(self):
        self.dir = tempfile.TemporaryDirectory()
        self.root = os.path.realpath(self.dir.name)
        subprocess.run(["git", "init", "-q", self.root], check=True)
        write(self.root, ".gitignore", "/out\n")
        return self

    def __exit__(self, *exc):
        self.dir.cleanup()

    def check(self, *argv):
        """Runs check-docs on this repository: (exit status, stderr)."""
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            status = check_docs.main(["--root", self.root, *argv])
        return status, err.getvalue()


class Slugs(unittest.TestCase):
    def test_github_rules(self):
        cases = {
            "Where the worker's CPU goes": "where-the-workers-cpu-goes",
            "1. Build and push the arm64 images": "1-build-and-push-the-arm64-images",
            "What the local stack checks, and what only AWS can": (
                "what-the-local-stack-checks-and-what-only-aws-can"
            ),
            "The template's defaults": "the-templates-defaults",
            "The `framefleet` command": "the-framefleet-command",
            "See [traces](x.md) locally": "see-traces-locally",
            "snake_case stays, _emphasis_ goes": "snake_case-stays-emphasis-goes",
            "2 × 4 frames — fast": "2--4-frames--fast",
            "Größe": "größe",
        }
        for heading, slug in cases.items():
            self.assertEqual(check_docs.github_slug(heading), slug, heading)

    def test_repeats_get_a_suffix_and_code_is_no_heading(self):
        document = check_docs.parse(
            "x.md",
            "# Tests\n\n## Tests\n\n```sh\n# Tests\n```\n\nSetext\n======\n\n## Tests ##\n",
        )
        self.assertEqual(check_docs.anchors(document), {"tests", "tests-1", "tests-2", "setext"})


class Links(unittest.TestCase):
    def test_what_is_a_link(self):
        text = textwrap.dedent(
            """\
            A [link](a.md) and ![an image](img/x.png "title") and [`code` text](b.md#part).
            `[not a link](c.md)` and [a link that
            wraps](d.md) and <a href="e.md">html</a>.

            ```sh
            echo [not](f.md)
            ```

            [ref]: g.md
            """
        )
        found = check_docs.links(check_docs.parse("x.md", text))
        self.assertEqual(
            found,
            [
                (1, "a.md"),
                (1, "b.md#part"),
                (1, "img/x.png"),
                (3, "d.md"),
                (3, "e.md"),
                (9, "g.md"),
            ],
        )

    def test_broken_links_are_named_with_file_and_line(self):
        with Repo() as repo:
            write(repo.root, "README.md", "# Top\n\nSee [docs](docs/a.md#second-part).\n")
            write(
                repo.root,
                "docs/a.md",
                """\
                # A

                ## Second part

                [back](../README.md#top), [self](#second-part), [gone](b.md),
                [bad anchor](../README.md#bottom), [out](../../elsewhere.md),
                [web](https://example.com/x.md)
                """,
            )
            status, err = repo.check("--links-only")
            self.assertEqual(status, 1, err)
            self.assertIn("docs/a.md:5: link to b.md: docs/b.md does not exist", err)
            self.assertIn(
                "docs/a.md:6: link to ../README.md#bottom: "
                "README.md has no heading with the anchor #bottom",
                err,
            )
            self.assertIn(
                "docs/a.md:6: link to ../../elsewhere.md: points outside the repository", err
            )
            problems = [line for line in err.splitlines() if ".md:" in line.split(" ")[0]]
            self.assertEqual(len(problems), 3, err)

    def test_good_links_pass(self):
        with Repo() as repo:
            write(
                repo.root,
                "README.md",
                "# Top\n\n[a](docs/a.md), [dir](docs/), [a part](docs/a.md#a)\n",
            )
            write(repo.root, "docs/a.md", "# A\n\n[up](../README.md#top)\n")
            status, err = repo.check("--links-only")
            self.assertEqual(status, 0, err)


class Runnable(unittest.TestCase):
    def run_doc(self, text):
        with Repo() as repo:
            write(repo.root, "README.md", text)
            bins = os.path.join(repo.root, "target", "debug")
            write(bins, "framefleet", "#!/bin/sh\necho framefleet help\n")
            os.chmod(os.path.join(bins, "framefleet"), 0o755)
            write(repo.root, ".gitignore", "/out\n/target\n")
            old = os.environ.pop("CARGO_TARGET_DIR", None)
            try:
                return repo.check()
            finally:
                if old is not None:
                    os.environ["CARGO_TARGET_DIR"] = old

    def test_passing_blocks_and_their_output(self):
        status, err = self.run_doc(
            """\
            # Run

            ```sh runnable
            framefleet --help          # found on PATH from target/debug
            mkdir -p out && echo 'a   b' > out/x
            cat out/x
            ```

            ```text output
            framefleet help
            a b
            ```

            ```sh
            not run at all
            ```
            """
        )
        self.assertEqual(status, 0, err)

    def test_a_failing_block_is_named_with_its_line(self):
        status, err = self.run_doc(
            "# Run\n\ntext\n\n```sh runnable\necho hello\nfalse\necho never\n```\n"
        )
        self.assertEqual(status, 1)
        self.assertIn("README.md:5: runnable block failed with exit status 1", err)
        self.assertIn("    hello", err)
        self.assertNotIn("never\n", err.split("output")[-1])

    def test_missing_output_is_named(self):
        status, err = self.run_doc("```sh runnable\necho 1\n```\n\n```text output\n2\n```\n")
        self.assertEqual(status, 1)
        self.assertIn(
            "README.md:6: the runnable block at line 1 no longer prints this line: 2", err
        )

    def test_a_block_that_changes_the_work_tree_fails(self):
        status, err = self.run_doc("```sh runnable\ntouch stray\n```\n")
        self.assertEqual(status, 1)
        self.assertIn("README.md:1: runnable block changed the work tree", err)
        self.assertIn("stray", err)

    def test_only_shell_blocks_run(self):
        status, err = self.run_doc("```python runnable\nprint(1)\n```\n")
        self.assertEqual(status, 1)
        self.assertIn("README.md:1: runnable block in `python`", err)


if __name__ == "__main__":
    unittest.main()
