//! Keeps `deploy/framefleet.yaml` from drifting away from the code: the `FRAMEFLEET__*`
//! environment each ECS task definition gives a framefleet service (dispatcher, worker) must
//! load through that service's own config loader (which denies unknown keys), pass its
//! start-up validation, and land every value in the setting the variable names, exactly as the
//! container would at start-up, so a misspelt, removed or refused name fails here instead of
//! at deploy.
//!
//! Values are resolved the way CloudFormation would at the template's defaults:
//! - `!Ref Parameter` gives the parameter's `Default` (parameters without one, such as the
//!   image URIs, must not be passed to a service)
//!   (<https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/parameters-section-structure.html>);
//! - pseudo parameters give a fixed region, account and stack name
//!   (<https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/pseudo-parameter-reference.html>);
//! - a resource's `Ref` and `!GetAtt` give a placeholder of the shape its type returns, built
//!   from the name its properties set (or a generated one): a bucket's `Ref` is its name
//!   (<https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-s3-bucket.html#aws-resource-s3-bucket-return-values>),
//!   a queue's `Ref` its URL
//!   (<https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-sqs-queue.html#aws-resource-sqs-queue-return-values>),
//!   a table's `Ref` its name
//!   (<https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-dynamodb-table.html#aws-resource-dynamodb-table-return-values>),
//!   a role's `Ref` its name and `Arn` its ARN
//!   (<https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-iam-role.html#aws-resource-iam-role-return-values>),
//!   a cluster's `Ref` its name
//!   (<https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-ecs-cluster.html#aws-resource-ecs-cluster-return-values>),
//!   a service's `Ref` its ARN and `Name` its name
//!   (<https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-ecs-service.html#aws-resource-ecs-service-return-values>);
//! - `!Sub`, `!Join` and `!If` (with `Conditions` evaluated at the defaults) as documented
//!   (<https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/intrinsic-function-reference.html>).
//!
//! The reverse holds too: every template parameter a service container is passed has a row in
//! [`PASSED`] naming the setting it must reach, and each reaches it both at its default and at
//! another value CloudFormation accepts.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use framefleet_core::config::{load, ConfigError};
use framefleet_dispatcher::DispatcherSettings;
use framefleet_e2e::settings_env::{self, PREFIX};
use framefleet_provision::iam_from_template::TEMPLATE;
use framefleet_worker::WorkerSettings;
use serde_yaml::{Mapping, Value};

type Env = HashMap<String, String>;

/// `AWS::Region` at deploy time.
const REGION: &str = "us-east-1";
/// `AWS::AccountId` at deploy time.
const ACCOUNT: &str = "123456789012";
/// `AWS::StackName` at deploy time.
const STACK: &str = "framefleet";
/// The unique suffix CloudFormation appends to the names it generates.
const GENERATED_SUFFIX: &str = "1A2B3C4D5E6F";

/// A service's settings loaded from an environment: validated, and serialized for
/// [`settings_env::unreached`].
struct Loaded {
    /// `validate()`'s verdict.
    valid: Result<(), ConfigError>,
    /// The settings as `serde_json` sees them.
    tree: serde_json::Value,
    /// Variables that did not reach the setting they name.
    unreached: Vec<String>,
}

fn loaded<T: serde::Serialize>(
    env: &Env,
    settings: Result<T, ConfigError>,
    validate: fn(&T) -> Result<(), ConfigError>,
) -> Result<Loaded, ConfigError> {
    let settings = settings?;
    Ok(Loaded {
        valid: validate(&settings),
        tree: serde_json::to_value(&settings).expect("settings serialize"),
        unreached: settings_env::unreached(&settings, env),
    })
}

/// Loads one service's settings from exactly `env`, as its `main` does.
type Loader = fn(&Env) -> Result<Loaded, ConfigError>;

fn load_dispatcher(env: &Env) -> Result<Loaded, ConfigError> {
    loaded(
        env,
        load::<DispatcherSettings>(None, Some(env.clone())),
        DispatcherSettings::validate,
    )
}

fn load_worker(env: &Env) -> Result<Loaded, ConfigError> {
    loaded(
        env,
        load::<WorkerSettings>(None, Some(env.clone())),
        WorkerSettings::validate,
    )
}

/// Every container that runs a framefleet service, by its `Name`, with its loader.
const SERVICES: [(&str, Loader); 2] = [("dispatcher", load_dispatcher), ("worker", load_worker)];

/// Containers of the task definitions that are not framefleet services (and so must not be
/// given `FRAMEFLEET__*` variables): the telemetry collector sidecar.
const NOT_SERVICES: [&str; 1] = ["otel-collector"];

