//! The Kubernetes example holds together: its objects refer to each other by names
//! and ports that exist, the admin port stays off the clients' Service, and its
//! configuration is valid for bitsgate.

use crate::promql::repo_path;
use serde::Deserialize;
use serde_yaml::Value;

const MANIFEST: &str = "deploy/kubernetes/bitsgate.yaml";

fn objects() -> Vec<Value> {
    let text = std::fs::read_to_string(repo_path(MANIFEST)).expect("manifest");
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).expect("YAML document"))
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{MANIFEST} has no {kind} {name}"))
}

fn port_names(service: &Value) -> Vec<&str> {
    service["spec"]["ports"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str())
        .collect()
}

#[test]
fn the_kubernetes_example_keeps_the_admin_api_apart() {
    let objects = objects();
    let set = find(&objects, "StatefulSet", "bitsgate");
    let pod = &set["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    assert_eq!(pod["spec"]["automountServiceAccountToken"], false);
    let container = &pod["spec"]["containers"][0];
    let container_ports: Vec<&str> = container["ports"]
        .as_sequence()
        .expect("container ports")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        let port = container[probe]["httpGet"]["port"]
            .as_str()
            .unwrap_or_else(|| panic!("no {probe}"));
        assert!(container_ports.contains(&port), "{probe} port {port}");
    }

    for (service, expected) in [("bitsgate", ["bits"]), ("bitsgate-admin", ["admin"])] {
        let service = find(&objects, "Service", service);
        assert_eq!(port_names(service), expected);
        assert_eq!(&service["spec"]["selector"], labels);
        for port in service["spec"]["ports"].as_sequence().expect("ports") {
            let target = port["targetPort"].as_str().expect("named targetPort");
            assert!(container_ports.contains(&target), "targetPort {target}");
        }
    }

    let policy = find(&objects, "NetworkPolicy", "bitsgate");
    assert_eq!(&policy["spec"]["podSelector"]["matchLabels"], labels);
    for rule in policy["spec"]["ingress"]
        .as_sequence()
        .expect("ingress rules")
    {
        let ports: Vec<&str> = rule["ports"]
            .as_sequence()
            .expect("rule ports")
            .iter()
            .filter_map(|p| p["port"].as_str())
            .collect();
        if ports.contains(&"admin") {
            assert!(
                rule["from"].as_sequence().is_some_and(|f| !f.is_empty()),
                "the admin port is open to every source"
            );
        }
        for port in ports {
            assert!(container_ports.contains(&port), "policy port {port}");
        }
    }

    let budget = find(&objects, "PodDisruptionBudget", "bitsgate");
    assert_eq!(&budget["spec"]["selector"]["matchLabels"], labels);
}

#[test]
fn the_kubernetes_example_configuration_is_valid_and_reads_the_token_secret() {
    let objects = objects();
    let config_map = find(&objects, "ConfigMap", "bitsgate");
    let text = config_map["data"]["bitsgate.toml"]
        .as_str()
        .expect("bitsgate.toml in the ConfigMap");
    let set = find(&objects, "StatefulSet", "bitsgate");
    let pod = &set["spec"]["template"]["spec"];
    let secret_volume = pod["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .find(|v| v["secret"]["secretName"] == "bitsgate-admin-token")
        .expect("a volume from the admin token Secret");
    let mount = pod["containers"][0]["volumeMounts"]
        .as_sequence()
        .expect("mounts")
        .iter()
        .find(|m| m["name"] == secret_volume["name"])
        .expect("the Secret is mounted");
    let token_path = format!(
        "{}/admin-token",
        mount["mountPath"].as_str().expect("mountPath")
    );
    let quoted = format!("token_file = \"{token_path}\"");
    assert!(text.contains(&quoted), "token_file is not {token_path}");

    // Validated here with a token file of the test's own in place of the Secret.
    let dir = tempfile::tempdir().expect("temp dir");
    let token = dir.path().join("admin-token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef").expect("token");
    let local = text.replace(
        &quoted,
        &format!("token_file = {:?}", token.display().to_string()),
    );
    if let Err(errors) = bitsgate::config::load_str(&local) {
        panic!("the ConfigMap's bitsgate.toml is refused: {errors}");
    }
}
