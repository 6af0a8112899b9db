//! Accounts CRUD, validation, tenant isolation and sealed credentials.

use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn accounts_of_every_provider_can_be_created_read_listed_updated_and_deleted() {
    let app = spawn_app().await;
    let t = token("acme", ALL_SCOPES);
    for provider in providers() {
        let id = format!("{provider}-main");
        let resp = app
            .post("/v1/accounts", &t, &account_body(&id, provider))
            .await;
        assert_eq!(resp.status(), 201, "{provider}");
        assert_eq!(
            resp.headers()["location"],
            format!("/v1/accounts/{id}").as_str()
        );
        let created: Value = resp.json().await.unwrap();
        assert_eq!(created["id"], id.as_str());
        assert_eq!(created["provider"], provider);
        assert!(created["credentials"]["fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("hmac-sha256:"));
        assert_eq!(created["health"]["status"], "unknown");

        let got: Value = app
            .get(&format!("/v1/accounts/{id}"), &t)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(got, created);

        let resp = app
            .patch(
                &format!("/v1/accounts/{id}"),
                &t,
                &json!({"display_name": "Main"}),
            )
            .await;
        assert_eq!(resp.status(), 200);
        let patched: Value = resp.json().await.unwrap();
        assert_eq!(patched["display_name"], "Main");
        assert_eq!(patched["credentials"], created["credentials"]);
    }
    let list: Value = app.get("/v1/accounts", &t).await.json().await.unwrap();
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    // Ordered by id: one account per provider.
    let mut expected: Vec<String> = providers().iter().map(|p| format!("{p}-main")).collect();
    expected.sort();
    assert_eq!(ids, expected);
    let koyeb: Value = app
        .get("/v1/accounts?provider=koyeb", &t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(koyeb["items"].as_array().unwrap().len(), 1);

    for provider in providers() {
        let path = format!("/v1/accounts/{provider}-main");
        assert_eq!(app.delete(&path, &t).await.status(), 204);
        assert_problem(app.get(&path, &t).await, 404, "account_not_found").await;
        assert_problem(app.delete(&path, &t).await, 404, "account_not_found").await;
    }
}

#[tokio::test]
async fn a_duplicate_account_id_is_409() {
    let app = spawn_app().await;
    let t = token("acme", ALL_SCOPES);
    assert_eq!(
        app.post("/v1/accounts", &t, &account_body("dup", "koyeb"))
            .await
            .status(),
        201
    );
    let resp = app
        .post("/v1/accounts", &t, &account_body("dup", "syminet"))
        .await;
    let body = assert_problem(resp, 409, "account_exists").await;
    assert_eq!(body["field"], "id");
}

#[tokio::test]
async fn missing_unknown_and_invalid_fields_are_422_naming_the_field() {
    let app = spawn_app().await;
    let t = token("acme", ALL_SCOPES);
    let cases = [
        (
            json!({"id": "a", "provider": "oktawave", "credentials": {"client_id": "x", "client_secret": "y", "username": "u"}, "settings": {"region": "pl1"}}),
            "credentials.password",
        ),
        (
            json!({"id": "a", "provider": "oktawave", "credentials": {"client_id": "x", "client_secret": "y", "username": "u", "password": "p"}}),
            "settings.region",
        ),
        (
            json!({"id": "a", "provider": "oktawave", "credentials": {"client_id": "x", "client_secret": "y", "username": "u", "password": "p"}, "settings": {"region": "eu1"}}),
            "settings.region",
        ),
        (
            json!({"id": "a", "provider": "hyperstack", "credentials": {"api_key": "k", "token": "t"}}),
            "credentials.token",
        ),
        (
            json!({"id": "a", "provider": "hyperstack", "credentials": {"api_key": ""}}),
            "credentials.api_key",
        ),
        (
            json!({"id": "a", "provider": "hyperstack", "credentials": {"api_key": 5}}),
            "credentials.api_key",
        ),
        (
            json!({"id": "a", "provider": "koyeb", "credentials": {"token": "t"}, "settings": {"region": "fra"}}),
            "settings.region",
        ),
        // A token travels in a header: a control character or non-ASCII could never be sent.
        (
            json!({"id": "a", "provider": "hyperstack", "credentials": {"api_key": "k\nx"}}),
            "credentials.api_key",
        ),
        (
            json!({"id": "a", "provider": "koyeb", "credentials": {"token": "zażółć"}}),
            "credentials.token",
        ),
        (
            json!({"id": "a", "provider": "oktawave", "credentials": {"client_id": "x", "client_secret": "y", "username": "u", "password": "p\u{1}"}, "settings": {"region": "pl1"}}),
            "credentials.password",
        ),
    ];
    for (body, field) in cases {
        let resp = app.post("/v1/accounts", &t, &body).await;
        let problem = assert_problem(resp, 422, "invalid_field").await;
        assert_eq!(problem["field"], field, "{problem}");
    }
    // Shape errors name the member too.
    let resp = app
        .post(
            "/v1/accounts",
            &t,
            &json!({"id": "Bad Id!", "provider": "koyeb", "credentials": {"token": "t"}}),
        )
        .await;
    let problem = assert_problem(resp, 422, "invalid_body").await;
    assert_eq!(problem["field"], "id");
    let resp = app
        .post(
            "/v1/accounts",
            &t,
            &json!({"id": "a", "provider": "aws", "credentials": {}}),
        )
        .await;
    let problem = assert_problem(resp, 422, "invalid_body").await;
    assert_eq!(problem["field"], "provider");
    let resp = app
        .post(
            "/v1/accounts",
            &t,
            &json!({"id": "a", "provider": "koyeb", "credentials": {"token": "t"}, "color": "red"}),
        )
        .await;
    assert_problem(resp, 422, "invalid_body").await;
    let resp = app
        .post("/v1/accounts", &t, &json!({"id": "a", "provider": "koyeb"}))
        .await;
    assert_problem(resp, 422, "invalid_body").await;
    // A password is not a header: Polish letters are fine there.
    let resp = app
        .post(
            "/v1/accounts",
            &t,
            &json!({"id": "pl", "provider": "oktawave", "credentials": {"client_id": "x", "client_secret": "y", "username": "u", "password": "zażółć gęślą"}, "settings": {"region": "pl1"}}),
        )
        .await;
    assert_eq!(resp.status(), 201);
}

#[tokio::test]
async fn another_tenants_accounts_answer_404_and_never_appear_in_lists() {
    let app = spawn_app().await;
    let a = token("tenant-a", ALL_SCOPES);
    let b = token("tenant-b", ALL_SCOPES);
    assert_eq!(
        app.post(
            "/v1/accounts",
            &a,
            &account_body("shared-name", "hyperstack")
        )
        .await
        .status(),
        201
    );
    assert_problem(
        app.get("/v1/accounts/shared-name", &b).await,
        404,
        "account_not_found",
    )
    .await;
    assert_problem(
        app.patch(
            "/v1/accounts/shared-name",
            &b,
            &json!({"display_name": "x"}),
        )
        .await,
        404,
        "account_not_found",
    )
    .await;
    assert_problem(
        app.delete("/v1/accounts/shared-name", &b).await,
        404,
        "account_not_found",
    )
    .await;
    let list: Value = app.get("/v1/accounts", &b).await.json().await.unwrap();
    assert_eq!(list["items"], json!([]));
    // The same id is free in the other tenant, and A's account is untouched.
    assert_eq!(
        app.post("/v1/accounts", &b, &account_body("shared-name", "koyeb"))
            .await
            .status(),
        201
    );
    let mine: Value = app
        .get("/v1/accounts/shared-name", &a)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["provider"], "hyperstack");
}

#[tokio::test]
async fn credentials_never_appear_in_responses_or_in_the_database_file() {
    let app = spawn_app().await;
    let t = token("acme", ALL_SCOPES);
    let mut seen = String::new();
    for provider in providers() {
        let id = format!("{provider}-x");
        seen += &app
            .post("/v1/accounts", &t, &account_body(&id, provider))
            .await
            .text()
            .await
            .unwrap();
        seen += &app
            .get(&format!("/v1/accounts/{id}"), &t)
            .await
            .text()
            .await
            .unwrap();
    }
    // Re-sending an existing id fails: the error must not echo the body either.
    seen += &app
        .post("/v1/accounts", &t, &account_body("koyeb-x", "koyeb"))
        .await
        .text()
        .await
        .unwrap();
    // A credential sent with the wrong shape is not echoed in the 422.
    seen += &app
        .post(
            "/v1/accounts",
            &t,
            &json!({"id": "z", "provider": "koyeb", "credentials": "koyeb-secret-token-0002"}),
        )
        .await
        .text()
        .await
        .unwrap();
    seen += &app.get("/v1/accounts", &t).await.text().await.unwrap();
    let new_creds = json!({"credentials": {"token": "rotated-secret-token-0007"}});
    seen += &app
        .patch("/v1/accounts/syminet-x", &t, &new_creds)
        .await
        .text()
        .await
        .unwrap();
    for secret in secret_values()
        .iter()
        .map(String::as_str)
        .chain(["rotated-secret-token-0007"])
    {
        assert!(!seen.contains(secret), "response leaked {secret}");
    }
    drop(app.client.clone());
    let mut stored = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", app.db_path().display());
        if let Ok(bytes) = std::fs::read(&path) {
            stored.extend(bytes);
        }
    }
    assert!(stored.len() > 4096, "database file should exist");
    let stored = String::from_utf8_lossy(&stored);
    assert!(
        stored.contains("koyeb-x"),
        "the account row itself is stored"
    );
    for secret in secret_values()
        .iter()
        .map(String::as_str)
        .chain(["rotated-secret-token-0007"])
    {
        assert!(!stored.contains(secret), "database holds {secret} in clear");
    }
}

#[tokio::test]
async fn rotating_credentials_changes_the_fingerprint_and_demands_every_field() {
    let app = spawn_app().await;
    let t = token("acme", ALL_SCOPES);
    let created: Value = app
        .post("/v1/accounts", &t, &account_body("k", "koyeb"))
        .await
        .json()
        .await
        .unwrap();
    let resp = app
        .patch("/v1/accounts/k", &t, &json!({"credentials": {}}))
        .await;
    let problem = assert_problem(resp, 422, "invalid_field").await;
    assert_eq!(problem["field"], "credentials.token");
    let patched: Value = app
        .patch(
            "/v1/accounts/k",
            &t,
            &json!({"credentials": {"token": "new-token"}}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(
        patched["credentials"]["fingerprint"],
        created["credentials"]["fingerprint"]
    );
    assert_eq!(patched["settings"], created["settings"]);
    let cleared: Value = app
        .patch(
            "/v1/accounts/k",
            &t,
            &json!({"display_name": null, "settings": {}}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cleared["settings"], json!({}));
    assert_eq!(cleared["display_name"], Value::Null);
}

#[tokio::test]
async fn accounts_survive_a_restart_on_the_same_database() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(&dir);
    let t = token("acme", ALL_SCOPES);
    let app = spawn_config(config.clone(), tempfile::tempdir().unwrap()).await;
    assert_eq!(
        app.post("/v1/accounts", &t, &account_body("keep", "hostinger"))
            .await
            .status(),
        201
    );
    drop(app);
    let app = spawn_config(config, tempfile::tempdir().unwrap()).await;
    let got: Value = app.get("/v1/accounts/keep", &t).await.json().await.unwrap();
    assert_eq!(got["provider"], "hostinger");
}

#[cfg(unix)]
#[tokio::test]
async fn the_database_and_its_directory_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").join("nested");
    let mut config = test_config(&dir);
    config.store.url = format!("sqlite://{}", data.join("snapgate.db").display());
    let app = spawn_config(config, tempfile::tempdir().unwrap()).await;
    let t = token("acme", ALL_SCOPES);
    let resp = app
        .post("/v1/accounts", &t, &account_body("koyeb-x", "koyeb"))
        .await;
    assert_eq!(resp.status(), 201);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "data directory");
    assert_eq!(mode(&dir.path().join("data")), 0o700, "created parent");
    for suffix in ["", "-wal", "-shm"] {
        let path =
            std::path::PathBuf::from(format!("{}{suffix}", data.join("snapgate.db").display()));
        assert!(path.exists(), "{} exists", path.display());
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
}

#[tokio::test]
async fn concurrent_patches_of_one_account_all_succeed() {
    // Each PATCH reads, then writes, in one transaction: SQLite must take the write lock up
    // front, or concurrent ones fail with "database is locked" (a 503 for a valid request).
    let app = spawn_app().await;
    let t = token("acme", ALL_SCOPES);
    assert_eq!(
        app.post("/v1/accounts", &t, &account_body("busy", "koyeb"))
            .await
            .status(),
        201
    );
    let patches: Vec<_> = (0..30)
        .map(|i| {
            let client = app.client.clone();
            let url = format!("{}/v1/accounts/busy", app.url);
            let t = t.clone();
            tokio::spawn(async move {
                client
                    .patch(url)
                    .bearer_auth(t)
                    .json(&json!({"display_name": format!("name {i}")}))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    for p in patches {
        assert_eq!(p.await.unwrap(), 200);
    }
}

/// Issue 24: SQLite serves one process. A second `serve` on the same file is refused, naming
/// the file (a restart on it, once the first has stopped, is not: see above).
#[tokio::test]
async fn a_second_process_on_one_sqlite_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(&dir);
    let _first = spawn_config(config.clone(), tempfile::tempdir().unwrap()).await;
    let started = std::time::Instant::now();
    let refused = snapgate::Application::build(config)
        .await
        .err()
        .expect("a second process on the file must not start");
    let said = refused.to_string();
    assert!(
        said.contains("another snapgate process is serving"),
        "{said}"
    );
    assert!(said.contains("snapgate.db"), "{said}");
    // It waited a little for a process that might be shutting down, not forever.
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