/// Every template parameter a service container is passed: (container, parameter, the setting
/// it must reach, another value CloudFormation accepts for it). The other values differ from
/// the defaults and from each other, so two parameters wired to each other's settings show.
const PASSED: [(&str, &str, &str, &str); 10] = [
    (
        "dispatcher",
        "CaptureRate",
        "dispatcher.capture_rate",
        "30000/1001",
    ),
    (
        "dispatcher",
        "OutputLayout",
        "dispatcher.output_layout",
        "objects",
    ),
    (
        "dispatcher",
        "SegmentSeconds",
        "dispatcher.segment_secs",
        "90",
    ),
    (
        "dispatcher",
        "SegmentMinDurationSeconds",
        "dispatcher.segment_min_duration_secs",
        "300",
    ),
    ("dispatcher", "MaxSegments", "dispatcher.max_segments", "8"),
    (
        "dispatcher",
        "SegmentsInFlight",
        "dispatcher.segments_in_flight",
        "4",
    ),
    ("dispatcher", "ScaleOnKnownWork", "scaling.enabled", "false"),
    ("dispatcher", "WorkerMinTasks", "scaling.min_tasks", "2"),
    ("dispatcher", "WorkerMaxTasks", "scaling.max_tasks", "20"),
    (
        "dispatcher",
        "BacklogPerTaskTarget",
        "scaling.backlog_per_task",
        "100",
    ),
];

/// The template, with parameter values set over the defaults.
struct Template {
    root: Value,
    parameters: HashMap<String, String>,
}

/// One resolved variable: its value and the parameters its expression names directly.
#[derive(Debug, Clone, PartialEq)]
struct Variable {
    value: String,
    parameters: BTreeSet<String>,
}

/// A service container's resolved environment.
#[derive(Debug)]
struct Container {
    task_definition: String,
    name: String,
    variables: BTreeMap<String, Variable>,
}

impl Container {
    /// The `FRAMEFLEET__*` variables, as the loader gets them.
    fn framefleet_env(&self) -> Env {
        self.variables
            .iter()
            .filter(|(name, _)| name.starts_with(PREFIX))
            .map(|(name, variable)| (name.clone(), variable.value.clone()))
            .collect()
    }
}

