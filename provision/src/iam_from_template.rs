//! The IAM policies of `deploy/framefleet.yaml`, resolved for a local stack, so the services
//! run locally with exactly the permissions they get on AWS and a missing permission fails a
//! test instead of a deployment.
//!
//! The template is CloudFormation YAML with short-form intrinsics (`!Ref`, `!GetAtt`, `!Sub`,
//! `!Join`, `!If`, …), which `serde_yaml` exposes as tagged values; the long forms
//! (`{"Fn::Sub": …}`) are read too. Each logical id a policy names resolves to the local name
//! of that resource ([`LocalNames`]): bucket ARNs `arn:aws:s3:::name`, queue ARNs
//! `arn:aws:sqs:<region>:<account>:name`, the table ARN
//! `arn:aws:dynamodb:<region>:<account>:table/name`, and so on.
//!
//! Parameters take their defaults unless [`Template::with_parameter`] sets them, and
//! `Conditions` are evaluated with those values, so an optional part of the stack that is off
//! by default (the telemetry sidecar's policy) grants nothing locally.
//!
//! What each local identity gets ([`ServicePolicies`]):
//! - dispatcher: the inline policies of `DispatcherTaskRole`, plus any `AWS::IAM::Policy`
//!   attached to it whose condition holds;
//! - worker: the same for `WorkerTaskRole`;
//! - the MediaConvert stand-in: the inline policies of `MediaConvertRole` (it reads the pinned
//!   source copies and writes frames as MediaConvert would) plus what the queue policies grant
//!   `events.amazonaws.com` (it posts job state changes as the EventBridge rule would).

use std::collections::HashMap;

use framefleet_core::config::Resources;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

use crate::policy::{PolicyDocument, PolicyError};

/// The template the stack is deployed with, as built into this binary.
pub const TEMPLATE: &str = include_str!("../../deploy/framefleet.yaml");

/// The worker service's name, as the template's `WorkerService` names it.
pub const WORKER_SERVICE: &str = "worker";

/// moto's default account, which every local ARN names.
pub const LOCAL_ACCOUNT_ID: &str = "123456789012";

/// The template could not be read or resolved.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// Not YAML.
    #[error("the template is not valid YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    /// A part the resolver needs is missing or has the wrong shape.
    #[error("template {path}: {message}")]
    Shape {
        /// Where in the template, e.g. `Resources.WorkerTaskRole.Properties.Policies[0]`.
        path: String,
        /// What was expected.
        message: String,
    },
    /// A `Ref`, `GetAtt` or `${…}` names a logical id with no local counterpart.
    #[error("template {path}: `{name}` has no local counterpart (add it to LocalNames)")]
    UnknownName {
        /// Where in the template.
        path: String,
        /// The logical id, parameter or attribute.
        name: String,
    },
    /// An intrinsic function this resolver does not evaluate.
    #[error("template {path}: intrinsic `{function}` is not supported locally")]
    Unsupported {
        /// Where in the template.
        path: String,
        /// The function, e.g. `Fn::ImportValue`.
        function: String,
    },
    /// A resolved policy document is not one the local stack can enforce.
    #[error("template {path}: {source}")]
    Policy {
        /// Where in the template.
        path: String,
        /// Why.
        #[source]
        source: PolicyError,
    },
}

fn shape(path: &str, message: impl Into<String>) -> TemplateError {
    TemplateError::Shape {
        path: path.to_string(),
        message: message.into(),
    }
}

/// The local names of every resource a policy may name, keyed by what the template calls it.
#[derive(Debug, Clone)]
pub struct LocalNames {
    /// Buckets, queues and the table of this stack.
    pub resources: Resources,
    /// Region of every ARN (the SDK's region).
    pub region: String,
    /// Account of every ARN ([`LOCAL_ACCOUNT_ID`] on moto).
    pub account_id: String,
    /// Name the ECS cluster would have (only the ECS agent stand-in sees it).
    pub cluster: String,
    /// Name prefix of the IAM roles and the EventBridge rule.
    pub prefix: String,
}

impl LocalNames {
    /// Names for `resources` in `region` of moto's account; roles, cluster and rule get names
    /// from `prefix`.
    pub fn new(resources: Resources, region: &str, prefix: &str) -> Self {
        Self {
            resources,
            region: region.to_string(),
            account_id: LOCAL_ACCOUNT_ID.to_string(),
            cluster: format!("{prefix}-cluster"),
            prefix: prefix.to_string(),
        }
    }

    /// The ARN of an ECS task of the local cluster, as the ECS agent would report it.
    pub fn task_arn(&self, task_id: &str) -> String {
        format!(
            "arn:aws:ecs:{}:{}:task/{}/{task_id}",
            self.region, self.account_id, self.cluster
        )
    }

