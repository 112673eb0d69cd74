"""Read template.yaml: the routes, functions, authorizer, gateway responses and tables the local runtime serves.

The local runtime takes all of these from the template, so what runs on a laptop cannot drift from what deploys.
Only the intrinsic functions the template actually uses for these values are resolved (Ref to a parameter, a table
or a state machine, GetAtt of a function's Arn);
anything else is reported as unsupported rather than guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# The account and region every local ARN names (moto's defaults).
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"


class TemplateError(Exception):
    """template.yaml uses something the local runtime cannot reproduce."""


class _CfnLoader(yaml.SafeLoader):
    """A YAML loader that understands CloudFormation's short tags (!Ref, !Sub, !GetAtt, ...)."""


def _tag_constructor(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag_constructor)


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # API Gateway resource path, e.g. /v1/opscore/agent/{agentId}
    function: str  # logical id
    authorized: bool
    pattern: re.Pattern[str] = field(compare=False)

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.match(path)
        return found.groupdict() if found else None


@dataclass(frozen=True)
class Function:
    logical_id: str
    code_dir: Path
    module: str
    handler: str
    environment: dict[str, str]
    timeout_seconds: float = 3.0  # Lambda's own default when neither the function nor Globals set one


@dataclass(frozen=True)
class Schedule:
    """A function the template runs on a `rate(...)` schedule."""

    function: str
    every_seconds: int


_RATE = re.compile(r"rate\((\d+) (second|minute|hour|day)s?\)")
_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86_400}


def _rate_seconds(expression: str, where: str) -> int:
    found = _RATE.fullmatch(expression.strip())
    if found is None:
        raise TemplateError(f"{where}: the local runtime runs rate(...) schedules only, not {expression!r}")
    return int(found.group(1)) * _UNIT_SECONDS[found.group(2)]


@dataclass(frozen=True)
class Authorizer:
    function: str
    identity_headers: tuple[str, ...]


@dataclass(frozen=True)
class GatewayResponse:
    status: int | None
    template: str


@dataclass(frozen=True)
class Throttle:
    """A usage plan's per-key limit: steady requests a second, and how many may come at once."""

    rate: float
    burst: int


@dataclass(frozen=True)
class Table:
    logical_id: str
    properties: dict[str, Any]


@dataclass(frozen=True)
class StateMachine:
    logical_id: str
    definition_path: Path
    substitutions: dict[str, str]

    def definition(self) -> str:
        """The ASL with DefinitionSubstitutions applied, as CloudFormation would deploy it."""
        text = self.definition_path.read_text()
        for name, value in self.substitutions.items():
            text = text.replace("${" + name + "}", value)
        return text


@dataclass(frozen=True)
class Template:
    root: Path
    stage: str
    routes: list[Route]
    functions: dict[str, Function]
    authorizer: Authorizer | None
    gateway_responses: dict[str, GatewayResponse]
    tables: list[Table]
    state_machines: list[StateMachine] = field(default_factory=list)
    schedules: list[Schedule] = field(default_factory=list)
    per_key_throttle: Throttle | None = None  # the usage plan's, when the template has one

    @property
    def table_names(self) -> dict[str, str]:
        return {table.logical_id: local_table_name(table.logical_id) for table in self.tables}


# What the pseudo parameters stand for locally (moto's account and region).
PSEUDO_PARAMETERS = {
    "AWS::Partition": "aws",
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT_ID,
    "AWS::StackName": "opscore-local",
    "AWS::URLSuffix": "amazonaws.com",
}


def local_table_name(logical_id: str) -> str:
    return f"opscore-local-{logical_id}"


def local_state_machine_name(logical_id: str) -> str:
    return f"opscore-local-{logical_id}"


def local_state_machine_arn(logical_id: str) -> str:
    return f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:{local_state_machine_name(logical_id)}"


def local_function_arn(logical_id: str) -> str:
    """Functions keep their logical id as their name locally, so an ARN leads back to the handler."""
    return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{logical_id}"