/// `(function, argument)` of a short-form (`!Ref x`) or long-form (`{Ref: x}`) intrinsic.
fn intrinsic(value: &Value) -> Option<(String, &Value)> {
    match value {
        Value::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            Some((
                if name == "Ref" || name == "Condition" {
                    name.to_string()
                } else {
                    format!("Fn::{name}")
                },
                &tagged.value,
            ))
        }
        Value::Mapping(map) if map.len() == 1 => {
            let (key, argument) = map.iter().next()?;
            let key = key.as_str()?;
            (key == "Ref" || key == "Condition" || key.starts_with("Fn::"))
                .then(|| (key.to_string(), argument))
        }
        _ => None,
    }
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Template {
    fn deployed() -> Self {
        Self::parse(TEMPLATE)
    }

    fn parse(yaml: &str) -> Self {
        Self {
            root: serde_yaml::from_str(yaml).expect("the template is YAML"),
            parameters: HashMap::new(),
        }
    }

    fn with_parameter(mut self, name: &str, value: &str) -> Self {
        self.parameters.insert(name.to_string(), value.to_string());
        self
    }

    fn section(&self, name: &str) -> &Mapping {
        self.root
            .get(name)
            .and_then(Value::as_mapping)
            .unwrap_or_else(|| panic!("the template has no {name}"))
    }

    fn parameter(&self, name: &str) -> Option<&Value> {
        self.root.get("Parameters").and_then(|p| p.get(name))
    }

    /// The value CloudFormation would give `value`, or `None` for `AWS::NoValue`; the
    /// parameters it names directly go to `used`.
    fn resolve(
        &self,
        value: &Value,
        used: &mut BTreeSet<String>,
    ) -> Result<Option<String>, String> {
        let Some((function, argument)) = intrinsic(value) else {
            return scalar(value)
                .map(Some)
                .ok_or_else(|| format!("expected a scalar, found {value:?}"));
        };
        match function.as_str() {
            "Ref" => {
                let name = argument.as_str().ok_or("Ref takes a name")?;
                self.reference(name, used)
            }
            "Fn::GetAtt" => {
                let (resource, attribute) = match argument {
                    Value::String(s) => {
                        s.split_once('.').ok_or("GetAtt takes Resource.Attribute")?
                    }
                    Value::Sequence(parts) if parts.len() == 2 => (
                        parts[0].as_str().ok_or("GetAtt takes names")?,
                        parts[1].as_str().ok_or("GetAtt takes names")?,
                    ),
                    _ => return Err("GetAtt takes Resource.Attribute".into()),
                };
                self.attribute(resource, Some(attribute)).map(Some)
            }
            "Fn::Sub" => {
                let (text, variables) = match argument {
                    Value::String(s) => (s.as_str(), None),
                    Value::Sequence(parts) if parts.len() == 2 => (
                        parts[0].as_str().ok_or("Sub takes a string first")?,
                        Some(parts[1].as_mapping().ok_or("Sub takes a mapping second")?),
                    ),
                    _ => return Err("Sub takes a string or [string, mapping]".into()),
                };
                self.substitute(text, variables, used).map(Some)
            }
            "Fn::Join" => {
                let Some([delimiter, items]) = argument.as_sequence().map(Vec::as_slice) else {
                    return Err("Join takes [delimiter, list]".into());
                };
                let delimiter = delimiter.as_str().ok_or("Join's delimiter is a string")?;
                let items = items
                    .as_sequence()
                    .ok_or("Join's second argument is a list")?;
                let mut parts = Vec::new();
                for item in items {
                    parts.extend(self.resolve(item, used)?);
                }
                Ok(Some(parts.join(delimiter)))
            }
            "Fn::If" => match self.chosen(value)? {
                Some(branch) => self.resolve(branch, used),
                None => Ok(None),
            },
            other => Err(format!("intrinsic {other} is not resolved by this test")),
        }
    }

    fn reference(&self, name: &str, used: &mut BTreeSet<String>) -> Result<Option<String>, String> {
        Ok(Some(match name {
            "AWS::NoValue" => return Ok(None),
            "AWS::Region" => REGION.into(),
            "AWS::AccountId" => ACCOUNT.into(),
            "AWS::StackName" => STACK.into(),
            "AWS::Partition" => "aws".into(),
            "AWS::URLSuffix" => "amazonaws.com".into(),
            _ => {
                if let Some(parameter) = self.parameter(name) {
                    used.insert(name.to_string());
                    match self.parameters.get(name) {
                        Some(value) => value.clone(),
                        None => parameter
                            .get("Default")
                            .and_then(scalar)
                            .ok_or_else(|| format!("parameter {name} has no Default"))?,
                    }
                } else {
                    self.attribute(name, None)?
                }
            }
        }))
    }

    /// The placeholder a resource's `Ref` (`attribute` `None`) or `!GetAtt` gives, by its type.
    fn attribute(&self, logical_id: &str, attribute: Option<&str>) -> Result<String, String> {
        let resource = self
            .section("Resources")
            .get(logical_id)
            .ok_or_else(|| format!("`{logical_id}` is neither a parameter nor a resource"))?;
        let kind = resource.get("Type").and_then(Value::as_str).unwrap_or("");
        // The name its properties set (resolved apart: those parameters are not passed), or the
        // name CloudFormation generates.
        let named = |property: &str, generated: String| -> Result<String, String> {
            match resource.get("Properties").and_then(|p| p.get(property)) {
                Some(value) => self
                    .resolve(value, &mut BTreeSet::new())?
                    .ok_or_else(|| format!("{logical_id}.{property} is AWS::NoValue")),
                None => Ok(generated),
            }
        };
        let generated = format!("{STACK}-{logical_id}-{GENERATED_SUFFIX}");
        let value = match (kind, attribute) {
            ("AWS::S3::Bucket", attribute) => {
                let name = named("BucketName", generated.to_ascii_lowercase())?;
                match attribute {
                    None => name,
                    Some("Arn") => format!("arn:aws:s3:::{name}"),
                    Some("DomainName") => format!("{name}.s3.amazonaws.com"),
                    Some("RegionalDomainName") => format!("{name}.s3.{REGION}.amazonaws.com"),
                    Some(other) => return Err(format!("no placeholder for {kind}.{other}")),
                }
            }
            ("AWS::SQS::Queue", attribute) => {
                let name = named("QueueName", generated)?;
                match attribute {
                    None | Some("QueueUrl") => {
                        format!("https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}")
                    }
                    Some("Arn") => format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"),
                    Some("QueueName") => name,
                    Some(other) => return Err(format!("no placeholder for {kind}.{other}")),
                }
            }
            ("AWS::DynamoDB::Table", attribute) => {
                let name = named("TableName", generated)?;
                match attribute {
                    None => name,
                    Some("Arn") => format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"),
                    Some(other) => return Err(format!("no placeholder for {kind}.{other}")),
                }
            }
            ("AWS::IAM::Role", attribute) => {
                let name = named("RoleName", generated)?;
                match attribute {
                    None => name,
                    Some("Arn") => format!("arn:aws:iam::{ACCOUNT}:role/{name}"),
                    Some(other) => return Err(format!("no placeholder for {kind}.{other}")),
                }
            }
            ("AWS::ECS::Cluster", attribute) => {
                let name = named("ClusterName", generated)?;
                match attribute {
                    None => name,
                    Some("Arn") => format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{name}"),
                    Some(other) => return Err(format!("no placeholder for {kind}.{other}")),
                }
            }
            ("AWS::ECS::Service", attribute) => {
                let name = named("ServiceName", generated)?;
                let cluster = named("Cluster", "default".into())?;
                match attribute {
                    Some("Name") => name,
                    None | Some("ServiceArn") => {
                        format!("arn:aws:ecs:{REGION}:{ACCOUNT}:service/{cluster}/{name}")
                    }
                    Some(other) => return Err(format!("no placeholder for {kind}.{other}")),
                }
            }
            ("AWS::Logs::LogGroup", attribute) => {
                let name = named("LogGroupName", generated)?;
                match attribute {
                    None => name,
                    Some("Arn") => format!("arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}:*"),
                    Some(other) => return Err(format!("no placeholder for {kind}.{other}")),
                }
            }
            (kind, attribute) => {
                return Err(format!(
                    "no placeholder for `{logical_id}` ({kind}) {}",
                    attribute.unwrap_or("Ref")
                ))
            }
        };
        Ok(value)
    }

    fn substitute(
        &self,
        text: &str,
        variables: Option<&Mapping>,
        used: &mut BTreeSet<String>,
    ) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or("unclosed ${ in Sub")?;
            let name = &after[..end];
            rest = &after[end + 1..];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str(&format!("${{{literal}}}"));
                continue;
            }
            let value = match variables.and_then(|v| v.get(name)) {
                Some(value) => self.resolve(value, used)?,
                None => match name.split_once('.').filter(|_| !name.starts_with("AWS::")) {
                    Some((resource, attribute)) => Some(self.attribute(resource, Some(attribute))?),
                    None => self.reference(name, used)?,
                },
            };
            out.push_str(&value.ok_or("AWS::NoValue inside Sub")?);
        }
        out.push_str(rest);
        Ok(out)
    }

    /// For `!If [condition, then, else]`, the branch the condition picks (`None` for
    /// `AWS::NoValue`); anything else is itself.
    fn chosen<'a>(&self, value: &'a Value) -> Result<Option<&'a Value>, String> {
        match intrinsic(value) {
            Some((function, argument)) if function == "Fn::If" => {
                let Some([condition, then, otherwise]) = argument.as_sequence().map(Vec::as_slice)
                else {
                    return Err("If takes [condition, then, else]".into());
                };
                let condition = condition.as_str().ok_or("If names a condition")?;
                let branch = if self.condition(condition)? {
                    then
                } else {
                    otherwise
                };
                self.chosen(branch)
            }
            Some((function, argument))
                if function == "Ref" && argument.as_str() == Some("AWS::NoValue") =>
            {
                Ok(None)
            }
            _ => Ok(Some(value)),
        }
    }

    fn condition(&self, name: &str) -> Result<bool, String> {
        let body = self
            .section("Conditions")
            .get(name)
            .ok_or_else(|| format!("no condition {name}"))?;
        self.evaluate(body)
    }

    fn evaluate(&self, body: &Value) -> Result<bool, String> {
        let (function, argument) = intrinsic(body).ok_or("a condition is an intrinsic")?;
        let operands = || {
            argument
                .as_sequence()
                .ok_or(format!("{function} takes a list"))
        };
        match function.as_str() {
            "Condition" => self.condition(argument.as_str().ok_or("Condition takes a name")?),
            "Fn::Equals" => {
                let Some([a, b]) = argument.as_sequence().map(Vec::as_slice) else {
                    return Err("Equals takes two values".into());
                };
                let mut scratch = BTreeSet::new();
                Ok(self.resolve(a, &mut scratch)? == self.resolve(b, &mut scratch)?)
            }
            "Fn::Not" => Ok(!self.evaluate(operands()?.first().ok_or("Not takes one")?)?),
            "Fn::And" => operands()?
                .iter()
                .try_fold(true, |all, c| Ok(all && self.evaluate(c)?)),
            "Fn::Or" => operands()?
                .iter()
                .try_fold(false, |any, c| Ok(any || self.evaluate(c)?)),
            other => Err(format!(
                "condition function {other} is not evaluated by this test"
            )),
        }
    }

    /// Every container of every task definition, through every `!If` branch:
    /// (task definition, container definition).
    fn all_containers(&self) -> Vec<(String, &Value)> {
        fn branches<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
            match intrinsic(value) {
                Some((function, argument)) if function == "Fn::If" => {
                    for branch in argument.as_sequence().into_iter().flatten().skip(1) {
                        branches(branch, out);
                    }
                }
                Some((function, _)) if function == "Ref" => {} // AWS::NoValue
                _ => out.push(value),
            }
        }
        let mut containers = Vec::new();
        for (logical_id, resource) in self.section("Resources") {
            if resource.get("Type").and_then(Value::as_str) != Some("AWS::ECS::TaskDefinition") {
                continue;
            }
            let logical_id = logical_id.as_str().expect("logical ids are strings");
            let definitions = resource["Properties"]["ContainerDefinitions"]
                .as_sequence()
                .unwrap_or_else(|| panic!("{logical_id} has no ContainerDefinitions list"));
            for definition in definitions {
                let mut found = Vec::new();
                branches(definition, &mut found);
                containers.extend(found.into_iter().map(|c| (logical_id.to_string(), c)));
            }
        }
        containers
    }

    /// Every service container's environment, resolved at this template's parameter values.
    fn service_containers(&self) -> Vec<Container> {
        let mut containers = Vec::new();
        for (task_definition, definition) in self.all_containers() {
            let name = definition.get("Name").and_then(Value::as_str).unwrap_or("");
            if !SERVICES.iter().any(|(service, _)| *service == name) {
                continue;
            }
            let mut variables = BTreeMap::new();
            let environment = definition
                .get("Environment")
                .and_then(Value::as_sequence)
                .unwrap_or_else(|| panic!("{task_definition} `{name}` has no Environment list"));
            for entry in environment {
                let Some(entry) = self.chosen(entry).unwrap() else {
                    continue;
                };
                let variable = entry
                    .get("Name")
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| {
                        panic!("{task_definition} `{name}`: an Environment entry has no Name")
                    });
                let mut parameters = BTreeSet::new();
                let value = entry
                    .get("Value")
                    .map(|value| self.resolve(value, &mut parameters))
                    .transpose()
                    .unwrap_or_else(|e| panic!("{task_definition} `{name}` {variable}: {e}"))
                    .flatten()
                    .unwrap_or_default();
                let previous =
                    variables.insert(variable.to_string(), Variable { value, parameters });
                assert!(
                    previous.is_none(),
                    "{task_definition} `{name}` sets {variable} twice"
                );
            }
            containers.push(Container {
                task_definition,
                name: name.to_string(),
                variables,
            });
        }
        containers
    }
}

