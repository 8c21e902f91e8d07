"""Substitutions: values resolved against the launch context when the description is executed."""

import os


class Substitution:
    def perform(self, context) -> str:
        raise NotImplementedError


def perform_substitutions(context, value) -> str:
    """Resolve a str, a Substitution or a list of both (concatenated), as ``launch`` does."""
    if isinstance(value, str):
        return value
    if isinstance(value, Substitution):
        return value.perform(context)
    return "".join(perform_substitutions(context, part) for part in value)


class TextSubstitution(Substitution):
    def __init__(self, *, text: str):
        self.text = text

    def perform(self, context) -> str:
        return self.text


class LaunchConfiguration(Substitution):
    def __init__(self, variable_name, default=None):
        self.variable_name = variable_name
        self.default = default

    def perform(self, context) -> str:
        name = perform_substitutions(context, self.variable_name)
        if name in context.launch_configurations:
            return context.launch_configurations[name]
        if self.default is not None:
            return perform_substitutions(context, self.default)
        raise KeyError(f"launch configuration '{name}' does not exist")


class PathJoinSubstitution(Substitution):
    def __init__(self, substitutions):
        self.substitutions = substitutions

    def perform(self, context) -> str:
        return os.path.join(*(perform_substitutions(context, part) for part in self.substitutions))


class EnvironmentVariable(Substitution):
    def __init__(self, name, *, default_value=""):
        self.name = name
        self.default_value = default_value

    def perform(self, context) -> str:
        return os.environ.get(perform_substitutions(context, self.name), self.default_value)
