"""The session runners themselves: one state machine per workflow shape, created once, started per session.

A machine is named after its definition's hash (see opscore.sessions.definition.machine_name), so the name says
which definition it holds: storing a template creates its machine (CreateStateMachine returns the existing one when
it already exists), and a trigger computes the ARN from the template without a read. A template whose machine does
not exist yet (an ad-hoc task's, or one stored before this generator's output changed) gets it on its first trigger.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opscore.aws.stepfunctions import MachineMissing, RunnerControl
from opscore.core.observability import logger
from opscore.sessions.definition import RunnerTargets, definition_text, machine_name, runner_definition

if TYPE_CHECKING:
    from opscore.core.settings import Settings
    from opscore.workflows.templates import WorkflowTemplate


class RunnerMachines:
    def __init__(self, control: RunnerControl, settings: Settings) -> None:
        if not (settings.runner_machine_prefix and settings.runner_role_arn and settings.dispatch_function_arn):
            raise RuntimeError("RUNNER_MACHINE_PREFIX, RUNNER_ROLE_ARN and DISPATCH_FUNCTION_ARN must be set")
        self._control = control
        self._arn_prefix, _, self._name_prefix = settings.runner_machine_prefix.rpartition(":")
        self._role_arn = settings.runner_role_arn
        self._log_group_arn = settings.runner_log_group_arn
        self._targets = RunnerTargets(settings.dispatch_function_arn, settings.table_name)

    def definition(self, template: WorkflowTemplate) -> dict[str, Any]:
        return runner_definition(template, self._targets)

    def arn(self, template: WorkflowTemplate) -> str:
        return f"{self._arn_prefix}:{self._name(template, self.definition(template))}"

    def ensure(self, template: WorkflowTemplate) -> str:
        """The template's machine, created now unless it exists."""
        definition = self.definition(template)
        name = self._name(template, definition)
        arn = self._control.create_machine(
            f"{self._arn_prefix}:{name}", name, definition_text(definition), self._role_arn, self._log_group_arn
        )
        logger.info(
            "session runner ready", extra={"event": "runner_ready", "workflow_id": template.name, "state_machine": name}
        )
        return arn

    def start(
        self, template: WorkflowTemplate, machine_arn: str, session_id: str, runner_input: dict[str, Any]
    ) -> None:
        try:
            self._control.start(machine_arn, session_id, runner_input)
        except MachineMissing:
            self.ensure(template)
            self._control.start(machine_arn, session_id, runner_input)

    def _name(self, template: WorkflowTemplate, definition: dict[str, Any]) -> str:
        return machine_name(self._name_prefix, template.name, definition, self._role_arn)
