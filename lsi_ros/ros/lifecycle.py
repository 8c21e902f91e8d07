"""Lifecycle (managed) nodes of the camera hardware: dmd_driver and photodiode_sampler.

``ros2 lifecycle set <node> configure|activate|deactivate|cleanup|shutdown`` drives them like any
managed node; with ``autostart`` (the default) they configure and activate themselves, so a plain
``ros2 run`` or launch file brings the camera up. A subclass fills in configure / activate /
deactivate / cleanup; raising TransitionError (or ParameterError) fails the transition with its
message logged and kept in ``self.error`` for the diagnostics, and the node stays where it was.
"""

from dataclasses import replace

from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from rclpy.lifecycle import Node as LifecycleNode

from lsi_ros.ros.parameters import Param, ParameterError, declare

AUTOSTART = Param(
    "autostart",
    True,
    "Configure and activate when the node starts (false: wait for `ros2 lifecycle set`).",
)


class TransitionError(RuntimeError):
    """A lifecycle transition that cannot be completed (the reason is logged and reported)."""


def read_at_configure(*params: Param) -> tuple:
    """The params, those not live read by the configure transition (autostart: at startup)."""
    return tuple(
        replace(p, applies="configure") if p.applies == "startup" and p is not AUTOSTART else p
        for p in params
    )


class ManagedNode(LifecycleNode):
    """A lifecycle node whose configure-time parameters can change only while it is unconfigured."""

    def __init__(self, node_name: str, params, **node_options):
        super().__init__(node_name, **node_options)
        self.configured = False
        self.active = False
        self.error = ""
        self.parameter_error: ParameterError | None = None
        self.config = declare(
            self, params, apply=self.apply_parameters, configurable=lambda: not self.configured
        )

    def autostart(self) -> None:
        """Configure and activate when ``autostart`` says so; a parameter the backend refuses stops
        the node (node_main exits 2 naming it), as a bad parameter does in any node."""
        if not self.config["autostart"]:
            self.get_logger().info("unconfigured: waiting for `ros2 lifecycle set` (autostart false)")
            return
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()
        if self.parameter_error is not None:
            raise self.parameter_error

    def apply_parameters(self, changes: dict) -> None:
        """Put live parameter changes into effect (default: the nodes read self.config when needed)."""

    def configure(self) -> None: ...

    def activate(self) -> None: ...

    def deactivate(self) -> None: ...

    def cleanup(self) -> None: ...

    def _transition(self, step, state: LifecycleState, base) -> TransitionCallbackReturn:
        try:
            step()
        except ParameterError as error:
            self.parameter_error = error
            self.error = str(error)
        except (TransitionError, ValueError, OSError) as error:
            self.error = str(error)
        else:
            self.get_logger().info(f"lifecycle transition {step.__name__}: done")
            return base(state)
        self.get_logger().error(f"{step.__name__} failed: {self.error}")
        return TransitionCallbackReturn.FAILURE

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.error, self.parameter_error = "", None
        result = self._transition(self.configure, state, super().on_configure)
        self.configured = result == TransitionCallbackReturn.SUCCESS
        return result

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.active = True  # activate() and the callbacks it starts see the node active
        result = self._transition(self.activate, state, super().on_activate)
        self.active = result == TransitionCallbackReturn.SUCCESS
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.active = False
        return self._transition(self.deactivate, state, super().on_deactivate)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = self._transition(self.cleanup, state, super().on_cleanup)
        self.configured = result != TransitionCallbackReturn.SUCCESS
        return result

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release()
        return TransitionCallbackReturn.SUCCESS

    def release(self) -> None:
        """Deactivate and clean up whatever state the node is in (shutdown, destroy_node)."""
        if self.active:
            self.active = False
            self.deactivate()
        if self.configured:
            self.configured = False
            self.cleanup()

    def state_label(self) -> str:
        return "active" if self.active else "inactive" if self.configured else "unconfigured"