    /// The local name of the bucket, queue or table `logical_id` (`<prefix>-<role>`), or `None`
    /// when the local stack has no such resource.
    pub fn local_name(&self, logical_id: &str) -> Option<String> {
        let resource = self.resource(logical_id)?;
        Some(match resource.attributes.get("QueueName") {
            Some(queue) => queue.clone(),
            None => resource.reference,
        })
    }

    /// The ARN of the worker service in the local cluster (the template's `WorkerService`).
    pub fn worker_service_arn(&self) -> String {
        format!(
            "arn:aws:ecs:{}:{}:service/{}/{WORKER_SERVICE}",
            self.region, self.account_id, self.cluster
        )
    }

    /// `Ref` and attributes of a logical id, or `None` when the local stack has no such thing.
    fn resource(&self, logical_id: &str) -> Option<LocalResource> {
        let r = &self.resources;
        let (region, account) = (&self.region, &self.account_id);
        let bucket = |name: &str| LocalResource {
            reference: name.to_string(),
            attributes: HashMap::from([
                ("Arn", format!("arn:aws:s3:::{name}")),
                ("DomainName", format!("{name}.s3.amazonaws.com")),
            ]),
        };
        let queue = |name: &str| LocalResource {
            reference: format!("https://sqs.{region}.amazonaws.com/{account}/{name}"),
            attributes: HashMap::from([
                ("Arn", format!("arn:aws:sqs:{region}:{account}:{name}")),
                ("QueueName", name.to_string()),
            ]),
        };
        let role = |suffix: &str| {
            let name = format!("{}-{suffix}", self.prefix);
            LocalResource {
                attributes: HashMap::from([("Arn", format!("arn:aws:iam::{account}:role/{name}"))]),
                reference: name,
            }
        };
        Some(match logical_id {
            "IngressBucket" => bucket(&r.ingress_bucket),
            "FramesBucket" => bucket(&r.frames_bucket),
            "ProcessedBucket" => bucket(&r.processed_bucket),
            "IngressQueue" => queue(&r.ingress_queue),
            "IngressDeadLetterQueue" => queue(&format!("{}-dlq", r.ingress_queue)),
            "JobEventsQueue" => queue(&r.job_events_queue),
            "JobEventsDeadLetterQueue" => queue(&format!("{}-dlq", r.job_events_queue)),
            "FramesQueue" => queue(&r.frames_queue),
            "FramesDeadLetterQueue" => queue(&format!("{}-dlq", r.frames_queue)),
            "JobsTable" => LocalResource {
                reference: r.jobs_table.clone(),
                attributes: HashMap::from([(
                    "Arn",
                    format!("arn:aws:dynamodb:{region}:{account}:table/{}", r.jobs_table),
                )]),
            },
            "MediaConvertRole" => role("mediaconvert"),
            "DispatcherTaskRole" => role("dispatcher"),
            "WorkerTaskRole" => role("worker"),
            "TaskExecutionRole" => role("task-execution"),
            "Cluster" => LocalResource {
                reference: self.cluster.clone(),
                attributes: HashMap::from([(
                    "Arn",
                    format!("arn:aws:ecs:{region}:{account}:cluster/{}", self.cluster),
                )]),
            },
            // Ref of an AWS::ECS::Service is its ARN.
            "WorkerService" => LocalResource {
                reference: self.worker_service_arn(),
                attributes: HashMap::from([("Name", WORKER_SERVICE.to_string())]),
            },
            "MediaConvertJobEventsRule" => LocalResource {
                reference: format!("{}-job-events", self.prefix),
                attributes: HashMap::from([(
                    "Arn",
                    format!(
                        "arn:aws:events:{region}:{account}:rule/{}-job-events",
                        self.prefix
                    ),
                )]),
            },
            _ => return None,
        })
    }
}

struct LocalResource {
    reference: String,
    attributes: HashMap<&'static str, String>,
}

/// A named inline policy, as `PutUserPolicy` takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedPolicy {
    /// `PolicyName` in the template.
    pub name: String,
    /// The resolved document.
    pub document: PolicyDocument,
}

/// The local identities and the policies each gets from the template.
#[derive(Debug, Clone, PartialEq)]
pub struct ServicePolicies {
    /// The dispatcher's task role.
    pub dispatcher: Vec<NamedPolicy>,
    /// The worker's task role.
    pub worker: Vec<NamedPolicy>,
    /// The MediaConvert role plus the EventBridge grants of the queue policies.
    pub mediaconvert_standin: Vec<NamedPolicy>,
}