def _route_pattern(path: str) -> re.Pattern[str]:
    # {name} matches one path segment, {name+} the rest of the path, as in API Gateway.
    parts = re.split(r"(\{[A-Za-z0-9_]+\+?\})", path)
    regex = ""
    for part in parts:
        param = re.fullmatch(r"\{([A-Za-z0-9_]+)(\+?)\}", part)
        if param:
            regex += f"(?P<{param.group(1)}>.+)" if param.group(2) else f"(?P<{param.group(1)}>[^/]+)"
        else:
            regex += re.escape(part)
    return re.compile(f"^{regex}$")


class _Resolver:
    """Resolves the few intrinsic functions that environment values and settings use."""

    def __init__(self, parameters: dict[str, Any], resources: dict[str, Any], tables: dict[str, str]) -> None:
        self._parameters = parameters
        self._resources = resources
        self._tables = tables

    def value(self, raw: Any, where: str) -> str:
        if isinstance(raw, str | int | float | bool):
            return str(raw)
        if isinstance(raw, dict) and set(raw) == {"Ref"} and (found := self._ref(raw["Ref"])) is not None:
            return found
        if isinstance(raw, dict) and set(raw) == {"Fn::GetAtt"}:
            name, attribute = raw["Fn::GetAtt"]
            return self._attribute(name, attribute, where)
        if isinstance(raw, dict) and set(raw) == {"Fn::Sub"} and isinstance(raw["Fn::Sub"], str):
            return re.sub(
                r"\$\{([A-Za-z0-9:._]+)\}", lambda found: self._placeholder(found.group(1), where), raw["Fn::Sub"]
            )
        raise TemplateError(f"{where}: the local runtime cannot resolve {raw!r}")

    def _ref(self, name: str) -> str | None:
        """What !Ref <name> stands for locally: a pseudo parameter, a table, a state machine, a parameter's default."""
        if name in PSEUDO_PARAMETERS:
            return PSEUDO_PARAMETERS[name]
        if name in self._tables:
            return self._tables[name]
        if self._type(name) == "AWS::Serverless::StateMachine":
            return local_state_machine_arn(name)
        if name in self._parameters and "Default" in self._parameters[name]:
            return str(self._parameters[name]["Default"])
        return None

    def _attribute(self, name: str, attribute: str, where: str) -> str:
        kind = self._type(name)
        if kind == "AWS::Serverless::Function" and attribute == "Arn":
            return local_function_arn(name)
        if kind == "AWS::IAM::Role" and attribute == "Arn":
            return f"arn:aws:iam::{ACCOUNT_ID}:role/opscore-local-{name}"
        if kind == "AWS::Logs::LogGroup" and attribute == "Arn":
            return f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:opscore-local-{name}:*"
        raise TemplateError(f"{where}: the local runtime cannot resolve {name}.{attribute}")

    def _placeholder(self, name: str, where: str) -> str:
        """One ${...} of a !Sub: a pseudo parameter, a parameter's default, or a resource's attribute."""
        if name in PSEUDO_PARAMETERS:
            return PSEUDO_PARAMETERS[name]
        if "." in name:
            resource, attribute = name.split(".", 1)
            return self._attribute(resource, attribute, where)
        return self.value({"Ref": name}, where)

    def _type(self, name: str) -> str | None:
        resource = self._resources.get(name)
        return resource.get("Type") if isinstance(resource, dict) else None