fn loader(container: &str) -> Loader {
    SERVICES
        .iter()
        .find(|(name, _)| *name == container)
        .map(|(_, loader)| *loader)
        .expect("a service container")
}

/// Loads each service container's `FRAMEFLEET__*` environment: every failure, one line each.
fn failures(template: &Template) -> Vec<String> {
    let mut failures = Vec::new();
    for container in template.service_containers() {
        let env = container.framefleet_env();
        let label = format!("{} `{}`", container.task_definition, container.name);
        match loader(&container.name)(&env) {
            Err(error) => failures.push(format!("{label}: {error}")),
            Ok(loaded) => {
                if let Err(error) = loaded.valid {
                    failures.push(format!("{label}: {error}"));
                }
                failures.extend(loaded.unreached.iter().map(|p| format!("{label}: {p}")));
            }
        }
    }
    failures
}

/// The setting at dotted `key` of a loaded service.
fn setting<'a>(loaded: &'a Loaded, key: &str) -> Option<&'a serde_json::Value> {
    key.split('.')
        .try_fold(&loaded.tree, |node, part| node.get(part))
}

#[test]
fn each_service_loads_its_task_definition_environment() {
    let template = Template::deployed();
    let containers = template.service_containers();
    let found: BTreeSet<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    let expected: BTreeSet<&str> = SERVICES.iter().map(|(name, _)| *name).collect();
    assert_eq!(found, expected, "the task definitions' service containers");
    for container in &containers {
        assert!(
            container.framefleet_env().len() > 1,
            "{} `{}` passes no FRAMEFLEET__ settings",
            container.task_definition,
            container.name
        );
    }
    let failures = failures(&template);
    assert!(
        failures.is_empty(),
        "the template's service environment is refused:\n{}",
        failures.join("\n")
    );
}

