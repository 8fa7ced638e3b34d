//! The layering of docs/architecture.md ("Layering"), checked: which workspace crate may depend
//! on which (from `cargo metadata`, so a dependency added to any Cargo.toml is seen), and no
//! two modules of one crate importing each other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each workspace crate and the workspace crates it may depend on (normal, dev or build). Edge
/// at the bottom, core above it, services, tools and the stand-in above core; nothing uses a
/// service but the crates that exist to drive services (end-to-end tests, fuzz targets of the
/// dispatcher's parsers).
const ALLOWED: &[(&str, &[&str])] = &[
    ("framefleet-edge", &[]),
    ("framefleet-core", &["framefleet-edge"]),
    (
        "framefleet-dispatcher",
        &["framefleet-core", "framefleet-edge"],
    ),
    ("framefleet-worker", &["framefleet-core", "framefleet-edge"]),
    ("framefleet-cli", &["framefleet-core", "framefleet-edge"]),
    ("framefleet-provision", &["framefleet-core"]),
    ("mediaconvert-standin", &["framefleet-core"]),
    ("framefleet-fleet", &["framefleet-core"]),
    (
        "framefleet-fuzz-entry",
        &[
            "framefleet-core",
            "framefleet-edge",
            "framefleet-dispatcher",
        ],
    ),
    (
        "framefleet-e2e",
        &[
            "framefleet-core",
            "framefleet-edge",
            "framefleet-dispatcher",
            "framefleet-worker",
            "framefleet-provision",
            "mediaconvert-standin",
            "framefleet-cli",
            "framefleet-fleet",
        ],
    ),
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// Every workspace package and the workspace packages it depends on, as `cargo metadata`
/// reads the manifests.
fn workspace_dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let packages = metadata["packages"].as_array().unwrap();
    let names: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["name"].as_str().unwrap().to_string())
                .filter(|d| names.contains(d))
                .collect();
            (p["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

#[test]
fn crates_depend_one_way() {
    let allowed: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(name, deps)| (*name, deps.iter().copied().collect()))
        .collect();
    let actual = workspace_dependencies();
    assert!(
        !actual["framefleet-dispatcher"].contains("framefleet-worker"),
        "the dispatcher must not depend on the worker: services share models through core"
    );
    for (package, deps) in &actual {
        let Some(may) = allowed.get(package.as_str()) else {
            panic!("{package} is not in the layering table: add it to docs/architecture.md and ALLOWED");
        };
        for dep in deps {
            assert!(
                may.contains(dep.as_str()),
                "{package} depends on {dep}, which the layering does not allow"
            );
        }
    }
}

/// The top-level modules of the crate under `src` each module names through `crate::…`, in
/// code (comments and `#[cfg(test)]` modules aside).
fn module_imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    fn files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut found = Vec::new();
    files(src, &mut found);
    let mut imports: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in found {
        let relative = file.strip_prefix(src).unwrap();
        let top = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let code: String = text
            .split("#[cfg(test)]")
            .next()
            .unwrap()
            .lines()
            .map(|line| line.split("//").next().unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        let named = imports.entry(top.clone()).or_default();
        let mut rest = code.as_str();
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let group = rest.starts_with('{');
            let list = if group {
                &rest[1..rest.find('}').unwrap_or(rest.len())]
            } else {
                rest
            };
            let items: Vec<&str> = if group {
                list.split(',').collect()
            } else {
                vec![list]
            };
            for item in items {
                let module: String = item
                    .trim_start()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !module.is_empty() && module != top {
                    named.insert(module);
                }
            }
        }
    }
    imports
}

/// Module pairs (crate, a, b) that import each other and are accepted: none. A new pair fails
/// the test below; give the shared part a module of its own instead (as `tests/src/binaries.rs`
/// is for the stack and the process fleet).
const KNOWN_CIRCLES: &[(&str, &str, &str)] = &[];

#[test]
fn no_two_modules_import_each_other() {
    let crates = [
        "core",
        "edge",
        "dispatcher",
        "worker",
        "cli",
        "provision",
        "localstack/mediaconvert",
        "tests",
    ];
    let mut circles = Vec::new();
    for krate in crates {
        let imports = module_imports(&workspace_root().join(krate).join("src"));
        for (a, named) in &imports {
            for b in named {
                let back = imports.get(b).is_some_and(|n| n.contains(a));
                let known = KNOWN_CIRCLES
                    .iter()
                    .any(|(c, x, y)| *c == krate && x == a && y == b);
                if back && a < b && !known {
                    circles.push(format!("{krate}: {a} <-> {b}"));
                }
            }
        }
    }
    assert!(
        circles.is_empty(),
        "modules importing each other: {circles:#?}"
    );
}

/// The check sees a circle where there is one (so the test above can fail).
#[test]
fn the_circle_check_sees_a_circle() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lib.rs"), "pub mod a;\npub mod b;\n").unwrap();
    std::fs::write(dir.path().join("a.rs"), "use crate::b::B;\n// crate::c\n").unwrap();
    std::fs::write(
        dir.path().join("b.rs"),
        "use crate::{a::A, d};\n#[cfg(test)]\nmod tests { use crate::e; }\n",
    )
    .unwrap();
    let imports = module_imports(dir.path());
    assert_eq!(imports["a"], BTreeSet::from(["b".to_string()]));
    assert_eq!(
        imports["b"],
        BTreeSet::from(["a".to_string(), "d".to_string()])
    );
}
