"""Answers given as Kubernetes YAML: one parser for the exercises that take manifests."""

from __future__ import annotations

from typing import Any

import yaml

from grading import AnswerShapeError


def yaml_documents(answer: Any, wrong_type: str) -> list:
    """The non-empty documents of a YAML text (or a list given as is). Invalid YAML is an
    :class:`AnswerShapeError` naming the line and column; any other type raises `wrong_type`."""
    if isinstance(answer, str):
        try:
            return [d for d in yaml.safe_load_all(answer) if d is not None]
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise AnswerShapeError(f"answer: invalid YAML{where}") from None
    if isinstance(answer, list):
        return answer
    raise AnswerShapeError(wrong_type)
