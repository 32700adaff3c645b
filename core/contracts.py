"""Format contracts: the output formats sopforge enforces, and their validators.

A contract is named by a spec string:

- ``bullets:N``  exactly N bullet lines, counted by IFEval's rule (lines starting with ``*`` or ``-``);
- ``numbered``   a numbered list 1., 2., 3. ... in order (at least two items);
- ``json:NAME``  one JSON object valid (Draft 2020-12) against the schema ``NAME.schema.json``;
- ``plain``      any non-empty text;
- a custom name defined by a YAML file in the formats folder (``kind: regex`` or an alias of the above).

The same validators judge generated training answers (ingest), the model's answers (eval) and the
served answers (format guard): a contract check means the same thing everywhere.

Companies add contracts without code: drop ``NAME.schema.json`` (becomes ``json:NAME``) or
``NAME.yaml`` into the formats folder (``configs/formats/`` by default).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from sopforge.errors import UserError

DEFAULT_FORMATS_DIR = Path(__file__).resolve().parent.parent / "configs" / "formats"


class ContractError(UserError, ValueError):
    """A contract spec or definition is invalid (unknown name, bad schema, bad YAML)."""


# IFEval (google-research/instruction_following_eval, BulletListChecker): a bullet is a line that
# starts with optional whitespace then "*" (not "**") or "-".
_BULLET_STAR = re.compile(r"^\s*\*[^\*].*$", re.MULTILINE)
_BULLET_DASH = re.compile(r"^\s*-.*$", re.MULTILINE)
_NUMBERED = re.compile(r"^\s*(\d+)[.)]\s+\S", re.MULTILINE)
_FENCE = re.compile(r"^\s*```(?:json)?\s*\n(.*?)\n\s*```\s*$", re.DOTALL)


def count_bullets(text: str) -> int:
    """Number of bullet lines by IFEval's rule."""
    return len(_BULLET_STAR.findall(text)) + len(_BULLET_DASH.findall(text))


def extract_json(text: str) -> Any:
    """Parse an answer as JSON; a single ```json fenced block around it is accepted."""
    m = _FENCE.match(text)
    return json.loads(m.group(1) if m else text.strip())


