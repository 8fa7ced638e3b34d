//! Keeps `docker-compose.yml` from drifting away from the code: the `FRAMEFLEET__*` environment
//! compose gives each framefleet service must load through that service's own config loader
//! (which denies unknown keys) and pass its start-up validation, exactly as the binary would at
//! start-up, and each value must land in the setting the variable names. Interpolations
//! resolve as they would with nothing set in the shell (`${VAR:-default}` → `default`).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use framefleet_core::config::{load, ConfigError};
use framefleet_dispatcher::DispatcherSettings;
use framefleet_e2e::settings_env::unreached;
use framefleet_provision::ProvisionSettings;
use framefleet_worker::WorkerSettings;
use mediaconvert_standin::StandinSettings;
use serde_yaml::Value;

type Env = HashMap<String, String>;

/// Loads and validates one service's settings from `env`, as its `main` does.
type Loader = fn(Env) -> Result<(), ConfigError>;

fn load_dispatcher(env: Env) -> Result<(), ConfigError> {
    load::<DispatcherSettings>(None, Some(env))?.validate()
}

fn load_worker(env: Env) -> Result<(), ConfigError> {
    load::<WorkerSettings>(None, Some(env))?.validate()
}

fn load_standin(env: Env) -> Result<(), ConfigError> {
    load::<StandinSettings>(None, Some(env))?.standin.validate()
}

fn load_provision(env: Env) -> Result<(), ConfigError> {
    load::<ProvisionSettings>(None, Some(env))?.validate()
}

/// Every compose service built from the workspace, with its loader.
const SERVICES: [(&str, Loader); 4] = [
    ("provision", load_provision),
    ("mediaconvert-standin", load_standin),
    ("dispatcher", load_dispatcher),
    ("worker", load_worker),
];

/// Loads one service's settings from `env` and lists the variables that did not reach the
/// setting they name (`framefleet_e2e::settings_env::unreached`).
type Reach = fn(Env) -> Result<Vec<String>, ConfigError>;

fn reach<T: serde::de::DeserializeOwned + serde::Serialize>(
    env: Env,
) -> Result<Vec<String>, ConfigError> {
    let settings: T = load(None, Some(env.clone()))?;
    Ok(unreached(&settings, &env))
}

/// [`SERVICES`]' settings types, by service.
const REACHES: [(&str, Reach); 4] = [
    ("provision", reach::<ProvisionSettings>),
    ("mediaconvert-standin", reach::<StandinSettings>),
    ("dispatcher", reach::<DispatcherSettings>),
    ("worker", reach::<WorkerSettings>),
];

fn compose_file() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker-compose.yml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut compose: Value = serde_yaml::from_str(&text).expect("docker-compose.yml is YAML");
    // `<<: [*aws, *resources]` merge keys, as Compose resolves them.
    compose.apply_merge().expect("merge keys resolve");
    compose
}

fn services(compose: &Value) -> &serde_yaml::Mapping {
    compose
        .get("services")
        .and_then(Value::as_mapping)
        .expect("docker-compose.yml has services")
}

