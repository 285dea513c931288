//! Reading the shipped Prometheus rules and Grafana dashboard, the names their
//! expressions use, and running promtool on them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

pub const ALERT_RULES: &str = "deploy/prometheus/bitsgate-rules.yml";
pub const RECORDING_RULES: &str = "deploy/prometheus/bitsgate-recording-rules.yml";
pub const RULES_TEST: &str = "deploy/prometheus/bitsgate-rules.test.yml";
pub const DASHBOARD: &str = "deploy/grafana/bitsgate.json";

/// One rule of a rule file.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The `alert` or `record` name.
    pub name: String,
    pub expr: String,
    pub annotations: BTreeMap<String, String>,
}

fn yaml(relative: &str) -> serde_yaml::Value {
    let text = std::fs::read_to_string(repo_path(relative))
        .unwrap_or_else(|e| panic!("cannot read {relative}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{relative} is not YAML: {e}"))
}

/// The rules of a rule file whose key is `kind` (`alert` or `record`).
pub fn rules(relative: &str, kind: &str) -> Vec<Rule> {
    let file = yaml(relative);
    let groups = file["groups"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{relative} has no groups"));
    let mut out = Vec::new();
    for group in groups {
        for rule in group["rules"].as_sequence().into_iter().flatten() {
            let Some(name) = rule[kind].as_str() else {
                continue;
            };
            let expr = rule["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{name} in {relative} has no expr"));
            let annotations = rule["annotations"]
                .as_mapping()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())))
                .collect();
            out.push(Rule {
                name: name.to_owned(),
                expr: expr.to_owned(),
                annotations,
            });
        }
    }
    out
}

/// Alert names that the promtool test file expects to fire at least once.
pub fn alerts_tested_firing() -> BTreeSet<String> {
    let file = yaml(RULES_TEST);
    let mut out = BTreeSet::new();
    for case in file["tests"].as_sequence().into_iter().flatten() {
        for check in case["alert_rule_test"].as_sequence().into_iter().flatten() {
            let fires = check["exp_alerts"]
                .as_sequence()
                .is_some_and(|alerts| !alerts.is_empty());
            if let (true, Some(name)) = (fires, check["alertname"].as_str()) {
                out.insert(name.to_owned());
            }
        }
    }
    out
}

/// Every PromQL query of the dashboard: panel targets and template variables.
pub fn dashboard_queries() -> Vec<String> {
    let text = std::fs::read_to_string(repo_path(DASHBOARD)).expect("dashboard JSON");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let mut out = Vec::new();
    collect_exprs(&dashboard, &mut out);
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"] == "query" {
            let query = variable["query"]["query"]
                .as_str()
                .or_else(|| variable["query"].as_str())
                .expect("query variable has a query");
            out.push(label_values_selector(query).to_owned());
        }
    }
    out
}

fn collect_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", serde_json::Value::String(expr)) => out.push(expr.clone()),
                    _ => collect_exprs(value, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// The series selector of Grafana's `label_values(SELECTOR, label)`.
fn label_values_selector(query: &str) -> &str {
    let inner = query
        .strip_prefix("label_values(")
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected variable query {query}"));
    inner
        .rsplit_once(',')
        .map_or(inner, |(selector, _)| selector)
}

/// Grafana's template variables replaced by what they match at most, so the query
/// is plain PromQL.
pub fn without_variables(expr: &str) -> String {
    ["$job", "$instance", "$backend"]
        .iter()
        .fold(expr.to_owned(), |expr, variable| {
            expr.replace(variable, ".*")
        })
}

/// A metric name an expression selects, with the label values it requires
/// (`label="value"` matchers; regex and negative matchers are not checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    pub name: String,
    pub equal: Vec<(String, String)>,
}