/// The container does not see a variable whose name only looks like the loader's (one
/// underscore after the prefix, lower case): the loader ignores it without a word.
#[test]
fn every_framefleet_variable_is_named_as_the_loader_reads_it() {
    for container in Template::deployed().service_containers() {
        for name in container.variables.keys() {
            if name.to_ascii_uppercase().starts_with("FRAMEFLEET") {
                assert!(
                    name.starts_with(PREFIX) && *name == name.to_ascii_uppercase(),
                    "{} `{}`: {name} is not FRAMEFLEET__<SECTION>__<KEY>",
                    container.task_definition,
                    container.name
                );
            }
        }
    }
}

/// Every container is either a framefleet service, checked above, or known not to be one and
/// then given no framefleet settings; a new container must be classified here.
#[test]
fn every_container_is_a_checked_service_or_a_known_sidecar() {
    let template = Template::deployed();
    let containers = template.all_containers();
    assert!(!containers.is_empty());
    for (task_definition, definition) in containers {
        let name = definition.get("Name").and_then(Value::as_str).unwrap_or("");
        if SERVICES.iter().any(|(service, _)| *service == name) {
            continue;
        }
        assert!(
            NOT_SERVICES.contains(&name),
            "{task_definition} runs `{name}`: add it to SERVICES (with its loader) or NOT_SERVICES"
        );
        let framefleet: Vec<&str> = definition
            .get("Environment")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.get("Name").and_then(Value::as_str))
            .filter(|variable| variable.starts_with("FRAMEFLEET"))
            .collect();
        assert!(
            framefleet.is_empty(),
            "{task_definition} `{name}` is not a framefleet service but gets {framefleet:?}"
        );
    }
}