/// Resolves Compose interpolation with an empty shell environment: `${VAR:-default}` and
/// `${VAR-default}` give `default`, `${VAR}`, `${VAR:+alt}` and `$VAR` give the empty string,
/// `${VAR:?message}` is an error (the shell must set it), `$$` is a `$`.
fn interpolate(value: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(braced) = rest.strip_prefix('{') {
            let end = braced
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in `{value}`"))?;
            let expr = &braced[..end];
            rest = &braced[end + 1..];
            let name_len = expr
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(expr.len());
            let operation = &expr[name_len..];
            if let Some(default) = operation
                .strip_prefix(":-")
                .or_else(|| operation.strip_prefix('-'))
            {
                out.push_str(default);
            } else if operation.starts_with(":?") || operation.starts_with('?') {
                return Err(format!("`{value}` requires a variable the shell must set"));
            }
            // `${VAR}` and `${VAR:+alt}` are empty when VAR is unset.
        } else {
            let name_len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            rest = &rest[name_len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        // `KEY:` with no value passes the shell's variable through, which is unset here.
        _ => None,
    }
}

/// Every variable compose gives `service`, in either environment syntax, uninterpolated;
/// `None` for `KEY:` with no value, which passes the shell's variable through only if it is set.
fn environment(compose: &Value, service: &str) -> Vec<(String, Option<String>)> {
    let definition = services(compose)
        .get(service)
        .unwrap_or_else(|| panic!("docker-compose.yml has no `{service}` service"));
    let mut pairs = Vec::new();
    match definition.get("environment") {
        None => {}
        Some(Value::Mapping(map)) => {
            for (key, value) in map {
                let key = key.as_str().expect("environment keys are strings");
                pairs.push((key.to_owned(), scalar(value)));
            }
        }
        Some(Value::Sequence(list)) => {
            for item in list {
                let item = item.as_str().expect("environment entries are strings");
                match item.split_once('=') {
                    Some((key, value)) => pairs.push((key.to_owned(), Some(value.to_owned()))),
                    None => pairs.push((item.to_owned(), None)),
                }
            }
        }
        Some(other) => panic!("`{service}` environment is neither a map nor a list: {other:?}"),
    }
    pairs
}

/// The `FRAMEFLEET__*` variables compose gives `service`, interpolated.
fn framefleet_env(compose: &Value, service: &str) -> Env {
    environment(compose, service)
        .into_iter()
        .filter(|(key, _)| key.starts_with("FRAMEFLEET__"))
        .filter_map(|(key, value)| value.map(|value| (key, value)))
        .map(|(key, value)| {
            let value = interpolate(&value).unwrap_or_else(|e| panic!("`{service}` {key}: {e}"));
            (key, value)
        })
        .collect()
}

#[test]
fn every_service_environment_is_accepted_by_its_loader() {
    let compose = compose_file();
    let mut failures = Vec::new();
    for (service, loader) in SERVICES {
        let env = framefleet_env(&compose, service);
        assert!(
            env.keys().any(|key| key.starts_with("FRAMEFLEET__")),
            "`{service}` sets no FRAMEFLEET__ variable: is the merge of the shared blocks lost?"
        );
        if let Err(error) = loader(env) {
            failures.push(format!("{service}: {error}"));
        }
    }
    assert!(
        failures.is_empty(),
        "compose environment rejected:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_variable_reaches_the_setting_it_names() {
    let compose = compose_file();
    assert_eq!(
        REACHES.map(|(name, _)| name),
        SERVICES.map(|(name, _)| name),
        "REACHES lists SERVICES' services"
    );
    let mut failures = Vec::new();
    for (service, reach) in REACHES {
        let env = framefleet_env(&compose, service);
        match reach(env) {
            Ok(unreached) => {
                failures.extend(unreached.into_iter().map(|p| format!("{service}: {p}")));
            }
            Err(error) => failures.push(format!("{service}: {error}")),
        }
    }
    assert!(
        failures.is_empty(),
        "compose values that did not reach their settings:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_built_service_is_checked() {
    let compose = compose_file();
    let built: BTreeSet<&str> = services(&compose)
        .iter()
        .filter(|(_, definition)| definition.get("build").is_some())
        .map(|(name, _)| name.as_str().expect("service names are strings"))
        .collect();
    let checked: BTreeSet<&str> = SERVICES.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        built, checked,
        "services built from docker/Dockerfile and services this test loads differ"
    );
}

#[test]
fn shared_resource_names_reach_the_services_that_use_them() {
    let compose = compose_file();
    for service in ["provision", "dispatcher", "worker"] {
        let env = framefleet_env(&compose, service);
        for key in [
            "INGRESS_BUCKET",
            "FRAMES_BUCKET",
            "PROCESSED_BUCKET",
            "INGRESS_QUEUE",
            "JOB_EVENTS_QUEUE",
            "FRAMES_QUEUE",
            "JOBS_TABLE",
        ] {
            let key = format!("FRAMEFLEET__RESOURCES__{key}");
            assert!(env.contains_key(&key), "`{service}` lacks {key}");
        }
    }
}

#[test]
fn a_misspelt_key_is_rejected() {
    let compose = compose_file();
    for (service, loader) in SERVICES {
        let mut env = framefleet_env(&compose, service);
        env.insert("FRAMEFLEET__TELEMETRY__LOG_FROMAT".into(), "json".into());
        let error = loader(env)
            .expect_err("an unknown key must fail")
            .to_string();
        assert!(error.contains("log_fromat"), "{service}: {error}");
    }
    let mut env = framefleet_env(&compose, "worker");
    env.insert("FRAMEFLEET__WORKER__BATCHES_IN_FLIGT".into(), "2".into());
    assert!(load_worker(env).is_err());
}

#[test]
fn interpolation_resolves_to_defaults() {
    assert_eq!(interpolate("${A:-info}").unwrap(), "info");
    assert_eq!(interpolate("${A-30000/1001}").unwrap(), "30000/1001");
    assert_eq!(interpolate("x${A}y$B-z").unwrap(), "xy-z");
    assert_eq!(interpolate("$$HOME").unwrap(), "$HOME");
    assert_eq!(interpolate("plain").unwrap(), "plain");
    assert_eq!(interpolate("${A:+set}").unwrap(), "");
    assert!(interpolate("${A:?set-it}").is_err());
}

/// OpenTelemetry export is configured by the standard variables alone, and off unless the
/// shell turns it on: the endpoint passes through from the shell (unset by default, so nothing
/// is exported; an empty value would be a value), the protocol too or one the SDK knows, and
/// each service reports under its own name.
#[test]
fn telemetry_export_is_off_unless_the_shell_turns_it_on() {
    let compose = compose_file();
    let mut names = BTreeSet::new();
    for (service, _) in SERVICES {
        let env: HashMap<String, Option<String>> =
            environment(&compose, service).into_iter().collect();
        assert_eq!(
            env.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
            Some(&None),
            "`{service}`: OTEL_EXPORTER_OTLP_ENDPOINT must pass through from the shell"
        );
        match env.get("OTEL_EXPORTER_OTLP_PROTOCOL") {
            None | Some(None) => {}
            Some(Some(protocol)) => {
                let protocol = interpolate(protocol).unwrap();
                assert!(
                    ["grpc", "http/protobuf"].contains(&protocol.as_str()),
                    "`{service}`: OTEL_EXPORTER_OTLP_PROTOCOL {protocol}"
                );
            }
        }
        let name = env
            .get("OTEL_SERVICE_NAME")
            .cloned()
            .flatten()
            .unwrap_or_else(|| panic!("`{service}` has no OTEL_SERVICE_NAME"));
        assert!(names.insert(name.clone()), "`{service}` reuses {name}");
    }
}

/// The collector and the trace UI start only with `--profile observability`, and nothing
/// else waits for them: a plain `docker compose up` is the stack without them.
#[test]
fn the_observability_services_start_only_with_their_profile() {
    let compose = compose_file();
    let all = services(&compose);
    for service in ["otel-collector", "jaeger"] {
        let profiles = all
            .get(service)
            .and_then(|s| s.get("profiles"))
            .and_then(Value::as_sequence)
            .unwrap_or_else(|| panic!("`{service}` has no profiles"));
        assert_eq!(profiles, &[Value::from("observability")], "`{service}`");
    }
    for (service, _) in SERVICES {
        let depends = all.get(service).and_then(|s| s.get("depends_on"));
        if let Some(Value::Mapping(depends)) = depends {
            for name in ["otel-collector", "jaeger"] {
                assert!(
                    !depends.contains_key(name),
                    "`{service}` waits for `{name}`"
                );
            }
        }
    }
}

fn moto_override() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker-compose.moto.yml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut compose: Value = serde_yaml::from_str(&text).expect("docker-compose.moto.yml is YAML");
    compose.apply_merge().expect("merge keys resolve");
    compose
}

/// The moto override (scripts/compose-e2e's stack) changes LocalStack's service and nothing
/// else, so every framefleet service runs exactly as in the base file, and it keeps the
/// readiness gate: a health check of its own, which `provision` (and through it everything)
/// waits on.
#[test]
fn the_moto_override_replaces_only_localstack_and_keeps_its_gate() {
    let moto = moto_override();
    let overridden: BTreeSet<&str> = services(&moto)
        .keys()
        .map(|name| name.as_str().expect("service names are strings"))
        .collect();
    assert_eq!(
        overridden,
        BTreeSet::from(["localstack"]),
        "docker-compose.moto.yml may override the localstack service only"
    );
    let localstack = services(&moto).get("localstack").expect("localstack");
    let test = localstack
        .get("healthcheck")
        .and_then(|h| h.get("test"))
        .and_then(Value::as_sequence)
        .expect("the moto localstack has a health check");
    assert_eq!(test.first(), Some(&Value::from("CMD")));
    for key in ["environment", "ports", "depends_on", "profiles"] {
        assert!(
            localstack.get(key).is_none(),
            "the override changes localstack's `{key}`; the stack must reach it as in the base file"
        );
    }
    let base = compose_file();
    let gate = services(&base)
        .get("provision")
        .and_then(|p| p.get("depends_on"))
        .and_then(|d| d.get("localstack"))
        .and_then(|l| l.get("condition"))
        .and_then(Value::as_str);
    assert_eq!(gate, Some("service_healthy"));
}

/// docker-compose v1 (Debian 12's `docker-compose`, the only Compose on some machines) rejects
/// a top-level `name`, and the Compose files must load there too.
#[test]
fn compose_files_load_in_docker_compose_v1() {
    for compose in [compose_file(), moto_override()] {
        let top: BTreeSet<&str> = compose
            .as_mapping()
            .expect("a mapping")
            .keys()
            .filter_map(Value::as_str)
            .filter(|key| !key.starts_with("x-"))
            .collect();
        for key in &top {
            assert!(
                ["services", "volumes", "networks", "configs", "secrets"].contains(key),
                "top-level `{key}` is not in docker-compose v1's schema"
            );
        }
    }
}
