//! IAM identity policies as the local stack uses them: parsed from the template, evaluated
//! where no emulator does it (the ECS agent stand-in, S3's 403-for-a-missing-key rule), and
//! adapted to moto's IAM model where that differs from AWS's.
//!
//! Evaluation follows the identity-policy part of "Policy evaluation logic" (IAM User Guide,
//! https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html):
//! an explicit Deny wins, otherwise an Allow is needed. `*` and `?` are wildcards; actions
//! compare without case, resources with case. A statement with a `Condition` is taken as not
//! applying, since no local request carries the context keys: the local stack never allows
//! more than AWS would.

use serde_json::{json, Value as Json};

/// A policy the local stack cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Not an object with a `Statement` list (or single statement).
    #[error("a policy document is an object with a Statement: {0}")]
    Shape(String),
    /// An element of a statement is missing or of the wrong type.
    #[error("statement {index}: {message}")]
    Statement {
        /// Position in `Statement`.
        index: usize,
        /// What is wrong.
        message: String,
    },
}

/// Allow or Deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Grants the actions on the resources.
    Allow,
    /// Refuses them, whatever else allows them.
    Deny,
}

/// One statement with its actions and resources as lists.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// `Sid`, kept for messages.
    pub sid: Option<String>,
    /// Allow or Deny.
    pub effect: Effect,
    /// Actions, e.g. `s3:GetObject`, wildcards allowed.
    pub actions: Vec<String>,
    /// Resource ARNs, wildcards allowed.
    pub resources: Vec<String>,
    /// The `Condition` block, if any, as written.
    pub condition: Option<Json>,
}

/// An identity policy document.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyDocument {
    /// The statements in order.
    pub statements: Vec<Statement>,
}

/// What a set of policies says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// An Allow matched and no Deny did.
    Allowed,
    /// A Deny matched.
    ExplicitlyDenied,
    /// Nothing matched: denied by default.
    ImplicitlyDenied,
}

fn strings(value: &Json, index: usize, element: &str) -> Result<Vec<String>, PolicyError> {
    let wrong = || PolicyError::Statement {
        index,
        message: format!("{element} must be a string or a list of strings"),
    };
    match value {
        Json::String(s) => Ok(vec![s.clone()]),
        Json::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(ToString::to_string).ok_or_else(wrong))
            .collect(),
        _ => Err(wrong()),
    }
}