/// A variable under an `!If` is only checked at the defaults' branch; none is today, and one
/// that is must be checked under its condition as well.
#[test]
fn no_framefleet_variable_depends_on_a_condition() {
    let template = Template::deployed();
    for (task_definition, definition) in template.all_containers() {
        for entry in definition
            .get("Environment")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            if intrinsic(entry).is_some() {
                let text = serde_yaml::to_string(entry).unwrap();
                assert!(
                    !text.contains("FRAMEFLEET"),
                    "{task_definition}: conditional framefleet variable {text}"
                );
            }
        }
    }
}

/// What is wrong with the parameters `template` passes to service containers, one line each:
/// a passed parameter [`PASSED`] does not list or a listed one not passed (to that setting),
/// a default that does not reach its setting, or another accepted value that does not.
fn passed_problems(template: &Template) -> Vec<String> {
    let mut problems = Vec::new();
    let mut passed = BTreeSet::new();
    let containers = template.service_containers();
    for container in &containers {
        for (name, variable) in &container.variables {
            let Some(key) = name.strip_prefix(PREFIX) else {
                continue;
            };
            let key = key.to_ascii_lowercase().replace("__", ".");
            for parameter in &variable.parameters {
                passed.insert((container.name.clone(), parameter.clone(), key.clone()));
            }
        }
    }
    let listed: BTreeSet<(String, String, String)> = PASSED
        .iter()
        .map(|(c, p, s, _)| (c.to_string(), p.to_string(), s.to_string()))
        .collect();
    for (container, parameter, key) in passed.difference(&listed) {
        problems.push(format!(
            "`{container}` is passed {parameter} as {key}, not in PASSED"
        ));
    }
    for (container, parameter, key) in listed.difference(&passed) {
        problems.push(format!("`{container}` is not passed {parameter} as {key}"));
    }

    // At the defaults, then at other values CloudFormation accepts, all at once.
    let mut others = Template {
        root: template.root.clone(),
        parameters: template.parameters.clone(),
    };
    let mut seen = BTreeSet::new();
    for (_, parameter, _, other) in PASSED {
        let Some(definition) = template.parameter(parameter) else {
            problems.push(format!("no parameter {parameter}"));
            continue;
        };
        if !seen.insert(other) {
            problems.push(format!(
                "{parameter}: {other} is another parameter's value too"
            ));
        }
        if scalar(&definition["Default"]).as_deref() == Some(other) {
            problems.push(format!("{parameter}: {other} is its default"));
        }
        if let Some(allowed) = definition.get("AllowedValues").and_then(Value::as_sequence) {
            if !allowed.iter().filter_map(scalar).any(|a| a == other) {
                problems.push(format!("{parameter} does not allow {other}"));
            }
        }
        let number = other.parse::<f64>().ok();
        let min = definition.get("MinValue").and_then(Value::as_f64);
        let max = definition.get("MaxValue").and_then(Value::as_f64);
        if number.zip(min).is_some_and(|(v, min)| v < min)
            || number.zip(max).is_some_and(|(v, max)| v > max)
        {
            problems.push(format!("{parameter} {other} is out of its bounds"));
        }
        others = others.with_parameter(parameter, other);
    }
    for (values, template) in [("default", template), ("other value", &others)] {
        let containers = template.service_containers();
        for (container, parameter, key, _) in PASSED {
            let Some(found) = containers.iter().find(|c| c.name == container) else {
                problems.push(format!("no `{container}` container"));
                continue;
            };
            let loaded = match loader(container)(&found.framefleet_env()) {
                Ok(loaded) => loaded,
                Err(error) => {
                    problems.push(format!("`{container}` at the {values}s: {error}"));
                    continue;
                }
            };
            if let Err(error) = &loaded.valid {
                problems.push(format!("`{container}` at the {values}s: {error}"));
            }
            let Some(expected) = template.parameters.get(parameter).cloned().or_else(|| {
                let definition = template.parameter(parameter)?;
                scalar(definition.get("Default")?)
            }) else {
                continue;
            };
            match setting(&loaded, key) {
                Some(value) if settings_env::setting_is(value, &expected) => {}
                value => problems.push(format!(
                    "{parameter} {values} {expected} did not reach `{key}` of `{container}`: {value:?}"
                )),
            }
        }
    }
    problems.sort();
    problems.dedup();
    problems
}