/// A parsed template with the resolver for one local stack.
pub struct Template {
    root: Yaml,
    names: LocalNames,
    /// Parameter values set by [`Template::with_parameter`]; the rest take their defaults.
    parameters: HashMap<String, String>,
}

impl Template {
    /// Parses `yaml` (normally [`TEMPLATE`]) for the stack named by `names`.
    pub fn parse(yaml: &str, names: LocalNames) -> Result<Self, TemplateError> {
        let root: Yaml = serde_yaml::from_str(yaml)?;
        if root.get("Resources").and_then(Yaml::as_mapping).is_none() {
            return Err(shape("Resources", "the template has no Resources mapping"));
        }
        Ok(Self {
            root,
            names,
            parameters: HashMap::new(),
        })
    }

    /// Resolves as if the stack were deployed with parameter `name` = `value` instead of its
    /// default, e.g. to see what an optional feature grants when it is turned on.
    pub fn with_parameter(mut self, name: &str, value: &str) -> Result<Self, TemplateError> {
        let path = format!("Parameters.{name}");
        let Some(parameter) = self.root.get("Parameters").and_then(|p| p.get(name)) else {
            return Err(TemplateError::UnknownName {
                path,
                name: name.to_string(),
            });
        };
        if let Some(allowed) = parameter.get("AllowedValues").and_then(Yaml::as_sequence) {
            let allowed: Vec<String> = allowed
                .iter()
                .map(|v| self.resolve_string(v, &path))
                .collect::<Result<_, _>>()?;
            if !allowed.iter().any(|v| v == value) {
                return Err(shape(
                    &path,
                    format!("`{value}` is not one of the AllowedValues {allowed:?}"),
                ));
            }
        }
        self.parameters.insert(name.to_string(), value.to_string());
        Ok(self)
    }

    /// The local names this template resolves for.
    pub fn names(&self) -> &LocalNames {
        &self.names
    }

