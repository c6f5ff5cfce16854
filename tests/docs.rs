//! The documentation stays true to the code: every setting of `src/config.rs` is in the
//! configuration reference (its environment variable and its flag), every relative link of the
//! guides resolves (file and heading), and no guide points at an issue tracker number.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The guides: README, CONTRIBUTING, docs/*.md, the Terraform module's README.
fn guides() -> Vec<PathBuf> {
    let root = Path::new(ROOT);
    let mut files = vec![
        root.join("README.md"),
        root.join("CONTRIBUTING.md"),
        root.join("terraform/README.md"),
    ];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// `(ENV_NAME, field_name)` of every `#[arg(long, env = "…")] pub field: …` in src/config.rs.
fn settings() -> Vec<(String, String)> {
    let text = read(&Path::new(ROOT).join("src/config.rs"));
    let mut out = Vec::new();
    let mut pending_env: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with("#[arg(") && line.contains("long") {
            pending_env = line
                .split("env = \"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .map(str::to_string);
        } else if let (Some(env), Some(rest)) = (pending_env.as_ref(), line.strip_prefix("pub ")) {
            let field = rest.split(':').next().unwrap().trim().to_string();
            out.push((env.clone(), field));
            pending_env = None;
        }
    }
    out
}

#[test]
fn every_setting_is_in_the_configuration_reference() {
    let reference = read(&Path::new(ROOT).join("docs/configuration.md"));
    let settings = settings();
    assert!(settings.len() >= 30, "only {} settings found in src/config.rs", settings.len());
    let mut missing = Vec::new();
    for (env, field) in &settings {
        let flag = format!("--{}", field.replace('_', "-"));
        if !reference.contains(&format!("`{env}`")) {
            missing.push(env.clone());
        }
        if !reference.contains(&format!("`{flag}`")) {
            missing.push(flag);
        }
    }
    assert!(missing.is_empty(), "not in docs/configuration.md: {missing:?}");
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> HashSet<String> {
    let mut in_code = false;
    let mut out = HashSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.insert(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

/// Every `](target)` of a Markdown text, outside code blocks.
fn links(text: &str) -> Vec<String> {
    let mut in_code = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn every_relative_link_and_heading_resolves() {
    let mut broken = Vec::new();
    for guide in guides() {
        let text = read(&guide);
        let dir = guide.parent().unwrap();
        for link in links(&text) {
            if link.starts_with("http://") || link.starts_with("https://") || link.starts_with("mailto:") {
                continue;
            }
            let (path, fragment) = link.split_once('#').unwrap_or((&link, ""));
            let target = if path.is_empty() { guide.clone() } else { dir.join(path) };
            if !target.exists() {
                broken.push(format!("{}: {link} (no such file)", guide.display()));
                continue;
            }
            if !fragment.is_empty() && target.extension().is_some_and(|x| x == "md") && !anchors(&read(&target)).contains(fragment) {
                broken.push(format!("{}: {link} (no such heading)", guide.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_has_a_table_of_contents_of_its_sections() {
    let readme = read(&Path::new(ROOT).join("README.md"));
    let sections: Vec<String> = readme.lines().filter(|l| l.starts_with("## ")).map(|l| anchor(&l[3..])).collect();
    assert!(sections.len() >= 6, "{sections:?}");
    for section in &sections {
        assert!(
            readme.contains(&format!("](#{section})")),
            "the contents list does not link #{section}"
        );
    }
}

#[test]
fn no_guide_refers_to_an_issue_number() {
    for guide in guides() {
        let text = read(&guide).to_lowercase();
        for (i, _) in text.match_indices("issue") {
            let after: String = text[i + 5..].chars().take(3).collect();
            let after = after.trim_start_matches([' ', '#']);
            assert!(
                !after.starts_with(|c: char| c.is_ascii_digit()),
                "{} refers to an issue number near: {}",
                guide.display(),
                &text[i..(i + 20).min(text.len())]
            );
        }
    }
}