/// The reverse: every parameter a service container is passed is in [`PASSED`], names the
/// setting its variable names, and reaches it at its default and at another accepted value.
#[test]
fn every_parameter_passed_to_a_service_reaches_its_setting() {
    let problems = passed_problems(&Template::deployed());
    assert!(
        problems.is_empty(),
        "the parameters passed to the services:\n{}",
        problems.join("\n")
    );

    // The loaded setting is the parameter's default, typed.
    let template = Template::deployed();
    let containers = template.service_containers();
    let dispatcher = containers.iter().find(|c| c.name == "dispatcher").unwrap();
    let settings: DispatcherSettings =
        load(None, Some(dispatcher.framefleet_env())).expect("loads");
    let default = |parameter: &str| scalar(&template.parameter(parameter).unwrap()["Default"]);
    assert_eq!(
        Some(settings.dispatcher.max_segments.to_string()),
        default("MaxSegments")
    );
    assert_eq!(Some(settings.dispatcher.max_segments), Some(16));
    assert_eq!(
        Some(settings.scaling.max_tasks.to_string()),
        default("WorkerMaxTasks")
    );
    assert_eq!(
        Some(settings.dispatcher.capture_rate),
        default("CaptureRate")
    );
}

/// The checks fail on what they guard against: a misspelt variable, a default the loader
/// refuses, a value it cannot parse, a removed variable, a parameter wired to another setting.
#[test]
fn a_broken_template_is_caught() {
    let broken = |from: &str, to: &str| {
        assert!(TEMPLATE.contains(from), "the template no longer has {from}");
        Template::parse(&TEMPLATE.replacen(from, to, 1))
    };

    let misspelt = broken(
        "FRAMEFLEET__DISPATCHER__MAX_SEGMENTS,",
        "FRAMEFLEET__DISPATCHER__MAX_SEGMENT,",
    );
    let found = failures(&misspelt);
    assert!(
        found.iter().any(|f| f.contains("`max_segment`")),
        "{found:?}"
    );

    let refused = broken(
        "    Default: 16\n    MinValue: 1\n    MaxValue: 99",
        "    Default: 100\n    MinValue: 1\n    MaxValue: 99",
    );
    let found = failures(&refused);
    assert!(
        found.iter().any(|f| f.contains("dispatcher.max_segments")),
        "{found:?}"
    );

    let unparsed = Template::deployed().with_parameter("ScaleOnKnownWork", "maybe");
    let found = failures(&unparsed);
    assert!(found.iter().any(|f| f.contains("enabled")), "{found:?}");

    // Without the variable the loader's own default (also 16) applies: only the reverse
    // check sees it.
    let removed = broken(
        "            - { Name: FRAMEFLEET__DISPATCHER__MAX_SEGMENTS, Value: !Ref MaxSegments }\n",
        "",
    );
    assert_eq!(failures(&removed), Vec::<String>::new());
    let found = passed_problems(&removed);
    assert!(
        found.iter().any(|f| f.contains("not passed MaxSegments")),
        "{found:?}"
    );

    // MaxSegments and SegmentsInFlight both default to 16: the wrong one loads fine.
    let swapped = broken(
        "FRAMEFLEET__DISPATCHER__MAX_SEGMENTS, Value: !Ref MaxSegments",
        "FRAMEFLEET__DISPATCHER__MAX_SEGMENTS, Value: !Ref SegmentsInFlight",
    );
    assert_eq!(failures(&swapped), Vec::<String>::new());
    let found = passed_problems(&swapped);
    assert!(
        found
            .iter()
            .any(|f| f.contains("SegmentsInFlight as dispatcher.max_segments")),
        "{found:?}"
    );
}