    /// Every resource of the template: logical id, type and the resource's YAML, in template
    /// order.
    pub(crate) fn resources(&self) -> Vec<(String, String, &Yaml)> {
        self.root
            .get("Resources")
            .and_then(Yaml::as_mapping)
            .map(|resources| {
                resources
                    .iter()
                    .map(|(id, resource)| {
                        let id = id.as_str().unwrap_or("?").to_string();
                        let kind = resource.get("Type").and_then(Yaml::as_str).unwrap_or("?");
                        (id, kind.to_string(), resource)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The `Properties` of `logical_id` with every intrinsic resolved for the local stack.
    pub(crate) fn resolved_properties(
        &self,
        logical_id: &str,
    ) -> Result<serde_json::Map<String, Json>, TemplateError> {
        let path = format!("Resources.{logical_id}.Properties");
        match self.resolve(self.resource_properties(logical_id)?, &path)? {
            Some(Json::Object(map)) => Ok(map),
            _ => Err(shape(&path, "expected a mapping")),
        }
    }

    /// The policies of every local identity.
    pub fn service_policies(&self) -> Result<ServicePolicies, TemplateError> {
        let mut mediaconvert_standin = self.role_policies("MediaConvertRole")?;
        mediaconvert_standin.push(NamedPolicy {
            name: "job-state-change-delivery".into(),
            document: self.service_principal_grants("events.amazonaws.com")?,
        });
        Ok(ServicePolicies {
            dispatcher: self.role_policies("DispatcherTaskRole")?,
            worker: self.role_policies("WorkerTaskRole")?,
            mediaconvert_standin,
        })
    }

    fn resource_properties(&self, logical_id: &str) -> Result<&Yaml, TemplateError> {
        let path = format!("Resources.{logical_id}.Properties");
        self.root
            .get("Resources")
            .and_then(|r| r.get(logical_id))
            .and_then(|r| r.get("Properties"))
            .ok_or_else(|| shape(&path, "missing"))
    }

    /// The policies of the role `logical_id`, resolved: its inline `Policies`, then every
    /// `AWS::IAM::Policy` resource that names it in `Roles` and whose `Condition` (if any)
    /// holds.
    pub fn role_policies(&self, logical_id: &str) -> Result<Vec<NamedPolicy>, TemplateError> {
        let properties = self.resource_properties(logical_id)?;
        let base = format!("Resources.{logical_id}.Properties");
        if properties.get("ManagedPolicyArns").is_some() {
            return Err(shape(
                &format!("{base}.ManagedPolicyArns"),
                "managed policies cannot be copied to a local identity; use inline policies",
            ));
        }
        let policies = properties
            .get("Policies")
            .and_then(Yaml::as_sequence)
            .ok_or_else(|| shape(&format!("{base}.Policies"), "expected a list"))?;
        let mut named = policies
            .iter()
            .enumerate()
            .map(|(i, policy)| self.named_policy(policy, &format!("{base}.Policies[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        named.extend(self.attached_policies(logical_id)?);
        Ok(named)
    }

    /// The `AWS::IAM::Policy` resources attached to the role `logical_id` whose condition
    /// holds with the parameter values in effect.
    fn attached_policies(&self, logical_id: &str) -> Result<Vec<NamedPolicy>, TemplateError> {
        let resources = self
            .root
            .get("Resources")
            .and_then(Yaml::as_mapping)
            .ok_or_else(|| shape("Resources", "expected a mapping"))?;
        let mut named = Vec::new();
        for (id, resource) in resources {
            if resource.get("Type").and_then(Yaml::as_str) != Some("AWS::IAM::Policy") {
                continue;
            }
            let base = format!("Resources.{}", id.as_str().unwrap_or("?"));
            let properties = resource
                .get("Properties")
                .ok_or_else(|| shape(&format!("{base}.Properties"), "missing"))?;
            let roles = properties
                .get("Roles")
                .and_then(Yaml::as_sequence)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let attached = roles.iter().any(|role| {
                matches!(intrinsic(role), Some((f, Yaml::String(r))) if f == "Ref" && r == logical_id)
            });
            if !attached {
                continue;
            }
            if let Some(condition) = resource.get("Condition") {
                let condition = condition
                    .as_str()
                    .ok_or_else(|| shape(&format!("{base}.Condition"), "names a condition"))?;
                if !self.condition(condition, &format!("{base}.Condition"))? {
                    continue;
                }
            }
            named.push(self.named_policy(properties, &format!("{base}.Properties"))?);
        }
        Ok(named)
    }

    /// A `{PolicyName, PolicyDocument}` mapping (an inline policy or a policy resource's
    /// properties), resolved.
    fn named_policy(&self, policy: &Yaml, path: &str) -> Result<NamedPolicy, TemplateError> {
        let name = policy
            .get("PolicyName")
            .map(|n| self.resolve(n, &format!("{path}.PolicyName")))
            .transpose()?
            .flatten()
            .and_then(|n| n.as_str().map(ToString::to_string))
            .ok_or_else(|| shape(path, "PolicyName must be a string"))?;
        let document = self.document(
            policy
                .get("PolicyDocument")
                .ok_or_else(|| shape(path, "PolicyDocument missing"))?,
            &format!("{path}.PolicyDocument"),
        )?;
        Ok(NamedPolicy { name, document })
    }

    /// The trust policy of the role `logical_id`, resolved.
    pub fn trust_policy(&self, logical_id: &str) -> Result<Json, TemplateError> {
        let path = format!("Resources.{logical_id}.Properties.AssumeRolePolicyDocument");
        let document = self
            .resource_properties(logical_id)?
            .get("AssumeRolePolicyDocument")
            .ok_or_else(|| shape(&path, "missing"))?;
        self.resolve(document, &path)?
            .ok_or_else(|| shape(&path, "resolves to nothing"))
    }

    /// What the bucket and queue policies allow `principal` (e.g. `events.amazonaws.com`),
    /// as an identity policy: Principal dropped, and with it the conditions on the calling
    /// service's source (`aws:SourceArn`, `aws:SourceAccount`), which a local stand-in of
    /// that service does not send.
    pub fn service_principal_grants(
        &self,
        principal: &str,
    ) -> Result<PolicyDocument, TemplateError> {
        let resources = self
            .root
            .get("Resources")
            .and_then(Yaml::as_mapping)
            .ok_or_else(|| shape("Resources", "expected a mapping"))?;
        let mut statements = Vec::new();
        for (logical_id, resource) in resources {
            let kind = resource.get("Type").and_then(Yaml::as_str).unwrap_or("");
            if kind != "AWS::SQS::QueuePolicy" && kind != "AWS::S3::BucketPolicy" {
                continue;
            }
            let id = logical_id.as_str().unwrap_or("?");
            let path = format!("Resources.{id}.Properties.PolicyDocument");
            let Some(document) = resource
                .get("Properties")
                .and_then(|p| p.get("PolicyDocument"))
            else {
                return Err(shape(&path, "missing"));
            };
            let Some(Json::Object(document)) = self.resolve(document, &path)? else {
                return Err(shape(&path, "expected a mapping"));
            };
            let Some(Json::Array(list)) = document.get("Statement") else {
                return Err(shape(&path, "Statement must be a list"));
            };
            for statement in list {
                let allows = statement.get("Effect").and_then(Json::as_str) == Some("Allow");
                let service = statement.pointer("/Principal/Service");
                let names_principal = match service {
                    Some(Json::String(s)) => s == principal,
                    Some(Json::Array(list)) => list.iter().any(|s| s.as_str() == Some(principal)),
                    _ => false,
                };
                if allows && names_principal {
                    let mut statement = statement.clone();
                    if let Json::Object(map) = &mut statement {
                        map.remove("Principal");
                        map.remove("Condition");
                    }
                    statements.push(statement);
                }
            }
        }
        if statements.is_empty() {
            return Err(shape(
                "Resources",
                format!("no bucket or queue policy allows {principal} anything"),
            ));
        }
        let document = serde_json::json!({"Version": "2012-10-17", "Statement": statements});
        PolicyDocument::from_json(&document).map_err(|source| TemplateError::Policy {
            path: format!("policies granting {principal}"),
            source,
        })
    }

    fn document(&self, yaml: &Yaml, path: &str) -> Result<PolicyDocument, TemplateError> {
        let json = self
            .resolve(yaml, path)?
            .ok_or_else(|| shape(path, "resolves to nothing"))?;
        PolicyDocument::from_json(&json).map_err(|source| TemplateError::Policy {
            path: path.to_string(),
            source,
        })
    }

    /// Resolves every intrinsic in `value`; `None` is `AWS::NoValue`.
    fn resolve(&self, value: &Yaml, path: &str) -> Result<Option<Json>, TemplateError> {
        if let Some((function, argument)) = intrinsic(value) {
            return self.call(&function, argument, path);
        }
        Ok(Some(match value {
            Yaml::Null => Json::Null,
            Yaml::Bool(b) => Json::Bool(*b),
            Yaml::Number(n) => serde_json::to_value(n).unwrap_or(Json::Null),
            Yaml::String(s) => Json::String(s.clone()),
            Yaml::Sequence(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    out.extend(self.resolve(item, &format!("{path}[{i}]"))?);
                }
                Json::Array(out)
            }
            Yaml::Mapping(map) => {
                let mut out = serde_json::Map::new();
                for (key, item) in map {
                    let key = key
                        .as_str()
                        .ok_or_else(|| shape(path, "mapping keys must be strings"))?;
                    if let Some(item) = self.resolve(item, &format!("{path}.{key}"))? {
                        out.insert(key.to_string(), item);
                    }
                }
                Json::Object(out)
            }
            Yaml::Tagged(tagged) => {
                return Err(TemplateError::Unsupported {
                    path: path.to_string(),
                    function: tagged.tag.to_string(),
                })
            }
        }))
    }

    fn resolve_string(&self, value: &Yaml, path: &str) -> Result<String, TemplateError> {
        match self.resolve(value, path)? {
            Some(Json::String(s)) => Ok(s),
            Some(Json::Number(n)) => Ok(n.to_string()),
            Some(Json::Bool(b)) => Ok(b.to_string()),
            _ => Err(shape(path, "expected a string")),
        }
    }

    fn call(
        &self,
        function: &str,
        argument: &Yaml,
        path: &str,
    ) -> Result<Option<Json>, TemplateError> {
        let path = &format!("{path}(Fn::{function})");
        match function {
            "Ref" => {
                let name = argument
                    .as_str()
                    .ok_or_else(|| shape(path, "Ref takes a name"))?;
                self.reference(name, path)
            }
            "GetAtt" => {
                let (logical_id, attribute) = match argument {
                    Yaml::String(s) => s
                        .split_once('.')
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                        .ok_or_else(|| shape(path, "GetAtt takes Resource.Attribute"))?,
                    Yaml::Sequence(parts) if parts.len() == 2 => (
                        self.resolve_string(&parts[0], path)?,
                        self.resolve_string(&parts[1], path)?,
                    ),
                    _ => return Err(shape(path, "GetAtt takes Resource.Attribute")),
                };
                self.attribute(&logical_id, &attribute, path).map(Some)
            }
            "Sub" => {
                let (text, variables) = match argument {
                    Yaml::String(s) => (s.clone(), HashMap::new()),
                    Yaml::Sequence(parts) if parts.len() == 2 => {
                        let text = parts[0]
                            .as_str()
                            .ok_or_else(|| shape(path, "Sub takes a string first"))?;
                        let map = parts[1]
                            .as_mapping()
                            .ok_or_else(|| shape(path, "Sub takes a variable mapping second"))?;
                        let mut variables = HashMap::new();
                        for (key, value) in map {
                            let key = key
                                .as_str()
                                .ok_or_else(|| shape(path, "Sub variable names are strings"))?;
                            variables.insert(key.to_string(), self.resolve_string(value, path)?);
                        }
                        (text.to_string(), variables)
                    }
                    _ => return Err(shape(path, "Sub takes a string or [string, mapping]")),
                };
                self.substitute(&text, &variables, path)
                    .map(|s| Some(Json::String(s)))
            }
            "Join" => {
                let Some([delimiter, items]) = argument.as_sequence().map(Vec::as_slice) else {
                    return Err(shape(path, "Join takes [delimiter, list]"));
                };
                let delimiter = delimiter
                    .as_str()
                    .ok_or_else(|| shape(path, "Join's delimiter is a string"))?;
                let Some(Json::Array(items)) = self.resolve(items, path)? else {
                    return Err(shape(path, "Join's second argument is a list"));
                };
                let parts: Result<Vec<String>, _> = items
                    .iter()
                    .map(|item| match item {
                        Json::String(s) => Ok(s.clone()),
                        other => Ok(other.to_string()),
                    })
                    .collect();
                parts.map(|p| Some(Json::String(p.join(delimiter))))
            }
            "Select" => {
                let Some([index, items]) = argument.as_sequence().map(Vec::as_slice) else {
                    return Err(shape(path, "Select takes [index, list]"));
                };
                let index: usize = self
                    .resolve_string(index, path)?
                    .parse()
                    .map_err(|_| shape(path, "Select's index is a number"))?;
                let Some(Json::Array(items)) = self.resolve(items, path)? else {
                    return Err(shape(path, "Select's second argument is a list"));
                };
                items
                    .get(index)
                    .cloned()
                    .map(Some)
                    .ok_or_else(|| shape(path, "Select's index is past the end"))
            }
            "If" => {
                let Some([condition, then, otherwise]) = argument.as_sequence().map(Vec::as_slice)
                else {
                    return Err(shape(path, "If takes [condition, then, else]"));
                };
                let condition = condition
                    .as_str()
                    .ok_or_else(|| shape(path, "If names a condition"))?;
                if self.condition(condition, path)? {
                    self.resolve(then, path)
                } else {
                    self.resolve(otherwise, path)
                }
            }
            other => Err(TemplateError::Unsupported {
                path: path.clone(),
                function: format!("Fn::{other}"),
            }),
        }
    }

    fn reference(&self, name: &str, path: &str) -> Result<Option<Json>, TemplateError> {
        let names = &self.names;
        let value = match name {
            "AWS::NoValue" => return Ok(None),
            "AWS::Region" => names.region.clone(),
            "AWS::AccountId" => names.account_id.clone(),
            "AWS::Partition" => "aws".into(),
            "AWS::URLSuffix" => "amazonaws.com".into(),
            "AWS::StackName" => names.prefix.clone(),
            _ => {
                if let Some(resource) = names.resource(name) {
                    resource.reference
                } else if let Some(value) = self.parameters.get(name) {
                    value.clone()
                } else if let Some(parameter) =
                    self.root.get("Parameters").and_then(|p| p.get(name))
                {
                    let default =
                        parameter
                            .get("Default")
                            .ok_or_else(|| TemplateError::UnknownName {
                                path: path.to_string(),
                                name: format!("{name} (a parameter without a default)"),
                            })?;
                    return self.resolve(default, path);
                } else {
                    return Err(TemplateError::UnknownName {
                        path: path.to_string(),
                        name: name.to_string(),
                    });
                }
            }
        };
        Ok(Some(Json::String(value)))
    }

    fn attribute(
        &self,
        logical_id: &str,
        attribute: &str,
        path: &str,
    ) -> Result<Json, TemplateError> {
        self.names
            .resource(logical_id)
            .and_then(|r| r.attributes.get(attribute).cloned())
            .map(Json::String)
            .ok_or_else(|| TemplateError::UnknownName {
                path: path.to_string(),
                name: format!("{logical_id}.{attribute}"),
            })
    }

    fn substitute(
        &self,
        text: &str,
        variables: &HashMap<String, String>,
        path: &str,
    ) -> Result<String, TemplateError> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| shape(path, "unclosed ${ in Sub"))?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(value) = variables.get(name) {
                out.push_str(value);
            } else if let Some((logical_id, attribute)) =
                name.split_once('.').filter(|_| !name.starts_with("AWS::"))
            {
                match self.attribute(logical_id, attribute, path)? {
                    Json::String(s) => out.push_str(&s),
                    other => out.push_str(&other.to_string()),
                }
            } else {
                match self.reference(name, path)? {
                    Some(Json::String(s)) => out.push_str(&s),
                    Some(other) => out.push_str(&other.to_string()),
                    None => return Err(shape(path, "AWS::NoValue inside Sub")),
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn condition(&self, name: &str, path: &str) -> Result<bool, TemplateError> {
        let body = self
            .root
            .get("Conditions")
            .and_then(|c| c.get(name))
            .ok_or_else(|| TemplateError::UnknownName {
                path: path.to_string(),
                name: format!("condition {name}"),
            })?;
        self.evaluate_condition(body, path)
    }

    fn evaluate_condition(&self, body: &Yaml, path: &str) -> Result<bool, TemplateError> {
        let Some((function, argument)) = intrinsic(body) else {
            return Err(shape(
                path,
                "a condition is an Fn::Equals/Not/And/Or/Condition",
            ));
        };
        let list = || {
            argument
                .as_sequence()
                .ok_or_else(|| shape(path, "condition functions take a list"))
        };
        match function.as_str() {
            "Equals" => {
                let items = list()?;
                let [a, b] = items.as_slice() else {
                    return Err(shape(path, "Equals takes two values"));
                };
                Ok(self.resolve(a, path)? == self.resolve(b, path)?)
            }
            "Not" => {
                let items = list()?;
                let [inner] = items.as_slice() else {
                    return Err(shape(path, "Not takes one condition"));
                };
                Ok(!self.evaluate_condition(inner, path)?)
            }
            "And" => {
                for inner in list()? {
                    if !self.evaluate_condition(inner, path)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            "Or" => {
                for inner in list()? {
                    if self.evaluate_condition(inner, path)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            "Condition" => {
                let name = argument
                    .as_str()
                    .ok_or_else(|| shape(path, "Condition names a condition"))?;
                self.condition(name, path)
            }
            other => Err(TemplateError::Unsupported {
                path: path.to_string(),
                function: format!("Fn::{other}"),
            }),
        }
    }
}

/// `(function, argument)` of a short-form (`!Sub x`) or long-form (`{"Fn::Sub": x}`,
/// `{"Ref": x}`) intrinsic; the function without its `Fn::` prefix.
fn intrinsic(value: &Yaml) -> Option<(String, &Yaml)> {
    match value {
        Yaml::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            Some((name.to_string(), &tagged.value))
        }
        Yaml::Mapping(map) if map.len() == 1 => {
            let (key, argument) = map.iter().next()?;
            let key = key.as_str()?;
            if key == "Ref" || key == "Condition" {
                Some((key.to_string(), argument))
            } else {
                key.strip_prefix("Fn::").map(|f| (f.to_string(), argument))
            }
        }
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Local names with the prefix `t`, for the provisioner's tests.
    pub(crate) fn names() -> LocalNames {
        LocalNames::new(
            Resources {
                ingress_bucket: "t-ingress".into(),
                frames_bucket: "t-frames".into(),
                processed_bucket: "t-processed".into(),
                ingress_queue: "t-ingress".into(),
                job_events_queue: "t-job-events".into(),
                frames_queue: "t-frames".into(),
                jobs_table: "t-jobs".into(),
            },
            "us-east-1",
            "t",
        )
    }

    const SNIPPET: &str = r#"
Parameters:
  ResourcePrefix: { Type: String, Default: framefleet }
  NoDefault: { Type: String }
  Sidecar: { Type: String, Default: "false", AllowedValues: ["true", "false"] }
Conditions:
  HasPrefix: !Not [!Equals [!Ref ResourcePrefix, ""]]
  SidecarOn: !Equals [!Ref Sidecar, "true"]
Resources:
  SidecarPolicy:
    Type: AWS::IAM::Policy
    Condition: SidecarOn
    Properties:
      PolicyName: sidecar
      Roles: [!Ref Role]
      PolicyDocument:
        Statement:
          - { Effect: Allow, Action: xray:PutTraceSegments, Resource: "*" }
  OtherRolesPolicy:
    Type: AWS::IAM::Policy
    Properties:
      PolicyName: other
      Roles: [{ Ref: Unknown }]
      PolicyDocument:
        Statement:
          - { Effect: Allow, Action: s3:PutObject, Resource: "*" }
  Role:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument: { Statement: [] }
      Policies:
        - PolicyName: p
          PolicyDocument:
            Version: "2012-10-17"
            Statement:
              - Effect: Allow
                Action: [s3:GetObject]
                Resource:
                  - !Sub ${FramesBucket.Arn}/*
                  - !GetAtt [JobsTable, Arn]
                  - { "Fn::Sub": "arn:${AWS::Partition}:x:${AWS::Region}:${AWS::AccountId}:${ResourcePrefix}" }
                  - !Join [":", [a, !Ref FramesBucket]]
                  - !If [HasPrefix, yes, !Ref AWS::NoValue]
                  - !Sub ["${x}-${!Literal}", { x: !GetAtt FramesQueue.QueueName }]
  Bad:
    Type: AWS::IAM::Role
    Properties:
      Policies:
        - PolicyName: p
          PolicyDocument:
            Statement:
              - { Effect: Allow, Action: s3:GetObject, Resource: !ImportValue other }
  Unknown:
    Type: AWS::IAM::Role
    Properties:
      Policies:
        - PolicyName: p
          PolicyDocument:
            Statement:
              - { Effect: Allow, Action: s3:GetObject, Resource: !GetAtt Nowhere.Arn }
"#;

    #[test]
    fn resolves_short_and_long_forms() {
        let template = Template::parse(SNIPPET, names()).unwrap();
        let policies = template.role_policies("Role").unwrap();
        assert_eq!(
            policies[0].document.statements[0].resources,
            vec![
                "arn:aws:s3:::t-frames/*",
                "arn:aws:dynamodb:us-east-1:123456789012:table/t-jobs",
                "arn:aws:x:us-east-1:123456789012:framefleet",
                "a:t-frames",
                "yes",
                "t-frames-${Literal}",
            ]
        );
    }

    #[test]
    fn unsupported_and_unknown_names_are_typed_errors() {
        let template = Template::parse(SNIPPET, names()).unwrap();
        assert!(matches!(
            template.role_policies("Bad"),
            Err(TemplateError::Unsupported { function, .. }) if function == "Fn::ImportValue"
        ));
        assert!(matches!(
            template.role_policies("Unknown"),
            Err(TemplateError::UnknownName { name, .. }) if name == "Nowhere.Arn"
        ));
        assert!(matches!(
            template.role_policies("Missing"),
            Err(TemplateError::Shape { .. })
        ));
        assert!(matches!(
            Template::parse("[unclosed", names()),
            Err(TemplateError::Yaml(_))
        ));
    }

    fn policy_names(template: &Template, role: &str) -> Vec<String> {
        let policies = template.role_policies(role).unwrap();
        policies.into_iter().map(|p| p.name).collect()
    }

    #[test]
    fn a_conditional_policy_resource_applies_only_when_its_condition_holds() {
        let off = Template::parse(SNIPPET, names()).unwrap();
        assert_eq!(policy_names(&off, "Role"), ["p"]);
        let on = Template::parse(SNIPPET, names())
            .unwrap()
            .with_parameter("Sidecar", "true")
            .unwrap();
        assert_eq!(policy_names(&on, "Role"), ["p", "sidecar"]);
        assert!(on.role_policies("Role").unwrap()[1]
            .document
            .allows("xray:PutTraceSegments", "*"));
    }

    #[test]
    fn a_parameter_override_must_name_a_parameter_and_an_allowed_value() {
        let template = || Template::parse(SNIPPET, names()).unwrap();
        assert!(matches!(
            template().with_parameter("Nope", "true"),
            Err(TemplateError::UnknownName { name, .. }) if name == "Nope"
        ));
        assert!(matches!(
            template().with_parameter("Sidecar", "yes"),
            Err(TemplateError::Shape { .. })
        ));
        let template = template().with_parameter("NoDefault", "x").unwrap();
        assert_eq!(
            template.reference("NoDefault", "test").unwrap(),
            Some(Json::String("x".into()))
        );
    }

    #[test]
    fn the_telemetry_sidecar_grants_nothing_unless_enabled() {
        let off = Template::parse(TEMPLATE, names()).unwrap();
        let on = Template::parse(TEMPLATE, names())
            .unwrap()
            .with_parameter("EnableTelemetrySidecar", "true")
            .unwrap();
        for role in ["DispatcherTaskRole", "WorkerTaskRole"] {
            let sends_traces = |t: &Template| {
                t.role_policies(role)
                    .unwrap()
                    .iter()
                    .any(|p| p.document.allows("xray:PutTraceSegments", "*"))
            };
            assert!(!sends_traces(&off), "{role}");
            assert!(sends_traces(&on), "{role}");
        }
    }

    #[test]
    fn the_deployed_template_resolves_for_every_identity() {
        let template = Template::parse(TEMPLATE, names()).unwrap();
        let policies = template.service_policies().unwrap();
        assert!(!policies.dispatcher.is_empty());
        assert!(!policies.worker.is_empty());
        let events = policies.mediaconvert_standin.last().unwrap();
        assert!(events.document.allows(
            "sqs:SendMessage",
            "arn:aws:sqs:us-east-1:123456789012:t-job-events"
        ));
    }
}