def load_template(path: Path) -> Template:
    document = yaml.load(path.read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass with CFN tags
    resources: dict[str, Any] = document.get("Resources", {})
    parameters: dict[str, Any] = document.get("Parameters", {})
    tables = [
        Table(logical_id, resource["Properties"])
        for logical_id, resource in resources.items()
        if resource["Type"] == "AWS::DynamoDB::Table"
    ]
    resolver = _Resolver(
        parameters, resources, {table.logical_id: local_table_name(table.logical_id) for table in tables}
    )
    state_machines = [
        StateMachine(
            logical_id=logical_id,
            definition_path=(path.parent / resource["Properties"]["DefinitionUri"]).resolve(),
            substitutions={
                name: resolver.value(value, f"{logical_id}.DefinitionSubstitutions.{name}")
                for name, value in resource["Properties"].get("DefinitionSubstitutions", {}).items()
            },
        )
        for logical_id, resource in resources.items()
        if resource["Type"] == "AWS::Serverless::StateMachine"
    ]
    global_function = document.get("Globals", {}).get("Function", {})
    global_env = global_function.get("Environment", {}).get("Variables", {})

    functions: dict[str, Function] = {}
    routes: list[Route] = []
    schedules: list[Schedule] = []
    api: dict[str, Any] | None = None
    for logical_id, resource in resources.items():
        if resource["Type"] == "AWS::Serverless::Api":
            if api is not None:
                raise TemplateError("the local runtime serves one AWS::Serverless::Api")
            api = resource["Properties"]
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        properties = resource["Properties"]
        module, _, handler = properties["Handler"].rpartition(".")
        variables = {**global_env, **properties.get("Environment", {}).get("Variables", {})}
        functions[logical_id] = Function(
            logical_id=logical_id,
            code_dir=(path.parent / properties["CodeUri"]).resolve(),
            module=module,
            handler=handler,
            environment={name: resolver.value(value, f"{logical_id}.{name}") for name, value in variables.items()},
            timeout_seconds=float(properties.get("Timeout", global_function.get("Timeout", 3))),
        )
        for name, event in properties.get("Events", {}).items():
            if event["Type"] == "Schedule":
                rate = _rate_seconds(event["Properties"]["Schedule"], f"{logical_id}.Events.{name}")
                schedules.append(Schedule(function=logical_id, every_seconds=rate))
            if event["Type"] != "Api":
                continue
            event_properties = event["Properties"]
            authorizer = event_properties.get("Auth", {}).get("Authorizer")
            routes.append(
                Route(
                    method=event_properties["Method"].upper(),
                    path=event_properties["Path"],
                    function=logical_id,
                    authorized=authorizer != "NONE",
                    pattern=_route_pattern(event_properties["Path"]),
                )
            )
    if api is None:
        raise TemplateError("template.yaml has no AWS::Serverless::Api")
    return Template(
        root=path.parent.resolve(),
        stage=resolver.value(api["StageName"], "OpsCoreApi.StageName"),
        routes=routes,
        functions=functions,
        authorizer=_authorizer(api),
        gateway_responses=_gateway_responses(api),
        tables=tables,
        state_machines=state_machines,
        schedules=schedules,
        per_key_throttle=_per_key_throttle(resources, resolver),
    )


def _per_key_throttle(resources: dict[str, Any], resolver: _Resolver) -> Throttle | None:
    """The usage plan's throttle (the per-key limit), its parameters' defaults resolved; None without a plan."""
    throttles = [
        Throttle(
            rate=float(resolver.value(resource["Properties"]["Throttle"]["RateLimit"], f"{logical_id}.RateLimit")),
            burst=int(resolver.value(resource["Properties"]["Throttle"]["BurstLimit"], f"{logical_id}.BurstLimit")),
        )
        for logical_id, resource in resources.items()
        if resource["Type"] == "AWS::ApiGateway::UsagePlan" and "Throttle" in resource.get("Properties", {})
    ]
    if len(throttles) > 1:
        raise TemplateError("the local runtime emulates one usage plan")
    return throttles[0] if throttles else None


def _authorizer(api: dict[str, Any]) -> Authorizer | None:
    auth = api.get("Auth", {})
    default = auth.get("DefaultAuthorizer")
    if default is None:
        return None
    config = auth["Authorizers"][default]
    if config.get("FunctionPayloadType") != "REQUEST":
        raise TemplateError("the local runtime emulates REQUEST authorizers only")
    arn = config["FunctionArn"]
    if not (isinstance(arn, dict) and "Fn::GetAtt" in arn):
        raise TemplateError("the authorizer's FunctionArn must be !GetAtt <Function>.Arn")
    return Authorizer(function=arn["Fn::GetAtt"][0], identity_headers=tuple(config["Identity"].get("Headers", [])))


def _gateway_responses(api: dict[str, Any]) -> dict[str, GatewayResponse]:
    responses = {}
    for kind, config in api.get("GatewayResponses", {}).items():
        templates = config.get("ResponseTemplates", {})
        status = config.get("StatusCode")
        responses[kind] = GatewayResponse(
            status=int(status) if status is not None else None, template=templates.get("application/json", "")
        )
    return responses
