//! EventBridge event patterns: which events a rule forwards to its targets.
//!
//! On AWS, the `MediaConvertJobEventsRule` of `deploy/framefleet.yaml` decides which MediaConvert
//! job events reach the job-events queue. Locally the MediaConvert stand-in sends its events
//! straight to that queue, so it applies the same pattern (read from the template by the
//! provisioner) before sending: an event the rule would drop never reaches the dispatcher here
//! either.
//!
//! The matching rules are EventBridge's ("Amazon EventBridge event patterns",
//! <https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns.html>): a pattern
//! is a JSON object whose leaves are arrays of allowed values; an event matches when every
//! field the pattern names matches (an array field in the event matches when any element
//! does), and fields the pattern does not name are ignored. Of the content filters
//! (<https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-pattern-operators.html>)
//! `prefix`, `suffix`, `anything-but` (a value or a list) and `exists` are understood; any other
//! operator is refused when the pattern is parsed rather than matched loosely.

use serde_json::Value;

/// A pattern that cannot be applied locally.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event pattern at `{path}`: {message}")]
pub struct EventPatternError {
    /// Where in the pattern, e.g. `detail.userMetadata.application`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// A parsed, checked event pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPattern(Field);

#[derive(Debug, Clone, PartialEq)]
enum Field {
    /// Nested fields, each of which must match.
    Object(Vec<(String, Field)>),
    /// Any one of these must match the event's value (or one of its elements).
    AnyOf(Vec<Matcher>),
}

#[derive(Debug, Clone, PartialEq)]
enum Matcher {
    Exactly(Value),
    Prefix(String),
    Suffix(String),
    AnythingBut(Vec<Value>),
    Exists(bool),
}

impl EventPattern {
    /// Parses the JSON text of a rule's `EventPattern`.
    pub fn from_json_text(text: &str) -> Result<Self, EventPatternError> {
        let value: Value = serde_json::from_str(text).map_err(|e| EventPatternError {
            path: String::new(),
            message: format!("not JSON: {e}"),
        })?;
        Self::parse(&value)
    }

    /// Checks `pattern` (a rule's `EventPattern` as JSON).
    pub fn parse(pattern: &Value) -> Result<Self, EventPatternError> {
        match parse_field(pattern, "")? {
            Field::Object(fields) if !fields.is_empty() => Ok(Self(Field::Object(fields))),
            _ => Err(error("", "a pattern is a non-empty JSON object")),
        }
    }