@dataclass(frozen=True)
class Contract:
    """A named output format and how to check it. `validate` returns a list of error strings."""

    spec: str
    kind: str  # bullets | numbered | json | plain | regex
    n: int = 0
    schema: dict[str, Any] | None = field(default=None, hash=False, compare=False)
    pattern: str = ""
    instruction: str = ""

    def validate(self, text: str) -> list[str]:
        if not isinstance(text, str) or not text.strip():
            return ["the answer is empty"]
        if self.kind == "plain":
            return []
        if self.kind == "bullets":
            got = count_bullets(text)
            return [] if got == self.n else [f"expected exactly {self.n} bullets, found {got}"]
        if self.kind == "numbered":
            nums = [int(m.group(1)) for m in _NUMBERED.finditer(text)]
            if len(nums) < 2:
                return [f"expected a numbered list of at least 2 steps, found {len(nums)}"]
            if nums != list(range(1, len(nums) + 1)):
                return [f"steps must be numbered 1..{len(nums)} in order, found {nums}"]
            return []
        if self.kind == "json":
            try:
                obj = extract_json(text)
            except json.JSONDecodeError as e:
                return [f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"]
            from jsonschema import Draft202012Validator

            validator = Draft202012Validator(self.schema or {})
            errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.path))
            return [f"{'/'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in errors[:5]]
        if self.kind == "regex":
            return (
                []
                if re.search(self.pattern, text, re.MULTILINE)
                else [f"does not match /{self.pattern}/"]
            )
        raise ContractError(f"contract {self.spec!r} has unknown kind {self.kind!r}")

    def is_valid(self, text: str) -> bool:
        return not self.validate(text)

    def prompt_hint(self) -> str:
        """The sentence appended to an instruction so the model knows the required format."""
        if self.instruction:
            return self.instruction
        if self.kind == "bullets":
            return f"Answer with exactly {self.n} bullet points, each line starting with '- '."
        if self.kind == "numbered":
            return "Answer with a numbered list of steps (1., 2., 3., ...)."
        if self.kind == "json":
            keys = ", ".join((self.schema or {}).get("required", []))
            return f"Answer with one JSON object only (required keys: {keys})."
        return ""


class ContractRegistry:
    """All contracts known in a formats folder (built-in kinds plus files dropped in)."""

    def __init__(self, formats_dir: str | Path | None = None):
        self.dir = Path(formats_dir) if formats_dir else DEFAULT_FORMATS_DIR
        self._schemas: dict[str, dict[str, Any]] = {}
        self._custom: dict[str, Contract] = {}
        if not self.dir.is_dir():
            raise ContractError(f"formats folder {self.dir} does not exist")
        for path in sorted(self.dir.glob("*.schema.json")):
            self._schemas[path.name[: -len(".schema.json")]] = _load_schema(path)
        for path in sorted(self.dir.glob("*.y*ml")):
            c = _load_yaml_contract(path, self)
            self._custom[c.spec] = c

    def schema_names(self) -> list[str]:
        return sorted(self._schemas)

    def names(self) -> list[str]:
        return (
            ["plain", "numbered", "bullets:N"]
            + [f"json:{n}" for n in self.schema_names()]
            + sorted(self._custom)
        )

    def get(self, spec: str) -> Contract:
        spec = spec.strip()
        if spec in self._custom:
            return self._custom[spec]
        kind, _, arg = spec.partition(":")
        if kind == "plain" and not arg:
            return Contract("plain", "plain")
        if kind == "numbered" and not arg:
            return Contract("numbered", "numbered")
        if kind == "bullets":
            if not arg.isdigit() or not 1 <= int(arg) <= 50:
                raise ContractError(
                    f"contract {spec!r}: bullets needs a count 1..50, like 'bullets:3'"
                )
            return Contract(spec, "bullets", n=int(arg))
        if kind == "json":
            if arg not in self._schemas:
                raise ContractError(
                    f"contract {spec!r}: no schema {arg!r} in {self.dir} "
                    f"(known: {', '.join(self.schema_names()) or 'none'}); add {arg}.schema.json there"
                )
            return Contract(spec, "json", schema=self._schemas[arg])
        raise ContractError(f"unknown contract {spec!r}; known: {', '.join(self.names())}")


def _load_schema(path: Path) -> dict[str, Any]:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ContractError(f"{path}: not valid JSON ({e}); fix or remove the file") from e
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as e:
        raise ContractError(f"{path}: not a valid JSON Schema (Draft 2020-12): {e.message}") from e
    return schema


def _load_yaml_contract(path: Path, registry: ContractRegistry) -> Contract:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ContractError(f"{path}: invalid YAML ({e})") from e
    allowed = {"name", "kind", "n", "schema", "pattern", "instruction"}
    if not isinstance(data, dict) or "name" not in data or "kind" not in data:
        raise ContractError(f"{path}: a contract file needs at least 'name' and 'kind'")
    unknown = set(data) - allowed
    if unknown:
        raise ContractError(f"{path}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    kind = data["kind"]
    name = str(data["name"])
    instruction = str(data.get("instruction", ""))
    if kind == "regex":
        try:
            re.compile(data.get("pattern", ""))
        except re.error as e:
            raise ContractError(f"{path}: bad regex pattern: {e}") from e
        return Contract(name, "regex", pattern=data.get("pattern", ""), instruction=instruction)
    if kind == "json":
        schema_name = data.get("schema", "")
        if schema_name not in registry._schemas:
            raise ContractError(f"{path}: schema {schema_name!r} not found in {registry.dir}")
        return Contract(
            name, "json", schema=registry._schemas[schema_name], instruction=instruction
        )
    if kind == "bullets":
        if not isinstance(data.get("n"), int):
            raise ContractError(f"{path}: kind 'bullets' needs an integer 'n'")
        return Contract(name, "bullets", n=data["n"], instruction=instruction)
    if kind in ("numbered", "plain"):
        return Contract(name, kind, instruction=instruction)
    raise ContractError(
        f"{path}: unknown kind {kind!r}; use bullets, numbered, json, plain or regex"
    )


@lru_cache(maxsize=8)
def default_registry(formats_dir: str | None = None) -> ContractRegistry:
    return ContractRegistry(formats_dir)