/// Every selector of `expr` whose metric name satisfies `wanted`. Identifiers are
/// read whole, colons included, so a recording rule's name such as
/// `instance:bitsgate_requests:rate5m` is one name, not a metric inside it. String
/// literals are skipped, label lists of `by (...)` never match `wanted`.
pub fn selectors(expr: &str, wanted: impl Fn(&str) -> bool) -> Vec<Selector> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i).1;
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let name: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let mut equal = Vec::new();
            if j < chars.len() && chars[j] == '{' {
                let (matchers, end) = label_matchers(&chars, j + 1);
                equal = matchers;
                i = end;
            }
            if wanted(&name) {
                out.push(Selector { name, equal });
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Reads a quoted string starting at `start`; returns its content and the index
/// after the closing quote.
fn skip_string(chars: &[char], start: usize) -> (String, usize) {
    let quote = chars[start];
    let mut i = start + 1;
    let mut content = String::new();
    while i < chars.len() && chars[i] != quote {
        if chars[i] == '\\' && quote != '`' && i + 1 < chars.len() {
            i += 1;
        }
        content.push(chars[i]);
        i += 1;
    }
    (content, i + 1)
}

/// Reads `label op "value", ...}` from `start`; returns the `=` matchers and the
/// index after `}`.
fn label_matchers(chars: &[char], start: usize) -> (Vec<(String, String)>, usize) {
    let mut out = Vec::new();
    let mut i = start;
    loop {
        while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ',') {
            i += 1;
        }
        if i >= chars.len() || chars[i] == '}' {
            return (out, i + 1);
        }
        let label_start = i;
        while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
            i += 1;
        }
        let label: String = chars[label_start..i].iter().collect();
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let op_start = i;
        while i < chars.len() && "=!~".contains(chars[i]) {
            i += 1;
        }
        let op: String = chars[op_start..i].iter().collect();
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        assert!(
            i < chars.len() && "\"'`".contains(chars[i]),
            "cannot read the label matchers of {}",
            chars.iter().collect::<String>()
        );
        let (value, end) = skip_string(chars, i);
        i = end;
        if op == "=" {
            out.push((label, value));
        }
    }
}

/// One sample of a text exposition: name and labels.
#[derive(Debug)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// The samples of a Prometheus text exposition.
pub fn samples(exposition: &str) -> Vec<Sample> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let chars: Vec<char> = line.chars().collect();
            let end = chars
                .iter()
                .position(|c| *c == '{' || *c == ' ')
                .unwrap_or(chars.len());
            let name: String = chars[..end].iter().collect();
            let mut labels = BTreeMap::new();
            if chars.get(end) == Some(&'{') {
                let mut i = end + 1;
                while i < chars.len() && chars[i] != '}' {
                    let eq = (i..chars.len())
                        .find(|&k| chars[k] == '=')
                        .expect("label has a value");
                    let label: String = chars[i..eq].iter().collect();
                    let (value, after) = skip_string(&chars, eq + 1);
                    labels.insert(label.trim_start_matches(',').to_owned(), value);
                    i = after;
                    if chars.get(i) == Some(&',') {
                        i += 1;
                    }
                }
            }
            Sample { name, labels }
        })
        .collect()
}

/// Whether some sample has the selector's name and required label values.
pub fn selected(samples: &[Sample], selector: &Selector) -> bool {
    samples.iter().any(|sample| {
        sample.name == selector.name
            && selector
                .equal
                .iter()
                .all(|(label, value)| sample.labels.get(label) == Some(value))
    })
}

/// promtool with its arguments, run; fails the test with a clear message when it
/// is not installed (the test never skips).
pub fn promtool(args: &[&str], dir: &Path) -> Output {
    Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): it checks the shipped Prometheus rules. Install it \
                 with .ci/deps-promtool (Debian package prometheus), which .ci/test runs"
            )
        })
}

/// Panics with promtool's output unless it succeeded.
pub fn assert_success(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn selectors_read_names_whole_and_skip_strings() {
    let expr = r#"sum by (backend) (instance_backend:bitsgate_requests:rate5m{class="5xx"})
        / rate(bitsgate_requests_total{backend="none", class=~"5xx|4xx"}[5m])
        + histogram_quantile(0.9, bitsgate_request_duration_seconds_bucket) > 1e3
        unless on (job) label_replace(up, "x", "bitsgate_fake", "", "")"#;
    let found = selectors(expr, |name| {
        name.starts_with("bitsgate") || name.contains(':')
    });
    let names: Vec<&str> = found.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "instance_backend:bitsgate_requests:rate5m",
            "bitsgate_requests_total",
            "bitsgate_request_duration_seconds_bucket"
        ]
    );
    assert_eq!(found[0].equal, [("class".to_owned(), "5xx".to_owned())]);
    assert_eq!(found[1].equal, [("backend".to_owned(), "none".to_owned())]);
}

#[test]
fn samples_read_names_and_labels() {
    let text = "# TYPE x counter\nx_total{a=\"1\",b=\"q\\\"r\"} 3\ny 0\n";
    let all = samples(text);
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].name, "x_total");
    assert_eq!(all[0].labels["b"], "q\"r");
    assert!(all[1].labels.is_empty());
}