#[test]
fn the_resolver_follows_cloudformation() {
    let template = Template::parse(
        r#"
Parameters:
  Prefix: { Type: String, Default: ff }
  Count: { Type: Number, Default: 3 }
  NoDefault: { Type: String }
Conditions:
  IsFf: !Equals [!Ref Prefix, ff]
  NotFf: !Not [!Condition IsFf]
Resources:
  Queue: { Type: AWS::SQS::Queue, Properties: { QueueName: !Sub "${Prefix}-q" } }
  Unnamed: { Type: AWS::SQS::Queue }
  Bucket: { Type: AWS::S3::Bucket }
  Role: { Type: AWS::IAM::Role }
  Cluster: { Type: AWS::ECS::Cluster, Properties: { ClusterName: !Ref Prefix } }
  Service: { Type: AWS::ECS::Service, Properties: { ServiceName: s, Cluster: !Ref Cluster } }
  Topic: { Type: AWS::SNS::Topic }
"#,
    );
    let resolve = |yaml: &str| {
        let mut used = BTreeSet::new();
        let value = template.resolve(&serde_yaml::from_str(yaml).unwrap(), &mut used);
        value.map(|v| (v, used.into_iter().collect::<Vec<_>>()))
    };
    let some = |v: &str, used: &[&str]| {
        Ok((
            Some(v.to_string()),
            used.iter().map(|u| u.to_string()).collect::<Vec<_>>(),
        ))
    };
    assert_eq!(resolve("!Ref Count"), some("3", &["Count"]));
    assert_eq!(resolve("{ Ref: Prefix }"), some("ff", &["Prefix"]));
    assert_eq!(
        resolve("!Ref Queue"),
        some("https://sqs.us-east-1.amazonaws.com/123456789012/ff-q", &[])
    );
    assert_eq!(
        resolve("!GetAtt Unnamed.Arn"),
        some(
            "arn:aws:sqs:us-east-1:123456789012:framefleet-Unnamed-1A2B3C4D5E6F",
            &[]
        )
    );
    assert_eq!(
        resolve("!Ref Bucket"),
        some("framefleet-bucket-1a2b3c4d5e6f", &[])
    );
    assert_eq!(
        resolve("{ 'Fn::GetAtt': [Role, Arn] }"),
        some(
            "arn:aws:iam::123456789012:role/framefleet-Role-1A2B3C4D5E6F",
            &[]
        )
    );
    assert_eq!(resolve("!GetAtt Service.Name"), some("s", &[]));
    assert_eq!(
        resolve("!Ref Service"),
        some("arn:aws:ecs:us-east-1:123456789012:service/ff/s", &[])
    );
    assert_eq!(
        resolve("!Sub '${Prefix}-${AWS::Region}-${Queue.QueueName}-${!Literal}'"),
        some("ff-us-east-1-ff-q-${Literal}", &["Prefix"])
    );
    assert_eq!(
        resolve("!Sub ['${A}-${Count}', { A: !Ref Prefix }]"),
        some("ff-3", &["Count", "Prefix"])
    );
    assert_eq!(
        resolve("!Join [',', [a, !Ref Count]]"),
        some("a,3", &["Count"])
    );
    assert_eq!(resolve("!If [IsFf, yes, no]"), some("yes", &[]));
    assert_eq!(resolve("!If [NotFf, yes, no]"), some("no", &[]));
    assert_eq!(
        resolve("!If [NotFf, yes, !Ref AWS::NoValue]"),
        Ok((None, vec![]))
    );
    assert!(resolve("!Ref NoDefault").is_err());
    assert!(resolve("!Ref Topic").is_err());
    assert!(resolve("!Ref Missing").is_err());
    assert!(resolve("!ImportValue x").is_err());
    let overridden = Template {
        root: template.root.clone(),
        parameters: HashMap::new(),
    }
    .with_parameter("Count", "7");
    assert_eq!(
        overridden.resolve(
            &serde_yaml::from_str("!Ref Count").unwrap(),
            &mut BTreeSet::new()
        ),
        Ok(Some("7".into()))
    );
}
