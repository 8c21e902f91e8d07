"""Conditions on actions, evaluated like ``launch``'s (true/false/1/0, case-insensitive)."""

from launch.substitutions import perform_substitutions

_TRUE = {"true", "1"}
_FALSE = {"false", "0"}


def _as_bool(context, predicate) -> bool:
    text = perform_substitutions(context, predicate).strip().lower()
    if text not in _TRUE | _FALSE:
        raise ValueError(f"condition value '{text}' is not one of true/false/1/0")
    return text in _TRUE


class IfCondition:
    def __init__(self, predicate_expression):
        self.predicate = predicate_expression

    def evaluate(self, context) -> bool:
        return _as_bool(context, self.predicate)


class UnlessCondition(IfCondition):
    def evaluate(self, context) -> bool:
        return not _as_bool(context, self.predicate)