    /// Whether EventBridge would forward `event` (a whole event envelope).
    pub fn matches(&self, event: &Value) -> bool {
        field_matches(&self.0, Some(event))
    }
}

fn error(path: &str, message: impl Into<String>) -> EventPatternError {
    EventPatternError {
        path: path.to_string(),
        message: message.into(),
    }
}

fn parse_field(value: &Value, path: &str) -> Result<Field, EventPatternError> {
    match value {
        Value::Object(map) => {
            let mut fields = Vec::with_capacity(map.len());
            for (key, inner) in map {
                let inner_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                fields.push((key.clone(), parse_field(inner, &inner_path)?));
            }
            Ok(Field::Object(fields))
        }
        Value::Array(items) => {
            if items.is_empty() {
                return Err(error(path, "an empty list matches nothing"));
            }
            items
                .iter()
                .map(|item| parse_matcher(item, path))
                .collect::<Result<_, _>>()
                .map(Field::AnyOf)
        }
        _ => Err(error(path, "values of a pattern are lists or objects")),
    }
}

fn parse_matcher(item: &Value, path: &str) -> Result<Matcher, EventPatternError> {
    let Value::Object(map) = item else {
        return Ok(Matcher::Exactly(item.clone()));
    };
    let [(operator, argument)] = map.iter().collect::<Vec<_>>()[..] else {
        return Err(error(path, "a content filter has exactly one operator"));
    };
    match (operator.as_str(), argument) {
        ("prefix", Value::String(s)) => Ok(Matcher::Prefix(s.clone())),
        ("suffix", Value::String(s)) => Ok(Matcher::Suffix(s.clone())),
        ("exists", Value::Bool(b)) => Ok(Matcher::Exists(*b)),
        ("anything-but", Value::Array(values)) => Ok(Matcher::AnythingBut(values.clone())),
        ("anything-but", value @ (Value::String(_) | Value::Number(_))) => {
            Ok(Matcher::AnythingBut(vec![value.clone()]))
        }
        (other, _) => Err(error(
            path,
            format!("content filter `{other}` with this argument is not applied locally"),
        )),
    }
}

fn field_matches(field: &Field, value: Option<&Value>) -> bool {
    match field {
        Field::Object(fields) => {
            let Some(Value::Object(map)) = value else {
                // A nested pattern only matches a nested object, except that fields whose
                // every matcher is `exists: false` match an absent one.
                return fields.iter().all(|(_, f)| field_matches(f, None));
            };
            fields
                .iter()
                .all(|(key, inner)| field_matches(inner, map.get(key)))
        }
        Field::AnyOf(matchers) => matchers.iter().any(|m| matcher_matches(m, value)),
    }
}

fn matcher_matches(matcher: &Matcher, value: Option<&Value>) -> bool {
    let Some(value) = value else {
        return matches!(matcher, Matcher::Exists(false));
    };
    if let Value::Array(items) = value {
        return items
            .iter()
            .any(|item| matcher_matches(matcher, Some(item)));
    }
    match matcher {
        Matcher::Exactly(expected) => expected == value,
        Matcher::Prefix(p) => value.as_str().is_some_and(|s| s.starts_with(p.as_str())),
        Matcher::Suffix(p) => value.as_str().is_some_and(|s| s.ends_with(p.as_str())),
        Matcher::AnythingBut(values) => !values.contains(value),
        Matcher::Exists(exists) => *exists,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rule() -> EventPattern {
        EventPattern::parse(&json!({
            "source": ["aws.mediaconvert"],
            "detail-type": ["MediaConvert Job State Change"],
            "detail": {"userMetadata": {"application": ["framefleet"]}},
        }))
        .unwrap()
    }

    fn event(application: Option<&str>) -> Value {
        let mut metadata = serde_json::Map::new();
        if let Some(app) = application {
            metadata.insert("application".into(), json!(app));
        }
        json!({
            "source": "aws.mediaconvert",
            "detail-type": "MediaConvert Job State Change",
            "detail": {"status": "COMPLETE", "userMetadata": metadata},
        })
    }

    #[test]
    fn the_rule_forwards_only_our_jobs() {
        assert!(rule().matches(&event(Some("framefleet"))));
        assert!(!rule().matches(&event(Some("someone-else"))));
        assert!(!rule().matches(&event(None)));
        let mut other_source = event(Some("framefleet"));
        other_source["source"] = json!("aws.s3");
        assert!(!rule().matches(&other_source));
    }

    #[test]
    fn content_filters_and_array_values() {
        let pattern = EventPattern::parse(&json!({
            "detail": {
                "status": [{"anything-but": ["STATUS_UPDATE"]}],
                "jobId": [{"prefix": "j-"}],
                "queue": [{"exists": false}],
                "tags": ["a"],
            }
        }))
        .unwrap();
        let matching =
            json!({"detail": {"status": "COMPLETE", "jobId": "j-1", "tags": ["b", "a"]}});
        assert!(pattern.matches(&matching));
        let mut update = matching.clone();
        update["detail"]["status"] = json!("STATUS_UPDATE");
        assert!(!pattern.matches(&update));
        let mut queued = matching.clone();
        queued["detail"]["queue"] = json!("q");
        assert!(!pattern.matches(&queued));
    }

    #[test]
    fn unsupported_patterns_are_refused() {
        for bad in [
            json!({}),
            json!({"source": "aws.mediaconvert"}),
            json!({"source": []}),
            json!({"detail": {"size": [{"numeric": [">", 0]}]}}),
        ] {
            assert!(EventPattern::parse(&bad).is_err(), "{bad}");
        }
    }
}