impl PolicyDocument {
    /// Reads a resolved document. `NotAction`, `NotResource` and `Principal` are refused: the
    /// template's identity policies use none of them, and evaluating them half would be worse
    /// than saying so.
    pub fn from_json(document: &Json) -> Result<Self, PolicyError> {
        let statements = match document.get("Statement") {
            Some(Json::Array(list)) => list.clone(),
            Some(single @ Json::Object(_)) => vec![single.clone()],
            _ => return Err(PolicyError::Shape(document.to_string())),
        };
        let statements = statements
            .iter()
            .enumerate()
            .map(|(index, s)| {
                for element in ["NotAction", "NotResource", "Principal", "NotPrincipal"] {
                    if s.get(element).is_some() {
                        return Err(PolicyError::Statement {
                            index,
                            message: format!("{element} is not supported in identity policies"),
                        });
                    }
                }
                let effect = match s.get("Effect").and_then(Json::as_str) {
                    Some("Allow") => Effect::Allow,
                    Some("Deny") => Effect::Deny,
                    _ => {
                        return Err(PolicyError::Statement {
                            index,
                            message: "Effect must be Allow or Deny".into(),
                        })
                    }
                };
                let field = |name: &str| {
                    s.get(name).ok_or_else(|| PolicyError::Statement {
                        index,
                        message: format!("{name} is missing"),
                    })
                };
                Ok(Statement {
                    sid: s.get("Sid").and_then(Json::as_str).map(ToString::to_string),
                    effect,
                    actions: strings(field("Action")?, index, "Action")?,
                    resources: strings(field("Resource")?, index, "Resource")?,
                    condition: s.get("Condition").cloned(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { statements })
    }

    /// The document as IAM takes it.
    pub fn to_json(&self) -> Json {
        let statements: Vec<Json> = self
            .statements
            .iter()
            .map(|s| {
                let mut out = json!({
                    "Effect": match s.effect { Effect::Allow => "Allow", Effect::Deny => "Deny" },
                    "Action": s.actions,
                    "Resource": s.resources,
                });
                if let Some(sid) = &s.sid {
                    out["Sid"] = json!(sid);
                }
                if let Some(condition) = &s.condition {
                    out["Condition"] = condition.clone();
                }
                out
            })
            .collect();
        json!({"Version": "2012-10-17", "Statement": statements})
    }

    /// What this document alone says about `action` on `resource`.
    pub fn decide(&self, action: &str, resource: &str) -> Decision {
        decide(std::slice::from_ref(self), action, resource)
    }

    /// True when this document alone allows `action` on `resource`.
    pub fn allows(&self, action: &str, resource: &str) -> bool {
        self.decide(action, resource) == Decision::Allowed
    }

    /// This document without `action` (exact name, any case), statements left empty dropped:
    /// how tests take one permission away.
    pub fn without_action(&self, action: &str) -> Self {
        let statements = self
            .statements
            .iter()
            .filter_map(|s| {
                let actions: Vec<String> = s
                    .actions
                    .iter()
                    .filter(|a| !a.eq_ignore_ascii_case(action))
                    .cloned()
                    .collect();
                (!actions.is_empty()).then(|| Statement {
                    actions,
                    ..s.clone()
                })
            })
            .collect();
        Self { statements }
    }

    /// The document as moto 5.2.1 must see it to grant what AWS grants, and no action more:
    ///
    /// - moto authorises `TransactWriteItems` as an action of its own, where AWS authorises
    ///   each item as the PutItem / UpdateItem / ConditionCheckItem it contains ("Using IAM
    ///   with DynamoDB transactions", Amazon DynamoDB Developer Guide,
    ///   https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis-iam.html).
    ///   A statement allowing both PutItem and UpdateItem gets `dynamodb:TransactWriteItems`.
    /// - moto authorises the SQS batch calls as actions of their own, where AWS authorises
    ///   `SendMessageBatch` as `sqs:SendMessage`, and likewise for DeleteMessage and
    ///   ChangeMessageVisibility ("Amazon SQS API permissions: Actions and resource reference",
    ///   Amazon SQS Developer Guide,
    ///   https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-api-permissions-reference.html):
    ///   each of those actions brings its batch twin.
    /// - moto authorises DynamoDB requests against the resource `*` (its DynamoDB handler
    ///   names no resource), so a statement scoped to the table would never match: DynamoDB
    ///   statements get `Resource: *` locally. Their actions are still enforced.
    /// - moto authorises ECS requests against the resource `*` too (its ECS handler names no
    ///   resource), so ECS statements (the dispatcher's DescribeServices and UpdateService on
    ///   the worker service) get `Resource: *` locally; their actions are still enforced, and
    ///   the service ARN is checked against the template's policy with [`decide`] in
    ///   `tests/tests/scaling.rs`.
    /// - moto's SQS handler finds the queue of GetQueueUrl from a `QueueUrl` parameter the
    ///   call does not have, and authorises against `*`: `sqs:GetQueueUrl` is allowed on `*`
    ///   for an identity that has it on any queue.
    ///
    /// The template's resources for these are checked by [`crate::iam_from_template`]'s
    /// resolution (every ARN names a resource of the stack) rather than by moto.
    pub fn for_moto(&self) -> Self {
        let mut statements = Vec::with_capacity(self.statements.len() + 1);
        let mut queue_url = false;
        for statement in &self.statements {
            let mut statement = statement.clone();
            let granted = statement.actions.clone();
            let has = |name: &str| granted.iter().any(|a| a.eq_ignore_ascii_case(name));
            if statement.effect == Effect::Allow {
                queue_url |= has("sqs:GetQueueUrl");
                for single in [
                    "sqs:SendMessage",
                    "sqs:DeleteMessage",
                    "sqs:ChangeMessageVisibility",
                ] {
                    let batch = format!("{single}Batch");
                    if has(single) && !has(&batch) {
                        statement.actions.push(batch);
                    }
                }
                if has("dynamodb:PutItem")
                    && has("dynamodb:UpdateItem")
                    && !has("dynamodb:TransactWriteItems")
                {
                    statement.actions.push("dynamodb:TransactWriteItems".into());
                }
            }
            if statement.actions.iter().any(|a| {
                let a = a.to_ascii_lowercase();
                a.starts_with("dynamodb:") || a.starts_with("ecs:")
            }) {
                statement.resources = vec!["*".into()];
            }
            statements.push(statement);
        }
        if queue_url {
            statements.push(Statement {
                sid: Some("MotoGetQueueUrlByName".into()),
                effect: Effect::Allow,
                actions: vec!["sqs:GetQueueUrl".into()],
                resources: vec!["*".into()],
                condition: None,
            });
        }
        Self { statements }
    }
}

/// What `documents` together say about `action` on `resource`.
pub fn decide(documents: &[PolicyDocument], action: &str, resource: &str) -> Decision {
    let mut allowed = false;
    for statement in documents.iter().flat_map(|d| &d.statements) {
        if statement.condition.is_some() {
            continue;
        }
        let action_matches = statement.actions.iter().any(|pattern| {
            wildcard_match(&pattern.to_ascii_lowercase(), &action.to_ascii_lowercase())
        });
        let resource_matches = statement
            .resources
            .iter()
            .any(|pattern| wildcard_match(pattern, resource));
        if action_matches && resource_matches {
            match statement.effect {
                Effect::Deny => return Decision::ExplicitlyDenied,
                Effect::Allow => allowed = true,
            }
        }
    }
    if allowed {
        Decision::Allowed
    } else {
        Decision::ImplicitlyDenied
    }
}

/// IAM's wildcard match: `*` any run of characters, `?` any one character.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((star_p, star_t)) = star {
            pi = star_p + 1;
            ti = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(statements: Json) -> PolicyDocument {
        PolicyDocument::from_json(&json!({"Version": "2012-10-17", "Statement": statements}))
            .unwrap()
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("arn:aws:s3:::b/*", "arn:aws:s3:::b/x/y.jpg"));
        assert!(!wildcard_match("arn:aws:s3:::b/*", "arn:aws:s3:::b"));
        assert!(wildcard_match(
            "arn:aws:s3:::p/*/preview*",
            "arn:aws:s3:::p/v1/preview.mp4"
        ));
        assert!(!wildcard_match(
            "arn:aws:s3:::p/*/preview*",
            "arn:aws:s3:::p/v1/edges.jpg"
        ));
        assert!(wildcard_match("a?c", "abc"));
        assert!(wildcard_match("*", ""));
    }

    #[test]
    fn deny_wins_and_conditions_do_not_grant() {
        let doc = document(json!([
            {"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/*"},
            {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"},
            {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b",
             "Condition": {"StringEquals": {"s3:prefix": "x"}}}
        ]));
        assert_eq!(
            doc.decide("s3:getobject", "arn:aws:s3:::b/k"),
            Decision::Allowed
        );
        assert_eq!(
            doc.decide("s3:DeleteObject", "arn:aws:s3:::b/k"),
            Decision::ExplicitlyDenied
        );
        assert_eq!(
            doc.decide("s3:ListBucket", "arn:aws:s3:::b"),
            Decision::ImplicitlyDenied
        );
    }

    #[test]
    fn moto_copy_adds_only_what_moto_models_differently() {
        let doc = document(json!([
            {"Effect": "Allow", "Action": ["dynamodb:PutItem", "dynamodb:UpdateItem"],
             "Resource": "arn:aws:dynamodb:us-east-1:123456789012:table/t"},
            {"Effect": "Allow", "Action": ["sqs:SendMessage", "sqs:GetQueueUrl"],
             "Resource": "arn:aws:sqs:us-east-1:123456789012:q"}
        ]));
        let moto = doc.for_moto();
        assert!(moto.allows("dynamodb:TransactWriteItems", "*"));
        assert!(!moto.allows("dynamodb:Query", "*"));
        assert!(moto.allows("sqs:GetQueueUrl", "*"));
        assert!(!moto.allows("sqs:SendMessageBatch", "*"));
        assert!(!moto.allows("sqs:SendMessage", "*"));
        assert!(moto.allows(
            "sqs:SendMessageBatch",
            "arn:aws:sqs:us-east-1:123456789012:q"
        ));
        assert!(!doc.allows("dynamodb:TransactWriteItems", "*"));
    }

    #[test]
    fn without_action_drops_emptied_statements() {
        let doc = document(json!([
            {"Effect": "Allow", "Action": "dynamodb:Query", "Resource": "*"},
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "*"}
        ]));
        let less = doc
            .without_action("DYNAMODB:QUERY")
            .without_action("s3:PutObject");
        assert_eq!(less.statements.len(), 1);
        assert_eq!(less.statements[0].actions, vec!["s3:GetObject"]);
    }

    #[test]
    fn bad_documents_are_typed_errors() {
        assert!(matches!(
            PolicyDocument::from_json(&json!({"Statement": 3})),
            Err(PolicyError::Shape(_))
        ));
        assert!(matches!(
            PolicyDocument::from_json(
                &json!({"Statement": [{"Effect": "Allow", "NotAction": "x", "Resource": "*"}]})
            ),
            Err(PolicyError::Statement { index: 0, .. })
        ));
        assert!(matches!(
            PolicyDocument::from_json(
                &json!({"Statement": [{"Effect": "Maybe", "Action": "x", "Resource": "*"}]})
            ),
            Err(PolicyError::Statement { .. })
        ));
    }
}
