//! Checks that each `FRAMEFLEET__<SECTION>__<KEY>` variable of an environment reached the
//! setting it names, for the drift tests that load a deployment's environment (the template's,
//! `tests/tests/template_env.rs`; Compose's, `tests/tests/compose_env.rs`) through a service's
//! loader.
//!
//! The loader (`framefleet_core::config::load`) denies unknown keys, so a misspelt name fails
//! the load; this adds that the value the variable carries is the value of the setting its
//! name spells (`FRAMEFLEET__DISPATCHER__MAX_SEGMENTS=16` → `dispatcher.max_segments == 16`),
//! read from the loaded settings' serialized form.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value as Json;

/// The prefix the loader reads variables under.
pub const PREFIX: &str = "FRAMEFLEET__";

/// Every `FRAMEFLEET__*` variable of `env` whose value is not the value of the setting its
/// name spells in `settings`, one message each (empty when every variable reached its setting).
/// Variables without the prefix are not the loader's and are skipped.
pub fn unreached(settings: &impl Serialize, env: &HashMap<String, String>) -> Vec<String> {
    let tree = match serde_json::to_value(settings) {
        Ok(tree) => tree,
        Err(error) => return vec![format!("the settings do not serialize: {error}")],
    };
    let mut problems = Vec::new();
    let mut names: Vec<&String> = env.keys().collect();
    names.sort();
    for name in names {
        let Some(key) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let value = &env[name];
        let path: Vec<String> = key.split("__").map(str::to_ascii_lowercase).collect();
        let dotted = path.join(".");
        match path.iter().try_fold(&tree, |node, part| node.get(part)) {
            None => problems.push(format!("{name} names no setting (`{dotted}`)")),
            Some(setting) if setting.is_object() => problems.push(format!(
                "{name} names the section `{dotted}`, not a setting"
            )),
            Some(setting) if setting_is(setting, value) => {}
            Some(setting) => problems.push(format!(
                "{name}={value:?} did not reach `{dotted}`, which is {setting}"
            )),
        }
    }
    problems
}

/// Whether the serialized `setting` is what the loader makes of the variable value `value`:
/// the same string, number, boolean, or comma-separated list.
pub fn setting_is(setting: &Json, value: &str) -> bool {
    match setting {
        Json::String(s) => s == value,
        Json::Bool(b) => value.trim().parse::<bool>().ok() == Some(*b),
        Json::Number(n) => match (value.trim().parse::<f64>(), n.as_f64()) {
            // An `f32` setting serializes widened; compare at its precision too.
            (Ok(v), Some(n)) => v == n || (v as f32) == (n as f32),
            _ => false,
        },
        Json::Array(items) => {
            let listed: Vec<&str> = value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            listed.len() == items.len()
                && items
                    .iter()
                    .zip(listed)
                    .all(|(item, v)| setting_is(item, v))
        }
        Json::Null | Json::Object(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Settings {
        section: Section,
    }

    #[derive(Serialize)]
    struct Section {
        count: u32,
        ratio: f32,
        on: bool,
        name: String,
        list: Vec<String>,
        maybe: Option<u32>,
    }

    fn settings() -> Settings {
        Settings {
            section: Section {
                count: 16,
                ratio: 0.1,
                on: true,
                name: "a".into(),
                list: vec!["x".into(), "y".into()],
                maybe: None,
            },
        }
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn matching_values_reach_their_settings() {
        let env = env(&[
            ("FRAMEFLEET__SECTION__COUNT", "16"),
            ("FRAMEFLEET__SECTION__RATIO", "0.1"),
            ("FRAMEFLEET__SECTION__ON", "true"),
            ("FRAMEFLEET__SECTION__NAME", "a"),
            ("FRAMEFLEET__SECTION__LIST", "x, y"),
            ("RUST_LOG", "info"),
        ]);
        assert_eq!(unreached(&settings(), &env), Vec::<String>::new());
    }

    #[test]
    fn other_values_and_names_are_reported() {
        for (name, value) in [
            ("FRAMEFLEET__SECTION__COUNT", "15"),
            ("FRAMEFLEET__SECTION__ON", "false"),
            ("FRAMEFLEET__SECTION__NAME", "b"),
            ("FRAMEFLEET__SECTION__LIST", "x"),
            ("FRAMEFLEET__SECTION__MAYBE", "1"),
            ("FRAMEFLEET__SECTION__COUNTS", "16"),
            ("FRAMEFLEET__SECTION", "16"),
            ("FRAMEFLEET__OTHER__COUNT", "16"),
        ] {
            let problems = unreached(&settings(), &env(&[(name, value)]));
            assert_eq!(problems.len(), 1, "{name}: {problems:?}");
            assert!(problems[0].starts_with(name), "{problems:?}");
        }
    }
}
