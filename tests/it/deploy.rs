//! The deployment files say what the README says: `docker compose up` needs nothing but the
//! secrets (in snapgate.env or the shell), the replicas file starts no SQLite gateway and
//! states its database's TLS mode, nginx passes the caller's request id through, and every
//! setting in the env example is one the gateway knows.

fn read(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn compose_starts_as_written_for_sqlite_and_for_replicas() {
    let sqlite = read("docker-compose.yml");
    // Compose interpolates every service before it applies profiles: a required variable
    // anywhere in this file would stop `docker compose up` without it.
    assert!(
        !sqlite.contains(":?"),
        "docker-compose.yml requires a variable"
    );
    assert!(
        !sqlite.contains("postgres"),
        "the SQLite file starts no database"
    );
    assert!(sqlite.contains("path: ./snapgate.env") && sqlite.contains("required: false"));

    let replicas = read("docker-compose.replicas.yml");
    assert!(
        !replicas.lines().any(|l| l.trim_end() == "  snapgate:"),
        "the replicas file must not start the SQLite gateway"
    );
    for service in ["postgres:", "snapgate-a:", "snapgate-b:", "balancer:"] {
        assert!(replicas.contains(&format!("  {service}")), "{service}");
    }
    // A non-loopback database is TLS-required unless the URL says otherwise.
    assert!(replicas.contains("@postgres:5432/snapgate?sslmode="));

    let nginx = read("deploy/nginx-replicas.conf");
    assert!(nginx.contains("$http_x_request_id"));
    assert!(!nginx.contains("proxy_set_header X-Request-Id $request_id;"));
}

#[test]
fn every_setting_in_the_env_example_is_one_the_gateway_knows() {
    let example = read("deploy/snapgate.env.example");
    let keys: Vec<&str> = example
        .lines()
        .map(|l| l.trim_start_matches("# ").trim())
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .filter(|k| k.starts_with("SNAPGATE_"))
        .collect();
    assert!(keys.len() >= 5, "{keys:?}");
    for key in keys {
        let rest = key.trim_start_matches("SNAPGATE_").to_ascii_lowercase();
        let section = rest.split("__").next().unwrap();
        assert!(
            snapgate::config::SECTIONS.contains(&section),
            "{key}: no section `{section}`"
        );
    }
    let ignored = read(".gitignore");
    assert!(ignored.lines().any(|l| l == "/snapgate.env"));
    let context = read(".dockerignore");
    assert!(context.lines().any(|l| l == "snapgate.env"));
}
