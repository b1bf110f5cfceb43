"""Does the team's ``deploy`` workflow let the watchdog find the run it dispatched?

GitHub's ``workflow_dispatch`` answers 204 without saying which run it started (unless
``return_run_details`` is honoured), and an answer can be lost. The watchdog then finds its run by
the correlation id it passed as an input, which only works when the workflow declares that input
and shows it in its ``run-name``. A workflow that does not is found out here, before a rollback
needs it, with the lines to add.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

#: ``${{ inputs.NAME }}`` or ``${{ github.event.inputs.NAME }}`` inside an expression.
_INPUT_IN_EXPRESSION = r"\$\{\{[^}]*\b(?:github\.event\.)?inputs\.%s\b[^}]*\}\}"


def run_name_line(correlation_input: str) -> str:
    """The ``run-name:`` line that lets a dispatched run be found by its correlation id."""
    return f"run-name: deploy ${{{{ github.ref_name }}}} [${{{{ inputs.{correlation_input} }}}}]"


def workflow_problems(text: str, where: str, correlation_input: str, inputs: Iterable[str] = ()) -> list[str]:
    """What is missing from the workflow file ``text`` (shown as ``where``) for the watchdog to
    dispatch it with ``inputs`` and find its run by ``correlation_input``; empty when nothing is."""
    try:
        doc = YAML(typ="safe").load(text)
    except YAMLError as exc:
        return [f"{where}: not valid YAML: {str(exc).splitlines()[0]}"]
    if not isinstance(doc, Mapping):
        return [f"{where}: not a workflow (the file is not a YAML mapping)"]
    on = doc.get("on", doc.get(True))  # YAML 1.1 readers turn a bare ``on`` into True
    if isinstance(on, str):
        on = {on: None}
    elif isinstance(on, list):
        on = dict.fromkeys(on)
    if not isinstance(on, Mapping) or "workflow_dispatch" not in on:
        return [f"{where}: the workflow has no workflow_dispatch trigger; add under on: workflow_dispatch:"]
    dispatch = on.get("workflow_dispatch") or {}
    declared: Mapping[str, Any] = (dispatch.get("inputs") if isinstance(dispatch, Mapping) else None) or {}
    problems = []
    missing = [name for name in dict.fromkeys([correlation_input, *inputs]) if name not in declared]
    if missing:
        lines = "; ".join(f'{name}: {{type: string, default: ""}}' for name in missing)
        problems.append(
            f"{where}: on.workflow_dispatch.inputs does not declare {', '.join(missing)} (GitHub refuses "
            f"a dispatch with undeclared inputs); add under on.workflow_dispatch.inputs: {lines}"
        )
    run_name = doc.get("run-name")
    if not isinstance(run_name, str) or not re.search(
        _INPUT_IN_EXPRESSION % re.escape(correlation_input), run_name
    ):
        shown = (
            f"its run-name {run_name!r} does not carry"
            if isinstance(run_name, str)
            else "it has no run-name carrying"
        )
        problems.append(
            f"{where}: {shown} the {correlation_input} input, so a dispatched run cannot be found "
            f"again when GitHub's answer does not name it; add: {run_name_line(correlation_input)}"
        )
    return problems
