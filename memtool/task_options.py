"""Options that pass through the command line to the task that declares them.

``eval``, ``inspect-memory`` and ``data`` accept options they do not know (bAbI's ``--task``, ``--story``)
and hand them here, to be validated against the task's own schema, so the CLI names no family.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from memtool.errors import UserError

COMMAND_OPTIONS = {"example", "split", "json", "png", "set", "device", "help"}


def parse_task_options(args: list[str], schema: type[Any], where: str) -> Any:
    """``--name value`` / ``--name=value`` / ``--flag`` words into the task's options ``schema``; dashes
    become underscores. Anything else is one ``UserError`` naming the option and listing the valid ones."""
    fields = schema.model_fields
    known = ", ".join("--" + name.replace("_", "-") for name in fields) or "none"
    values: dict[str, Any] = {}
    taken = sorted(set(fields) & COMMAND_OPTIONS)
    if taken:  # the command would take them: the task would never see its own option
        raise UserError(f"{where}: the task's option --{taken[0]} is the command's own; rename it")
    index = 0
    while index < len(args):
        token = args[index]
        if not token.startswith("--") or token == "--":
            raise UserError(f"unexpected argument {token!r}; {where} options: {known}")
        name, has_value, value = token[2:].partition("=")
        key = name.replace("-", "_")
        if key not in fields:
            raise UserError(f"--{name}: no such option for {where}; its options: {known}")
        if not has_value:
            if "bool" in str(fields[key].annotation).lower():  # bool, bool | None, StrictBool
                value = True
            elif index + 1 < len(args):
                index += 1
                value = args[index]
            else:
                raise UserError(f"--{name}: needs a value")
        values[key] = value
        index += 1
    try:
        return schema.model_validate(values)
    except ValidationError as error:
        item = error.errors()[0]
        option = "--" + str(item["loc"][0]).replace("_", "-") if item["loc"] else where
        raise UserError(f"{option}: {item['msg']} (got {item.get('input')!r})") from None
